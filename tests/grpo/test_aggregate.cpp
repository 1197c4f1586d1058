// SPDX-License-Identifier: Apache-2.0
// Aggregation contract: hand-computed values of every mode, fully masked rows, and micro-batch /
// shard split invariance of the loss AND the gradient when global denominators are supplied (for
// aggregate() alone and for the whole compute_loss objective).
#include <grpo/aggregate.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

namespace {
// 3 x 4 batch: row 0 has 4 tokens, row 1 has 2, row 2 is empty.
const std::vector<double> L = {1, 2, 3, 4, 10, 20, 99, 99, 7, 7, 7, 7};
const std::vector<double> M = {1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0};

double agg(const grpo::agg_options& o, std::vector<double>* grad = nullptr,
           const std::vector<double>& l = L, const std::vector<double>& m = M, long B = 3,
           long T = 4) {
  std::vector<double> g(l.size());
  const double v =
      grpo::aggregate(grpo::make_view(l.data(), {B, T}), grpo::make_view(m.data(), {B, T}), o,
                      grpo::make_view(g.data(), {B, T}));
  if (grad) *grad = g;
  return v;
}
grpo::agg_options mode(grpo::agg_mode md) {
  grpo::agg_options o;
  o.mode = md;
  return o;
}
}  // namespace

TEST_CASE("aggregate: hand-computed modes" * doctest::test_suite("aggregate")) {
  using grpo::agg_mode;
  // token sum over valid tokens: 1+2+3+4+10+20 = 40, 6 tokens
  CHECK(agg(mode(agg_mode::token_sum)) == 40.0);
  CHECK(agg(mode(agg_mode::token_mean)) == doctest::Approx(40.0 / 6).epsilon(1e-12));
  // rows: sums 10 and 30; non-empty rows = 2
  CHECK(agg(mode(agg_mode::seq_mean_token_sum)) == doctest::Approx(20.0).epsilon(1e-12));
  // row means 2.5 and 15
  CHECK(agg(mode(agg_mode::seq_mean_token_mean)) == doctest::Approx(8.75).epsilon(1e-12));
  // sum-norm: (10 + 30) / T / G = 40 / 4 / 2
  CHECK(agg(mode(agg_mode::seq_mean_token_sum_norm)) == doctest::Approx(5.0).epsilon(1e-12));
  auto o = mode(agg_mode::seq_mean_token_sum_norm);
  o.norm_length = 8;
  CHECK(agg(o) == doctest::Approx(2.5).epsilon(1e-12));
  // TRL grpo: mean over ALL B rows of row means (empty row counts): (2.5 + 15 + 0) / 3
  o = mode(agg_mode::seq_mean_token_mean);
  o.count_empty_rows = true;
  o.row_count_floor = 1.0;
  CHECK(agg(o) == doctest::Approx(17.5 / 3).epsilon(1e-12));
  // verl eps: 10 / (4 + 1e-8) ...
  o = mode(agg_mode::seq_mean_token_mean);
  o.row_count_eps = 1e-8;
  CHECK(agg(o) == doctest::Approx((10.0 / (4 + 1e-8) + 30.0 / (2 + 1e-8)) / 2).epsilon(1e-15));
  // scale (dp_size) and global denominators
  o = mode(agg_mode::token_mean);
  o.global_tokens = 20;
  o.scale = 2;
  CHECK(agg(o) == doctest::Approx(4.0).epsilon(1e-12));
  // per-group token mean, groups of rows {0,1}, {2}... use group_size 1: each row its own group
  o = mode(agg_mode::group_token_mean);
  o.group_size = 1;
  CHECK(agg(o) == doctest::Approx((2.5 + 15.0 + 0.0) / 3).epsilon(1e-12));
  o.group_size = 3;  // one group: token mean
  CHECK(agg(o) == doctest::Approx(40.0 / 6).epsilon(1e-12));
  // gradient = weight of each token, 0 on masked ones
  std::vector<double> g;
  (void)agg(mode(agg_mode::seq_mean_token_mean), &g);
  CHECK(g[0] == doctest::Approx(1.0 / 8).epsilon(1e-12));
  CHECK(g[4] == doctest::Approx(1.0 / 4).epsilon(1e-12));
  CHECK(g[6] == 0.0);
  CHECK(g[8] == 0.0);
}

TEST_CASE("aggregate: group mean differs from batch token mean as in the DAPO paper" *
          doctest::test_suite("aggregate")) {
  // groups {row0,row1} and {row2,row3}; group 1 has 6 tokens, group 2 has 2
  const std::vector<double> l = {1, 1, 1, 1, 1, 1, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0};
  const std::vector<double> m = {1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};
  auto o = mode(grpo::agg_mode::group_token_mean);
  o.group_size = 2;
  CHECK(agg(o, nullptr, l, m, 4, 4) == doctest::Approx((6.0 / 6 + 8.0 / 2) / 2).epsilon(1e-12));
  CHECK(agg(mode(grpo::agg_mode::token_mean), nullptr, l, m, 4, 4) == doctest::Approx(14.0 / 8).epsilon(1e-12));
}

TEST_CASE("aggregate: fully masked batch is 0 in every mode" * doctest::test_suite("aggregate")) {
  const std::vector<double> l(12, std::nan("")), m(12, 0.0);
  for (auto md : {grpo::agg_mode::token_mean, grpo::agg_mode::token_sum,
                  grpo::agg_mode::seq_mean_token_sum, grpo::agg_mode::seq_mean_token_mean,
                  grpo::agg_mode::seq_mean_token_sum_norm, grpo::agg_mode::group_token_mean}) {
    auto o = mode(md);
    o.group_size = 3;
    std::vector<double> g;
    CHECK(agg(o, &g, l, m) == 0.0);
    for (double x : g) CHECK(x == 0.0);
  }
}

TEST_CASE("aggregate: micro-batch split invariance with global denominators" *
          doctest::test_suite("aggregate")) {
  std::mt19937_64 gen(3);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const long B = 8, T = 6;
  std::vector<double> l(B * T), m(B * T);
  for (long k = 0; k < B * T; ++k) {
    l[static_cast<std::size_t>(k)] = u(gen);
    m[static_cast<std::size_t>(k)] = (k % T) < 1 + (k / T) % T ? 1.0 : 0.0;
  }
  m[3 * T + 0] = 0.0;
  for (long t = 0; t < T; ++t) m[static_cast<std::size_t>(5 * T + t)] = 0.0;  // empty row 5
  double N = 0;
  for (double x : m) N += x;
  std::vector<double> group_tokens(B, 0.0);
  for (long i = 0; i < B; ++i)
    for (long t = 0; t < T; ++t)
      group_tokens[static_cast<std::size_t>((i / 4) * 4)] += m[static_cast<std::size_t>(i * T + t)];
  for (long i = 0; i < B; ++i)
    group_tokens[static_cast<std::size_t>(i)] = group_tokens[static_cast<std::size_t>((i / 4) * 4)];
  for (auto md : {grpo::agg_mode::token_mean, grpo::agg_mode::seq_mean_token_sum,
                  grpo::agg_mode::seq_mean_token_mean, grpo::agg_mode::seq_mean_token_sum_norm,
                  grpo::agg_mode::group_token_mean, grpo::agg_mode::token_sum}) {
    auto o = mode(md);
    o.global_tokens = N;
    o.global_seqs = 7;  // non-empty rows of the full batch
    o.global_groups = 2;
    o.norm_length = 6;
    o.group_size = 4;
    o.group_tokens = group_tokens;
    o.row_count_eps = 1e-8;
    std::vector<double> g_full;
    const double full = agg(o, &g_full, l, m, B, T);
    // split rows 0..2 | 3..7 (groups straddle the split: group counts come from group_tokens)
    for (long cut : {3L, 5L}) {
      std::vector<double> l1(l.begin(), l.begin() + cut * T), m1(m.begin(), m.begin() + cut * T);
      std::vector<double> l2(l.begin() + cut * T, l.end()), m2(m.begin() + cut * T, m.end());
      auto o1 = o, o2 = o;
      o1.group_size = 1;  // per-row group token counts are supplied, so any row split works
      o2.group_size = 1;
      o1.group_tokens = std::span<const double>(group_tokens).first(static_cast<std::size_t>(cut));
      o2.group_tokens =
          std::span<const double>(group_tokens).subspan(static_cast<std::size_t>(cut));
      if (md == grpo::agg_mode::group_token_mean) {
        o1.global_groups = o2.global_groups = 2;
      }
      std::vector<double> g1, g2;
      const double a = agg(o1, &g1, l1, m1, cut, T), b = agg(o2, &g2, l2, m2, B - cut, T);
      CHECK(a + b == doctest::Approx(full).epsilon(1e-14));
      g1.insert(g1.end(), g2.begin(), g2.end());
      for (std::size_t k = 0; k < g1.size(); ++k)
        CHECK(g1[k] == doctest::Approx(g_full[k]).epsilon(1e-14));
    }
  }
}

TEST_CASE(
    "compute_loss: micro-batches with global denominators sum to the full-batch loss and gradient" *
    doctest::test_suite("aggregate")) {
  std::mt19937_64 gen(17);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const long B = 8, T = 5;
  std::vector<double> lp(B * T), old(B * T), ref(B * T), adv(B), m(B * T), H(B * T);
  for (long i = 0; i < B; ++i) {
    adv[static_cast<std::size_t>(i)] = u(gen);
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      lp[k] = -1.5 + u(gen);
      old[k] = lp[k] - 0.5 * u(gen);
      ref[k] = lp[k] - 0.5 * u(gen);
      H[k] = 1 + u(gen);
      m[k] = (t <= i % T && i != 6) ? 1.0 : 0.0;
    }
  }
  double N = 0, G = 0;
  for (long i = 0; i < B; ++i) {
    double n = 0;
    for (long t = 0; t < T; ++t) n += m[static_cast<std::size_t>(i * T + t)];
    N += n;
    G += n > 0;
  }
  auto run = [&](const grpo::loss_options& o, long r0, long r1) {
    grpo::loss_batch<double, double> in;
    const auto off = static_cast<std::size_t>(r0 * T);
    in.logp = grpo::make_view(lp.data() + off, {r1 - r0, T});
    in.old_logp = grpo::make_view(old.data() + off, {r1 - r0, T});
    in.ref_logp = grpo::make_view(ref.data() + off, {r1 - r0, T});
    in.entropy = grpo::make_view(H.data() + off, {r1 - r0, T});
    in.mask = grpo::make_view(m.data() + off, {r1 - r0, T});
    in.advantages = grpo::broadcast_rows(adv.data() + r0, r1 - r0, T);
    return grpo::compute_loss(o, in);
  };
  const char* presets[] = {"trl_dapo",   "trl_bnpo",     "trl_grpo",  "trl_dr_grpo",
                           "trl_gspo",   "verl_vanilla", "verl_gspo", "verl_sapo",
                           "verl_cispo", "verl_geo_mean"};
  for (const char* name : presets) {
    SUBCASE(name) {
      auto o = grpo::preset(name);
      o.kl_coef = 0.04;
      o.entropy_coef = 0.01;
      // Global denominators of the whole step.
      o.agg.global_tokens = N;
      o.agg.global_seqs = o.agg.count_empty_rows ? double(B) : G;
      o.entropy_agg.global_tokens = N;
      o.entropy_agg.token_count_floor = 0;
      const auto full = run(o, 0, B);
      double sum = 0;
      std::vector<double> g;
      grpo::loss_metrics merged;
      for (auto [a, b] : {std::pair<long, long>{0, 3}, {3, 4}, {4, 8}}) {
        const auto part = run(o, a, b);
        sum += part.loss;
        g.insert(g.end(), part.grad_logp.begin(), part.grad_logp.end());
        merged.merge(part.metrics);
      }
      // Metrics merge token-weighted: shards reproduce the full-batch schema exactly.
      const auto& fm = full.metrics;
      CHECK(merged.tokens == fm.tokens);
      CHECK(merged.sequences == fm.sequences);
      CHECK(merged.clip_low.mean() == doctest::Approx(fm.clip_low.mean()).epsilon(1e-14));
      CHECK(merged.clip_high.mean() == doctest::Approx(fm.clip_high.mean()).epsilon(1e-14));
      CHECK(merged.clip_region.mean() == doctest::Approx(fm.clip_region.mean()).epsilon(1e-14));
      CHECK(merged.clip_dual.mean() == doctest::Approx(fm.clip_dual.mean()).epsilon(1e-14));
      CHECK(merged.approx_kl.mean() == doctest::Approx(fm.approx_kl.mean()).epsilon(1e-14));
      CHECK(merged.kl.mean() == doctest::Approx(fm.kl.mean()).epsilon(1e-14));
      CHECK(merged.entropy.mean() == doctest::Approx(fm.entropy.mean()).epsilon(1e-14));
      CHECK(merged.ratio.min == fm.ratio.min);
      CHECK(merged.ratio.max == fm.ratio.max);
      CHECK(merged.clip_high_seq.max == fm.clip_high_seq.max);
      CHECK(merged.clip_low_seq.min == fm.clip_low_seq.min);
      CHECK(sum == doctest::Approx(full.loss).epsilon(1e-13));
      for (std::size_t k = 0; k < g.size(); ++k)
        CHECK(g[k] == doctest::Approx(full.grad_logp[k]).epsilon(1e-13));
    }
  }
}

TEST_CASE("aggregate: bad input throws documented errors" * doctest::test_suite("aggregate")) {
  auto code_of = [](auto&& f) {
    try {
      f();
    } catch (const grpo::error& e) {
      return e.code();
    }
    FAIL("no grpo::error thrown");
    return grpo::errc::collective;
  };
  auto o = mode(grpo::agg_mode::token_mean);
  o.global_tokens = -1;
  CHECK(code_of([&] { (void)agg(o); }) == grpo::errc::bad_value);
  o = mode(grpo::agg_mode::group_token_mean);
  CHECK(code_of([&] { (void)agg(o); }) == grpo::errc::bad_option);  // group_size missing
  o.group_size = 2;                                                 // 3 rows
  CHECK(code_of([&] { (void)agg(o); }) == grpo::errc::shape_mismatch);
  std::vector<double> bad = M;
  bad[1] = -1;
  CHECK(code_of([&] { (void)agg(mode(grpo::agg_mode::token_sum), nullptr, L, bad); }) ==
        grpo::errc::bad_value);
  CHECK(code_of([&] {
          (void)grpo::aggregate(grpo::make_view(L.data(), {3, 4}),
                                grpo::make_view(M.data(), {4, 3}), mode(grpo::agg_mode::token_sum));
        }) == grpo::errc::shape_mismatch);
  CHECK(code_of([] { (void)grpo::agg_mode_from_string("token_mean"); }) == grpo::errc::bad_option);
}
