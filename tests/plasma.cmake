# The real KDE Plasma 5.27 system tray, headless (Xvfb + kwin_x11 + kded5 +
# plasmashell on a private bus; research/sni-host-harness.md): our icon is
# drawn, Plasma's menu shows our labels, Quit from it ends vmoverlay.
# Screenshots and the D-Bus trace land in <build>/plasma-smoke/.
vmo_script_test(NAME plasma_smoke
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/plasma-smoke.sh
  LABELS "integration;plasma" TIMEOUT 600)
