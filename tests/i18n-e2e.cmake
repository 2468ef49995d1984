# Issue 9 end to end: menu (GetLayout), tooltip, prompt and result
# notifications and --check-config in Chinese, German and English, from a
# real `vmoverlay --demo` on a private bus with the dbusmock notification
# server (tests/integration/notify-env.sh).
vmo_script_test(NAME it_i18n_e2e COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/i18n-e2e.sh
  LABELS integration i18n TIMEOUT 300)
