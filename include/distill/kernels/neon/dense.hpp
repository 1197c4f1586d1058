// SPDX-License-Identifier: Apache-2.0
/// @file dense.hpp
/// @brief The NEON kernels of the distillation rows: pass 1 of a single row
///        (neon::row_lse_store: SFT and top-k) and the whole dense divergence row
///        (neon::dense_row), instantiated from the arch-generic text of kernels/vector_pass1.ipp
///        and kernels/vector_dense.ipp over grpo::simd::neon (4-float packets). Compiled in every
///        aarch64 build (Advanced SIMD is baseline there); called when grpo::active_isa() is neon.
///        Results differ from the portable path by the exp polynomial (< 3e-7 relative near 0)
///        and the summation order, as on AVX2 (tests/distill run every test on every path through
///        isa_paths.hpp, against the same oracle and bounds).
#pragma once

#include <distill/detail/divergence.hpp>
#include <distill/detail/row_math.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/simd/arch/neon/packet.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

/// Software prefetch distance of pass 1, in chunks (also set by kernels/avx2/dense.hpp).
#ifndef GRPO_DISTILL_PREFETCH_CHUNKS
#define GRPO_DISTILL_PREFETCH_CHUNKS 4
#endif

#if GRPO_SIMD_HAS_NEON_PACKET
namespace grpo::distill::detail {
inline namespace GRPO_ISA_ABI {
namespace neon {

using P = ::grpo::simd::neon;

/// c - a b (one rounding) and a / b: the two operations the generic text needs beyond the packet
/// API.
GRPO_FORCEINLINE float32x4_t fnmadd_(float32x4_t a, float32x4_t b, float32x4_t c) noexcept {
  return P::fnmadd(a, b, c);
}
GRPO_FORCEINLINE float32x4_t div_(float32x4_t a, float32x4_t b) noexcept { return P::div(a, b); }
/// Lane counters of the exp sweeps (as on AVX2): P::mask lanes are all-ones or 0, so c - m adds 1
/// where m holds.
using vcount = uint32x4_t;
GRPO_FORCEINLINE vcount count_zero_() noexcept { return vdupq_n_u32(0); }
GRPO_FORCEINLINE vcount count_add_(vcount c, uint32x4_t m) noexcept { return vsubq_u32(c, m); }
GRPO_FORCEINLINE index_t count_total_(vcount c) noexcept {
  return static_cast<index_t>(vaddvq_u32(c));
}

#include <distill/kernels/vector_pass1.ipp>
#include <distill/kernels/vector_dense.ipp>

}  // namespace neon
}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::distill::detail

#endif  // GRPO_SIMD_HAS_NEON_PACKET
