# Tray: the bus layer alone (unit) and the real vmoverlay item, menu and
# control interface on a private dbus-daemon (integration).
vmo_unit_test(NAME test_bus SOURCES test_bus.c LABELS unit)
# The menu's item tree from the model, without a bus (menu-tree.c).
vmo_unit_test(NAME test_menu SOURCES test_menu.c LABELS unit)
vmo_script_test(NAME tray_sni
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/tray-sni.py
  LABELS integration TIMEOUT 180)
vmo_script_test(NAME tray_menu
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/tray-menu.py
  LABELS integration TIMEOUT 180)
# A VM with two overlay disks (issue 15 item 2), the libvirt test driver's
# domain on real qcow2 files: the menu's total and per-disk lines, and
# `vmoverlay status` per disk.
vmo_script_test(NAME tray_disks
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/tray-disks.py
  LABELS integration TIMEOUT 180)
# Activation on Wayland (issue 14 item 5): the token from
# ProvideXdgActivationToken or the notification's ActivationToken reaches
# the program "Open in virt-manager" starts (a recording stand-in first on
# PATH), in XDG_ACTIVATION_TOKEN and DESKTOP_STARTUP_ID, once.
vmo_script_test(NAME tray_activation
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/tray-activation.py
  LABELS integration notify TIMEOUT 180)
