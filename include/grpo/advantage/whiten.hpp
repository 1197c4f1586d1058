// SPDX-License-Identifier: Apache-2.0
/// @file whiten.hpp
/// @brief Token-level side of the advantages: token-weighted whitening (verl masked_whiten,
///        OpenRLHF global whitening; the reinforce_pp_baseline estimator's second step),
///        broadcast_to_tokens and REINFORCE++ discounted returns.
#pragma once

#include <grpo/advantage/moments.hpp>
#include <grpo/advantage/options.hpp>
#include <grpo/collective.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/tensor_traits.hpp>
#include <grpo/ops/advantage.hpp>

#include <cmath>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace grpo {
namespace detail {

/// Token-weighted whitening of per-row scalars a_i with weights (token counts) w_i:
/// rows with NaN a_i are skipped. Two passes, each one all-reduce.
template <class C>
whiten_stats whiten_rows(std::vector<double>& a, const std::vector<double>& w,
                         const whiten_options& wo, const C& comm) {
  double s[2] = {0.0, 0.0};  // N, sum w a
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i])) continue;
    s[0] += w[i];
    s[1] += w[i] * a[i];
  }
  all_reduce_sum(comm, std::span<double>(s, 2));
  const double n = s[0];
  GRPO_EXPECTS(n > (wo.bessel ? 1.0 : 0.0), bad_value,
               "masked_whiten: mask has " + std::to_string(static_cast<long long>(n)) +
                   " valid tokens over the batch; whitening needs at least " +
                   (wo.bessel ? "2" : "1"));
  const double mu = s[1] / (n + wo.mean_eps);
  double ss = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!std::isnan(a[i])) ss += w[i] * (a[i] - mu) * (a[i] - mu);
  ss = all_reduce_sum(comm, ss);
  double var = ss / (n + wo.mean_eps);
  if (wo.bessel) var *= n / (n - 1.0);
  const double scale = wo.center_only ? 1.0 : ops::z_scale(var, wo.eps, wo.place);
  for (auto& x : a)
    if (!std::isnan(x)) x = ops::whiten(x, mu, scale);
  return whiten_stats{mu, var, n};
}

}  // namespace detail

/// Token-level broadcast (verl returns advantages = scalar * mask): out(i, t) = a(i) * m(i, t).
/// @pre seq_adv [B], mask [B, T], out [B, T].
template <class Adv, class Mask, class Out>
requires detail::viewable<Adv> && detail::viewable<Mask> && detail::viewable<Out>
void broadcast_to_tokens(const Adv& seq_adv, const Mask& mask, Out&& out) {
  auto av = detail::host_view<1>(seq_adv, "sequence advantages");
  auto mv = detail::host_view<2>(mask, "mask");
  auto ov = detail::host_view<2>(out, "token advantages (out)");
  const index_t B = av.extent(0);
  expect_extents(mv, {B, mv.extent(1)}, "mask");
  expect_extents(ov, {B, mv.extent(1)}, "token advantages (out)");
  expect_distinct_elements(ov, "token advantages (out)");
  using E = typename decltype(ov)::value_type;
  for (index_t i = 0; i < B; ++i) {
    const double a = detail::load(av(i));
    for (index_t t = 0; t < mv.extent(1); ++t)
      ov(i, t) = narrow<E>(a * static_cast<double>(mv(i, t)));
  }
}

/// verl masked_whiten over a [B, T] batch: out = (x - mu) / scale at unmasked tokens, 0 elsewhere
/// (verl multiplies by the mask afterwards). Global over ranks (two all-reduce passes).
/// @pre values, mask, out are [B, T]; at least 2 unmasked tokens over all ranks (1 without
///      Bessel), else [grpo.bad_value] (verl raises ValueError).
template <class Values, class Mask, class Out, collective C = single_process>
requires detail::viewable<Values> && detail::viewable<Mask> && detail::viewable<Out> whiten_stats
masked_whiten(const Values& values, const Mask& mask, Out&& out, const whiten_options& wo = {},
              const C& comm = {}) {
  auto vv = detail::host_view<2>(values, "values");
  auto mv = detail::host_view<2>(mask, "mask");
  auto ov = detail::host_view<2>(out, "whitened (out)");
  const index_t B = vv.extent(0), T = vv.extent(1);
  expect_extents(mv, {B, T}, "mask");
  expect_extents(ov, {B, T}, "whitened (out)");
  expect_distinct_elements(ov, "whitened (out)");
  detail::expect_enum(wo.place, 3, "whiten_options.place");
  GRPO_EXPECTS(wo.eps >= 0 && std::isfinite(wo.eps) && wo.mean_eps >= 0 &&
                   std::isfinite(wo.mean_eps),
               bad_option, "whiten_options.eps / mean_eps must be finite and >= 0");
  // Flatten the unmasked tokens: each is a "row" of weight 1 for whiten_rows.
  std::vector<double> a, w;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      detail::expect_mask_entry(static_cast<double>(mv(i, t)), "mask", i, t);
      if (mv(i, t) != 0) {
        const double x = detail::load(vv(i, t));
        GRPO_EXPECTS(std::isfinite(x) && !(std::abs(x) > detail::max_abs_reward), bad_value,
                     "masked_whiten: non-finite value or |value| > 1e150 at (" +
                         std::to_string(i) + ", " + std::to_string(t) + ")");
        a.push_back(x);
        w.push_back(1.0);
      }
    }
  const whiten_stats ws = detail::whiten_rows(a, w, wo, comm);
  using E = typename decltype(ov)::value_type;
  std::size_t k = 0;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) ov(i, t) = mv(i, t) != 0 ? narrow<E>(a[k++]) : narrow<E>(0.0);
  return ws;
}

/// REINFORCE++ (verl compute_reinforce_plus_plus_outcome_advantage, snapshot 1dda039):
/// G_it = r_it + gamma G_i,next-valid over unmasked tokens (masked tokens pass the running return
/// through and get 0), then advantages = masked_whiten(G) * mask.
/// @param token_rewards [B, T]; @param mask [B, T]; @param adv_out [B, T]; @param returns_out
///        [B, T] (the un-whitened G, 0 at masked tokens).
/// @pre 0 <= gamma <= 1 (not enforced beyond finiteness); finite rewards.
template <class Rewards, class Mask, class Adv, class Ret, collective C = single_process>
requires detail::viewable<Rewards> && detail::viewable<Mask> && detail::viewable<Adv> &&
    detail::viewable<Ret>
        whiten_stats compute_reinforce_pp_advantages(const Rewards& token_rewards, const Mask& mask,
                                                     double gamma, Adv&& adv_out, Ret&& returns_out,
                                                     const whiten_options& wo = {},
                                                     const C& comm = {}) {
  GRPO_EXPECTS(std::isfinite(gamma), bad_option, "reinforce_pp: gamma must be finite");
  auto rv = detail::host_view<2>(token_rewards, "token_rewards");
  auto mv = detail::host_view<2>(mask, "mask");
  auto gv = detail::host_view<2>(returns_out, "returns (out)");
  const index_t B = rv.extent(0), T = rv.extent(1);
  expect_extents(mv, {B, T}, "mask");
  expect_extents(gv, {B, T}, "returns (out)");
  expect_distinct_elements(gv, "returns (out)");
  std::vector<double> g(static_cast<std::size_t>(B * T));
  for (index_t i = 0; i < B; ++i) {
    double running = 0.0;
    for (index_t t = T; t-- > 0;) {
      const double r = detail::load(rv(i, t));
      GRPO_EXPECTS(std::isfinite(r), bad_value,
                   "token_rewards: non-finite value at (" + std::to_string(i) + ", " +
                       std::to_string(t) + ")");
      detail::expect_mask_entry(static_cast<double>(mv(i, t)), "mask", i, t);
      running = ops::discounted_return_step(running, r, gamma, mv(i, t) != 0,
                                            &g[static_cast<std::size_t>(i * T + t)]);
    }
  }
  using E = typename decltype(gv)::value_type;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) gv(i, t) = narrow<E>(g[static_cast<std::size_t>(i * T + t)]);
  return masked_whiten(make_view(static_cast<const double*>(g.data()), {B, T}), mv,
                       std::forward<Adv>(adv_out), wo, comm);
}

}  // namespace grpo
