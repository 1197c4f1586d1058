// SPDX-License-Identifier: Apache-2.0
/// @file fused_grpo.hpp
/// @brief One call from [B, T, V] logits to the GRPO-family loss, its metrics and the gradient
///        into the logits (optionally in place), with no tokens x vocab temporary. The loss maths
///        is grpo::compute_loss_into (loss.hpp) and the softmax maths ops/softmax.hpp: this file
///        only schedules them around the logits stream.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/validate.hpp>
#include <grpo/logprob.hpp>
#include <grpo/loss.hpp>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace grpo {

/// How the fused step walks the logits.
enum class fused_schedule : unsigned char {
  /// single_pass when the options allow it, else two_phase.
  automatic,
  /// Every token's loss coefficient depends only on that token (token-level ratio, no OPSM, no
  /// top-entropy quantile, no GMPO / VESPO / sequence TIS): rows are processed in chunks of
  /// `chunk_tokens` positions of one sequence; the chunk's statistics pass is followed at once by
  /// its
  /// gradient pass while the rows are still in cache (one read from memory + one write).
  single_pass,
  /// Statistics of every row first (one read), then the loss on [B, T], then the gradient pass
  /// (second read + write). Needed when a coefficient depends on the whole sequence or batch
  /// (GSPO sequence ratio, OPSM, GMPO, VESPO, top-entropy quantile, sequence TIS).
  two_phase,
};

/// Whether the single-pass schedule streams the gradient rows of one chunk during the statistics
/// sweeps of the next (software pipeline; vocab::row_stats_pipelined). It applies to contiguous
/// rows, no entropy term and a 16-bit gradient only (elsewhere the schedule is not pipelined).
enum class fused_pipeline : unsigned char {
  /// Where the CPU's kernel path (grpo::active_isa()) is AVX-512: measured faster there (bf16
  /// gradient 37 -> 33 ms CPU on one Zen 5 core at 4096 x 32768) and slower on AVX2 (140 vs
  /// 95 ms, docs/benchmarks.md), so AVX2 and the baseline keep the phases per chunk.
  automatic,
  off,  ///< never
  on,   ///< on every path where it applies (tests and measurements of the pipelined text)
};

/// Options of the fused step besides the loss options.
struct fused_grpo_options {
  /// Temperature (applied inside, gradient includes 1/T) and thread count. ignore_index is not
  /// used: rows whose mask is 0 (or whose sequence is truncated) are skipped and get a zero
  /// gradient row.
  logprob_options logprob{};
  fused_schedule schedule = fused_schedule::automatic;
  /// Token positions per chunk of the single-pass schedule: what the gradient pass re-reads (the
  /// fp32 row caches of exponentials without an entropy term, else the logits) should still be in
  /// the per-core cache. 0 (default) picks max(1, 512 KiB / (V x 4 bytes)) without an entropy term,
  /// max(1, 512 KiB / (V x sizeof(logit))) with one, at most 64: one row at V = 152k, four at 32k.
  index_t chunk_tokens = 0;
  fused_pipeline pipeline = fused_pipeline::automatic;
};

/// Result of the fused step: the loss scalars and metrics of compute_loss_into plus the per-token
/// log-probabilities and entropies it computed ([B, T] row-major, 0 on skipped tokens).
struct fused_grpo_result : loss_scalars {
  index_t rows = 0, cols = 0;
  std::vector<float> logp;     ///< log pi(y_t) at temperature T
  std::vector<float> entropy;  ///< entropy of the token distribution at temperature T
  fused_schedule schedule_used = fused_schedule::two_phase;
  bool pipelined = false;  ///< the single pass ran the software pipeline (fused_pipeline)
};

/// True when every token's dL/dlogp and dL/dH can be computed from that token alone plus
/// mask-only row factors (the single-pass schedule is exact): loss/entry.hpp's
/// chunk_coefficients_ok.
inline bool fused_single_pass_ok(const loss_options& o) noexcept {
  return chunk_coefficients_ok(o);
}

namespace detail {
inline namespace GRPO_ISA_ABI {  // bodies depend on the compile flags (core/isa.hpp)

/// The state of one fused_grpo_step call and its phases, each a member function: checks, the row
/// statistics, the gradient rows, and the three schedules (chunks, pipelined chunks, two phases).
/// Rows run on grpo::par (vocab::parallel_rows / parallel_ranges); a row whose logits are bad
/// throws at the row (the vocab engine's first_error message), so the exception of the lowest
/// failing chunk (two phases: token) leaves, whatever the thread count.
template <class T, class IT, class P, class M, class G>
struct fused_step {
  const loss_options& loss;
  strided_view<const T, 3> logits;
  strided_view<IT, 2> ids;
  const loss_batch<P, M>& inputs;
  strided_view<G, 3> grad;
  const fused_grpo_options& fopt;
  fused_grpo_result& res;
  index_t B = 0, Tn = 0, V = 0, xs = 0, gs = 0;
  float beta = 1.0f;
  bool need_entropy = false;
  std::vector<P> logp_p, ent_p, g_lp, g_h;  // [B, T]: log p and H in P, the coefficients

  fused_step(const loss_options& l, strided_view<const T, 3> x, strided_view<IT, 2> y,
             const loss_batch<P, M>& in, strided_view<G, 3> g, const fused_grpo_options& f,
             fused_grpo_result& r)
      : loss(l), logits(x), ids(y), inputs(in), grad(g), fopt(f), res(r) {}

  /// Active rows: mask != 0 and sequence not truncated. Only they are read, validated,
  /// differentiated.
  bool active(index_t i, index_t t) const {
    if (!inputs.truncated.empty() && inputs.truncated[static_cast<std::size_t>(i)]) return false;
    return static_cast<double>(inputs.mask(i, t)) != 0.0;
  }

  /// Every shape, alias and id check before anything is written; sets the sizes and beta.
  void check() {
    validate(loss);
    B = logits.extent(0);
    Tn = logits.extent(1);
    V = logits.extent(2);
    expect_host(logits, "logits");
    expect_host(grad, "grad_logits");
    GRPO_EXPECTS(V > 0, shape_mismatch, "logits: vocabulary extent must be > 0");
    expect_extents(ids, {B, Tn}, "ids");
    expect_extents(grad, {B, Tn, V}, "grad_logits");
    GRPO_EXPECTS(inputs.mask.data_handle() != nullptr || B * Tn == 0, shape_mismatch,
                 "mask: required");
    expect_extents(inputs.mask, {B, Tn}, "mask");
    GRPO_EXPECTS(inputs.truncated.empty() || static_cast<index_t>(inputs.truncated.size()) == B,
                 shape_mismatch, "truncated: size must equal B");
    if (static_cast<const void*>(grad.data_handle()) ==
        static_cast<const void*>(logits.data_handle()))
      GRPO_EXPECTS((std::is_same_v<T, G> && grad.strides() == logits.strides()), bad_option,
                   "grad_logits: in-place gradient needs the logits' dtype and strides");
    // Only an exact in-place alias of the logits; no memory shared with any other input.
    expect_distinct_elements(grad, "grad_logits");
    expect_no_partial_overlap(grad, logits, "grad_logits", "logits");
    expect_disjoint(grad, ids, "grad_logits", "ids");
    expect_disjoint(grad, inputs.mask, "grad_logits", "mask");
    expect_disjoint(grad, inputs.advantages, "grad_logits", "advantages");
    expect_disjoint(grad, inputs.old_logp, "grad_logits", "old_logp");
    expect_disjoint(grad, inputs.ref_logp, "grad_logits", "ref_logp");
    expect_disjoint(grad, inputs.sampler_logp, "grad_logits", "sampler_logp");
    expect_disjoint(grad, inputs.is_weights, "grad_logits", "is_weights");
    beta = lp::inverse_temperature(fopt.logprob.temperature);
    GRPO_EXPECTS(fopt.chunk_tokens >= 0, bad_option,
                 "fused_grpo_options::chunk_tokens must be >= 0");
    detail::expect_enum(fopt.pipeline, 3, "fused_grpo_options::pipeline");
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < Tn; ++t) {
        if (!active(i, t)) continue;
        const auto y = static_cast<std::int64_t>(ids(i, t));
        GRPO_EXPECTS(y >= 0 && y < V, out_of_range,
                     "fused_grpo_step: ids(" + std::to_string(i) + ", " + std::to_string(t) +
                         ") = " + std::to_string(y) + " is outside [0, " + std::to_string(V) + ")");
      }
    xs = logits.stride(2);
    gs = grad.stride(2);
    need_entropy = loss.entropy_coef != 0.0 || loss.top_entropy_quantile < 1.0;
    const auto NT = static_cast<std::size_t>(B * Tn);
    res.rows = B;
    res.cols = Tn;
    res.logp.assign(NT, 0.0f);
    res.entropy.assign(NT, 0.0f);
    logp_p.assign(NT, P(0));
    ent_p.assign(NT, P(0));
    g_lp.assign(NT, P(0));
    g_h.assign(NT, P(0));
  }

  /// The inputs with logp (and the entropy, when the loss reads it) from this call's buffers.
  loss_batch<P, M> batch() const {
    loss_batch<P, M> b = inputs;
    b.logp = make_view(static_cast<const P*>(logp_p.data()), {B, Tn});
    b.entropy = need_entropy ? make_view(static_cast<const P*>(ent_p.data()), {B, Tn})
                             : strided_view<const P, 2>{};
    return b;
  }

  /// Throws the vocab engine's error for a row whose statistics failed (flat row i T + t).
  static void raise_row(index_t i, index_t t, index_t Tn_, lp::row_status status) {
    lp::first_error e;
    e.set(i * Tn_ + t, status);
    e.raise("fused_grpo_step");
  }

  /// Summary, logp and entropy of row (i, t) from its statistics.
  lp::row_summary finish_stats(index_t i, index_t t, const online_lse& st) {
    const lp::row_summary rs = lp::summarise(st);
    const auto y = static_cast<index_t>(ids(i, t));
    const float x_y = static_cast<float>(widen(logits(i, t, y)));
    const auto k = static_cast<std::size_t>(i * Tn + t);
    res.logp[k] = ops::log_softmax(x_y, rs.m, rs.log_s, beta);
    res.entropy[k] = rs.entropy;
    logp_p[k] = static_cast<P>(res.logp[k]);
    ent_p[k] = static_cast<P>(rs.entropy);
    return rs;
  }
  /// Statistics of row (i, t) (optionally keeping its exps in `cache`); throws on bad logits.
  lp::row_summary stats_row(index_t i, index_t t, lp::scratch& w, lp::row_cache* cache) {
    lp::row_status status;
    const online_lse st = lp::row_stats(&logits(i, t, 0), xs, V, beta, w, status, cache);
    if (status != lp::row_status::ok) raise_row(i, t, Tn, status);
    return finish_stats(i, t, st);
  }
  void zero_row(index_t i, index_t t) {
    G* out = &grad(i, t, 0);
    for (index_t j = 0; j < V; ++j) out[j * gs] = G{};
  }
  /// Gradient row (i, t): from the cached exps when there is no entropy coefficient, else from
  /// the logits (read before an in-place overwrite).
  void grad_row(index_t i, index_t t, const lp::row_summary& rs, lp::scratch& w,
                const lp::row_cache* cache) {
    const T* row = &logits(i, t, 0);
    const auto y = static_cast<index_t>(ids(i, t));
    const float x_y = static_cast<float>(widen(row[y * xs]));
    const auto k = static_cast<std::size_t>(i * Tn + t);
    if (cache && g_h[k] == P(0))  // exps kept by the statistics pass: no second exp, no re-read
      lp::row_grad_cached(*cache, V, beta, rs, y, x_y, static_cast<float>(g_lp[k]), &grad(i, t, 0),
                          gs, w, /*stream=*/true);
    else
      lp::row_grad(row, xs, V, beta, rs, y, x_y, static_cast<float>(g_lp[k]),
                   static_cast<float>(g_h[k]), &grad(i, t, 0), gs, w, /*stream=*/true);
  }

  /// Single pass, one chunk (row i, tokens t0 .. t0 + n - 1) per task: statistics of its rows,
  /// their coefficients (loss_chunk_plan), then their gradient rows while they are in cache.
  void single_pass(const loss_chunk_plan<P, M>& cp, index_t C, bool cached) {
    const index_t per_row = (Tn + C - 1) / C;
    lp::parallel_rows(B * per_row, fopt.logprob.num_threads, [&](index_t c) {
      const index_t i = c / per_row, t0 = (c % per_row) * C;
      const index_t n = std::min(C, Tn - t0);
      lp::scratch w;
      lp::row_summary rs_chunk[64];
      std::vector<lp::row_summary> rs_heap;
      lp::row_summary* rs = rs_chunk;
      if (n > 64) {
        rs_heap.resize(static_cast<std::size_t>(n));
        rs = rs_heap.data();
      }
      // The chunk's rows keep their exps (O(chunk x V) floats per thread) when no token of the
      // batch has an entropy coefficient, so the gradient pass reuses them.
      thread_local std::vector<lp::row_cache> caches;
      if (cached && caches.size() < static_cast<std::size_t>(n))
        caches.resize(static_cast<std::size_t>(n));
      auto cache_of = [&](index_t r) {
        return cached ? &caches[static_cast<std::size_t>(r)] : nullptr;
      };
      bool any = false;
      for (index_t t = t0; t < t0 + n; ++t)
        if (active(i, t)) {
          rs[t - t0] = stats_row(i, t, w, cache_of(t - t0));
          any = true;
        }
      const auto k0 = static_cast<std::size_t>(i * Tn + t0);
      if (any) cp.coefficients(i, t0, n, g_lp.data() + k0, g_h.data() + k0);
      for (index_t t = t0; t < t0 + n; ++t) {
        if (active(i, t))
          grad_row(i, t, rs[t - t0], w, cache_of(t - t0));
        else
          zero_row(i, t);
      }
    });
  }

  /// Single pass as a software pipeline (contiguous rows, exps cached, 16-bit gradient): the
  /// gradient rows of chunk c - 1 are written (non-temporal on the packet paths) during the
  /// statistics sweeps of chunk c, so the memory-bound gradient stream overlaps the exp-bound
  /// sweep instead of alternating with it. Each thread walks an ordered range of chunks with two
  /// cache sets (chunk c and the pending c - 1). Measured on one Zen 5 core at 4096 x 32768 (CPU
  /// time, A/B): bf16 gradient 37 -> 33 ms; an fp32 gradient (57 GB/s of interleaved traffic
  /// asked of a ~36 GB/s core) got slower, 52 -> 58 ms, so fp32 keeps the phases per chunk.
  void pipelined(const loss_chunk_plan<P, M>& cp, index_t C) {
    const index_t per_row = (Tn + C - 1) / C;
    lp::parallel_ranges(B * per_row, fopt.logprob.num_threads, [&](index_t cb, index_t ce) {
      thread_local std::vector<lp::row_cache> sets[2];
      std::vector<lp::row_summary> rs_cur(static_cast<std::size_t>(C)),
          rs_prev(static_cast<std::size_t>(C));
      lp::scratch w;
      int cur = 0;
      index_t pi = 0, pt0 = 0, pn = 0;  // the pending chunk (pn = 0: none)
      auto flush = [&](index_t r) {     // pending row r without overlap
        const index_t t = pt0 + r;
        if (active(pi, t))
          grad_row(pi, t, rs_prev[static_cast<std::size_t>(r)], w,
                   &sets[cur ^ 1][static_cast<std::size_t>(r)]);
        else
          zero_row(pi, t);
      };
      for (index_t c = cb; c < ce; ++c) {
        const index_t i = c / per_row, t0 = (c % per_row) * C;
        const index_t n = std::min(C, Tn - t0);
        auto& caches = sets[cur];
        if (caches.size() < static_cast<std::size_t>(C)) caches.resize(static_cast<std::size_t>(C));
        bool any = false;
        for (index_t r = 0; r < n; ++r) {
          const index_t t = t0 + r, tp = pt0 + r;
          const auto rz = static_cast<std::size_t>(r);
          // The pending row r rides along when it is a cached gradient row (h = 0).
          const bool pend =
              r < pn && active(pi, tp) && g_h[static_cast<std::size_t>(pi * Tn + tp)] == P(0);
          if (active(i, t) && pend) {
            lp::pending_row<G> p;
            p.cache = &sets[cur ^ 1][rz];
            p.out = &grad(pi, tp, 0);
            p.rs = rs_prev[rz];
            p.beta = beta;
            p.g_logp = static_cast<float>(g_lp[static_cast<std::size_t>(pi * Tn + tp)]);
            p.y = static_cast<index_t>(ids(pi, tp));
            p.x_y = static_cast<float>(widen(logits(pi, tp, p.y)));
            lp::row_status status;
            const online_lse st =
                lp::row_stats_pipelined(&logits(i, t, 0), V, beta, status, caches[rz], p);
            if (status != lp::row_status::ok) raise_row(i, t, Tn, status);
            rs_cur[rz] = finish_stats(i, t, st);
            any = true;
          } else {
            if (active(i, t)) {
              rs_cur[rz] = stats_row(i, t, w, &caches[rz]);
              any = true;
            }
            if (r < pn) flush(r);
          }
        }
        for (index_t r = n; r < pn; ++r) flush(r);
        const auto k0 = static_cast<std::size_t>(i * Tn + t0);
        if (any) cp.coefficients(i, t0, n, g_lp.data() + k0, g_h.data() + k0);
        pi = i;
        pt0 = t0;
        pn = n;
        std::swap(rs_cur, rs_prev);
        cur ^= 1;
      }
      for (index_t r = 0; r < pn; ++r) flush(r);
    });
  }

  /// Two phases: statistics of every row, the loss on [B, T] (compute_loss_into: coefficients,
  /// scalars, metrics), then the gradient rows (second read of the logits + write).
  void two_phase() {
    std::vector<lp::row_summary> sums(static_cast<std::size_t>(B * Tn));
    lp::parallel_rows(B * Tn, fopt.logprob.num_threads, [&](index_t k) {
      const index_t i = k / Tn, t = k % Tn;
      if (!active(i, t)) return;
      lp::scratch w;
      sums[static_cast<std::size_t>(k)] = stats_row(i, t, w, nullptr);
    });
    loss_outputs<P> out;
    out.grad_logp = make_view(g_lp.data(), {B, Tn});
    out.grad_entropy = make_view(g_h.data(), {B, Tn});
    static_cast<loss_scalars&>(res) = compute_loss_into(loss, batch(), out);
    lp::parallel_rows(B * Tn, fopt.logprob.num_threads, [&](index_t k) {
      const index_t i = k / Tn, t = k % Tn;
      if (!active(i, t)) {
        zero_row(i, t);
        return;
      }
      lp::scratch w;
      grad_row(i, t, sums[static_cast<std::size_t>(k)], w, nullptr);
    });
  }

  /// The schedule: single pass (chunks, pipelined on AVX-512) or two phases; then, after a single
  /// pass, the scalars and metrics of the whole batch (compute_loss_metrics, O(B T)).
  void run() {
    const bool single = fopt.schedule == fused_schedule::single_pass ||
                        (fopt.schedule == fused_schedule::automatic && fused_single_pass_ok(loss));
    GRPO_EXPECTS(!single || single_pass_ok(loss), bad_option,
                 "fused_grpo_options::schedule = single_pass needs token-local loss options "
                 "(token-level ratio, no OPSM / top-entropy quantile / GMPO / VESPO / sequence "
                 "TIS)");
    GRPO_EXPECTS(!single || fused_single_pass_ok(loss), bad_option,
                 "fused_grpo_options::schedule = single_pass: OpenRLHF's seq-mask TIS (a row-wide "
                 "keep decision) and float32 in-loss KL (a batch-wide float32 sum) need two_phase");
    res.schedule_used = single ? fused_schedule::single_pass : fused_schedule::two_phase;
    if (!single) return two_phase();
    const loss_chunk_plan<P, M> cp(loss, batch());
    // The gradient pass re-reads what the statistics pass left in L2: the fp32 row caches of
    // exponentials when there is no entropy term (4 bytes per logit whatever the logits' dtype:
    // sizing them by sizeof(T) made bf16 chunks twice too large for the 1 MiB L2, and the bf16
    // step slower than fp32), else the logits themselves.
    const bool cached = loss.entropy_coef == 0.0;
    const index_t bytes_per_logit = cached ? index_t(sizeof(float)) : index_t(sizeof(T));
    const index_t C = fopt.chunk_tokens > 0
                          ? fopt.chunk_tokens
                          : std::clamp<index_t>(index_t(512 * 1024) / (V * bytes_per_logit), 1, 64);
    const bool can_pipeline = cached && xs == 1 && gs == 1 && sizeof(G) == 2;
    res.pipelined =
        can_pipeline &&
        (fopt.pipeline == fused_pipeline::on ||
         (fopt.pipeline == fused_pipeline::automatic && lp::kernel_isa() == isa::avx512));
    if (res.pipelined)
      pipelined(cp, C);
    else
      single_pass(cp, C, cached);
    static_cast<loss_scalars&>(res) = compute_loss_metrics(loss, batch());
  }
};

}  // namespace GRPO_ISA_ABI
}  // namespace detail

inline namespace GRPO_LOGPROB_ABI {

/// Fused GRPO step: logits -> log pi(y) (and H) -> the loss engine -> dL/dlogits.
///
///   dL/dx_{itj} = (1/T) [ g_it (delta_{j y_it} - q_itj) - h_it q_itj (log q_itj + H_it) ]
/// with g_it = dL/dlogp_it and h_it = dL/dH_it from the loss engine (every option of the GRPO
/// loss family: PPO clip / dual clip / delta, CISPO, SAPO, GSPO, GMPO, VESPO, REINFORCE, KL
/// estimators, entropy bonus, top-entropy mask, OPSM, TIS, all aggregation modes with global
/// denominators). Single pass (token-local options, fused_single_pass_ok): per chunk of one
/// sequence, the chunk's coefficients from loss_chunk_plan (loss/entry.hpp), then the scalars and
/// metrics from compute_loss_metrics; two phases: compute_loss_into on [B, T]. Extra memory:
/// O(B T) per-token values + O(threads x chunk x V) floats of cached exps.
///
/// @param loss        loss options (see presets.hpp).
/// @param logits      [B, T, V] logits (float, bfloat16 or float16), any strides.
/// @param ids         [B, T] sampled token ids; only rows with mask != 0 are read and checked.
/// @param inputs      old_logp, ref_logp, advantages, mask, sampler_logp, is_weights, truncated as
///                    for compute_loss_into; its `logp` and `entropy` fields are ignored
///                    (computed).
/// @param grad_logits [B, T, V] output (float, bfloat16 or float16); may be `logits` itself (same
///                    dtype and strides) to overwrite the logits in place.
/// @pre host memory; extents agree; valid ids in [0, V); no NaN / +inf logits on valid rows.
/// @post grad_logits fully written (zero rows on masked tokens); result.loss etc. equal
///       compute_loss on the returned logp / entropy. On an error (the lowest failing chunk's,
///       two phases: row's) grad_logits is unspecified.
template <class LT, class IT, class P, class M, class G>
fused_grpo_result fused_grpo_step(const loss_options& loss, strided_view<LT, 3> logits,
                                  strided_view<IT, 2> ids, loss_batch<P, M> inputs,
                                  strided_view<G, 3> grad_logits,
                                  const fused_grpo_options& fopt = {}) {
  using T = std::remove_const_t<LT>;
  static_assert(
      std::is_same_v<T, float> || std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>,
      "fused_grpo_step: logits must be float, bfloat16 or float16");
  static_assert(
      std::is_same_v<G, float> || std::is_same_v<G, bfloat16> || std::is_same_v<G, float16>,
      "fused_grpo_step: grad_logits must be float, bfloat16 or float16");
  static_assert(std::is_floating_point_v<P>, "loss_batch value type must be float or double");
  fused_grpo_result res;
  detail::fused_step<T, IT, P, M, G> step(loss, strided_view<const T, 3>(logits), ids, inputs,
                                          grad_logits, fopt, res);
  step.check();
  step.run();
  return res;
}

}  // namespace GRPO_LOGPROB_ABI
}  // namespace grpo
