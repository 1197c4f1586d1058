// SPDX-License-Identifier: Apache-2.0
// The AVX2 and NEON packets compute exp / exp_fast / exp_full / log with the same operations
// (same reduction constants, polynomials, fused multiply-adds and roundings), so they must return
// the same bits for the same input. Each architecture digests its packet's outputs over one fixed
// input set (every 4099th float bit pattern: all binades, subnormals, infinities, NaNs; plus a
// dense grid on [-100, 100]) and compares the digest with the one constant below, which the AVX2
// packet produced on x86-64: a NEON result that differs from AVX2 in any bit fails on aarch64.
// On x86-64 without AVX2 (or with neither packet) the test reports SKIPPED.
#include <grpo/core/isa.hpp>
#include <grpo/simd/arch/avx2/packet.hpp>
#include <grpo/simd/arch/neon/packet.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

/// The input set: whole packets of either width (a multiple of 8 values).
std::vector<float> inputs() {
  std::vector<float> x;
  for (std::uint64_t b = 0; b <= 0xffffffffu; b += 4099u) {
    const auto u = static_cast<std::uint32_t>(b);
    float f;
    std::memcpy(&f, &u, 4);
    x.push_back(f);
  }
  for (int i = -200000; i <= 200000; ++i) x.push_back(static_cast<float>(i) * 5e-4f);
  while (x.size() % 8 != 0) x.push_back(0.5f);
  return x;
}

/// FNV-1a (64 bit) over the output bits in input order, function by function; every NaN is
/// hashed as one pattern (x86 and ARM differ in the sign of a generated NaN).
struct digest {
  std::uint64_t h = 1469598103934665603ull;
  void add(float v) {
    std::uint32_t u;
    std::memcpy(&u, &v, 4);
    if (std::isnan(v)) u = 0x7fc00000u;
    for (int k = 0; k < 4; ++k) {
      h ^= (u >> (8 * k)) & 0xffu;
      h *= 1099511628211ull;
    }
  }
};

/// The AVX2 packet's digest (x86-64, this file's inputs).
constexpr std::uint64_t expected = 0x7be3cdcd47628982ull;

}  // namespace

#if GRPO_SIMD_HAS_AVX2_PACKET || GRPO_SIMD_HAS_NEON_PACKET
#if GRPO_SIMD_HAS_NEON_PACKET
#define GRPO_T_BEGIN
#define GRPO_T_END
#define GRPO_T_PACKET ::grpo::simd::neon
#else
#define GRPO_T_BEGIN GRPO_BEGIN_TARGET_AVX2
#define GRPO_T_END GRPO_END_TARGET
#define GRPO_T_PACKET ::grpo::simd::avx2
#endif
GRPO_T_BEGIN
namespace t_bits {
using A = GRPO_T_PACKET;
/// exp and exp_fast on x clamped into their contract range [-87.3, 88.3]; exp_full and log on x.
void run(const float* x, std::size_t n, float* o) {
  const auto lo = A::set1(-87.3f), hi = A::set1(88.3f);
  for (std::size_t i = 0; i < n; i += A::lanes) {
    const auto v = A::load(x + i);
    const auto c = A::max(A::min(v, hi), lo);
    A::store(o + i, A::exp(c));
    A::store(o + n + i, A::exp_fast(c));
    A::store(o + 2 * n + i, A::exp_full(v));
    A::store(o + 3 * n + i, A::log(v));
  }
}
}  // namespace t_bits
GRPO_T_END

TEST_CASE("AVX2 and NEON packets: exp / exp_fast / exp_full / log return the same bits") {
#if !GRPO_SIMD_HAS_NEON_PACKET
  if (!grpo::isa_available(grpo::isa::avx2)) {
    MESSAGE("SKIPPED: the avx2 packet (this CPU lacks avx2)");
    return;
  }
#endif
  const std::vector<float> x = inputs();
  std::vector<float> o(4 * x.size());
  t_bits::run(x.data(), x.size(), o.data());
  digest d;
  for (float v : o) d.add(v);
  char hex[19];
  std::snprintf(hex, sizeof hex, "0x%016llx", static_cast<unsigned long long>(d.h));
  MESSAGE(std::string(grpo::isa_name(t_bits::A::level)) << " packet digest over " << x.size()
                                                        << " inputs: " << std::string(hex));
  CHECK(d.h == expected);
}
#else
TEST_CASE("AVX2 and NEON packets: exp / exp_fast / exp_full / log return the same bits") {
  MESSAGE("SKIPPED: neither the avx2 nor the neon packet in this build");
}
#endif
