// SPDX-License-Identifier: Apache-2.0
/// @file row.hpp
/// @brief The per-row case analysis of the advantage estimators (singleton policy, zero-variance
///        policy, then the estimator's formula from <grpo/ops/advantage.hpp>) over one row's group
///        statistics: row_advantage_of, host and device (<grpo/cuda/advantage.cuh> calls it).
#pragma once

#include <grpo/advantage/options.hpp>
#include <grpo/core/config.hpp>
#include <grpo/ops/advantage.hpp>

namespace grpo::detail {

/// The options row_advantage_of reads, as a flat block (trivially copyable: the CUDA advantage
/// kernels take it by value, <grpo/cuda/advantage.cuh>).
struct row_advantage_params {
  adv_estimator estimator = adv_estimator::grpo;
  double eps = 1e-6;
  ops::eps_placement place = ops::eps_placement::add_to_std;
  bool bessel = true;
  bool scale_by_std = true;
  singleton_policy singleton = singleton_policy::zero;
  zero_variance_policy zero_variance = zero_variance_policy::zero;
  double zero_var_tol = 0.0;
  double gpg_f_norm = 1.0;
};

/// Copies the fields of advantage_options that the per-row case analysis reads.
/// @pre none. @post every field copied as is.
inline row_advantage_params make_row_advantage_params(const advantage_options& o) noexcept {
  row_advantage_params p;
  p.estimator = o.estimator;
  p.eps = o.eps;
  p.place = o.eps_place;
  p.bessel = o.bessel;
  p.scale_by_std = o.scale_by_std;
  p.singleton = o.singleton;
  p.zero_variance = o.zero_variance;
  p.zero_var_tol = o.zero_var_tol;
  p.gpg_f_norm = o.gpg_f_norm;
  return p;
}

/// Statistics of one row's group (scorable members only) and of the batch. The first five are
/// all that the grpo / dr_grpo / rloo estimators read; the rest default to 0.
struct group_row_stats {
  double n = 0;             ///< scorable members n_g
  double sum = 0;           ///< sum R
  double mx = 0;            ///< max R
  double mn = 0;            ///< min R
  double ss = 0;            ///< sum (R - mean_g)^2 (two-pass, about the group mean)
  double batch_count = 0;   ///< batch_std: scorable rows of the batch
  double batch_ss = 0;      ///< batch_std: centred sum of squares of the batch
  double len = 0;           ///< opo: sum |o|
  double len_r = 0;         ///< opo: sum |o| R
  double alpha = 0;         ///< gpg: alpha
  double passk_second = 0;  ///< passk: largest value below the max (the max on a tie)
  double passk_nmax = 0;    ///< passk: members equal to the max
};

/// The advantage of one scorable row with reward r, given its group / batch statistics: the
/// singleton policy, the zero-variance policy (max - min <= tol), then the estimator. The ONE
/// copy of this case analysis: the CPU path (row_advantage below) and the CUDA group kernel call
/// it.
/// @pre s.n >= 1; singleton_policy::error groups were rejected by the caller.
/// @post finite for finite inputs; 0 where a policy zeroes the group.
GRPO_HOST_DEVICE inline double row_advantage_of(const row_advantage_params& o, double r,
                                                const group_row_stats& s) noexcept {
  const double n = s.n;
  const double mean = s.sum / n;
  if (n == 1.0) {
    // Singleton: error was raised earlier; zero or the unit baseline (mean 0, std 1).
    if (o.singleton == singleton_policy::zero) return 0.0;
    switch (o.estimator) {
      case adv_estimator::grpo:
        return o.scale_by_std ? ops::zscore(r, 0.0, ops::z_scale(1.0, o.eps, o.place)) : r;
      case adv_estimator::batch_std: {
        if (s.batch_count < (o.bessel ? 2.0 : 1.0)) return 0.0;  // TRL: NaN std -> 0
        const double var = ops::variance_from_centered(s.batch_ss, s.batch_count, o.bessel);
        return ops::zscore(r, 0.0, ops::z_scale(var, o.eps, o.place));
      }
      case adv_estimator::gpg:
        return ops::gpg(r, 0.0, s.alpha, o.gpg_f_norm);
      case adv_estimator::passk:
        return 0.0;
      default:
        return r;  // dr_grpo, rloo (verl keeps raw R), opo, reinforce_pp_baseline
    }
  }
  if (s.mx - s.mn <= o.zero_var_tol && o.zero_variance == zero_variance_policy::zero) return 0.0;
  switch (o.estimator) {
    case adv_estimator::grpo: {
      if (!o.scale_by_std) return r - mean;
      const double var = ops::variance_from_centered(s.ss, n, o.bessel);
      return ops::zscore(r, mean, ops::z_scale(var, o.eps, o.place));
    }
    case adv_estimator::dr_grpo:
      return r - mean;
    case adv_estimator::batch_std: {
      // n_g >= 2 here, so the batch has >= 2 scorable rows and its variance is defined.
      const double var = ops::variance_from_centered(s.batch_ss, s.batch_count, o.bessel);
      return ops::zscore(r, mean, ops::z_scale(var, o.eps, o.place));
    }
    case adv_estimator::rloo:
      return ops::rloo(r, mean, n);
    case adv_estimator::reinforce_pp_baseline:
      return r - mean;
    case adv_estimator::opo:
      // All members empty (sum |o| = 0): verl would divide 0/0; we fall back to the plain mean.
      return s.len > 0 ? r - ops::opo_baseline(s.len_r, s.len) : r - mean;
    case adv_estimator::gpg:
      return ops::gpg(r, mean, s.alpha, o.gpg_f_norm);
    case adv_estimator::passk: {
      // Only a unique arg-max gets a non-zero value; with a tie R_max - R_2nd = 0 anyway, so the
      // result does not depend on how a tie would be broken.
      if (r != s.mx || s.passk_nmax != 1.0) return 0.0;
      const double scale =
          o.scale_by_std
              ? ops::z_scale(ops::variance_from_centered(s.ss, n, o.bessel), o.eps, o.place)
              : 1.0;
      return ops::passk(s.mx, s.passk_second, scale);
    }
  }
  return 0.0;
}

}  // namespace grpo::detail
