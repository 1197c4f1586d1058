// SPDX-License-Identifier: Apache-2.0
/// @file fused_grpo.hpp
/// @brief One call from [B, T, V] logits to the GRPO-family loss, its metrics and the gradient
///        into the logits (optionally in place), with no tokens x vocab temporary. The loss maths
///        is grpo::compute_loss_into (loss.hpp) and the softmax maths ops/softmax.hpp: this file
///        only schedules them around the logits stream.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/logprob.hpp>
#include <grpo/loss.hpp>

#include <algorithm>
#include <exception>
#include <mutex>
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
};

/// Result of the fused step: the loss scalars and metrics of compute_loss_into plus the per-token
/// log-probabilities and entropies it computed ([B, T] row-major, 0 on skipped tokens).
struct fused_grpo_result : loss_scalars {
  index_t rows = 0, cols = 0;
  std::vector<float> logp;     ///< log pi(y_t) at temperature T
  std::vector<float> entropy;  ///< entropy of the token distribution at temperature T
  fused_schedule schedule_used = fused_schedule::two_phase;
};

/// True when every token's dL/dlogp and dL/dH can be computed from that token alone plus
/// mask-only row factors (the single-pass schedule is exact).
/// (loss/plan.hpp's single_pass_ok.)
inline bool fused_single_pass_ok(const loss_options& o) noexcept { return single_pass_ok(o); }

namespace detail {

/// Captures the first exception thrown inside a parallel region and rethrows it afterwards.
struct exception_slot {
  std::exception_ptr ptr;
  std::mutex mu;
  template <class F>
  void run(F&& f) noexcept {
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!ptr) ptr = std::current_exception();
    }
  }
  void rethrow() const {
    if (ptr) std::rethrow_exception(ptr);
  }
};

/// The options under which the tokens of ONE sequence, evaluated alone as a [1, n] micro-batch,
/// give their exact share of the full batch's loss: every term a token sum scaled by the row's
/// aggregation factor of the full batch (policy, KL, entropy). Used by the two-phase fused step and
/// by the fused linear head.
inline loss_options row_token_sum_options(const loss_options& loss, double s_pol, double s_kl,
                                          double s_ent) {
  loss_options lo = loss;
  lo.agg = agg_options{};
  lo.agg.mode = agg_mode::token_sum;
  lo.agg.scale = s_pol;
  agg_options ka{};
  ka.mode = agg_mode::token_sum;
  ka.scale = s_kl;
  lo.kl_agg = ka;
  lo.entropy_agg = agg_options{};
  lo.entropy_agg.mode = agg_mode::token_sum;
  lo.entropy_agg.scale = s_ent;
  return lo;
}

/// The [1, n] view of row i, columns t0 .. t0 + n - 1, of a [B, T] view (an empty view stays
/// empty: optional inputs).
template <class V>
V row_slice(const V& v, index_t i, index_t t0, index_t n) {
  if (v.data_handle() == nullptr) return v;
  return V(&v(i, t0), {1, n}, {v.stride(0), v.stride(1)}, v.space());
}

/// Points the per-token inputs of `b` (old / ref / sampler log-probs, advantages, mask, IS
/// weights) at row i, columns t0 .. t0 + n - 1, of the full batch `in`.
template <class B>
void slice_token_inputs(B& b, const B& in, index_t i, index_t t0, index_t n) {
  b.old_logp = row_slice(in.old_logp, i, t0, n);
  b.ref_logp = row_slice(in.ref_logp, i, t0, n);
  b.advantages = row_slice(in.advantages, i, t0, n);
  b.mask = row_slice(in.mask, i, t0, n);
  b.sampler_logp = row_slice(in.sampler_logp, i, t0, n);
  b.is_weights = row_slice(in.is_weights, i, t0, n);
}

}  // namespace detail

inline namespace GRPO_LOGPROB_ABI {

/// Fused GRPO step: logits -> log pi(y) (and H) -> compute_loss_into(loss, ...) -> dL/dlogits.
///
///   dL/dx_{itj} = (1/T) [ g_it (delta_{j y_it} - q_itj) - h_it q_itj (log q_itj + H_it) ]
/// with g_it = dL/dlogp_it and h_it = dL/dH_it from compute_loss_into (every option of the GRPO
/// loss family: PPO clip / dual clip / delta, CISPO, SAPO, GSPO, GMPO, VESPO, REINFORCE, KL
/// estimators, entropy bonus, top-entropy mask, OPSM, TIS, all aggregation modes with global
/// denominators). Extra memory: O(B T) per-token values + O(threads x 2048) floats.
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
///       compute_loss on the returned logp / entropy.
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
  namespace lp = detail::lp;
  validate(loss);
  const index_t B = logits.extent(0), Tn = logits.extent(1), V = logits.extent(2);
  expect_host(logits, "logits");
  expect_host(grad_logits, "grad_logits");
  GRPO_EXPECTS(V > 0, shape_mismatch, "logits: vocabulary extent must be > 0");
  expect_extents(ids, {B, Tn}, "ids");
  expect_extents(grad_logits, {B, Tn, V}, "grad_logits");
  GRPO_EXPECTS(inputs.mask.data_handle() != nullptr || B * Tn == 0, shape_mismatch,
               "mask: required");
  expect_extents(inputs.mask, {B, Tn}, "mask");
  GRPO_EXPECTS(inputs.truncated.empty() || static_cast<index_t>(inputs.truncated.size()) == B,
               shape_mismatch, "truncated: size must equal B");
  if (static_cast<const void*>(grad_logits.data_handle()) ==
      static_cast<const void*>(logits.data_handle()))
    GRPO_EXPECTS((std::is_same_v<T, G> && grad_logits.strides() == logits.strides()), bad_option,
                 "grad_logits: in-place gradient needs the logits' dtype and strides");
  // Only an exact in-place alias of the logits; no memory shared with any other input.
  expect_distinct_elements(grad_logits, "grad_logits");
  expect_no_partial_overlap(grad_logits, logits, "grad_logits", "logits");
  expect_disjoint(grad_logits, ids, "grad_logits", "ids");
  expect_disjoint(grad_logits, inputs.mask, "grad_logits", "mask");
  expect_disjoint(grad_logits, inputs.advantages, "grad_logits", "advantages");
  expect_disjoint(grad_logits, inputs.old_logp, "grad_logits", "old_logp");
  expect_disjoint(grad_logits, inputs.ref_logp, "grad_logits", "ref_logp");
  expect_disjoint(grad_logits, inputs.sampler_logp, "grad_logits", "sampler_logp");
  expect_disjoint(grad_logits, inputs.is_weights, "grad_logits", "is_weights");
  const float beta = lp::inverse_temperature(fopt.logprob.temperature);
  GRPO_EXPECTS(fopt.chunk_tokens >= 0, bad_option, "fused_grpo_options::chunk_tokens must be >= 0");

  // Active rows: mask != 0 and sequence not truncated. Only they are read, validated,
  // differentiated.
  auto active = [&](index_t i, index_t t) {
    if (!inputs.truncated.empty() && inputs.truncated[static_cast<std::size_t>(i)]) return false;
    return static_cast<double>(inputs.mask(i, t)) != 0.0;
  };
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < Tn; ++t) {
      if (!active(i, t)) continue;
      const auto y = static_cast<std::int64_t>(ids(i, t));
      GRPO_EXPECTS(y >= 0 && y < V, out_of_range,
                   "fused_grpo_step: ids(" + std::to_string(i) + ", " + std::to_string(t) +
                       ") = " + std::to_string(y) + " is outside [0, " + std::to_string(V) + ")");
    }

  fused_grpo_result res;
  res.rows = B;
  res.cols = Tn;
  const auto NT = static_cast<std::size_t>(B * Tn);
  res.logp.assign(NT, 0.0f);
  res.entropy.assign(NT, 0.0f);
  std::vector<P> logp_p(NT, P(0)), ent_p(NT, P(0)), g_lp(NT, P(0)), g_h(NT, P(0));
  // Row summaries (raw max, log s, H) of the two-phase schedule: 12 bytes per token.
  std::vector<lp::row_summary> sums;

  const index_t xs = logits.stride(2), gs = grad_logits.stride(2);
  lp::first_error err;
  // Statistics of row (i, t): writes logp / entropy, returns the summary (status via err).
  // Summary, logp and entropy of row (i, t) from its statistics.
  auto finish_stats = [&](index_t i, index_t t, const online_lse& st) -> lp::row_summary {
    const lp::row_summary rs = lp::summarise(st);
    const auto y = static_cast<index_t>(ids(i, t));
    const float x_y = static_cast<float>(widen(logits(i, t, y)));
    const auto k = static_cast<std::size_t>(i * Tn + t);
    res.logp[k] = ops::log_softmax(x_y, rs.m, rs.log_s, beta);
    res.entropy[k] = rs.entropy;
    logp_p[k] = static_cast<P>(res.logp[k]);
    ent_p[k] = static_cast<P>(rs.entropy);
    return rs;
  };
  auto stats_row = [&](index_t i, index_t t, lp::scratch& w, lp::row_summary& rs,
                       lp::row_cache* cache) -> bool {
    lp::row_status status;
    const online_lse st = lp::row_stats(&logits(i, t, 0), xs, V, beta, w, status, cache);
    if (status != lp::row_status::ok) {
      err.set(i * Tn + t, status);
      return false;
    }
    rs = finish_stats(i, t, st);
    return true;
  };
  auto zero_row = [&](index_t i, index_t t) {
    G* out = &grad_logits(i, t, 0);
    for (index_t j = 0; j < V; ++j) out[j * gs] = G{};
  };
  auto grad_row = [&](index_t i, index_t t, const lp::row_summary& rs, lp::scratch& w,
                      const lp::row_cache* cache) {
    const T* row = &logits(i, t, 0);
    const auto y = static_cast<index_t>(ids(i, t));
    const float x_y = static_cast<float>(widen(row[y * xs]));  // before an in-place overwrite
    const auto k = static_cast<std::size_t>(i * Tn + t);
    if (cache && g_h[k] == P(0))  // exps kept by the statistics pass: no second exp, no re-read
      lp::row_grad_cached(*cache, V, beta, rs, y, x_y, static_cast<float>(g_lp[k]),
                          &grad_logits(i, t, 0), gs, w, /*stream=*/true);
    else
      lp::row_grad(row, xs, V, beta, rs, y, x_y, static_cast<float>(g_lp[k]),
                   static_cast<float>(g_h[k]), &grad_logits(i, t, 0), gs, w, /*stream=*/true);
  };
  auto batch_with = [&](strided_view<const P, 2> lpv, strided_view<const P, 2> hv) {
    loss_batch<P, M> b = inputs;
    b.logp = lpv;
    b.entropy = hv;
    return b;
  };
  const bool need_entropy = loss.entropy_coef != 0.0 || loss.top_entropy_quantile < 1.0;

  const bool single = fopt.schedule == fused_schedule::single_pass ||
                      (fopt.schedule == fused_schedule::automatic && fused_single_pass_ok(loss));
  GRPO_EXPECTS(!single || fused_single_pass_ok(loss), bad_option,
               "fused_grpo_options::schedule = single_pass needs token-local loss options "
               "(token-level ratio, no OPSM / top-entropy quantile / GMPO / VESPO / sequence TIS)");
  res.schedule_used = single ? fused_schedule::single_pass : fused_schedule::two_phase;

  if (single) {
    // Row factors of the aggregation from the mask alone (final mask = base mask here), so that a
    // chunk [1, C] of sequence i evaluated with token_sum aggregation scaled by s_i gives exactly
    // the coefficients of the full-batch objective (aggregate.hpp: loss is linear in l_it).
    std::vector<double> n_row(static_cast<std::size_t>(B), 0.0);
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < Tn; ++t)
        if (active(i, t))
          n_row[static_cast<std::size_t>(i)] += static_cast<double>(inputs.mask(i, t));
    const auto s_pol = aggregation_row_scales(n_row, Tn, loss.agg);
    const auto s_kl = loss.kl_agg ? aggregation_row_scales(n_row, Tn, *loss.kl_agg) : s_pol;
    const auto s_ent = aggregation_row_scales(n_row, Tn, loss.entropy_agg);
    // The gradient pass re-reads what the statistics pass left in L2: the fp32 row caches of
    // exponentials when there is no entropy term (4 bytes per logit whatever the logits' dtype:
    // sizing them by sizeof(T) made bf16 chunks twice too large for the 1 MiB L2, and the bf16
    // step slower than fp32), else the logits themselves.
    const bool cached = loss.entropy_coef == 0.0;
    const index_t bytes_per_logit = cached ? index_t(sizeof(float)) : index_t(sizeof(T));
    const index_t C = fopt.chunk_tokens > 0
                          ? fopt.chunk_tokens
                          : std::clamp<index_t>(index_t(512 * 1024) / (V * bytes_per_logit), 1, 64);
    const index_t chunks_per_row = (Tn + C - 1) / C;
    // Coefficients g_lp / g_h of the chunk's tokens from the loss code itself ([1, n] micro-batch
    // of sequence i with the mask-only row factors).
    auto chunk_coeffs = [&](index_t i, index_t t0, index_t n) {
      const auto si = static_cast<std::size_t>(i);
      const loss_options lo = detail::row_token_sum_options(loss, s_pol[si], s_kl[si], s_ent[si]);
      const auto k0 = static_cast<std::size_t>(i * Tn + t0);
      loss_batch<P, M> b = inputs;
      b.logp = strided_view<const P, 2>(logp_p.data() + k0, {1, n}, {Tn, 1});
      b.entropy = need_entropy ? strided_view<const P, 2>(ent_p.data() + k0, {1, n}, {Tn, 1})
                               : strided_view<const P, 2>{};
      detail::slice_token_inputs(b, inputs, i, t0, n);
      b.truncated = inputs.truncated.empty()
                        ? std::span<const unsigned char>{}
                        : inputs.truncated.subspan(static_cast<std::size_t>(i), 1);
      loss_outputs<P> out;
      out.grad_logp = strided_view<P, 2>(g_lp.data() + k0, {1, n}, {Tn, 1});
      out.grad_entropy = strided_view<P, 2>(g_h.data() + k0, {1, n}, {Tn, 1});
      compute_loss_into(lo, b, out);
    };
#if GRPO_HAS_AVX512
    // Software pipeline (AVX-512, contiguous rows, exps cached): the gradient rows of chunk c - 1
    // are written (non-temporal) during the statistics sweeps of chunk c, so the memory-bound
    // gradient stream overlaps the exp-bound sweep instead of alternating with it. Each thread
    // walks an ordered range of chunks with two cache sets (chunk c and the pending c - 1).
    // Measured on one Zen 5 core at 4096 x 32768 (CPU time, same session, A/B): bf16 gradient
    // 37 -> 33 ms; an fp32 gradient (twice the bytes per element, 57 GB/s of interleaved traffic
    // asked of a ~36 GB/s core) got slower, 52 -> 58 ms, so fp32 keeps the phases per chunk.
    const bool pipelined = cached && xs == 1 && gs == 1 && sizeof(G) == 2;
#endif
    detail::exception_slot ex;
#if GRPO_HAS_AVX512
    if (pipelined) {
      lp::parallel_ranges(
          B * chunks_per_row, fopt.logprob.num_threads, [&](index_t cb, index_t ce) {
            ex.run([&] {
              thread_local std::vector<lp::row_cache> sets[2];
              std::vector<lp::row_summary> rs_cur(static_cast<std::size_t>(C)),
                  rs_prev(static_cast<std::size_t>(C));
              lp::scratch w;
              int cur = 0;
              index_t pi = 0, pt0 = 0, pn = 0;    // the pending chunk (pn = 0: none)
              auto prev_ready = [&](index_t r) {  // pending row r can be written by the pipeline
                const index_t t = pt0 + r;
                return active(pi, t) && err.row.load() != pi * Tn + t &&
                       g_h[static_cast<std::size_t>(pi * Tn + t)] == P(0);
              };
              auto flush = [&](index_t r) {  // pending row r without overlap
                const index_t t = pt0 + r;
                if (active(pi, t) && err.row.load() != pi * Tn + t)
                  grad_row(pi, t, rs_prev[static_cast<std::size_t>(r)], w,
                           &sets[cur ^ 1][static_cast<std::size_t>(r)]);
                else
                  zero_row(pi, t);
              };
              for (index_t c = cb; c < ce; ++c) {
                const index_t i = c / chunks_per_row, t0 = (c % chunks_per_row) * C;
                const index_t n = std::min(C, Tn - t0);
                auto& caches = sets[cur];
                if (caches.size() < static_cast<std::size_t>(C))
                  caches.resize(static_cast<std::size_t>(C));
                bool any = false;
                for (index_t r = 0; r < n; ++r) {
                  const index_t t = t0 + r;
                  const bool pend = r < pn && prev_ready(r);
                  if (active(i, t) && pend) {
                    const index_t tp = pt0 + r;
                    const auto kp = static_cast<std::size_t>(pi * Tn + tp);
                    lp::x512::pending_row<G> p;
                    p.cache = &sets[cur ^ 1][static_cast<std::size_t>(r)];
                    p.out = &grad_logits(pi, tp, 0);
                    p.rs = rs_prev[static_cast<std::size_t>(r)];
                    p.beta = beta;
                    p.g_logp = static_cast<float>(g_lp[kp]);
                    p.y = static_cast<index_t>(ids(pi, tp));
                    p.x_y = static_cast<float>(widen(logits(pi, tp, p.y)));
                    lp::row_status status;
                    const T* row = &logits(i, t, 0);
                    const online_lse st = lp::row_stats_pipelined(
                        row, V, beta, status, caches[static_cast<std::size_t>(r)], p);
                    if (status != lp::row_status::ok) {
                      err.set(i * Tn + t, status);
                    } else {
                      rs_cur[static_cast<std::size_t>(r)] = finish_stats(i, t, st);
                      any = true;
                    }
                  } else {
                    if (active(i, t) && stats_row(i, t, w, rs_cur[static_cast<std::size_t>(r)],
                                                  &caches[static_cast<std::size_t>(r)]))
                      any = true;
                    if (r < pn) flush(r);
                  }
                }
                for (index_t r = n; r < pn; ++r) flush(r);
                if (any) chunk_coeffs(i, t0, n);
                pi = i;
                pt0 = t0;
                pn = n;
                std::swap(rs_cur, rs_prev);
                cur ^= 1;
              }
              for (index_t r = 0; r < pn; ++r) flush(r);
            });
          });
      err.raise("fused_grpo_step");
      ex.rethrow();
    } else {
#endif
      lp::parallel_rows(B * chunks_per_row, fopt.logprob.num_threads, [&](index_t c) {
        ex.run([&] {
          const index_t i = c / chunks_per_row, t0 = (c % chunks_per_row) * C;
          const index_t n = std::min(C, Tn - t0);
          lp::scratch w;
          lp::row_summary rs_chunk[64];
          std::vector<lp::row_summary> rs_heap;
          lp::row_summary* rs = rs_chunk;
          if (n > 64) {
            rs_heap.resize(static_cast<std::size_t>(n));
            rs = rs_heap.data();
          }
          // Rows of the chunk keep their exps (O(chunk x V) floats per thread) when no token of
          // the batch has an entropy coefficient, so the gradient pass reuses them.
          thread_local std::vector<lp::row_cache> caches;
          const bool use_cache = cached;
          if (use_cache && caches.size() < static_cast<std::size_t>(n))
            caches.resize(static_cast<std::size_t>(n));
          auto cache_of = [&](index_t r) {
            return use_cache ? &caches[static_cast<std::size_t>(r)] : nullptr;
          };
          bool any = false;
          for (index_t t = t0; t < t0 + n; ++t)
            if (active(i, t) && stats_row(i, t, w, rs[t - t0], cache_of(t - t0))) any = true;
          if (any) {
            chunk_coeffs(i, t0, n);
          }
          for (index_t t = t0; t < t0 + n; ++t) {
            if (active(i, t) && err.row.load() != i * Tn + t)
              grad_row(i, t, rs[t - t0], w, cache_of(t - t0));
            else
              zero_row(i, t);
          }
        });
      });
#if GRPO_HAS_AVX512
    }
#endif
    err.raise("fused_grpo_step");
    ex.rethrow();
  } else {
    sums.resize(NT);
    lp::parallel_rows(B * Tn, fopt.logprob.num_threads, [&](index_t k) {
      const index_t i = k / Tn, t = k % Tn;
      if (!active(i, t)) return;
      lp::scratch w;
      stats_row(i, t, w, sums[static_cast<std::size_t>(k)], nullptr);
    });
    err.raise("fused_grpo_step");
    loss_outputs<P> out;
    out.grad_logp = make_view(g_lp.data(), {B, Tn});
    out.grad_entropy = make_view(g_h.data(), {B, Tn});
    static_cast<loss_scalars&>(res) = compute_loss_into(
        loss,
        batch_with(make_view(static_cast<const P*>(logp_p.data()), {B, Tn}),
                   need_entropy ? make_view(static_cast<const P*>(ent_p.data()), {B, Tn})
                                : strided_view<const P, 2>{}),
        out);
    lp::parallel_rows(B * Tn, fopt.logprob.num_threads, [&](index_t k) {
      const index_t i = k / Tn, t = k % Tn;
      if (!active(i, t)) {
        zero_row(i, t);
        return;
      }
      lp::scratch w;
      grad_row(i, t, sums[static_cast<std::size_t>(k)], w, nullptr);
    });
    return res;
  }
  // Single pass: the scalars and metrics of the whole batch from the loss code on [B, T] (O(B T)).
  std::vector<P> scratch_g(NT);
  loss_outputs<P> out;
  out.grad_logp = make_view(scratch_g.data(), {B, Tn});
  static_cast<loss_scalars&>(res) = compute_loss_into(
      loss,
      batch_with(make_view(static_cast<const P*>(logp_p.data()), {B, Tn}),
                 need_entropy ? make_view(static_cast<const P*>(ent_p.data()), {B, Tn})
                              : strided_view<const P, 2>{}),
      out);
  return res;
}

}  // namespace GRPO_LOGPROB_ABI
}  // namespace grpo
