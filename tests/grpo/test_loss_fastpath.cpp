// SPDX-License-Identifier: Apache-2.0
// The vectorised token-level fast path of grpo::compute_loss_into (grpo/detail/simd.hpp + the row
// kernel in grpo/loss.hpp):
//   1. every formula simd.hpp mirrors is, at a scalar lane type, bitwise the op it mirrors (float
//      and double; grids through the clip, delta, dual-clip and clamp edges and their ties);
//   2. the xsimd batch instantiation agrees lane by lane with the scalar one (exp differs by ulps);
//   3. double inputs: the vectorised path equals the scalar loop (forced by a non-unit stride) to
//      1e-13, loss, gradient, per-token loss and every metric; and matches the naive reference of
//      tests/support/reference.hpp (value) and its central finite differences (gradient);
//   4. float inputs: loss, gradient and metrics within 1e-6 (relative) of the double computation;
//   5. errors (non-finite inputs on valid tokens, bad mask) keep their ids and argument names; a
//      non-finite value on padding is ignored.
#include <grpo/detail/simd.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>
#include <support/reference.hpp>

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace simd = grpo::detail::simd;
using grpo::index_t;

/// Bitwise-equal or both NaN (the mirrored formula must reproduce the op exactly).
template <class C>
bool same(C a, C b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof(C)) == 0;
}

template <class C>
std::vector<C> ratio_grid(C eps_low, C eps_high, C delta, C dual) {
  std::vector<C> g = {
      C(0),   C(1e-30), C(0.1), C(0.5),          C(1) - eps_low,
      C(0.9), C(1),     C(1.1), C(1) + eps_high, C(1.5),
      delta,  dual,     C(7),   C(1e30),         std::numeric_limits<C>::infinity()};
  for (int k = 0; k < 40; ++k) g.push_back(C(0.05) * C(k));
  // neighbours of every edge
  for (C e : {C(1) - eps_low, C(1) + eps_high, delta, dual}) {
    g.push_back(std::nextafter(e, C(0)));
    g.push_back(std::nextafter(e, C(100)));
  }
  return g;
}

template <class C>
void check_mirrors() {
  const std::vector<C> As = {C(-2), C(-1), C(-0.5), C(-1e-3), C(0), C(1e-3), C(0.5), C(1), C(2)};
  // PPO clip value and d/dr for plain, clip-higher, delta and dual clip (and their ties: at
  // r = 1 +- eps the two surrogates are equal; with A = 0 every branch ties).
  for (C delta : {C(0), C(1.6)}) {
    for (C dual : {C(0), C(3)}) {
      for (C eh : {C(0.2), C(0.28)}) {
        const grpo::ops::ppo_clip_params<C> p{C(0.2), eh, delta, dual};
        for (C r : ratio_grid(C(0.2), eh, delta > 0 ? delta : C(2), dual > 0 ? dual : C(3))) {
          for (C A : As) {
            const auto vg = simd::ppo_clip<C>(r, A, p);
            REQUIRE(same(vg.value, grpo::ops::ppo_clip_loss(r, A, p)));
            REQUIRE(same(vg.grad, grpo::ops::ppo_clip_loss_grad(r, A, p)));
            REQUIRE(simd::clipped_low<C>(r, A, p) == grpo::ops::ppo_clipped_low(r, A, p));
            REQUIRE(simd::clipped_high<C>(r, A, p) == grpo::ops::ppo_clipped_high(r, A, p));
            REQUIRE(simd::dual_clipped<C>(r, A, p) == grpo::ops::ppo_dual_clipped(r, A, p));
            // CISPO weights (TRL cap 5 and the r-grid's own edges; verl two-sided clip)
            for (C cap : {C(5), C(1) + eh}) {
              REQUIRE(same(simd::cispo_weight_cap<C>(r, cap), grpo::ops::cispo_weight_cap(r, cap)));
            }
            REQUIRE(same(simd::cispo_weight_clip<C>(r, C(0.2), eh),
                         grpo::ops::cispo_weight_clip(r, C(0.2), eh)));
            // SAPO (both temperatures, z of both signs, z = 0 at r = 1)
            const auto sg = simd::sapo<C>(r, A, C(1), C(1.05));
            REQUIRE(same(sg.value, grpo::ops::sapo_loss(r, A, C(1), C(1.05))));
            REQUIRE(same(sg.grad, grpo::ops::sapo_loss_grad(r, A, C(1), C(1.05))));
          }
        }
      }
    }
  }
  // Log-ratio clamp and the ratio it feeds (verl +-20, GSPO max 10, TRL none).
  for (C lo : {-std::numeric_limits<C>::infinity(), C(-20)}) {
    for (C hi : {std::numeric_limits<C>::infinity(), C(10), C(20)}) {
      for (C x : {C(-30), C(-20), C(-3), C(-1e-7), C(0), C(0.3), C(10), C(12), C(20), C(25)}) {
        REQUIRE(same(simd::clamp<C>(x, lo, hi), grpo::ops::clamp_scalar(x, lo, hi)));
        REQUIRE(same(simd::clamp_grad<C>(x, lo, hi), grpo::ops::clamp_scalar_grad(x, lo, hi)));
        const auto rt = simd::ratio<C>(x, lo, hi);
        REQUIRE(same(rt.r, grpo::ops::ratio_from_log(x, lo, hi)));
        REQUIRE(same(
            rt.dr, grpo::ops::clamp_scalar_grad(x, lo, hi) * grpo::ops::ratio_from_log(x, lo, hi)));
      }
    }
  }
  // KL estimators with inner / outer clamps and straight-through, d = lr - lp across the clamps.
  const std::vector<C> ds = {C(-30), C(-21), C(-20), C(-3), C(-1.5), C(-0.2), C(0),
                             C(0.2), C(1.5), C(3),   C(20), C(21),   C(30)};
  for (auto est : {grpo::ops::kl_estimator::k1, grpo::ops::kl_estimator::abs,
                   grpo::ops::kl_estimator::k2, grpo::ops::kl_estimator::k3}) {
    for (double inner : {0.0, 20.0, 1.0}) {
      for (double outer : {0.0, 10.0, 1.5}) {
        for (bool st : {false, true}) {
          grpo::ops::kl_params p;
          p.estimator = est;
          p.inner_clamp = inner;
          p.outer_clamp = outer;
          p.straight_through = st;
          for (C d : ds) {
            const C lp = C(-1.25), lr = lp + d;
            const auto a = simd::kl<C>(p, lp, lr);
            const auto b = grpo::ops::kl_value_grad(p, lp, lr);
            REQUIRE(same(a.value, b.value));
            REQUIRE(same(a.grad, b.grad));
          }
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("loss fast path: mirrored formulas equal the ops bitwise (double)" *
          doctest::test_suite("loss")) {
  check_mirrors<double>();
}

TEST_CASE("loss fast path: mirrored formulas equal the ops bitwise (float)" *
          doctest::test_suite("loss")) {
  check_mirrors<float>();
}

#if GRPO_HAS_XSIMD
namespace {
template <class C>
void check_batches(double tol) {
  using V = simd::batch_of<C>;
  constexpr std::size_t L = V::size;
  std::mt19937 g(7);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const grpo::ops::ppo_clip_params<C> p{C(0.2), C(0.28), C(0), C(3)};
  grpo::ops::kl_params kp;  // k3, no clamp (TRL)
  for (int rep = 0; rep < 200; ++rep) {
    C x[L], A[L], lp[L], lr[L];
    for (std::size_t l = 0; l < L; ++l) {
      x[l] = C(0.8 * u(g));
      A[l] = C(2 * u(g));
      lp[l] = C(-2 + u(g));
      lr[l] = C(lp[l] + 0.5 * u(g));
    }
    const auto rt = simd::ratio(V::load_unaligned(x), V(C(-20)), V(C(20)));
    const auto pv = simd::ppo_clip(rt.r, V::load_unaligned(A), p);
    const auto sv = simd::sapo(rt.r, V::load_unaligned(A), C(1), C(1.05));
    const auto kv = simd::kl(kp, V::load_unaligned(lp), V::load_unaligned(lr));
    C r[L], pvv[L], pvg[L], svv[L], svg[L], kvv[L], kvg[L];
    rt.r.store_unaligned(r);
    pv.value.store_unaligned(pvv);
    pv.grad.store_unaligned(pvg);
    sv.value.store_unaligned(svv);
    sv.grad.store_unaligned(svg);
    kv.value.store_unaligned(kvv);
    kv.grad.store_unaligned(kvg);
    for (std::size_t l = 0; l < L; ++l) {
      const auto rs = simd::ratio<C>(x[l], C(-20), C(20));
      CHECK(std::fabs(double(r[l]) - double(rs.r)) <= tol * std::fabs(double(rs.r)));
      // clip decisions are taken on the batch's own r, so compare at that r
      const auto ps = simd::ppo_clip<C>(r[l], A[l], p);
      CHECK(same(pvv[l], ps.value));
      CHECK(same(pvg[l], ps.grad));
      const auto ss = simd::sapo<C>(r[l], A[l], C(1), C(1.05));
      CHECK(std::fabs(double(svv[l]) - double(ss.value)) <=
            tol * (std::fabs(double(ss.value)) + 1e-30));
      CHECK(std::fabs(double(svg[l]) - double(ss.grad)) <=
            tol * (std::fabs(double(ss.grad)) + 1e-30));
      const auto ks = simd::kl<C>(kp, lp[l], lr[l]);
      CHECK(std::fabs(double(kvv[l]) - double(ks.value)) <= tol * 4);  // e - d - 1 near 0
      CHECK(std::fabs(double(kvg[l]) - double(ks.grad)) <= tol * 4);
    }
  }
}
}  // namespace

TEST_CASE("loss fast path: xsimd batches agree with the scalar lanes" *
          doctest::test_suite("loss")) {
  check_batches<float>(4e-7);
  check_batches<double>(1e-15);
}
#endif

namespace {

/// One random batch in double (the float copy is the double rounded; the double reference then
/// uses the float values widened, so both paths see the same numbers).
struct problem {
  long B = 0, T = 0;
  std::vector<double> lp, old, ref, mask, adv_row, adv_tok;
  std::vector<unsigned char> truncated;
};

problem make_problem(long B, long T, unsigned seed) {
  problem p;
  p.B = B;
  p.T = T;
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const auto n = static_cast<std::size_t>(B * T);
  p.lp.resize(n);
  p.old.resize(n);
  p.ref.resize(n);
  p.mask.resize(n);
  p.adv_tok.resize(n);
  p.adv_row.resize(static_cast<std::size_t>(B));
  p.truncated.assign(static_cast<std::size_t>(B), 0);
  p.truncated[2] = 1;  // one truncated row
  for (long i = 0; i < B; ++i) {
    p.adv_row[static_cast<std::size_t>(i)] = static_cast<float>(1.5 * u(g));
    const long len =
        i == 1 ? 0 : 1 + static_cast<long>((u(g) + 1.0) * 0.5 * static_cast<double>(T - 1));
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      // store float-representable values so float and double paths see identical inputs
      p.lp[k] = static_cast<float>(-2.0 + u(g));
      p.old[k] = static_cast<float>(p.lp[k] - 0.4 * u(g));  // ratios through both clip edges
      p.ref[k] = static_cast<float>(p.lp[k] - 0.5 * u(g));
      p.mask[k] = (t < len && (t % 7) != 3) ? 1.0 : 0.0;  // right padding plus holes
      p.adv_tok[k] = static_cast<float>(1.5 * u(g));
    }
  }
  return p;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

/// compute_loss_into on inputs of type T, outputs double. stride 2 (a copy with gaps) forces the
/// scalar loop; per_tok selects token-level advantages; on_policy drops old_logp.
template <class E>
grpo::loss_result run(const grpo::loss_options& o, const problem& p, int stride, bool per_tok,
                      bool on_policy, bool truncate) {
  const long B = p.B, T = p.T;
  auto spread = [&](const std::vector<double>& v) {
    std::vector<E> s(static_cast<std::size_t>(B * T * stride), E(0));
    for (std::size_t k = 0; k < v.size(); ++k) s[k * static_cast<std::size_t>(stride)] = E(v[k]);
    return s;
  };
  const auto lp = spread(p.lp), old = spread(p.old), ref = spread(p.ref), mask = spread(p.mask),
             adv = spread(p.adv_tok);
  const auto adv_row = cast<E>(p.adv_row);
  auto view = [&](const std::vector<E>& v) {
    return grpo::make_view(v.data(), {B, T}, {T * stride, stride});
  };
  grpo::loss_batch<E, E> b;
  b.logp = view(lp);
  if (!on_policy) b.old_logp = view(old);
  b.ref_logp = view(ref);
  b.mask = view(mask);
  b.advantages = per_tok ? view(adv) : grpo::broadcast_rows(adv_row.data(), B, T);
  if (truncate) b.truncated = std::span<const unsigned char>(p.truncated);
  auto r = grpo::compute_loss(o, b);
  // The path under test, as reported (not inferred from today's dispatch rules).
  CHECK(r.engine_used ==
        (stride == 1 ? grpo::loss_engine::token_rows_simd : grpo::loss_engine::token_rows));
  return r;
}

struct config {
  const char* name;
  grpo::loss_options o;
};

std::vector<config> configs() {
  std::vector<config> cs;
  auto trl = [](const char* loss, double beta) {
    grpo::trl_args a;
    a.loss_type = loss;
    a.beta = beta;
    a.epsilon_high = 0.28;
    return grpo::from_trl(a);
  };
  cs.push_back({"dapo + k3 (TRL)", trl("dapo", 0.04)});
  cs.push_back({"grpo no KL", trl("grpo", 0.0)});
  cs.push_back({"dr_grpo + k3", trl("dr_grpo", 0.1)});
  {
    auto o = trl("dapo", 0.04);
    o.kl_bias_correction = true;
    o.policy.delta = 1.5;
    cs.push_back({"dapo delta + bias-corrected KL", o});
  }
  {
    grpo::loss_options o;  // verl-like: dual clip, log-ratio clamp, k1 / low_var_kl, seq-mean
    o.policy.dual_clip_c = 3.0;
    o.policy.log_ratio_min = -20;
    o.policy.log_ratio_max = 20;
    o.kl_coef = 0.05;
    o.kl.estimator = grpo::kl_estimator::k3;
    o.kl.inner_clamp = 20;
    o.kl.outer_clamp = 10;
    o.agg.mode = grpo::agg_mode::seq_mean_token_mean;
    cs.push_back({"verl dual clip + low_var_kl, seq-mean-token-mean", o});
    o.kl.estimator = grpo::kl_estimator::k1;
    o.kl.straight_through = true;
    o.agg.mode = grpo::agg_mode::token_sum;
    cs.push_back({"dual clip + k1+ (straight-through), token-sum", o});
    o.kl.estimator = grpo::kl_estimator::abs;
    o.kl.straight_through = false;
    o.kl.outer_clamp = 0.3;
    o.agg.mode = grpo::agg_mode::seq_mean_token_sum;
    cs.push_back({"abs KL with binding outer clamp, seq-mean-token-sum", o});
    o.kl.estimator = grpo::kl_estimator::k2;
    o.kl_agg = grpo::agg_options{};  // KL token-mean, policy seq-mean
    cs.push_back({"k2 KL with its own aggregation", o});
  }
  cs.push_back({"cispo (TRL cap)", trl("cispo", 0.04)});
  {
    grpo::loss_options o;
    o.policy.kind = grpo::policy_loss_kind::cispo;
    o.policy.cispo = grpo::cispo_clip::verl_clip;
    o.policy.eps_low = 0.1;
    o.policy.eps_high = 0.15;
    cs.push_back({"cispo (verl clip)", o});
  }
  cs.push_back({"sapo + k3", trl("sapo", 0.02)});
  {
    grpo::loss_options o;
    o.policy.kind = grpo::policy_loss_kind::reinforce;
    o.kl_coef = 0.01;
    cs.push_back({"plain PG + k3", o});
  }
  return cs;
}

void check_metric(const grpo::stat_accumulator& a, const grpo::stat_accumulator& b, double tol,
                  const char* what) {
  INFO(std::string(what));
  CHECK(a.weight == doctest::Approx(b.weight).epsilon(tol));
  CHECK(a.sum == doctest::Approx(b.sum).epsilon(tol).scale(b.weight + 1.0));
  CHECK(a.sum_sq == doctest::Approx(b.sum_sq).epsilon(tol).scale(b.weight + 1.0));
  if (b.weight > 0) {
    CHECK(a.min == doctest::Approx(b.min).epsilon(tol));
    CHECK(a.max == doctest::Approx(b.max).epsilon(tol));
  }
}

void check_metrics(const grpo::loss_metrics& a, const grpo::loss_metrics& b, double tol) {
  check_metric(a.clip_low, b.clip_low, tol, "clip_low");
  check_metric(a.clip_high, b.clip_high, tol, "clip_high");
  check_metric(a.clip_region, b.clip_region, tol, "clip_region");
  check_metric(a.clip_dual, b.clip_dual, tol, "clip_dual");
  check_metric(a.weight_clip, b.weight_clip, tol, "weight_clip");
  check_metric(a.clip_low_seq, b.clip_low_seq, tol, "clip_low_seq");
  check_metric(a.clip_high_seq, b.clip_high_seq, tol, "clip_high_seq");
  check_metric(a.approx_kl, b.approx_kl, tol, "approx_kl");
  check_metric(a.ratio, b.ratio, tol, "ratio");
  check_metric(a.is_weight, b.is_weight, tol, "is_weight");
  check_metric(a.advantage, b.advantage, tol, "advantage");
  check_metric(a.kl, b.kl, tol, "kl");
  CHECK(a.tokens == b.tokens);
  CHECK(a.sequences == b.sequences);
  CHECK(a.truncated_seqs == b.truncated_seqs);
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = grpo_test::scale_max(m, std::fabs(x));
  return m;
}

}  // namespace

TEST_CASE("loss fast path: double vectorised path equals the scalar loop" *
          doctest::test_suite("loss")) {
  // T = 203: not a multiple of any lane width, so every row also runs the scalar tail.
  const problem p = make_problem(9, 203, 11);
  for (const auto& c : configs()) {
    for (int variant = 0; variant < 3; ++variant) {
      const bool per_tok = variant == 1, on_policy = variant == 2, truncate = variant != 2;
      INFO(std::string(c.name) << " variant " << variant);
      const auto v = run<double>(c.o, p, 1, per_tok, on_policy, truncate);
      const auto s = run<double>(c.o, p, 2, per_tok, on_policy, truncate);
      const double sc = std::fabs(s.policy_loss) + std::fabs(s.kl_loss) + 1e-300;
      CHECK(std::fabs(v.loss - s.loss) <= 1e-13 * sc);
      CHECK(std::fabs(v.policy_loss - s.policy_loss) <= 1e-13 * sc);
      CHECK(std::fabs(v.kl_loss - s.kl_loss) <= 1e-13 * sc);
      const double gs = max_abs(s.grad_logp), ps = max_abs(s.per_token_loss);
      for (std::size_t k = 0; k < s.grad_logp.size(); ++k) {
        REQUIRE(std::fabs(v.grad_logp[k] - s.grad_logp[k]) <= 1e-13 * gs);
        REQUIRE(std::fabs(v.per_token_loss[k] - s.per_token_loss[k]) <= 1e-13 * ps);
        REQUIRE(v.grad_entropy[k] == 0.0);
      }
      check_metrics(v.metrics, s.metrics, 1e-12);
    }
  }
}

TEST_CASE("loss fast path: double path matches the naive reference and finite differences" *
          doctest::test_suite("loss")) {
  const problem p = make_problem(6, 37, 5);
  grpo_ref::batch rb;
  rb.B = p.B;
  rb.T = p.T;
  rb.lp = p.lp;
  rb.old = p.old;
  rb.ref = p.ref;
  rb.mask = p.mask;
  rb.adv = p.adv_tok;
  rb.truncated = p.truncated;
  for (const auto& c : configs()) {
    INFO(std::string(c.name));
    const auto r = run<double>(c.o, p, 1, true, false, true);
    const double ref = grpo_ref::objective(c.o, rb, rb.lp, rb.lp);
    CHECK(r.loss == doctest::Approx(ref).epsilon(1e-12).scale(1.0));
    // central differences of the reference objective at every token of two rows (valid, padded,
    // truncated tokens; the reference holds the detached quantities fixed)
    for (long i : {0L, 2L, 4L}) {
      for (long t = 0; t < p.T; ++t) {
        const long k = i * p.T + t;
        const double fd = grpo_ref::fd(c.o, rb, k);
        INFO("row " << i << " token " << t);
        CHECK(r.grad_logp[static_cast<std::size_t>(k)] ==
              doctest::Approx(fd).epsilon(1e-6).scale(1e-6));
      }
    }
  }
}

TEST_CASE("loss fast path: float inputs within 1e-6 of the double computation" *
          doctest::test_suite("loss")) {
  // Several shapes: tails only (T < any lane width), a mix, and one long row.
  for (auto [B, T] : {std::pair<long, long>{7, 3}, {13, 203}, {4, 2111}}) {
    const problem p = make_problem(B, T, static_cast<unsigned>(B * 1000 + T));
    for (const auto& c : configs()) {
      for (int variant = 0; variant < 3; ++variant) {
        const bool per_tok = variant == 1, on_policy = variant == 2, truncate = variant != 2;
        INFO(std::string(c.name) << " B=" << B << " T=" << T << " variant " << variant);
        const auto f = run<float>(c.o, p, 1, per_tok, on_policy, truncate);
        const auto d = run<double>(c.o, p, 1, per_tok, on_policy, truncate);
        // scale of the sums: the magnitude of what is summed (losses of mixed sign cancel)
        double sc = 0;
        for (double x : d.per_token_loss) sc += std::fabs(x);
        sc = sc / static_cast<double>(B * T) + std::fabs(d.policy_loss) + std::fabs(d.kl_loss);
        CHECK(std::fabs(f.loss - d.loss) <= 1e-6 * sc);
        CHECK(std::fabs(f.policy_loss - d.policy_loss) <= 1e-6 * sc);
        CHECK(std::fabs(f.kl_loss - d.kl_loss) <= 1e-6 * sc);
        const double gs = max_abs(d.grad_logp), ps = max_abs(d.per_token_loss);
        for (std::size_t k = 0; k < d.grad_logp.size(); ++k) {
          REQUIRE(std::fabs(f.grad_logp[k] - d.grad_logp[k]) <= 1e-6 * gs);
          REQUIRE(std::fabs(f.per_token_loss[k] - d.per_token_loss[k]) <= 1e-6 * ps);
          REQUIRE((d.grad_logp[k] != 0.0 || f.grad_logp[k] == 0.0));  // masked: exactly 0
        }
        check_metrics(f.metrics, d.metrics, 1e-6);
      }
    }
  }
}

TEST_CASE("loss fast path: errors name the argument; padding values are ignored" *
          doctest::test_suite("loss")) {
  const long B = 5, T = 70;
  std::vector<float> lp(B * T, -1.f), old(B * T, -1.1f), ref(B * T, -0.9f), mask(B * T, 1.f),
      adv(B, 0.5f);
  for (long t = 60; t < T; ++t) mask[3 * T + t] = 0.f;  // padding at the end of row 3
  grpo::trl_args a;
  a.beta = 0.04;
  const auto o = grpo::from_trl(a);
  auto call = [&] {
    grpo::loss_batch<float, float> b;
    b.logp = grpo::make_view(lp.data(), {B, T});
    b.old_logp = grpo::make_view(old.data(), {B, T});
    b.ref_logp = grpo::make_view(ref.data(), {B, T});
    b.mask = grpo::make_view(mask.data(), {B, T});
    b.advantages = grpo::broadcast_rows(adv.data(), B, T);
    return grpo::compute_loss(o, b);
  };
  auto expect = [&](const char* arg) {
    try {
      call();
      FAIL("no error for " << std::string(arg));
    } catch (const grpo::error& e) {
      CHECK(e.code() == grpo::errc::bad_value);
      CHECK(std::string(e.what()).find(arg) != std::string::npos);
    }
  };
  // NaN / inf on padding: no error, gradient there exactly 0, and the result is the clean one
  // (same loss, gradient and metrics bit for bit: padding values never enter a sum).
  const auto clean = call();
  CHECK(std::isfinite(clean.loss));
  lp[3 * T + 65] = std::numeric_limits<float>::quiet_NaN();
  ref[3 * T + 66] = std::numeric_limits<float>::infinity();
  const auto r = call();
  CHECK(r.loss == clean.loss);
  CHECK(r.kl_loss == clean.kl_loss);
  CHECK(r.grad_logp == clean.grad_logp);
  CHECK(r.metrics.ratio.mean() == clean.metrics.ratio.mean());
  CHECK(r.metrics.kl.mean() == clean.metrics.kl.mean());
  CHECK(r.grad_logp[static_cast<std::size_t>(3 * T + 65)] == 0.0);
  CHECK(r.grad_logp[static_cast<std::size_t>(3 * T + 66)] == 0.0);
  // on valid tokens (one inside a vector body, one in a row tail)
  lp[1 * T + 5] = std::numeric_limits<float>::quiet_NaN();
  expect("logp");
  lp[1 * T + 5] = -1.f;
  old[4 * T + 69] = -std::numeric_limits<float>::infinity();
  expect("old_logp");
  old[4 * T + 69] = -1.1f;
  ref[0 * T + 17] = std::numeric_limits<float>::quiet_NaN();
  expect("ref_logp");
  ref[0 * T + 17] = -0.9f;
  adv[2] = std::numeric_limits<float>::infinity();
  expect("advantages");
  adv[2] = 0.5f;
  mask[2 * T + 9] = -1.f;
  expect("mask");
  mask[2 * T + 9] = std::numeric_limits<float>::quiet_NaN();
  expect("mask");
  mask[2 * T + 9] = 1.f;
  CHECK(call().loss == r.loss);  // every valid value restored: the clean loss again
  // Pass 1's range test (folded into the row sum and a lane minimum, checked again entry by entry
  // when flagged): every entry outside [0, FLT_MAX] is named, in a vector body and in a row tail.
  const float inf = std::numeric_limits<float>::infinity();
  for (const float bad : {inf, -inf, -1e-30f, -std::numeric_limits<float>::max()})
    for (const long t : {9L, 67L}) {
      INFO("mask entry " << bad << " at t = " << t);
      mask[static_cast<std::size_t>(2 * T + t)] = bad;
      expect("mask");
      mask[static_cast<std::size_t>(2 * T + t)] = 1.f;
    }
  // -0 is a valid entry (-0 >= 0), a padding token like +0: the same result bit for bit.
  mask[2 * T + 9] = 0.0f;
  const auto pos0 = call();
  mask[2 * T + 9] = -0.0f;
  const auto neg0 = call();
  CHECK(neg0.loss == pos0.loss);
  CHECK(neg0.grad_logp == pos0.grad_logp);
  CHECK(neg0.metrics.tokens == pos0.metrics.tokens);
  mask[2 * T + 9] = 1.f;
  // FLT_MAX is a valid entry: two in one lane (8 and 16 lanes) overflow the float row sum, which
  // is reported as such by the aggregation (aggregate.hpp), not as a bad entry.
  mask[2 * T + 9] = std::numeric_limits<float>::max();
  mask[2 * T + 41] = std::numeric_limits<float>::max();
  try {
    (void)call();
    FAIL("no error for a row sum past FLT_MAX");
  } catch (const grpo::error& e) {
    CHECK(std::string(e.what()).find("mask: row sums must be finite") != std::string::npos);
  }
  mask[2 * T + 9] = mask[2 * T + 41] = 1.f;
  CHECK(call().loss == r.loss);
}

TEST_CASE("loss fast path: a lean float row whose exp arguments leave [-87, 88] equals the "
          "general row" * doctest::test_suite("loss")) {
  // The lean packet rows (binary right-padded masks, float, gradient only) run the ratio's,
  // k3's and SAPO's exp without a range test and check the arguments' extrema once per row; a
  // row out of range is rerun on the general row (requesting the per-token loss selects it for
  // every row). Rows: 0 a ratio e^-90 (subnormal), 1 a k3 argument -95, 2 a SAPO argument
  // -|tau (r - 1)| = -147 (r = e^5), 3 in range with out-of-range values on masked lanes only.
  // On the baseline path both calls take the xsimd rows: equal as well.
  const long B = 4, T = 203;
  std::vector<float> lp(B * T), old(B * T), ref(B * T), mask(B * T), adv = {0.7f, -0.4f, 1.1f, -0.9f};
  std::mt19937 g(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (long i = 0; i < B; ++i)
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      lp[k] = -2.f + u(g);
      old[k] = lp[k] - 0.3f * u(g);
      ref[k] = lp[k] - 0.3f * u(g);
      mask[k] = t < T - 9 * i - 5 ? 1.f : 0.f;
    }
  old[0 * T + 21] = lp[0 * T + 21] + 90.f;
  ref[1 * T + 50] = lp[1 * T + 50] - 95.f;
  old[2 * T + 77] = lp[2 * T + 77] - 5.f;
  old[3 * T + T - 2] = lp[3 * T + T - 2] + 200.f;  // padding (mask 0): never read as a token
  ref[3 * T + T - 1] = 1e30f;
  for (const auto kind : {grpo::policy_loss_kind::ppo_clip, grpo::policy_loss_kind::sapo,
                          grpo::policy_loss_kind::cispo, grpo::policy_loss_kind::reinforce}) {
    grpo::trl_args a;
    a.loss_type = "dapo";
    a.beta = 0.04;
    a.epsilon_high = 0.28;
    grpo::loss_options o = grpo::from_trl(a);
    o.policy.kind = kind;
    grpo::loss_batch<float, float> b;
    b.logp = grpo::make_view(lp.data(), {B, T});
    b.old_logp = grpo::make_view(old.data(), {B, T});
    b.ref_logp = grpo::make_view(ref.data(), {B, T});
    b.mask = grpo::make_view(mask.data(), {B, T});
    b.advantages = grpo::broadcast_rows(adv.data(), B, T);
    std::vector<float> g1(B * T, 7.f), g2(B * T, 9.f), ptl(B * T);
    grpo::loss_outputs<float> lean, general;
    lean.grad_logp = grpo::make_view(g1.data(), {B, T});
    general.grad_logp = grpo::make_view(g2.data(), {B, T});
    general.per_token_loss = grpo::make_view(ptl.data(), {B, T});
    const auto r1 = grpo::compute_loss_into(o, b, lean);
    const auto r2 = grpo::compute_loss_into(o, b, general);
    INFO("kind " << static_cast<int>(kind));
    CHECK(r1.engine_used == r2.engine_used);
    CHECK(same(r1.loss, r2.loss));
    CHECK(same(r1.policy_loss, r2.policy_loss));
    CHECK(same(r1.kl_loss, r2.kl_loss));
    const auto& m1 = r1.metrics;
    const auto& m2 = r2.metrics;
    for (const auto& [x, y] : {std::pair{&m1.clip_low, &m2.clip_low}, {&m1.clip_high, &m2.clip_high},
                               {&m1.weight_clip, &m2.weight_clip}, {&m1.approx_kl, &m2.approx_kl},
                               {&m1.ratio, &m2.ratio}, {&m1.advantage, &m2.advantage},
                               {&m1.kl, &m2.kl}}) {
      CHECK(same(x->sum, y->sum));
      CHECK(same(x->sum_sq, y->sum_sq));
      CHECK(same(x->weight, y->weight));
      CHECK(same(x->min, y->min));
      CHECK(same(x->max, y->max));
    }
    int differ = 0;
    for (std::size_t k = 0; k < g1.size(); ++k) differ += same(g1[k], g2[k]) ? 0 : 1;
    CHECK(differ == 0);
    CHECK(std::isfinite(r1.loss));
    // the out-of-range tokens' gradients are the exact edges' (finite, e.g. k3's 1 - e^-95 = 1)
    CHECK(std::isfinite(g1[0 * T + 21]));
    CHECK(std::isfinite(g1[1 * T + 50]));
    CHECK(std::isfinite(g1[2 * T + 77]));
    CHECK(g1[3 * T + T - 1] == 0.f);
  }
}

namespace {

/// One row segment of n tokens placed at offset `pre` inside a longer row (pre + n + post tokens),
/// every value and mask entry drawn afresh: the inputs of both calls.
template <class E>
struct shifted_row {
  std::vector<E> lp, old, ref, adv, mask, ent;
  shifted_row(index_t len, unsigned seed) {
    std::mt19937 g(seed);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    for (index_t t = 0; t < len; ++t) {
      lp.push_back(E(-2.0 + u(g)));
      old.push_back(E(static_cast<double>(lp.back()) - 0.4 * u(g)));  // through both clip edges
      ref.push_back(E(static_cast<double>(lp.back()) - 0.5 * u(g)));
      adv.push_back(E(1.5 * u(g)));
      ent.push_back(E(2.0 + 2.0 * u(g)));
      const double v = u(g);
      mask.push_back(E(v < -0.6 ? 0.0 : (v < -0.3 ? 0.5 : 1.0)));  // holes, fractional weights
    }
  }
};

/// The per-token outputs of compute_loss_into on the [1, n] row at `off` of r (token_sum, scale
/// 1: every row factor is 1 whatever the row's mask, so the tokens' outputs are comparable).
template <class E>
struct row_outputs {
  std::vector<E> g, ptl, ge;
  grpo::loss_engine engine{};
};
template <class E>
row_outputs<E> run_segment(const grpo::loss_options& o, const shifted_row<E>& r, index_t off,
                           index_t n, bool per_tok_adv, bool want_ptl, bool entropy) {
  grpo::loss_batch<E, E> b;
  b.logp = grpo::make_view(r.lp.data() + off, {1, n});
  b.old_logp = grpo::make_view(r.old.data() + off, {1, n});
  b.ref_logp = grpo::make_view(r.ref.data() + off, {1, n});
  b.mask = grpo::make_view(r.mask.data() + off, {1, n});
  b.advantages = per_tok_adv ? grpo::make_view(r.adv.data() + off, {1, n})
                             : grpo::broadcast_rows(r.adv.data(), 1, n);
  if (entropy) b.entropy = grpo::make_view(r.ent.data() + off, {1, n});
  row_outputs<E> out;
  out.g.assign(static_cast<std::size_t>(n), E(7));
  out.ptl.assign(static_cast<std::size_t>(n), E(7));
  out.ge.assign(static_cast<std::size_t>(n), E(7));
  grpo::loss_outputs<E> lo;
  lo.grad_logp = grpo::make_view(out.g.data(), {1, n});
  if (want_ptl) lo.per_token_loss = grpo::make_view(out.ptl.data(), {1, n});
  lo.grad_entropy = grpo::make_view(out.ge.data(), {1, n});
  out.engine = grpo::compute_loss_into(o, b, lo).engine_used;
  return out;
}

/// Every token of the segment [pre, pre + n) has the same gradient, per-token loss and dL/dH bits
/// evaluated as a [1, n] row (a chunk of the fused entry) and inside the whole row of
/// pre + n + post tokens, for n = 1 .. 3 x 16 + 1 (16: the widest lane count of any path) and
/// several offsets; returns the number of differing tokens.
template <class E>
int position_mismatches(const grpo::loss_options& o, bool per_tok_adv, bool want_ptl, bool entropy,
                        unsigned seed) {
  int bad = 0;
  for (index_t n = 1; n <= 49; ++n)
    for (index_t pre : {index_t(1), index_t(2), index_t(3), index_t(5), index_t(13)}) {
      const index_t post = (n + pre) % 7 + 1, len = pre + n + post;
      const shifted_row<E> r(len, seed + static_cast<unsigned>(n * 64 + pre));
      const auto whole = run_segment(o, r, 0, len, per_tok_adv, want_ptl, entropy);
      const auto part = run_segment(o, r, pre, n, per_tok_adv, want_ptl, entropy);
      CHECK(whole.engine == grpo::loss_engine::token_rows_simd);
      CHECK(part.engine == grpo::loss_engine::token_rows_simd);
      for (index_t k = 0; k < n; ++k) {
        const auto w = static_cast<std::size_t>(pre + k), p = static_cast<std::size_t>(k);
        const bool differ = !same(whole.g[w], part.g[p]) ||
                            (want_ptl && !same(whole.ptl[w], part.ptl[p])) ||
                            !same(whole.ge[w], part.ge[p]);
        bad += differ ? 1 : 0;
      }
    }
  return bad;
}

}  // namespace

TEST_CASE("loss fast path: a token's outputs do not depend on its position in the row" *
          doctest::test_suite("loss")) {
  // The vectorised rows give a token the same operations wherever it sits (full batches, the
  // padded tail step of the lane-generic rows, the masked tail step of the packet rows): shifted
  // inside a longer row, or cut into chunks (the fused entry's loss_chunk_plan), its outputs are
  // bitwise the same. Every token-level kind x KL x per-token loss on / off x per-token /
  // per-sequence advantages x entropy term (bonus, metric only) x row lengths 1 .. 49, float and
  // double, on this CPU's path and on baseline (the lane-generic rows for float too).
  std::vector<grpo::isa> paths = {grpo::active_isa()};
  if (paths[0] != grpo::isa::baseline) paths.push_back(grpo::isa::baseline);
  int cases = 0;
  for (const grpo::isa path : paths) {
    const grpo::scoped_isa_limit pin(path);
    for (const auto& c : configs()) {
      grpo::loss_options o = c.o;
      o.agg = grpo::agg_options{};
      o.agg.mode = grpo::agg_mode::token_sum;
      o.kl_agg.reset();
      o.entropy_agg = o.agg;
      for (int variant = 0; variant < 4; ++variant) {
        const bool ptl = variant & 1, per_tok = variant & 2;
        for (double ent : {-1.0, 0.0, 0.01}) {  // -1: no entropy input
          o.entropy_coef = ent > 0 ? ent : 0.0;
          INFO(std::string(c.name)
               << " path " << std::string(grpo::isa_name(path)) << " per-token loss " << ptl
               << " per-token A " << per_tok << " entropy " << ent);
          CHECK(position_mismatches<float>(o, per_tok, ptl, ent >= 0, 11) == 0);
          CHECK(position_mismatches<double>(o, per_tok, ptl, ent >= 0, 23) == 0);
          ++cases;
        }
      }
    }
  }
  CHECK(cases == static_cast<int>(paths.size() * configs().size()) * 12);
}
