# The notifier against python3-dbusmock's notification_daemon template on a
# private dbus-daemon (see the comment atop test_notify.c for why), a hung
# server (notify/hung-server.py), and the real flow on test:///default.
vmo_unit_test(NAME test_notify SOURCES test_notify.c LABELS unit notify TIMEOUT 180)
