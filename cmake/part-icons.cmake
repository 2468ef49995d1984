# Tray icons: the SVGs in icons/hicolor/scalable/apps are the source. At
# build time rsvg-convert renders PNGs into a hicolor layout in the build
# tree (also installed), and cmake/icon-embed.c turns those PNGs into the
# IconPixmap data (A,R,G,B) compiled into vmocore.
find_program(VMO_RSVG_CONVERT rsvg-convert REQUIRED)
pkg_check_modules(VMO_PIXBUF REQUIRED IMPORTED_TARGET gdk-pixbuf-2.0)

set(VMO_ICON_NAMES vmoverlay vmoverlay-active vmoverlay-attention vmoverlay-busy vmoverlay-error)
set(VMO_ICON_SIZES 16 22 24 32 48 64)
set(VMO_ICON_BUILD_DIR ${CMAKE_CURRENT_BINARY_DIR}/icons/hicolor)

add_executable(vmo-icon-embed ${CMAKE_CURRENT_SOURCE_DIR}/cmake/icon-embed.c)
target_link_libraries(vmo-icon-embed PRIVATE PkgConfig::VMO_PIXBUF)

set(vmo_icon_pngs "")
set(vmo_icon_specs "")
foreach(name ${VMO_ICON_NAMES})
  set(svg ${CMAKE_CURRENT_SOURCE_DIR}/icons/hicolor/scalable/apps/${name}.svg)
  install(FILES ${svg} DESTINATION ${CMAKE_INSTALL_DATADIR}/icons/hicolor/scalable/apps)
  foreach(size ${VMO_ICON_SIZES})
    set(dir ${VMO_ICON_BUILD_DIR}/${size}x${size}/apps)
    set(png ${dir}/${name}.png)
    add_custom_command(
      OUTPUT ${png}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${dir}
      COMMAND ${VMO_RSVG_CONVERT} -w ${size} -h ${size} -o ${png} ${svg}
      DEPENDS ${svg}
      COMMENT "Rendering ${name} at ${size}px" VERBATIM)
    list(APPEND vmo_icon_pngs ${png})
    list(APPEND vmo_icon_specs "${name}:${size}:${png}")
    install(FILES ${png} DESTINATION ${CMAKE_INSTALL_DATADIR}/icons/hicolor/${size}x${size}/apps)
  endforeach()
endforeach()

# The tool may be built with sanitizers; GLib's type system keeps memory
# until exit, which is not ours to report.
add_custom_command(
  OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/icon-pixmaps.c
  COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
          $<TARGET_FILE:vmo-icon-embed> ${CMAKE_CURRENT_BINARY_DIR}/icon-pixmaps.c ${vmo_icon_specs}
  DEPENDS vmo-icon-embed ${vmo_icon_pngs}
  COMMENT "Embedding the tray icon pixmaps" VERBATIM)
add_custom_target(vmo-icons DEPENDS ${vmo_icon_pngs})
target_sources(vmocore PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/icon-pixmaps.c)
