// SPDX-License-Identifier: Apache-2.0
// The AVX2 and NEON packets compute exp / exp_fast / exp_full / log with the same operations
// (same reduction constants, polynomials, fused multiply-adds and roundings), so they must return
// the same bits for the same input. Each architecture digests its packet's outputs over one fixed
// input set (every 4099th float bit pattern: all binades, subnormals, infinities, NaNs; plus a
// dense grid on [-100, 100]) and compares the digest with the one constant below, which the AVX2
// packet produced on x86-64: a NEON result that differs from AVX2 in any bit fails on aarch64.
// On x86-64 without AVX2 (or with neither packet) the test reports SKIPPED.
#include <grpo/core/half.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/simd/arch/avx2/packet.hpp>
#include <grpo/simd/arch/avx512/packet.hpp>
#include <grpo/simd/arch/neon/packet.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
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

// ----- stream2_nonan: the pair store of the gradient sweeps writes stream()'s bits -------------
// For every non-NaN float of the input set (all binades, subnormals, +-0, +-inf, and bf16
// rounding ties: patterns with the low 16 bits 0x8000), in float, bf16 and fp16 storage, pairs of
// packets stored by A::stream2_nonan equal two A::stream stores bit for bit.
namespace {
std::vector<float> nonan_inputs() {
  std::vector<float> x;
  for (float v : inputs())
    if (!std::isnan(v)) x.push_back(v);
  for (std::uint32_t hi : {0x3f80u, 0x3f81u, 0x7f7fu, 0x0000u, 0x0001u, 0xbf80u, 0xff7fu, 0x8001u})
    for (std::uint32_t lo : {0x7fffu, 0x8000u, 0x8001u, 0x0000u, 0xffffu}) {
      const std::uint32_t u = (hi << 16) | lo;
      float f;
      std::memcpy(&f, &u, 4);
      x.push_back(f);
    }
  x.push_back(__builtin_inff());
  x.push_back(-__builtin_inff());
  return x;
}
}  // namespace

/// Mismatching elements between the two stores over x, in storage G (a multiple of 2 lanes of
/// x, the rest padded with 1). A macro: each packet's copy must be defined inside its target
/// region.
#define GRPO_T_STREAM2_MISMATCHES                                                                  \
  template <class A, class G>                                                                      \
  std::size_t stream2_mismatches(std::vector<float> x) {                                           \
    constexpr std::size_t L2 = 2 * A::lanes;                                                       \
    while (x.size() % L2 != 0) x.push_back(1.0f);                                                  \
    std::vector<G> a(x.size() + 64), b(x.size() + 64);                                             \
    /* Aligned to 2 packets of G (stream2_nonan contract; also aligns stream()). */                \
    const auto align = [](std::vector<G>& v) {                                                     \
      auto q = reinterpret_cast<std::uintptr_t>(v.data());                                         \
      const std::uintptr_t al = L2 * sizeof(G);                                                    \
      return v.data() + (al - q % al) % al / sizeof(G);                                            \
    };                                                                                             \
    G* pa = align(a);                                                                              \
    G* pb = align(b);                                                                              \
    for (std::size_t i = 0; i < x.size(); i += L2) {                                               \
      const auto u = A::load(x.data() + i), v = A::load(x.data() + i + A::lanes);                  \
      A::stream2_nonan(pa + i, u, v);                                                              \
      A::stream(pb + i, u);                                                                        \
      A::stream(pb + i + A::lanes, v);                                                             \
    }                                                                                              \
    A::sfence();                                                                                   \
    std::size_t bad = 0;                                                                           \
    for (std::size_t i = 0; i < x.size(); ++i) bad += std::memcmp(pa + i, pb + i, sizeof(G)) != 0; \
    return bad;                                                                                    \
  }

#if GRPO_SIMD_HAS_AVX2_PACKET || GRPO_SIMD_HAS_NEON_PACKET
GRPO_T_BEGIN
namespace t_pair {
GRPO_T_STREAM2_MISMATCHES
using A = GRPO_T_PACKET;
std::size_t run(const std::vector<float>& x, int dtype) {
  return dtype == 0   ? stream2_mismatches<A, float>(x)
         : dtype == 1 ? stream2_mismatches<A, grpo::bfloat16>(x)
                      : stream2_mismatches<A, grpo::float16>(x);
}
}  // namespace t_pair
GRPO_T_END
#endif
#if GRPO_SIMD_HAS_AVX512_PACKET
GRPO_BEGIN_TARGET_AVX512
namespace t_pair512 {
GRPO_T_STREAM2_MISMATCHES
using A = ::grpo::simd::avx512;
std::size_t run(const std::vector<float>& x, int dtype) {
  return dtype == 0   ? stream2_mismatches<A, float>(x)
         : dtype == 1 ? stream2_mismatches<A, grpo::bfloat16>(x)
                      : stream2_mismatches<A, grpo::float16>(x);
}
}  // namespace t_pair512
GRPO_END_TARGET
#endif

TEST_CASE("packets: stream2_nonan writes the bits of two stream() stores (float, bf16, fp16)") {
  const std::vector<float> x = nonan_inputs();
  int ran = 0;
#if GRPO_SIMD_HAS_AVX2_PACKET || GRPO_SIMD_HAS_NEON_PACKET
#if !GRPO_SIMD_HAS_NEON_PACKET
  if (grpo::isa_available(grpo::isa::avx2))
#endif
  {
    ++ran;
    for (int dt = 0; dt < 3; ++dt) {
      INFO(grpo::isa_name(t_pair::A::level) << " dtype " << dt << ", " << x.size() << " values");
      CHECK(t_pair::run(x, dt) == 0);
    }
  }
#endif
#if GRPO_SIMD_HAS_AVX512_PACKET
  if (grpo::isa_available(grpo::isa::avx512)) {
    ++ran;
    for (int dt = 0; dt < 3; ++dt) {
      INFO("avx512 dtype " << dt << ", " << x.size() << " values");
      CHECK(t_pair512::run(x, dt) == 0);
    }
  } else {
    MESSAGE("SKIPPED: the avx512 packet (this CPU lacks AVX-512)");
  }
#endif
  if (ran == 0) MESSAGE("SKIPPED: no packet this CPU runs");
}
