# runner + imageops + flow (issue 5): real qemu-img/qemu-io on real files,
# libvirt through the in-process test:/// driver.
vmo_unit_test(NAME test_runner SOURCES test_runner.c TIMEOUT 120)
# Mounts (read-only bind, small tmpfs) and chattr need root, as CI runs it.
vmo_unit_test(NAME test_flow SOURCES test_flow.c TIMEOUT 300)
# End to end with a real libvirtd + TCG VMs and the applet's control CLI.
vmo_script_test(NAME it_flow_daemon COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/flow-daemon.sh
  LABELS integration TIMEOUT 300)
# Prints commit wall time through the flow vs bare qemu-img (never fails on speed).
vmo_unit_test(NAME bench_commit SOURCES bench/bench_commit.c LABELS bench TIMEOUT 1800)
