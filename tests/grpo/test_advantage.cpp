// SPDX-License-Identifier: Apache-2.0
// grpo/advantage.hpp: hand-computed cases for every estimator, a naive double-precision reference,
// group-order invariance, NaN rewards, singleton / zero-variance policies, keep masks and errors.
#include <grpo/advantage.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <vector>

namespace {

using grpo::adv_estimator;
using grpo::advantage_options;
using grpo::group_spec;
using grpo::index_t;
constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();

std::vector<double> run(const std::vector<double>& r, const group_spec& g,
                        const advantage_options& o) {
  std::vector<double> a(r.size(), -777.0);
  grpo::compute_advantages(r, g, a, o);
  return a;
}

std::vector<double> run_mask(const std::vector<double>& r, const group_spec& g,
                             const std::vector<double>& mask, index_t T, const advantage_options& o,
                             grpo::advantage_stats* st = nullptr) {
  std::vector<double> a(r.size(), -777.0);
  const auto s = grpo::compute_advantages(
      r, g, grpo::make_view(mask.data(), {static_cast<index_t>(r.size()), T}), a, o);
  if (st) *st = s;
  return a;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want,
                 double tol = 1e-14) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(std::abs(got[i] - want[i]) <= tol * std::max(1.0, std::abs(want[i])));
  }
}

advantage_options plain(adv_estimator e, double eps = 0.0) {
  advantage_options o;
  o.estimator = e;
  o.eps = eps;
  o.zero_variance = grpo::zero_variance_policy::keep;
  return o;
}

// Naive reference for the z-score family, written per group with explicit loops (double).
std::vector<double> naive_grpo(const std::vector<double>& r, const std::vector<std::int64_t>& ids,
                               double eps, bool bessel) {
  std::map<std::int64_t, std::vector<double>> members;
  for (std::size_t i = 0; i < r.size(); ++i) members[ids[i]].push_back(r[i]);
  std::vector<double> a(r.size());
  for (std::size_t i = 0; i < r.size(); ++i) {
    const auto& v = members[ids[i]];
    double mean = 0;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    const double sd = std::sqrt(ss / (static_cast<double>(v.size()) - (bessel ? 1.0 : 0.0)));
    a[i] = (r[i] - mean) / (sd + eps);
  }
  return a;
}

template <class F>
void expect_error(F&& f, grpo::errc code) {
  bool thrown = false;
  try {
    f();
  } catch (const grpo::error& e) {
    thrown = true;
    CHECK(e.code() == code);
  }
  CHECK(thrown);
}

}  // namespace

TEST_CASE("compute_advantages: GRPO z-score by hand (eps place, Bessel / population)" *
          doctest::test_suite("advantage")) {
  const std::vector<double> r{1, 0, 1, 1};
  // mean 0.75, centred squares sum 0.75, Bessel var 0.25 (std 0.5), population var 0.1875.
  check_close(run(r, group_spec::fixed(4), plain(adv_estimator::grpo)), {0.5, -1.5, 0.5, 0.5});
  check_close(run(r, group_spec::fixed(4), plain(adv_estimator::grpo, 1e-4)),
              {0.25 / 0.5001, -0.75 / 0.5001, 0.25 / 0.5001, 0.25 / 0.5001});
  auto pop = plain(adv_estimator::grpo);
  pop.bessel = false;
  const double s3 = std::sqrt(3.0);
  check_close(run(r, group_spec::fixed(4), pop), {1 / s3, -s3, 1 / s3, 1 / s3});
  auto in = plain(adv_estimator::grpo, 0.0625);
  in.eps_place = grpo::eps_placement::inside_sqrt;  // sqrt(0.25 + 0.0625) = sqrt(0.3125)
  const double sc = std::sqrt(0.3125);
  check_close(run(r, group_spec::fixed(4), in), {0.25 / sc, -0.75 / sc, 0.25 / sc, 0.25 / sc});
  auto fl = plain(adv_estimator::grpo, 1.0);
  fl.eps_place = grpo::eps_placement::floor_var;  // sqrt(max(0.25, 1)) = 1
  check_close(run(r, group_spec::fixed(4), fl), {0.25, -0.75, 0.25, 0.25});
  auto nostd = plain(adv_estimator::grpo);
  nostd.scale_by_std = false;  // verl norm_adv_by_std_in_grpo = false
  check_close(run(r, group_spec::fixed(4), nostd), {0.25, -0.75, 0.25, 0.25});
}

TEST_CASE("compute_advantages: Dr. GRPO, batch std, RLOO, GPG by hand" *
          doctest::test_suite("advantage")) {
  const std::vector<double> r{1, 0, 1, 1, 1, 1, 1, 1};
  check_close(run(r, group_spec::fixed(4), plain(adv_estimator::dr_grpo)),
              {0.25, -0.75, 0.25, 0.25, 0, 0, 0, 0});
  // batch: mean 7/8, centred squares 7/64 + 49/64 = 0.875, Bessel var 0.125.
  const double bs = std::sqrt(0.125);
  check_close(run(r, group_spec::fixed(4), plain(adv_estimator::batch_std)),
              {0.25 / bs, -0.75 / bs, 0.25 / bs, 0.25 / bs, 0, 0, 0, 0});
  // RLOO: R - mean of the other three: 1 - 2/3, 0 - 1.
  check_close(run({1, 0, 1, 1}, group_spec::fixed(4), plain(adv_estimator::rloo)),
              {1.0 / 3, -1, 1.0 / 3, 1.0 / 3});
  // GPG: alpha = 4 / #nonzero(1) = 4, A = 4 (R - 0.25).
  check_close(run({1, 0, 0, 0}, group_spec::fixed(4), plain(adv_estimator::gpg)), {3, -1, -1, -1});
  auto g = plain(adv_estimator::gpg);
  g.gpg_alpha = 2.0;
  g.gpg_f_norm = 4.0;
  check_close(run({1, 0, 0, 0}, group_spec::fixed(4), g), {0.375, -0.125, -0.125, -0.125});
}

TEST_CASE("compute_advantages: OPO and REINFORCE++-baseline need the mask, by hand" *
          doctest::test_suite("advantage")) {
  // lengths 3 and 1: baseline (3*1 + 1*0)/4 = 0.75.
  const std::vector<double> mask_opo{1, 1, 1, 1, 0, 0};
  check_close(run_mask({1, 0}, group_spec::fixed(2), mask_opo, 3, plain(adv_estimator::opo)),
              {0.25, -0.75});
  // REINFORCE++-baseline: groups {1, 0} and {0.5, 0.5}; lengths 2, 1, 1, 2; A = .5, -.5, 0, 0.
  // token mean 1/12; token-weighted centred squares 2(5/12)^2 + (7/12)^2 + 3(1/12)^2 = 102/144,
  // /6 * 6/5 = 17/120 (mean_eps 0, eps 0 to keep it exact by hand).
  const std::vector<double> mask{1, 1, 1, 0, 1, 0, 1, 1};
  auto o = plain(adv_estimator::reinforce_pp_baseline);
  o.whiten.eps = 0.0;
  o.whiten.mean_eps = 0.0;
  grpo::advantage_stats st;
  const double sc = std::sqrt(17.0 / 120.0);
  check_close(run_mask({1, 0, 0.5, 0.5}, group_spec::fixed(2), mask, 2, o, &st),
              {(5.0 / 12) / sc, (-7.0 / 12) / sc, (-1.0 / 12) / sc, (-1.0 / 12) / sc});
  CHECK(st.whiten.count == 6.0);
  CHECK(std::abs(st.whiten.mean - 1.0 / 12) < 1e-15);
  CHECK(std::abs(st.whiten.var - 17.0 / 120) < 1e-15);
  // Without the mask these estimators are rejected.
  std::vector<double> out(2);
  expect_error(
      [&] {
        grpo::compute_advantages(std::vector<double>{1, 0}, group_spec::fixed(2), out,
                                 plain(adv_estimator::opo));
      },
      grpo::errc::bad_option);
}

TEST_CASE("compute_advantages: pass@k rewards only the unique arg-max" *
          doctest::test_suite("advantage")) {
  const std::vector<double> r{0.2, 0.9, 0.5, 0.1};
  const double mean = 1.7 / 4;
  double ss = 0;
  for (double x : r) ss += (x - mean) * (x - mean);
  const double sd = std::sqrt(ss / 3);
  auto o = grpo::advantage_options::verl_grpo_passk(true);
  check_close(run(r, group_spec::fixed(4), o), {0, 0.4 / (sd + 1e-6), 0, 0});
  check_close(run(r, group_spec::fixed(4), grpo::advantage_options::verl_grpo_passk(false)),
              {0, 0.4, 0, 0}, 1e-13);
  // A tie at the top gives R_max - R_2nd = 0 for everyone.
  check_close(run({0.2, 0.9, 0.5, 0.9}, group_spec::fixed(4), o), {0, 0, 0, 0});
  // verl raises for a group with fewer than 2 members.
  std::vector<double> a(3);
  const std::vector<std::int64_t> ids{7, 7, 9};
  expect_error(
      [&] {
        grpo::compute_advantages(std::vector<double>{1, 0, 1}, group_spec::ids(ids), a, o);
      },
      grpo::errc::bad_value);
}

TEST_CASE("compute_advantages: naive double reference on random variable-size groups" *
          doctest::test_suite("advantage")) {
  std::mt19937_64 rng(42);
  std::normal_distribution<double> nd(0.3, 2.0);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> r;
    std::vector<std::int64_t> ids;
    const int groups = 1 + static_cast<int>(rng() % 6);
    for (int g = 0; g < groups; ++g) {
      const int n = 2 + static_cast<int>(rng() % 7);
      for (int k = 0; k < n; ++k) {
        r.push_back(nd(rng));
        ids.push_back(1000 - 37 * g);  // sparse, descending ids
      }
    }
    // interleave rows
    std::vector<std::size_t> p(r.size());
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng);
    std::vector<double> rp;
    std::vector<std::int64_t> ip;
    for (auto k : p) rp.push_back(r[k]), ip.push_back(ids[k]);
    for (bool bessel : {true, false}) {
      auto o = plain(adv_estimator::grpo, 1e-4);
      o.bessel = bessel;
      check_close(run(rp, group_spec::ids(ip), o), naive_grpo(rp, ip, 1e-4, bessel), 1e-12);
    }
  }
}

TEST_CASE("compute_advantages: permuting rows and ids permutes the advantages (all estimators)" *
          doctest::test_suite("advantage")) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> ud(-1.0, 2.0);
  const index_t T = 5;
  std::vector<double> r, mask;
  std::vector<std::int64_t> ids;
  const std::int64_t labels[] = {-5, 12, 3, 40000000000LL};
  const int sizes[] = {3, 5, 2, 6};
  for (int g = 0; g < 4; ++g)
    for (int k = 0; k < sizes[g]; ++k) {
      r.push_back(std::round(ud(rng) * 4) / 4);  // some ties
      ids.push_back(labels[g]);
      for (index_t t = 0; t < T; ++t) mask.push_back(rng() % 4 != 0 ? 1.0 : 0.0);
    }
  const auto B = static_cast<index_t>(r.size());
  std::vector<std::size_t> p(r.size());
  std::iota(p.begin(), p.end(), 0);
  std::shuffle(p.begin(), p.end(), rng);
  std::vector<double> rp, mp;
  std::vector<std::int64_t> ip;
  for (auto k : p) {
    rp.push_back(r[k]);
    ip.push_back(ids[k]);
    for (index_t t = 0; t < T; ++t) mp.push_back(mask[k * T + static_cast<std::size_t>(t)]);
  }
  for (auto e : {adv_estimator::grpo, adv_estimator::dr_grpo, adv_estimator::batch_std,
                 adv_estimator::rloo, adv_estimator::reinforce_pp_baseline, adv_estimator::opo,
                 adv_estimator::gpg, adv_estimator::passk}) {
    CAPTURE(static_cast<int>(e));
    auto o = plain(e, 1e-6);
    const auto a = run_mask(r, group_spec::ids(ids), mask, T, o);
    const auto b = run_mask(rp, group_spec::ids(ip), mp, T, o);
    for (std::size_t i = 0; i < static_cast<std::size_t>(B); ++i)
      CHECK(std::abs(b[i] - a[p[i]]) <= 1e-12 * std::max(1.0, std::abs(a[p[i]])));
  }
}

TEST_CASE("compute_advantages: NaN rewards are excluded, counted and get 0" *
          doctest::test_suite("advantage")) {
  const std::vector<double> r{1, nan_v, 0, 1, nan_v, nan_v, nan_v, nan_v};
  grpo::advantage_stats st;
  std::vector<double> a(8);
  st = grpo::compute_advantages(r, group_spec::fixed(4), a, plain(adv_estimator::grpo));
  // group 0 scorable {1, 0, 1}: mean 2/3, Bessel var 1/3.
  const double sd = std::sqrt(1.0 / 3);
  check_close(a, {(1.0 / 3) / sd, 0, (-2.0 / 3) / sd, (1.0 / 3) / sd, 0, 0, 0, 0});
  CHECK(st.count[0] == 3);
  CHECK(st.nan_count[0] == 1);
  CHECK(st.count[1] == 0);
  CHECK(st.nan_count[1] == 4);
  CHECK(st.num_empty == 1);
  CHECK(std::isnan(st.mean[1]));
  CHECK(st.batch_count == 3);
  CHECK(st.batch_nan == 5);
  CHECK(std::abs(st.mean[0] - 2.0 / 3) < 1e-15);
  // +-Inf is not "unscorable": it is rejected.
  std::vector<double> two(2);
  const std::vector<double> inf{1, std::numeric_limits<double>::infinity()};
  expect_error(
      [&] { grpo::compute_advantages(inf, group_spec::fixed(2), two, plain(adv_estimator::grpo)); },
      grpo::errc::bad_value);
}

TEST_CASE("compute_advantages: singleton policies" * doctest::test_suite("advantage")) {
  const std::vector<double> r{2, 1, 0};
  const std::vector<std::int64_t> ids{5, 6, 6};
  auto o = plain(adv_estimator::grpo, 1e-6);
  o.singleton = grpo::singleton_policy::zero;
  auto a = run(r, group_spec::ids(ids), o);
  CHECK(a[0] == 0.0);
  o.singleton = grpo::singleton_policy::unit_baseline;  // verl: mean 0, std 1
  a = run(r, group_spec::ids(ids), o);
  CHECK(a[0] == doctest::Approx(2.0 / (1.0 + 1e-6)).epsilon(1e-15));
  o.estimator = adv_estimator::rloo;  // verl rloo keeps the raw reward
  CHECK(run(r, group_spec::ids(ids), o)[0] == 2.0);
  o.singleton = grpo::singleton_policy::error;
  std::vector<double> out(3);
  expect_error([&] { grpo::compute_advantages(r, group_spec::ids(ids), out, o); },
               grpo::errc::bad_value);
  // A group whose only other members are NaN is a singleton too.
  auto o2 = plain(adv_estimator::grpo, 1e-4);
  const auto b = run({3, nan_v, 1, 0}, group_spec::fixed(2), o2);
  CHECK(b[0] == 0.0);
  CHECK(b[1] == 0.0);
}

TEST_CASE("compute_advantages: zero-variance groups by tolerance (zero / keep / report)" *
          doctest::test_suite("advantage")) {
  // Non-dyadic ties with fp residue: max - min = 1e-12.
  const std::vector<double> r{0.3, 0.3 + 1e-12, 0.3, 1, 0};
  const std::vector<std::int64_t> ids{0, 0, 0, 1, 1};
  auto o = plain(adv_estimator::grpo, 1e-6);
  o.zero_var_tol = 1e-9;
  o.zero_variance = grpo::zero_variance_policy::keep;
  std::vector<double> a(5);
  auto st = grpo::compute_advantages(r, group_spec::ids(ids), a, o);
  CHECK(std::abs(a[1]) > 1e-8);  // residue / (std + eps) survives (NeMo-RL #4161)
  CHECK(st.zero_var[0] == 1);
  CHECK(st.zero_var[1] == 0);
  CHECK(st.num_zero_var == 1);
  CHECK(st.frac_zero_std == 0.5);
  CHECK(st.keep_tol[0] == 1);
  o.zero_variance = grpo::zero_variance_policy::report;
  std::vector<double> b(5);
  st = grpo::compute_advantages(r, group_spec::ids(ids), b, o);
  CHECK(b == a);
  CHECK(st.keep_tol[0] == 0);
  CHECK(st.keep_tol[1] == 1);
  o.zero_variance = grpo::zero_variance_policy::zero;
  grpo::compute_advantages(r, group_spec::ids(ids), b, o);
  CHECK(b[0] == 0.0);
  CHECK(b[1] == 0.0);
  CHECK(b[2] == 0.0);
  CHECK(b[3] == a[3]);
  // With tolerance 0 the residue is not zero variance.
  o.zero_var_tol = 0.0;
  st = grpo::compute_advantages(r, group_spec::ids(ids), b, o);
  CHECK(st.zero_var[0] == 0);
}

TEST_CASE("compute_advantages: dynamic-sampling keep masks (verl std == 0, OpenRLHF range)" *
          doctest::test_suite("advantage")) {
  const std::vector<double> r{0, 0, 0, 1, 0, 1, 1, 1, 1, 7};
  const std::vector<std::int64_t> ids{0, 0, 0, 1, 1, 2, 2, 2, 3, 4};
  std::vector<double> a(r.size());
  const auto st = grpo::compute_advantages(r, group_spec::ids(ids), a, plain(adv_estimator::grpo));
  // verl: drop groups with > 1 member and population std 0 (all-0 and all-1); singletons kept.
  CHECK(st.keep_verl == std::vector<std::uint8_t>{0, 1, 0, 1, 1});
  // OpenRLHF: keep iff 0 < mean < 1.
  CHECK(st.keep_openrlhf == std::vector<std::uint8_t>{0, 1, 0, 0, 0});
  CHECK(st.num_singleton == 2);
  CHECK(st.seq_group == std::vector<index_t>{0, 0, 0, 1, 1, 2, 2, 2, 3, 4});
  CHECK(st.group_label == std::vector<std::int64_t>{0, 1, 2, 3, 4});
}

TEST_CASE("compute_advantages: float output, strided input and 32-bit ids" *
          doctest::test_suite("advantage")) {
  // Rewards as column 1 of a [4, 2] row-major matrix (stride 2).
  const std::vector<double> m{9, 1, 9, 0, 9, 1, 9, 1};
  const auto col = grpo::make_view(m.data() + 1, {4}, {2});
  std::vector<float> af(4);
  const std::vector<std::int32_t> ids{3, 3, 3, 3};
  grpo::compute_advantages(col, group_spec::ids(std::span<const std::int32_t>(ids)), af,
                           plain(adv_estimator::grpo));
  CHECK(af == std::vector<float>{0.5f, -1.5f, 0.5f, 0.5f});
  // batch_std with a single scorable row in the whole batch: the batch std is undefined (TRL:
  // NaN -> nan_to_num -> 0), never NaN.
  std::vector<double> one(2);
  auto bo = plain(adv_estimator::batch_std);
  bo.singleton = grpo::singleton_policy::unit_baseline;  // divides by the batch scale
  grpo::compute_advantages(std::vector<double>{2.0, nan_v}, group_spec::fixed(2), one, bo);
  CHECK(one == std::vector<double>{0.0, 0.0});
  // float rewards in, double out
  const std::vector<float> rf{1, 0, 1, 1};
  std::vector<double> ad(4);
  grpo::compute_advantages(rf, group_spec::fixed(2), ad, plain(adv_estimator::dr_grpo));
  check_close(ad, {0.5, -0.5, 0, 0});
}

TEST_CASE("broadcast_to_tokens and combine_rewards" * doctest::test_suite("advantage")) {
  const std::vector<double> a{2, -1};
  const std::vector<double> mask{1, 1, 0, 0, 1, 1};
  std::vector<double> out(6, 5.0);
  grpo::broadcast_to_tokens(a, grpo::make_view(mask.data(), {2, 3}),
                            grpo::make_view(out.data(), {2, 3}));
  CHECK(out == std::vector<double>{2, 2, 0, -0.0, -1, -1});
  // TRL nansum: NaN entries skipped, all-NaN row -> NaN.
  const std::vector<double> rpf{1, nan_v, nan_v, nan_v, 0, 0.5};
  std::vector<double> c(3);
  const std::vector<double> w{1.0, 2.0};
  grpo::combine_rewards(grpo::make_view(rpf.data(), {3, 2}), w, c);
  CHECK(c[0] == 1.0);
  CHECK(std::isnan(c[1]));
  CHECK(c[2] == 1.0);
}

TEST_CASE("compute_multi_reward_advantages: normalize_then_sum by hand" *
          doctest::test_suite("advantage")) {
  // Two reward functions, one group of 2 per function: z = +-1/sqrt(2) * sqrt(2)... by hand:
  // f0: {1, 0}: mean .5, Bessel std sqrt(.5): z = +-.5/sqrt(.5) = +-sqrt(.5).
  // f1: {0, 2}: mean 1, std sqrt(2): z = -+1/sqrt(2) = -+sqrt(.5).
  // S = w0 z0 + w1 z1 with w = (1, 0.5): S = sqrt(.5)(1 - .5), sqrt(.5)(-1 + .5) = +-sqrt(.5)/2.
  // batch z of S: mean 0, Bessel var 2 (sqrt(.5)/2)^2 = .25 -> std .5; A = +-sqrt(.5).
  const std::vector<double> rpf{1, 0, 0, 2};
  const std::vector<double> w{1.0, 0.5};
  std::vector<double> a(2);
  auto o = plain(adv_estimator::grpo);
  o.multi = grpo::multi_reward_mode::normalize_then_sum;
  const auto st = grpo::compute_multi_reward_advantages(grpo::make_view(rpf.data(), {2, 2}), w,
                                                        group_spec::fixed(2), a, o);
  check_close(a, {std::sqrt(0.5), -std::sqrt(0.5)}, 1e-14);
  CHECK(std::abs(st.batch_std - 0.5) < 1e-15);
}

TEST_CASE("masked_whiten and compute_reinforce_pp_advantages by hand" *
          doctest::test_suite("advantage")) {
  // gamma 0.5; row 0 rewards (0, 0, 1), mask (1, 0, 1): G = (0.5, 0, 1) (masked token passes the
  // return through undiscounted); row 1 rewards (0, 2, 0), mask (1, 1, 0): G = (1, 2, 0).
  const std::vector<double> rw{0, 0, 1, 0, 2, 0};
  const std::vector<double> mk{1, 0, 1, 1, 1, 0};
  std::vector<double> adv(6), ret(6);
  grpo::whiten_options wo;
  wo.eps = 0.0;
  wo.mean_eps = 0.0;
  const auto ws = grpo::compute_reinforce_pp_advantages(
      grpo::make_view(rw.data(), {2, 3}), grpo::make_view(mk.data(), {2, 3}), 0.5,
      grpo::make_view(adv.data(), {2, 3}), grpo::make_view(ret.data(), {2, 3}), wo);
  CHECK(ret == std::vector<double>{0.5, 0, 1, 1, 2, 0});
  // tokens 0.5, 1, 1, 2: mean 1.125, centred squares .390625 + .015625*2 + .765625 = 1.1875,
  // Bessel var 1.1875 / 3.
  const double sd = std::sqrt(1.1875 / 3);
  CHECK(ws.count == 4);
  CHECK(ws.mean == 1.125);
  check_close(adv,
              {(0.5 - 1.125) / sd, 0, (1 - 1.125) / sd, (1 - 1.125) / sd, (2 - 1.125) / sd, 0});
  // Fewer than 2 valid tokens: verl raises; we throw bad_value.
  const std::vector<double> one{1, 0, 0, 0, 0, 0};
  expect_error(
      [&] {
        grpo::masked_whiten(grpo::make_view(rw.data(), {2, 3}), grpo::make_view(one.data(), {2, 3}),
                            grpo::make_view(adv.data(), {2, 3}));
      },
      grpo::errc::bad_value);
}

TEST_CASE("compute_advantages: bad shapes and options are documented errors" *
          doctest::test_suite("advantage")) {
  const std::vector<double> r{1, 0, 1, 1};
  std::vector<double> a3(3), a4(4);
  const auto o = plain(adv_estimator::grpo);
  expect_error([&] { grpo::compute_advantages(r, group_spec::fixed(4), a3, o); },
               grpo::errc::shape_mismatch);
  expect_error([&] { grpo::compute_advantages(r, group_spec::fixed(3), a4, o); },
               grpo::errc::shape_mismatch);
  expect_error([&] { grpo::compute_advantages(r, group_spec::fixed(0), a4, o); },
               grpo::errc::bad_option);
  const std::vector<std::int64_t> ids3{0, 0, 1};
  expect_error([&] { grpo::compute_advantages(r, group_spec::ids(ids3), a4, o); },
               grpo::errc::shape_mismatch);
  const std::vector<std::int64_t> ids{0, 0, 1, 2};
  expect_error([&] { grpo::compute_advantages(r, group_spec::ids(ids, 2), a4, o); },
               grpo::errc::out_of_range);
  expect_error([&] { grpo::compute_advantages(r, group_spec::fixed(2, 0, 1), a4, o); },
               grpo::errc::out_of_range);
  auto neg = o;
  neg.eps = -1;
  expect_error([&] { grpo::compute_advantages(r, group_spec::fixed(4), a4, neg); },
               grpo::errc::bad_option);
  auto pk = grpo::advantage_options::verl_grpo_passk();
  pk.singleton = grpo::singleton_policy::unit_baseline;
  expect_error([&] { grpo::compute_advantages(r, group_spec::fixed(4), a4, pk); },
               grpo::errc::bad_option);
  auto f32 = grpo::advantage_options::verl_grpo_vectorized();
  f32.estimator = adv_estimator::rloo;
  expect_error([&] { grpo::compute_advantages(r, group_spec::fixed(4), a4, f32); },
               grpo::errc::bad_option);
  const std::vector<double> mask(12, 1.0);
  expect_error(
      [&] {
        grpo::compute_advantages(r, group_spec::fixed(4), grpo::make_view(mask.data(), {3, 4}), a4,
                                 o);
      },
      grpo::errc::shape_mismatch);
  const std::vector<double> rpf{1, 0, 1, 1};
  const std::vector<double> w3{1, 1, 1};
  expect_error(
      [&] {
        grpo::compute_multi_reward_advantages(grpo::make_view(rpf.data(), {2, 2}), w3,
                                              group_spec::fixed(2), a3, o);
      },
      grpo::errc::shape_mismatch);
  // Error messages name the argument.
  try {
    grpo::compute_advantages(r, group_spec::fixed(4), a3, o);
  } catch (const grpo::error& e) {
    CHECK(std::string(e.what()).find("advantages (out)") != std::string::npos);
  }
}

// Found by fuzz_numeric_core: batch_std, a singleton (its partner's reward NaN) under the unit
// baseline, every other reward equal (batch std 0) and a subnormal eps gave r / eps = +inf for
// finite rewards. Now eps must be 0 or >= 1e-150 (|R| <= 1e150, so |A| <= 2e300), and an
// advantage the output type cannot hold is a named error instead of a silent +-inf.
TEST_CASE("compute_advantages: a tiny eps or a narrowing overflow is a named error, never +-inf") {
  const std::vector<double> r{nan_v, 0.5625, 0.5625, 0.5625, 0.5625, 0.5625};
  auto o = plain(adv_estimator::batch_std, 1.295163e-318);
  o.singleton = grpo::singleton_policy::unit_baseline;
  std::vector<double> a(r.size(), -777.0);
  expect_error([&] { grpo::compute_advantages(r, group_spec::fixed(2), a, o); },
               grpo::errc::bad_option);
  CHECK(a[1] == -777.0);  // nothing written
  // The smallest accepted eps: the singleton gets 0.5625 / (0 + 1e-150), finite.
  o.eps = grpo::detail::min_nonzero_eps;
  const auto b = run(r, group_spec::fixed(2), o);
  CHECK(b[1] == 0.5625 / 1e-150);
  CHECK(std::isfinite(b[1]));
  for (std::size_t i = 2; i < r.size(); ++i) CHECK(b[i] == 0.0);  // zero-spread groups
  // eps = 0 stays allowed: a zero scale gives 0 (ops::zscore).
  o.eps = 0.0;
  CHECK(run(r, group_spec::fixed(2), o)[1] == 0.0);
  // The same advantage into float storage overflows float: named error, nothing written.
  o.eps = grpo::detail::min_nonzero_eps;
  std::vector<float> af(r.size(), -777.0f);
  expect_error([&] { grpo::compute_advantages(r, group_spec::fixed(2), af, o); },
               grpo::errc::bad_value);
  CHECK(af[1] == -777.0f);
  // A representable result still goes through float unchanged.
  o.eps = 1.0;
  grpo::compute_advantages(r, group_spec::fixed(2), af, o);
  CHECK(af[1] == static_cast<float>(0.5625 / 1.0));
}
