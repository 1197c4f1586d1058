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

namespace {

/// Largest |a - b| / (max |b| + 1e-3) over a record's values and |loss_a - loss_b| / (|loss_b| +
/// 0.05): relative differences with an absolute floor for outputs that are identically 0 up to
/// rounding (the JSD formula at beta = 0: lq - log q with q from the exp cache, ~1e-7 of noise on
/// every path).
struct diff {
  double loss = 0.0, values = 0.0;
};
diff compare(const db::record& a, const db::record& b) {
  diff d;
  d.loss = std::fabs(a.loss - b.loss) / (std::fabs(b.loss) + 0.05);
  double scale = 0.0;
  for (double v : b.values)
    if (std::isfinite(v)) scale = std::max(scale, std::fabs(v));
  for (std::size_t i = 0; i < a.values.size() && i < b.values.size(); ++i) {
    const double x = a.values[i], y = b.values[i];
    if (x == y) continue;  // also equal infinities
    d.values = std::max(d.values, std::fabs(x - y) / (scale + 1e-3));
  }
  return d;
}

}  // namespace

TEST_CASE("distill behaviour: every ISA path agrees with the baseline path" *
          doctest::test_suite("distill")) {
  std::vector<db::record> base;
  {
    const grpo::scoped_isa_limit pin(grpo::isa::baseline);
    base = run_all();
  }
  for (grpo::isa path : {grpo::isa::avx2, grpo::isa::avx512, grpo::isa::neon}) {
    if (!grpo::isa_available(path)) {
      MESSAGE("SKIPPED: the " << std::string(grpo::isa_name(path)) << " path (this CPU or build lacks it)");
      continue;
    }
    const grpo::scoped_isa_limit pin(path);
    REQUIRE(grpo::active_isa() == path);
    const std::vector<db::record> recs = run_all();
    REQUIRE(recs.size() == base.size());
    diff worst, worst32;
    std::string wl, wv, wv32;
    for (std::size_t i = 0; i < recs.size(); ++i) {
      REQUIRE(recs[i].name == base[i].name);
      REQUIRE(recs[i].values.size() == base[i].values.size());
      const std::string& nm = recs[i].name;
      const diff d = compare(recs[i], base[i]);
      const bool half = nm.find("bf16") != std::string::npos || nm.find("f16") != std::string::npos;
      const bool degenerate = nm.find("formula0") != std::string::npos;
      if (!degenerate && d.loss > worst.loss) worst.loss = d.loss, wl = nm;
      if (!degenerate && half && d.values > worst.values) worst.values = d.values, wv = nm;
      if (!degenerate && !half && d.values > worst32.values) worst32.values = d.values, wv32 = nm;
      // Bounds: the fp32 paths differ by the exp polynomials (portable fast_exp vs the packets'
      // exp_fast, each < 3e-7 relative near 0), log, and the summation order: 2e-5 of the loss,
      // 1e-4 of the largest output of fp32 / fp64 outputs; 16-bit gradients may round to the
      // neighbouring value: one bf16 ulp (2^-8) of the largest output.
      CHECK_MESSAGE(d.loss <= 2e-5, nm << " loss rel diff " << d.loss);
      CHECK_MESSAGE(d.values <= (half || degenerate ? 8e-3 : 1e-4), nm << " values diff " << d.values);
    }
    MESSAGE(std::string(grpo::isa_name(path)) << " vs baseline: worst loss rel diff " << worst.loss << " ("
                                 << wl << "), worst output diff " << worst32.values << " (" << wv32
                                 << "; 16-bit outputs " << worst.values << ", " << wv << ")");
  }
}
