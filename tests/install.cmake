# Install layout, desktop entries, user unit, polkit action, man pages
# (issue 7). The expected locations are this build's own.
vmo_script_test(NAME it_install
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/install-check.sh
  LABELS integration TIMEOUT 300)
set_property(TEST it_install APPEND PROPERTY ENVIRONMENT
  "VMO_INSTALL_PREFIX=${CMAKE_INSTALL_PREFIX}"
  "VMO_INSTALL_BINDIR=${CMAKE_INSTALL_FULL_BINDIR}"
  "VMO_INSTALL_LIBEXECDIR=${CMAKE_INSTALL_FULL_LIBEXECDIR}"
  "VMO_INSTALL_DATADIR=${CMAKE_INSTALL_FULL_DATADIR}"
  "VMO_INSTALL_MANDIR=${CMAKE_INSTALL_FULL_MANDIR}"
  "VMO_INSTALL_DOCDIR=${CMAKE_INSTALL_FULL_DOCDIR}"
  "VMO_INSTALL_LOCALEDIR=${CMAKE_INSTALL_FULL_LOCALEDIR}"
  "VMO_AUTOSTART_DIR=${VMO_AUTOSTART_DIR}"
  "VMO_SYSTEMD_USER_UNIT_DIR=${VMO_SYSTEMD_USER_UNIT_DIR}"
  "VMO_POLKIT_ACTION_DIR=${VMO_POLKIT_ACTION_DIR}")

# Builds the .deb from a copy of the tree, installs it with dpkg, runs it,
# removes it. Needs root (dpkg -i) and takes a full build: about two minutes.
vmo_script_test(NAME it_deb_build
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/deb-build.sh
  LABELS integration TIMEOUT 900)

# The privileged helper as root against a private libvirt daemon with
# root-owned images (libvirt-env.sh).
vmo_script_test(NAME it_helper
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/helper.sh
  LABELS integration TIMEOUT 180)

# The applet's side: argument checks, the pkexec command line, the flow's
# hook, a real run through the real pkexec.
vmo_unit_test(NAME test_privhelper SOURCES test_privhelper.c)
