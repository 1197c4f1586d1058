// SPDX-License-Identifier: Apache-2.0
// Presets: each named preset carries its anchor's documented numbers (docs/algorithms.md table),
// TRL/verl argument mapping, forced aggregations, and documented errors. Peer-value conformance of
// the same mappings is in test_loss_conformance.cpp.
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

TEST_CASE("presets: TRL loss types map to their aggregation" * doctest::test_suite("presets")) {
  using grpo::agg_mode;
  auto p = grpo::preset("trl_grpo");
  CHECK(p.agg.mode == agg_mode::seq_mean_token_mean);
  CHECK(p.agg.count_empty_rows);
  CHECK(p.agg.row_count_floor == 1.0);
  CHECK(p.policy.log_ratio_max == std::numeric_limits<double>::infinity());  // TRL: no clamp
  CHECK(p.kl.estimator == grpo::kl_estimator::k3);
  CHECK(p.kl.outer_clamp == 0.0);
  CHECK(p.kl_coef == 0.0);  // TRL's default beta = 0: KL off (README says so next to its snippet)
  CHECK_FALSE(p.opsm_in_denominator);
  CHECK_FALSE(p.entropy_mask_in_denominator);
  CHECK(grpo::preset("trl_bnpo").agg.mode == agg_mode::token_mean);
  CHECK(grpo::preset("trl_bnpo").agg.token_count_floor == 1.0);
  p = grpo::preset("trl_dr_grpo");
  CHECK(p.agg.mode == agg_mode::seq_mean_token_sum_norm);
  CHECK(*p.agg.norm_length == 512.0);
  CHECK(grpo::preset("trl_dapo").agg.mode == agg_mode::token_mean);
  p = grpo::preset("trl_cispo");
  CHECK(p.policy.kind == grpo::policy_loss_kind::cispo);
  CHECK(p.policy.cispo == grpo::cispo_clip::trl_cap);
  CHECK(p.policy.eps_high == 5.0);
  CHECK(grpo::preset("trl_sapo").policy.sapo_tau_neg == 1.05);
  p = grpo::preset("trl_luspo");
  CHECK(p.policy.level == grpo::is_level::sequence);
  CHECK(p.agg.mode == agg_mode::seq_mean_token_sum);
  CHECK(grpo::preset("trl_vespo").policy.kind == grpo::policy_loss_kind::vespo);
  p = grpo::preset("trl_gspo");
  CHECK(p.policy.level == grpo::is_level::sequence);
  CHECK(p.agg.mode == agg_mode::seq_mean_token_mean);
}

TEST_CASE("presets: TRL dapo normaliser, snapshot vs steps_per_generation rescale" *
          doctest::test_suite("presets")) {
  grpo::trl_args a;
  a.loss_type = "dapo";
  a.num_items_in_batch = 1200;
  a.num_processes = 4;
  a.gradient_accumulation_steps = 2;
  CHECK(*grpo::from_trl(a).agg.global_tokens == 300.0);  // N_gen / P (snapshot)
  a.steps_per_generation = 4;                            // PR #6024: x GA / steps_per_generation
  CHECK(*grpo::from_trl(a).agg.global_tokens == 150.0);
  a.num_items_in_batch = 0;  // all-masked generation batch: clamp(min=1)
  a.steps_per_generation.reset();
  CHECK(*grpo::from_trl(a).agg.global_tokens == 0.25);
}

TEST_CASE("presets: TRL experimental GMPO" * doctest::test_suite("presets")) {
  const auto p = grpo::preset("trl_gmpo");
  CHECK(p.policy.kind == grpo::policy_loss_kind::gmpo);
  CHECK(p.policy.gmpo == grpo::ops::gmpo_sign::trl);
  CHECK(p.policy.eps_low == 0.4);
  CHECK(p.agg.row_count_floor == 1.0);
  CHECK(p.agg.count_empty_rows);
  // Hand value: one row, A = 1, x = (0.1, 0.6) -> x~ = (0.1, 0.4), w = exp(0.25), loss = -w / B
  const std::vector<double> lp = {-1.0, -0.4, -1.0, -1.0}, old = {-1.1, -1.0, -1.0, -1.0};
  const std::vector<double> adv = {1.0, 0.0}, m = {1, 1, 0, 0};
  grpo::loss_batch<double, double> in;
  in.logp = grpo::make_view(lp.data(), {2, 2});
  in.old_logp = grpo::make_view(old.data(), {2, 2});
  in.advantages = grpo::broadcast_rows(adv.data(), 2, 2);
  in.mask = grpo::make_view(m.data(), {2, 2});
  const auto r = grpo::compute_loss(p, in);
  CHECK(r.loss == doctest::Approx(-std::exp(0.25) / 2).epsilon(1e-12));
  CHECK(r.grad_logp[0] == doctest::Approx(-std::exp(0.25) / 2 * 0.5).epsilon(1e-12));  // d/dx0 of the mean
  CHECK(r.grad_logp[1] == 0.0);                                         // clipped at 0.4
}

TEST_CASE("presets: verl defaults (dual clip 3, +-20 clamp, forced aggregations)" *
          doctest::test_suite("presets")) {
  auto p = grpo::preset("verl_vanilla");
  CHECK(p.policy.dual_clip_c == 3.0);
  CHECK(p.policy.log_ratio_min == -20.0);
  CHECK(p.policy.log_ratio_max == 20.0);
  CHECK(p.agg.mode == grpo::agg_mode::token_mean);
  CHECK(p.agg.row_count_eps == 1e-8);
  CHECK(p.kl_coef == 0.0);  // use_kl_loss defaults to False
  grpo::verl_args a;
  a.loss_mode = "gspo";
  a.loss_agg_mode = "token-sum";  // ignored by verl's gspo
  p = grpo::from_verl(a);
  CHECK(p.policy.level == grpo::is_level::sequence_token);
  CHECK(p.policy.log_ratio_max == 10.0);
  CHECK(p.policy.dual_clip_c == 0.0);
  CHECK(p.agg.mode == grpo::agg_mode::seq_mean_token_mean);
  a.loss_mode = "sapo";
  CHECK(grpo::from_verl(a).agg.mode == grpo::agg_mode::seq_mean_token_mean);
  a.loss_mode = "cispo";
  p = grpo::from_verl(a);
  CHECK(p.policy.cispo == grpo::cispo_clip::verl_clip);
  CHECK(p.agg.mode == grpo::agg_mode::token_sum);
  a.loss_mode = "geo_mean";
  p = grpo::from_verl(a);
  CHECK(p.policy.kind == grpo::policy_loss_kind::gmpo);
  CHECK(p.agg.count_empty_rows);
  a.loss_mode = "vanilla";
  a.use_kl_loss = true;
  p = grpo::from_verl(a);
  CHECK(p.kl_coef == 0.001);
  CHECK(p.kl.inner_clamp == 20.0);
  CHECK(p.kl.outer_clamp == 10.0);
  CHECK(p.kl_agg.has_value());
}

TEST_CASE("presets: OpenRLHF defaults" * doctest::test_suite("presets")) {
  const auto p = grpo::preset("openrlhf");
  CHECK(p.policy.kind == grpo::policy_loss_kind::ppo_clip);
  CHECK(p.policy.eps_low == 0.2);
  CHECK(p.policy.dual_clip_c == 0.0);
  CHECK(p.policy.log_ratio_max == 20.0);
  CHECK(p.kl.outer_clamp == 10.0);
  CHECK(p.kl_coef == 0.0);
}

TEST_CASE("presets: same loss through preset and through explicit options" *
          doctest::test_suite("presets")) {
  // verl vanilla with c = 3 equals a hand-built ppo_clip with the same fields
  const std::vector<double> lp = {-1.0, -2.0, -0.3, -1.1, -0.7, -3.0};
  const std::vector<double> old = {-1.5, -1.0, -0.35, -1.0, -2.5, -1.0};
  const std::vector<double> adv = {1.0, -2.0};
  const std::vector<double> m = {1, 1, 1, 1, 1, 0};
  grpo::loss_batch<double, double> in;
  in.logp = grpo::make_view(lp.data(), {2, 3});
  in.old_logp = grpo::make_view(old.data(), {2, 3});
  in.advantages = grpo::broadcast_rows(adv.data(), 2, 3);
  in.mask = grpo::make_view(m.data(), {2, 3});
  grpo::loss_options h;
  h.policy.dual_clip_c = 3.0;
  h.policy.log_ratio_min = -20;
  h.policy.log_ratio_max = 20;
  h.agg.row_count_eps = 1e-8;
  const auto a = grpo::compute_loss(grpo::preset("verl_vanilla"), in);
  const auto b = grpo::compute_loss(h, in);
  CHECK(a.loss == b.loss);
  // Hand value: tokens r = e^0.5 (A=1, clipped at 1.2), e^-1 (A=1 -> r), e^0.05 (A=1 -> r),
  // row 2 (A=-2): r = e^-0.1 -> max(2r, 1.6) = 2 e^-0.1; r = e^1.8 = 6.05 > 3 -> dual clip 6.
  const double want = (-1.2 - std::exp(-1.0) - std::exp(0.05) + 2 * std::exp(-0.1) + 6.0) / 5.0;
  CHECK(a.loss == doctest::Approx(want).epsilon(1e-12));
  CHECK(a.metrics.clip_dual.mean() == doctest::Approx(0.2).epsilon(1e-12));
  CHECK(a.metrics.clip_high.mean() == doctest::Approx(0.2).epsilon(1e-12));
}

TEST_CASE("presets: errors name the argument" * doctest::test_suite("presets")) {
  auto code_of = [](auto&& f) {
    try {
      f();
    } catch (const grpo::error& e) {
      return e.code();
    }
    FAIL("no grpo::error thrown");
    return grpo::errc::collective;
  };
  CHECK(code_of([] { (void)grpo::preset("trl_nope"); }) == grpo::errc::bad_option);
  CHECK(code_of([] { (void)grpo::preset("unknown"); }) == grpo::errc::bad_option);
  grpo::trl_args t;
  t.importance_sampling_level = "sentence";
  CHECK(code_of([&] { (void)grpo::from_trl(t); }) == grpo::errc::bad_option);
  grpo::verl_args v;
  v.dp_size = 2;  // token-mean without batch_num_tokens: verl raises too
  CHECK(code_of([&] { (void)grpo::from_verl(v); }) == grpo::errc::bad_option);
  v.batch_num_tokens = 100;
  CHECK(grpo::from_verl(v).agg.scale == 2.0);
  v.loss_mode = "dppo_tv";
  CHECK(code_of([&] { (void)grpo::from_verl(v); }) == grpo::errc::bad_option);
}
