// SPDX-License-Identifier: Apache-2.0
// Link test of the ABI namespaces: one program holds the vocabulary engine twice, from a
// translation unit built with -march=native (link_native.cpp) and from this portable one. Both run
// on every path this CPU has and agree; their engine types live in different ABI namespaces
// (GRPO_ISA_ABI), so the linker never merges an inline function compiled for one set of flags into
// the other TU (an ODR violation that could run AVX2 code on a baseline CPU).
#include <grpo/logprob.hpp>

#include "logprob/link_tu.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <typeinfo>
#include <vector>

#define GRPO_LINK_FN run_portable
#include "logprob/link_body.ipp"

TEST_CASE("link: a -march=native TU and a portable TU in one program run and agree") {
  const link_result probe = run_native(grpo::isa::baseline);
  const link_result mine = run_portable(grpo::isa::baseline);
  MESSAGE("native TU: " << probe.abi << ", portable TU: " << mine.abi);
  if (probe.abi == mine.abi) {
    MESSAGE("SKIPPED: this build's flags already equal -march=native's (" << mine.abi
                                                                          << "): nothing to tell apart");
  } else {
    CHECK(probe.type_name != mine.type_name);  // the mangled names carry the ABI namespace
  }
  for (grpo::isa k : {grpo::isa::baseline, grpo::isa::avx2, grpo::isa::avx512}) {
    if (static_cast<int>(grpo::best_isa()) < static_cast<int>(k)) {
      MESSAGE("SKIPPED: path " << std::string(grpo::isa_name(k)) << " (this CPU lacks it)");
      continue;
    }
    INFO("path " << grpo::isa_name(k));
    const link_result a = run_native(k), b = run_portable(k);
    CHECK(a.path == b.path);
    REQUIRE(a.logp.size() == b.logp.size());
    // The two TUs compile the same source with different flags (e.g. FMA contraction of the
    // scalar epilogues in the native TU): equal to float rounding, 1e-6 relative.
    for (std::size_t i = 0; i < a.logp.size(); ++i) {
      CHECK(std::abs(a.logp[i] - b.logp[i]) <= 1e-6f * std::max(1.0f, std::abs(b.logp[i])));
      CHECK(std::abs(a.lse[i] - b.lse[i]) <= 1e-6f * std::max(1.0f, std::abs(b.lse[i])));
      CHECK(std::abs(a.ent[i] - b.ent[i]) <= 1e-6f * std::max(1.0f, b.ent[i]));
    }
    float gmax = 0.0f;
    for (float g : b.grad) gmax = std::max(gmax, std::abs(g));
    int bad = 0;
    for (std::size_t j = 0; j < a.grad.size(); ++j)
      bad += !(std::abs(a.grad[j] - b.grad[j]) <= 1e-5f * std::abs(b.grad[j]) + 1e-7f * gmax);
    CHECK(bad == 0);
    CHECK(gmax > 0.0f);
  }
}
