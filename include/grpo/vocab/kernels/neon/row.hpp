// SPDX-License-Identifier: Apache-2.0
/// @file row.hpp
/// @brief The vocabulary-row kernels (kernels/row_kernels.ipp) instantiated for neon:
///        grpo::vocab::GRPO_ISA_ABI::neon, compiled in every aarch64 build (Advanced SIMD is
///        baseline there, no target region), run when grpo::active_isa() is neon (vocab/engine.hpp;
///        GRPO_ISA=baseline or scoped_isa_limit(isa::baseline) selects the portable loops).
#pragma once

#include <grpo/simd/arch/neon/packet.hpp>
#include <grpo/vocab/row.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#if GRPO_SIMD_HAS_NEON_PACKET
namespace grpo::vocab {
inline namespace GRPO_ISA_ABI {
namespace neon {
using A = ::grpo::simd::neon;
#include <grpo/vocab/kernels/row_kernels.ipp>
}  // namespace neon
}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::vocab
#endif
