// SPDX-License-Identifier: Apache-2.0
/// @file test_metrics.cpp
/// @brief compute_loss metrics (grpo/metrics.hpp) against values worked out by hand from the
///        definitions in metrics.hpp and loss.hpp: ratio, is_weight, advantage and approx_kl
///        statistics, truncated_seqs, opsm_dropped_seqs, entropy_masked_tokens, tokens and
///        sequences. (Before, these were only compared between two library paths.)
#include <grpo/loss.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <span>
#include <vector>

namespace {
constexpr double eps = 1e-14;  // every expected value below is a few double operations
}

TEST_CASE("metrics: truncation, OPSM and token TIS by hand" * doctest::test_suite("metrics")) {
  // Row 0: A = +1 (kept by OPSM whatever its gap); row 1: A = -1 and mean gap
  // sum_t (ls - lp) / 3 = (0.3 + 0.2 + 0.3) / 3 > 0.1 (dropped by OPSM); row 2: truncated.
  const long B = 3, T = 3;
  const std::vector<double> lp = {-1.0, -0.5, -2.0, -0.7, -1.2, -0.9, -1.0, -1.0, -1.0};
  const std::vector<double> old = {-1.1, -0.4, -2.3, -0.4, -1.0, -0.6, -1.2, -0.8, -1.0};
  const std::vector<double> smp = {-1.5, -0.4, -2.3, -0.4, -1.0, -0.6, -1.2, -0.8, -1.0};
  const std::vector<double> adv = {1, 1, 1, -1, -1, -1, 0.5, 0.5, 0.5};
  const std::vector<double> mask(B * T, 1.0);
  const std::vector<unsigned char> trunc = {0, 0, 1};
  grpo::loss_options o;
  o.opsm_threshold = 0.1;
  o.tis.enabled = true;  // token TIS, truncate at c_max = 2: w = min(exp(lo - ls), 2)
  o.tis.c_max = 2.0;
  grpo::loss_batch<double, double> b;
  auto v = [&](const std::vector<double>& x) { return grpo::make_view(x.data(), {B, T}); };
  b.logp = v(lp);
  b.old_logp = v(old);
  b.sampler_logp = v(smp);
  b.advantages = v(adv);
  b.mask = v(mask);
  b.truncated = std::span<const unsigned char>(trunc);
  const auto r = grpo::compute_loss(o, b);
  const auto& m = r.metrics;
  CHECK(m.truncated_seqs == 1.0);
  CHECK(m.opsm_dropped_seqs == 1.0);
  CHECK(m.tokens == 3.0);  // row 0 only: row 1 left the final mask (OPSM in the denominator)
  CHECK(m.sequences == 1.0);
  // Ratio r = exp(lp - lo) on row 0: exp(0.1), exp(-0.1), exp(0.3).
  const double r0 = std::exp(-1.0 - -1.1), r1 = std::exp(-0.5 - -0.4), r2 = std::exp(-2.0 - -2.3);
  CHECK(m.ratio.weight == 3.0);
  CHECK(m.ratio.mean() == doctest::Approx((r0 + r1 + r2) / 3).epsilon(eps));
  CHECK(m.ratio.min == doctest::Approx(r1).epsilon(eps));
  CHECK(m.ratio.max == doctest::Approx(r2).epsilon(eps));
  // IS weight: min(exp(lo - ls), 2) = exp(0.4), 1, 1.
  const double w0 = std::exp(-1.1 - -1.5);
  CHECK(m.is_weight.mean() == doctest::Approx((w0 + 2.0) / 3).epsilon(eps));
  CHECK(m.is_weight.max == doctest::Approx(w0).epsilon(eps));
  CHECK(m.is_weight.min == 1.0);
  // Advantage statistics over the final mask: row 0 only.
  CHECK(m.advantage.mean() == 1.0);
  CHECK(m.advantage.min == 1.0);
  CHECK(m.advantage.max == 1.0);
  // approx_kl = mean (lo - lp) = (-0.1 + 0.1 - 0.3) / 3.
  CHECK(m.approx_kl.mean() ==
        doctest::Approx(((-1.1 - -1.0) + (-0.4 - -0.5) + (-2.3 - -2.0)) / 3).epsilon(1e-12));
}

TEST_CASE("metrics: top-entropy mask by hand (torch.quantile, linear interpolation)" *
          doctest::test_suite("metrics")) {
  // Entropies 0.1 0.5 0.9 0.3; rho = 0.5 keeps h >= quantile_{0.5}{0.1, 0.3, 0.5, 0.9} = 0.4.
  const long B = 1, T = 4;
  const std::vector<double> lp = {-1, -1, -1, -1}, ent = {0.1, 0.5, 0.9, 0.3}, adv = {1, 1, 1, 1},
                            mask = {1, 1, 1, 1};
  grpo::loss_options o;
  o.top_entropy_quantile = 0.5;
  grpo::loss_batch<double, double> b;
  auto v = [&](const std::vector<double>& x) { return grpo::make_view(x.data(), {B, T}); };
  b.logp = v(lp);
  b.entropy = v(ent);
  b.advantages = v(adv);
  b.mask = v(mask);
  const auto r = grpo::compute_loss(o, b);
  // (the vectorised token rows since the top-entropy mask left the general engine)
  CHECK(r.engine_used == grpo::loss_engine::token_rows_simd);
  CHECK(r.metrics.entropy_masked_tokens == 2.0);
  CHECK(r.metrics.tokens == 2.0);  // the entropy mask joins the denominator (our contract)
  // On-policy, A = 1, token mean over the kept tokens: loss = -mean(r A) = -1 and the gradient
  // -1/2 on the kept tokens, 0 on the masked ones.
  CHECK(r.loss == doctest::Approx(-1.0).epsilon(eps));
  CHECK(r.grad_logp == std::vector<double>{0.0, -0.5, -0.5, 0.0});
}

TEST_CASE("is_weights: detached per-token multipliers of the policy term, by hand" *
          doctest::test_suite("metrics")) {
  // On-policy (r = 1, dr/dlp = 1), A = 1, weights w = {0.5, 2}, token mean over 2 tokens:
  //   loss = -(w_0 r A + w_1 r A) / 2 = -1.25,  d loss / d lp_t = -w_t A / 2 = {-0.25, -1}.
  const long B = 1, T = 2;
  const std::vector<double> lp = {-1.0, -2.0}, w = {0.5, 2.0}, adv = {1, 1}, mask = {1, 1};
  grpo::loss_options o;
  grpo::loss_batch<double, double> b;
  auto v = [&](const std::vector<double>& x) { return grpo::make_view(x.data(), {B, T}); };
  b.logp = v(lp);
  b.is_weights = v(w);
  b.advantages = v(adv);
  b.mask = v(mask);
  const auto r = grpo::compute_loss(o, b);
  CHECK(r.engine_used == grpo::loss_engine::general);
  CHECK(r.loss == doctest::Approx(-1.25).epsilon(eps));
  CHECK(r.grad_logp[0] == doctest::Approx(-0.25).epsilon(eps));
  CHECK(r.grad_logp[1] == doctest::Approx(-1.0).epsilon(eps));
  CHECK(r.metrics.is_weight.mean() == doctest::Approx(1.25).epsilon(eps));
  CHECK(r.metrics.is_weight.min == 0.5);
  CHECK(r.metrics.is_weight.max == 2.0);
}
