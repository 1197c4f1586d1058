// SPDX-License-Identifier: Apache-2.0
// Behaviour pin of grpo::distill across refactors: every entry point on a fixed set of inputs
// (behaviour_cases.hpp). Oracle 1: tests/distill/data/behaviour_golden.txt, written by the code
// BEFORE the engine was split (commit of issue 15, step 0) with the same compiler and flags:
// the baseline path must reproduce it bitwise (loss and a hash of every output byte). Built with
// other flags or another compiler the portable code may round differently: reported as skipped.
// Oracle 2: every run-time ISA path (AVX2, AVX-512 when the CPU has it) against the baseline
// path, to the bound stated in check_close.
//
// GRPO_DISTILL_DUMP=<file> writes the golden file of this build instead of checking it.
#include "behaviour_cases.hpp"

#include <grpo/core/isa.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace db = distill_behaviour;

namespace {

#define DB_STR2(x) #x
#define DB_STR(x) DB_STR2(x)

/// The build the golden file belongs to: ABI tag of the flags and the compiler.
std::string build_id() {
#if defined(__clang__)
  const std::string cc = "clang-" DB_STR(__clang_major__);
#elif defined(__GNUC__)
  const std::string cc = "gcc-" DB_STR(__GNUC__);
#else
  const std::string cc = "other";
#endif
  return std::string(DB_STR(GRPO_ISA_ABI)) + "/" + cc;
}

std::vector<db::record> run_all() {
  std::vector<db::record> out;
  db::all_cases([&](db::record&& r) { out.push_back(std::move(r)); });
  return out;
}

std::string hex(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%a", v);
  return b;
}

}  // namespace

TEST_CASE("distill behaviour: the baseline path reproduces the pre-refactor outputs bitwise" *
          doctest::test_suite("distill")) {
  const grpo::scoped_isa_limit pin(grpo::isa::baseline);
  const std::vector<db::record> recs = run_all();
  REQUIRE(recs.size() > 300);
  if (const char* dump = std::getenv("GRPO_DISTILL_DUMP")) {
    std::ofstream f(dump);
    f << "build " << build_id() << "\n";
    for (const auto& r : recs) f << r.name << " " << hex(r.loss) << " " << std::hex << r.hash
                                 << std::dec << "\n";
    MESSAGE("wrote " << recs.size() << " cases to " << std::string(dump));
    return;
  }
  std::ifstream f(std::string(GRPO_SOURCE_DIR) + "/tests/distill/data/behaviour_golden.txt");
  REQUIRE(f.good());
  std::string line, word, id;
  std::getline(f, line);
  std::istringstream(line) >> word >> id;
  if (id != build_id()) {
    MESSAGE("SKIPPED: the golden file was written by build " << id << ", this is "
                                                             << build_id());
    return;
  }
  std::map<std::string, std::pair<std::string, std::string>> golden;
  while (std::getline(f, line)) {
    std::istringstream is(line);
    std::string name, loss, hash;
    is >> name >> loss >> hash;
    golden[name] = {loss, hash};
  }
  CHECK(golden.size() == recs.size());
  int same = 0;
  for (const auto& r : recs) {
    const auto it = golden.find(r.name);
    REQUIRE_MESSAGE(it != golden.end(), r.name);
    std::ostringstream h;
    h << std::hex << r.hash;
    CHECK_MESSAGE(it->second.first == hex(r.loss), r.name);
    CHECK_MESSAGE(it->second.second == h.str(), r.name);
    same += it->second.first == hex(r.loss) && it->second.second == h.str();
  }
  MESSAGE(same << " of " << recs.size() << " cases bitwise identical");
}
