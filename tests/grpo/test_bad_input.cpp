// SPDX-License-Identifier: Apache-2.0
// Bad-input suite of the GRPO core (advantages, KL, loss, aggregation): table-driven probes over
// every public entry point (shapes, null data, extents, aliasing, NaN / Inf / huge finite values,
// every option at its edges), each asserting the exact error id and the field named in the
// message, or the documented defined value (docs/architecture.md, "Validation contract").
#include <grpo/advantage.hpp>
#include <grpo/kl.hpp>
#include <grpo/loss.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace {

using grpo::errc;
using grpo::index_t;
using grpo::make_view;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

/// One probe: a call that must throw grpo::error with `code` and a message containing `field`.
struct probe {
  const char* name;
  errc code;
  const char* field;
  std::function<void()> call;
};

void run_table(const std::vector<probe>& table) {
  for (const auto& p : table) {
    const std::string probe_name = p.name;
    CAPTURE(probe_name);
    bool thrown = false;
    try {
      p.call();
    } catch (const grpo::error& e) {
      thrown = true;
      CHECK(e.code() == p.code);
      CHECK_MESSAGE(std::string(e.what()).find(p.field) != std::string::npos,
                    std::string(e.what()));
      CHECK(std::string(e.what()).rfind("[grpo." + std::string(grpo::to_string(p.code)) + "]", 0) ==
            0);
    } catch (const std::exception& e) {
      FAIL_CHECK("not a grpo::error: " << e.what());
      thrown = true;
    }
    CHECK_MESSAGE(thrown, "no error thrown");
  }
}

template <class T, std::size_t R>
grpo::strided_view<T, R> raw(T* p, std::array<index_t, R> e, std::array<index_t, R> s) {
  return grpo::strided_view<T, R>(p, e, s);
}

/// A 2 x 2 loss batch (row 0 and row 1 both valid), owning its data.
struct batch {
  std::vector<double> lp{-1.0, -1.2, -0.7, -2.0}, old{-1.1, -1.0, -0.9, -1.5};
  std::vector<double> adv{1.0, 1.0, -1.0, -1.0}, mask{1, 1, 1, 1}, ref{-1.3, -1.1, -0.8, -1.9};
  std::vector<double> grad = std::vector<double>(4);
  grpo::loss_batch<double, double> in() const {
    grpo::loss_batch<double, double> b;
    b.logp = make_view(lp.data(), {2, 2});
    b.old_logp = make_view(old.data(), {2, 2});
    b.advantages = make_view(adv.data(), {2, 2});
    b.mask = make_view(mask.data(), {2, 2});
    return b;
  }
  grpo::loss_outputs<double> out() {
    grpo::loss_outputs<double> o;
    o.grad_logp = make_view(grad.data(), {2, 2});
    return o;
  }
};

grpo::loss_scalars run_loss(const grpo::loss_options& o, batch& b) {
  return grpo::compute_loss_into(o, b.in(), b.out());
}

}  // namespace

TEST_CASE("bad input: strided_view structure (null data, negative and overflowing extents)" *
          doctest::test_suite("bad_input")) {
  double x[4] = {0, 0, 0, 0};
  const index_t big = index_t{1} << 40;
  run_table({
      {"negative extent", errc::shape_mismatch, "negative extent",
       [&] {
         grpo::detail::check_view(raw(x, std::array<index_t, 2>{-1, 2}, {2, 1}), "v");
       }},
      {"extent product overflows", errc::shape_mismatch, "overflows",
       [&] {
         grpo::detail::check_view(raw(x, std::array<index_t, 2>{big, big}, {1, 1}), "v");
       }},
      {"extent x stride overflows", errc::shape_mismatch, "overflow",
       [&] { grpo::detail::check_view(raw(x, std::array<index_t, 1>{big}, {big}), "v"); }},
      {"null data with elements", errc::shape_mismatch, "null data",
       [&] {
         grpo::detail::check_view(raw<double, 2>(nullptr, {2, 2}, {2, 1}), "v");
       }},
      {"stride-0 output", errc::bad_option, "addresses one element twice",
       [&] {
         grpo::expect_distinct_elements(raw(x, std::array<index_t, 2>{2, 2}, {2, 0}), "o");
       }},
      {"self-overlapping output", errc::bad_option, "addresses one element twice",
       [&] {
         grpo::expect_distinct_elements(raw(x, std::array<index_t, 2>{2, 3}, {1, 1}), "o");
       }},
      {"partial overlap", errc::bad_option, "overlaps",
       [&] {
         grpo::expect_no_partial_overlap(raw(x + 1, std::array<index_t, 1>{2}, {1}),
                                         raw<const double, 1>(x, {2}, {1}), "o", "i");
       }},
  });
  // Valid: an empty view from an empty vector (null data, extent 0); an exact alias; disjoint.
  std::vector<double> empty;
  CHECK_NOTHROW(grpo::detail::check_view(make_view(empty.data(), {0, 5}), "v"));
  CHECK(grpo::expect_no_partial_overlap(make_view(x, {4}), make_view(x, {4}), "o", "i"));
  CHECK(grpo::overlap_of(make_view(x, {2}), make_view(x + 2, {2})) == grpo::view_overlap::none);
  CHECK_NOTHROW(grpo::expect_distinct_elements(raw(x, std::array<index_t, 2>{2, 2}, {1, 2}), "o"));
  CHECK_NOTHROW(grpo::expect_distinct_elements(raw(x, std::array<index_t, 2>{1, 4}, {0, 1}), "o"));
}

TEST_CASE("bad input: compute_advantages and friends" * doctest::test_suite("bad_input")) {
  using grpo::adv_estimator;
  using grpo::group_spec;
  std::vector<double> r{1, 0, 1, 1}, out(4), mask{1, 1, 1, 0, 1, 0, 1, 1};
  const auto opt = [](auto f) {
    grpo::advantage_options o;
    f(o);
    return o;
  };
  auto call = [&](const grpo::advantage_options& o) {
    grpo::compute_advantages(r, group_spec::fixed(2), out, o);
  };
  std::vector<double> huge{1e308, 0, 1, 1}, big{1e200, 0, 1, 1};
  std::vector<double> bad_mask1{1, -1, 1, 0, 1, 0, 1, 1}, bad_mask2{1, kNaN, 1, 0, 1, 0, 1, 1};
  grpo::advantage_options opo = grpo::advantage_options::verl_opo();
  const std::vector<double> w_nan{1.0, kNaN};
  std::vector<double> r2(8, 1.0);
  run_table({
      {"null output with 4 rows", errc::shape_mismatch, "advantages (out)",
       [&] { grpo::compute_advantages(r, group_spec::fixed(2), make_view<double>(nullptr, {4})); }},
      {"null rewards with 4 rows", errc::shape_mismatch, "rewards",
       [&] {
         grpo::compute_advantages(make_view<const double>(nullptr, {4}), group_spec::fixed(2), out);
       }},
      {"negative extent", errc::shape_mismatch, "rewards",
       [&] {
         grpo::compute_advantages(raw<const double, 1>(r.data(), {-4}, {1}), group_spec::fixed(2),
                                  out);
       }},
      {"stride-0 output", errc::bad_option, "advantages (out)",
       [&] {
         grpo::compute_advantages(r, group_spec::fixed(2), raw<double, 1>(out.data(), {4}, {0}));
       }},
      {"estimator out of range", errc::bad_option, "advantage_options.estimator",
       [&] { call(opt([](auto& o) { o.estimator = static_cast<adv_estimator>(42); })); }},
      {"eps_place out of range", errc::bad_option, "advantage_options.eps_place",
       [&] { call(opt([](auto& o) { o.eps_place = static_cast<grpo::ops::eps_placement>(9); })); }},
      {"zero_variance out of range", errc::bad_option, "advantage_options.zero_variance",
       [&] {
         call(opt([](auto& o) { o.zero_variance = static_cast<grpo::zero_variance_policy>(7); }));
       }},
      {"eps NaN", errc::bad_option, "advantage_options.eps",
       [&] { call(opt([](auto& o) { o.eps = kNaN; })); }},
      {"eps inf", errc::bad_option, "advantage_options.eps",
       [&] { call(opt([](auto& o) { o.eps = kInf; })); }},
      {"keep_lo NaN", errc::bad_option, "keep_lo",
       [&] { call(opt([](auto& o) { o.keep_lo = kNaN; })); }},
      {"zero_var_tol NaN", errc::bad_option, "zero_var_tol",
       [&] { call(opt([](auto& o) { o.zero_var_tol = kNaN; })); }},
      {"gpg_f_norm inf", errc::bad_option, "gpg_f_norm",
       [&] { call(opt([](auto& o) { o.gpg_f_norm = kInf; })); }},
      {"whiten eps NaN", errc::bad_option, "whiten.eps",
       [&] { call(opt([](auto& o) { o.whiten.eps = kNaN; })); }},
      {"reward 1e308", errc::bad_value, "rewards: |value|",
       [&] { grpo::compute_advantages(huge, group_spec::fixed(2), out); }},
      {"reward 1e200", errc::bad_value, "rewards: |value|",
       [&] { grpo::compute_advantages(big, group_spec::fixed(2), out); }},
      {"OPO mask -1", errc::bad_value, "mask",
       [&] {
         grpo::compute_advantages(r, group_spec::fixed(2), make_view(bad_mask1.data(), {4, 2}), out,
                                  opo);
       }},
      {"OPO mask NaN", errc::bad_value, "mask",
       [&] {
         grpo::compute_advantages(r, group_spec::fixed(2), make_view(bad_mask2.data(), {4, 2}), out,
                                  opo);
       }},
      {"combine_rewards weight NaN", errc::bad_option, "reward weights",
       [&] {
         grpo::combine_rewards(make_view(r2.data(), {4, 2}), w_nan, out);
       }},
      {"multi-reward weight NaN (normalize_then_sum)", errc::bad_option, "reward weights",
       [&] {
         auto o = grpo::advantage_options::trl(grpo::trl_scale::group,
                                               grpo::multi_reward_mode::normalize_then_sum);
         grpo::compute_multi_reward_advantages(make_view(r2.data(), {4, 2}), w_nan,
                                               group_spec::fixed(2), out, o);
       }},
      {"masked_whiten mask -1", errc::bad_value, "mask",
       [&] {
         std::vector<double> o8(8);
         grpo::masked_whiten(make_view(r2.data(), {4, 2}), make_view(bad_mask1.data(), {4, 2}),
                             make_view(o8.data(), {4, 2}));
       }},
      {"reinforce_pp mask NaN", errc::bad_value, "mask",
       [&] {
         std::vector<double> a8(8), g8(8);
         grpo::compute_reinforce_pp_advantages(
             make_view(r2.data(), {4, 2}), make_view(bad_mask2.data(), {4, 2}), 1.0,
             make_view(a8.data(), {4, 2}), make_view(g8.data(), {4, 2}));
       }},
      {"reinforce_pp stride-0 returns", errc::bad_option, "returns (out)",
       [&] {
         std::vector<double> a8(8), g8(8);
         grpo::compute_reinforce_pp_advantages(
             make_view(r2.data(), {4, 2}), make_view(mask.data(), {4, 2}), 1.0,
             make_view(a8.data(), {4, 2}), raw<double, 2>(g8.data(), {4, 2}, {1, 0}));
       }},
  });

  // Defined values. eps = 0 with a tied group and zero_variance keep: 0 (was 0/0 = NaN).
  auto keep0 = grpo::advantage_options::trl();
  keep0.eps = 0.0;
  // (An exact tie: a tie whose mean rounds, e.g. three 0.1, keeps its residue under "keep", as the
  // peers do; zero_variance_policy::zero removes it.)
  std::vector<double> tied{0.5, 0.5, 0.5, 1.0, 0.0, 0.5};
  std::vector<double> a6(6, -7.0);
  grpo::compute_advantages(tied, group_spec::fixed(3), a6, keep0);
  CHECK(a6[0] == 0.0);
  CHECK(a6[1] == 0.0);
  CHECK(a6[2] == 0.0);
  CHECK(a6[3] == doctest::Approx(1.0));  // (1 - 0.5) / 0.5
  // The same with the verl preset (eps 0, unit-baseline singletons, pass@k).
  for (auto o : {grpo::advantage_options::verl_grpo(), grpo::advantage_options::verl_grpo_passk(),
                 grpo::advantage_options::openrlhf_group_norm()}) {
    o.eps = 0.0;
    grpo::compute_advantages(tied, group_spec::fixed(3), a6, o);
    for (double v : a6) CHECK(std::isfinite(v));
    CHECK(a6[0] == 0.0);
  }
  // Whitening with eps = 0 of equal values: 0.
  std::vector<double> same(4, 2.5), ones(4, 1.0), w4(4, -1.0);
  grpo::whiten_options wo;
  wo.eps = 0.0;
  wo.mean_eps = 0.0;
  grpo::masked_whiten(make_view(same.data(), {2, 2}), make_view(ones.data(), {2, 2}),
                      make_view(w4.data(), {2, 2}), wo);
  for (double v : w4) CHECK(v == 0.0);
  // Rewards up to 1e150 give the right z-scores (scale invariance of A).
  std::vector<double> scaled{1e150, 0, 5e149, 5e149}, a4(4);
  grpo::compute_advantages(scaled, group_spec::fixed(2), a4, grpo::advantage_options::trl());
  CHECK(a4[0] == doctest::Approx(std::sqrt(0.5)));
  CHECK(a4[1] == doctest::Approx(-std::sqrt(0.5)));
  // A zero-size batch from empty vectors is accepted.
  std::vector<double> e0, eo;
  CHECK_NOTHROW(grpo::compute_advantages(e0, group_spec::fixed(2), eo));
  CHECK_NOTHROW(grpo::compute_advantages(make_view<const double>(nullptr, {0}),
                                         group_spec::fixed(2), make_view<double>(nullptr, {0})));
}

TEST_CASE("bad input: kl_for_reward shares the loss's value rules" *
          doctest::test_suite("bad_input")) {
  std::vector<double> lp{-1, -2, -1, -1}, lr{-1.5, -2, -1, -1}, m{1, 1, 1, 1}, out(4);
  grpo::kl_params p;
  auto call = [&](const std::vector<double>& a, const std::vector<double>& mm) {
    grpo::kl_for_reward(p, 0.1, make_view(a.data(), {2, 2}),
                        make_view(static_cast<const double*>(lr.data()), {2, 2}),
                        make_view(mm.data(), {2, 2}), grpo::kl_reward_placement::token,
                        make_view(out.data(), {2, 2}));
  };
  std::vector<double> lp_nan{-1, kNaN, -1, -1}, m_neg{1, -1, 1, 1}, m_nan{1, kNaN, 1, 1};
  std::vector<double> lp_nan_masked{-1, kNaN, -1, -1}, m_hole{1, 0, 1, 1};
  run_table({
      {"NaN logp on a valid token", errc::bad_value, "logp", [&] { call(lp_nan, m); }},
      {"mask -1", errc::bad_value, "mask", [&] { call(lp, m_neg); }},
      {"mask NaN", errc::bad_value, "mask", [&] { call(lp, m_nan); }},
      {"estimator out of range", errc::bad_option, "kl_params.estimator",
       [&] {
         p.estimator = static_cast<grpo::kl_estimator>(9);
         call(lp, m);
       }},
      {"null out", errc::shape_mismatch, "out",
       [&] {
         p = {};
         grpo::kl_for_reward(p, 0.1, make_view(static_cast<const double*>(lp.data()), {2, 2}),
                             make_view(static_cast<const double*>(lr.data()), {2, 2}),
                             make_view(static_cast<const double*>(m.data()), {2, 2}),
                             grpo::kl_reward_placement::token, make_view<double>(nullptr, {2, 2}));
       }},
  });
  // As in the loss, a masked token is never read: NaN there is fine.
  p = {};
  CHECK_NOTHROW(call(lp_nan_masked, m_hole));
  CHECK(out[1] == 0.0);
}

TEST_CASE("bad input: compute_loss_into shapes, null data, options" *
          doctest::test_suite("bad_input")) {
  batch b;
  const grpo::loss_options base;
  auto with = [&](auto f) {
    grpo::loss_options o = base;
    f(o);
    return o;
  };
  run_table({
      {"null grad_logp", errc::shape_mismatch, "grad_logp",
       [&] {
         grpo::loss_outputs<double> o;
         o.grad_logp = make_view<double>(nullptr, {2, 2});
         grpo::compute_loss_into(base, b.in(), o);
       }},
      {"null advantages with extents", errc::shape_mismatch, "advantages",
       [&] {
         auto in = b.in();
         in.advantages = make_view<const double>(nullptr, {2, 2});
         grpo::compute_loss_into(base, in, b.out());
       }},
      {"negative extents", errc::shape_mismatch, "logp",
       [&] {
         auto in = b.in();
         in.logp = raw<const double, 2>(b.lp.data(), {-2, 2}, {2, 1});
         grpo::compute_loss(base, in);
       }},
      {"overflowing extents (compute_loss)", errc::shape_mismatch, "logp",
       [&] {
         auto in = b.in();
         in.logp = raw<const double, 2>(b.lp.data(), {index_t{1} << 40, index_t{1} << 40}, {0, 0});
         grpo::compute_loss(base, in);
       }},
      {"policy kind out of range", errc::bad_option, "policy_options.kind",
       [&] {
         run_loss(with([](auto& o) { o.policy.kind = static_cast<grpo::policy_loss_kind>(17); }),
                  b);
       }},
      {"policy level out of range", errc::bad_option, "policy_options.level",
       [&] {
         run_loss(with([](auto& o) { o.policy.level = static_cast<grpo::is_level>(5); }), b);
       }},
      {"aggregation mode out of range", errc::bad_option, "agg_options.mode",
       [&] { run_loss(with([](auto& o) { o.agg.mode = static_cast<grpo::agg_mode>(99); }), b); }},
      {"KL estimator out of range", errc::bad_option, "loss_options.kl.estimator",
       [&] {
         run_loss(with([](auto& o) { o.kl.estimator = static_cast<grpo::kl_estimator>(4); }), b);
       }},
      {"VESPO k NaN", errc::bad_option, "vespo_k_pos",
       [&] {
         run_loss(with([](auto& o) {
                    o.policy.kind = grpo::policy_loss_kind::vespo;
                    o.policy.vespo_k_pos = kNaN;
                  }),
                  b);
       }},
      {"VESPO lambda NaN", errc::bad_option, "vespo_lambda_neg",
       [&] {
         run_loss(with([](auto& o) {
                    o.policy.kind = grpo::policy_loss_kind::vespo;
                    o.policy.vespo_lambda_neg = kNaN;
                  }),
                  b);
       }},
      // Output views whose indices address one element twice (row stride 0: the rows would be
      // written over each other, from several threads): named errors. Only compute_loss_metrics'
      // own scratch row may be shared (loss_call_flags::scratch_grad).
      {"grad_logp with row stride 0", errc::bad_option, "grad_logp",
       [&] {
         grpo::loss_outputs<double> o;
         o.grad_logp = raw<double, 2>(b.grad.data(), {2, 2}, {0, 1});
         grpo::compute_loss_into(base, b.in(), o);
       }},
      {"grad_logp with stride 0 along t", errc::bad_option, "grad_logp",
       [&] {
         grpo::loss_outputs<double> o;
         o.grad_logp = raw<double, 2>(b.grad.data(), {2, 2}, {1, 0});
         grpo::compute_loss_into(base, b.in(), o);
       }},
      {"grad_logp with row stride 0 (ratio_base_sampler route)", errc::bad_option, "grad_logp",
       [&] {
         auto in = b.in();
         in.sampler_logp = in.old_logp;
         grpo::loss_outputs<double> o;
         o.grad_logp = raw<double, 2>(b.grad.data(), {2, 2}, {0, 1});
         grpo::compute_loss_into(with([](auto& x) { x.ratio_base_sampler = true; }), in, o);
       }},
      {"per_token_loss with row stride 0", errc::bad_option, "per_token_loss",
       [&] {
         auto o = b.out();
         std::vector<double> row(2);
         o.per_token_loss = raw<double, 2>(row.data(), {2, 2}, {0, 1});
         grpo::compute_loss_into(base, b.in(), o);
       }},
      {"grad_entropy with row stride 0", errc::bad_option, "grad_entropy",
       [&] {
         auto o = b.out();
         std::vector<double> row(2);
         o.grad_entropy = raw<double, 2>(row.data(), {2, 2}, {0, 1});
         grpo::compute_loss_into(base, b.in(), o);
       }},
      {"mask -1", errc::bad_value, "mask",
       [&] {
         b.mask[1] = -1;
         run_loss(base, b);
       }},
  });
  b.mask[1] = 1;
  {
    // A single row may have any row stride (its rows cannot collide); compute_loss_metrics' shared
    // scratch row is accepted and gives compute_loss_into's scalars bit for bit.
    std::vector<double> g1(2);
    grpo::loss_batch<double, double> in1;
    in1.logp = make_view(b.lp.data(), {1, 2});
    in1.old_logp = make_view(b.old.data(), {1, 2});
    in1.advantages = make_view(b.adv.data(), {1, 2});
    in1.mask = make_view(b.mask.data(), {1, 2});
    grpo::loss_outputs<double> o1;
    o1.grad_logp = raw<double, 2>(g1.data(), {1, 2}, {0, 1});
    CHECK_NOTHROW(grpo::compute_loss_into(base, in1, o1));
    const grpo::loss_scalars full = run_loss(base, b);
    grpo::loss_scalars met;
    CHECK_NOTHROW(met = grpo::compute_loss_metrics(base, b.in()));
    CHECK(met.loss == full.loss);
    CHECK(met.metrics.ratio.sum == full.metrics.ratio.sum);
  }
  // A zero-size batch from empty vectors (null data, extent 0) is accepted: loss 0.
  std::vector<double> e;
  grpo::loss_batch<double, double> in0;
  in0.logp = make_view(static_cast<const double*>(e.data()), {0, 4});
  in0.advantages = in0.logp;
  in0.mask = in0.logp;
  grpo::loss_outputs<double> o0;
  o0.grad_logp = make_view(e.data(), {0, 4});
  grpo::loss_scalars s0;
  CHECK_NOTHROW(s0 = grpo::compute_loss_into(base, in0, o0));
  CHECK(s0.loss == 0.0);
}

TEST_CASE("bad input: a log-ratio >= 710 never gives a NaN gradient beside a finite loss" *
          doctest::test_suite("bad_input")) {
  using grpo::policy_loss_kind;
  // Token (0, 1) has logp - old_logp = 719: exp overflows double.
  for (double A : {1.0, -1.0}) {
    CAPTURE(A);
    batch b;
    b.adv = {A, A, A, A};
    b.lp = {-1, -1, -1, -1};
    b.old = {-1, -720, -1, -1};
    // Plain PPO-clip grows as -A r: named error.
    grpo::loss_options ppo;
    run_table(
        {{"ppo_clip log-ratio 719", errc::bad_value, "log_ratio_max", [&] { run_loss(ppo, b); }}});
    // Dual clip / delta bound it: exact, finite.
    for (int variant = 0; variant < 2; ++variant) {
      grpo::loss_options o;
      if (variant == 0)
        o.policy.dual_clip_c = 3.0;
      else
        o.policy.delta = 4.0;
      const auto s = run_loss(o, b);
      CHECK(std::isfinite(s.loss));
      for (double g : b.grad) CHECK(std::isfinite(g));
      // The overflowing token: the clip (A > 0) / dual clip / delta binds: zero gradient.
      CHECK(b.grad[1] == 0.0);
    }
    // Surrogates flat in r beyond the clamp: hand values (token_mean over 4 tokens).
    struct kase {
      policy_loss_kind kind;
      double g_big;  // d loss / d logp of the overflowing token
    };
    const double cap = 5.0;  // TRL CISPO: eps_high is the absolute cap (ScaleRL: 5)
    for (const kase k :
         {kase{policy_loss_kind::cispo, -cap * A / 4}, kase{policy_loss_kind::sapo, 0.0},
          kase{policy_loss_kind::reinforce, -A / 4}}) {
      CAPTURE(static_cast<int>(k.kind));
      grpo::loss_options o;
      o.policy.kind = k.kind;
      o.policy.eps_high = cap;
      const auto s = run_loss(o, b);
      CHECK(std::isfinite(s.loss));
      for (double g : b.grad) CHECK(std::isfinite(g));
      CHECK(b.grad[1] == doctest::Approx(k.g_big).epsilon(1e-12));
      CHECK(b.grad[0] == doctest::Approx(-A / 4).epsilon(1e-12));  // r = 1: vanilla PG slope
    }
    // VESPO (sequence weight from a clamped log weight), GMPO and GSPO: finite everywhere.
    for (int kind = 0; kind < 3; ++kind) {
      grpo::loss_options o;
      if (kind == 0) o.policy.kind = policy_loss_kind::vespo;
      if (kind == 1) o.policy.kind = policy_loss_kind::gmpo;
      if (kind == 2) {
        o.policy.level = grpo::is_level::sequence_token;
        o.policy.dual_clip_c = 3.0;
      }
      CAPTURE(kind);
      try {
        const auto s = run_loss(o, b);
        CHECK(std::isfinite(s.loss));
        for (double g : b.grad) CHECK(std::isfinite(g));
      } catch (const grpo::error& e) {
        CHECK(e.code() == errc::bad_value);  // a named error is the other allowed outcome
      }
    }
  }
  // Float storage (vectorised fast path): same rule.
  std::vector<float> lp{-1, -1, -1, -1}, old{-1, -720, -1, -1}, adv{1, 1, 1, 1}, m{1, 1, 1, 1};
  std::vector<float> g(4);
  grpo::loss_batch<float, float> in;
  in.logp = make_view(static_cast<const float*>(lp.data()), {2, 2});
  in.old_logp = make_view(static_cast<const float*>(old.data()), {2, 2});
  in.advantages = make_view(static_cast<const float*>(adv.data()), {2, 2});
  in.mask = make_view(static_cast<const float*>(m.data()), {2, 2});
  grpo::loss_outputs<float> out;
  out.grad_logp = make_view(g.data(), {2, 2});
  grpo::loss_options o;
  o.policy.kind = policy_loss_kind::cispo;
  const auto s = grpo::compute_loss_into(o, in, out);
  CHECK(std::isfinite(s.loss));
  for (float x : g) CHECK(std::isfinite(x));
}

TEST_CASE("bad input: advantages near DBL_MAX at the PPO tie r = 1 give a finite gradient" *
          doctest::test_suite("bad_input")) {
  // On-policy (r = 1 exactly): l1 = l2, torch's tie rule halves g1 + g2, which overflowed for
  // |A| > DBL_MAX / 2 while the loss -A r stayed finite. Halves first: d loss / d lp = -A / N.
  const double A = -1.7e308;
  std::vector<double> lp{-3.875, -1.0}, adv{A, 0.0}, m{1, 0}, g(2);
  grpo::loss_batch<double, double> in;
  in.logp = make_view(static_cast<const double*>(lp.data()), {1, 2});
  in.advantages = make_view(static_cast<const double*>(adv.data()), {1, 2});
  in.mask = make_view(static_cast<const double*>(m.data()), {1, 2});
  grpo::loss_outputs<double> out;
  out.grad_logp = make_view(g.data(), {1, 2});
  const auto s = grpo::compute_loss_into(grpo::loss_options{}, in, out);
  CHECK(s.loss == -A);
  CHECK(g[0] == -A);
  CHECK(g[1] == 0.0);
  // Float storage (vectorised path): the same at A = -3e38.
  std::vector<float> lpf{-3.875f, -1.0f}, advf{-3e38f, 0.0f}, mf{1, 0}, gf(2);
  grpo::loss_batch<float, float> inf_;
  inf_.logp = make_view(static_cast<const float*>(lpf.data()), {1, 2});
  inf_.advantages = make_view(static_cast<const float*>(advf.data()), {1, 2});
  inf_.mask = make_view(static_cast<const float*>(mf.data()), {1, 2});
  grpo::loss_outputs<float> outf;
  outf.grad_logp = make_view(gf.data(), {1, 2});
  const auto sf = grpo::compute_loss_into(grpo::loss_options{}, inf_, outf);
  CHECK(std::isfinite(sf.loss));
  CHECK(gf[0] == 3e38f);
}
