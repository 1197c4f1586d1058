// SPDX-License-Identifier: Apache-2.0
/// @file test_validation.cpp
/// @brief Every existing error site of the objective's validators (validate(policy_options),
///        validate(agg_options), validate(loss_options), compute_loss_into's input checks, the KL
///        front ends): one bad field at a time, each checked for its error id AND the field name
///        in the message (an error test that accepts any grpo::error cannot tell which check
///        fired). New checks are tested in test_bad_input*.cpp.
#include <grpo/kl.hpp>
#include <grpo/loss.hpp>

#include <doctest/doctest.h>
#include <support/expect_error.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace {

constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_v = std::numeric_limits<double>::infinity();

using grpo_test::expect_error;

struct option_case {
  std::string label;
  std::function<void(grpo::loss_options&)> mutate;
  grpo::errc code;
  std::string field;
};

/// A small valid batch; run(o) calls compute_loss_into, mutations of the batch are applied first.
struct batch {
  static constexpr long B = 2, T = 3;
  std::vector<double> lp = std::vector<double>(B * T, -1.0), old = lp, ref = lp, smp = lp,
                      isw = std::vector<double>(B * T, 1.0), ent = isw, adv = {1, 1, 1, -1, -1, -1},
                      mask = std::vector<double>(B * T, 1.0), g = std::vector<double>(B * T);
  std::vector<double> ptl = g, ge = g, pseq = std::vector<double>(B);
  std::vector<unsigned char> trunc = {0, 0};
  grpo::loss_batch<double, double> in() const {
    grpo::loss_batch<double, double> b;
    b.logp = grpo::make_view(lp.data(), {B, T});
    b.old_logp = grpo::make_view(old.data(), {B, T});
    b.advantages = grpo::make_view(adv.data(), {B, T});
    b.mask = grpo::make_view(mask.data(), {B, T});
    return b;
  }
  grpo::loss_outputs<double> out() {
    grpo::loss_outputs<double> o;
    o.grad_logp = grpo::make_view(g.data(), {B, T});
    return o;
  }
};

}  // namespace

TEST_CASE("validate(policy_options): every check, one bad field at a time" *
          doctest::test_suite("validation")) {
  using grpo::errc;
  using K = grpo::policy_loss_kind;
  const std::vector<option_case> cases = {
      {"eps_low < 0", [](auto& o) { o.policy.eps_low = -0.1; }, errc::bad_value, "eps_low"},
      {"eps_low NaN", [](auto& o) { o.policy.eps_low = nan_v; }, errc::bad_value, "eps_low"},
      {"eps_high inf", [](auto& o) { o.policy.eps_high = inf_v; }, errc::bad_value, "eps_high"},
      {"eps_high < 0", [](auto& o) { o.policy.eps_high = -1; }, errc::bad_value, "eps_high"},
      {"dual_clip_c = 1", [](auto& o) { o.policy.dual_clip_c = 1.0; }, errc::bad_option,
       "dual_clip_c"},
      {"dual_clip_c NaN", [](auto& o) { o.policy.dual_clip_c = nan_v; }, errc::bad_option,
       "dual_clip_c"},
      {"delta = 0.5", [](auto& o) { o.policy.delta = 0.5; }, errc::bad_option, "delta"},
      {"delta inf", [](auto& o) { o.policy.delta = inf_v; }, errc::bad_option, "delta"},
      {"log_ratio_min >= max",
       [](auto& o) {
         o.policy.log_ratio_min = 1;
         o.policy.log_ratio_max = 1;
       },
       errc::bad_option, "log_ratio_min"},
      {"log_ratio_max NaN", [](auto& o) { o.policy.log_ratio_max = nan_v; }, errc::bad_option,
       "log_ratio_max"},
      {"sapo_tau_pos = 0", [](auto& o) { o.policy.sapo_tau_pos = 0; }, errc::bad_value,
       "sapo_tau_pos"},
      {"sapo_tau_neg inf", [](auto& o) { o.policy.sapo_tau_neg = inf_v; }, errc::bad_value,
       "sapo_tau_pos/neg"},
      {"CISPO cap with eps_high 0",
       [](auto& o) {
         o.policy.kind = K::cispo;
         o.policy.cispo = grpo::cispo_clip::trl_cap;
         o.policy.eps_high = 0;
       },
       errc::bad_value, "eps_high (CISPO cap)"},
      {"GMPO at sequence level",
       [](auto& o) {
         o.policy.kind = K::gmpo;
         o.policy.level = grpo::is_level::sequence;
       },
       errc::bad_option, "GMPO"},
      {"VESPO at sequence level",
       [](auto& o) {
         o.policy.kind = K::vespo;
         o.policy.level = grpo::is_level::sequence;
       },
       errc::bad_option, "VESPO"},
      {"REINFORCE at sequence level",
       [](auto& o) {
         o.policy.kind = K::reinforce;
         o.policy.level = grpo::is_level::sequence;
       },
       errc::bad_option, "REINFORCE"},
  };
  for (const auto& c : cases) {
    grpo::loss_options o;
    c.mutate(o);
    expect_error(
        c.label, [&] { grpo::validate(o.policy); }, c.code, c.field);
    // compute_loss_into validates its options before reading any input.
    batch b;
    expect_error(
        c.label + " (compute_loss_into)",
        [&] { (void)grpo::compute_loss_into(o, b.in(), b.out()); }, c.code, c.field);
  }
  grpo::loss_options ok;
  CHECK_NOTHROW(grpo::validate(ok.policy));
}

TEST_CASE("validate(agg_options): every check, in the policy, KL and entropy aggregations" *
          doctest::test_suite("validation")) {
  using grpo::errc;
  struct agg_case {
    std::string label;
    std::function<void(grpo::agg_options&)> mutate;
    grpo::errc code;
    std::string field;
  };
  const std::vector<agg_case> cases = {
      {"global_tokens 0", [](auto& a) { a.global_tokens = 0.0; }, errc::bad_value, "global_tokens"},
      {"global_tokens NaN", [](auto& a) { a.global_tokens = nan_v; }, errc::bad_value,
       "global_tokens"},
      {"global_seqs -1", [](auto& a) { a.global_seqs = -1.0; }, errc::bad_value, "global_seqs"},
      {"global_groups inf", [](auto& a) { a.global_groups = inf_v; }, errc::bad_value,
       "global_groups"},
      {"norm_length 0", [](auto& a) { a.norm_length = 0.0; }, errc::bad_value, "norm_length"},
      {"scale NaN", [](auto& a) { a.scale = nan_v; }, errc::bad_value, "agg_options.scale"},
      {"row_count_eps < 0", [](auto& a) { a.row_count_eps = -1e-8; }, errc::bad_value,
       "row_count_eps"},
      {"row_count_floor inf", [](auto& a) { a.row_count_floor = inf_v; }, errc::bad_value,
       "row_count_floor"},
      {"token_count_floor < 0", [](auto& a) { a.token_count_floor = -1; }, errc::bad_value,
       "token_count_floor"},
      {"group_token_mean without group_size",
       [](auto& a) {
         a.mode = grpo::agg_mode::group_token_mean;
         a.group_size = 0;
       },
       errc::bad_option, "group_size"},
  };
  for (const auto& c : cases) {
    grpo::agg_options a;
    c.mutate(a);
    expect_error(
        c.label, [&] { grpo::validate(a); }, c.code, c.field);
    for (int where = 0; where < 3; ++where) {  // policy agg, kl_agg, entropy_agg
      grpo::loss_options o;
      if (where == 0) o.agg = a;
      if (where == 1) o.kl_agg = a;
      if (where == 2) o.entropy_agg = a;
      expect_error(
          c.label + " in loss_options #" + std::to_string(where), [&] { grpo::validate(o); },
          c.code, c.field);
    }
  }
}

TEST_CASE("validate(loss_options): every own check" * doctest::test_suite("validation")) {
  using grpo::errc;
  const std::vector<option_case> cases = {
      {"kl_coef NaN", [](auto& o) { o.kl_coef = nan_v; }, errc::bad_value, "kl_coef"},
      {"entropy_coef inf", [](auto& o) { o.entropy_coef = inf_v; }, errc::bad_value,
       "entropy_coef"},
      {"kl inner clamp < 0", [](auto& o) { o.kl.inner_clamp = -1; }, errc::bad_value, "kl clamps"},
      {"kl outer clamp inf", [](auto& o) { o.kl.outer_clamp = inf_v; }, errc::bad_value,
       "kl clamps"},
      {"top_entropy_quantile 1.5", [](auto& o) { o.top_entropy_quantile = 1.5; }, errc::bad_value,
       "top_entropy_quantile"},
      {"top_entropy_quantile NaN", [](auto& o) { o.top_entropy_quantile = nan_v; }, errc::bad_value,
       "top_entropy_quantile"},
      {"opsm_threshold NaN", [](auto& o) { o.opsm_threshold = nan_v; }, errc::bad_value,
       "opsm_threshold"},
      {"tis without thresholds", [](auto& o) { o.tis.enabled = true; }, errc::bad_option,
       "c_min / c_max"},
      {"tis c_min > c_max",
       [](auto& o) {
         o.tis.enabled = true;
         o.tis.c_min = 3;
         o.tis.c_max = 2;
       },
       errc::bad_option, "c_min must be <= c_max"},
  };
  for (const auto& c : cases) {
    grpo::loss_options o;
    c.mutate(o);
    expect_error(
        c.label, [&] { grpo::validate(o); }, c.code, c.field);
  }
}

TEST_CASE("compute_loss_into: every input check names the argument" *
          doctest::test_suite("validation")) {
  using grpo::errc;
  using in_t = grpo::loss_batch<double, double>;
  using out_t = grpo::loss_outputs<double>;
  struct input_case {
    std::string label;
    std::function<void(grpo::loss_options&, in_t&, out_t&, batch&)> mutate;
    grpo::errc code;
    std::string field;
  };
  const long B = batch::B, T = batch::T;
  const std::vector<input_case> cases = {
      {"logp missing", [](auto&, in_t& i, auto&, auto&) { i.logp = {}; }, errc::shape_mismatch,
       "logp: required"},
      {"advantages missing", [](auto&, in_t& i, auto&, auto&) { i.advantages = {}; },
       errc::shape_mismatch, "advantages: required"},
      {"mask missing", [](auto&, in_t& i, auto&, auto&) { i.mask = {}; }, errc::shape_mismatch,
       "mask: required"},
      {"advantages [B, T-1]",
       [&](auto&, in_t& i, auto&, batch& b) {
         i.advantages = grpo::make_view(b.adv.data(), {B, T - 1});
       },
       errc::shape_mismatch, "advantages"},
      {"mask [B-1, T]",
       [&](auto&, in_t& i, auto&, batch& b) {
         i.mask = grpo::make_view(b.mask.data(), {B - 1, T});
       },
       errc::shape_mismatch, "mask"},
      {"old_logp [B, T-1]",
       [&](auto&, in_t& i, auto&, batch& b) {
         i.old_logp = grpo::make_view(b.old.data(), {B, T - 1});
       },
       errc::shape_mismatch, "old_logp"},
      {"ref_logp [B-1, T]",
       [&](grpo::loss_options& o, in_t& i, auto&, batch& b) {
         o.kl_coef = 0.1;
         i.ref_logp = grpo::make_view(b.ref.data(), {B - 1, T});
       },
       errc::shape_mismatch, "ref_logp"},
      {"sampler_logp [B, 1]",
       [&](auto&, in_t& i, auto&, batch& b) {
         i.sampler_logp = grpo::make_view(b.smp.data(), {B, 1});
       },
       errc::shape_mismatch, "sampler_logp"},
      {"is_weights [1, T]",
       [&](auto&, in_t& i, auto&, batch& b) {
         i.is_weights = grpo::make_view(b.isw.data(), {1, T});
       },
       errc::shape_mismatch, "is_weights"},
      {"entropy [B, 2]",
       [&](auto&, in_t& i, auto&, batch& b) {
         i.entropy = grpo::make_view(b.ent.data(), {B, 2});
       },
       errc::shape_mismatch, "entropy"},
      {"truncated size 1",
       [](auto&, in_t& i, auto&, batch& b) {
         i.truncated = std::span<const unsigned char>(b.trunc).first(1);
       },
       errc::shape_mismatch, "truncated: size 1, expected 2"},
      {"kl_coef without ref_logp",
       [](grpo::loss_options& o, auto&, auto&, auto&) { o.kl_coef = 0.1; }, errc::shape_mismatch,
       "ref_logp: required when kl_coef"},
      {"entropy bonus without entropy",
       [](grpo::loss_options& o, auto&, auto&, auto&) { o.entropy_coef = 0.01; },
       errc::shape_mismatch, "entropy: required"},
      {"top-entropy mask without entropy",
       [](grpo::loss_options& o, auto&, auto&, auto&) { o.top_entropy_quantile = 0.5; },
       errc::shape_mismatch, "entropy: required"},
      {"tis without sampler_logp",
       [](grpo::loss_options& o, auto&, auto&, auto&) {
         o.tis.enabled = true;
         o.tis.c_max = 2;
       },
       errc::shape_mismatch, "sampler_logp or is_weights"},
      {"tis with is_weights",
       [&](grpo::loss_options& o, in_t& i, auto&, batch& b) {
         o.tis.enabled = true;
         o.tis.c_max = 2;
         i.is_weights = grpo::make_view(b.isw.data(), {B, T});
       },
       errc::bad_option, "is_weights and tis.enabled"},
      {"grad_logp [B, T-1]",
       [&](auto&, auto&, out_t& u, batch& b) {
         u.grad_logp = grpo::make_view(b.g.data(), {B, T - 1});
       },
       errc::shape_mismatch, "grad_logp"},
      {"grad_logp missing", [](auto&, auto&, out_t& u, auto&) { u.grad_logp = {}; },
       errc::shape_mismatch, "grad_logp"},
      {"per_token_loss [1, T]",
       [&](auto&, auto&, out_t& u, batch& b) {
         u.per_token_loss = grpo::make_view(b.ptl.data(), {1, T});
       },
       errc::shape_mismatch, "per_token_loss"},
      {"grad_entropy [B, 1]",
       [&](auto&, auto&, out_t& u, batch& b) {
         u.grad_entropy = grpo::make_view(b.ge.data(), {B, 1});
       },
       errc::shape_mismatch, "grad_entropy"},
      {"per_seq_loss size 1",
       [](auto&, auto&, out_t& u, batch& b) {
         u.per_seq_loss = std::span<double>(b.pseq).first(1);
       },
       errc::shape_mismatch, "per_seq_loss"},
      {"NaN logp on a valid token", [](auto&, auto&, auto&, batch& b) { b.lp[4] = nan_v; },
       errc::bad_value, "logp"},
      {"Inf advantage on a valid token", [](auto&, auto&, auto&, batch& b) { b.adv[1] = inf_v; },
       errc::bad_value, "advantages"},
      {"NaN mask", [](auto&, auto&, auto&, batch& b) { b.mask[2] = nan_v; }, errc::bad_value,
       "mask"},
      {"negative mask", [](auto&, auto&, auto&, batch& b) { b.mask[2] = -1; }, errc::bad_value,
       "mask"},
  };
  for (const auto& c : cases) {
    batch b;
    grpo::loss_options o;
    in_t in = b.in();
    out_t out = b.out();
    c.mutate(o, in, out, b);  // value mutations write through the views' storage
    expect_error(
        c.label, [&] { (void)grpo::compute_loss_into(o, in, out); }, c.code, c.field);
  }
}

TEST_CASE("KL front ends: clamps, coef and out_rows are checked and named" *
          doctest::test_suite("validation")) {
  using grpo::errc;
  std::vector<double> a(4, -1.0), out(4), rows(2);
  auto v = [&](std::vector<double>& x) { return grpo::make_view<const double>(x.data(), {2, 2}); };
  grpo::kl_params p;
  p.inner_clamp = -1;
  expect_error(
      "kl_penalty inner clamp < 0",
      [&] {
        grpo::kl_penalty(p, v(a), v(a), grpo::make_view(out.data(), {2, 2}));
      },
      errc::bad_value, "kl_params: clamps");
  p = {};
  expect_error(
      "kl_penalty out [2, 1]",
      [&] {
        grpo::kl_penalty(p, v(a), v(a), grpo::make_view(out.data(), {2, 1}));
      },
      errc::shape_mismatch, "kl_out");
  expect_error(
      "kl_penalty grad_out [1, 2]",
      [&] {
        grpo::kl_penalty(p, v(a), v(a), grpo::make_view(out.data(), {2, 2}),
                         grpo::make_view(rows.data(), {1, 2}));
      },
      errc::shape_mismatch, "grad_out");
  expect_error(
      "kl_for_reward coef NaN",
      [&] {
        grpo::kl_for_reward(p, nan_v, v(a), v(a), v(a), grpo::kl_reward_placement::token,
                            grpo::make_view(out.data(), {2, 2}));
      },
      errc::bad_value, "coef must be finite");
  expect_error(
      "kl_for_reward mask [2, 1]",
      [&] {
        grpo::kl_for_reward(p, 0.1, v(a), v(a), grpo::make_view<const double>(a.data(), {2, 1}),
                            grpo::kl_reward_placement::token, grpo::make_view(out.data(), {2, 2}));
      },
      errc::shape_mismatch, "mask");
  expect_error(
      "kl_for_reward out_rows size 1",
      [&] {
        grpo::kl_for_reward(p, 0.1, v(a), v(a), v(a), grpo::kl_reward_placement::sequence_sum,
                            grpo::strided_view<double, 2>{}, std::span<double>(rows).first(1));
      },
      errc::shape_mismatch, "out_rows: size 1, expected 2");
  expect_error(
      "kl_params_from_string unknown", [] { (void)grpo::kl_params_from_string("k4"); },
      errc::bad_option, "unknown estimator 'k4'");
}
