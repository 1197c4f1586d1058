// SPDX-License-Identifier: Apache-2.0
// The NEON packet of grpo/simd/arch/neon (exp / exp_fast / exp_full / log, bf16 and fp16
// conversions, masked tails, stores, reductions, x86-style max / min and the fused multiply-adds)
// against double-precision libm and the scalar storage types, with the same cases and bounds as
// test_vmath512.cpp holds the AVX2 / AVX-512 packets to (the case bodies are that file's, the
// packet operations tests/core/packet_cases.ipp). Runs on aarch64 (under qemu-user in the cross
// build: scripts/test-aarch64.sh); on any other architecture it reports SKIPPED.
#include <grpo/core/half.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/simd/arch/neon/packet.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if !GRPO_SIMD_HAS_NEON_PACKET
TEST_CASE("NEON packet") {
  MESSAGE("SKIPPED: the neon packet (not an aarch64 build)");
}
#else

using grpo::bfloat16;
using grpo::float16;

namespace t_neon {
using A = grpo::simd::neon;
#include "packet_cases.ipp"

/// max / min / fmadd / fmsub / fnmadd / select on one packet each, stored to out[0, 4 * 6).
inline void arith(const float* a, const float* b, const float* c, float* out) {
  const A::vf va = A::load(a), vb = A::load(b), vc = A::load(c);
  A::store(out + 0, A::max(va, vb));
  A::store(out + 4, A::min(va, vb));
  A::store(out + 8, A::fmadd(va, vb, vc));
  A::store(out + 12, A::fmsub(va, vb, vc));
  A::store(out + 16, A::fnmadd(va, vb, vc));
  A::store(out + 20, A::select(A::cmp_gt(va, vb), vc, A::zero()));
}
}  // namespace t_neon

namespace {
#include "packet_contract_ops.ipp"

/// The NEON packet (every aarch64 CPU has it: never skipped on aarch64).
std::vector<ops> available() {
  REQUIRE(grpo::best_isa() == grpo::isa::neon);
  return {GRPO_TEST_OPS(t_neon, grpo::isa::neon)};
}

}  // namespace

#include "packet_contract_cases.ipp"


TEST_CASE("neon: max / min keep x86 NaN semantics; fused multiply-adds round once") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // Lanes: NaN first, NaN second, ordinary, equal.
  const float a[4] = {nan, 1.0f, -2.0f, 3.0f}, b[4] = {5.0f, nan, 4.0f, 3.0f};
  const float c[4] = {0.25f, 0.5f, 0.75f, 1.0f};
  float out[24];
  t_neon::arith(a, b, c, out);
  // max(a, b) = a > b ? a : b: a NaN in either operand returns b (vmaxps); min likewise.
  CHECK(out[0] == 5.0f);
  CHECK(std::isnan(out[1]));
  CHECK(out[2] == 4.0f);
  CHECK(out[3] == 3.0f);
  CHECK(out[4] == 5.0f);
  CHECK(std::isnan(out[5]));
  CHECK(out[6] == -2.0f);
  CHECK(out[7] == 3.0f);
  // One rounding: a b + c with a b = 1 + 2^-23 + 2^-24 (inexact in float) minus its float.
  const float x[4] = {1.0f + 0x1p-23f, 3.0f, -1.5f, 0.1f};
  const float y[4] = {1.0f + 0x1p-23f, 0.5f, 2.0f, 10.0f};
  float z[4];
  for (int k = 0; k < 4; ++k) z[k] = -(x[k] * y[k]);  // the product rounded to float, negated
  t_neon::arith(x, y, z, out);
  for (int k = 0; k < 4; ++k) {
    const double exact = double(x[k]) * double(y[k]) + double(z[k]);
    CHECK(out[8 + k] == static_cast<float>(exact));                     // fmadd
    CHECK(out[12 + k] == static_cast<float>(double(x[k]) * y[k] - z[k]));  // fmsub
    CHECK(out[16 + k] == static_cast<float>(double(z[k]) - double(x[k]) * y[k]));  // fnmadd
  }
  CHECK(out[8] == 0x1p-46f);  // the residual of the first lane: 0 if the product were rounded
  CHECK(out[20] == 0.0f);     // select(x > y, z, 0): x == y in lane 0
  CHECK(out[21] == z[1]);
}

#endif  // GRPO_SIMD_HAS_NEON_PACKET
