// SPDX-License-Identifier: Apache-2.0
/// @file call.hpp
/// @brief The state of one compute_loss_into call shared by its engines: the checked inputs and
///        their element accessors (detail::loss_call), the per-row counts and aggregation factors
///        (detail::loss_rows), pass 1 of the vectorised engines (mask rows only), the row
///        descriptor of the row kernels and the row-order merge of their partial results.
#pragma once

#include <grpo/aggregate.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/core/parallel.hpp>
#include <grpo/loss/options.hpp>
#include <grpo/loss/params.hpp>
#include <grpo/loss/plan.hpp>
#include <grpo/loss/simd_token_rows.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace grpo::detail {
inline namespace GRPO_ISA_ABI {

/// How compute_loss_into was entered (the library's own entry points; a caller's call has the
/// defaults).
struct loss_call_flags {
  /// grad_logp is a scratch [B, T] view whose rows share one row buffer (row stride 0), its
  /// contents unspecified afterwards: compute_loss_metrics' (loss/entry.hpp). Only then may the
  /// gradient's rows share memory: a caller's output view that addresses an element twice is
  /// [grpo.bad_option] (expect_loss_outputs).
  bool scratch_grad = false;
};

/// The checked inputs of one call and their element accessors. Element accessors widen to double:
/// all arithmetic and every accumulation of the scalar engines runs in double whatever the
/// storage type. With no old_logp the batch is on-policy: old = sg[logp], r = 1 with d r / d lp = 1
/// (TRL skips computing old log-probs when num_iterations == 1).
template <class T, class M, class G>
struct loss_call {
  const loss_options& o;
  const loss_batch<T, M>& in;
  const loss_outputs<G>& out;
  index_t B = 0, Tn = 0;
  bool has_old = false, has_ref = false, has_smp = false, has_isw = false, has_ent = false;
  /// A zero stride along T marks per-sequence advantages: TRL then reports sequence-level clip
  /// metrics per row (its (B, 1) tensors) instead of per token.
  bool adv_per_row = false;
  loss_params lpar{};  ///< the per-token composition's parameters (<grpo/detail/loss_token.hpp>)
  /// out.grad_logp is compute_loss_metrics' scratch row (loss_call_flags::scratch_grad).
  bool scratch_grad = false;

  loss_call(const loss_options& o_, const loss_batch<T, M>& in_, const loss_outputs<G>& out_,
            loss_call_flags f = {})
      : o(o_), in(in_), out(out_), scratch_grad(f.scratch_grad) {
    B = in.logp.extent(0);
    Tn = in.logp.extent(1);
    has_old = has(in.old_logp);
    has_ref = has(in.ref_logp);
    has_smp = has(in.sampler_logp);
    has_isw = has(in.is_weights);
    has_ent = has(in.entropy);
    adv_per_row = in.advantages.stride(1) == 0;
    lpar = make_loss_params(o);
  }
  bool trunc(index_t i) const {
    return !in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)];
  }
  double lp_at(index_t i, index_t t) const { return static_cast<double>(in.logp(i, t)); }
  double lo_at(index_t i, index_t t) const {
    return has_old ? static_cast<double>(in.old_logp(i, t)) : lp_at(i, t);
  }
  double A_at(index_t i, index_t t) const { return static_cast<double>(in.advantages(i, t)); }
  /// Base mask: loss mask x (1 - truncated row).
  double base_m(index_t i, index_t t) const {
    if (trunc(i)) return 0.0;
    return static_cast<double>(in.mask(i, t));
  }
  /// One token's inputs for the shared composition (absent inputs replaced by their defaults:
  /// ref = lp, sampler = old, isw = 1).
  token_in tok(index_t i, index_t t, double m) const {
    token_in x;
    x.m = m;
    x.lp = lp_at(i, t);
    x.lo = lo_at(i, t);
    x.A = A_at(i, t);
    x.lr = o.kl_coef != 0.0 ? static_cast<double>(in.ref_logp(i, t)) : x.lp;
    x.ls = has_smp ? static_cast<double>(in.sampler_logp(i, t)) : x.lo;
    x.has_isw = has_isw;
    x.isw = has_isw ? static_cast<double>(in.is_weights(i, t)) : 1.0;
    x.h = has_ent ? static_cast<double>(in.entropy(i, t)) : 0.0;
    return x;
  }
};

/// The output views of a call address distinct elements (as every other entry point's outputs,
/// core/strided_view.hpp expect_distinct_elements): [grpo.bad_option] naming the view otherwise,
/// e.g. a gradient with row stride 0, whose rows the engines would write over each other from
/// several threads. The scratch gradient of compute_loss_metrics (f.scratch_grad) is exempt.
template <class G>
void expect_loss_outputs(const loss_outputs<G>& out, loss_call_flags f) {
  if (!f.scratch_grad) expect_distinct_elements(out.grad_logp, "grad_logp");
  if (has(out.per_token_loss)) expect_distinct_elements(out.per_token_loss, "per_token_loss");
  if (has(out.grad_entropy)) expect_distinct_elements(out.grad_entropy, "grad_entropy");
}

/// Runs a block on one OpenMP thread: loops inside it (core/parallel.hpp reads
/// omp_get_max_threads()) stay serial. Restores the caller's thread count on exit.
class one_thread_scope {
 public:
#if defined(_OPENMP)
  one_thread_scope() noexcept : saved_(omp_get_max_threads()) {
    omp_set_num_threads(1);
  }
  ~one_thread_scope() {
    omp_set_num_threads(saved_);
  }
#else
  one_thread_scope() noexcept = default;
#endif
  one_thread_scope(const one_thread_scope&) = delete;
  one_thread_scope& operator=(const one_thread_scope&) = delete;

 private:
#if defined(_OPENMP)
  int saved_;
#endif
};

/// Per-row counts and aggregation factors of a call, and the metrics pass 1 starts.
struct loss_rows {
  std::vector<double> n_base;              ///< sum_t m (base mask)
  std::vector<double> n_fin, n_ent;        ///< counts of the final mask, and x the entropy mask
  std::vector<double> s_pol, s_kl, s_ent;  ///< aggregation row factors of the three terms
  std::vector<index_t>
      row_end;  ///< vectorised engines: one past each row's last nonzero mask entry
  std::vector<unsigned char> row_bin;  ///< vectorised: 0 / 1 mask (2: and a prefix of ones)
  /// OPSM on the TIS rows: 1 where the row's gap sum m (ls - lp) / max(n, 1) is <= delta
  /// (opsm_packet_counts; the row kernels read it instead of summing the gap again)
  std::vector<unsigned char> opsm_gap_ok;
  /// Top-entropy threshold of the call on the token rows (emask_packet_counts; -inf: none)
  double h_thr = -std::numeric_limits<double>::infinity();
  loss_metrics met;
  explicit loss_rows(index_t B) : n_base(static_cast<std::size_t>(B), 0.0) {}
};

/// Every shape, host and option-vs-input check of a call, before any output is written; each
/// error names the argument (TRL/verl fail deep inside torch with broadcasting errors instead).
template <class T, class M, class G>
void check_batch(const loss_options& o, const loss_batch<T, M>& in, const loss_outputs<G>& out) {
  const auto& lpv = in.logp;
  // An empty batch built from empty vectors (null data, zero extent) is valid.
  GRPO_EXPECTS(has(lpv) || lpv.extent(0) == 0 || lpv.extent(1) == 0, shape_mismatch,
               "logp: required");
  expect_host(lpv, "logp");
  const index_t B = lpv.extent(0), Tn = lpv.extent(1);
  const std::array<index_t, 2> ext{B, Tn};
  GRPO_EXPECTS(has(in.advantages) || B * Tn == 0, shape_mismatch, "advantages: required");
  GRPO_EXPECTS(has(in.mask) || B * Tn == 0, shape_mismatch, "mask: required");
  // An empty logp beside non-empty inputs is a missing logp, not an empty batch: name it.
  GRPO_EXPECTS(B * Tn != 0 || in.advantages.extent(0) * in.advantages.extent(1) == 0,
               shape_mismatch, "logp: required (empty logp beside non-empty advantages)");
  expect_extents(in.advantages, ext, "advantages");
  expect_extents(in.mask, ext, "mask");
  expect_host(in.advantages, "advantages");
  expect_host(in.mask, "mask");
  const bool has_ref = has(in.ref_logp);
  const bool has_smp = has(in.sampler_logp), has_isw = has(in.is_weights),
             has_ent = has(in.entropy);
  if (has(in.old_logp)) expect_extents(in.old_logp, ext, "old_logp");
  if (has_ref) expect_extents(in.ref_logp, ext, "ref_logp");
  if (has_smp) expect_extents(in.sampler_logp, ext, "sampler_logp");
  if (has_isw) expect_extents(in.is_weights, ext, "is_weights");
  if (has_ent) expect_extents(in.entropy, ext, "entropy");
  GRPO_EXPECTS(
      in.truncated.empty() || static_cast<index_t>(in.truncated.size()) == B, shape_mismatch,
      "truncated: size " + std::to_string(in.truncated.size()) + ", expected " + std::to_string(B));
  GRPO_EXPECTS(o.kl_coef == 0.0 || has_ref, shape_mismatch, "ref_logp: required when kl_coef != 0");
  const bool use_emask = o.top_entropy_quantile < 1.0;
  GRPO_EXPECTS(!(use_emask || o.entropy_coef != 0.0) || has_ent, shape_mismatch,
               "entropy: required for the entropy bonus or the top-entropy mask");
  GRPO_EXPECTS(!o.tis.enabled || has_smp || has_isw, shape_mismatch,
               "sampler_logp or is_weights: required when tis is enabled");
  GRPO_EXPECTS(!(o.tis.enabled && has_isw), bad_option,
               "is_weights and tis.enabled are exclusive (weights would be applied twice)");
  expect_extents(out.grad_logp, ext, "grad_logp");
  if (has(out.per_token_loss)) expect_extents(out.per_token_loss, ext, "per_token_loss");
  if (has(out.grad_entropy)) expect_extents(out.grad_entropy, ext, "grad_entropy");
  GRPO_EXPECTS(out.per_seq_loss.empty() || static_cast<index_t>(out.per_seq_loss.size()) == B,
               shape_mismatch, "per_seq_loss: size must equal the row count");
}

/// Pass 1 of the vectorised engines: row counts only (no row statistics are needed), mask rows
/// validated and summed with vector loads (detail::fast_mask_row_sum); rows threaded.
template <class T, class M, class G>
void vector_mask_pass(const loss_call<T, M, G>& c, loss_rows& r) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const index_t B = c.B, Tn = c.Tn;
  std::vector<unsigned char> bad_row(static_cast<std::size_t>(B), 0);
  r.row_end.assign(static_cast<std::size_t>(B), 0);
  r.row_bin.assign(static_cast<std::size_t>(B), 0);
  auto count_row = [&](index_t i) {
    bool bad = false;
    index_t end = 0;
    bool bin = false;
    const double n = fast_mask_row_sum<C>(&c.in.mask(i, 0), Tn, bad, end, bin);
    // binary rows: 1 = 0 / 1 entries, 2 = also exactly [0, end) set (right padding)
    r.row_bin[static_cast<std::size_t>(i)] = bin ? (n == static_cast<double>(end) ? 2 : 1) : 0;
    const bool trunc = c.trunc(i);
    r.n_base[static_cast<std::size_t>(i)] = trunc ? 0.0 : n;
    r.row_end[static_cast<std::size_t>(i)] = trunc ? 0 : end;
    bad_row[static_cast<std::size_t>(i)] = bad ? 1 : 0;
  };
  if (Tn > 0) par::for_each_row(B, count_row, loss_loop(Tn));
  for (index_t i = 0; i < B; ++i) {
    GRPO_EXPECTS(!bad_row[static_cast<std::size_t>(i)], bad_value,
                 "mask: entries must be finite and >= 0 (row " + std::to_string(i) + ")");
    if (c.trunc(i)) r.met.truncated_seqs += 1;
  }
}

/// Row factors of the three terms, all from the FINAL mask (the contract of aggregate.hpp): the
/// policy and KL terms share n_fin (TRL adds beta KL to the per-token loss), the entropy bonus
/// uses m x entropy mask (TRL's effective_mask).
inline void row_factors(const loss_options& o, index_t Tn, loss_rows& r) {
  r.s_pol = aggregation_row_scales(r.n_fin, Tn, o.agg);
  r.s_kl = o.kl_agg ? aggregation_row_scales(r.n_fin, Tn, *o.kl_agg) : r.s_pol;
  r.s_ent = aggregation_row_scales(r.n_ent, Tn, o.entropy_agg);
}

/// The row descriptor of the vectorised kernels for row i, in the kernels' compute type CT: the
/// row's inputs and outputs, its scales and counts, and the next row's streams for the kernels'
/// prefetch (each kernel reads the fields it uses). Gradient stores stream (stream_grad) once the
/// gradient alone is far beyond the last-level cache (it is not read back here, and the caller's
/// next pass over it misses the cache anyway), and only in a row whose gradient (and dL/dH) start
/// on a packet boundary (64 bytes on the avx512 path, 32 on avx2): the row kernels then step from
/// t = 0 as without streaming. (They used to run the tokens before the first aligned address as a
/// head step, which moved every token's lane, and with it the order of the row's float sums, with
/// the address of the caller's buffers: the same inputs gave the loss and metrics in other last
/// bits from one allocation to the next.) A misaligned row stores normally.
inline bool stream_row_aligned(const void* p) noexcept {
  const std::uintptr_t a = loss_kernel_isa() >= isa::avx512 ? 64 : 32;
  return p == nullptr || reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

template <class CT, class T, class M, class G>
fast_simd_row<CT, M, G> row_desc(const loss_call<T, M, G>& c, const loss_rows& r, index_t i,
                                 bool stream_grad) {
  const auto& in = c.in;
  const auto& out = c.out;
  const auto k = static_cast<std::size_t>(i);
  const bool kl_in = c.o.kl_coef != 0.0;
  fast_simd_row<CT, M, G> rw;
  rw.lp = &in.logp(i, 0);
  rw.lo = c.has_old ? &in.old_logp(i, 0) : rw.lp;
  rw.lr = kl_in ? &in.ref_logp(i, 0) : nullptr;
  if (in.advantages.stride(1) == 0)
    rw.a0 = static_cast<CT>(in.advantages(i, 0));
  else
    rw.A = &in.advantages(i, 0);
  rw.m = &in.mask(i, 0);
  rw.trunc = c.trunc(i);
  rw.g = &out.grad_logp(i, 0);
  rw.ptl = has(out.per_token_loss) ? &out.per_token_loss(i, 0) : nullptr;
  rw.ge = has(out.grad_entropy) ? &out.grad_entropy(i, 0) : nullptr;
  rw.sp = static_cast<CT>(r.s_pol[k]);
  rw.sk = static_cast<CT>(r.s_kl[k]);
  if (c.has_ent) {  // the entropy term (token / TIS rows; the other row engines take none)
    rw.h = &in.entropy(i, 0);
    rw.se = r.s_ent[k];
    rw.gh = static_cast<CT>(-c.o.entropy_coef * r.s_ent[k]);
  }
  rw.end = r.row_end[k];
  rw.n = r.n_base[k];
  rw.bin = r.row_bin[k] != 0;
  rw.prefix = r.row_bin[k] == 2;
  if (i + 1 < c.B) {
    rw.nlp = &in.logp(i + 1, 0);
    rw.nlo = c.has_old ? &in.old_logp(i + 1, 0) : rw.nlp;
    rw.nlr = kl_in ? &in.ref_logp(i + 1, 0) : nullptr;
    rw.nA = rw.A != nullptr ? &in.advantages(i + 1, 0) : nullptr;
    rw.nm = &in.mask(i + 1, 0);
    rw.nend = r.row_end[k + 1];
  }
  rw.nt = stream_grad && stream_row_aligned(rw.g) && stream_row_aligned(rw.ge);
  return rw;
}

/// Whether the gradient stores of the row kernels stream (see row_desc).
template <class G>
bool stream_gradient(index_t B, index_t Tn) noexcept {
  return static_cast<std::size_t>(B) * static_cast<std::size_t>(Tn) * sizeof(G) >=
         std::size_t{GRPO_LOSS_STREAM_STORE_BYTES};
}

/// Row-order merge of the row kernels' partial results (fast_row_part) into the scalars and the
/// metric schema of the general engine. seq_clip: per-sequence clip values (TRL GSPO with
/// per-sequence advantages: one 0/1 value per sequence over ALL rows); weight_clip: CISPO.
inline loss_scalars merge_row_parts(const std::vector<fast_row_part>& parts, double kl_coef,
                                    bool kl_on, bool seq_clip, bool weight_clip, loss_metrics met) {
  double pol = 0.0, kls = 0.0;
  for (const fast_row_part& rp : parts) {
    pol += rp.pol;
    kls += rp.kls;
    if (seq_clip) {
      const double lo = (rp.seq_clip & 1) ? 1.0 : 0.0, hi = (rp.seq_clip & 2) ? 1.0 : 0.0;
      met.clip_low.add(lo);
      met.clip_high.add(hi);
      met.clip_region.add((rp.seq_clip & 3) ? 1.0 : 0.0);
      met.clip_dual.add((rp.seq_clip & 4) ? 1.0 : 0.0);
      met.clip_low_seq.add(lo);
      met.clip_high_seq.add(hi);
    }
    const double wsum = rp.wsum;
    if (!(wsum > 0)) continue;
    met.approx_kl.add_block(rp.ak[0], rp.ak[1], wsum, rp.ak[2], rp.ak[3]);
    met.advantage.add_block(rp.av[0], rp.av[1], wsum, rp.av[2], rp.av[3]);
    met.ratio.add_block(rp.ra[0], rp.ra[1], wsum, rp.ra[2], rp.ra[3]);
    met.is_weight.add_block(wsum, wsum, wsum, 1.0, 1.0);
    if (kl_on) met.kl.add_block(rp.kb[0], rp.kb[1], wsum, rp.kb[2], rp.kb[3]);
    if (weight_clip) met.weight_clip.add_indicator(rp.c_w, wsum);
    if (!seq_clip) {
      met.clip_low.add_indicator(rp.c_lo, wsum);
      met.clip_high.add_indicator(rp.c_hi, wsum);
      met.clip_region.add_indicator(rp.c_re, wsum);
      met.clip_dual.add_indicator(rp.c_du, wsum);
      met.clip_low_seq.add(rp.c_lo / wsum);
      met.clip_high_seq.add(rp.c_hi / wsum);
    }
  }
  loss_scalars res;
  res.policy_loss = pol;
  res.kl_loss = kls;
  res.loss = pol + kl_coef * kls;
  res.metrics = met;
  return res;
}

/// Adds w x, w x^2 and the extrema of x to a metric block {sum, sum_sq, min, max}.
inline void add_block(double* b, double x, double w) noexcept {
  b[0] += w * x;
  b[1] += w * x * x;
  b[2] = x < b[2] ? x : b[2];
  b[3] = x > b[3] ? x : b[3];
}

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail
