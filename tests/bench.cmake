# Benchmarks (label bench): they print `name: value unit` lines and a
# `method:` line, with the same figures for tests/bench/poller.sh (the
# 5-second `virsh list` design) beside them. They never fail on speed, only
# when a measurement could not be made. BENCH_QUICK=1 (CI) shortens them;
# docs/bench.md holds the table of a full run.
add_executable(vmo-bench ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_client.c)
target_link_libraries(vmo-bench PRIVATE PkgConfig::DEPS)
# memory.sh's floor: the same libraries and start-up, then poll().
add_executable(vmo-mem-floor ${CMAKE_CURRENT_SOURCE_DIR}/bench/mem_floor.c)
target_link_libraries(vmo-mem-floor PRIVATE PkgConfig::DEPS)

set(VMO_BENCH_DIR ${CMAKE_CURRENT_SOURCE_DIR}/bench)
# commit.sh is bench_commit_applet: tests/flow.cmake's bench_commit times the
# flow in-process; this one goes through the running applet's control bus.
foreach(b idle memory register destroy layout commit)
  set(name bench_${b})
  if(b STREQUAL "commit")
    set(name bench_commit_applet)
  endif()
  vmo_script_test(NAME ${name} COMMAND ${VMO_BENCH_DIR}/${b}.sh LABELS bench TIMEOUT 1800)
  # The measuring client lives beside the applet in the build tree.
  set_property(TEST ${name} APPEND PROPERTY ENVIRONMENT
    "BENCH_TOOL=$<TARGET_FILE:vmo-bench>" "BENCH_FLOOR=$<TARGET_FILE:vmo-mem-floor>")
endforeach()
