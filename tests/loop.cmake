# The poll loop and its adapters (issue 2): needs dbus-daemon on PATH and
# libvirt's built-in test:///default driver; no libvirtd.
vmo_unit_test(NAME test_loop SOURCES test_loop.c LABELS unit TIMEOUT 120)
