// SPDX-License-Identifier: Apache-2.0
/// @file general_rows.hpp
/// @brief The general engine's packet rows (kernels/general_row.ipp: GMPO and VESPO at token
///        level with per-sequence advantages; kernels/tis_row.ipp: the token-level kinds with a
///        rollout IS weight; float inputs) instantiated for avx2 and avx512
///        inside each ISA's target region, in the same namespaces as the token / sequence rows
///        (loss_avx2, loss_avx512), plus their parameters and weighted_rows_isa(): the path they
///        run on (baseline: none, the general engine runs).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/detail/loss_token.hpp>  // vespo_log_floor, the row quantities' conventions
#include <grpo/loss/kernels/avx2/rows.hpp>
#include <grpo/loss/kernels/avx512/rows.hpp>
#include <grpo/loss/row_types.hpp>
#include <grpo/loss/simd_token_rows.hpp>  // loss_kernel_isa
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>
#include <grpo/policy_loss.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

namespace grpo::detail {
inline namespace GRPO_ISA_ABI {

/// Parameters of the weighted rows (one call): the policy options, the KL term, the metric and
/// ratio clamps as floats, GMPO's denominators and factor.
struct weighted_params {
  policy_options P{};
  ops::kl_params kl{};
  double kl_coef = 0;
  bool gmpo = false;  ///< else VESPO
  /// approx_kl metric clamp (the log-ratio bounds, or none when approx_kl_unclamped) and the
  /// ratio's clamp (VESPO's ratio metric), as floats (+-inf: none).
  float ak_min = 0, ak_max = 0, lr_min = 0, lr_max = 0;
  double row_count_eps = 0, row_count_floor = 0;  ///< GMPO den = max(n + eps, floor)
  double s_gmpo = 0;                              ///< GMPO's scale / G (gmpo_scale)
  int side = 0;  ///< GMPO's clip side of the row (set per row: weighted_side)
};

/// GMPO's clip side of a row with advantage A (ops::gmpo_clip_log_ratio): 0 the upper bound
/// (A > 0), 1 the lower bound (A < 0, or A = 0 under TRL's rule), 2 none (A = 0, verl).
inline int weighted_side(double A, ops::gmpo_sign conv) noexcept {
  if (A > 0) return 0;
  if (A < 0 || conv == ops::gmpo_sign::trl) return 1;
  return 2;
}

/// Parameters of the TIS rows (token-level kinds ppo_clip / cispo / sapo / reinforce at token
/// level with a rollout IS weight from sampler_logp, or the caller's is_weights; one call): the
/// token rows' parameters, the composition's parameters (finish_row forms the sequence weights in
/// double), the approx_kl metric clamp and the token weight's bounds as floats.
struct tis_params {
  fast_simd_params<float> fp{};
  loss_params lpar{};
  policy_loss_kind kind = policy_loss_kind::ppo_clip;
  float ak_min = 0, ak_max = 0;  ///< approx_kl metric clamp (+-inf: none)
  /// The weight of a token: 0 token (bounded exp(clamp(lo - ls))), 1 sequence (the row's
  /// bounded exp(sum m (lo - ls))), 2 OpenRLHF seq-mask-tis (row keep x exp(lo - ls)), 3 the
  /// caller's is_weights (fast_simd_row::w, as given: no bounds, the general engine's rule), 4
  /// none (weight 1: OPSM without an IS weight).
  int wkind = 0;
  bool mask_mode = false;                     ///< ops::tis_mode::mask (else truncate)
  float c_min = 0, c_max = 0, log_clamp = 0;  ///< as tis_options (<= 0: none)
  /// OPSM (loss_options::opsm_threshold): a token is kept iff A >= 0 or its row's off-policy gap
  /// sum m (ls - lp) / max(n, 1) <= opsm_delta (ops::opsm_keep); opsm_den: a dropped token leaves
  /// the final mask (denominators, KL, metrics), else only the policy term's multiplier is 0.
  bool opsm = false, opsm_den = true;
  double opsm_delta = 0;
};

/// OPSM's sums of one row over its base mask (opsm_row_sums, kernels/tis_row.ipp): sg = sum m
/// (ls - lp), npos = sum m [A >= 0], neg: a valid token has !(A >= 0) (per-token advantages).
struct opsm_sums {
  double sg = 0, npos = 0;
  bool neg = false;
};

/// Row outputs beside fast_row_part: VESPO's phi (its metric), GMPO's sequence loss and
/// denominator.
struct weighted_row_out {
  double phi = 0, seq_loss = 0, den = 0;
};

/// The TIS rows' is_weight metric block of a row: {sum m rho, sum m rho^2, min, max} over its
/// valid tokens (fast_row_part has none: the token rows' weight is 1).
struct tis_row_out {
  double iw[4] = {0, 0, std::numeric_limits<double>::infinity(),
                  -std::numeric_limits<double>::infinity()};
};

/// The packet path the weighted rows run on: avx512 / avx2 when compiled and allowed
/// (loss_kernel_isa), else baseline (no packet rows: the general engine).
inline isa weighted_rows_isa() noexcept {
  [[maybe_unused]] const isa k = loss_kernel_isa();
#if GRPO_LOSS_HAS_AVX512_ROWS
  if (k == isa::avx512) return isa::avx512;
#endif
#if GRPO_LOSS_HAS_AVX2_ROWS
  if (k == isa::avx2 || k == isa::avx512) return isa::avx2;
#endif
  return isa::baseline;
}

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail

#if GRPO_LOSS_HAS_AVX2_ROWS
GRPO_BEGIN_TARGET_AVX2
namespace grpo::detail {
inline namespace GRPO_ISA_ABI {
namespace loss_avx2 {
#include <grpo/loss/kernels/general_row.ipp>
#include <grpo/loss/kernels/tis_row.ipp>
}  // namespace loss_avx2
}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail
GRPO_END_TARGET
#endif

#if GRPO_LOSS_HAS_AVX512_ROWS
GRPO_BEGIN_TARGET_AVX512
namespace grpo::detail {
inline namespace GRPO_ISA_ABI {
namespace loss_avx512 {
#include <grpo/loss/kernels/general_row.ipp>
#include <grpo/loss/kernels/tis_row.ipp>
}  // namespace loss_avx512
}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail
GRPO_END_TARGET
#endif
