// SPDX-License-Identifier: Apache-2.0
/// @file kl.hpp
/// @brief KL front ends over [B, T] views: elementwise estimator values and gradients (verl
///        kl_penalty), name parsing for verl / OpenRLHF / TRL spellings, and the in-reward
///        placement helper (per-token or sequence-summed KL to subtract from rewards).
///
/// In-loss placement is part of grpo::compute_loss (<grpo/loss.hpp>): beta * KL is added to the
/// per-token loss and aggregated with the policy term's denominator (TRL) or its own (verl).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/ops/kl.hpp>

#include <cmath>
#include <span>
#include <string>
#include <string_view>

namespace grpo {

using ops::kl_estimator;
using ops::kl_params;

/// Parses verl's `kl_penalty` / `kl_loss_type` names: "kl"/"k1", "abs", "mse"/"k2",
/// "low_var_kl"/"k3", each optionally suffixed "+" (straight-through k2 gradient; "k2+"/"mse+" are
/// plain k2). verl clamps: low_var_kl gets inner 20 / outer 10 when `verl_clamps` is set.
/// "full" (exact full-vocabulary KL) is not a per-token estimator: [grpo.bad_option].
/// @pre none. @post straight_through is false for k2 (already the k2 gradient).
inline kl_params kl_params_from_string(std::string_view name, bool verl_clamps = true) {
  kl_params p;
  std::string_view base = name;
  if (!base.empty() && base.back() == '+') {
    p.straight_through = true;
    base.remove_suffix(1);
  }
  if (base == "kl" || base == "k1")
    p.estimator = kl_estimator::k1;
  else if (base == "abs")
    p.estimator = kl_estimator::abs;
  else if (base == "mse" || base == "k2")
    p.estimator = kl_estimator::k2;
  else if (base == "low_var_kl" || base == "k3")
    p.estimator = kl_estimator::k3;
  else
    GRPO_THROW(bad_option, "kl_penalty: unknown estimator '" + std::string(name) + "'");
  if (p.estimator == kl_estimator::k2) p.straight_through = false;  // already the k2 gradient
  if (verl_clamps && p.estimator == kl_estimator::k3) {
    p.inner_clamp = 20.0;
    p.outer_clamp = 10.0;
  }
  return p;
}

/// OpenRLHF's estimators: every value clamped to [-10, 10], no inner clamp.
inline kl_params openrlhf_kl_params(kl_estimator e) {
  kl_params p;
  p.estimator = e;
  p.outer_clamp = 10.0;
  return p;
}

/// Elementwise KL of a [B, T] batch (unmasked, like verl kl_penalty): kl_it and d kl_it / d lp_it.
/// @pre logp, ref_logp, kl_out (and grad_out when non-null) have equal extents; host memory.
/// @post kl_out(i,t) = ops::kl_value(p, lp, lr); grad_out(i,t) = ops::kl_grad(p, lp, lr).
template <class T, class U, class O, class G = O>
void kl_penalty(const kl_params& p, strided_view<const T, 2> logp,
                strided_view<const U, 2> ref_logp, strided_view<O, 2> kl_out,
                strided_view<G, 2> grad_out = {}) {
  expect_host(logp, "logp");
  expect_extents(ref_logp, logp.extents(), "ref_logp");
  expect_extents(kl_out, logp.extents(), "kl_out");
  const bool want_grad = grad_out.data_handle() != nullptr;
  if (want_grad) expect_extents(grad_out, logp.extents(), "grad_out");
  GRPO_EXPECTS(p.inner_clamp >= 0 && p.outer_clamp >= 0 && std::isfinite(p.inner_clamp) &&
                   std::isfinite(p.outer_clamp),
               bad_value, "kl_params: clamps must be finite and >= 0");
  detail::expect_enum(p.estimator, 4, "kl_params.estimator");
  expect_distinct_elements(kl_out, "kl_out");
  for (index_t i = 0; i < logp.extent(0); ++i)
    for (index_t t = 0; t < logp.extent(1); ++t) {
      const double lp = static_cast<double>(logp(i, t)), lr = static_cast<double>(ref_logp(i, t));
      const auto v = ops::kl_value_grad(p, lp, lr);
      kl_out(i, t) = static_cast<O>(v.value);
      if (want_grad) grad_out(i, t) = static_cast<G>(v.grad);
    }
}

/// Where the in-reward KL is placed.
enum class kl_reward_placement : unsigned char {
  token,         ///< per-token penalty coef * kl_it * m_it (verl apply_kl_penalty, OpenRLHF)
  sequence_sum,  ///< coef * sum_t m_it kl_it per row (TRL RLOO: R <- R - beta sum_t (lo - lr))
};

/// KL to SUBTRACT from rewards (in-reward placement). No gradient flows through rewards, so only
/// values are produced. Token placement writes [B, T] into `out` (masked entries 0); sequence_sum
/// writes one value per row into `out_rows`.
/// @pre logp (usually the old/rollout log-probs), ref_logp, mask of equal [B, T] extents;
///      token: out is [B, T]; sequence_sum: out_rows.size() == B.
template <class T, class U, class M, class O>
void kl_for_reward(const kl_params& p, double coef, strided_view<const T, 2> logp,
                   strided_view<const U, 2> ref_logp, strided_view<const M, 2> mask,
                   kl_reward_placement placement, strided_view<O, 2> out,
                   std::span<O> out_rows = {}) {
  expect_host(logp, "logp");
  expect_extents(ref_logp, logp.extents(), "ref_logp");
  expect_extents(mask, logp.extents(), "mask");
  GRPO_EXPECTS(std::isfinite(coef), bad_value, "kl_for_reward: coef must be finite");
  detail::expect_enum(p.estimator, 4, "kl_params.estimator");
  detail::expect_enum(placement, 2, "kl_for_reward: placement");
  GRPO_EXPECTS(p.inner_clamp >= 0 && p.outer_clamp >= 0 && std::isfinite(p.inner_clamp) &&
                   std::isfinite(p.outer_clamp),
               bad_value, "kl_params: clamps must be finite and >= 0");
  if (placement == kl_reward_placement::token)
    expect_extents(out, logp.extents(), "out");
  else
    GRPO_EXPECTS(static_cast<index_t>(out_rows.size()) == logp.extent(0), shape_mismatch,
                 "out_rows: size " + std::to_string(out_rows.size()) + ", expected " +
                     std::to_string(logp.extent(0)));
  for (index_t i = 0; i < logp.extent(0); ++i) {
    double row = 0.0;
    for (index_t t = 0; t < logp.extent(1); ++t) {
      const double m = static_cast<double>(mask(i, t));
      detail::expect_mask_entry(m, "mask", i, t);  // the loss's mask rule
      double v = 0.0;
      if (m != 0.0) {
        const double lp = static_cast<double>(logp(i, t)), lr = static_cast<double>(ref_logp(i, t));
        detail::expect_finite_at(lp, "logp", i, t);
        detail::expect_finite_at(lr, "ref_logp", i, t);
        v = coef * m * ops::kl_value(p, lp, lr);
      }
      if (placement == kl_reward_placement::token) out(i, t) = static_cast<O>(v);
      row += v;
    }
    if (placement == kl_reward_placement::sequence_sum)
      out_rows[static_cast<std::size_t>(i)] = static_cast<O>(row);
  }
}

}  // namespace grpo
