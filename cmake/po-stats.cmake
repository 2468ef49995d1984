# cmake -DMSGFMT=.. -DPO_DIR=.. -DLINGUAS="de;zh_CN" -P po-stats.cmake
# Prints msgfmt's translated/fuzzy/untranslated counts for every language.
foreach(lang ${LINGUAS})
  execute_process(COMMAND ${MSGFMT} --statistics -o /dev/null ${PO_DIR}/${lang}.po
                  ERROR_VARIABLE stats OUTPUT_VARIABLE out)
  string(STRIP "${stats}${out}" stats)
  message(STATUS "${lang}: ${stats}")
endforeach()
