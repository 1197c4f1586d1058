// SPDX-License-Identifier: Apache-2.0
/// @file common.hpp
/// @brief Shared data of the backend examples (two completions of three tokens, the second one
///        token shorter) and the check every example ends with: the loss and d loss / d logp that
///        came through the backend must equal those computed from raw row-major pointers.
#pragma once

#include <cmath>
#include <cstdio>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

namespace example {

inline constexpr double logp[6] = {-0.5, -1.2, -0.3, -2.0, -0.7, -0.9};
inline constexpr double old_logp[6] = {-0.6, -1.0, -0.3, -1.8, -0.7, -0.9};
inline constexpr double ref_logp[6] = {-0.55, -1.1, -0.35, -1.9, -0.8, -1.0};
inline constexpr double adv[2] = {1.0, -1.0};  // one advantage per completion
inline constexpr double mask[6] = {1, 1, 1, 1, 1, 0};

/// TRL GRPOTrainer, loss_type "grpo", with a KL penalty beta = 0.04 to the reference.
inline grpo::loss_options options() {
  grpo::loss_options o = grpo::preset("trl_grpo");
  o.kl_coef = 0.04;
  return o;
}

/// Prints the result and returns 0 when it matches the raw-pointer computation to 1e-12.
/// `grad(i, t)` reads the gradient the backend example produced for token t of completion i.
template <class Grad>
int check(const char* backend, double loss, Grad&& grad) {
  auto ref =
      grpo::compute_loss(options(), grpo::make_view(logp, {2, 3}),
                         grpo::make_view(old_logp, {2, 3}), grpo::make_view(ref_logp, {2, 3}),
                         grpo::broadcast_rows(adv, 2, 3), grpo::make_view(mask, {2, 3}));
  bool ok = std::abs(loss - ref.loss) <= 1e-12;
  std::printf("%s: loss %.9f\n  dloss/dlogp", backend, loss);
  for (grpo::index_t i = 0; i < 2; ++i)
    for (grpo::index_t t = 0; t < 3; ++t) {
      std::printf(" %+.6f", grad(i, t));
      ok = ok && std::abs(grad(i, t) - ref.at(ref.grad_logp, i, t)) <= 1e-12;
    }
  std::printf("\n%s\n",
              ok ? "matches the raw-pointer result" : "MISMATCH with the raw-pointer result");
  return ok ? 0 : 1;
}

}  // namespace example
