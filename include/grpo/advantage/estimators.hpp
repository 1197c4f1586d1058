// SPDX-License-Identifier: Apache-2.0
/// @file estimators.hpp
/// @brief The per-sequence advantage estimators: option validation, the single-reward engine
///        (moments, policies, pass@k, GPG alpha, reinforce_pp_baseline whitening, verl's float32
///        emulation) and the public compute_advantages overloads.
#pragma once

#include <grpo/advantage/group_spec.hpp>
#include <grpo/advantage/moments.hpp>
#include <grpo/advantage/options.hpp>
#include <grpo/advantage/row.hpp>
#include <grpo/advantage/whiten.hpp>
#include <grpo/collective.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/tensor_traits.hpp>
#include <grpo/ops/advantage.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace grpo {
namespace detail {

/// The advantage of one scorable row with the group / batch statistics known (host front end of
/// row_advantage_of over the group_moments vectors).
inline double row_advantage(double r, std::size_t g, const group_moments& m,
                            const advantage_options& o, double alpha, double passk_second,
                            double passk_nmax) {
  group_row_stats s;
  s.n = m.count[g];
  s.sum = m.sum[g];
  s.mx = m.mx[g];
  s.mn = m.mn[g];
  s.ss = m.ss[g];
  s.batch_count = m.batch_count;
  s.batch_ss = m.batch_ss;
  s.len = m.len[g];
  s.len_r = m.len_r[g];
  s.alpha = alpha;
  s.passk_second = passk_second;
  s.passk_nmax = passk_nmax;
  return row_advantage_of(make_row_advantage_params(o), r, s);
}

/// %g text of a double for error messages (std::to_string prints 1e-318 as 0.000000).
inline std::string to_chars_g(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.6g", x);
  return b;
}

/// Batch-independent checks of advantage_options, naming the field. [grpo.bad_option]
inline void validate_advantage_options(const advantage_options& o) {
  expect_enum(o.estimator, 8, "advantage_options.estimator");
  expect_enum(o.eps_place, 3, "advantage_options.eps_place");
  expect_enum(o.singleton, 3, "advantage_options.singleton");
  expect_enum(o.zero_variance, 3, "advantage_options.zero_variance");
  expect_enum(o.multi, 2, "advantage_options.multi");
  expect_enum(o.whiten.place, 3, "advantage_options.whiten.place");
  GRPO_EXPECTS(o.eps >= 0 && std::isfinite(o.eps), bad_option,
               "advantage_options.eps must be finite and >= 0, got " + std::to_string(o.eps));
  GRPO_EXPECTS(o.eps == 0 || o.eps >= min_nonzero_eps, bad_option,
               "advantage_options.eps must be 0 or >= 1e-150 (a smaller eps divides a reward by "
               "almost nothing in a zero-spread group and overflows), got " +
                   to_chars_g(o.eps));
  GRPO_EXPECTS(o.zero_var_tol >= 0 && !std::isnan(o.zero_var_tol), bad_option,
               "advantage_options.zero_var_tol must be >= 0");
  GRPO_EXPECTS(o.gpg_f_norm != 0 && std::isfinite(o.gpg_f_norm), bad_option,
               "advantage_options.gpg_f_norm must be finite and nonzero");
  GRPO_EXPECTS(!std::isnan(o.gpg_alpha) && o.gpg_alpha < std::numeric_limits<double>::infinity(),
               bad_option, "advantage_options.gpg_alpha must be finite (<= 0: automatic)");
  GRPO_EXPECTS(o.var_floor >= 0 && std::isfinite(o.var_floor), bad_option,
               "advantage_options.var_floor must be finite and >= 0");
  GRPO_EXPECTS(!std::isnan(o.keep_lo) && !std::isnan(o.keep_hi), bad_option,
               "advantage_options.keep_lo / keep_hi must not be NaN");
  GRPO_EXPECTS(o.whiten.eps >= 0 && std::isfinite(o.whiten.eps), bad_option,
               "advantage_options.whiten.eps must be finite and >= 0");
  GRPO_EXPECTS(o.whiten.mean_eps >= 0 && std::isfinite(o.whiten.mean_eps), bad_option,
               "advantage_options.whiten.mean_eps must be finite and >= 0");
}

/// Per-row advantages (double, NaN rows -> 0) for the single-reward estimators.
template <class C>
std::vector<double> advantages_core(const std::vector<double>& r, const std::vector<index_t>& gid,
                                    index_t G, const std::vector<double>* len,
                                    const advantage_options& o, const C& comm,
                                    advantage_stats& st) {
  validate_advantage_options(o);
  GRPO_EXPECTS(
      !(o.estimator == adv_estimator::passk && o.singleton == singleton_policy::unit_baseline),
      bad_option, "passk: singleton_policy::unit_baseline is undefined; use zero or error");
  const group_moments m = compute_moments(r, gid, G, len, comm);
  fill_stats(st, m, o);
  const auto g_n = static_cast<std::size_t>(G);
  if (o.singleton == singleton_policy::error)
    for (std::size_t g = 0; g < g_n; ++g)
      GRPO_EXPECTS(m.count[g] != 1.0, bad_value,
                   "advantages: group " + std::to_string(st.group_label[g]) +
                       " has a single scorable member and singleton_policy is error");
  // pass@k needs, per group, how many members equal the max and the largest value below it.
  std::vector<double> nmax, second;
  if (o.estimator == adv_estimator::passk) {
    nmax.assign(g_n, 0.0);
    second.assign(g_n, -std::numeric_limits<double>::infinity());
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (std::isnan(r[i])) continue;
      const auto g = static_cast<std::size_t>(gid[i]);
      if (r[i] == m.mx[g])
        nmax[g] += 1.0;
      else
        second[g] = std::max(second[g], r[i]);
    }
    all_reduce_sum(comm, std::span<double>(nmax));
    all_reduce_max(comm, std::span<double>(second));
    for (std::size_t g = 0; g < g_n; ++g)
      if (nmax[g] > 1.0) second[g] = m.mx[g];
  }
  const double alpha = o.gpg_alpha > 0 ? o.gpg_alpha : ops::gpg_alpha(m.rows, m.nonzero);
  std::vector<double> a(r.size(), 0.0);
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(r[i])) continue;
    const auto g = static_cast<std::size_t>(gid[i]);
    a[i] = row_advantage(r[i], g, m, o, alpha, nmax.empty() ? 0.0 : second[g],
                         nmax.empty() ? 0.0 : nmax[g]);
  }
  if (o.estimator == adv_estimator::reinforce_pp_baseline) {
    // Whitening treats unscorable rows as absent: mark them NaN for whiten_rows, then restore 0.
    for (std::size_t i = 0; i < r.size(); ++i)
      if (std::isnan(r[i])) a[i] = std::numeric_limits<double>::quiet_NaN();
    st.whiten = whiten_rows(a, *len, o.whiten, comm);
    for (auto& x : a)
      if (std::isnan(x)) x = 0.0;
  }
  return a;
}

/// verl group_mean_std in float32 (verl/utils/groupwise.py): float index_add_ in row order,
/// mean = s1 / max(c, 1), var = sum (x - mean)^2 / max(c - 1, 1), std = sqrt(max(var, floor)),
/// singletons mean 0 std 1; then A = (R - mean) / float(std + eps) evaluated in double.
inline void verl_float32_override(const std::vector<double>& r, const std::vector<index_t>& gid,
                                  index_t G, const advantage_options& o,
                                  const std::vector<std::uint8_t>& zero_var,
                                  std::vector<double>& a) {
  const auto g_n = static_cast<std::size_t>(G);
  std::vector<float> cnt(g_n, 0.0f), s1(g_n, 0.0f), vn(g_n, 0.0f);
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(r[i])) continue;
    const auto g = static_cast<std::size_t>(gid[i]);
    cnt[g] += 1.0f;
    s1[g] += static_cast<float>(r[i]);
  }
  std::vector<float> mean(g_n), sd(g_n);
  for (std::size_t g = 0; g < g_n; ++g) mean[g] = s1[g] / std::max(cnt[g], 1.0f);
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(r[i])) continue;
    const auto g = static_cast<std::size_t>(gid[i]);
    const float c = static_cast<float>(r[i]) - mean[g];
    vn[g] += c * c;
  }
  for (std::size_t g = 0; g < g_n; ++g) {
    const float var = vn[g] / std::max(cnt[g] - 1.0f, 1.0f);
    sd[g] = std::sqrt(std::max(var, static_cast<float>(o.var_floor)));
    if (cnt[g] <= 1.0f) mean[g] = 0.0f, sd[g] = 1.0f;
  }
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(r[i])) continue;
    const auto g = static_cast<std::size_t>(gid[i]);
    if (cnt[g] == 1.0f && o.singleton == singleton_policy::zero) continue;  // already 0
    // The zero policy was applied by the double path with the same tolerance flags: keep 0.
    if (zero_var[g] != 0 && o.zero_variance == zero_variance_policy::zero) continue;
    const double scale = static_cast<double>(sd[g] + static_cast<float>(o.eps));
    a[i] = o.scale_by_std ? ops::zscore(r[i], static_cast<double>(mean[g]), scale)
                          : r[i] - static_cast<double>(mean[g]);
  }
}

/// Read a rank-1 reward view into doubles, rejecting +-Inf (NaN = unscorable is allowed).
template <class V>
std::vector<double> load_rewards(const V& v, double bound = max_abs_reward) {
  std::vector<double> r(static_cast<std::size_t>(v.extent(0)));
  for (index_t i = 0; i < v.extent(0); ++i) {
    const double x = load(v(i));
    GRPO_EXPECTS(!std::isinf(x), bad_value,
                 "rewards: infinite value at row " + std::to_string(i) +
                     " (use NaN for an unscorable completion)");
    GRPO_EXPECTS(!(std::abs(x) > bound), bad_value,
                 "rewards: |value| " + std::to_string(x) + " at row " + std::to_string(i) +
                     " exceeds " + std::to_string(bound) +
                     " (its centred square would overflow the variance); rescale the rewards");
    r[static_cast<std::size_t>(i)] = x;
  }
  return r;
}

/// Writes the advantages to the caller's storage type. A finite advantage that the storage type
/// cannot hold (|A| > 3.4e38 into float, > 65504 into float16) is a named error, never a silent
/// +-inf: nothing is written then.
template <class V>
void store(const V& out, const std::vector<double>& a) {
  using E = typename V::value_type;
  static_assert(!std::is_const_v<typename V::element_type>, "advantages: output must be writable");
  for (index_t i = 0; i < out.extent(0); ++i) {
    const double x = a[static_cast<std::size_t>(i)];
    GRPO_EXPECTS(!std::isfinite(x) || std::isfinite(static_cast<double>(widen(narrow<E>(x)))),
                 bad_value,
                 "advantages: the advantage " + to_chars_g(x) + " of row " + std::to_string(i) +
                     " overflows the output type; use a double output or rescale the rewards");
  }
  for (index_t i = 0; i < out.extent(0); ++i) out(i) = narrow<E>(a[static_cast<std::size_t>(i)]);
}

template <class Rewards, class Out, class C>
advantage_stats compute_impl(Rewards&& rewards, const group_spec& groups,
                             const std::vector<double>* len, Out&& out, const advantage_options& o,
                             const C& comm) {
  auto rv = host_view<1>(rewards, "rewards");
  auto ov = host_view<1>(out, "advantages (out)");
  const index_t B = rv.extent(0);
  expect_extents(ov, {B}, "advantages (out)");
  expect_distinct_elements(ov, "advantages (out)");
  advantage_stats st;
  index_t G = 0;
  groups.resolve(B, comm.size(), st.seq_group, G, st.group_label);
  validate_advantage_options(o);
  std::vector<double> r =
      load_rewards(rv, o.emulate_verl_float32 ? max_abs_reward_f32 : max_abs_reward);
  std::vector<double> a = advantages_core(r, st.seq_group, G, len, o, comm, st);
  if (o.emulate_verl_float32) {
    GRPO_EXPECTS(o.estimator == adv_estimator::grpo || o.estimator == adv_estimator::dr_grpo,
                 bad_option, "emulate_verl_float32 applies to the grpo / dr_grpo estimators only");
    GRPO_EXPECTS(comm.size() == 1, bad_option,
                 "emulate_verl_float32 reproduces verl's single-process float32 sums; it cannot "
                 "be sharded");
    advantage_options o2 = o;
    if (o.estimator == adv_estimator::dr_grpo) o2.scale_by_std = false;
    verl_float32_override(r, st.seq_group, G, o2, st.zero_var, a);
  }
  store(ov, a);
  return st;
}

}  // namespace detail

/// Per-sequence advantages from per-sequence rewards.
/// @param rewards  [B] rewards (float, double, bf16, f16; NaN = unscorable)
/// @param groups   fixed group size or ids (see group_spec)
/// @param out      [B] advantages (float or double), written for every row (NaN rows -> 0)
/// @param opts     estimator and its options; reinforce_pp_baseline and opo need the mask overload
/// @param comm     data-parallel collective (default: single process)
/// @pre rewards and out are host tensors of the same length; no +-Inf reward.
/// @post out holds the advantages; the returned statistics are global over ranks.
/// Errors: [grpo.shape_mismatch], [grpo.bad_option], [grpo.out_of_range], [grpo.bad_value].
template <class Rewards, class Out, collective C = single_process>
requires detail::viewable<Rewards> && detail::viewable<Out> advantage_stats
compute_advantages(const Rewards& rewards, const group_spec& groups, Out&& out,
                   const advantage_options& opts = {}, const C& comm = {}) {
  GRPO_EXPECTS(opts.estimator != adv_estimator::reinforce_pp_baseline &&
                   opts.estimator != adv_estimator::opo,
               bad_option,
               "compute_advantages: reinforce_pp_baseline and opo need the response mask; call "
               "the overload taking mask[B, T]");
  return detail::compute_impl(rewards, groups, nullptr, std::forward<Out>(out), opts, comm);
}

/// Per-sequence advantages for estimators that need token counts (reinforce_pp_baseline's
/// token-weighted whitening, OPO's length-weighted baseline); the mask is otherwise unused.
/// Nonzero mask entries count as tokens.
/// @param mask [B, T] response mask (any arithmetic type)
/// @pre mask.extent(0) == B.
/// @post as the overload without mask; stats.whiten holds the whitening statistics.
template <class Rewards, class Mask, class Out, collective C = single_process>
requires detail::viewable<Rewards> && detail::viewable<Mask> && detail::viewable<Out>
    advantage_stats compute_advantages(const Rewards& rewards, const group_spec& groups,
                                       const Mask& mask, Out&& out,
                                       const advantage_options& opts = {}, const C& comm = {}) {
  auto mv = detail::host_view<2>(mask, "mask");
  auto rv = detail::host_view<1>(rewards, "rewards");
  GRPO_EXPECTS(mv.extent(0) == rv.extent(0), shape_mismatch,
               "mask: " + std::to_string(mv.extent(0)) + " rows for " +
                   std::to_string(rv.extent(0)) + " rewards");
  std::vector<double> len(static_cast<std::size_t>(mv.extent(0)));
  for (index_t i = 0; i < mv.extent(0); ++i)
    len[static_cast<std::size_t>(i)] = detail::row_length(mv, i);
  return detail::compute_impl(rewards, groups, &len, std::forward<Out>(out), opts, comm);
}

}  // namespace grpo
