// SPDX-License-Identifier: Apache-2.0
/// @file rows.hpp
/// @brief The loss row kernels written once over the packet (kernels/token_row.ipp: token-level
///        rows and pass 1's mask sum; kernels/sequence_row.ipp: GSPO / GSPO-token rows; over
///        kernels/lanes.ipp and detail/lane_formulas.ipp) instantiated for avx512:
///        grpo::detail::GRPO_ISA_ABI::loss_avx512, compiled inside GRPO_BEGIN_TARGET_AVX512 in
///        every x86-64 build, run only when grpo::active_isa() allows avx512
///        (detail::loss_kernel_isa, simd_token_rows.hpp).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/detail/loss_token.hpp>  // token_ratio, policy_token (the sequence row's constants)
#include <grpo/loss/row_types.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>
#include <grpo/policy_loss.hpp>
#include <grpo/simd/arch/avx512/packet.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#if GRPO_SIMD_HAS_AVX512_PACKET
#define GRPO_LOSS_HAS_AVX512_ROWS 1
GRPO_BEGIN_TARGET_AVX512
namespace grpo::detail {
inline namespace GRPO_ISA_ABI {
namespace loss_avx512 {
using A = ::grpo::simd::avx512;
#include <grpo/loss/kernels/lanes.ipp>
#include <grpo/detail/lane_formulas.ipp>
#include <grpo/loss/kernels/token_row.ipp>
#include <grpo/loss/kernels/sequence_row.ipp>
}  // namespace loss_avx512
}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::detail
GRPO_END_TARGET
#else
#define GRPO_LOSS_HAS_AVX512_ROWS 0
#endif
