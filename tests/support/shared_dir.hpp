// SPDX-License-Identifier: Apache-2.0
/// @file shared_dir.hpp
/// @brief Where the tests find the shared data directory (peer conformance files): the
///        environment variable GRPO_SHARED_DIR when set, else the directory the build was
///        configured with (CMake cache variable GRPO_SHARED_DIR, default <source>/../shared).
///        A missing file is reported with the full path looked in and how to point the tests
///        elsewhere, not as a bare `REQUIRE( f.good() )`.
#pragma once

#include <cstdlib>
#include <string>

namespace grpo_test {

/// The shared directory: $GRPO_SHARED_DIR, else the configured default.
inline std::string shared_dir() {
  if (const char* env = std::getenv("GRPO_SHARED_DIR"); env != nullptr && *env != '\0') return env;
#ifdef GRPO_SHARED_DIR
  return GRPO_SHARED_DIR;
#else
  return "../shared";
#endif
}

/// Full path of `relative` (e.g. "conformance/grpo_peer_cases.json") under the shared directory.
inline std::string shared_path(const std::string& relative) {
  return shared_dir() + "/" + relative;
}

/// Message for a shared file that cannot be opened: the path looked in and the two ways to fix it.
inline std::string shared_missing(const std::string& path) {
  return "cannot open " + path +
         "\n  The peer conformance files live in the shared data directory next to the source "
         "tree (../shared from the repository root, with conformance/ inside). Point the tests "
         "at it with the environment variable GRPO_SHARED_DIR=<dir> when running them, or "
         "configure with -DGRPO_SHARED_DIR=<dir>.";
}

}  // namespace grpo_test
