# Helpers shared by every CMakeLists.txt of the project.

# lumen_protoc_c(<target> <proto>...): a static library of the protoc-c output
# for the given .proto files. Generated code lands in the build tree only.
function(lumen_protoc_c target)
  set(_srcs)
  set(_outdir "${CMAKE_CURRENT_BINARY_DIR}")
  set(_all_protos)
  foreach(_proto ${ARGN})  # a .proto may import any other of the set
    get_filename_component(_abs "${_proto}" ABSOLUTE)
    list(APPEND _all_protos "${_abs}")
  endforeach()
  foreach(_proto ${ARGN})
    get_filename_component(_abs "${_proto}" ABSOLUTE)
    get_filename_component(_dir "${_abs}" DIRECTORY)
    get_filename_component(_name "${_proto}" NAME_WE)
    set(_c "${_outdir}/${_name}.pb-c.c")
    set(_h "${_outdir}/${_name}.pb-c.h")
    add_custom_command(
      OUTPUT "${_c}" "${_h}"
      COMMAND ${PROTOC_C} --proto_path=${_dir} --c_out=${_outdir} "${_abs}"
      DEPENDS ${_all_protos}
      COMMENT "protoc-c ${_name}.proto"
      VERBATIM)
    list(APPEND _srcs "${_c}")
  endforeach()
  add_library(${target} STATIC ${_srcs})
  # protoc-c's output is not ours to fix: no warnings from it.
  target_compile_options(${target} PRIVATE -w)
  target_include_directories(${target} PUBLIC "${_outdir}")
  target_link_libraries(${target} PUBLIC PkgConfig::PROTOBUFC)
endfunction()

# lumen_add_test(<name> SOURCES <src>... [LIBS <lib>...] [TIMEOUT <s>] [LABELS <l>...])
# lumen_add_test(<name> SCRIPT <file.sh> [ARGS <arg>...] [TIMEOUT <s>] [LABELS <l>...])
# One executable (or bash script) per test, registered with ctest with a
# timeout, so a hung test fails instead of stalling the suite.
function(lumen_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT;SCRIPT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if(T_SCRIPT)
    add_test(NAME ${name} COMMAND bash "${CMAKE_CURRENT_SOURCE_DIR}/${T_SCRIPT}" ${T_ARGS})
  else()
    add_executable(${name} ${T_SOURCES})
    target_link_libraries(${name} PRIVATE lumen_test_support ${T_LIBS})
    add_test(NAME ${name} COMMAND ${name})
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}")
endfunction()

# lumen_install_programs(<target>...): installs programs to bin with a
# RUNPATH relative to themselves ($ORIGIN/../lib), so an installed tree finds
# liblumen without LD_LIBRARY_PATH wherever its prefix is, or is moved to.
function(lumen_install_programs)
  file(RELATIVE_PATH _lib "${CMAKE_INSTALL_FULL_BINDIR}" "${CMAKE_INSTALL_FULL_LIBDIR}")
  set_target_properties(${ARGN} PROPERTIES INSTALL_RPATH "$ORIGIN/${_lib}")
  install(TARGETS ${ARGN} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endfunction()
