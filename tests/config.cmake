# Configuration, command line and their translations (tests/test_config.c).
vmo_unit_test(NAME test_config SOURCES test_config.c LABELS unit)
# The German/Chinese cases read the .mo files from the build tree.
add_dependencies(test_config translations)

# vmoverlay --check-config as a user runs it, in English, German, Chinese.
vmo_script_test(NAME check_config_cli
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/check-config-cli.sh
  LABELS unit TIMEOUT 60)
