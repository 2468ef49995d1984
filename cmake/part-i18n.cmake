# Translations (gettext). The template po/vmoverlay.pot is extracted from
# src/*.c, the desktop entry templates and the polkit action template;
# po/<lang>.po for every language in po/LINGUAS are compiled into
# ${CMAKE_BINARY_DIR}/locale/<lang>/LC_MESSAGES (where an uninstalled
# vmoverlay finds them) and installed.
#
# Workflow for translators and developers:
#   cmake --build build --target update-po   # refresh po/vmoverlay.pot and
#                                             # merge it into every po/*.po
#   (translate po/<lang>.po; fuzzy entries need a look)
#   cmake --build build                       # builds the .mo files
# The build itself never writes into the source tree; only update-pot and
# update-po do.

find_program(VMO_XGETTEXT xgettext)
find_program(VMO_MSGFMT msgfmt)
find_program(VMO_MSGMERGE msgmerge)
if(NOT VMO_XGETTEXT OR NOT VMO_MSGFMT OR NOT VMO_MSGMERGE)
  message(FATAL_ERROR "xgettext, msgfmt and msgmerge are needed (Debian package: gettext)")
endif()

set(VMO_PO_DIR ${CMAKE_CURRENT_SOURCE_DIR}/po)
file(STRINGS ${VMO_PO_DIR}/LINGUAS VMO_LINGUAS REGEX "^[^#]")
string(REPLACE " " ";" VMO_LINGUAS "${VMO_LINGUAS}")
list(FILTER VMO_LINGUAS EXCLUDE REGEX "^$")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${VMO_PO_DIR}/LINGUAS)

# Sources with user-visible strings, as paths relative to the top so the
# pot's "#: src/x.c:12" references do not depend on where the tree lives.
file(GLOB VMO_I18N_C_SOURCES CONFIGURE_DEPENDS RELATIVE ${CMAKE_CURRENT_SOURCE_DIR}
     ${CMAKE_CURRENT_SOURCE_DIR}/src/*.c)
list(SORT VMO_I18N_C_SOURCES)
file(GLOB VMO_I18N_DESKTOP_SOURCES CONFIGURE_DEPENDS RELATIVE ${CMAKE_CURRENT_SOURCE_DIR}
     ${CMAKE_CURRENT_SOURCE_DIR}/cmake/*.desktop.in)
list(SORT VMO_I18N_DESKTOP_SOURCES)
# The polkit action's description/message (msgfmt --xml translates it with
# the same ITS rules at build time, see part-install.cmake).
set(VMO_POLKIT_ITS /usr/share/gettext/its/polkit.its)
set(VMO_I18N_POLICY_SOURCES)
if(EXISTS ${VMO_POLKIT_ITS})
  file(GLOB VMO_I18N_POLICY_SOURCES CONFIGURE_DEPENDS RELATIVE ${CMAKE_CURRENT_SOURCE_DIR}
       ${CMAKE_CURRENT_SOURCE_DIR}/cmake/*.policy.in)
  list(SORT VMO_I18N_POLICY_SOURCES)
endif()

set(VMO_POT_BUILD ${CMAKE_CURRENT_BINARY_DIR}/po/vmoverlay.pot)
set(VMO_XGETTEXT_C_ARGS
  --language=C --from-code=UTF-8 --add-comments=TRANSLATORS: --sort-by-file
  --keyword=_ --keyword=N_ --keyword=P_:1,2 --keyword=C_:1c,2)
set(VMO_XGETTEXT_ARGS
  --package-name=vmoverlay --package-version=${PROJECT_VERSION}
  "--copyright-holder=vmoverlay contributors")
set(VMO_POT_COMMANDS
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/po
  COMMAND ${VMO_XGETTEXT} ${VMO_XGETTEXT_C_ARGS} ${VMO_XGETTEXT_ARGS} -o ${VMO_POT_BUILD}
          ${VMO_I18N_C_SOURCES})
if(VMO_I18N_DESKTOP_SOURCES)
  # Name/GenericName/Comment/Keywords of the desktop entries.
  list(APPEND VMO_POT_COMMANDS
    COMMAND ${VMO_XGETTEXT} ${VMO_XGETTEXT_ARGS} --from-code=UTF-8 --language=Desktop --join-existing
            -o ${VMO_POT_BUILD} ${VMO_I18N_DESKTOP_SOURCES})
endif()
if(VMO_I18N_POLICY_SOURCES)
  list(APPEND VMO_POT_COMMANDS
    COMMAND ${VMO_XGETTEXT} ${VMO_XGETTEXT_ARGS} --from-code=UTF-8 --its=${VMO_POLKIT_ITS}
            --join-existing -o ${VMO_POT_BUILD} ${VMO_I18N_POLICY_SOURCES})
endif()
list(TRANSFORM VMO_I18N_POLICY_SOURCES PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/ OUTPUT_VARIABLE VMO_I18N_POLICY_ABS)
list(TRANSFORM VMO_I18N_C_SOURCES PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/ OUTPUT_VARIABLE VMO_I18N_C_ABS)
list(TRANSFORM VMO_I18N_DESKTOP_SOURCES PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/ OUTPUT_VARIABLE VMO_I18N_DESKTOP_ABS)

# The template in the build tree is part of ALL: tests compare it with the
# .po files, so a new _() string shows up without anyone remembering to
# run update-pot.
add_custom_command(
  OUTPUT ${VMO_POT_BUILD}
  ${VMO_POT_COMMANDS}
  DEPENDS ${VMO_I18N_C_ABS} ${VMO_I18N_DESKTOP_ABS} ${VMO_I18N_POLICY_ABS}
  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
  COMMENT "Extracting translatable strings into po/vmoverlay.pot (build tree)"
  VERBATIM)
add_custom_target(vmoverlay-pot ALL DEPENDS ${VMO_POT_BUILD})

# update-pot: the committed template in the source tree.
add_custom_target(update-pot
  COMMAND ${CMAKE_COMMAND} -E copy ${VMO_POT_BUILD} ${VMO_PO_DIR}/vmoverlay.pot
  DEPENDS ${VMO_POT_BUILD}
  COMMENT "Updating po/vmoverlay.pot"
  VERBATIM)

# update-po: merge the template into every language (new strings appear
# untranslated, changed ones fuzzy; nothing is lost).
set(VMO_UPDATE_PO_COMMANDS)
foreach(lang ${VMO_LINGUAS})
  list(APPEND VMO_UPDATE_PO_COMMANDS
    COMMAND ${VMO_MSGMERGE} --quiet --update --backup=none --previous
            ${VMO_PO_DIR}/${lang}.po ${VMO_PO_DIR}/vmoverlay.pot)
endforeach()
add_custom_target(update-po
  ${VMO_UPDATE_PO_COMMANDS}
  COMMAND ${CMAKE_COMMAND} -E echo "po: merged; translate the untranslated/fuzzy entries:"
  COMMAND ${CMAKE_COMMAND} -DMSGFMT=${VMO_MSGFMT} -DPO_DIR=${VMO_PO_DIR}
          "-DLINGUAS=${VMO_LINGUAS}" -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/po-stats.cmake
  DEPENDS update-pot
  WORKING_DIRECTORY ${VMO_PO_DIR}
  COMMENT "Merging po/vmoverlay.pot into po/*.po"
  VERBATIM)

set(VMO_LINGUAS_PO ${VMO_LINGUAS})
list(TRANSFORM VMO_LINGUAS_PO PREPEND ${VMO_PO_DIR}/)
list(TRANSFORM VMO_LINGUAS_PO APPEND .po)

# Compiled catalogs, in the layout bindtextdomain() expects.
set(VMO_MO_FILES)
foreach(lang ${VMO_LINGUAS})
  set(mo ${VMO_LOCALEDIR_BUILD}/${lang}/LC_MESSAGES/vmoverlay.mo)
  add_custom_command(
    OUTPUT ${mo}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${VMO_LOCALEDIR_BUILD}/${lang}/LC_MESSAGES
    COMMAND ${VMO_MSGFMT} --check --output-file=${mo} ${VMO_PO_DIR}/${lang}.po
    DEPENDS ${VMO_PO_DIR}/${lang}.po
    COMMENT "Compiling translation ${lang}"
    VERBATIM)
  list(APPEND VMO_MO_FILES ${mo})
  install(FILES ${mo} DESTINATION ${CMAKE_INSTALL_LOCALEDIR}/${lang}/LC_MESSAGES)
endforeach()
add_custom_target(translations ALL DEPENDS ${VMO_MO_FILES})

# For the desktop entries (whoever installs them): writes OUT from the
# configured template IN with Name/Comment/... of every po/<lang>.po added.
#   vmo_translate_desktop(TARGET vmoverlay-desktop IN ${in} OUT ${out})
function(vmo_translate_desktop)
  cmake_parse_arguments(D "" "TARGET;IN;OUT" "" ${ARGN})
  add_custom_command(
    OUTPUT ${D_OUT}
    COMMAND ${VMO_MSGFMT} --desktop --template=${D_IN} -d ${VMO_PO_DIR} -o ${D_OUT}
    DEPENDS ${D_IN} ${VMO_PO_DIR}/LINGUAS ${VMO_LINGUAS_PO}
    COMMENT "Translating ${D_OUT}"
    VERBATIM)
  add_custom_target(${D_TARGET} ALL DEPENDS ${D_OUT})
endfunction()
