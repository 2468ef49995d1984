# qemu:///system as it really is (issue 13): root libvirtd in system mode,
# system bus + real polkitd + real pkexec, the applet as an unprivileged user
# in group libvirt (tests/integration/system-env.sh). Machine-wide, so the
# tests share one RESOURCE_LOCK (and the harness a flock); label `system`.
foreach(scenario commit discard denied hostile cancel quit grouprule nopool others twodisk)
  vmo_script_test(NAME it_system_${scenario}
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/system-scenarios.sh ${scenario}
    LABELS "integration;system" TIMEOUT 300)
  set_tests_properties(it_system_${scenario} PROPERTIES RESOURCE_LOCK system_libvirt)
endforeach()

# The helper's file steps (trustfs.c) on real files, as root.
vmo_unit_test(NAME test_trustfs SOURCES test_trustfs.c TIMEOUT 120)
