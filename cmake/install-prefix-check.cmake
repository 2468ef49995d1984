# Runs first at install time (CMakeLists.txt): stops an install whose prefix
# differs from the configured one, before any file is written. The configured
# prefix is compiled into the programs (the helper's path for pkexec, the
# translations, the icons) and written into the desktop entries, the user unit
# and the polkit action; installed elsewhere, they would point at files that
# are not there. DESTDIR staging keeps the prefix and passes.
# In: VMO_CONFIGURED_PREFIX (set by the install(CODE) before this script),
#     CMAKE_INSTALL_PREFIX (the install's, e.g. from cmake --install --prefix).
string(REGEX REPLACE "(.)/+$" "\\1" vmo_configured "${VMO_CONFIGURED_PREFIX}")
string(REGEX REPLACE "(.)/+$" "\\1" vmo_requested "${CMAKE_INSTALL_PREFIX}")
if(NOT vmo_requested STREQUAL vmo_configured)
  message(FATAL_ERROR
    "vmoverlay was configured for the prefix ${vmo_configured}, but this install "
    "asks for ${vmo_requested}. The programs have paths under ${vmo_configured} "
    "compiled in, and the desktop entries, the user unit and the polkit action name "
    "them, so nothing was installed. Configure with "
    "-DCMAKE_INSTALL_PREFIX=${vmo_requested}, build again and install; or install "
    "without --prefix (DESTDIR=... stages the files for packaging).")
endif()
