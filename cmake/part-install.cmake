# Install rules for everything but the executables (top CMakeLists), icons
# (part-icons.cmake) and translations (part-i18n.cmake): desktop entry,
# autostart entry, systemd user unit, polkit action, man pages, example
# config, our own D-Bus interface XML. Templates are cmake/*.in.
#
# The locations other programs search are cache variables, because they are
# not always below CMAKE_INSTALL_PREFIX: polkit reads actions only from
# /usr/share/polkit-1/actions, XDG autostart from $XDG_CONFIG_DIRS
# (/etc/xdg), systemd user units from .../lib/systemd/user. With the default
# prefix /usr/local the autostart entry and the polkit action land where
# nothing looks; README.md says to configure with -DCMAKE_INSTALL_PREFIX=/usr.

set(VMO_AUTOSTART_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/xdg/autostart"
    CACHE PATH "Directory of the XDG autostart entry")
set(VMO_SYSTEMD_USER_UNIT_DIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/user"
    CACHE PATH "Directory of the systemd user unit")
set(VMO_POLKIT_ACTION_DIR "${CMAKE_INSTALL_FULL_DATADIR}/polkit-1/actions"
    CACHE PATH "Directory of the polkit action of the privileged helper")

set(VMO_FULL_BINDIR "${CMAKE_INSTALL_FULL_BINDIR}")
set(VMO_HELPER_PATH "${CMAKE_INSTALL_FULL_LIBEXECDIR}/vmoverlay/vmoverlay-helper")
set(VMO_GEN_DIR "${CMAKE_CURRENT_BINARY_DIR}/install-gen")
file(MAKE_DIRECTORY ${VMO_GEN_DIR}/applications ${VMO_GEN_DIR}/autostart)

configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/vmoverlay.desktop.in
               ${VMO_GEN_DIR}/vmoverlay.desktop.configured @ONLY)
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/vmoverlay-autostart.desktop.in
               ${VMO_GEN_DIR}/vmoverlay-autostart.desktop.configured @ONLY)
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/vmoverlay.service.in
               ${VMO_GEN_DIR}/vmoverlay.service @ONLY)
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/io.github.vmoverlay.policy.in
               ${VMO_GEN_DIR}/policy-in/io.github.vmoverlay.policy @ONLY)

# Name/Comment/... of the desktop entries in every language of po/LINGUAS
# (vmo_translate_desktop comes from part-i18n.cmake).
if(COMMAND vmo_translate_desktop)
  vmo_translate_desktop(TARGET vmoverlay-desktop-entry
    IN ${VMO_GEN_DIR}/vmoverlay.desktop.configured
    OUT ${VMO_GEN_DIR}/applications/vmoverlay.desktop)
  vmo_translate_desktop(TARGET vmoverlay-autostart-entry
    IN ${VMO_GEN_DIR}/vmoverlay-autostart.desktop.configured
    OUT ${VMO_GEN_DIR}/autostart/vmoverlay.desktop)
else()
  configure_file(${VMO_GEN_DIR}/vmoverlay.desktop.configured
                 ${VMO_GEN_DIR}/applications/vmoverlay.desktop COPYONLY)
  configure_file(${VMO_GEN_DIR}/vmoverlay-autostart.desktop.configured
                 ${VMO_GEN_DIR}/autostart/vmoverlay.desktop COPYONLY)
endif()

# The polkit dialog's description and message, translated the same way
# through polkit's ITS rules (/usr/share/gettext/its/polkit.its, from
# polkitd, which pkexec depends on; msgfmt finds them by the *.policy
# name, hence the subdirectory). Without them: the English file.
if(VMO_MSGFMT AND EXISTS /usr/share/gettext/its/polkit.its AND DEFINED VMO_LINGUAS_PO)
  add_custom_command(
    OUTPUT ${VMO_GEN_DIR}/io.github.vmoverlay.policy
    COMMAND ${VMO_MSGFMT} --xml --template=${VMO_GEN_DIR}/policy-in/io.github.vmoverlay.policy
            -d ${VMO_PO_DIR} -o ${VMO_GEN_DIR}/io.github.vmoverlay.policy
    DEPENDS ${VMO_GEN_DIR}/policy-in/io.github.vmoverlay.policy ${VMO_PO_DIR}/LINGUAS ${VMO_LINGUAS_PO}
    COMMENT "Translating the polkit action"
    VERBATIM)
else()
  add_custom_command(
    OUTPUT ${VMO_GEN_DIR}/io.github.vmoverlay.policy
    COMMAND ${CMAKE_COMMAND} -E copy ${VMO_GEN_DIR}/policy-in/io.github.vmoverlay.policy
            ${VMO_GEN_DIR}/io.github.vmoverlay.policy
    DEPENDS ${VMO_GEN_DIR}/policy-in/io.github.vmoverlay.policy
    VERBATIM)
endif()
add_custom_target(vmoverlay-polkit-action ALL DEPENDS ${VMO_GEN_DIR}/io.github.vmoverlay.policy)

install(FILES ${VMO_GEN_DIR}/applications/vmoverlay.desktop
        DESTINATION ${CMAKE_INSTALL_DATADIR}/applications)
install(FILES ${VMO_GEN_DIR}/autostart/vmoverlay.desktop DESTINATION ${VMO_AUTOSTART_DIR})
install(FILES ${VMO_GEN_DIR}/vmoverlay.service DESTINATION ${VMO_SYSTEMD_USER_UNIT_DIR})
# The action names the helper's path; without the helper it would only
# promise something that is not there.
if(TARGET vmoverlay-helper)
  install(FILES ${VMO_GEN_DIR}/io.github.vmoverlay.policy DESTINATION ${VMO_POLKIT_ACTION_DIR})
  # The opt-in rule for group libvirt: an example, never into rules.d
  # (README: "No password for group libvirt" enables it with one command).
  install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/doc/60-vmoverlay-libvirt.rules
          DESTINATION ${CMAKE_INSTALL_DATADIR}/vmoverlay/polkit)
endif()

install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/doc/vmoverlay.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/doc/vmoverlay.conf.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/doc/vmoverlay-helper.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/doc/vmoverlay.conf.example
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# Only the interfaces vmoverlay defines: the StatusNotifierItem, DBusMenu,
# Notifications and JobView files describe other projects' interfaces,
# which their own packages install (a second copy would clash in dpkg).
file(GLOB VMO_OWN_DBUS_XML CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/dbus-xml/io.github.vmoverlay.*.xml)
install(FILES ${VMO_OWN_DBUS_XML} DESTINATION ${CMAKE_INSTALL_DATADIR}/dbus-1/interfaces)
