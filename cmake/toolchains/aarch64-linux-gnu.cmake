# SPDX-License-Identifier: Apache-2.0
# Cross build for aarch64 Linux with Debian's g++-aarch64-linux-gnu; the tests run under qemu-user
# (qemu-aarch64 -L /usr/aarch64-linux-gnu), which CTest calls through CMAKE_CROSSCOMPILING_EMULATOR.
# Preset `aarch64` (CMakePresets.json) and scripts/test-aarch64.sh use this file.
#
# Libraries: only the arm64 sysroot (/usr/aarch64-linux-gnu, plus /usr/lib/aarch64-linux-gnu for
# multiarch arm64 -dev packages) is searched for libraries, headers and packages, so no x86-64
# shared object can reach an arm64 link. The host's HEADER-ONLY libraries that the tests and the
# vectorised paths use (doctest, nlohmann/json, xsimd: NEON through xsimd's neon64 batches) are
# staged as symbolic links in <build>/host-headers/include, which is added to the compiler's
# system include path (the equivalent of their place in the host's /usr/include), together with
# minimal package configs for doctest and nlohmann_json. /usr/include itself is never on the path:
# it also holds the host's glibc and arch-dependent library headers.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(GRPO_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${GRPO_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${GRPO_CROSS_TRIPLE}-g++)
set(GRPO_CROSS_SYSROOT /usr/${GRPO_CROSS_TRIPLE})
if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
  set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L ${GRPO_CROSS_SYSROOT})
endif()

# The staging directory: fixed by the first (top-level) read of this file and forwarded to the
# try_compile projects, which read this file again from their own binary directory.
if(NOT GRPO_HOST_HEADERS_DIR)
  set(GRPO_HOST_HEADERS_DIR ${CMAKE_BINARY_DIR}/host-headers)
endif()
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES GRPO_HOST_HEADERS_DIR CMAKE_CROSSCOMPILING_EMULATOR)

set(GRPO_HOST_HEADER_ONLY doctest nlohmann xsimd)
if(NOT EXISTS ${GRPO_HOST_HEADERS_DIR}/include)
  file(MAKE_DIRECTORY ${GRPO_HOST_HEADERS_DIR}/include)
  foreach(_h IN LISTS GRPO_HOST_HEADER_ONLY)
    if(EXISTS /usr/include/${_h})
      file(CREATE_LINK /usr/include/${_h} ${GRPO_HOST_HEADERS_DIR}/include/${_h} SYMBOLIC)
    endif()
  endforeach()
  # Package configs: imported targets with no include directory of their own (the staged
  # directory is already a system include directory of every translation unit).
  if(EXISTS /usr/include/doctest/doctest.h)
    file(WRITE ${GRPO_HOST_HEADERS_DIR}/lib/cmake/doctest/doctestConfig.cmake
         "if(NOT TARGET doctest::doctest)\n  add_library(doctest::doctest INTERFACE IMPORTED)\nendif()\n")
  endif()
  # nlohmann_json's version file checks the version only (no pointer size): used as it is.
  set(_nj /usr/share/cmake/nlohmann_json)
  if(EXISTS /usr/include/nlohmann/json.hpp AND EXISTS ${_nj}/nlohmann_jsonConfigVersion.cmake)
    file(WRITE ${GRPO_HOST_HEADERS_DIR}/lib/cmake/nlohmann_json/nlohmann_jsonConfig.cmake
         "if(NOT TARGET nlohmann_json::nlohmann_json)\n"
         "  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)\nendif()\n")
    file(COPY ${_nj}/nlohmann_jsonConfigVersion.cmake
         DESTINATION ${GRPO_HOST_HEADERS_DIR}/lib/cmake/nlohmann_json)
  endif()
endif()
set(CMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES ${GRPO_HOST_HEADERS_DIR}/include)

set(CMAKE_FIND_ROOT_PATH ${GRPO_CROSS_SYSROOT} ${GRPO_HOST_HEADERS_DIR})
set(CMAKE_LIBRARY_ARCHITECTURE ${GRPO_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# pkg-config: arm64 .pc files only (multiarch -dev packages), never the host's.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${GRPO_CROSS_TRIPLE}/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
