// SPDX-License-Identifier: Apache-2.0
/// @file advantage.hpp
/// @brief Scalar formulas of the group advantage estimators (GRPO z-score, Dr. GRPO, RLOO, OPO,
///        GPG, pass@k, token whitening, discounted returns): the only copy of each formula.
///
/// Notation (per sequence i of group g): R_i reward, n_g scorable members, mu_g = sum R / n_g,
/// var_g = sum (R - mu_g)^2 / (n_g - 1) (Bessel) or / n_g (population).
///
/// Advantages are constants with respect to the policy parameters (every trainer computes them
/// under no_grad), so these functions have no `_grad` twins: nothing differentiates through them.
/// The CPU loops of <grpo/advantage.hpp> call these; a CUDA kernel would call the same.
#pragma once

#include <grpo/core/config.hpp>

#include <cmath>

namespace grpo::ops {

/// Where the stabilising epsilon enters the scale of a z-score.
enum class eps_placement : unsigned char {
  add_to_std,   ///< scale = sqrt(var) + eps          (TRL 1e-4, verl 1e-6, OpenRLHF 1e-9)
  inside_sqrt,  ///< scale = sqrt(var + eps)          (verl masked_whiten, 1e-8)
  floor_var,  ///< scale = sqrt(max(var, eps))      (OpenRLHF whitening, verl group_mean_std floor)
};

/// Variance from a centred sum of squares: ss / (n - 1) (Bessel) or ss / n (population).
/// @pre n > 1 for Bessel, n > 0 for population (callers handle the degenerate counts).
GRPO_HOST_DEVICE constexpr double variance_from_centered(double ss, double n,
                                                         bool bessel) noexcept {
  return ss / (bessel ? n - 1.0 : n);
}

/// The divisor of a z-score: sqrt(var) + eps, sqrt(var + eps) or sqrt(max(var, eps)).
/// @pre var >= 0.
GRPO_HOST_DEVICE inline double z_scale(double var, double eps, eps_placement where) noexcept {
  using std::sqrt;
  switch (where) {
    case eps_placement::add_to_std:
      return sqrt(var) + eps;
    case eps_placement::inside_sqrt:
      return sqrt(var + eps);
    case eps_placement::floor_var:
      return sqrt(var > eps ? var : eps);
  }
  return sqrt(var) + eps;
}

/// GRPO z-score (DeepSeekMath eq. 3 outcome supervision): A = (R - baseline) / scale.
/// With scale = 1 this is Dr. GRPO's A = R - mean_g (Liu et al. 2025, "Understanding R1-Zero").
/// Defined value: scale = 0 (eps = 0 and a centred sum of squares of 0, i.e. a tied group, where
/// R - baseline is 0 or a rounding residue) gives 0, the zero-variance value, not 0/0 = NaN.
GRPO_HOST_DEVICE constexpr double zscore(double r, double baseline, double scale) noexcept {
  return scale == 0.0 ? 0.0 : (r - baseline) / scale;
}

/// RLOO (Ahmadian et al. 2024): A = R - mean of the other n-1 samples = n/(n-1) (R - mean_g).
/// @pre n > 1.
GRPO_HOST_DEVICE constexpr double rloo(double r, double mean, double n) noexcept {
  return n / (n - 1.0) * (r - mean);
}

/// GPG (Chu et al. 2025): A = alpha (R - mean_g) / f_norm.
GRPO_HOST_DEVICE constexpr double gpg(double r, double mean, double alpha, double f_norm) noexcept {
  return alpha * (r - mean) / f_norm;
}

/// GPG's automatic alpha (verl): alpha = B / max(#nonzero rewards in the batch, 1), the inverse
/// fraction of "valid" samples under a binary-reward assumption.
GRPO_HOST_DEVICE constexpr double gpg_alpha(double batch, double nonzero) noexcept {
  return batch / (nonzero > 1.0 ? nonzero : 1.0);
}

/// OPO (Hao et al. 2025) length-weighted optimal baseline: b_g = sum_i |o_i| R_i / sum_i |o_i|.
/// @pre sum_len > 0.
GRPO_HOST_DEVICE constexpr double opo_baseline(double sum_len_r, double sum_len) noexcept {
  return sum_len_r / sum_len;
}

/// pass@k advantage (Chen et al. 2025, verl grpo_passk): only the arg-max of the group gets
/// (R_max - R_second) / scale; every other member gets 0.
/// scale = 0 (eps = 0, tied group) gives 0, as zscore.
GRPO_HOST_DEVICE constexpr double passk(double r_max, double r_second, double scale) noexcept {
  return scale == 0.0 ? 0.0 : (r_max - r_second) / scale;
}

/// Token whitening (verl masked_whiten, REINFORCE++): (x - mean) / scale, scale from z_scale().
/// scale = 0 (eps = 0, all values equal) gives 0, as zscore.
GRPO_HOST_DEVICE constexpr double whiten(double x, double mean, double scale) noexcept {
  return scale == 0.0 ? 0.0 : (x - mean) / scale;
}

/// One step of the reverse discounted-return recursion G_t = r_t + gamma G_{t+1} (REINFORCE++).
/// verl (snapshot 1dda039): masked tokens (observations, padding) neither add their reward nor
/// discount: the running return passes through them unchanged and their return is 0.
/// @return the running return after token t; `*ret` receives G_t (0 where masked).
GRPO_HOST_DEVICE constexpr double discounted_return_step(double running, double r, double gamma,
                                                         bool valid, double* ret) noexcept {
  if (!valid) {
    *ret = 0.0;
    return running;
  }
  const double g = r + gamma * running;
  *ret = g;
  return g;
}

}  // namespace grpo::ops
