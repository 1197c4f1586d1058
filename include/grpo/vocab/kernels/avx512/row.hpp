// SPDX-License-Identifier: Apache-2.0
/// @file row.hpp
/// @brief The vocabulary-row kernels (kernels/row_kernels.ipp) instantiated for avx512:
///        grpo::vocab::GRPO_ISA_ABI::avx512, compiled inside GRPO_BEGIN_TARGET_AVX512 in every x86-64
///        build, run only when grpo::active_isa() allows avx512 (vocab/engine.hpp).
#pragma once

#include <grpo/simd/arch/avx512/packet.hpp>
#include <grpo/vocab/row.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#if GRPO_SIMD_HAS_AVX512_PACKET
GRPO_BEGIN_TARGET_AVX512
namespace grpo::vocab {
inline namespace GRPO_ISA_ABI {
namespace avx512 {
using A = ::grpo::simd::avx512;
#include <grpo/vocab/kernels/row_kernels.ipp>
}  // namespace avx512
}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::vocab
GRPO_END_TARGET
#endif
