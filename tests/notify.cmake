# The notifier against python3-dbusmock's notification_daemon template on a
# private dbus-daemon (see the comment atop test_notify.c for why), a hung
# server (notify/hung-server.py), and the real flow on test:///default.
vmo_unit_test(NAME test_notify SOURCES test_notify.c LABELS unit notify TIMEOUT 180)

# End to end with the vmoverlay binary (private bus + dbusmock server).
vmo_script_test(NAME it_notify_demo COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/notify-demo.sh
  LABELS integration notify TIMEOUT 120)
# Real libvirtd + TCG VM (libvirt-env.sh): prompt latency, commit through the
# notification and through the menu, restart withdraws, no server at all.
vmo_script_test(NAME it_notify_vm COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/notify-vm.sh
  LABELS integration notify libvirt TIMEOUT 600)
# The terminal front end through a real pseudo-terminal (issue 15 item 1):
# a real VM answered on the terminal, the demo ending by itself with and
# without a terminal; as the unprivileged test user.
vmo_script_test(NAME it_terminal COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/terminal.sh
  LABELS integration libvirt TIMEOUT 600)
