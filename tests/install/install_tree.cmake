# SPDX-License-Identifier: Apache-2.0
# Fixture step of the install consumer tests: install the current build tree into a fresh prefix.
#   cmake -DBUILD_DIR=<build tree> -DPREFIX=<prefix> [-DCONFIG=<config>] [-DMOVED=<dir>]
#         -P install_tree.cmake
# With MOVED, the installed prefix is also copied to <dir> (the relocation test uses it).
# Fails when `cmake --install` fails or when the package files consumers need are missing.
foreach(var BUILD_DIR PREFIX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_tree.cmake: -D${var}=... is required")
  endif()
endforeach()

# A fresh prefix every time: stale headers from an earlier install must not hide a missing one.
file(REMOVE_RECURSE "${PREFIX}")
set(_cmd "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}")
if(CONFIG)
  list(APPEND _cmd --config "${CONFIG}")
endif()
execute_process(COMMAND ${_cmd} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${_rc}):\n${_out}\n${_err}\n"
                      "(the install test needs the whole build tree built first)")
endif()

# The package must be findable (config, version, targets) and carry the core headers.
file(GLOB_RECURSE _config "${PREFIX}/grpoConfig.cmake")
file(GLOB_RECURSE _version "${PREFIX}/grpoConfigVersion.cmake")
file(GLOB_RECURSE _targets "${PREFIX}/grpoTargets.cmake")
file(GLOB_RECURSE _traits "${PREFIX}/tensor_traits.hpp")
foreach(what _config _version _targets _traits)
  list(LENGTH ${what} _n)
  if(NOT _n EQUAL 1)
    message(FATAL_ERROR "install_tree.cmake: expected exactly one ${what} under ${PREFIX}, "
                        "found ${_n}: '${${what}}'")
  endif()
endforeach()
message(STATUS "grpo installed into ${PREFIX} (config ${_config})")

# A copy of the prefix somewhere else, for the relocation test (a relocatable package works from
# wherever its files are put).
if(MOVED)
  file(REMOVE_RECURSE "${MOVED}")
  get_filename_component(_parent "${MOVED}" DIRECTORY)
  file(MAKE_DIRECTORY "${_parent}")
  file(COPY "${PREFIX}/" DESTINATION "${MOVED}")
  message(STATUS "grpo install copied to ${MOVED}")
endif()
