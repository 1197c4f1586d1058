// SPDX-License-Identifier: Apache-2.0
/// @file isa_paths.hpp
/// @brief Runs a test body once per vector path of the distillation engine (baseline, AVX2,
///        AVX-512) under grpo::scoped_isa_limit, so that every kernel meets the same oracle and
///        bounds; a path this CPU or build cannot run is reported as a doctest MESSAGE
///        "SKIPPED: ..." (never silently left out).
#pragma once

#include <grpo/core/isa.hpp>

#include <doctest/doctest.h>

#include <string>

namespace distill_paths {

/// body() on every path; INFO names the path for failures inside it.
template <class F>
void for_each(F&& body) {
  for (grpo::isa path :
       {grpo::isa::baseline, grpo::isa::avx2, grpo::isa::avx512, grpo::isa::neon}) {
    const std::string name = grpo::isa_name(path);
    if (!grpo::isa_available(path)) {
      MESSAGE("SKIPPED: the " << name << " path (this CPU or build lacks it)");
      continue;
    }
    const grpo::scoped_isa_limit pin(path);
    INFO("path ", name);
    body();
  }
}

}  // namespace distill_paths
