# libvirt watcher, qcow2 header reader, state file (issue 4).
vmo_unit_test(NAME test_image SOURCES test_image.c)
vmo_unit_test(NAME test_virt SOURCES test_virt.c)
# Integration: the watcher against a real session libvirtd and a TCG VM
# (tests/integration/libvirt-env.sh). virt_probe prints one line per callback.
add_executable(virt_probe virt_probe.c)
target_link_libraries(virt_probe PRIVATE vmocore)
vmo_script_test(NAME it_virt_watch
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/virt_watch.sh $<TARGET_FILE:virt_probe>
  LABELS integration TIMEOUT 600)
