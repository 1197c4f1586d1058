// SPDX-License-Identifier: Apache-2.0
/// @file test_loss_general_rows.cpp
/// @brief The general engine's packet rows for GMPO and VESPO (loss/general_rows.hpp
///        weighted_rows, kernels/general_row.ipp: float inputs, per-sequence advantages, avx2 /
///        avx512 paths) against the general engine in double (the op: the same inputs widened to
///        double, which plan() routes to the general engine), on random batches with row tails,
///        fractional and holed masks, all-masked and truncated rows, KL on / off (plain k3 and a
///        clamped estimator), per-token loss on / off; the double fallback of flagged rows
///        (non-finite inputs name the argument; an overflowing float ratio reruns the row in
///        double); and the baseline path (general engine, unchanged).
#include <grpo/core/isa.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

struct data {
  long B = 0, T = 0;
  std::vector<float> lp, lo, lr, mask, adv;  // adv: one per row
  std::vector<float> ls, adv_tok;            // sampler log-probs; per-token advantages (or empty)
  std::vector<float> ent;                    // per-token entropies (NaN / inf on some padding)
  std::vector<float> isw;  ///< external IS weights (given as is_weights when not empty)
  std::vector<unsigned char> trunc;
  bool on_policy = false;  ///< no old_logp view
  bool smp = false;        ///< give sampler_logp without TIS (OPSM's gap reads it)
};

/// Rows of varying length (tails of every residue mod 16), binary right-padded masks, one holed
/// fractional mask row, one all-masked row, one truncated row; log ratios within +-0.6 so that
/// the GMPO band (0.4 / 0.2 .. 0.28) binds on some tokens.
data make(long B, long T, unsigned seed) {
  data d;
  d.B = B;
  d.T = T;
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const auto n = static_cast<std::size_t>(B * T);
  d.lp.resize(n);
  d.lo.resize(n);
  d.lr.resize(n);
  d.mask.assign(n, 0.f);
  d.adv.resize(static_cast<std::size_t>(B));
  d.trunc.assign(static_cast<std::size_t>(B), 0);
  for (long i = 0; i < B; ++i) {
    d.adv[static_cast<std::size_t>(i)] = i % 5 == 3 ? 0.f : u(g);  // A = 0 rows too
    const long len = (i * 7 + 3) % (T + 1);
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      d.lp[k] = -1.5f + u(g);
      d.lo[k] = d.lp[k] - 0.6f * u(g);
      d.lr[k] = d.lp[k] - 0.4f * u(g);
      if (i == 1)
        d.mask[k] = t % 3 == 1 ? 0.f : 0.5f + 0.25f * static_cast<float>(t % 2);
      else if (i != 2)
        d.mask[k] = t < len ? 1.f : 0.f;
    }
  }
  if (B > 4) d.trunc[4] = 1;
  // Sampler log-probs: token weights exp(lo - ls) in about [0.6, 1.6], a per-row drift so that
  // sequence weights and seq-mask-tis's geometric means fall on both sides of their bounds.
  d.ls.resize(n);
  for (long i = 0; i < B; ++i)
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      d.ls[k] = d.lo[k] - 0.45f * u(g) + 0.03f * static_cast<float>(i % 5 - 2);
    }
  // Entropies in [0.05, 3] (a vocabulary of ~20 nats at most), non-finite values where the mask
  // is 0 (padding of row 0, the all-masked row 2, the truncated row 4): never read.
  std::mt19937 ge(seed + 7);  // (its own stream: the other inputs stay as they were)
  d.ent.resize(n);
  for (std::size_t k = 0; k < n; ++k) d.ent[k] = 0.05f + 1.475f * (u(ge) + 1.f);
  for (long i = 0; i < B; ++i)
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      if ((i == 2 || i == 4) && t % 4 == 1) d.ent[k] = t % 8 == 1 ? INFINITY : std::nanf("");
      if (i == 0 && t == T - 1 && d.mask[k] == 0.f) d.ent[k] = -INFINITY;
      if (i == 1 && t % 3 == 1) d.ent[k] = std::nanf("");  // the holes of the fractional row
    }
  return d;
}

/// make() with per-token advantages (A = 0 tokens included).
data make_tok(long B, long T, unsigned seed) {
  data d = make(B, T, seed);
  std::mt19937 g(seed + 99);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  d.adv_tok.resize(d.lp.size());
  for (std::size_t k = 0; k < d.adv_tok.size(); ++k) d.adv_tok[k] = k % 11 == 5 ? 0.f : u(g);
  return d;
}

template <class X>
std::vector<double> widen(const std::vector<X>& v) {
  return std::vector<double>(v.begin(), v.end());
}

struct run_out {
  grpo::loss_scalars s;
  std::vector<double> g, ptl, seq, ge;
};

/// compute_loss_into on storage type X (float: the packet rows where plan() takes them; double:
/// the general engine), outputs in double.
/// with_ent: the entropy input is given; want_ge: the dL/dH output is.
/// out_off: the gradient and dL/dH views start out_off elements into their buffers (the
/// buffers' own addresses are the allocator's).
template <class X, class G = double, class MK = X>
run_out run(const grpo::loss_options& o, const data& d, bool want_ptl, bool with_ent = false,
            bool want_ge = true, std::size_t out_off = 0) {
  const std::vector<X> lp(d.lp.begin(), d.lp.end()), lo(d.lo.begin(), d.lo.end()),
      lr(d.lr.begin(), d.lr.end()), a(d.adv.begin(), d.adv.end()), ls(d.ls.begin(), d.ls.end()),
      at(d.adv_tok.begin(), d.adv_tok.end()), h(d.ent.begin(), d.ent.end());
  const std::vector<MK> m(d.mask.begin(), d.mask.end());
  grpo::loss_batch<X, MK> b;
  b.logp = grpo::make_view(lp.data(), {d.B, d.T});
  if (!d.on_policy) b.old_logp = grpo::make_view(lo.data(), {d.B, d.T});
  if (o.kl_coef != 0.0) b.ref_logp = grpo::make_view(lr.data(), {d.B, d.T});
  b.mask = grpo::make_view(m.data(), {d.B, d.T});
  b.advantages = at.empty() ? grpo::broadcast_rows(a.data(), d.B, d.T)
                            : grpo::make_view(at.data(), {d.B, d.T});
  const std::vector<X> w(d.isw.begin(), d.isw.end());
  if (o.tis.enabled || d.smp) b.sampler_logp = grpo::make_view(ls.data(), {d.B, d.T});
  if (!w.empty()) b.is_weights = grpo::make_view(w.data(), {d.B, d.T});
  if (with_ent) b.entropy = grpo::make_view(h.data(), {d.B, d.T});
  b.truncated = d.trunc;
  const auto n = static_cast<std::size_t>(d.B * d.T);
  std::vector<G> g(n + out_off, G(-7)), ptl(n, G(-7)), ge(n + out_off, G(-7)),
      seq(static_cast<std::size_t>(d.B), G(-7));
  grpo::loss_outputs<G> out;  // (every position must be written)
  out.grad_logp = grpo::make_view(g.data() + out_off, {d.B, d.T});
  if (want_ptl) out.per_token_loss = grpo::make_view(ptl.data(), {d.B, d.T});
  if (want_ge) out.grad_entropy = grpo::make_view(ge.data() + out_off, {d.B, d.T});
  out.per_seq_loss = seq;
  run_out r;
  r.s = grpo::compute_loss_into(o, b, out);
  r.g.assign(g.begin() + static_cast<std::ptrdiff_t>(out_off), g.end());
  r.ptl.assign(ptl.begin(), ptl.end());
  r.ge.assign(ge.begin() + static_cast<std::ptrdiff_t>(out_off), ge.end());
  r.seq.assign(seq.begin(), seq.end());
  return r;
}

/// A batch of d in storage type X that owns its inputs (logp, old, ref, mask, per-row
/// advantages, truncation) and one more per-token input `x` stored at stride 2 along t, for the
/// strided-view cases: strided() is its [B, T] view, for the field the caller sets.
template <class X>
struct held_batch {
  long B = 0, T = 0;
  std::vector<X> lp, lo, lr, m, a, x2;
  grpo::loss_batch<X, X> b;
  grpo::strided_view<const X, 2> strided() const {
    return grpo::make_view(x2.data(), {B, T}, {2 * T, 2});
  }
};
template <class X = double>
held_batch<X> held(const data& d, const std::vector<float>& x) {
  held_batch<X> h;
  h.B = d.B;
  h.T = d.T;
  h.lp.assign(d.lp.begin(), d.lp.end());
  h.lo.assign(d.lo.begin(), d.lo.end());
  h.lr.assign(d.lr.begin(), d.lr.end());
  h.m.assign(d.mask.begin(), d.mask.end());
  h.a.assign(d.adv.begin(), d.adv.end());
  h.x2.assign(x.size() * 2, X(0));
  for (std::size_t k = 0; k < x.size(); ++k) h.x2[2 * k] = static_cast<X>(x[k]);
  h.b.logp = grpo::make_view(h.lp.data(), {d.B, d.T});
  h.b.old_logp = grpo::make_view(h.lo.data(), {d.B, d.T});
  h.b.ref_logp = grpo::make_view(h.lr.data(), {d.B, d.T});
  h.b.mask = grpo::make_view(h.m.data(), {d.B, d.T});
  h.b.advantages = grpo::broadcast_rows(h.a.data(), d.B, d.T);
  h.b.truncated = d.trunc;
  return h;  // (moving the vectors keeps their buffers: the views stay valid)
}

/// |a - b| <= tol (1 + |b|), with a message naming what and where.
/// (Element comparisons report only their failures: a batch has millions of them.)
int close(double a, double b, double tol, const std::string& what) {
  const bool ok = (std::isnan(a) && std::isnan(b)) || a == b ||  // (== : equal infinities)
                  std::abs(a - b) <= tol * (1.0 + std::abs(b));
  if (!ok) FAIL_CHECK(what << ": " << a << " vs " << b);
  return ok ? 0 : 1;
}

void close_stat(const grpo::stat_accumulator& a, const grpo::stat_accumulator& b, double tol,
                const std::string& what) {
  CHECK(close(a.weight, b.weight, 1e-12, what + ".weight") == 0);
  CHECK(close(a.sum, b.sum, tol, what + ".sum") == 0);
  CHECK(close(a.sum_sq, b.sum_sq, tol, what + ".sum_sq") == 0);
  if (b.weight > 0) {
    CHECK(close(a.min, b.min, tol, what + ".min") == 0);
    CHECK(close(a.max, b.max, tol, what + ".max") == 0);
  }
}

/// Every metric of the packet rows' result against the general engine's: counts exactly, the
/// statistics to tol, the clip fractions (decisions) to 1e-12.
void close_metrics(const grpo::loss_metrics& a, const grpo::loss_metrics& b, double tol) {
  CHECK(a.tokens == b.tokens);
  CHECK(a.sequences == b.sequences);
  CHECK(a.truncated_seqs == b.truncated_seqs);
  close_stat(a.entropy, b.entropy, tol, "entropy");
  close_stat(a.approx_kl, b.approx_kl, tol, "approx_kl");
  close_stat(a.ratio, b.ratio, tol, "ratio");
  close_stat(a.is_weight, b.is_weight, tol, "is_weight");
  close_stat(a.advantage, b.advantage, tol, "advantage");
  close_stat(a.kl, b.kl, tol, "kl");
  close_stat(a.vespo_phi, b.vespo_phi, tol, "vespo_phi");
  close_stat(a.clip_low, b.clip_low, 1e-12, "clip_low");
  close_stat(a.clip_high, b.clip_high, 1e-12, "clip_high");
  close_stat(a.clip_region, b.clip_region, 1e-12, "clip_region");
  close_stat(a.clip_dual, b.clip_dual, 1e-12, "clip_dual");
  close_stat(a.clip_low_seq, b.clip_low_seq, 1e-12, "clip_low_seq");
  close_stat(a.clip_high_seq, b.clip_high_seq, 1e-12, "clip_high_seq");
  close_stat(a.weight_clip, b.weight_clip, 1e-12, "weight_clip");
  CHECK(a.opsm_dropped_seqs == b.opsm_dropped_seqs);
  CHECK(a.entropy_masked_tokens == b.entropy_masked_tokens);
}

/// Float packet rows vs the double general engine: every output and metric within tol (float
/// inputs are exact in double, so the only difference is the rows' float arithmetic).
template <class G = double, class MK = float>
void compare(const grpo::loss_options& o, const data& d, bool want_ptl, double tol) {
  const run_out f = run<float, G, MK>(o, d, want_ptl);
  const run_out e = run<double>(o, d, want_ptl);
  CHECK(e.s.engine_used == grpo::loss_engine::general);
  const bool packet =
      grpo::active_isa() == grpo::isa::avx2 || grpo::active_isa() == grpo::isa::avx512;
  if (packet && d.B * d.T > 0) CHECK(f.s.engine_used == grpo::loss_engine::general_rows);
  CHECK(close(f.s.loss, e.s.loss, tol, "loss") == 0);
  CHECK(close(f.s.policy_loss, e.s.policy_loss, tol, "policy_loss") == 0);
  CHECK(close(f.s.kl_loss, e.s.kl_loss, tol, "kl_loss") == 0);
  CHECK(f.s.entropy_loss == 0.0);
  int bad = 0;
  for (std::size_t k = 0; k < f.g.size() && bad < 5; ++k) {
    bad += close(f.g[k], e.g[k], tol, "grad_logp[" + std::to_string(k) + "]");
    if (want_ptl)
      bad += close(f.ptl[k], e.ptl[k], tol, "per_token_loss[" + std::to_string(k) + "]");
    bad += close(f.ge[k], 0.0, 0.0, "grad_entropy");
  }
  for (std::size_t k = 0; k < f.seq.size(); ++k)
    bad += close(f.seq[k], e.seq[k], tol, "per_seq_loss[" + std::to_string(k) + "]");
  CHECK(bad == 0);
  close_metrics(f.s.metrics, e.s.metrics, tol);
}

/// Bitwise equal statistics (the entropy sweep leaves the policy row's results alone).
void same_stat(const grpo::stat_accumulator& a, const grpo::stat_accumulator& b,
               const std::string& what) {
  INFO(what);
  CHECK(a.weight == b.weight);
  CHECK(a.sum == b.sum);
  CHECK(a.sum_sq == b.sum_sq);
  CHECK(a.min == b.min);
  CHECK(a.max == b.max);
}

/// A float call with the entropy input (o: its entropy term, top-entropy mask, rollout IS) on the
/// rows against the general engine in double: loss, policy / KL / entropy losses, every gradient,
/// per-token loss and dL/dH (not requested: both untouched, -7) and every metric within tol.
/// The double oracle is the general engine: the TIS rows' options (rollout IS, is_weights, OPSM)
/// go there for double inputs; the others are forced there by an OPSM threshold that keeps every
/// token (1e30). The caller checks the float call's engine (tis_rows: the options take the TIS
/// rows where the packet rows exist, else the token rows).
struct ent_pair {
  run_out f, e;
  bool tis_rows = false;
};
template <class G = double, class MK = float>
ent_pair entropy_vs_general(const grpo::loss_options& o, const data& d, bool want_ptl,
                            bool want_ge, double tol) {
  ent_pair r;
  r.f = run<float, G, MK>(o, d, want_ptl, true, want_ge);
  r.tis_rows = o.tis.enabled || o.opsm_threshold.has_value() || !d.isw.empty();
  grpo::loss_options og = o;
  if (!r.tis_rows) og.opsm_threshold = 1e30;
  r.e = run<double>(og, d, want_ptl, true, want_ge);
  const run_out &f = r.f, &e = r.e;
  CHECK(e.s.engine_used == grpo::loss_engine::general);
  CHECK(close(f.s.loss, e.s.loss, tol, "loss") == 0);
  CHECK(close(f.s.policy_loss, e.s.policy_loss, tol, "policy_loss") == 0);
  CHECK(close(f.s.kl_loss, e.s.kl_loss, tol, "kl_loss") == 0);
  CHECK(close(f.s.entropy_loss, e.s.entropy_loss, tol, "entropy_loss") == 0);
  int bad = 0;
  for (std::size_t k = 0; k < f.g.size() && bad < 5; ++k) {
    bad += close(f.g[k], e.g[k], tol, "grad_logp[" + std::to_string(k) + "]");
    if (want_ptl)
      bad += close(f.ptl[k], e.ptl[k], tol, "per_token_loss[" + std::to_string(k) + "]");
    bad += close(f.ge[k], e.ge[k], tol, "grad_entropy[" + std::to_string(k) + "]");
  }
  CHECK(bad == 0);
  close_metrics(f.s.metrics, e.s.metrics, tol);
  return r;
}

/// entropy_vs_general, the float call on the expected rows (the token rows, or the TIS rows where
/// the options carry a rollout IS weight or OPSM), and the entropy term is separable: the same
/// float call without it gives the same policy results bit for bit (grad_logp, per-token loss,
/// policy and KL losses, every other metric) and loss = policy + kl_coef KL - entropy_coef H.
template <class G = double, class MK = float>
void compare_entropy(const grpo::loss_options& o, const data& d, bool want_ptl, bool want_ge,
                     double tol, bool separable = true) {
  const ent_pair r = entropy_vs_general<G, MK>(o, d, want_ptl, want_ge, tol);
  const run_out &f = r.f, &e = r.e;
  const bool tis_rows = r.tis_rows;
  const bool packet =
      grpo::active_isa() == grpo::isa::avx2 || grpo::active_isa() == grpo::isa::avx512;
  if (d.B * d.T > 0) {
    if (!tis_rows)  // (the packet rows, or the lane-generic rows on baseline)
      CHECK(f.s.engine_used == grpo::loss_engine::token_rows_simd);
    else if (packet)
      CHECK(f.s.engine_used == grpo::loss_engine::general_rows);
  }
  if (!tis_rows) {  // double inputs: the lane-generic token rows, to 1e-12
    const run_out dd = run<double>(o, d, want_ptl, true, want_ge);
    if (d.B * d.T > 0) CHECK(dd.s.engine_used == grpo::loss_engine::token_rows_simd);
    CHECK(close(dd.s.entropy_loss, e.s.entropy_loss, 1e-12, "entropy_loss (double)") == 0);
    CHECK(close(dd.s.loss, e.s.loss, 1e-12, "loss (double)") == 0);
    close_stat(dd.s.metrics.entropy, e.s.metrics.entropy, 1e-12, "entropy (double)");
    CHECK(dd.ge == e.ge);  // (-coef s_ent) m in double: the general engine's product
  }
  // Separable: the policy row's results do not see the entropy term (unless the sweep flagged a
  // row, which is then rerun in double as a whole: separable = false; or the call without the
  // entropy term runs other rows: the lane-generic rows of the baseline path).
  if (!separable) return;
  grpo::loss_options o0 = o;
  o0.entropy_coef = 0.0;
  const run_out z = run<float, G, MK>(o0, d, want_ptl, false, want_ge);
  if (z.s.engine_used != f.s.engine_used) return;
  CHECK(f.g == z.g);
  // (bit for bit: a NaN is_weight on padding gives a NaN per-token loss there in both)
  if (want_ptl)
    CHECK((f.ptl.size() == z.ptl.size() &&
           std::memcmp(f.ptl.data(), z.ptl.data(), f.ptl.size() * sizeof(double)) == 0));
  CHECK(f.s.policy_loss == z.s.policy_loss);
  CHECK(f.s.kl_loss == z.s.kl_loss);
  CHECK(f.s.loss == f.s.policy_loss + o.kl_coef * f.s.kl_loss - o.entropy_coef * f.s.entropy_loss);
  same_stat(f.s.metrics.approx_kl, z.s.metrics.approx_kl, "approx_kl");
  same_stat(f.s.metrics.ratio, z.s.metrics.ratio, "ratio");
  same_stat(f.s.metrics.advantage, z.s.metrics.advantage, "advantage");
  same_stat(f.s.metrics.kl, z.s.metrics.kl, "kl");
  same_stat(f.s.metrics.clip_high, z.s.metrics.clip_high, "clip_high");
  CHECK(z.s.metrics.entropy.weight == 0.0);
}

grpo::loss_options gmpo_trl(double beta) {
  grpo::loss_options o = grpo::preset("trl_gmpo");
  o.kl_coef = beta;
  return o;
}
grpo::loss_options vespo(double beta) {
  grpo::trl_args a;
  a.loss_type = "vespo";
  a.beta = beta;
  return grpo::from_trl(a);
}

// Float rounding of the rows: one float exp / product per token against double, lane sums
// flushed to double every 16 steps; 2e-5 relative covers it with a wide margin at these sizes.
constexpr double kTol = 2e-5;

/// The rollout-IS configurations: 0 token TIS, 1 sequence TIS, 2 OpenRLHF seq-mask-tis.
enum class tis_w { token, sequence, seq_mask };

/// TRL dapo (clip-higher 0.28, beta) with `kind`: the base of the option builders below.
grpo::loss_options dapo_opts(grpo::policy_loss_kind kind, double beta) {
  grpo::trl_args a;
  a.loss_type = "dapo";
  a.beta = beta;
  a.epsilon_high = 0.28;
  grpo::loss_options o = grpo::from_trl(a);
  o.policy.kind = kind;
  return o;
}

/// TRL dapo (clip-higher 0.28) with `kind` and a rollout IS weight: token TIS truncate at 1.3
/// (mask mode: IcePop [0.8, 1.3]), sequence TIS truncate at 2 with verl's log clamp 20 (mask
/// mode: [0.5, 2]), seq-mask-tis keeping rows whose geometric-mean weight is in [0.97, 1.03].
grpo::loss_options tis_opts(grpo::policy_loss_kind kind, tis_w w, bool mask_mode, double beta) {
  grpo::loss_options o = dapo_opts(kind, beta);
  o.tis.enabled = true;
  o.tis.mode = mask_mode ? grpo::ops::tis_mode::mask : grpo::ops::tis_mode::truncate;
  if (w == tis_w::token) {
    o.tis.c_min = mask_mode ? 0.8 : 0.0;
    o.tis.c_max = 1.3;
  } else if (w == tis_w::sequence) {
    o.tis.sequence = true;
    o.tis.c_min = mask_mode ? 0.5 : 0.0;
    o.tis.c_max = 2.0;
    o.tis.log_clamp = 20.0;
  } else {
    o.tis.seq_mask = true;
    o.tis.c_min = 0.97;
    o.tis.c_max = 1.03;
  }
  return o;
}

}  // namespace

TEST_CASE("general rows: GMPO (TRL and verl) and VESPO equal the double general engine") {
  for (long T : {1L, 13L, 37L, 64L, 300L}) {
    const data d = make(9, T, static_cast<unsigned>(T));
    for (double beta : {0.0, 0.04}) {
      for (bool ptl : {false, true}) {
        CAPTURE(T);
        CAPTURE(beta);
        CAPTURE(ptl);
        compare(gmpo_trl(beta), d, ptl, kTol);
        grpo::loss_options v = grpo::preset("verl_geo_mean");
        v.kl_coef = beta;
        compare(v, d, ptl, kTol);
        compare(vespo(beta), d, ptl, kTol);
      }
    }
  }
}

TEST_CASE("general rows: rollout IS (token TIS, sequence TIS, seq-mask-tis) equal the double "
          "general engine, every token-level kind") {
  using K = grpo::policy_loss_kind;
  for (long T : {1L, 13L, 64L, 300L}) {
    for (bool tok_adv : {false, true}) {
      const data d = tok_adv ? make_tok(9, T, static_cast<unsigned>(T) + 3)
                             : make(9, T, static_cast<unsigned>(T) + 3);
      for (K kind : {K::ppo_clip, K::cispo, K::sapo, K::reinforce}) {
        for (tis_w w : {tis_w::token, tis_w::sequence, tis_w::seq_mask}) {
          for (bool mask_mode : {false, true}) {
            if (w == tis_w::seq_mask && mask_mode) continue;  // (mode ignored there)
            for (double beta : {0.0, 0.04}) {
              CAPTURE(T);
              CAPTURE(tok_adv);
              CAPTURE(static_cast<int>(kind));
              CAPTURE(static_cast<int>(w));
              CAPTURE(mask_mode);
              CAPTURE(beta);
              grpo::loss_options o = tis_opts(kind, w, mask_mode, beta);
              compare(o, d, beta != 0.0, kTol);  // per-token loss on with KL, off without
              if (kind == K::cispo) {
                o.policy.cispo = grpo::cispo_clip::verl_clip;
                compare(o, d, beta == 0.0, kTol);
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("general rows: rollout IS with verl clamps, dual clip, other aggregations, unclamped "
          "approx_kl, a clamped KL estimator, on-policy") {
  const data d = make(11, 45, 17);
  const data dt = make_tok(11, 45, 19);
  for (bool unclamped : {false, true}) {
    CAPTURE(unclamped);
    grpo::loss_options o = tis_opts(grpo::policy_loss_kind::ppo_clip, tis_w::token, false, 0.1);
    o.kl.estimator = grpo::ops::kl_estimator::k2;
    o.kl.outer_clamp = 10.0;
    o.policy.log_ratio_min = -0.3;
    o.policy.log_ratio_max = 0.25;
    o.policy.dual_clip_c = 3.0;
    o.tis.log_clamp = 0.2;  // binds on some tokens (|lo - ls| up to ~0.5)
    o.approx_kl_unclamped = unclamped;
    compare(o, d, true, kTol);
    compare(o, dt, false, kTol);
    o.agg.mode = grpo::agg_mode::seq_mean_token_mean;
    compare(o, dt, true, kTol);
    o.agg.mode = grpo::agg_mode::seq_mean_token_sum_norm;
    o.tis.sequence = true;
    compare(o, d, false, kTol);
  }
  // On-policy (no old_logp): the ratio is 1, the weight exp(lp - ls) still bounds the term.
  grpo::loss_options o = tis_opts(grpo::policy_loss_kind::ppo_clip, tis_w::token, true, 0.04);
  data on = d;
  on.on_policy = true;
  on.lo = on.lp;  // (the double engine's sampler base: lp, as the rows' on-policy lo)
  compare(o, on, true, kTol);
}

TEST_CASE("general rows: clamped KL estimator, log-ratio clamp, unclamped approx_kl") {
  const data d = make(11, 45, 7);
  for (bool unclamped : {false, true}) {
    CAPTURE(unclamped);
    grpo::loss_options o = vespo(0.1);
    o.kl.estimator = grpo::ops::kl_estimator::k2;
    o.kl.outer_clamp = 10.0;
    o.policy.log_ratio_min = -0.3;
    o.policy.log_ratio_max = 0.25;
    o.approx_kl_unclamped = unclamped;
    compare(o, d, true, kTol);
    grpo::loss_options g = gmpo_trl(0.1);
    g.policy.log_ratio_min = -0.3;
    g.policy.log_ratio_max = 0.25;
    g.approx_kl_unclamped = unclamped;
    compare(g, d, false, kTol);
  }
}

TEST_CASE("general rows: float outputs past the streaming-store size, unaligned rows") {
  // 1024 x 4099 float gradients = 16.8 MB >= GRPO_LOSS_STREAM_STORE_BYTES (16 MiB): the rows'
  // gradient stores stream; rows start at every alignment (4099 = 3 mod 16).
  const data d = make(1024, 4099, 5);
  compare<float>(gmpo_trl(0.04), d, false, kTol);
  compare<float>(vespo(0.0), d, false, kTol);
}

TEST_CASE("general rows: empty batches (no rows, no columns)") {
  for (const auto& shape : {std::pair<long, long>{0, 5}, std::pair<long, long>{3, 0}}) {
    const data d = make(shape.first, shape.second, 1);
    // (no KL: an empty ref_logp view beside kl_coef != 0 is a named error of every engine)
    compare(gmpo_trl(0.0), d, true, kTol);
    compare(vespo(0.0), d, false, kTol);
  }
}

TEST_CASE("general rows: integer masks") {
  data d = make(8, 57, 9);
  for (float& m : d.mask) m = m != 0.f ? 1.f : 0.f;  // (an integer mask is 0 / 1 here)
  compare<double, int>(gmpo_trl(0.04), d, true, kTol);
  compare<float, int>(vespo(0.04), d, false, kTol);
}

TEST_CASE("general rows: flagged rows rerun in double (named errors, float overflow)") {
  data d = make(6, 40, 3);
  // A NaN on a padding position is ignored; on a valid token it is the named error.
  d.lp[static_cast<std::size_t>(0 * d.T + d.T - 1)] = std::nanf("");  // row 0: len 3
  compare(gmpo_trl(0.04), d, false, kTol);
  compare(vespo(0.04), d, false, kTol);
  data bad = d;
  bad.lp[static_cast<std::size_t>(5 * bad.T + 1)] = std::nanf("");  // row 5: len 38
  CHECK_THROWS_WITH_AS(run<float>(vespo(0.0), bad, false), doctest::Contains("logp"), grpo::error);
  bad = d;
  bad.lr[static_cast<std::size_t>(5 * bad.T + 2)] = INFINITY;
  CHECK_THROWS_WITH_AS(run<float>(gmpo_trl(0.04), bad, false), doctest::Contains("ref_logp"),
                       grpo::error);
  // A log ratio of 100 on a valid token: exp overflows float (the ratio metric) but not double.
  // The row is rerun in double, so the float call equals the double engine bit for bit there.
  data big = d;
  big.lo[static_cast<std::size_t>(5 * big.T + 4)] =
      big.lp[static_cast<std::size_t>(5 * big.T + 4)] - 100.f;
  for (const auto& o : {gmpo_trl(0.04), vespo(0.04)}) {
    const run_out f = run<float>(o, big, true);
    const run_out e = run<double>(o, big, true);
    CHECK(std::isfinite(f.s.metrics.ratio.max));
    CHECK(f.s.metrics.ratio.max == e.s.metrics.ratio.max);
    for (long t = 0; t < big.T; ++t) {
      const auto k = static_cast<std::size_t>(5 * big.T + t);
      CHECK(f.g[k] == e.g[k]);
      CHECK(f.ptl[k] == e.ptl[k]);
    }
    CHECK(close(f.s.loss, e.s.loss, kTol, "loss") == 0);
  }
}

TEST_CASE("general rows: the baseline path runs the general engine (bitwise as the double call)") {
  const grpo::scoped_isa_limit pin(grpo::isa::baseline);
  const data d = make(5, 33, 11);
  for (const auto& o : {gmpo_trl(0.04), vespo(0.04)}) {
    const run_out f = run<float>(o, d, true);
    const run_out e = run<double>(o, d, true);
    CHECK(f.s.engine_used == grpo::loss_engine::general);
    CHECK(f.s.loss == e.s.loss);
    CHECK(f.g == e.g);
    CHECK(f.ptl == e.ptl);
  }
}

namespace {
/// TRL dapo (clip-higher 0.28, beta) with `kind`, the entropy bonus `coef` and aggregation
/// `ag` for the policy and the entropy terms (Dr. GRPO: the constant L = 1024).
grpo::loss_options ent_opts(grpo::policy_loss_kind kind, double beta, double coef,
                            grpo::agg_mode ag) {
  grpo::loss_options o = dapo_opts(kind, beta);
  o.entropy_coef = coef;
  o.agg.mode = ag;
  o.entropy_agg = grpo::agg_options{};
  o.entropy_agg.mode = ag;
  if (ag == grpo::agg_mode::seq_mean_token_sum_norm) o.agg.norm_length = 1024.0;
  if (ag == grpo::agg_mode::seq_mean_token_sum_norm) o.entropy_agg.norm_length = 1024.0;
  return o;
}
constexpr grpo::agg_mode kEntAggs[] = {
    grpo::agg_mode::token_mean, grpo::agg_mode::seq_mean_token_sum,
    grpo::agg_mode::seq_mean_token_mean, grpo::agg_mode::seq_mean_token_sum_norm};
}  // namespace

TEST_CASE("token rows: the entropy term (bonus of either sign, or the metric alone) equals the "
          "double general engine, every token kind, KL, aggregation and output set") {
  using K = grpo::policy_loss_kind;
  for (long T : {1L, 13L, 64L, 300L}) {
    for (bool tok_adv : {false, true}) {
      const data d = tok_adv ? make_tok(9, T, static_cast<unsigned>(T) + 5)
                             : make(9, T, static_cast<unsigned>(T) + 5);
      for (K kind : {K::ppo_clip, K::cispo, K::sapo, K::reinforce}) {
        for (double beta : {0.0, 0.04}) {
          int v = 0;
          for (double coef : {0.0, 1e-2, -3e-3}) {
            for (grpo::agg_mode ag : kEntAggs) {
              const bool ptl = (v & 1) != 0, ge = (v & 2) != 0;  // every pair for each kind
              ++v;
              CAPTURE(T);
              CAPTURE(tok_adv);
              CAPTURE(static_cast<int>(kind));
              CAPTURE(beta);
              CAPTURE(coef);
              CAPTURE(static_cast<int>(ag));
              CAPTURE(ptl);
              CAPTURE(ge);
              compare_entropy(ent_opts(kind, beta, coef, ag), d, ptl, ge, kTol);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("token rows: entropy with verl clamps, dual clip, a clamped KL, a global token count, "
          "integer masks, float outputs, on-policy") {
  const data d = make(11, 45, 23);
  grpo::loss_options o = ent_opts(grpo::policy_loss_kind::ppo_clip, 0.1, 1e-3,
                                  grpo::agg_mode::token_mean);
  o.kl.estimator = grpo::ops::kl_estimator::k2;
  o.kl.outer_clamp = 10.0;
  o.policy.log_ratio_min = -0.3;
  o.policy.log_ratio_max = 0.25;
  o.policy.dual_clip_c = 3.0;
  compare_entropy(o, d, true, true, kTol);
  o.entropy_agg.global_tokens = 4096.0;  // the step's token count (micro-batch invariance)
  compare_entropy(o, d, false, true, kTol);
  compare_entropy<float>(o, d, true, true, kTol);
  data bin = d;
  for (float& m : bin.mask) m = m != 0.f ? 1.f : 0.f;  // (an integer mask is 0 / 1)
  compare_entropy<float, int>(o, bin, false, true, kTol);
  compare_entropy<double, int>(ent_opts(grpo::policy_loss_kind::sapo, 0.0, -1e-3,
                                        grpo::agg_mode::seq_mean_token_mean),
                               bin, true, false, kTol);
  data on = d;
  on.on_policy = true;
  compare_entropy(ent_opts(grpo::policy_loss_kind::cispo, 0.04, 2e-3, grpo::agg_mode::token_mean),
                  on, false, true, kTol);
}

TEST_CASE("TIS rows: the entropy term (token TIS, sequence TIS, seq-mask-tis) equals the double "
          "general engine") {
  using K = grpo::policy_loss_kind;
  for (long T : {13L, 300L}) {
    const data d = make_tok(9, T, static_cast<unsigned>(T) + 9);
    int v = 0;
    for (K kind : {K::ppo_clip, K::cispo, K::sapo, K::reinforce}) {
      for (tis_w w : {tis_w::token, tis_w::sequence, tis_w::seq_mask}) {
        for (double coef : {0.0, 5e-3}) {
          const bool ptl = (v & 1) != 0, ge = (v & 2) != 0;
          ++v;
          CAPTURE(T);
          CAPTURE(static_cast<int>(kind));
          CAPTURE(static_cast<int>(w));
          CAPTURE(coef);
          grpo::loss_options o = tis_opts(kind, w, false, v % 3 == 0 ? 0.0 : 0.04);
          o.entropy_coef = coef;
          o.entropy_agg.mode = v % 2 == 0 ? grpo::agg_mode::token_mean
                                          : grpo::agg_mode::seq_mean_token_mean;
          compare_entropy(o, d, ptl, ge, kTol);
        }
      }
    }
  }
}

TEST_CASE("token rows: the entropy term against a hand-computed token mean") {
  // Independent of the library's aggregation code: token_mean over the valid tokens of the
  // non-truncated rows, E = sum m H / sum m; loss -= coef E; dL/dH = -coef m / sum m.
  const data d = make(9, 70, 31);
  const double coef = 0.02;
  double smh = 0.0, sm = 0.0, mn = INFINITY, mx = -INFINITY;
  for (long i = 0; i < d.B; ++i) {
    if (d.trunc[static_cast<std::size_t>(i)]) continue;
    for (long t = 0; t < d.T; ++t) {
      const auto k = static_cast<std::size_t>(i * d.T + t);
      const double m = d.mask[k], h = d.ent[k];
      if (m == 0.0) continue;
      smh += m * h;
      sm += m;
      mn = std::min(mn, h);
      mx = std::max(mx, h);
    }
  }
  for (grpo::policy_loss_kind kind : {grpo::policy_loss_kind::ppo_clip,
                                      grpo::policy_loss_kind::reinforce}) {
    const grpo::loss_options o = ent_opts(kind, 0.04, coef, grpo::agg_mode::token_mean);
    for (bool f32 : {true, false}) {
      const run_out r = f32 ? run<float>(o, d, false, true, true) : run<double>(o, d, false, true);
      CHECK(r.s.engine_used == grpo::loss_engine::token_rows_simd);
      CHECK(close(r.s.entropy_loss, smh / sm, kTol, "entropy_loss") == 0);
      CHECK(close(r.s.metrics.entropy.mean(), smh / sm, kTol, "entropy mean") == 0);
      CHECK(r.s.metrics.entropy.weight == sm);
      CHECK(r.s.metrics.entropy.min == doctest::Approx(mn).epsilon(1e-7));
      CHECK(r.s.metrics.entropy.max == doctest::Approx(mx).epsilon(1e-7));
      CHECK(close(r.s.loss, r.s.policy_loss + 0.04 * r.s.kl_loss - coef * smh / sm, kTol,
                  "loss") == 0);
      int bad = 0;
      for (long i = 0; i < d.B; ++i)
        for (long t = 0; t < d.T; ++t) {
          const auto k = static_cast<std::size_t>(i * d.T + t);
          const double m = d.trunc[static_cast<std::size_t>(i)] ? 0.0 : d.mask[k];
          bad += close(r.ge[k], -coef * m / sm, 1e-7, "grad_entropy[" + std::to_string(k) + "]");
        }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("token rows: entropy past the streaming-store size, unaligned rows") {
  // 1024 x 4099 float outputs: the dL/dH stores stream like the gradient's (aligned steps).
  const data d = make(1024, 4099, 41);
  compare_entropy<float>(ent_opts(grpo::policy_loss_kind::ppo_clip, 0.04, 1e-3,
                                  grpo::agg_mode::token_mean),
                         d, false, true, kTol);
}

TEST_CASE("token rows: a non-finite entropy on a valid token is the named error, on padding "
          "ignored; float overflow of the sweep's sums reruns the row in double") {
  const data d = make(6, 40, 3);  // (padding entropies are non-finite already: ignored)
  for (bool tis : {false, true}) {
    CAPTURE(tis);
    grpo::loss_options o = tis ? tis_opts(grpo::policy_loss_kind::ppo_clip, tis_w::token, false, 0.04)
                               : ent_opts(grpo::policy_loss_kind::ppo_clip, 0.04, 0.0,
                                          grpo::agg_mode::token_mean);
    for (double coef : {0.0, 1e-3}) {
      o.entropy_coef = coef;
      for (float v : {std::nanf(""), INFINITY, -INFINITY}) {
        data bad = d;
        bad.ent[static_cast<std::size_t>(5 * bad.T + 7)] = v;  // row 5: len 38
        CHECK_THROWS_WITH_AS(run<float>(o, bad, false, true), doctest::Contains("entropy"),
                             grpo::error);
        CHECK_THROWS_WITH_AS(run<double>(o, bad, false, true), doctest::Contains("entropy"),
                             grpo::error);
        bad.ent[static_cast<std::size_t>(5 * bad.T + 7)] = d.ent[5 * 40 + 7];
        bad.ent[static_cast<std::size_t>(5 * bad.T + 39)] = v;  // row 5's padding
        bad.ent[static_cast<std::size_t>(1 * bad.T + 4)] = v;   // a hole of row 1
        const run_out a = run<float>(o, bad, true, true);
        const run_out b = run<float>(o, d, true, true);
        CHECK(a.s.loss == b.s.loss);
        CHECK(a.s.entropy_loss == b.s.entropy_loss);
        CHECK(a.ge == b.ge);
      }
    }
    // A huge finite entropy: m H^2 overflows float (the sweep's lane sum), not double: the row
    // is rerun in double, so the call agrees with the double general engine.
    data big = d;
    big.ent[static_cast<std::size_t>(3 * big.T + 2)] = 1e30f;
    o.entropy_coef = 1e-3;
    compare_entropy(o, big, true, true, kTol, false);
  }
}

TEST_CASE("token rows: entropy on the baseline path (lane-generic rows) and with strided views "
          "(scalar rows)") {
  const data d = make(7, 37, 43);
  const grpo::loss_options o =
      ent_opts(grpo::policy_loss_kind::sapo, 0.04, 5e-3, grpo::agg_mode::seq_mean_token_sum);
  {
    const grpo::scoped_isa_limit pin(grpo::isa::baseline);  // the lane-generic rows
    compare_entropy(o, d, true, true, kTol);
  }
  // A strided entropy view: the scalar token rows (double, token order), whose entropy term is
  // the general engine's bit for bit.
  held_batch<double> hb = held(d, d.ent);
  grpo::loss_batch<double, double>& b = hb.b;
  b.entropy = hb.strided();
  const grpo::loss_result s = grpo::compute_loss(o, b);
  grpo::loss_options og = o;
  og.opsm_threshold = 1e30;
  const grpo::loss_result e = grpo::compute_loss(og, b);
  CHECK(s.engine_used == grpo::loss_engine::token_rows);
  CHECK(e.engine_used == grpo::loss_engine::general);
  CHECK(s.entropy_loss == e.entropy_loss);
  same_stat(s.metrics.entropy, e.metrics.entropy, "entropy");
  CHECK(s.grad_entropy == e.grad_entropy);
  CHECK(close(s.loss, e.loss, 1e-12, "loss") == 0);
}

TEST_CASE("token rows: compute_loss_metrics with the entropy metric (scratch gradient, threads)") {
  const data d = make(40, 77, 47);
  const grpo::loss_options o =
      ent_opts(grpo::policy_loss_kind::ppo_clip, 0.04, 0.0, grpo::agg_mode::token_mean);
  const std::vector<float> lp(d.lp), lo(d.lo), lr(d.lr), m(d.mask), a(d.adv), h(d.ent);
  grpo::loss_batch<float, float> b;
  b.logp = grpo::make_view(lp.data(), {d.B, d.T});
  b.old_logp = grpo::make_view(lo.data(), {d.B, d.T});
  b.ref_logp = grpo::make_view(lr.data(), {d.B, d.T});
  b.mask = grpo::make_view(m.data(), {d.B, d.T});
  b.advantages = grpo::broadcast_rows(a.data(), d.B, d.T);
  b.entropy = grpo::make_view(h.data(), {d.B, d.T});
  b.truncated = d.trunc;
  const grpo::loss_scalars s = grpo::compute_loss_metrics(o, b);
  const run_out f = run<float, float>(o, d, false, true, false);
  CHECK(s.engine_used == grpo::loss_engine::token_rows_simd);
  CHECK(s.loss == f.s.loss);
  CHECK(s.entropy_loss == f.s.entropy_loss);
  same_stat(s.metrics.entropy, f.s.metrics.entropy, "entropy");
  same_stat(s.metrics.ratio, f.s.metrics.ratio, "ratio");
}

namespace {
/// d with external IS weights in [0.3, 2] (no bounds apply to them), NaN / inf where the mask
/// is 0 (padding of row 0, the all-masked row 2, the truncated row 4, the holes of row 1): never
/// read into a result.
data with_isw(data d, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(0.3f, 2.0f);
  d.isw.resize(d.lp.size());
  for (float& w : d.isw) w = u(g);
  for (long i = 0; i < d.B; ++i)
    for (long t = 0; t < d.T; ++t) {
      const auto k = static_cast<std::size_t>(i * d.T + t);
      const bool hole = (i == 1 && t % 3 == 1) || i == 2 || i == 4 ||
                        (i == 0 && d.mask[k] == 0.f);
      if (hole && t % 2 == 0) d.isw[k] = t % 4 == 0 ? std::nanf("") : INFINITY;
    }
  return d;
}

/// TRL dapo (clip-higher 0.28, beta) with `kind`, aggregation `ag` and no rollout IS.
grpo::loss_options plain_opts(grpo::policy_loss_kind kind, double beta, grpo::agg_mode ag) {
  grpo::loss_options o = dapo_opts(kind, beta);
  o.agg.mode = ag;
  if (ag == grpo::agg_mode::seq_mean_token_sum_norm) o.agg.norm_length = 1024.0;
  return o;
}

/// The OPSM decisions of a batch computed here in double from the definition (TRL / the OPSM
/// paper: gap_i = sum_t m (ls - lp) / max(n_i, 1), ls the sampler or old log-prob; a token is
/// dropped iff A < 0 and gap_i > delta): the dropped-sequence count and the final token count.
std::pair<double, double> opsm_oracle(const data& d, double delta, bool den) {
  double dropped = 0, tokens = 0;
  for (long i = 0; i < d.B; ++i) {
    if (d.trunc[static_cast<std::size_t>(i)]) continue;
    double n = 0, sg = 0;
    for (long t = 0; t < d.T; ++t) {
      const auto k = static_cast<std::size_t>(i * d.T + t);
      const double m = d.mask[k];
      if (m == 0.0) continue;
      const double ls = d.smp ? d.ls[k] : (d.on_policy ? d.lp[k] : d.lo[k]);
      n += m;
      sg += m * (ls - static_cast<double>(d.lp[k]));
    }
    const double gap = sg / std::max(n, 1.0);
    bool drop = false;
    for (long t = 0; t < d.T; ++t) {
      const auto k = static_cast<std::size_t>(i * d.T + t);
      const double m = d.mask[k];
      if (m == 0.0) continue;
      const double A = d.adv_tok.empty() ? d.adv[static_cast<std::size_t>(i)] : d.adv_tok[k];
      const bool keep = A >= 0.0 || gap <= delta;
      drop = drop || !keep;
      tokens += keep || !den ? m : 0.0;
    }
    dropped += drop ? 1 : 0;
  }
  return {dropped, tokens};
}
}  // namespace

TEST_CASE("TIS rows: external is_weights equal the double general engine, every token-level "
          "kind, KL, aggregation, output set") {
  using K = grpo::policy_loss_kind;
  for (long T : {1L, 13L, 64L, 300L}) {
    for (bool tok_adv : {false, true}) {
      const unsigned seed = static_cast<unsigned>(T) + 11;
      const data d = with_isw(tok_adv ? make_tok(9, T, seed) : make(9, T, seed), seed);
      int v = 0;
      for (K kind : {K::ppo_clip, K::cispo, K::sapo, K::reinforce}) {
        for (double beta : {0.0, 0.04}) {
          for (grpo::agg_mode ag : kEntAggs) {
            ++v;
            CAPTURE(T);
            CAPTURE(tok_adv);
            CAPTURE(static_cast<int>(kind));
            CAPTURE(beta);
            CAPTURE(static_cast<int>(ag));
            grpo::loss_options o = plain_opts(kind, beta, ag);
            if (kind == K::cispo && v % 2 == 0) o.policy.cispo = grpo::cispo_clip::verl_clip;
            compare(o, d, v % 3 != 0, kTol);
          }
        }
      }
    }
  }
  // verl clamps, dual clip, a clamped KL, unclamped approx_kl; float outputs; integer masks;
  // on-policy; the entropy term beside the weights.
  data d = with_isw(make_tok(11, 45, 29), 29);
  grpo::loss_options o = plain_opts(K::ppo_clip, 0.1, grpo::agg_mode::token_mean);
  o.kl.estimator = grpo::ops::kl_estimator::k2;
  o.kl.outer_clamp = 10.0;
  o.policy.log_ratio_min = -0.3;
  o.policy.log_ratio_max = 0.25;
  o.policy.dual_clip_c = 3.0;
  o.approx_kl_unclamped = true;
  compare(o, d, true, kTol);
  compare<float>(o, d, false, kTol);
  data bin = d;
  for (float& m : bin.mask) m = m != 0.f ? 1.f : 0.f;
  compare<double, int>(o, bin, true, kTol);
  data on = d;
  on.on_policy = true;
  on.lo = on.lp;
  compare(o, on, false, kTol);
  o.entropy_coef = 2e-3;
  compare_entropy(o, d, true, true, kTol);
  // Hand-computed: REINFORCE with token_mean, no KL: loss = -sum m w A lp / sum m, dL/dlp =
  // -m w A / sum m (the weight is the caller's, unbounded).
  const grpo::loss_options r = plain_opts(K::reinforce, 0.0, grpo::agg_mode::token_mean);
  const run_out f = run<float>(r, d, false);
  double sm = 0, sl = 0;
  for (long i = 0; i < d.B; ++i)
    for (long t = 0; t < d.T; ++t) {
      const auto k = static_cast<std::size_t>(i * d.T + t);
      const double m = d.trunc[static_cast<std::size_t>(i)] ? 0.0 : d.mask[k];
      sm += m;
      if (m != 0.0) sl += m * static_cast<double>(d.isw[k]) * d.adv_tok[k] * d.lp[k];
    }
  CHECK(close(f.s.loss, -sl / sm, kTol, "REINFORCE loss") == 0);
  int bad = 0;
  for (long i = 0; i < d.B; ++i)
    for (long t = 0; t < d.T; ++t) {
      const auto k = static_cast<std::size_t>(i * d.T + t);
      const double m = d.trunc[static_cast<std::size_t>(i)] ? 0.0 : d.mask[k];
      const double want = m != 0.0 ? -m * static_cast<double>(d.isw[k]) * d.adv_tok[k] / sm : 0.0;
      bad += close(f.g[k], want, 1e-6, "REINFORCE grad[" + std::to_string(k) + "]");
    }
  CHECK(bad == 0);
}

TEST_CASE("TIS rows: a non-finite is_weight on a valid token is the named error, on padding "
          "ignored; a strided weight view runs the general engine") {
  const data d = with_isw(make(6, 40, 3), 3);  // (non-finite weights on padding already)
  const grpo::loss_options o = plain_opts(grpo::policy_loss_kind::ppo_clip, 0.04,
                                          grpo::agg_mode::token_mean);
  compare(o, d, true, kTol);
  for (float v : {std::nanf(""), INFINITY, -INFINITY}) {
    data bad = d;
    bad.isw[static_cast<std::size_t>(5 * bad.T + 7)] = v;  // row 5: len 38
    CHECK_THROWS_WITH_AS(run<float>(o, bad, false), doctest::Contains("is_weights"), grpo::error);
    CHECK_THROWS_WITH_AS(run<double>(o, bad, false), doctest::Contains("is_weights"),
                         grpo::error);
  }
  // A huge finite weight: its products overflow float, not double: the row reruns in double.
  data big = d;
  big.isw[static_cast<std::size_t>(3 * big.T + 2)] = 3e38f;
  const run_out f = run<float>(o, big, true);
  const run_out e = run<double>(o, big, true);
  const bool packet =
      grpo::active_isa() == grpo::isa::avx2 || grpo::active_isa() == grpo::isa::avx512;
  CHECK(f.s.engine_used ==
        (packet ? grpo::loss_engine::general_rows : grpo::loss_engine::general));
  for (long t = 0; t < big.T; ++t) {
    const auto k = static_cast<std::size_t>(3 * big.T + t);
    CHECK(f.g[k] == doctest::Approx(e.g[k]).epsilon(1e-12));
  }
  // A strided is_weights view (stride 2 along t): the general engine, same values.
  held_batch<float> hb = held<float>(d, d.isw);
  grpo::loss_batch<float, float>& b = hb.b;
  b.is_weights = hb.strided();
  const grpo::loss_result s = grpo::compute_loss(o, b);
  CHECK(s.engine_used == grpo::loss_engine::general);
  const run_out dd = run<double>(o, d, true);
  CHECK(close(s.loss, dd.s.loss, 1e-12, "strided loss") == 0);
  CHECK(close(s.metrics.is_weight.sum, dd.s.metrics.is_weight.sum, 1e-12, "strided weights") == 0);
}

TEST_CASE("TIS rows: OPSM (in / out of the denominator, with and without rollout IS or "
          "is_weights, sampler or old log-probs) equals the double general engine") {
  using K = grpo::policy_loss_kind;
  const double delta = 0.02;  // (row gaps drift by -0.06 .. 0.06: rows on both sides)
  double dropped_seen = 0;
  for (long T : {1L, 13L, 64L, 300L}) {
    for (bool tok_adv : {false, true}) {
      const unsigned seed = static_cast<unsigned>(T) + 21;
      data d = tok_adv ? make_tok(9, T, seed) : make(9, T, seed);
      int v = 0;
      for (K kind : {K::ppo_clip, K::cispo, K::sapo, K::reinforce}) {
        for (int w = 0; w < 4; ++w) {  // none (sampler / old), token TIS, sequence TIS, is_weights
          for (bool den : {true, false}) {
            ++v;
            const double beta = v % 3 == 0 ? 0.0 : 0.04;
            const grpo::agg_mode ag = kEntAggs[static_cast<std::size_t>(v % 4)];
            CAPTURE(T);
            CAPTURE(tok_adv);
            CAPTURE(static_cast<int>(kind));
            CAPTURE(w);
            CAPTURE(den);
            CAPTURE(beta);
            CAPTURE(static_cast<int>(ag));
            grpo::loss_options o =
                w == 1 || w == 2 ? tis_opts(kind, w == 1 ? tis_w::token : tis_w::sequence,
                                            v % 2 == 0, beta)
                                 : plain_opts(kind, beta, ag);
            o.agg.mode = ag;
            o.agg.norm_length = 1024.0;
            o.opsm_threshold = delta;
            o.opsm_in_denominator = den;
            data dd = w == 3 ? with_isw(d, seed) : d;
            dd.smp = w != 0 || v % 2 == 0;
            compare(o, dd, v % 5 != 0, kTol);
            const auto want = opsm_oracle(dd, delta, den);
            const run_out f = run<float>(o, dd, false);
            CHECK(f.s.metrics.opsm_dropped_seqs == want.first);
            CHECK(close(f.s.metrics.tokens, want.second, 1e-12, "tokens") == 0);
            dropped_seen += want.first;
          }
        }
      }
    }
  }
  CHECK(dropped_seen > 20);  // (the data drop rows: the test can see a wrong decision)
}

TEST_CASE("TIS rows: OPSM with verl clamps, the entropy term (not in the denominator), "
          "float outputs, integer masks, on-policy, NaN on valid vs dropped / masked tokens") {
  data d = make_tok(11, 45, 31);
  d.smp = true;
  grpo::loss_options o = plain_opts(grpo::policy_loss_kind::ppo_clip, 0.1,
                                    grpo::agg_mode::seq_mean_token_mean);
  o.kl.estimator = grpo::ops::kl_estimator::k2;
  o.kl.outer_clamp = 10.0;
  o.policy.log_ratio_min = -0.3;
  o.policy.log_ratio_max = 0.25;
  o.policy.dual_clip_c = 3.0;
  o.opsm_threshold = 0.0;
  for (bool den : {true, false}) {
    o.opsm_in_denominator = den;
    compare(o, d, true, kTol);
    compare<float>(o, d, false, kTol);
    data bin = d;
    for (float& m : bin.mask) m = m != 0.f ? 1.f : 0.f;
    compare<double, int>(o, bin, true, kTol);
  }
  // The entropy term beside OPSM out of the denominator (TRL's default): the TIS rows' sweep.
  o.opsm_in_denominator = false;
  o.entropy_coef = 1e-3;
  compare_entropy(o, d, true, true, kTol);
  // In the denominator the entropy term's mask is the final mask: the general engine.
  o.opsm_in_denominator = true;
  CHECK(run<float>(o, d, false, true).s.engine_used == grpo::loss_engine::general);
  o.entropy_coef = 0.0;
  data on = d;  // on-policy, no sampler: the gap is 0, nothing dropped
  on.on_policy = true;
  on.smp = false;
  on.lo = on.lp;
  const run_out f = run<float>(o, on, false);
  CHECK(f.s.metrics.opsm_dropped_seqs == 0.0);
  compare(o, on, true, kTol);
  // Row 5 (len 38, A < 0, gap 0.5 > delta) is dropped whole. A NaN logp on one of its valid
  // tokens is still the named error (the general engine checks the base mask); NaN on its
  // padding, and a log ratio of 100 on a kept row (float overflow: the row reruns in double),
  // are not.
  data rows = make(8, 40, 37);
  rows.smp = true;
  rows.adv[5] = -0.5f;
  for (long t = 0; t < rows.T; ++t) rows.ls[static_cast<std::size_t>(5 * rows.T + t)] =
      rows.lp[static_cast<std::size_t>(5 * rows.T + t)] + 0.5f;
  rows.lp[static_cast<std::size_t>(5 * rows.T + 39)] = std::nanf("");
  rows.adv[6] = 0.7f;
  rows.lo[static_cast<std::size_t>(6 * rows.T + 2)] =
      rows.lp[static_cast<std::size_t>(6 * rows.T + 2)] - 100.f;  // row 6: len 4
  for (bool den : {true, false}) {
    CAPTURE(den);
    o.opsm_in_denominator = den;
    compare(o, rows, true, kTol);
    CHECK(run<float>(o, rows, false).s.metrics.opsm_dropped_seqs >= 1.0);
    data bad = rows;
    bad.lp[static_cast<std::size_t>(5 * bad.T + 1)] = std::nanf("");
    CHECK_THROWS_WITH_AS(run<float>(o, bad, false), doctest::Contains("logp"), grpo::error);
    CHECK_THROWS_WITH_AS(run<double>(o, bad, false), doctest::Contains("logp"), grpo::error);
  }
}

namespace {
/// make() / make_tok() with sampler log-probs for OPSM beside a rollout IS weight: per row a
/// drift q_i of lo - ls (seq-mask-tis's log geometric mean: near its bounds log 0.97 / log 1.03,
/// so that a row mean over the wrong count decides otherwise) and lo - lp of about +0.1 (row gap
/// sum m (ls - lp) / n of about 0.1 - q_i > delta 0.02: OPSM drops the A < 0 tokens), except every
/// fourth row (lo - lp about -0.1: a gap below delta, every token kept).
data opsm_tis_data(long B, long T, unsigned seed, bool tok_adv) {
  data d = tok_adv ? make_tok(B, T, seed) : make(B, T, seed);
  d.smp = true;
  const float q[] = {0.02f, -0.02f, 0.012f, 0.025f, -0.025f, 0.005f, -0.012f, 0.018f};
  std::mt19937 g(seed + 5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (long i = 0; i < B; ++i)
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      d.lo[k] = d.lp[k] + (i % 4 == 3 ? -0.1f : 0.1f) + 0.15f * u(g);
      d.ls[k] = d.lo[k] - q[i % 8] + 0.01f * u(g);
    }
  return d;
}

/// Rows of d whose seq-mask-tis keep (exp(sum m (lo - ls) / n) in [c_min, c_max]) differs when n
/// is the base-mask count or OPSM's final count (OPSM in the denominator, threshold delta):
/// computed here in double from the definitions (the rows where a wrong count shows).
int seq_mask_count_sensitive_rows(const data& d, double delta, double c_min, double c_max) {
  int rows = 0;
  for (long i = 0; i < d.B; ++i) {
    if (d.trunc[static_cast<std::size_t>(i)]) continue;
    double nb = 0, nf = 0, sq = 0, sg = 0;
    for (long t = 0; t < d.T; ++t) {
      const auto k = static_cast<std::size_t>(i * d.T + t);
      const double m = d.mask[k];
      nb += m;
      sq += m * (static_cast<double>(d.lo[k]) - d.ls[k]);
      sg += m * (static_cast<double>(d.ls[k]) - d.lp[k]);
    }
    const double gap = sg / std::max(nb, 1.0);
    for (long t = 0; t < d.T; ++t) {
      const auto k = static_cast<std::size_t>(i * d.T + t);
      const double A = d.adv_tok.empty() ? d.adv[static_cast<std::size_t>(i)] : d.adv_tok[k];
      if (A >= 0.0 || gap <= delta) nf += d.mask[k];
    }
    auto keep = [&](double n) {
      const double r = std::exp(sq / n);
      return r >= c_min && r <= c_max;
    };
    if (nf != nb && keep(nb) != keep(nf)) ++rows;
  }
  return rows;
}
}  // namespace

TEST_CASE("TIS rows: OPSM beside token TIS, sequence TIS and seq-mask-tis, with rows that OPSM "
          "drops tokens of, equals the double general engine (the row weight over the base "
          "mask)") {
  // The general engine (finish_row, pass 1) forms the sequence weights from the base mask (loss
  // mask x truncation), before OPSM's final mask: OpenRLHF's seq-mask-tis is a masked mean over
  // the action mask and TRL's vLLM IS ratio is computed once per generation batch over the
  // completion mask, OPSM applied later per token. OPSM in the denominator changes the row
  // count n_fin only.
  using K = grpo::policy_loss_kind;
  const double delta = 0.02;
  int sensitive = 0, v = 0;
  for (long T : {1L, 13L, 64L, 300L}) {
    for (bool tok_adv : {false, true}) {
      const data d = opsm_tis_data(12, T, static_cast<unsigned>(T) + 41, tok_adv);
      sensitive += seq_mask_count_sensitive_rows(d, delta, 0.97, 1.03);
      for (K kind : {K::ppo_clip, K::cispo, K::sapo, K::reinforce}) {
        for (tis_w w : {tis_w::token, tis_w::sequence, tis_w::seq_mask}) {
          for (bool den : {true, false}) {
            ++v;
            const double beta = v % 3 == 0 ? 0.0 : 0.04;
            const bool mask_mode = w != tis_w::seq_mask && v % 2 == 0;
            // (per-row A: a dropped row's only trace of its weight is the per-token loss)
            const bool ptl = !tok_adv || v % 3 != 1;
            CAPTURE(T);
            CAPTURE(tok_adv);
            CAPTURE(static_cast<int>(kind));
            CAPTURE(static_cast<int>(w));
            CAPTURE(den);
            CAPTURE(beta);
            grpo::loss_options o = tis_opts(kind, w, mask_mode, beta);
            o.agg.mode = kEntAggs[static_cast<std::size_t>(v % 4)];
            o.agg.norm_length = 1024.0;
            o.opsm_threshold = delta;
            o.opsm_in_denominator = den;
            compare(o, d, ptl, kTol);
            const auto want = opsm_oracle(d, delta, den);
            const run_out f = run<float>(o, d, false);
            CHECK(f.s.metrics.opsm_dropped_seqs == want.first);
            CHECK(close(f.s.metrics.tokens, want.second, 1e-12, "tokens") == 0);
          }
        }
      }
    }
  }
  // (the data has rows where the count decides the seq-mask keep: the test can see it)
  CHECK(sensitive >= 4);
  MESSAGE("OPSM + rollout IS configurations: " << v << ", count-sensitive seq-mask rows: "
                                               << sensitive);
}

TEST_CASE("row kernels: results do not depend on where the output buffers lie (streaming stores)") {
  // 1024 x 4099 float outputs (>= GRPO_LOSS_STREAM_STORE_BYTES): the stores stream in rows that
  // start on a packet boundary. The same inputs with the gradient / dL/dH views moved by 0-15
  // floats (every residue mod 64 bytes, so every row's alignment changes) must give the same
  // loss, metrics and outputs bit for bit, on every row engine: token rows (with the entropy
  // sweep), TIS rows, GMPO rows, GSPO's sequence rows. (A head step before the first aligned
  // address used to move every token's lane with the address: the sums' last bits changed.)
  const data d = make(1024, 4099, 61);
  grpo::trl_args ga;  // TRL GSPO: sequence-level ratio, dapo aggregation, k3
  ga.loss_type = "dapo";
  ga.beta = 0.04;
  ga.importance_sampling_level = "sequence";
  const grpo::loss_options gspo = grpo::from_trl(ga);
  struct cfg {
    const char* name;
    grpo::loss_options o;
    bool ent;  ///< the entropy input (the GMPO / sequence rows take none)
    grpo::loss_engine engine;
  };
  const cfg cfgs[] = {
      {"token rows + entropy",
       ent_opts(grpo::policy_loss_kind::ppo_clip, 0.04, 1e-3, grpo::agg_mode::token_mean), true,
       grpo::loss_engine::token_rows_simd},
      {"TIS rows", tis_opts(grpo::policy_loss_kind::cispo, tis_w::token, false, 0.04), true,
       grpo::loss_engine::general_rows},
      {"GMPO rows", gmpo_trl(0.04), false, grpo::loss_engine::general_rows},
      {"GSPO sequence rows", gspo, false, grpo::loss_engine::sequence_rows}};
  const bool packet =
      grpo::active_isa() == grpo::isa::avx2 || grpo::active_isa() == grpo::isa::avx512;
  for (const cfg& c : cfgs) {
    CAPTURE(c.name);
    const grpo::loss_options& o = c.o;
    const run_out r0 = run<float, float>(o, d, false, c.ent, true, 0);
    if (packet) CHECK(r0.s.engine_used == c.engine);
    for (std::size_t off : {1u, 3u, 4u, 8u, 13u}) {
      CAPTURE(off);
      const run_out r = run<float, float>(o, d, false, c.ent, true, off);
      CHECK(r.s.engine_used == r0.s.engine_used);
      CHECK(r.s.loss == r0.s.loss);
      CHECK(r.s.policy_loss == r0.s.policy_loss);
      CHECK(r.s.kl_loss == r0.s.kl_loss);
      CHECK(r.s.entropy_loss == r0.s.entropy_loss);
      same_stat(r.s.metrics.approx_kl, r0.s.metrics.approx_kl, "approx_kl");
      same_stat(r.s.metrics.ratio, r0.s.metrics.ratio, "ratio");
      same_stat(r.s.metrics.kl, r0.s.metrics.kl, "kl");
      same_stat(r.s.metrics.entropy, r0.s.metrics.entropy, "entropy");
      CHECK(r.g == r0.g);
      CHECK(r.ge == r0.ge);
    }
  }
}

namespace {
/// The sort-based reference of quantile_select (torch.quantile, linear): the formula as written
/// before the selection replaced the sort.
template <class V>
double quantile_sorted(std::vector<V> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, v.size() - 1);
  return static_cast<double>(v[lo]) +
         (pos - static_cast<double>(lo)) * (static_cast<double>(v[hi]) - static_cast<double>(v[lo]));
}
std::uint64_t bits_of(double x) {
  std::uint64_t u = 0;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
/// quantile_select (on a copy), quantile_radix and the sorted reference agree bitwise for each q.
template <class V>
int check_quantiles(const std::vector<V>& v, const std::vector<double>& qs) {
  int n = 0;
  for (double q : qs) {
    std::vector<V> w = v;
    const double a = grpo::detail::quantile_select(w, q), b = quantile_sorted(v, q);
    const double c = grpo::detail::quantile_radix_of(v, q);  // (the token rows' radix select)
    CAPTURE(v.size());
    CAPTURE(q);
    CHECK(bits_of(a) == bits_of(b));
    CHECK(bits_of(c) == bits_of(b));
    ++n;
  }
  return n;
}
}  // namespace

TEST_CASE("top-entropy threshold: selection equals the sorted quantile bitwise (ties, duplicates, "
          "all equal, n = 1 / 2, q = 0 / 1, signed zeros, subnormals, float and double)") {
  std::vector<double> qs = {0.0, 1.0, 0.5, 0.95, 0.8, 0.5, 0.001, 0.999, 1.0 - 1e-12, 1e-12};
  std::mt19937 g(2026);
  std::uniform_real_distribution<double> uq(0.0, 1.0);
  for (int k = 0; k < 20; ++k) qs.push_back(uq(g));
  const float dn = std::numeric_limits<float>::denorm_min();
  int cases = 0;
  // Hand-picked samples.
  cases += check_quantiles<float>({1.5f}, qs);
  cases += check_quantiles<float>({2.f, -1.f}, qs);
  cases += check_quantiles<float>({-0.f, 0.f}, qs);
  cases += check_quantiles<float>({0.f, -0.f, -0.f, 0.f, 1.f}, qs);
  cases += check_quantiles<float>({dn, 0.f, -dn, 3 * dn, -0.f}, qs);
  cases += check_quantiles<double>({std::numeric_limits<double>::denorm_min(), -0.0, 0.0}, qs);
  cases += check_quantiles<float>(std::vector<float>(17, 0.75f), qs);
  cases += check_quantiles<double>({1e300, -1e300, 1e-300, 0.0}, qs);
  // Random samples: continuous, few distinct values (ties at every order statistic), signed
  // zeros and subnormals mixed in; n from 1 to 300 and a few large ones.
  std::uniform_real_distribution<float> u(0.f, 4.f);
  std::uniform_int_distribution<int> pick(0, 5);
  for (int rep = 0; rep < 400; ++rep) {
    const std::size_t n = rep < 300 ? static_cast<std::size_t>(rep + 1)
                                    : static_cast<std::size_t>(1000 + 997 * (rep - 300));
    const int kind = rep % 4;
    std::vector<float> v(n);
    for (auto& x : v) {
      if (kind == 0) x = u(g);
      if (kind == 1) x = static_cast<float>(pick(g)) * 0.25f;
      if (kind == 2) x = pick(g) == 0 ? -0.f : (pick(g) == 1 ? dn * static_cast<float>(pick(g)) : 0.f);
      if (kind == 3) x = pick(g) < 2 ? (pick(g) == 0 ? -0.f : 0.f) : u(g) - 2.f;
    }
    cases += check_quantiles(v, qs);
    cases += check_quantiles(std::vector<double>(v.begin(), v.end()), qs);
  }
  // Values over many octaves and both signs (every radix bin range), n up to 20,000.
  std::normal_distribution<double> ln(0.0, 12.0);
  for (int rep = 0; rep < 12; ++rep) {
    std::vector<double> v(static_cast<std::size_t>(17 + 1999 * rep));
    for (auto& x : v) x = (pick(g) == 0 ? -1.0 : 1.0) * std::exp(ln(g));
    cases += check_quantiles(v, qs);
    cases += check_quantiles(std::vector<float>(v.begin(), v.end()), qs);
  }
  MESSAGE("quantile cases compared bitwise: " << cases);
  // quantile_radix flags a non-finite valid value (the caller names it) and counts only the valid.
  for (double bad : {double(INFINITY), -double(INFINITY), std::nan(""), -std::nan("")}) {
    const std::vector<double> v = {1.0, bad, 2.0};
    for (bool valid : {true, false}) {
      const float m[3] = {1.f, valid ? 0.5f : 0.f, 1.f};
      auto each = [&](grpo::index_t, grpo::index_t, auto&& f) { f(v.data(), m, 3); };
      const auto r = grpo::detail::quantile_radix<double>(1, each, 0.5, 3, {});
      CHECK(r.nonfinite == valid);
      CHECK(r.n == (valid ? 3u : 2u));
      if (!valid) CHECK(r.value == 1.5);
      const std::vector<float> vf(v.begin(), v.end());
      const auto rf = grpo::detail::quantile_radix<float>(
          1, [&](grpo::index_t, grpo::index_t, auto&& f) { f(vf.data(), m, 3); }, 0.0, 3, {});
      CHECK(rf.nonfinite == valid);
      if (!valid) CHECK(rf.value == 1.0);
    }
  }
}

namespace {
/// The top-entropy mask on the token rows (float inputs: the packet rows; double: the
/// lane-generic rows) or the TIS rows against the general engine in double (entropy_vs_general:
/// loss, the three terms, every gradient, per-token loss and metric within tol, the counts,
/// tokens and entropy_masked_tokens exactly); the float call's engine (the TIS rows on the
/// packet paths, else the general engine); the double call on the token rows to 1e-12.
void compare_emask(const grpo::loss_options& o, const data& d, bool want_ptl, bool want_ge,
                   double tol) {
  // (rollout IS or is_weights: the TIS rows, and the double call is the general engine; OPSM,
  // which the TIS rows do not take beside the mask, is set by no caller)
  const ent_pair r = entropy_vs_general(o, d, want_ptl, want_ge, tol);
  const run_out &f = r.f, &e = r.e;
  const bool tis = r.tis_rows;
  const bool packet =
      grpo::active_isa() == grpo::isa::avx2 || grpo::active_isa() == grpo::isa::avx512;
  if (d.B * d.T > 0 && !tis) CHECK(f.s.engine_used == grpo::loss_engine::token_rows_simd);
  if (d.B * d.T > 0 && tis)
    CHECK(f.s.engine_used ==
          (packet ? grpo::loss_engine::general_rows : grpo::loss_engine::general));
  if (tis) return;
  const run_out dd = run<double>(o, d, want_ptl, true, want_ge);
  if (d.B * d.T > 0) CHECK(dd.s.engine_used == grpo::loss_engine::token_rows_simd);
  CHECK(close(dd.s.loss, e.s.loss, 1e-12, "loss (double)") == 0);
  CHECK(close(dd.s.policy_loss, e.s.policy_loss, 1e-12, "policy_loss (double)") == 0);
  CHECK(close(dd.s.entropy_loss, e.s.entropy_loss, 1e-12, "entropy_loss (double)") == 0);
  int bad = 0;
  for (std::size_t k = 0; k < f.g.size() && bad < 5; ++k) {
    bad += close(dd.g[k], e.g[k], 1e-12, "grad_logp (double)[" + std::to_string(k) + "]");
    if (want_ptl)
      bad += close(dd.ptl[k], e.ptl[k], 1e-12, "per_token_loss (double)[" + std::to_string(k) + "]");
    bad += close(dd.ge[k], e.ge[k], 1e-12, "grad_entropy (double)[" + std::to_string(k) + "]");
  }
  CHECK(bad == 0);
  close_metrics(dd.s.metrics, e.s.metrics, 1e-12);
}

/// make() with the valid entropies on a grid of 1/4 (ties at every order statistic, and at the
/// threshold itself for most rho).
data make_ties(long B, long T, unsigned seed) {
  data d = make(B, T, seed);
  for (auto& h : d.ent)
    if (std::isfinite(h)) h = std::round(h * 4.f) / 4.f;
  return d;
}

grpo::loss_options emask_opts(grpo::policy_loss_kind kind, double rho, bool den, int kl,
                              double coef, grpo::agg_mode ag) {
  grpo::loss_options o = ent_opts(kind, kl == 1 ? 0.04 : (kl == 2 ? 0.1 : 0.0), coef, ag);
  if (kl == 2) {
    o.kl.estimator = grpo::kl_estimator::k1;
    o.kl.outer_clamp = 10.0;
  }
  o.top_entropy_quantile = rho;
  o.entropy_mask_in_denominator = den;
  return o;
}
}  // namespace

TEST_CASE("token rows: the top-entropy mask (rho, in / out of the denominators, every token kind, "
          "KL, entropy bonus, aggregation) equals the double general engine") {
  const grpo::policy_loss_kind kinds[] = {
      grpo::policy_loss_kind::ppo_clip, grpo::policy_loss_kind::cispo,
      grpo::policy_loss_kind::sapo, grpo::policy_loss_kind::reinforce};
  const double coefs[] = {0.0, 1e-2, -3e-3};
  int n = 0;
  for (long T : {1L, 13L, 64L, 300L}) {
    const data d = make(9, T, static_cast<unsigned>(T) + 5);
    const data dt = make_ties(9, T, static_cast<unsigned>(T) + 6);
    for (grpo::policy_loss_kind kind : kinds)
      for (double rho : {0.05, 0.2, 0.5, 0.999})
        for (bool den : {true, false}) {
          const int kl = n % 3;
          const double coef = coefs[(n / 3) % 3];
          const grpo::agg_mode ag = kEntAggs[(n / 2) % 4];
          const bool ptl = (n / 5) % 2 == 0, ge = (n / 7) % 3 != 0;
          CAPTURE(T);
          CAPTURE(static_cast<int>(kind));
          CAPTURE(rho);
          CAPTURE(den);
          CAPTURE(kl);
          CAPTURE(coef);
          CAPTURE(static_cast<int>(ag));
          const grpo::loss_options o = emask_opts(kind, rho, den, kl, coef, ag);
          compare_emask(o, (n % 2) ? dt : d, ptl, ge, kTol);
          ++n;
        }
  }
  MESSAGE("top-entropy configurations compared: " << n);
}

TEST_CASE("token rows: the top-entropy mask with a given threshold (+-inf, a tie), no valid token, "
          "verl clamps and dual clip, per-token advantages, integer masks") {
  const data d = make_ties(8, 40, 77);
  for (bool den : {true, false}) {
    CAPTURE(den);
    for (double thr : {-HUGE_VAL, HUGE_VAL, 1.0, 1.25, 0.0}) {
      CAPTURE(thr);
      grpo::loss_options o = emask_opts(grpo::policy_loss_kind::ppo_clip, 0.2, den, 1, 1e-2,
                                        grpo::agg_mode::token_mean);
      o.entropy_threshold = thr;
      compare_emask(o, d, true, true, kTol);
    }
    // verl-style clamps and dual clip, a clamped KL, per-token advantages
    grpo::loss_options o = emask_opts(grpo::policy_loss_kind::ppo_clip, 0.2, den, 2, -3e-3,
                                      grpo::agg_mode::seq_mean_token_mean);
    o.policy.dual_clip_c = 3.0;
    o.policy.log_ratio_min = -0.3;
    o.policy.log_ratio_max = 0.3;
    compare_emask(o, make_tok(8, 40, 78), true, true, kTol);
    // no valid token at all: threshold -inf, every count 0
    data empty = d;
    std::fill(empty.mask.begin(), empty.mask.end(), 0.f);
    compare_emask(o, empty, true, true, kTol);
    // integer masks (the rows' mask buffer is of the mask type)
    const grpo::loss_options oi = emask_opts(grpo::policy_loss_kind::cispo, 0.5, den, 1, 1e-2,
                                             grpo::agg_mode::token_mean);
    data bin = d;
    for (auto& m : bin.mask) m = m != 0.f ? 1.f : 0.f;
    const run_out fi = run<float, double, int>(oi, bin, true, true);
    const run_out ff = run<float, double, float>(oi, bin, true, true);
    CHECK(fi.s.engine_used == grpo::loss_engine::token_rows_simd);
    CHECK(fi.s.loss == ff.s.loss);
    CHECK(fi.g == ff.g);
    CHECK(fi.ge == ff.ge);
  }
}

TEST_CASE("token rows: the top-entropy mask keeps ties at the threshold, names a non-finite entropy "
          "or input on a valid token (ignores it on padding)") {
  data d = make(6, 40, 3);
  // ties: every valid entropy 1 but one row's at 2; rho 0.5: threshold 1 (ties kept)
  for (auto& h : d.ent)
    if (std::isfinite(h)) h = 1.f;
  for (long t = 0; t < d.T; ++t) d.ent[static_cast<std::size_t>(3 * d.T + t)] = 2.f;
  for (bool den : {true, false}) {
    grpo::loss_options o = emask_opts(grpo::policy_loss_kind::ppo_clip, 0.5, den, 1, 1e-2,
                                      grpo::agg_mode::token_mean);
    const run_out f = run<float>(o, d, true, true);
    CHECK(f.s.metrics.entropy_masked_tokens == 0.0);
    compare_emask(o, d, true, true, kTol);
    for (float v : {std::nanf(""), INFINITY, -INFINITY}) {
      data bad = d;
      bad.ent[static_cast<std::size_t>(5 * bad.T + 7)] = v;  // row 5: valid
      CHECK_THROWS_WITH_AS(run<float>(o, bad, false, true), doctest::Contains("entropy"),
                           grpo::error);
      CHECK_THROWS_WITH_AS(run<double>(o, bad, false, true), doctest::Contains("entropy"),
                           grpo::error);
      bad.ent[static_cast<std::size_t>(5 * bad.T + 7)] = 1.f;
      bad.ent[static_cast<std::size_t>(5 * bad.T + 39)] = v;  // row 5's padding
      bad.ent[static_cast<std::size_t>(1 * bad.T + 4)] = v;   // a hole of row 1
      const run_out a = run<float>(o, bad, true, true);
      CHECK(a.s.loss == f.s.loss);
      CHECK(a.g == f.g);
      // a non-finite logp / advantage on a valid token the mask drops: the named error
      data lbad = d;
      for (long t = 0; t < 3; ++t) lbad.ent[static_cast<std::size_t>(5 * lbad.T + t)] = 0.5f;
      lbad.lp[static_cast<std::size_t>(5 * lbad.T + 1)] = v;
      CHECK_THROWS_WITH_AS(run<float>(o, lbad, false, true), doctest::Contains("logp"),
                           grpo::error);
      CHECK_THROWS_WITH_AS(run<double>(o, lbad, false, true), doctest::Contains("logp"),
                           grpo::error);
    }
  }
}

TEST_CASE("TIS rows: the top-entropy mask (token TIS, sequence TIS, seq-mask-tis, is_weights; in / "
          "out of the denominators) equals the double general engine") {
  const grpo::policy_loss_kind kinds[] = {
      grpo::policy_loss_kind::ppo_clip, grpo::policy_loss_kind::cispo,
      grpo::policy_loss_kind::sapo, grpo::policy_loss_kind::reinforce};
  int n = 0;
  for (long T : {13L, 64L, 300L}) {
    data d = make(9, T, static_cast<unsigned>(T) + 11);
    data dt = make_ties(9, T, static_cast<unsigned>(T) + 12);
    for (grpo::policy_loss_kind kind : kinds)
      for (tis_w w : {tis_w::token, tis_w::sequence, tis_w::seq_mask})
        for (bool den : {true, false}) {
          const double rho = (n % 2) ? 0.2 : 0.5;
          CAPTURE(T);
          CAPTURE(static_cast<int>(kind));
          CAPTURE(static_cast<int>(w));
          CAPTURE(den);
          grpo::loss_options o = tis_opts(kind, w, (n / 2) % 2 == 1, (n % 3) ? 0.04 : 0.0);
          o.entropy_coef = (n % 3 == 2) ? 1e-2 : (n % 3 == 1 ? -3e-3 : 0.0);
          o.agg.mode = kEntAggs[(n / 3) % 4];
          o.entropy_agg.mode = o.agg.mode;
          if (o.agg.mode == grpo::agg_mode::seq_mean_token_sum_norm)
            o.agg.norm_length = o.entropy_agg.norm_length = 1024.0;
          o.top_entropy_quantile = rho;
          o.entropy_mask_in_denominator = den;
          compare_emask(o, (n % 2) ? dt : d, (n / 5) % 2 == 0, true, kTol);
          ++n;
        }
    // the caller's is_weights (in [0.5, 1.5]) in place of the rollout weight
    data dw = d;
    dw.isw.resize(dw.lp.size());
    for (std::size_t k = 0; k < dw.isw.size(); ++k) dw.isw[k] = 0.5f + 0.5f * (dw.ent[k] > 1.f);
    for (bool den : {true, false}) {
      grpo::loss_options o = emask_opts(grpo::policy_loss_kind::ppo_clip, 0.2, den, 1, 1e-2,
                                        grpo::agg_mode::token_mean);
      compare_emask(o, dw, true, true, kTol);
      ++n;
    }
  }
  MESSAGE("TIS + top-entropy configurations compared: " << n);
}
