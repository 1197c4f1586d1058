// SPDX-License-Identifier: Apache-2.0
// Behaviour kept across the loss engine's split (issue 15): every compute_loss / fused_grpo_step
// case of tests/grpo/loss_dump.hpp (policy kind x IS level x aggregation x KL x TIS x storage
// type, option families, every preset through the fused step) gives, bit for bit, the digest that
// the code before the split wrote to tests/grpo/data/loss_dump.golden. The golden file holds the
// build signature it was written under (ISA macros, compiler): another build reports the check
// as skipped (its kernels round differently), it does not compare. Set GRPO_LOSS_DUMP_WRITE=<file>
// to write this build's dump instead (run-time dispatched code pinned to its baseline path).
#include "loss_dump.hpp"

#include <grpo/core/isa.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace {

std::string golden_path() {
  std::string f = __FILE__;
  return f.substr(0, f.find_last_of('/')) + "/data/loss_dump.golden";
}

std::vector<std::string> current_dump() {
  std::vector<std::string> lines{loss_dump::signature()};
  for (auto& l : loss_dump::loss_cases()) lines.push_back(std::move(l));
  for (auto& l : loss_dump::fused_cases()) lines.push_back(std::move(l));
  return lines;
}

}  // namespace

TEST_CASE("loss dump: every case bitwise equal to the golden file of the unsplit engine") {
  // The golden file holds the portable path of the code dispatched at run time (the fused step's
  // vocabulary rows run an AVX2 / AVX-512 kernel on such CPUs since issue 15; the loss engines
  // here dispatch at compile time only): pinned, so that the comparison stays bitwise.
  const grpo::scoped_isa_limit pin(grpo::isa::baseline);
  const auto lines = current_dump();
  CHECK(lines.size() > 1000);  // the grid is what it claims to be
  if (const char* w = std::getenv("GRPO_LOSS_DUMP_WRITE")) {
    std::ofstream os(w);
    for (const auto& l : lines) os << l << '\n';
    MESSAGE("wrote " << lines.size() << " lines to " << w);
    return;
  }
  std::ifstream is(golden_path());
  REQUIRE_MESSAGE(is.good(), "cannot open " << golden_path());
  std::vector<std::string> gold;
  for (std::string l; std::getline(is, l);) gold.push_back(l);
  REQUIRE(!gold.empty());
  if (gold[0] != lines[0]) {
    MESSAGE("SKIPPED: golden written under '" << gold[0] << "', this build is '" << lines[0]
                                              << "' (different rounding of the kernels)");
    return;
  }
  REQUIRE(gold.size() == lines.size());
  int bad = 0;
  for (std::size_t k = 0; k < lines.size(); ++k)
    if (gold[k] != lines[k] && ++bad <= 20)
      CHECK_MESSAGE(false, "was: " << gold[k] << "\nnow: " << lines[k]);
  CHECK(bad == 0);
}
