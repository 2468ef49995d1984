# KDE Plasma 6 on Wayland, on Debian 13, where our users are (issue 14). All
# of it runs in a Debian 13 (trixie) chroot that tools/plasma6-chroot.sh
# makes with debootstrap and caches in <build>/plasma6-root (a fresh one
# takes ~8 min; a stamp of the package list and of the script that builds it
# decides when it is made again). Needs root. Label plasma6.
#   plasma6_chroot      the chroot; this tree built there with gcc 14 and
#                       -Werror, installed to /usr (fixture of the others)
#   plasma6_commit      a real Plasma 6 session (kwin_wayland + kded6 +
#   plasma6_discard     plasmashell): tray icon, tooltip, menus, the prompt
#   plasma6_pending     popup and its buttons, the pending-decision menu,
#   plasma6_jobtracker  the job tracker, Quit
#                       (tests/integration/plasma6-session.sh has the list);
#                       screenshots in <build>/plasma6/<scenario>/
#   plasma6_ctest       the whole ctest again on Debian 13 (gcc 14, libvirt
#                       11, qemu 10) inside the chroot
# Timeouts: at least 5x a quiet 2-core run (chroot ~8 min, a session ~1 min,
# ctest ~10 min). One at a time (RESOURCE_LOCK): a run ends every process
# left in the chroot.
set(VMO_P6 ${CMAKE_CURRENT_SOURCE_DIR}/integration/plasma6-run.sh)
vmo_script_test(NAME plasma6_chroot COMMAND ${VMO_P6} chroot LABELS plasma6 TIMEOUT 3600)
set_tests_properties(plasma6_chroot PROPERTIES FIXTURES_SETUP plasma6_root RESOURCE_LOCK plasma6_root)
foreach(scenario commit discard pending jobtracker)
  vmo_script_test(NAME plasma6_${scenario} COMMAND ${VMO_P6} session ${scenario}
    LABELS plasma6 TIMEOUT 900)
  set_tests_properties(plasma6_${scenario} PROPERTIES FIXTURES_REQUIRED plasma6_root
    RESOURCE_LOCK plasma6_root)
endforeach()
vmo_script_test(NAME plasma6_ctest COMMAND ${VMO_P6} ctest LABELS plasma6 TIMEOUT 3600)
set_tests_properties(plasma6_ctest PROPERTIES FIXTURES_REQUIRED plasma6_root
  RESOURCE_LOCK plasma6_root)
