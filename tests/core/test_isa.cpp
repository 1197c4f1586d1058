// SPDX-License-Identifier: Apache-2.0
/// @file test_isa.cpp
/// @brief core/isa.hpp: CPU detection against /proc/cpuinfo, limits (set_isa_limit, scoped,
///        GRPO_ISA names), and target regions (templates and lambdas compiled for AVX2 / AVX-512
///        inside a portable translation unit, run only where the CPU has them).
#include <grpo/core/isa.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#if GRPO_RUNTIME_DISPATCH
#include <immintrin.h>
#endif

namespace {

/// The "flags" line of /proc/cpuinfo as a set (empty where the file does not exist).
std::set<std::string> proc_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::set<std::string> out;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) {
      std::istringstream ss(line.substr(line.find(':') + 1));
      std::string f;
      while (ss >> f) out.insert(f);
      break;
    }
  }
  return out;
}

}  // namespace

#if GRPO_RUNTIME_DISPATCH
GRPO_BEGIN_TARGET_AVX2
namespace isa_test::avx2 {
// A template and a lambda inside the region: both must get the target (else the intrinsic
// would not compile in this portable TU).
template <class T>
T sum8(const T* p) {
  auto hsum = [](__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  };
  return hsum(_mm256_fmadd_ps(_mm256_loadu_ps(p), _mm256_set1_ps(2.0f), _mm256_set1_ps(0.5f)));
}
}  // namespace isa_test::avx2
GRPO_END_TARGET

GRPO_BEGIN_TARGET_AVX512
namespace isa_test::avx512 {
inline float sum16(const float* p) {
  return _mm512_reduce_add_ps(_mm512_fmadd_ps(_mm512_loadu_ps(p), _mm512_set1_ps(2.0f),
                                              _mm512_set1_ps(0.5f)));
}
}  // namespace isa_test::avx512
GRPO_END_TARGET
#endif

TEST_CASE("isa: detection agrees with /proc/cpuinfo") {
  const auto f = proc_flags();
  if (f.empty()) {
    MESSAGE("no /proc/cpuinfo flags line: detection not cross-checked");
    return;
  }
#if GRPO_RUNTIME_DISPATCH
  const bool avx2 = f.count("avx2") && f.count("fma") && f.count("f16c") && f.count("bmi2");
  const bool avx512 = avx2 && f.count("avx512f") && f.count("avx512bw") && f.count("avx512dq") &&
                      f.count("avx512vl");
  CHECK(grpo::cpu().avx2 == avx2);
  CHECK(grpo::cpu().avx512 == avx512);
  CHECK(grpo::best_isa() ==
        (avx512 ? grpo::isa::avx512 : avx2 ? grpo::isa::avx2 : grpo::isa::baseline));
  MESSAGE("this CPU's best path: " << std::string(grpo::isa_name(grpo::best_isa())));
#elif GRPO_ARCH_AARCH64 && defined(__ARM_NEON)
  CHECK(grpo::best_isa() == grpo::isa::neon);  // Advanced SIMD: baseline of AArch64
#else
  CHECK(grpo::best_isa() == grpo::isa::baseline);
#endif
}

TEST_CASE("isa: limits cap the active path and restore") {
  const grpo::isa best = grpo::best_isa();
  grpo::clear_isa_limit();
  {
    grpo::scoped_isa_limit lim(grpo::isa::baseline);
    CHECK(grpo::active_isa() == grpo::isa::baseline);
    {
      grpo::scoped_isa_limit inner(grpo::isa::avx2);
      CHECK(grpo::active_isa() == (best == grpo::isa::baseline ? grpo::isa::baseline
                                   : best == grpo::isa::neon   ? grpo::isa::neon
                                                               : grpo::isa::avx2));
    }
    CHECK(grpo::active_isa() == grpo::isa::baseline);
  }
  // Without an override the environment decides (CTest runs without GRPO_ISA unless a test sets
  // it; ctest -E can re-run the suite with GRPO_ISA=avx2).
  CHECK(static_cast<int>(grpo::active_isa()) <= static_cast<int>(best));
  grpo::set_isa_limit(grpo::isa::avx512);
  CHECK(grpo::active_isa() == best);  // a limit above the CPU never raises the path
  grpo::clear_isa_limit();
}

TEST_CASE("isa: cap_isa ranks paths per architecture (hand table)") {
  using grpo::isa;
  using grpo::cap_isa;
  // x86-64: baseline < avx2 < avx512; a neon limit is rank 1 (avx2 there).
  CHECK(cap_isa(isa::avx512, isa::avx512) == isa::avx512);
  CHECK(cap_isa(isa::avx512, isa::avx2) == isa::avx2);
  CHECK(cap_isa(isa::avx512, isa::neon) == isa::avx2);
  CHECK(cap_isa(isa::avx512, isa::baseline) == isa::baseline);
  CHECK(cap_isa(isa::avx2, isa::avx512) == isa::avx2);
  CHECK(cap_isa(isa::avx2, isa::baseline) == isa::baseline);
  CHECK(cap_isa(isa::baseline, isa::avx512) == isa::baseline);
  // aarch64: baseline < neon; every x86 limit above baseline keeps neon.
  CHECK(cap_isa(isa::neon, isa::avx512) == isa::neon);
  CHECK(cap_isa(isa::neon, isa::avx2) == isa::neon);
  CHECK(cap_isa(isa::neon, isa::neon) == isa::neon);
  CHECK(cap_isa(isa::neon, isa::baseline) == isa::baseline);
  // isa_available: exactly the paths scoped_isa_limit(k) selects as k.
  for (isa k : {isa::baseline, isa::avx2, isa::avx512, isa::neon}) {
    CAPTURE(std::string(grpo::isa_name(k)));
    grpo::scoped_isa_limit pin(k);
    CHECK(grpo::isa_available(k) == (grpo::active_isa() == k));
  }
}

TEST_CASE("isa: names parse back; unknown names are refused") {
  for (auto i : {grpo::isa::baseline, grpo::isa::avx2, grpo::isa::avx512, grpo::isa::neon}) {
    grpo::isa out{};
    bool unl = true;
    REQUIRE(grpo::parse_isa(grpo::isa_name(i), out, unl));
    CHECK(out == i);
    CHECK_FALSE(unl);
  }
  grpo::isa out{};
  bool unl = false;
  CHECK(grpo::parse_isa("AVX2", out, unl));
  CHECK(out == grpo::isa::avx2);
  CHECK(grpo::parse_isa("native", out, unl));
  CHECK(unl);
  CHECK_FALSE(grpo::parse_isa("avx3", out, unl));
  CHECK_FALSE(grpo::parse_isa("", out, unl));
  CHECK_FALSE(grpo::parse_isa(nullptr, out, unl));
}

TEST_CASE("isa: target regions run the ISA code where the CPU has it") {
  std::vector<float> x(16);
  std::iota(x.begin(), x.end(), 1.0f);
  // sum(2 x + 0.5) over 8 / 16 values, exact in float: hand-computed 2*36+4 and 2*136+8.
#if GRPO_RUNTIME_DISPATCH
  if (grpo::cpu().avx2) {
    CHECK(isa_test::avx2::sum8(x.data()) == 76.0f);
  } else {
    MESSAGE("SKIPPED: the AVX2 region check (this CPU has no AVX2)");
  }
  if (grpo::cpu().avx512) {
    CHECK(isa_test::avx512::sum16(x.data()) == 280.0f);
  } else {
    MESSAGE("SKIPPED: the AVX-512 region check (this CPU has no AVX-512); compiled only");
  }
#else
  MESSAGE("SKIPPED: no run-time dispatch in this build (GRPO_RUNTIME_DISPATCH=0)");
#endif
}
