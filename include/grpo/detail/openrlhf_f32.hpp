// SPDX-License-Identifier: Apache-2.0
/// @file openrlhf_f32.hpp
/// @brief OpenRLHF's float32 arithmetic reproduced on the host: torch's CPU float32 sum order,
///        the compute_approx_kl estimator (value and autograd gradient, clamp at +-10) and the
///        actor's KL loss (use_kl_loss: aggregate_loss of the float32 KL, times the coefficient).
///        The one copy, used by <grpo/openrlhf.hpp> (openrlhf_approx_kl, openrlhf_kl_loss,
///        compute_openrlhf_advantages) and by compute_loss_into (loss.hpp) when
///        loss_options::kl_openrlhf_float32 routes the in-loss KL through it.
///
/// Anchor: OpenRLHF/OpenRLHF @ 3c3be62, openrlhf/models/utils.py compute_approx_kl,
/// openrlhf/models/loss.py aggregate_loss, openrlhf/trainer/ray/ppo_actor.py training_step
/// (`loss = actor_loss + kl_loss * kl_ctl`).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/kl.hpp>
#include <grpo/ops/kl.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <vector>

namespace grpo::detail {

/// torch's float32 sum of n contiguous values (ATen cascade_sum on CPU, single chunk, AVX2):
/// n < 8: four interleaved scalar accumulators (tail into the first), then acc0 + acc1 + acc2 +
/// acc3; n >= 8: the n / 8 vectors go to four vector accumulators in turn (multi_row_sum: a
/// cascade of 4 levels every 2^max(4, ceil_log2(n / 32) / 4) rows), leftover vectors into the
/// first, the four combined left to right; then a scalar starts at 0, adds the n % 8 tail
/// elements, then the 8 lanes in order.
inline float torch_cpu_sum_f32(const float* x, std::size_t n) {
  constexpr std::size_t W = 8, ilp = 4, levels = 4;
  using vec = std::array<float, W>;
  const std::size_t lane = n < W ? 1 : W;  // scalar path: "vectors" of one element
  const std::size_t nv = n / lane;         // vectors
  const std::size_t rows = nv / ilp;       // multi_row_sum rows of ilp vectors
  auto ceil_log2 = [](std::size_t v) -> std::size_t {
    if (v <= 2) return 1;
    std::size_t b = 0;
    for (std::size_t u = v - 1; u != 0; u >>= 1) ++b;
    return b;
  };
  const std::size_t lp = std::max<std::size_t>(4, ceil_log2(rows) / levels);
  const std::size_t step = std::size_t{1} << lp, lmask = step - 1;
  std::array<std::array<vec, ilp>, levels> acc{};
  auto add_vec = [&](vec& a, std::size_t v) {
    for (std::size_t l = 0; l < lane; ++l) a[l] += x[v * lane + l];
  };
  std::size_t i = 0;
  while (i + step <= rows) {
    for (std::size_t j = 0; j < step; ++j, ++i)
      for (std::size_t k = 0; k < ilp; ++k) add_vec(acc[0][k], i * ilp + k);
    for (std::size_t j = 1; j < levels; ++j) {
      for (std::size_t k = 0; k < ilp; ++k) {
        for (std::size_t l = 0; l < lane; ++l) acc[j][k][l] += acc[j - 1][k][l];
        acc[j - 1][k] = vec{};
      }
      if ((i & (lmask << (j * lp))) != 0) break;
    }
  }
  for (; i < rows; ++i)
    for (std::size_t k = 0; k < ilp; ++k) add_vec(acc[0][k], i * ilp + k);
  for (std::size_t j = 1; j < levels; ++j)
    for (std::size_t k = 0; k < ilp; ++k)
      for (std::size_t l = 0; l < lane; ++l) acc[0][k][l] += acc[j][k][l];
  vec part = acc[0][0];
  for (std::size_t v = rows * ilp; v < nv; ++v) add_vec(part, v);  // leftover vectors
  for (std::size_t k = 1; k < ilp; ++k)
    for (std::size_t l = 0; l < lane; ++l) part[l] += acc[0][k][l];
  if (lane == 1) return part[0];
  float fin = 0.0f;
  for (std::size_t k = nv * W; k < n; ++k) fin += x[k];
  for (std::size_t l = 0; l < W; ++l) fin += part[l];
  return fin;
}

/// float32 product rounded on its own: the exact double product of two floats, rounded once.
/// Written this way so that no build (-ffp-contract=fast with FMA) fuses it into a following add,
/// which torch's separate float32 kernels never do.
inline float mul32(float a, float b) noexcept {
  return static_cast<float>(static_cast<double>(a) * static_cast<double>(b));
}

/// One OpenRLHF KL estimator value and its derivative with respect to lp (clamp included:
/// torch's clamp passes the gradient on the closed interval). float32 emulation: every operation
/// of compute_approx_kl and of its autograd graph rounded to float, `g` the incoming gradient
/// (float32 in OpenRLHF's graph).
struct kl32_value_grad {
  double value = 0, grad = 0;
};
inline kl32_value_grad openrlhf_kl_token(kl_estimator e, double lp, double lb, double g, bool f32) {
  if (!f32) {
    const auto v = ops::kl_value_grad(openrlhf_kl_params(e), lp, lb);
    return {v.value, g * v.grad};
  }
  const float x = static_cast<float>(lp) - static_cast<float>(lb);
  const float gf = static_cast<float>(g);
  float k = 0.0f, gx = 0.0f;
  if (e == kl_estimator::k1) {  // log_ratio
    k = x;
    gx = gf;
  } else if (e == kl_estimator::k2) {  // log_ratio**2 / 2.0: grad (g / 2) (2 x)
    k = mul32(x, x) / 2.0f;
    gx = mul32(gf / 2.0f, 2.0f * x);
  } else {  // k3: exp(-x) - 1 + x; grad g + (-(g exp(-x)))
    const float ex = static_cast<float>(std::exp(-static_cast<double>(x)));
    k = (ex - 1.0f) + x;
    gx = gf - mul32(gf, ex);
  }
  if (k < -10.0f || k > 10.0f) gx = 0.0f;
  k = k < -10.0f ? -10.0f : (k > 10.0f ? 10.0f : k);
  return {static_cast<double>(k), static_cast<double>(gx)};
}

/// OpenRLHF's actor KL loss with algo.kl.use_loss over a [B, T] batch (row-major token order):
///   kl_t = compute_approx_kl(lp, lb) (clamped to [-10, 10]),
///   kl_loss = sum_t m_t kl_t / N * dp   (aggregate_loss, token level; masked_mean: dp = 1),
/// and the gradient of coef * kl_loss with respect to lp (the actor adds kl_loss * kl_ctl).
/// f32 (OpenRLHF's `.float()`): kl_t as openrlhf_kl_token, the masked products summed over all
/// B*T entries in torch's float32 order, kl_loss = fl(fl(s / fl(N)) fl(dp)); the gradient is the
/// float32 autograd chain of that graph: g = fl(fl(fl(coef) fl(dp)) / fl(N)) on a valid token (0
/// on padding, the mask product's backward), pushed through the float32 estimator graph.
/// Double: kl_loss = sum m kl / N * dp, g = coef dp / N times the estimator's derivative.
/// `mk(i, t)` is the token's 0 / 1 mask, `lp(i, t)` / `lb(i, t)` its log-probs (double), and
/// `out(i, t, kl_t, grad_t)` receives every position's value and gradient. N = 0 gives NaN (as
/// OpenRLHF); callers that want another convention test N first.
/// @return kl_loss (before the coefficient), float32-rounded when f32.
template <class LP, class LB, class MK, class OUT>
double openrlhf_kl_loss_core(kl_estimator e, index_t B, index_t Tn, LP&& lp, LB&& lb, MK&& mk,
                             double N, double dp, double coef, bool f32, OUT&& out) {
  const double g0 =
      f32 ? static_cast<double>(mul32(static_cast<float>(coef), static_cast<float>(dp)) /
                                static_cast<float>(N))
          : coef * dp / N;
  std::vector<float> prod32;
  if (f32) prod32.reserve(static_cast<std::size_t>(B * Tn));
  double sum64 = 0.0;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < Tn; ++t) {
      const bool m = mk(i, t);
      const kl32_value_grad v = openrlhf_kl_token(e, lp(i, t), lb(i, t), m ? g0 : 0.0, f32);
      if (f32) prod32.push_back(m ? static_cast<float>(v.value) : 0.0f);
      sum64 += m ? v.value : 0.0;
      out(i, t, v.value, m ? v.grad : 0.0);
    }
  if (!f32) return sum64 / N * dp;
  const float l = torch_cpu_sum_f32(prod32.data(), prod32.size()) / static_cast<float>(N);
  return static_cast<double>(mul32(l, static_cast<float>(dp)));
}

}  // namespace grpo::detail
