// SPDX-License-Identifier: Apache-2.0
/// @file multi_reward.hpp
/// @brief Several reward functions per completion: TRL's combine_rewards (weighted nansum) and
///        compute_multi_reward_advantages (sum_then_normalize, or GDPO's normalize_then_sum).
#pragma once

#include <grpo/advantage/estimators.hpp>
#include <grpo/advantage/group_spec.hpp>
#include <grpo/advantage/moments.hpp>
#include <grpo/advantage/options.hpp>
#include <grpo/collective.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/tensor_traits.hpp>
#include <grpo/ops/advantage.hpp>

#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace grpo {

/// TRL reward combination: R_i = sum_k w_k R_ik over non-NaN entries; NaN if every entry is NaN.
/// @param rewards [B, K]; @param weights [K]; @param out [B].
/// @pre weights.size() == K; out has B rows.
template <class Rewards, class Out>
requires detail::viewable<Rewards> && detail::viewable<Out>
void combine_rewards(const Rewards& rewards, std::span<const double> weights, Out&& out) {
  auto rv = detail::host_view<2>(rewards, "rewards_per_func");
  auto ov = detail::host_view<1>(out, "combined rewards (out)");
  const index_t B = rv.extent(0), K = rv.extent(1);
  GRPO_EXPECTS(static_cast<index_t>(weights.size()) == K, shape_mismatch,
               "reward weights: " + std::to_string(weights.size()) + " weights for " +
                   std::to_string(K) + " reward functions");
  expect_extents(ov, {B}, "combined rewards (out)");
  expect_distinct_elements(ov, "combined rewards (out)");
  for (std::size_t k = 0; k < weights.size(); ++k)
    GRPO_EXPECTS(std::isfinite(weights[k]), bad_option,
                 "reward weights: weight " + std::to_string(k) + " is not finite");
  using E = typename decltype(ov)::value_type;
  for (index_t i = 0; i < B; ++i) {
    double s = 0.0;
    bool any = false;
    for (index_t k = 0; k < K; ++k) {
      const double x = detail::load(rv(i, k));
      if (std::isnan(x)) continue;
      s += weights[static_cast<std::size_t>(k)] * x;
      any = true;
    }
    ov(i) = narrow<E>(any ? s : std::numeric_limits<double>::quiet_NaN());
  }
}

/// Advantages from several reward functions (TRL multi_objective_aggregation, GDPO).
/// sum_then_normalize: combine_rewards, then compute_advantages with opts.
/// normalize_then_sum: for each k, z_ik = (R_ik - mean_gk) / z_scale(var_gk) over scorable members
/// (NaN when R_ik is NaN or the group has < 2 scorable members: skipped by the sum, as TRL's
/// nanstd gives NaN), S_i = sum_k w_k z_ik (NaN if all NaN), then the batch z-score
/// A_i = (S_i - mean(S)) / z_scale(var(S)) with the same eps settings; NaN -> 0.
/// normalize_then_sum ignores opts.estimator (TRL applies the group z-score per reward whatever
/// scale_rewards says) but honours eps, eps_place, bessel, zero_variance and zero_var_tol.
/// @pre rewards [B, K], weights [K], out [B].
/// @post stats describe the combined reward (sum_then_normalize) or S (normalize_then_sum; TRL's
///       std_rewards is stats.batch_std).
template <class Rewards, class Out, collective C = single_process>
requires detail::viewable<Rewards> && detail::viewable<Out> advantage_stats
compute_multi_reward_advantages(const Rewards& rewards, std::span<const double> weights,
                                const group_spec& groups, Out&& out,
                                const advantage_options& opts = {}, const C& comm = {}) {
  auto rv = detail::host_view<2>(rewards, "rewards_per_func");
  const index_t B = rv.extent(0), K = rv.extent(1);
  if (opts.multi == multi_reward_mode::sum_then_normalize) {
    std::vector<double> combined(static_cast<std::size_t>(B));
    combine_rewards(rv, weights, combined);
    return compute_advantages(combined, groups, std::forward<Out>(out), opts, comm);
  }
  GRPO_EXPECTS(static_cast<index_t>(weights.size()) == K, shape_mismatch,
               "reward weights: " + std::to_string(weights.size()) + " weights for " +
                   std::to_string(K) + " reward functions");
  auto ov = detail::host_view<1>(out, "advantages (out)");
  expect_extents(ov, {B}, "advantages (out)");
  expect_distinct_elements(ov, "advantages (out)");
  detail::validate_advantage_options(opts);
  for (std::size_t k = 0; k < weights.size(); ++k)
    GRPO_EXPECTS(std::isfinite(weights[k]), bad_option,
                 "reward weights: weight " + std::to_string(k) + " is not finite");
  advantage_stats st;
  index_t G = 0;
  groups.resolve(B, comm.size(), st.seq_group, G, st.group_label);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> S(static_cast<std::size_t>(B), nan), col(static_cast<std::size_t>(B));
  for (index_t k = 0; k < K; ++k) {
    for (index_t i = 0; i < B; ++i) {
      const double x = detail::load(rv(i, k));
      GRPO_EXPECTS(!std::isinf(x), bad_value,
                   "rewards_per_func: infinite value at row " + std::to_string(i));
      GRPO_EXPECTS(!(std::abs(x) > detail::max_abs_reward), bad_value,
                   "rewards_per_func: |value| at row " + std::to_string(i) +
                       " exceeds 1e150 (its centred square would overflow); rescale the rewards");
      col[static_cast<std::size_t>(i)] = x;
    }
    const auto m = detail::compute_moments(col, st.seq_group, G, nullptr, comm);
    for (std::size_t i = 0; i < col.size(); ++i) {
      const auto g = static_cast<std::size_t>(st.seq_group[i]);
      if (std::isnan(col[i]) || m.count[g] < 2.0) continue;
      double z = 0.0;
      if (!(m.mx[g] - m.mn[g] <= opts.zero_var_tol &&
            opts.zero_variance == zero_variance_policy::zero)) {
        const double var = ops::variance_from_centered(m.ss[g], m.count[g], opts.bessel);
        z = ops::zscore(col[i], m.sum[g] / m.count[g], ops::z_scale(var, opts.eps, opts.eps_place));
      }
      const double wz = weights[static_cast<std::size_t>(k)] * z;
      S[i] = std::isnan(S[i]) ? wz : S[i] + wz;
    }
  }
  const auto m = detail::compute_moments(S, st.seq_group, G, nullptr, comm);
  detail::fill_stats(st, m, opts);
  std::vector<double> a(S.size(), 0.0);
  const bool defined = m.batch_count >= (opts.bessel ? 2.0 : 1.0);
  for (std::size_t i = 0; i < S.size(); ++i) {
    if (std::isnan(S[i]) || !defined) continue;  // TRL: NaN std -> NaN -> nan_to_num 0
    const double var = ops::variance_from_centered(m.batch_ss, m.batch_count, opts.bessel);
    a[i] = ops::zscore(S[i], m.batch_mean(), ops::z_scale(var, opts.eps, opts.eps_place));
  }
  detail::store(ov, a);
  return st;
}

}  // namespace grpo
