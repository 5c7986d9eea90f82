# wb_unit_test(NAME [THREADED] [TIMEOUT s] [SOURCES extra.c ...])
# Builds tests/unit/test_NAME.c against cmocka and the static library and
# registers it with ctest under the label "unit" (and "threaded" when the test
# starts runtime threads: those also run under TSan).
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

function(wb_unit_test name)
  cmake_parse_arguments(T "THREADED" "TIMEOUT" "SOURCES" ${ARGN})
  if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_${name}.c)
    message(WARNING "test_${name}.c is listed but missing")
    return()
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  add_executable(test_${name} test_${name}.c ${T_SOURCES})
  target_link_libraries(test_${name} PRIVATE waybill_apps PkgConfig::CMOCKA)
  add_test(NAME ${name} COMMAND test_${name})
  set(labels unit)
  if(T_THREADED)
    list(APPEND labels threaded)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${labels}"
    ENVIRONMENT "WAYBILL_LOG=warn")
endfunction()
