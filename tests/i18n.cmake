# Translations: every .po compiles cleanly; no user-visible string in src/
# escapes gettext; every extracted string is translated in every language.
find_program(VMO_PYTHON3 python3 REQUIRED)
file(STRINGS ${CMAKE_SOURCE_DIR}/po/LINGUAS VMO_TEST_LINGUAS REGEX "^[^#]")
foreach(lang ${VMO_TEST_LINGUAS})
  # --check: formats, header, plural forms; accelerators: a menu mnemonic
  # (one "_") must survive translation.
  vmo_script_test(NAME po_check_${lang}
    COMMAND ${VMO_MSGFMT} --check --check-accelerators=_ --statistics -o /dev/null
            ${CMAKE_SOURCE_DIR}/po/${lang}.po
    LABELS unit TIMEOUT 60)
endforeach()

vmo_script_test(NAME i18n_unmarked_strings
  COMMAND ${VMO_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/check-untranslated.py ${CMAKE_SOURCE_DIR}/src
  LABELS "unit;i18n" TIMEOUT 60)

# Fails until every module's strings are translated (label i18n).
vmo_script_test(NAME i18n_po_complete
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/check-po-complete.sh
          ${CMAKE_BINARY_DIR}/po/vmoverlay.pot ${CMAKE_SOURCE_DIR}/po
  LABELS i18n TIMEOUT 60)
