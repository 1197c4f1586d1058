// SPDX-License-Identifier: Apache-2.0
// Row threading of grpo::compute_loss_into (OpenMP; built with grpo::openmp where it exists): the
// general engine (sequence-level ratios, sequence TIS, OPSM, top-entropy mask and entropy bonus,
// GMPO, VESPO) and the fast path give bitwise the same loss, per-token outputs and metrics with
// 1, 2 and 3 threads, on a batch large enough to take the threaded loops (B T >= 2^15). Without
// OpenMP it is not built: tests/grpo/CMakeLists.txt registers it as skipped with the reason.
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

struct problem {
  long B = 0, T = 0;
  std::vector<double> lp, old, ref, smp, ent, mask, adv;
};

problem make_problem(long B, long T) {
  problem p;
  p.B = B;
  p.T = T;
  std::mt19937 g(23);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const auto n = static_cast<std::size_t>(B * T);
  for (auto* v : {&p.lp, &p.old, &p.ref, &p.smp, &p.ent, &p.mask}) v->resize(n);
  p.adv.resize(static_cast<std::size_t>(B));
  for (long i = 0; i < B; ++i) {
    p.adv[static_cast<std::size_t>(i)] = 1.5 * u(g);
    const long len = 1 + static_cast<long>((u(g) + 1.0) * 0.5 * static_cast<double>(T - 1));
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      p.lp[k] = -2.0 + u(g);
      p.old[k] = p.lp[k] - 0.3 * u(g);
      p.ref[k] = p.lp[k] - 0.4 * u(g);
      p.smp[k] = p.old[k] - 0.1 * u(g);
      p.ent[k] = 1.0 + u(g);
      p.mask[k] = (t < len && t % 11 != 5) ? 1.0 : 0.0;
    }
  }
  return p;
}

/// The problem's inputs stored as E, and the batch of logp, old / ref log-probs, mask and the
/// per-row advantages over them (the callers add their optional inputs: sampler_logp, entropy,
/// is_weights, per-token advantages).
template <class E>
struct held_problem {
  long B = 0, T = 0;
  std::vector<E> lp, old, ref, mask, adv, smp, ent;
  explicit held_problem(const problem& p)
      : B(p.B), T(p.T), lp(cast(p.lp)), old(cast(p.old)), ref(cast(p.ref)), mask(cast(p.mask)),
        adv(cast(p.adv)), smp(cast(p.smp)), ent(cast(p.ent)) {}
  static std::vector<E> cast(const std::vector<double>& v) {
    return std::vector<E>(v.begin(), v.end());
  }
  /// x as a [B, T] view (x: one of these rows, or another vector of B T entries).
  auto view(const std::vector<E>& x) const { return grpo::make_view(x.data(), {B, T}); }
  grpo::loss_batch<E, E> batch() const {
    grpo::loss_batch<E, E> b;
    b.logp = view(lp);
    b.old_logp = view(old);
    b.ref_logp = view(ref);
    b.mask = view(mask);
    b.advantages = grpo::broadcast_rows(adv.data(), B, T);
    return b;
  }
  /// batch() with the sampler log-probs where o reads them (TIS, OPSM) and the entropies where
  /// o has an entropy term or the top-entropy mask.
  grpo::loss_batch<E, E> batch_for(const grpo::loss_options& o) const {
    grpo::loss_batch<E, E> b = batch();
    if (o.tis.enabled || o.opsm_threshold) b.sampler_logp = view(smp);
    if (o.entropy_coef != 0.0 || o.top_entropy_quantile < 1.0) b.entropy = view(ent);
    return b;
  }
};

grpo::loss_result run(const grpo::loss_options& o, const problem& p, int threads) {
#if defined(_OPENMP)
  omp_set_num_threads(threads);
  REQUIRE(omp_get_max_threads() == threads);  // the runs below really differ in thread count
#else
  (void)threads;
#endif
  const held_problem<double> h(p);
  return grpo::compute_loss(o, h.batch_for(o));
}

bool same(double a, double b) {
  return std::memcmp(&a, &b, sizeof(double)) == 0 || (std::isnan(a) && std::isnan(b));
}
void check_same(const grpo::stat_accumulator& a, const grpo::stat_accumulator& b, const char* w) {
  INFO(std::string(w));
  CHECK(same(a.sum, b.sum));
  CHECK(same(a.sum_sq, b.sum_sq));
  CHECK(same(a.weight, b.weight));
  CHECK(same(a.min, b.min));
  CHECK(same(a.max, b.max));
}
void check_same(const grpo::loss_result& a, const grpo::loss_result& b) {
  CHECK(same(a.loss, b.loss));
  CHECK(same(a.policy_loss, b.policy_loss));
  CHECK(same(a.kl_loss, b.kl_loss));
  CHECK(same(a.entropy_loss, b.entropy_loss));
  for (std::size_t k = 0; k < a.grad_logp.size(); ++k) {
    REQUIRE(same(a.grad_logp[k], b.grad_logp[k]));
    REQUIRE(same(a.per_token_loss[k], b.per_token_loss[k]));
    REQUIRE(same(a.grad_entropy[k], b.grad_entropy[k]));
  }
  for (std::size_t i = 0; i < a.per_seq_loss.size(); ++i)
    REQUIRE(same(a.per_seq_loss[i], b.per_seq_loss[i]));
  const auto &m = a.metrics, &n = b.metrics;
  check_same(m.clip_low, n.clip_low, "clip_low");
  check_same(m.clip_high, n.clip_high, "clip_high");
  check_same(m.clip_region, n.clip_region, "clip_region");
  check_same(m.clip_dual, n.clip_dual, "clip_dual");
  check_same(m.weight_clip, n.weight_clip, "weight_clip");
  check_same(m.clip_low_seq, n.clip_low_seq, "clip_low_seq");
  check_same(m.clip_high_seq, n.clip_high_seq, "clip_high_seq");
  check_same(m.approx_kl, n.approx_kl, "approx_kl");
  check_same(m.ratio, n.ratio, "ratio");
  check_same(m.is_weight, n.is_weight, "is_weight");
  check_same(m.advantage, n.advantage, "advantage");
  check_same(m.kl, n.kl, "kl");
  check_same(m.entropy, n.entropy, "entropy");
  check_same(m.vespo_phi, n.vespo_phi, "vespo_phi");
  CHECK(m.tokens == n.tokens);
  CHECK(m.sequences == n.sequences);
  CHECK(m.opsm_dropped_seqs == n.opsm_dropped_seqs);
  CHECK(m.entropy_masked_tokens == n.entropy_masked_tokens);
}

}  // namespace

TEST_CASE("compute_loss: results do not depend on the number of threads" *
          doctest::test_suite("loss")) {
  const problem p = make_problem(48, 777);  // 37296 tokens: the threaded loops
  std::vector<std::pair<const char*, grpo::loss_options>> cs;
  {
    grpo::trl_args a;
    a.loss_type = "dapo";
    a.beta = 0.04;
    cs.emplace_back("fast path (TRL dapo + k3)", grpo::from_trl(a));
    a.importance_sampling_level = "sequence";
    cs.emplace_back("GSPO (sequence level)", grpo::from_trl(a));
  }
  {
    grpo::loss_options o;
    o.policy.level = grpo::is_level::sequence_token;
    o.kl_coef = 0.02;
    o.tis.enabled = true;
    o.tis.sequence = true;
    o.tis.c_max = 2.0;
    o.opsm_threshold = 0.05;
    cs.emplace_back("GSPO-token + sequence TIS + OPSM", o);
  }
  {
    grpo::loss_options o;
    o.top_entropy_quantile = 0.8;
    o.entropy_coef = 0.01;
    o.agg.mode = grpo::agg_mode::seq_mean_token_mean;
    cs.emplace_back("top-entropy mask + entropy bonus", o);
  }
  {
    grpo::loss_options o;
    o.policy.kind = grpo::policy_loss_kind::gmpo;
    cs.emplace_back("GMPO", o);
    o.policy.kind = grpo::policy_loss_kind::vespo;
    o.tis.enabled = true;
    o.tis.c_max = 2.0;
    cs.emplace_back("VESPO + token TIS", o);
  }
  for (const auto& [name, o] : cs) {
    INFO(std::string(name));
    const auto r1 = run(o, p, 1);
    CHECK(std::isfinite(r1.loss));
    CHECK(r1.metrics.tokens > 0);
    for (int th : {2, 3}) {
      INFO("threads " << th);
      check_same(r1, run(o, p, th));
    }
  }
}

// compute_loss_metrics (loss/entry.hpp) stores no [B, T] gradient: its rows share one scratch row.
// The token-level row engine gives each thread a private row and runs threaded; the other engines
// run on one thread. Either way the scalars and metrics equal compute_loss_into's bit for bit,
// for every thread count.
template <class E>
void check_metrics_threads(const grpo::loss_options& o, const problem& p) {
  const held_problem<E> h(p);
  const grpo::loss_batch<E, E> b = h.batch_for(o);
  std::vector<E> g(h.lp.size());
  grpo::loss_outputs<E> out;
  out.grad_logp = grpo::make_view(g.data(), {p.B, p.T});
#if defined(_OPENMP)
  omp_set_num_threads(1);
#endif
  const grpo::loss_scalars ref_s = grpo::compute_loss_into(o, b, out);
  CHECK(std::isfinite(ref_s.loss));
  for (int th : {1, 2, 3}) {
    INFO("threads " << th);
#if defined(_OPENMP)
    omp_set_num_threads(th);
#endif
    const grpo::loss_scalars s = grpo::compute_loss_metrics(o, b);
#if defined(_OPENMP)
    CHECK(omp_get_max_threads() == th);  // the caller's thread count is left as it was
#endif
    CHECK(same(s.loss, ref_s.loss));
    CHECK(same(s.policy_loss, ref_s.policy_loss));
    CHECK(same(s.kl_loss, ref_s.kl_loss));
    CHECK(same(s.entropy_loss, ref_s.entropy_loss));
    CHECK(s.engine_used == ref_s.engine_used);
    const auto &m = s.metrics, &n = ref_s.metrics;
    check_same(m.clip_low, n.clip_low, "clip_low");
    check_same(m.clip_high, n.clip_high, "clip_high");
    check_same(m.clip_region, n.clip_region, "clip_region");
    check_same(m.weight_clip, n.weight_clip, "weight_clip");
    check_same(m.clip_low_seq, n.clip_low_seq, "clip_low_seq");
    check_same(m.clip_high_seq, n.clip_high_seq, "clip_high_seq");
    check_same(m.approx_kl, n.approx_kl, "approx_kl");
    check_same(m.ratio, n.ratio, "ratio");
    check_same(m.advantage, n.advantage, "advantage");
    check_same(m.kl, n.kl, "kl");
    check_same(m.entropy, n.entropy, "entropy");
    check_same(m.is_weight, n.is_weight, "is_weight");
    CHECK(m.tokens == n.tokens);
    CHECK(m.sequences == n.sequences);
  }
}

TEST_CASE("compute_loss_metrics: threaded token rows, bitwise compute_loss_into's for any "
          "thread count" * doctest::test_suite("loss")) {
  const problem p = make_problem(48, 777);  // 37296 tokens: the threaded loops
  grpo::trl_args a;
  a.loss_type = "dapo";
  a.beta = 0.04;
  std::vector<std::pair<const char*, grpo::loss_options>> cs;
  cs.emplace_back("TRL dapo + k3 (token rows)", grpo::from_trl(a));
  grpo::loss_options o = grpo::from_trl(a);
  o.policy.kind = grpo::policy_loss_kind::cispo;
  cs.emplace_back("CISPO (token rows)", o);
  o.policy.kind = grpo::policy_loss_kind::sapo;
  o.kl.estimator = grpo::ops::kl_estimator::k2;
  cs.emplace_back("SAPO + k2 (token rows)", o);
  o = grpo::from_trl(a);
  o.tis.enabled = true;
  o.tis.c_max = 1.05;  // (sampler gaps within +-0.1: the bound binds on some tokens)
  cs.emplace_back("token TIS (general rows: one thread)", o);
  o.tis.sequence = true;
  o.tis.c_max = 2.0;
  cs.emplace_back("sequence TIS (general rows: one thread)", o);
  a.importance_sampling_level = "sequence";
  cs.emplace_back("GSPO (sequence rows: one thread)", grpo::from_trl(a));
  o = grpo::from_trl(a);
  o.tis.enabled = true;
  o.tis.c_max = 1.05;
  cs.emplace_back("GSPO + token TIS (sequence rows: one thread)", o);
  o.tis.sequence = true;
  o.tis.c_max = 2.0;
  cs.emplace_back("GSPO + sequence TIS (sequence rows: one thread)", o);
  o = grpo::loss_options{};
  o.top_entropy_quantile = 0.8;
  o.entropy_coef = 0.01;
  cs.emplace_back("top-entropy mask (general rows: one thread)", o);
  for (const auto& [name, opt] : cs) {
    INFO(std::string(name));
    check_metrics_threads<float>(opt, p);
    check_metrics_threads<double>(opt, p);
  }
#if defined(_OPENMP)
  omp_set_num_threads(2);
#endif
}

// The TIS rows' new inputs (float, general_rows on the avx2 / avx512 paths): external is_weights
// and OPSM (in and out of the denominator, with token TIS, per-sequence and per-token
// advantages): compute_loss_into's gradient, per-token loss, scalars and metrics bitwise the
// same for 1, 2 and 3 threads (OPSM's row counts are threaded too, merged in row order).
TEST_CASE("compute_loss_into: the TIS rows with is_weights / OPSM do not depend on the number "
          "of threads" * doctest::test_suite("loss")) {
  const problem p = make_problem(48, 777);  // 37296 tokens: the threaded loops
  const held_problem<float> h(p);
  std::vector<float> isw(h.lp.size()), adv_tok(h.lp.size());
  for (std::size_t k = 0; k < h.lp.size(); ++k) {
    isw[k] = static_cast<float>(0.5 + 0.5 * p.ent[k]);  // in [0.5, 1.5]
    adv_tok[k] = static_cast<float>(p.ent[k] - 1.0);    // in [-1, 1]
  }
  grpo::trl_args a;
  a.loss_type = "dapo";
  a.beta = 0.04;
  struct cfg {
    const char* name;
    grpo::loss_options o;
    bool w, tok;
  };
  std::vector<cfg> cs;
  grpo::loss_options o = grpo::from_trl(a);
  cs.push_back({"is_weights", o, true, false});
  o.policy.kind = grpo::policy_loss_kind::cispo;
  cs.push_back({"CISPO + is_weights, per-token A", o, true, true});
  o = grpo::from_trl(a);
  o.opsm_threshold = 0.0;
  cs.push_back({"OPSM in the denominator", o, false, false});
  o.opsm_in_denominator = false;
  cs.push_back({"OPSM out of the denominator, per-token A", o, false, true});
  o.opsm_in_denominator = true;
  o.tis.enabled = true;
  o.tis.c_max = 1.05;
  cs.push_back({"OPSM + token TIS, per-token A", o, false, true});
  for (const auto& c : cs) {
    INFO(std::string(c.name));
    grpo::loss_batch<float, float> b = h.batch();
    if (c.tok) b.advantages = h.view(adv_tok);
    if (c.w)
      b.is_weights = h.view(isw);
    else
      b.sampler_logp = h.view(h.smp);
    const auto n = h.lp.size();
    grpo::loss_result r[3];
    for (int th : {1, 2, 3}) {
#if defined(_OPENMP)
      omp_set_num_threads(th);
#endif
      grpo::loss_result& x = r[th - 1];
      x.grad_logp.assign(n, -7.0);
      x.per_token_loss.assign(n, -7.0);
      x.grad_entropy.assign(n, 0.0);
      x.per_seq_loss.assign(static_cast<std::size_t>(p.B), 0.0);
      grpo::loss_outputs<double> out;
      out.grad_logp = grpo::make_view(x.grad_logp.data(), {p.B, p.T});
      out.per_token_loss = grpo::make_view(x.per_token_loss.data(), {p.B, p.T});
      static_cast<grpo::loss_scalars&>(x) = grpo::compute_loss_into(c.o, b, out);
    }
    CHECK(std::isfinite(r[0].loss));
    if (c.o.opsm_threshold) CHECK(r[0].metrics.opsm_dropped_seqs > 0);
    for (int th : {2, 3}) {
      INFO("threads " << th);
      CHECK(r[th - 1].engine_used == r[0].engine_used);
      check_same(r[0], r[th - 1]);
    }
  }
#if defined(_OPENMP)
  omp_set_num_threads(2);
#endif
}

// GSPO / GSPO-token with a rollout IS weight on the sequence rows (float: the packet rows of
// kernels/sequence_row.ipp on the avx2 / avx512 paths, the lane-generic rows on the baseline
// path; double: the lane-generic rows): the rows are threaded and merged in row order, so every
// output is the same bits for 1, 2 and 3 threads (token / sequence / seq-mask TIS, the caller's
// is_weights; per-sequence and per-token advantages; one row rerun in double by a huge weight).
namespace {
template <class E>
void gspo_tis_threads() {
  const problem p = make_problem(48, 777);  // 37296 tokens: the threaded loops
  const held_problem<E> h(p);
  const std::vector<E>& at = h.ent;  // (ent: per-token A)
  std::vector<E> isw(h.lp.size());
  for (std::size_t k = 0; k < isw.size(); ++k) isw[k] = E(0.5) + E(0.25) * at[k];
  isw[5 * 777 + 3] = E(1e30);  // (row 5: its float sums overflow, rerun in double)
  for (auto level : {grpo::is_level::sequence, grpo::is_level::sequence_token}) {
    for (int w = 0; w < 4; ++w) {
      for (bool per_tok : {false, true}) {
        grpo::loss_options o;
        o.policy.level = level;
        o.kl_coef = 0.02;
        o.tis.enabled = w < 3;
        o.tis.c_max = 1.05;
        o.tis.sequence = w == 1;
        o.tis.seq_mask = w == 2;
        if (w == 2) o.tis.c_min = 0.9;
        INFO("level " << int(level) << " weight " << w << " per_tok " << per_tok);
        grpo::loss_batch<E, E> b = h.batch();
        if (per_tok) b.advantages = h.view(at);
        if (w < 3)
          b.sampler_logp = h.view(h.smp);
        else
          b.is_weights = h.view(isw);
        auto run_f = [&](int th) {
#if defined(_OPENMP)
          omp_set_num_threads(th);
#else
          (void)th;
#endif
          return grpo::compute_loss(o, b);
        };
        const auto r1 = run_f(1);
        CHECK(std::isfinite(r1.loss));
        CHECK(r1.engine_used == grpo::loss_engine::sequence_rows);
        for (int th : {2, 3}) {
          INFO("threads " << th);
          check_same(r1, run_f(th));
        }
      }
    }
  }
#if defined(_OPENMP)
  omp_set_num_threads(2);
#endif
}
}  // namespace

TEST_CASE(
    "GSPO + rollout IS weight (sequence rows): results do not depend on the number of "
    "threads" *
    doctest::test_suite("loss")) {
  SUBCASE("float inputs") {
    gspo_tis_threads<float>();
  }
  SUBCASE("double inputs") {
    gspo_tis_threads<double>();
  }
}

TEST_CASE("compute_loss_into: the top-entropy mask on the float token rows does not depend on the "
          "number of threads" * doctest::test_suite("loss")) {
  const problem p = make_problem(48, 777);  // 37296 tokens: the threaded loops
  const held_problem<float> h(p);
  grpo::loss_batch<float, float> b = h.batch();
  b.entropy = h.view(h.ent);
  grpo::trl_args a;
  a.loss_type = "dapo";
  a.beta = 0.04;
  a.top_entropy_quantile = 0.2;
  for (bool den : {false, true}) {
    for (double coef : {0.0, 1e-2}) {
      grpo::loss_options o = grpo::from_trl(a);  // (TRL: out of the denominators)
      o.entropy_mask_in_denominator = den;
      o.entropy_coef = coef;
      INFO("den " << den << " coef " << coef);
      const auto n = static_cast<std::size_t>(p.B * p.T);
      auto once = [&](int threads) {
#if defined(_OPENMP)
        omp_set_num_threads(threads);
#else
        (void)threads;
#endif
        grpo::loss_result r;
        std::vector<float> g(n), ptl(n), ge(n);
        grpo::loss_outputs<float> out;
        auto w = [&](std::vector<float>& x) { return grpo::make_view(x.data(), {p.B, p.T}); };
        out.grad_logp = w(g);
        out.per_token_loss = w(ptl);
        out.grad_entropy = w(ge);
        const grpo::loss_scalars s = grpo::compute_loss_into(o, b, out);
        CHECK(s.engine_used == grpo::loss_engine::token_rows_simd);
        r.loss = s.loss;
        r.policy_loss = s.policy_loss;
        r.kl_loss = s.kl_loss;
        r.entropy_loss = s.entropy_loss;
        r.metrics = s.metrics;
        r.grad_logp.assign(g.begin(), g.end());
        r.per_token_loss.assign(ptl.begin(), ptl.end());
        r.grad_entropy.assign(ge.begin(), ge.end());
        return r;
      };
      const auto r1 = once(1);
      CHECK(r1.metrics.entropy_masked_tokens > 0);
      check_same(r1, once(2));
    }
  }
}
