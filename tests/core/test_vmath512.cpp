// SPDX-License-Identifier: Apache-2.0
// The ISA packets of grpo/simd/arch (avx2 and avx512: exp / exp_fast / exp_full / log, bf16 and
// fp16 conversions, masked tails, non-temporal stores, reductions) against double-precision libm
// and the scalar storage types, one run per packet the CPU has; a packet the CPU lacks is reported
// as SKIPPED. Every packet is compiled in every x86-64 build (target regions).
#include <grpo/core/half.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/simd/arch/avx2/packet.hpp>
#include <grpo/simd/arch/avx512/packet.hpp>
#include <grpo/core/vmath512.hpp>  // the compatibility header must keep compiling

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if !GRPO_SIMD_HAS_AVX2_PACKET || !GRPO_SIMD_HAS_AVX512_PACKET
// Not x86-64 with run-time dispatch (aarch64, or a compiler without target regions): no packet.
TEST_CASE("ISA packets") {
  MESSAGE("SKIPPED: the avx2 / avx512 packets (not an x86-64 build with run-time dispatch)");
}
#else

using grpo::bfloat16;
using grpo::float16;

GRPO_BEGIN_TARGET_AVX2
namespace t_avx2 {
using A = grpo::simd::avx2;
#include "packet_cases.ipp"
}  // namespace t_avx2
GRPO_END_TARGET

GRPO_BEGIN_TARGET_AVX512
namespace t_avx512 {
using A = grpo::simd::avx512;
#include "packet_cases.ipp"
}  // namespace t_avx512
GRPO_END_TARGET

namespace {
#include "packet_contract_ops.ipp"

/// The packets this CPU can run; the others are reported as skipped.
std::vector<ops> available() {
  std::vector<ops> r;
  const ops all[] = {GRPO_TEST_OPS(t_avx2, grpo::isa::avx2),
                     GRPO_TEST_OPS(t_avx512, grpo::isa::avx512)};
  for (const ops& o : all) {
    if (static_cast<int>(grpo::best_isa()) >= static_cast<int>(o.level))
      r.push_back(o);
    else
      MESSAGE("SKIPPED: the " << std::string(o.name) << " packet (this CPU lacks "
                              << std::string(grpo::isa_name(o.level))
                              << ")");
  }
  return r;
}

}  // namespace

#include "packet_contract_cases.ipp"

#endif  // the packets
