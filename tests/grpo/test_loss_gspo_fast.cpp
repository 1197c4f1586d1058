// SPDX-License-Identifier: Apache-2.0
// The sequence-level ratio path of grpo::compute_loss_into (GSPO, TRL importance_sampling_level
// "sequence" / verl "gspo", and GSPO-token with PPO clip: the packet rows of
// loss/kernels/sequence_row.ipp for float inputs on the avx2 / avx512 paths (run-time dispatch;
// ctest reruns this file with GRPO_ISA=baseline: the xsimd rows), its scalar double twin otherwise):
//   1. double inputs: equal to the general engine (forced by a non-unit stride) to 1e-12: loss,
//      gradient, per-token loss and every metric (TRL's per-sequence clip metrics included);
//   2. double inputs: the naive reference of tests/support/reference.hpp (value) and its central
//      finite differences (gradient, spread term included);
//   3. float inputs: within 1e-6 (relative) of the double computation;
//   4. binary masks with holes, right padding, fully masked and truncated rows, weighted masks,
//      per-sequence and per-token advantages, on-policy batches, KL on / off, bias-corrected KL,
//      KL clamps, log-ratio clamp, delta, dual clip, every aggregation;
//   5. errors (non-finite inputs on valid tokens) keep their ids and argument names; non-finite
//      values on padding are ignored; a float overflow of the kernel's sums is recomputed exactly.
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>
#include <support/reference.hpp>

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using grpo::index_t;

/// One random batch in double whose values are float-representable, so the float and double runs
/// see identical inputs.
struct problem {
  long B = 0, T = 0;
  std::vector<double> lp, old, ref, mask, adv_row, adv_tok;
  std::vector<unsigned char> truncated;
};

/// weighted: mask entries in {0, 0.5, 1, 2} instead of {0, 1}; holes: zeros inside the valid part.
problem make_problem(long B, long T, unsigned seed, bool weighted, bool holes) {
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
  if (B > 2) p.truncated[2] = 1;  // one truncated row
  for (long i = 0; i < B; ++i) {
    p.adv_row[static_cast<std::size_t>(i)] = static_cast<float>(1.5 * u(g));
    if (i == 3) p.adv_row[3] = 0.0;  // a zero advantage (ties of the clipped surrogate)
    // row 1 fully masked; the others 1..T valid tokens
    const long len =
        i == 1 ? 0 : 1 + static_cast<long>((u(g) + 1.0) * 0.5 * static_cast<double>(T - 1));
    // per-row spread of the log ratio: small (inside the clip band) to large (clipped rows)
    const double spread = 0.05 + 0.6 * (0.5 + 0.5 * u(g));
    const double shift = 0.25 * u(g);
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      p.lp[k] = static_cast<float>(-2.0 + u(g));
      p.old[k] = static_cast<float>(p.lp[k] - shift - spread * u(g));
      p.ref[k] = static_cast<float>(p.lp[k] - 0.5 * u(g));
      double m = t < len ? 1.0 : 0.0;
      if (holes && (t % 7) == 3) m = 0.0;
      if (weighted && m != 0.0) m = (t % 3 == 0) ? 0.5 : ((t % 5 == 0) ? 2.0 : 1.0);
      p.mask[k] = m;
      p.adv_tok[k] = static_cast<float>(1.5 * u(g));
    }
  }
  return p;
}

/// v as E with stride - 1 zeros after each value (a strided view's storage).
template <class E>
std::vector<E> strided_copy(const std::vector<double>& v, int stride) {
  std::vector<E> s(v.size() * static_cast<std::size_t>(stride), E(0));
  for (std::size_t k = 0; k < v.size(); ++k) s[k * static_cast<std::size_t>(stride)] = E(v[k]);
  return s;
}

/// compute_loss_into on inputs of type E, outputs double. stride 2 (a copy with gaps) forces the
/// general engine; per_tok selects token-level advantages; on_policy drops old_logp.
template <class E>
grpo::loss_result run(const grpo::loss_options& o, const problem& p, int stride, bool per_tok,
                      bool on_policy, bool truncate) {
  const long B = p.B, T = p.T;
  auto spread = [stride](const std::vector<double>& v) { return strided_copy<E>(v, stride); };
  const auto lp = spread(p.lp), old = spread(p.old), ref = spread(p.ref), mask = spread(p.mask),
             adv = spread(p.adv_tok);
  const std::vector<E> adv_row(p.adv_row.begin(), p.adv_row.end());
  auto view = [&](const std::vector<E>& v) {
    return grpo::make_view(v.data(), {B, T}, {T * stride, stride});
  };
  grpo::loss_batch<E, E> b;
  b.logp = view(lp);
  if (!on_policy) b.old_logp = view(old);
  if (o.kl_coef != 0.0) b.ref_logp = view(ref);
  b.mask = view(mask);
  b.advantages = per_tok ? view(adv) : grpo::broadcast_rows(adv_row.data(), B, T);
  if (truncate) b.truncated = std::span<const unsigned char>(p.truncated);
  auto r = grpo::compute_loss(o, b);
  // The path under test, as reported (not inferred from today's dispatch rules).
  CHECK(r.engine_used ==
        (stride == 1 ? grpo::loss_engine::sequence_rows : grpo::loss_engine::general));
  return r;
}

struct config {
  std::string name;
  grpo::loss_options o;
};

std::vector<config> configs() {
  std::vector<config> cs;
  auto trl = [](const char* loss, double beta, const char* level) {
    grpo::trl_args a;
    a.loss_type = loss;
    a.beta = beta;
    a.epsilon_high = 0.28;
    a.importance_sampling_level = level;
    return grpo::from_trl(a);
  };
  for (const char* level : {"sequence", "sequence_token"}) {
    const std::string L = level;
    cs.push_back({L + " dapo + k3 (TRL)", trl("dapo", 0.04, level)});
    cs.push_back({L + " grpo no KL", trl("grpo", 0.0, level)});
    cs.push_back({L + " dr_grpo + k3", trl("dr_grpo", 0.1, level)});
    {
      auto o = trl("dapo", 0.04, level);
      o.kl_bias_correction = true;
      o.policy.delta = 1.1;
      cs.push_back({L + " delta + bias-corrected KL", o});
    }
    {
      auto o = trl("bnpo", 0.0, level);
      o.policy.log_ratio_max = 0.05;  // a binding clamp of the sequence log ratio (GSPO: max 10)
      cs.push_back({L + " bnpo, binding log-ratio clamp", o});
    }
    {
      grpo::loss_options o;  // verl-like: dual clip, clamps, low_var_kl, seq-mean-token-mean
      o.policy.level = L == "sequence" ? grpo::is_level::sequence : grpo::is_level::sequence_token;
      o.policy.eps_low = 3e-4;
      o.policy.eps_high = 4e-4;
      o.policy.dual_clip_c = 1.05;
      o.policy.log_ratio_min = -20;
      o.policy.log_ratio_max = 20;
      o.kl_coef = 0.05;
      o.kl.estimator = grpo::kl_estimator::k3;
      o.kl.inner_clamp = 20;
      o.kl.outer_clamp = 0.1;
      o.agg.mode = grpo::agg_mode::seq_mean_token_mean;
      cs.push_back({L + " verl gspo dual clip + low_var_kl, seq-mean-token-mean", o});
      o.kl.estimator = grpo::kl_estimator::k1;
      o.kl.straight_through = true;
      o.kl_bias_correction = true;
      o.agg.mode = grpo::agg_mode::token_sum;
      cs.push_back({L + " k1+ straight-through, bias-corrected, token-sum", o});
      o.kl.estimator = grpo::kl_estimator::abs;
      o.kl.straight_through = false;
      o.kl_bias_correction = false;
      o.kl.outer_clamp = 0.3;
      o.agg.mode = grpo::agg_mode::seq_mean_token_sum;
      cs.push_back({L + " abs KL with outer clamp, seq-mean-token-sum", o});
      o.kl.estimator = grpo::kl_estimator::k2;
      o.kl_agg = grpo::agg_options{};  // KL token-mean, policy seq-mean
      cs.push_back({L + " k2 KL with its own aggregation", o});
    }
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

/// The clip metrics must actually be exercised (some rows / tokens clipped, some not).
bool clips_seen(const grpo::loss_metrics& m) {
  return m.clip_region.sum > 0 && m.clip_region.sum < m.clip_region.weight;
}

}  // namespace

TEST_CASE("GSPO path: double equals the general engine" * doctest::test_suite("loss")) {
  // T = 203: not a multiple of 16; T = 700: more than one flush of the float lane sums.
  for (auto [T, weighted, holes] : {std::tuple<long, bool, bool>{203, false, false},
                                    {203, false, true},
                                    {203, true, true},
                                    {700, false, false}}) {
    const problem p =
        make_problem(9, T, static_cast<unsigned>(T + 10 * weighted + holes), weighted, holes);
    int clipped = 0;
    for (const auto& c : configs()) {
      for (int variant = 0; variant < 3; ++variant) {
        const bool per_tok = variant == 1, on_policy = variant == 2, truncate = variant != 2;
        INFO(c.name << " T=" << T << " weighted " << weighted << " holes " << holes << " variant "
                    << variant);
        const auto v = run<double>(c.o, p, 1, per_tok, on_policy, truncate);
        const auto s = run<double>(c.o, p, 2, per_tok, on_policy, truncate);
        const double sc = std::fabs(s.policy_loss) + std::fabs(s.kl_loss) + 1e-300;
        CHECK(std::fabs(v.loss - s.loss) <= 1e-12 * sc);
        CHECK(std::fabs(v.policy_loss - s.policy_loss) <= 1e-12 * sc);
        CHECK(std::fabs(v.kl_loss - s.kl_loss) <= 1e-12 * sc);
        const double gs = max_abs(s.grad_logp), ps = max_abs(s.per_token_loss);
        for (std::size_t k = 0; k < s.grad_logp.size(); ++k) {
          REQUIRE(std::fabs(v.grad_logp[k] - s.grad_logp[k]) <= 1e-12 * gs);
          REQUIRE(std::fabs(v.per_token_loss[k] - s.per_token_loss[k]) <= 1e-12 * ps);
          REQUIRE(v.grad_entropy[k] == 0.0);
          REQUIRE((s.grad_logp[k] != 0.0 || v.grad_logp[k] == 0.0));
        }
        check_metrics(v.metrics, s.metrics, 1e-12);
        clipped += clips_seen(s.metrics) ? 1 : 0;
      }
    }
    CHECK(clipped > 10);
  }
}

TEST_CASE("GSPO path: double matches the naive reference and finite differences" *
          doctest::test_suite("loss")) {
  for (bool weighted : {false, true}) {
    const problem p = make_problem(6, 37, 5, weighted, true);
    grpo_ref::batch rb;
    rb.B = p.B;
    rb.T = p.T;
    rb.lp = p.lp;
    rb.old = p.old;
    rb.ref = p.ref;
    rb.mask = p.mask;
    rb.truncated = p.truncated;
    for (bool per_tok : {false, true}) {
      if (per_tok) {
        rb.adv = p.adv_tok;
      } else {
        rb.adv.assign(p.lp.size(), 0.0);
        for (long i = 0; i < p.B; ++i)
          for (long t = 0; t < p.T; ++t)
            rb.adv[static_cast<std::size_t>(i * p.T + t)] = p.adv_row[static_cast<std::size_t>(i)];
      }
      for (const auto& c : configs()) {
        INFO(c.name << " weighted " << weighted << " per_tok " << per_tok);
        const auto r = run<double>(c.o, p, 1, per_tok, false, true);
        const double ref = grpo_ref::objective(c.o, rb, rb.lp, rb.lp);
        CHECK(r.loss == doctest::Approx(ref).epsilon(1e-12).scale(1.0));
        // Central differences (h = 1e-6) of the reference objective at every token of four rows
        // (valid, fully masked, truncated: the spread reaches every valid token of a row). Their
        // rounding error is about (2.2e-16 / h) times the sum of the magnitudes of the
        // objective's terms, bounded by sum m |per-token loss| (every aggregation factor is
        // <= 1): 1e-9 of that sum (a few roundings per term), plus 1e-6 relative.
        double terms = 0.0;
        for (std::size_t k = 0; k < p.mask.size(); ++k)
          terms += p.mask[k] * std::fabs(r.per_token_loss[k]);
        const double fd_abs = 1e-9 * (1.0 + terms);
        for (long i : {0L, 1L, 2L, 4L}) {
          for (long t = 0; t < p.T; ++t) {
            const long k = i * p.T + t;
            const double fd = grpo_ref::fd(c.o, rb, k);
            const double g = r.grad_logp[static_cast<std::size_t>(k)];
            INFO("row " << i << " token " << t << " grad " << g << " fd " << fd);
            CHECK(std::fabs(g - fd) <= 1e-6 * std::fabs(fd) + fd_abs);
          }
        }
      }
    }
  }
}

TEST_CASE("GSPO path: float inputs within 1e-6 of the double computation" *
          doctest::test_suite("loss")) {
  // Several shapes: tails only (T < 16), a mix, one long row (several flushes).
  for (auto [B, T] : {std::pair<long, long>{7, 3}, {13, 203}, {4, 2111}}) {
    for (int mk = 0; mk < 3; ++mk) {
      const bool weighted = mk == 2, holes = mk >= 1;
      const problem p =
          make_problem(B, T, static_cast<unsigned>(B * 1000 + T + mk), weighted, holes);
      for (const auto& c : configs()) {
        for (int variant = 0; variant < 3; ++variant) {
          const bool per_tok = variant == 1, on_policy = variant == 2, truncate = variant != 2;
          INFO(c.name << " B=" << B << " T=" << T << " mask " << mk << " variant " << variant);
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
}

TEST_CASE("GSPO path: float outputs without per-token loss (the lean kernels)" *
          doctest::test_suite("loss")) {
  // compute_loss always asks for the per-token loss; compute_loss_into with only the gradient
  // runs the kernels that stop at the row's last valid token (plain k3 with exp_lo).
  const problem p = make_problem(11, 301, 3, false, false);
  for (const auto& c : configs()) {
    for (bool per_tok : {false, true}) {
      INFO(c.name << " per_tok " << per_tok);
      const long B = p.B, T = p.T;
      const std::vector<float> lp(p.lp.begin(), p.lp.end()), old(p.old.begin(), p.old.end()),
          ref(p.ref.begin(), p.ref.end()), mask(p.mask.begin(), p.mask.end()),
          at(p.adv_tok.begin(), p.adv_tok.end()), ar(p.adv_row.begin(), p.adv_row.end());
      grpo::loss_batch<float, float> b;
      b.logp = grpo::make_view(lp.data(), {B, T});
      b.old_logp = grpo::make_view(old.data(), {B, T});
      if (c.o.kl_coef != 0.0) b.ref_logp = grpo::make_view(ref.data(), {B, T});
      b.mask = grpo::make_view(mask.data(), {B, T});
      b.advantages =
          per_tok ? grpo::make_view(at.data(), {B, T}) : grpo::broadcast_rows(ar.data(), B, T);
      b.truncated = std::span<const unsigned char>(p.truncated);
      std::vector<float> g(static_cast<std::size_t>(B * T), 7.f);
      grpo::loss_outputs<float> out;
      out.grad_logp = grpo::make_view(g.data(), {B, T});
      const auto r = grpo::compute_loss_into(c.o, b, out);
      const auto d = run<double>(c.o, p, 2, per_tok, false, true);  // general engine, double
      const double sc = std::fabs(d.policy_loss) + std::fabs(d.kl_loss) + 1e-30;
      CHECK(std::fabs(r.loss - d.loss) <= 1e-6 * sc);
      const double gs = max_abs(d.grad_logp);
      for (std::size_t k = 0; k < g.size(); ++k) {
        REQUIRE(std::fabs(static_cast<double>(g[k]) - d.grad_logp[k]) <= 1e-6 * gs);
        REQUIRE((d.grad_logp[k] != 0.0 || g[k] == 0.f));
      }
      check_metrics(r.metrics, d.metrics, 1e-6);
    }
  }
}

TEST_CASE("GSPO path: errors name the argument; padding values are ignored" *
          doctest::test_suite("loss")) {
  const long B = 5, T = 70;
  std::vector<float> lp(B * T, -1.f), old(B * T, -1.1f), ref(B * T, -0.9f), mask(B * T, 1.f),
      adv(B, 0.5f);
  for (long t = 60; t < T; ++t) mask[3 * T + t] = 0.f;  // padding at the end of row 3
  grpo::trl_args a;
  a.beta = 0.04;
  a.importance_sampling_level = "sequence";
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
  old[3 * T + 67] = -std::numeric_limits<float>::infinity();
  const auto r = call();
  CHECK(r.loss == clean.loss);
  CHECK(r.kl_loss == clean.kl_loss);
  CHECK(r.grad_logp == clean.grad_logp);
  CHECK(r.metrics.ratio.mean() == clean.metrics.ratio.mean());
  for (long t = 60; t < T; ++t) CHECK(r.grad_logp[static_cast<std::size_t>(3 * T + t)] == 0.0);
  // on valid tokens (one inside a vector body, one in a row tail)
  lp[1 * T + 5] = std::numeric_limits<float>::quiet_NaN();
  expect("logp");
  lp[1 * T + 5] = -1.f;
  old[4 * T + 69] = -std::numeric_limits<float>::infinity();
  expect("old_logp");
  old[4 * T + 69] = -1.1f;
  ref[0 * T + 17] = std::numeric_limits<float>::quiet_NaN();
  expect("ref_logp");
  ref[0 * T + 17] = -std::numeric_limits<float>::infinity();
  expect("ref_logp");
  ref[0 * T + 17] = -0.9f;
  adv[2] = std::numeric_limits<float>::infinity();
  expect("advantages");
  adv[2] = 0.5f;
  mask[2 * T + 9] = -1.f;
  expect("mask");
  mask[2 * T + 9] = 1.f;
  CHECK(call().loss == r.loss);  // every valid value restored: the clean loss again
  // Finite inputs whose float square of the log ratio overflows (x = -1e20 - 1 on one valid
  // token): the AVX-512 kernel flags the row and the scalar twin recomputes it in double, as the
  // general engine (r = 0 for that row: every output finite). Everything is compared with the
  // general engine on the same values (column-major double copies force it).
  old[4 * T + 3] = 1e20f;
  const auto big = call();
  std::vector<double> lpc(lp.size()), oldc(lp.size()), refc(lp.size()), maskc(lp.size());
  for (long i = 0; i < B; ++i)
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t), c = static_cast<std::size_t>(t * B + i);
      lpc[c] = lp[k];
      oldc[c] = old[k];
      refc[c] = ref[k];
      maskc[c] = mask[k];
    }
  const std::vector<double> advd(adv.begin(), adv.end());
  grpo::loss_batch<double, double> bd;
  bd.logp = grpo::make_view(lpc.data(), {B, T}, {1, B});
  bd.old_logp = grpo::make_view(oldc.data(), {B, T}, {1, B});
  bd.ref_logp = grpo::make_view(refc.data(), {B, T}, {1, B});
  bd.mask = grpo::make_view(maskc.data(), {B, T}, {1, B});
  bd.advantages = grpo::broadcast_rows(advd.data(), B, T);
  const auto gen = grpo::compute_loss(o, bd);
  REQUIRE(std::isfinite(gen.loss));
  CHECK(big.loss == doctest::Approx(gen.loss).epsilon(1e-6));
  double ps = 0.0;
  for (double x : gen.per_token_loss)
    if (std::isfinite(x)) ps = grpo_test::scale_max(ps, std::fabs(x));
  const double gs = max_abs(gen.grad_logp);
  for (std::size_t k = 0; k < gen.grad_logp.size(); ++k) {  // (outputs are row-major)
    REQUIRE(std::fabs(big.grad_logp[k] - gen.grad_logp[k]) <= 1e-6 * gs);
    const double a = big.per_token_loss[k], b = gen.per_token_loss[k];
    // (padding of row 3 holds NaN / inf inputs: the per-token loss there is NaN in both)
    REQUIRE(((std::isnan(a) && std::isnan(b)) || a == b || std::fabs(a - b) <= 1e-6 * ps));
  }
  check_metrics(big.metrics, gen.metrics, 1e-6);
  CHECK(gen.metrics.ratio.min == 0.0);  // the flagged row's ratio
}

TEST_CASE("GSPO path: float outputs, streaming stores on unaligned rows, integer masks" *
          doctest::test_suite("loss")) {
  // B * T * 4 bytes >= GRPO_LOSS_STREAM_STORE_BYTES (16 MiB): the AVX-512 kernel writes the
  // gradient with streaming stores from each row's first 64-byte boundary (T = 4103: every row
  // starts at a different alignment). Compared with the double computation of the same inputs.
  const long B = 1040, T = 4103;
  const problem p = make_problem(B, T, 99, false, false);
  const std::vector<float> lp(p.lp.begin(), p.lp.end()), old(p.old.begin(), p.old.end()),
      ref(p.ref.begin(), p.ref.end()), mask(p.mask.begin(), p.mask.end()),
      at(p.adv_tok.begin(), p.adv_tok.end()), ar(p.adv_row.begin(), p.adv_row.end());
  const std::vector<int> imask(p.mask.begin(), p.mask.end());
  for (const auto& c : configs()) {
    // A KL outer clamp decides per token: over 4M tokens some k lie within float rounding of the
    // clamp edge and flip between the float and double runs (a gradient jump of s_kl c k', about
    // 1e-8 here). Those configurations are covered by the smaller shapes above.
    if (c.o.kl.outer_clamp > 0) continue;
    for (int variant = 0; variant < 4; ++variant) {
      const bool per_tok = variant % 2 == 1, want_ptl = variant >= 2;
      INFO(c.name << " variant " << variant);
      grpo::loss_batch<float, float> b;
      b.logp = grpo::make_view(lp.data(), {B, T});
      b.old_logp = grpo::make_view(old.data(), {B, T});
      if (c.o.kl_coef != 0.0) b.ref_logp = grpo::make_view(ref.data(), {B, T});
      b.mask = grpo::make_view(mask.data(), {B, T});
      b.advantages =
          per_tok ? grpo::make_view(at.data(), {B, T}) : grpo::broadcast_rows(ar.data(), B, T);
      b.truncated = std::span<const unsigned char>(p.truncated);
      std::vector<float> g(static_cast<std::size_t>(B * T), 7.f), ptl(g.size(), 7.f);
      grpo::loss_outputs<float> out;
      out.grad_logp = grpo::make_view(g.data(), {B, T});
      if (want_ptl) out.per_token_loss = grpo::make_view(ptl.data(), {B, T});
      const auto r = grpo::compute_loss_into(c.o, b, out);
      const auto d = run<double>(c.o, p, 1, per_tok, false, true);
      // scale of the sums: the magnitude of what is summed (losses of mixed sign cancel)
      double sc = 0;
      for (double x : d.per_token_loss) sc += std::fabs(x);
      sc = sc / static_cast<double>(B * T) + std::fabs(d.policy_loss) + std::fabs(d.kl_loss);
      CHECK(std::fabs(r.loss - d.loss) <= 1e-6 * sc);
      const double gs = max_abs(d.grad_logp), ps = max_abs(d.per_token_loss);
      double g_err = 0, p_err = 0;  // (one check per quantity: 4M tokens)
      std::size_t nonzero_pad = 0, touched = 0;
      for (std::size_t k = 0; k < g.size(); ++k) {
        g_err = grpo_test::err_max(g_err, std::fabs(static_cast<double>(g[k]) - d.grad_logp[k]));
        nonzero_pad += (d.grad_logp[k] == 0.0 && g[k] != 0.f) ? 1 : 0;
        if (want_ptl)
          p_err = grpo_test::err_max(p_err,
                                     std::fabs(static_cast<double>(ptl[k]) - d.per_token_loss[k]));
        else
          touched += ptl[k] != 7.f ? 1 : 0;  // not requested: untouched
      }
      CHECK(g_err <= 1e-6 * gs);
      CHECK(p_err <= 1e-6 * ps);
      CHECK(nonzero_pad == 0);  // masked: exactly 0
      CHECK(touched == 0);
      check_metrics(r.metrics, d.metrics, 1e-6);
      // The same with an integer mask (converted per step): identical results.
      if (variant == 0) {
        grpo::loss_batch<float, int> bi;
        bi.logp = b.logp;
        bi.old_logp = b.old_logp;
        bi.ref_logp = b.ref_logp;
        bi.mask = grpo::make_view(imask.data(), {B, T});
        bi.advantages = b.advantages;
        bi.truncated = b.truncated;
        std::vector<float> gi(g.size(), 7.f);
        grpo::loss_outputs<float> oi;
        oi.grad_logp = grpo::make_view(gi.data(), {B, T});
        const auto ri = grpo::compute_loss_into(c.o, bi, oi);
        // (the row totals are double expressions that the compiler may contract into FMAs
        // differently per instantiation: equal to rounding, not necessarily bitwise)
        CHECK(ri.loss == doctest::Approx(r.loss).epsilon(1e-13));
        CHECK(ri.metrics.approx_kl.sum == doctest::Approx(r.metrics.approx_kl.sum).epsilon(1e-13));
        CHECK(ri.metrics.clip_region.sum == r.metrics.clip_region.sum);
        CHECK(ri.metrics.tokens == r.metrics.tokens);
        double gi_err = 0;
        for (std::size_t k = 0; k < g.size(); ++k)
          gi_err = grpo_test::err_max(gi_err, std::fabs(static_cast<double>(gi[k]) - g[k]) /
                                                  (std::fabs(static_cast<double>(g[k])) + 1e-30));
        CHECK(gi_err <= 1e-6);
      }
    }
  }
}

// ---- GSPO with a rollout IS weight (verl GSPO with rollout correction) -----------------------
// Float inputs on the sequence rows (packet rows on the avx2 / avx512 paths, the lane-generic rows
// on the baseline path) against the general engine in double (a stride-2 copy) on float-exact
// inputs: every output and metric (is_weight included) within 1e-6 of its scale; double inputs
// on the sequence rows (lane-generic rows, every path) within 1e-12 (docs/kernel-notes/
// sequence-rows.md). Token / sequence / seq-mask TIS x truncate / mask, the caller's is_weights,
// GSPO and GSPO-token, KL off / k3 / bias-corrected k2, four aggregations, per-row and per-token
// advantages, per-token loss on / off, T = 1, 13, 64, 300, binary / holed / fractional masks with
// a fully masked and a truncated row.
namespace {

struct tis_problem {
  problem p;
  std::vector<double> smp, isw, ent;  // (ent: token entropies, the entropy-term tests)
};

tis_problem make_tis_problem(long B, long T, unsigned seed, int mk) {
  tis_problem q;
  q.p = make_problem(B, T, seed, mk == 2, mk >= 1);
  std::mt19937 g(seed + 1);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  q.smp.resize(q.p.lp.size());
  q.isw.resize(q.p.lp.size());
  q.ent.resize(q.p.lp.size());
  for (std::size_t k = 0; k < q.smp.size(); ++k) {
    q.smp[k] = static_cast<float>(q.p.old[k] - 0.3 * u(g));
    q.isw[k] = static_cast<float>(1.0 + 0.6 * u(g));
    q.ent[k] = static_cast<float>(1.5 + 1.4 * u(g));
  }
  return q;
}

/// Flat indices of a valid token and a masked token of row i of p: the row's first valid token
/// and the first masked token after it (a hole, or the padding); both must exist.
std::pair<std::size_t, std::size_t> valid_and_masked(const problem& p, long i) {
  long valid = -1, masked = -1;
  for (long t = 0; t < p.T; ++t) {
    const double m = p.mask[static_cast<std::size_t>(i * p.T + t)];
    if (m != 0.0 && valid < 0) valid = t;
    if (m == 0.0 && valid >= 0 && masked < 0) masked = t;
  }
  REQUIRE(valid >= 0);
  REQUIRE(masked >= 0);
  return {static_cast<std::size_t>(i * p.T + valid), static_cast<std::size_t>(i * p.T + masked)};
}

/// The rollout-IS configurations: 0-2 token TIS (truncate; mask; truncate with log clamp), 3-4
/// sequence TIS (truncate with log clamp; mask), 5 seq-mask TIS, 6 the caller's is_weights.
grpo::loss_options tis_config(grpo::is_level level, int w, int kl, int agg) {
  grpo::loss_options o;
  o.policy.level = level;
  o.policy.eps_low = 3e-4;
  o.policy.eps_high = 4e-4;
  if (level == grpo::is_level::sequence_token) o.policy.eps_low = o.policy.eps_high = 0.02;
  o.kl_coef = kl == 0 ? 0.0 : 0.05;
  if (kl == 2) {
    o.kl.estimator = grpo::kl_estimator::k2;
    o.kl_bias_correction = true;
  }
  const grpo::agg_mode modes[] = {grpo::agg_mode::token_mean, grpo::agg_mode::seq_mean_token_mean,
                                  grpo::agg_mode::token_sum, grpo::agg_mode::seq_mean_token_sum};
  o.agg.mode = modes[agg % 4];
  if (w == 6) return o;
  o.tis.enabled = true;
  o.tis.c_max = 1.2;
  if (w == 1) {
    o.tis.mode = grpo::ops::tis_mode::mask;
    o.tis.c_min = 0.85;
  }
  if (w == 2) o.tis.log_clamp = 0.1;
  if (w == 3 || w == 4) {
    o.tis.sequence = true;
    o.tis.c_max = 3.0;
    o.tis.c_min = w == 4 ? 0.3 : 0.0;
    if (w == 3) o.tis.log_clamp = 2.0;
    if (w == 4) o.tis.mode = grpo::ops::tis_mode::mask;
  }
  if (w == 5) {
    o.tis.seq_mask = true;
    o.tis.c_min = 0.97;
    o.tis.c_max = 1.03;
  }
  return o;
}

/// compute_loss_into with the IS weight inputs: E inputs, double outputs; stride 2 forces the
/// general engine; want_ptl false: only the gradient (the lean kernels). ent: the entropy input
/// and dL/dH output instead of an IS weight (tis disabled: no is_weights either).
template <class E>
grpo::loss_result run_tis(const grpo::loss_options& o, const tis_problem& q, int stride,
                          bool per_tok, bool want_ptl, bool ent = false) {
  const problem& p = q.p;
  const long B = p.B, T = p.T;
  auto spread = [stride](const std::vector<double>& v) { return strided_copy<E>(v, stride); };
  const auto lp = spread(p.lp), old = spread(p.old), ref = spread(p.ref), mask = spread(p.mask),
             adv = spread(p.adv_tok), smp = spread(q.smp), isw = spread(q.isw),
             entv = spread(q.ent);
  const std::vector<E> adv_row(p.adv_row.begin(), p.adv_row.end());
  auto view = [&](const std::vector<E>& v) {
    return grpo::make_view(v.data(), {B, T}, {T * stride, stride});
  };
  grpo::loss_batch<E, E> b;
  b.logp = view(lp);
  b.old_logp = view(old);
  if (o.kl_coef != 0.0) b.ref_logp = view(ref);
  b.mask = view(mask);
  b.advantages = per_tok ? view(adv) : grpo::broadcast_rows(adv_row.data(), B, T);
  b.truncated = std::span<const unsigned char>(p.truncated);
  if (o.tis.enabled)
    b.sampler_logp = view(smp);
  else if (!ent)
    b.is_weights = view(isw);
  if (ent) b.entropy = view(entv);
  grpo::loss_result res;
  res.grad_logp.assign(static_cast<std::size_t>(B * T), 7.0);
  res.per_token_loss.assign(res.grad_logp.size(), 0.0);
  res.grad_entropy.assign(res.grad_logp.size(), 7.0);
  grpo::loss_outputs<double> out;
  out.grad_logp = grpo::make_view(res.grad_logp.data(), {B, T});
  if (want_ptl) out.per_token_loss = grpo::make_view(res.per_token_loss.data(), {B, T});
  if (ent) out.grad_entropy = grpo::make_view(res.grad_entropy.data(), {B, T});
  const grpo::loss_scalars s = grpo::compute_loss_into(o, b, out);
  res.loss = s.loss;
  res.policy_loss = s.policy_loss;
  res.kl_loss = s.kl_loss;
  res.entropy_loss = s.entropy_loss;
  res.metrics = s.metrics;
  res.engine_used = s.engine_used;
  return res;
}

/// f (float, sequence rows) against d (double, general engine): outputs and metrics to 1e-6 of
/// their scales. The sums' scale is the magnitude of what is summed, sum_i s_i sum_t m |ptl| over
/// the valid tokens (s_i: the aggregation's row factor; a weighted loss of mixed signs cancels);
/// the per-token loss's is its largest magnitude plus kl_coef (k3 = e^d - d - 1 in float loses
/// ~1e-7 e^d absolutely to cancellation where k is small).
void check_tis_pair(const grpo::loss_options& o, const problem& p, const grpo::loss_result& f,
                    const grpo::loss_result& d, bool want_ptl, double tol = 1e-6) {
  std::vector<double> n(static_cast<std::size_t>(p.B), 0.0);
  for (long i = 0; i < p.B; ++i)
    for (long t = 0; t < p.T; ++t)
      if (!p.truncated[static_cast<std::size_t>(i)])
        n[static_cast<std::size_t>(i)] += p.mask[static_cast<std::size_t>(i * p.T + t)];
  const std::vector<double> s = grpo::aggregation_row_scales(n, p.T, o.agg);
  double sc = std::fabs(d.policy_loss) + std::fabs(d.kl_loss) + 1e-12;
  for (long i = 0; i < p.B; ++i)
    for (long t = 0; t < p.T; ++t) {
      const auto k = static_cast<std::size_t>(i * p.T + t);
      if (!p.truncated[static_cast<std::size_t>(i)])
        sc += s[static_cast<std::size_t>(i)] * p.mask[k] * std::fabs(d.per_token_loss[k]);
    }
  CHECK(std::fabs(f.loss - d.loss) <= tol * sc);
  CHECK(std::fabs(f.policy_loss - d.policy_loss) <= tol * sc);
  CHECK(std::fabs(f.kl_loss - d.kl_loss) <= tol * sc);
  const double gs = max_abs(d.grad_logp) + 1e-30, ps = max_abs(d.per_token_loss) + o.kl_coef;
  double g_err = 0, p_err = 0;
  std::size_t nonzero_pad = 0;
  for (std::size_t k = 0; k < d.grad_logp.size(); ++k) {
    g_err = grpo_test::err_max(g_err, std::fabs(f.grad_logp[k] - d.grad_logp[k]));
    p_err = grpo_test::err_max(p_err, std::fabs(f.per_token_loss[k] - d.per_token_loss[k]));
    nonzero_pad += (d.grad_logp[k] == 0.0 && f.grad_logp[k] != 0.0) ? 1 : 0;
  }
  CHECK(g_err <= tol * gs);
  if (want_ptl) CHECK(p_err <= tol * ps);
  CHECK(nonzero_pad == 0);  // masked: exactly 0
  check_metrics(f.metrics, d.metrics, tol);
}

}  // namespace

TEST_CASE("GSPO + rollout IS weight: sequence rows equal the general engine (double)" *
          doctest::test_suite("loss")) {
  const auto expect_engine = grpo::loss_engine::sequence_rows;  // (every path, float and double)
  int weights_bound = 0, calls = 0;
  for (long T : {1L, 13L, 64L, 300L}) {
    for (int mk = 0; mk < 3; ++mk) {
      const tis_problem q = make_tis_problem(9, T, static_cast<unsigned>(31 * T + mk), mk);
      for (auto level : {grpo::is_level::sequence, grpo::is_level::sequence_token}) {
        for (int w = 0; w < 7; ++w) {
          for (int kl = 0; kl < 3; ++kl) {
            for (int var = 0; var < 4; ++var) {
              const bool per_tok = var % 2 == 1, want_ptl = var >= 2;
              const auto o = tis_config(level, w, kl, w + kl + var + mk);
              INFO("T " << T << " mask " << mk << " level " << int(level) << " weight " << w
                        << " kl " << kl << " variant " << var);
              const auto f = run_tis<float>(o, q, 1, per_tok, want_ptl);
              const auto d = run_tis<double>(o, q, 2, per_tok, true);
              const auto dr = run_tis<double>(o, q, 1, per_tok, want_ptl);  // lane-generic rows
              CHECK(f.engine_used == expect_engine);
              CHECK(dr.engine_used == expect_engine);
              // (T = 1: every stride is unit, so the "strided" double run takes the sequence
              // rows too; the float rows are then compared with the lane-generic double rows)
              if (T > 1) CHECK(d.engine_used == grpo::loss_engine::general);
              check_tis_pair(o, q.p, f, d, want_ptl);
              check_tis_pair(o, q.p, dr, d, want_ptl, 1e-12);
              // the weights vary and their bounds bind somewhere (else the test shows little)
              const auto& iw = d.metrics.is_weight;
              weights_bound += (iw.weight > 0 && iw.min < iw.max) ? 1 : 0;
              ++calls;
            }
          }
        }
      }
    }
  }
  CHECK(weights_bound > calls / 2);
}

TEST_CASE("GSPO + rollout IS weight: non-finite weights, rows rerun in double, errors" *
          doctest::test_suite("loss")) {
  // Float inputs (packet rows, or the lane-generic rows on the baseline path) and double inputs
  // (the lane-generic rows): the same rules.
  const auto expect_engine = grpo::loss_engine::sequence_rows;
  tis_problem q = make_tis_problem(6, 70, 5, 1);
  const auto vm = valid_and_masked(q.p, 3);
  const std::size_t kv = vm.first, km = vm.second;
  auto body = [&](auto tag, grpo::is_level level) {
    using E = decltype(tag);
    const auto oi = tis_config(level, 6, 1, 0), ot = tis_config(level, 0, 1, 0);
    INFO("level " << int(level) << (std::is_same_v<E, float> ? " float" : " double"));
    const auto clean = run_tis<E>(oi, q, 1, false, false);
    // a non-finite weight on a masked token: ignored (the loss, gradient and metrics unchanged)
    for (double bad : {std::nan(""), HUGE_VAL}) {
      q.isw[km] = bad;
      const auto r = run_tis<E>(oi, q, 1, false, false);
      CHECK(r.engine_used == expect_engine);
      CHECK(r.loss == clean.loss);
      CHECK(r.grad_logp == clean.grad_logp);
      CHECK(r.metrics.is_weight.sum == clean.metrics.is_weight.sum);
    }
    q.isw[km] = 1.0;
    // ... on a valid token: the general engine's named error
    for (double bad : {std::nan(""), -HUGE_VAL}) {
      q.isw[kv] = bad;
      try {
        run_tis<E>(oi, q, 1, false, true);
        FAIL("no error for a non-finite is_weights entry");
      } catch (const grpo::error& e) {
        CHECK(e.code() == grpo::errc::bad_value);
        CHECK(std::string(e.what()).find("is_weights") != std::string::npos);
      }
    }
    // A finite weight whose float square overflows (1e30): the row is rerun in double, every
    // output as the general engine's (the other rows stay on the sequence rows).
    q.isw[kv] = 1e30;
    check_tis_pair(oi, q.p, run_tis<E>(oi, q, 1, true, true), run_tis<double>(oi, q, 2, true, true),
                   true);
    q.isw[kv] = 1.0;
    // Sampler values: NaN on a masked token is ignored; on a valid token the float rows and the
    // general engine agree (the row is rerun there: the same error, or the same values).
    const auto clean_t = run_tis<E>(ot, q, 1, true, false);
    q.smp[km] = std::nan("");
    const auto rt = run_tis<E>(ot, q, 1, true, false);
    CHECK(rt.loss == clean_t.loss);
    CHECK(rt.grad_logp == clean_t.grad_logp);
    q.smp[km] = q.p.old[km];
    q.smp[kv] = std::nan("");
    auto outcome = [&](auto&& call) -> std::string {
      try {
        const auto r = call();
        return std::isnan(r.loss) ? "NaN loss" : "finite loss";
      } catch (const grpo::error& e) {
        return e.what();
      }
    };
    const std::string ef = outcome([&] { return run_tis<E>(ot, q, 1, true, true); });
    const std::string ed = outcome([&] { return run_tis<double>(ot, q, 2, true, true); });
    INFO("sequence rows: " << ef << "; general engine: " << ed);
    CHECK(ef == ed);
    CHECK(ed != "finite loss");
    q.smp[kv] = q.p.old[kv];
  };
  for (auto level : {grpo::is_level::sequence, grpo::is_level::sequence_token}) {
    body(float{}, level);
    body(double{}, level);
  }
}

// ---- GSPO with the entropy term (bonus of any coefficient, or the entropy metric alone) -------
// The sequence rows run the token rows' entropy sweep after the row (float: the packet sweep on
// avx2 / avx512, the lane-generic one on baseline; double: lane-generic), against the general
// engine in double (stride 2) on float-exact inputs: the outputs and metrics of check_tis_pair,
// entropy_loss, the entropy metric and dL/dH (at every position: -coef s_ent m) within 1e-6
// (float) / 1e-12 (double) of their scales. No top-entropy mask (that stays on the general engine).
TEST_CASE("GSPO + entropy term: sequence rows equal the general engine" *
          doctest::test_suite("loss")) {
  int calls = 0;
  for (long T : {1L, 13L, 64L, 300L}) {
    for (int mk = 0; mk < 3; ++mk) {
      const tis_problem q = make_tis_problem(9, T, static_cast<unsigned>(57 * T + mk), mk);
      for (auto level : {grpo::is_level::sequence, grpo::is_level::sequence_token}) {
        for (double coef : {0.0, 1e-2, -3e-3}) {
          for (int kl = 0; kl < 3; ++kl) {
            for (int var = 0; var < 4; ++var) {
              const bool per_tok = var % 2 == 1, want_ptl = var >= 2;
              auto o = tis_config(level, 6, kl, kl + var + mk);
              o.entropy_coef = coef;
              if (var == 1) o.entropy_agg.mode = grpo::agg_mode::seq_mean_token_mean;
              INFO("T " << T << " mask " << mk << " level " << int(level) << " coef " << coef
                        << " kl " << kl << " variant " << var);
              const auto d = run_tis<double>(o, q, 2, per_tok, true, true);
              if (T > 1) CHECK(d.engine_used == grpo::loss_engine::general);  // (T = 1: unit)
              const double es = std::fabs(d.metrics.entropy.sum) + 1e-30;
              const double gs = max_abs(d.grad_entropy) + 1e-30;
              auto check = [&](const grpo::loss_result& f, double tol) {
                CHECK(f.engine_used == grpo::loss_engine::sequence_rows);
                check_tis_pair(o, q.p, f, d, want_ptl, tol);
                CHECK(std::fabs(f.entropy_loss - d.entropy_loss) <= tol * es);
                check_metric(f.metrics.entropy, d.metrics.entropy, tol, "entropy");
                double ge_err = 0;
                for (std::size_t k = 0; k < d.grad_entropy.size(); ++k)
                  ge_err =
                      grpo_test::err_max(ge_err, std::fabs(f.grad_entropy[k] - d.grad_entropy[k]));
                CHECK(ge_err <= tol * gs);
              };
              check(run_tis<float>(o, q, 1, per_tok, want_ptl, true), 1e-6);
              check(run_tis<double>(o, q, 1, per_tok, want_ptl, true), 1e-12);
              ++calls;
            }
          }
        }
      }
    }
  }
  CHECK(calls == 4 * 3 * 2 * 3 * 3 * 4);
}

TEST_CASE("GSPO + entropy term: non-finite entropy on a valid token is the named error" *
          doctest::test_suite("loss")) {
  tis_problem q = make_tis_problem(5, 40, 11, 1);
  const auto vm = valid_and_masked(q.p, 3);  // (row 3: row 2 is truncated)
  const std::size_t kv = vm.first, km = vm.second;
  auto body = [&](auto tag, grpo::is_level level) {
    using E = decltype(tag);
    auto o = tis_config(level, 6, 1, 0);
    o.entropy_coef = 0.01;
    INFO("level " << int(level) << (std::is_same_v<E, float> ? " float" : " double"));
    const auto clean = run_tis<E>(o, q, 1, false, true, true);
    CHECK(clean.engine_used == grpo::loss_engine::sequence_rows);
    const double hm = q.ent[km], hv = q.ent[kv];
    for (double bad : {std::nan(""), HUGE_VAL}) {
      q.ent[km] = bad;  // masked: ignored
      const auto r = run_tis<E>(o, q, 1, false, true, true);
      CHECK(r.loss == clean.loss);
      CHECK(r.grad_logp == clean.grad_logp);
      CHECK(r.grad_entropy == clean.grad_entropy);
      CHECK(r.metrics.entropy.sum == clean.metrics.entropy.sum);
      q.ent[km] = hm;
      q.ent[kv] = bad;  // valid: the general engine's error
      try {
        run_tis<E>(o, q, 1, false, false, true);
        FAIL("no error for a non-finite entropy entry");
      } catch (const grpo::error& e) {
        CHECK(e.code() == grpo::errc::bad_value);
        CHECK(std::string(e.what()).find("entropy") != std::string::npos);
      }
      q.ent[kv] = hv;
    }
  };
  for (auto level : {grpo::is_level::sequence, grpo::is_level::sequence_token}) {
    body(float{}, level);
    body(double{}, level);
  }
}
