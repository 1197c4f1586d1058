// SPDX-License-Identifier: Apache-2.0
/// @file options.hpp
/// @brief Options and result types of the group advantage estimators (grpo/advantage.hpp): the
///        estimator, singleton / zero-variance / multi-reward policies, whiten_options,
///        advantage_options with the peers' named presets, whiten_stats and advantage_stats. No
///        engine: what a caller (or a CUDA kernel) needs to name an estimator.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/ops/advantage.hpp>

#include <cstdint>
#include <vector>

namespace grpo {

using ops::eps_placement;

/// Which baseline / scaling turns per-sequence rewards into advantages.
enum class adv_estimator : unsigned char {
  grpo,                   ///< (R - mean_g) / scale_g (scale_by_std = false: Dr. GRPO)
  dr_grpo,                ///< R - mean_g
  batch_std,              ///< (R - mean_g) / scale_batch (TRL scale_rewards="batch", Lite-PPO)
  rloo,                   ///< n/(n-1) (R - mean_g): leave-one-out baseline
  reinforce_pp_baseline,  ///< R - mean_g, then token-weighted whitening over the batch (mask)
  opo,                    ///< R - sum |o| R / sum |o| (length-weighted baseline; mask)
  gpg,                    ///< alpha (R - mean_g) / f_norm
  passk,                  ///< arg-max of group: (R_max - R_2nd) / scale_g, others 0
};

/// What a group with exactly one scorable member gets.
enum class singleton_policy : unsigned char {
  zero,           ///< A = 0 (TRL: nanstd is NaN, nan_to_num -> 0; verl rloo_vectorized)
  unit_baseline,  ///< baseline 0, std 1 (verl grpo: A = R / (1 + eps); verl rloo/opo/gpg: R)
  error,          ///< throw [grpo.bad_value] (OpenRLHF asserts n > 1; verl grpo_passk raises)
};

/// What a zero-variance group (max - min <= zero_var_tol over scorable members, n >= 2) gets.
enum class zero_variance_policy : unsigned char {
  zero,    ///< A = 0 exactly (no amplified fp residue: NeMo-RL #4161)
  keep,    ///< the estimator's own value (what the peers compute; residue / eps may survive)
  report,  ///< like keep, and the group is also cleared in stats.keep_tol (dynamic sampling)
};

/// How several reward functions are combined (TRL multi_objective_aggregation).
enum class multi_reward_mode : unsigned char {
  sum_then_normalize,  ///< R = nansum_k w_k R_k, then the configured estimator
  normalize_then_sum,  ///< GDPO: per-reward group z-score, weighted nansum, then a batch z-score
};

/// TRL's scale_rewards.
enum class trl_scale : unsigned char { group, batch, none };

/// Token whitening (verl masked_whiten, OpenRLHF global token whitening):
/// x' = (x - mu) / scale, mu = sum m x / (N + mean_eps), var = sum m (x - mu)^2 / (N + mean_eps)
/// (times N / (N - 1) with bessel), scale = z_scale(var, eps, place).
struct whiten_options {
  double eps = 1e-8;                                 ///< verl rsqrt(var + 1e-8)
  eps_placement place = eps_placement::inside_sqrt;  ///< OpenRLHF: floor_var (max(var, 1e-8))
  bool bessel = true;                                ///< verl true, OpenRLHF false
  double mean_eps = 1e-8;  ///< verl masked_mean divides by mask.sum() + 1e-8; OpenRLHF 0
  /// x' = x - mu only (OpenRLHF --algo.advantage.no_std_norm: centring kept, no division).
  bool center_only = false;
};

/// Every option of the estimators. Start from a named constructor to reproduce a peer exactly.
struct advantage_options {
  adv_estimator estimator = adv_estimator::grpo;
  double eps = 1e-6;  ///< z-score epsilon
  eps_placement eps_place = eps_placement::add_to_std;
  bool bessel = true;        ///< std with n - 1 (all peers) or n
  bool scale_by_std = true;  ///< grpo / passk: divide by the group scale
  singleton_policy singleton = singleton_policy::zero;
  zero_variance_policy zero_variance = zero_variance_policy::zero;
  double zero_var_tol = 0.0;  ///< group is zero-variance iff max - min <= tol (n >= 2)
  /// verl grpo_vectorized: group mean/std computed in float32 exactly as verl's group_mean_std
  /// (sequential float sums, float divide), then (R - mean) / (float(std + eps)). Single process.
  bool emulate_verl_float32 = false;
  double var_floor = 0.0;  ///< float32 emulation: std = sqrt(max(var, var_floor)) (verl: 0.0)
  double gpg_alpha = 0.0;  ///< <= 0: automatic alpha = B / max(#nonzero R, 1) over the batch
  double gpg_f_norm = 1.0;
  whiten_options whiten{};  ///< reinforce_pp_baseline
  multi_reward_mode multi = multi_reward_mode::sum_then_normalize;
  double keep_lo = 0.0, keep_hi = 1.0;  ///< OpenRLHF dynamic filtering: keep iff lo < mean < hi

  /// TRL GRPOTrainer (scale_rewards group: eps 1e-4 on std, NaN-aware Bessel std; batch: group
  /// mean, batch std; none: R - mean). Singletons -> 0. `multi` selects
  /// multi_objective_aggregation for compute_multi_reward_advantages.
  static advantage_options trl(trl_scale s = trl_scale::group,
                               multi_reward_mode multi = multi_reward_mode::sum_then_normalize) {
    advantage_options o;
    o.estimator = s == trl_scale::group   ? adv_estimator::grpo
                  : s == trl_scale::batch ? adv_estimator::batch_std
                                          : adv_estimator::dr_grpo;
    o.eps = 1e-4;
    o.singleton = singleton_policy::zero;
    o.zero_variance = zero_variance_policy::keep;
    o.multi = multi;
    return o;
  }
  /// verl compute_grpo_outcome_advantage (eps 1e-6 on std, singleton R / (1 + eps)).
  static advantage_options verl_grpo(bool norm_adv_by_std_in_grpo = true) {
    advantage_options o;
    o.estimator = adv_estimator::grpo;
    o.scale_by_std = norm_adv_by_std_in_grpo;
    o.eps = 1e-6;
    o.singleton = singleton_policy::unit_baseline;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// verl compute_grpo_vectorized_outcome_advantage (float32 group_mean_std, var floor 0.0).
  static advantage_options verl_grpo_vectorized(bool norm_adv_by_std_in_grpo = true) {
    advantage_options o = verl_grpo(norm_adv_by_std_in_grpo);
    o.emulate_verl_float32 = true;
    o.var_floor = 0.0;
    return o;
  }
  /// verl compute_rloo_outcome_advantage (singleton keeps its raw R).
  static advantage_options verl_rloo() {
    advantage_options o;
    o.estimator = adv_estimator::rloo;
    o.singleton = singleton_policy::unit_baseline;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// verl compute_rloo_vectorized_outcome_advantage (singleton -> 0).
  static advantage_options verl_rloo_vectorized() {
    advantage_options o = verl_rloo();
    o.singleton = singleton_policy::zero;
    return o;
  }
  /// verl compute_reinforce_plus_plus_baseline_outcome_advantage (needs the mask).
  static advantage_options verl_reinforce_pp_baseline() {
    advantage_options o;
    o.estimator = adv_estimator::reinforce_pp_baseline;
    o.singleton = singleton_policy::unit_baseline;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// verl compute_opo_outcome_advantage (needs the mask for the lengths).
  static advantage_options verl_opo() {
    advantage_options o;
    o.estimator = adv_estimator::opo;
    o.singleton = singleton_policy::unit_baseline;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// verl compute_gpg_outcome_advantage (alpha = B / max(#nonzero, 1), f_norm 1).
  static advantage_options verl_gpg() {
    advantage_options o;
    o.estimator = adv_estimator::gpg;
    o.singleton = singleton_policy::unit_baseline;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// verl compute_grpo_passk_outcome_advantage (groups need >= 2 members).
  static advantage_options verl_grpo_passk(bool norm_adv_by_std_in_grpo = true) {
    advantage_options o;
    o.estimator = adv_estimator::passk;
    o.scale_by_std = norm_adv_by_std_in_grpo;
    o.eps = 1e-6;
    o.singleton = singleton_policy::error;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// OpenRLHF group_norm: (R - mean) / (std + 1e-9), groups need n > 1.
  static advantage_options openrlhf_group_norm() {
    advantage_options o;
    o.estimator = adv_estimator::grpo;
    o.eps = 1e-9;
    o.singleton = singleton_policy::error;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// OpenRLHF dr_grpo: R - mean.
  static advantage_options openrlhf_dr_grpo() {
    advantage_options o = openrlhf_group_norm();
    o.estimator = adv_estimator::dr_grpo;
    return o;
  }
  /// OpenRLHF rloo: R - (sum - R) / (n - 1).
  static advantage_options openrlhf_rloo() {
    advantage_options o = openrlhf_group_norm();
    o.estimator = adv_estimator::rloo;
    return o;
  }
  /// OpenRLHF reinforce_baseline (outcome reward, gamma 1, no reward clip): R - mean, then global
  /// token whitening with the biased variance and rsqrt(max(var, 1e-8)).
  static advantage_options openrlhf_reinforce_baseline() {
    advantage_options o = openrlhf_group_norm();
    o.estimator = adv_estimator::reinforce_pp_baseline;
    o.whiten = whiten_options{1e-8, eps_placement::floor_var, false, 0.0};
    return o;
  }
};

/// Statistics of masked_whiten (all global over ranks).
struct whiten_stats {
  double mean = 0.0;   ///< token-weighted mean
  double var = 0.0;    ///< variance as used (Bessel per options)
  double count = 0.0;  ///< number of unmasked tokens N
};

/// Everything the estimators learnt about the batch; all per-group vectors are global (reduced
/// over ranks) and indexed by the dense group id.
struct advantage_stats {
  index_t num_groups = 0;
  std::vector<std::int64_t> group_label;    ///< caller's id of dense group g (fixed: g)
  std::vector<index_t> seq_group;           ///< dense group of each local row
  std::vector<double> count;                ///< scorable (non-NaN) members
  std::vector<double> nan_count;            ///< unscorable (NaN) members
  std::vector<double> mean;                 ///< mean of scorable rewards (NaN when count = 0)
  std::vector<double> std;                  ///< std (Bessel per options; NaN when undefined)
  std::vector<double> min, max;             ///< extremes of scorable rewards (+-inf when count = 0)
  std::vector<std::uint8_t> zero_var;       ///< n >= 2 and max - min <= zero_var_tol
  std::vector<std::uint8_t> keep_verl;      ///< verl filter_groups: !(members > 1 && pop std == 0)
  std::vector<std::uint8_t> keep_openrlhf;  ///< OpenRLHF: keep_lo < mean < keep_hi
  std::vector<std::uint8_t> keep_tol;       ///< policy report: !zero_var; otherwise all 1 (n >= 1)
  index_t num_zero_var = 0;                 ///< groups flagged zero_var
  index_t num_singleton = 0;                ///< groups with exactly one scorable member
  index_t num_empty = 0;                    ///< groups with no scorable member
  double frac_zero_std = 0.0;               ///< num_zero_var / groups with >= 1 scorable member
  double batch_count = 0.0;                 ///< scorable rows of the whole batch
  double batch_nan = 0.0;                   ///< unscorable rows of the whole batch
  double batch_mean = 0.0;                  ///< mean of scorable rewards over the batch
  double batch_std = 0.0;  ///< std over the batch (Bessel per options; NaN when undefined)
  whiten_stats whiten{};   ///< reinforce_pp_baseline's token whitening
};

}  // namespace grpo
