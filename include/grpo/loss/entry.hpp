// SPDX-License-Identifier: Apache-2.0
/// @file entry.hpp
/// @brief The loss engine's entry points for the fused paths (fused_grpo.hpp, fused_linear.hpp):
///        the coefficients g = dL/dlogp and h = dL/dH of one chunk of tokens
///        (loss_chunk_plan: options, plan, batch checks and mask-only row factors once per call,
///        then any number of chunks with no re-validation, no allocation and no pass over the
///        batch), and the loss scalars and metrics alone (compute_loss_metrics: no [B, T]
///        gradient buffer).
///
/// Why a chunk's coefficients are exact: with token-local options (loss/plan.hpp single_pass_ok,
/// minus the row filter of OpenRLHF's seq-mask TIS and the batch-wide float32 KL) every term of
/// the objective is a token sum scaled by its row's aggregation factor, L = sum_i sum_t s_i m_it
/// l_it (aggregate.hpp), and s_i depends on the mask alone. So the tokens t0 .. t0 + n - 1 of
/// row i, evaluated as a [1, n] micro-batch under token_sum aggregation with scale s_i, give
/// exactly their share of the full batch's gradient. loss_chunk_plan::coefficients runs the same
/// row engine as that micro-batch call of compute_loss_into (the vectorised or scalar token row,
/// or the general engine's row) on the same [1, n] views, so its g and h are bit for bit those of
/// the micro-batch call, including its overflow rule (clamped rerun or named error).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/core/strided_view.hpp>
#include <grpo/core/validate.hpp>
#include <grpo/loss/call.hpp>
#include <grpo/loss/compute.hpp>
#include <grpo/loss/general_rows.hpp>
#include <grpo/loss/options.hpp>
#include <grpo/loss/plan.hpp>
#include <grpo/loss/token_rows.hpp>

#include <cmath>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>


namespace grpo {

/// True when loss_chunk_plan (the fused single-pass schedule) computes these options exactly:
/// single_pass_ok (token-level ratio, no OPSM / top-entropy quantile / GMPO / VESPO / sequence
/// TIS), and neither OpenRLHF's seq-mask TIS (its keep decision is a mean over the whole row)
/// nor OpenRLHF's float32 in-loss KL (one float32 sum over the batch).
inline bool chunk_coefficients_ok(const loss_options& o) noexcept {
  return single_pass_ok(o) && !(o.tis.enabled && o.tis.seq_mask) &&
         !(o.kl_openrlhf_float32 && o.kl_coef != 0.0);
}

namespace detail {

/// The options under which the tokens of ONE sequence, evaluated alone as a [1, n] micro-batch,
/// give their exact share of the full batch's loss: every term a token sum scaled by the row's
/// aggregation factor of the full batch (policy, KL, entropy).
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

inline namespace GRPO_ISA_ABI {

/// Per-thread state of one chunk: the [1, n] call's row counts, factors and pass-1 row context,
/// sized once (no allocation per chunk).
struct chunk_scratch {
  loss_rows r{1};
  general_stats gs;
  chunk_scratch() {
    r.n_fin.assign(1, 0.0);
    r.n_ent.assign(1, 0.0);
    r.s_pol.assign(1, 0.0);
    r.s_kl.assign(1, 0.0);
    r.s_ent.assign(1, 0.0);
    r.row_end.assign(1, 0);
    r.row_bin.assign(1, 0);
    gs.rows.resize(1);
    gs.xbar.assign(1, 0.0);
    gs.vespo_lw.assign(1, 0.0);
  }
};

/// What the overflow rule and the finiteness check of compute_loss_into read from one chunk.
struct chunk_outcome {
  double loss = 0.0;
  bool ratio_inf = false;  ///< metrics.ratio.max would be +inf
};

}  // namespace GRPO_ISA_ABI
}  // namespace detail

inline namespace GRPO_ISA_ABI {

/// The coefficients of chunks of one batch, g = dL/dlogp and h = dL/dH, for a fused path that
/// computes logp (and H) chunk by chunk. Built once per call from the options and the batch, whose
/// `logp` (and `entropy`, when the loss reads it) view the caller's [B, T] buffers: a chunk's
/// values must be written there before its coefficients() call; other chunks may still be
/// unwritten (they are never read). T: the batch's value type, M: the mask's, G: the
/// coefficients' type.
template <class T, class M, class G = T>
class loss_chunk_plan {
 public:
  /// Validates the options (chunk_coefficients_ok, else [grpo.bad_option]), the batch's shapes
  /// and option-vs-input rules as compute_loss_into does, the mask entries of every
  /// non-truncated row, and forms the row factors s_i of the three terms from the mask alone.
  /// O(B T) once.
  loss_chunk_plan(const loss_options& o, const loss_batch<T, M>& batch);

  /// Writes g[k] = dL/dlogp(i, t0 + k) and (h non-null) h[k] = dL/dH(i, t0 + k), k < n, exactly
  /// (bitwise) as compute_loss_into on the [1, n] micro-batch of those tokens under
  /// detail::row_token_sum_options(o, s_pol_i, s_kl_i, s_ent_i) writes them, with its overflow
  /// rule. Throws [grpo.bad_value] for a non-finite input on a valid token, as that call does.
  /// No validation of the chunk's views, no allocation, O(n) work. Thread-safe (a thread-local
  /// scratch per thread).
  /// @pre 0 <= i < B, 0 <= t0, 1 <= n, t0 + n <= T; logp (and entropy) of the chunk written.
  void coefficients(index_t i, index_t t0, index_t n, G* g, G* h) const;

  index_t rows() const noexcept { return B_; }
  index_t cols() const noexcept { return Tn_; }

 private:
  using CT = std::conditional_t<std::is_same_v<T, double>, double, float>;
  struct variant {  // the options of a run (as given, or with the overflow clamp) and their plans
    loss_options o;
    loss_plan pl[2];  // chunks of one token (every stride is unit then), longer chunks
    detail::fast_simd_params<CT> sprm{};
    detail::tis_params tq{};  ///< the TIS rows' parameters (route general_rows)
  };
  loss_batch<T, M> micro(index_t i, index_t t0, index_t n) const;
  void make_variant(variant& v) const;
  detail::chunk_outcome run(const variant& v, index_t i, index_t t0, index_t n, G* g, G* h) const;

  loss_batch<T, M> in_;
  index_t B_ = 0, Tn_ = 0;
  variant base_, clamped_;
  std::vector<double> s_pol_, s_kl_, s_ent_;
};

template <class T, class M, class G>
loss_chunk_plan<T, M, G>::loss_chunk_plan(const loss_options& o, const loss_batch<T, M>& batch)
    : in_(batch) {
  static_assert(std::is_floating_point_v<T> && std::is_floating_point_v<G>,
                "loss_chunk_plan: float or double values and coefficients");
  validate(o);
  GRPO_EXPECTS(chunk_coefficients_ok(o), bad_option,
               "loss_chunk_plan: the options are not token-local (sequence-level ratio, OPSM, "
               "top-entropy quantile, GMPO, VESPO, sequence or seq-mask TIS, OpenRLHF float32 "
               "KL): use compute_loss_into on the whole batch");
  loss_options sub = o;
  if (o.ratio_base_sampler) {  // compute_loss_into's sampler_base route, taken once
    GRPO_EXPECTS(detail::has(batch.sampler_logp), shape_mismatch,
                 "sampler_logp: required when ratio_base_sampler is set");
    sub.ratio_base_sampler = false;
    in_.old_logp = batch.sampler_logp;
    in_.sampler_logp = {};
  }
  base_.o = detail::row_token_sum_options(sub, 1.0, 1.0, 1.0);  // scales: the row factors below
  validate(base_.o);
  B_ = in_.logp.extent(0);
  Tn_ = in_.logp.extent(1);
  {  // the batch checks of compute_loss_into, on the whole batch (extents only for the outputs)
    G none{};
    loss_outputs<G> out;
    out.grad_logp = strided_view<G, 2>(&none, {B_, Tn_}, {0, 0});
    out.grad_entropy = out.grad_logp;
    detail::check_batch(base_.o, in_, out);
  }
  // Row factors from the mask alone (the final mask is the base mask for these options).
  std::vector<double> n_row(static_cast<std::size_t>(B_), 0.0);
  for (index_t i = 0; i < B_; ++i) {
    if (!in_.truncated.empty() && in_.truncated[static_cast<std::size_t>(i)]) continue;
    double n = 0.0;
    for (index_t t = 0; t < Tn_; ++t) {
      const double m = static_cast<double>(in_.mask(i, t));
      detail::expect_mask_entry(m, "mask", i, t);
      if (m != 0.0) n += m;
    }
    n_row[static_cast<std::size_t>(i)] = n;
  }
  s_pol_ = aggregation_row_scales(n_row, Tn_, o.agg);
  s_kl_ = o.kl_agg ? aggregation_row_scales(n_row, Tn_, *o.kl_agg) : s_pol_;
  s_ent_ = aggregation_row_scales(n_row, Tn_, o.entropy_agg);
  make_variant(base_);
  // compute_loss_into's overflow rerun: the log-ratio clamped at overflow_log_ratio_max<T>.
  clamped_.o = base_.o;
  clamped_.o.policy.log_ratio_max = overflow_log_ratio_max<T>;
  make_variant(clamped_);
}

template <class T, class M, class G>
loss_batch<T, M> loss_chunk_plan<T, M, G>::micro(index_t i, index_t t0, index_t n) const {
  loss_batch<T, M> b = in_;
  b.logp = detail::row_slice(in_.logp, i, t0, n);
  b.old_logp = detail::row_slice(in_.old_logp, i, t0, n);
  b.ref_logp = detail::row_slice(in_.ref_logp, i, t0, n);
  b.advantages = detail::row_slice(in_.advantages, i, t0, n);
  b.mask = detail::row_slice(in_.mask, i, t0, n);
  b.sampler_logp = detail::row_slice(in_.sampler_logp, i, t0, n);
  b.is_weights = detail::row_slice(in_.is_weights, i, t0, n);
  b.entropy = detail::row_slice(in_.entropy, i, t0, n);
  b.truncated = in_.truncated.empty() ? std::span<const unsigned char>{}
                                      : in_.truncated.subspan(static_cast<std::size_t>(i), 1);
  return b;
}

template <class T, class M, class G>
void loss_chunk_plan<T, M, G>::make_variant(variant& v) const {
  v.sprm = detail::token_simd_params<CT>(v.o);
  v.tq = detail::tis_rows_params(v.o, detail::has(in_.is_weights));
  if (B_ == 0 || Tn_ == 0) return;
  // plan() reads only the options, the strides along t and which views are given: one plan per
  // chunk length class (a [1, 1] view counts as unit-stride whatever its stride).
  G dummy[2] = {};
  for (index_t k = 0; k < 2; ++k) {
    const index_t n = k == 0 ? 1 : (Tn_ > 1 ? 2 : 1);
    loss_outputs<G> out;
    out.grad_logp = strided_view<G, 2>(dummy, {1, n}, {n, 1});
    out.grad_entropy = out.grad_logp;
    v.pl[k] = plan(v.o, micro(0, 0, n), out);
  }
}

template <class T, class M, class G>
detail::chunk_outcome loss_chunk_plan<T, M, G>::run(const variant& v, index_t i, index_t t0,
                                                    index_t n, G* g, G* h) const {
  namespace d = detail;
  static thread_local d::chunk_scratch w;
  const loss_plan& pl = v.pl[n > 1 ? 1 : 0];
  const loss_batch<T, M> b = micro(i, t0, n);
  loss_outputs<G> out;
  out.grad_logp = strided_view<G, 2>(g, {1, n}, {n, 1});
  if (h != nullptr) out.grad_entropy = strided_view<G, 2>(h, {1, n}, {n, 1});
  const d::loss_call<T, M, G> c(v.o, b, out);
  d::loss_rows& r = w.r;
  const auto si = static_cast<std::size_t>(i);
  const bool trunc = c.trunc(0);
  // Pass 1 of the [1, n] call (run_engines): the vectorised mask pass or the general one.
  // (token-local options: the general_rows route is the TIS rows here, never GMPO / VESPO)
  const bool vec = (pl.route == loss_route::token_rows && pl.simd) ||
                   pl.route == loss_route::general_rows;
  double n_base = 0.0;
  if (vec) {
    bool bad = false, bin = false;
    index_t end = 0;
    const double nm = d::fast_mask_row_sum<CT>(&b.mask(0, 0), n, bad, end, bin);
    r.row_bin[0] = bin ? (nm == static_cast<double>(end) ? 2 : 1) : 0;
    n_base = trunc ? 0.0 : nm;
    r.row_end[0] = trunc ? 0 : end;
  } else {
    d::row_sums rs;
    for (index_t t = 0; t < n; ++t) {
      const double m = trunc ? 0.0 : static_cast<double>(b.mask(0, t));
      if (m != 0.0) rs.n += m;
    }
    w.gs.rows[0] = d::finish_row(c.lpar, rs);
    w.gs.rows[0].h_thr = -std::numeric_limits<double>::infinity();
    w.gs.xbar[0] = w.gs.rows[0].xbar;
    w.gs.vespo_lw[0] = w.gs.rows[0].vespo_lw;
    n_base = w.gs.rows[0].n_base;
  }
  r.n_base[0] = r.n_fin[0] = r.n_ent[0] = n_base;
  r.s_pol[0] = s_pol_[si];  // token_sum: aggregation_row_scales gives the scale itself
  r.s_kl[0] = s_kl_[si];
  r.s_ent[0] = s_ent_[si];
  d::chunk_outcome oc;
  if (pl.route == loss_route::token_rows) {  // token_rows() for one row, then its merge's sums
    d::fast_row_part rp;
    bool done = false;
    if constexpr (plan_simd_types<T, M, G>) {
      if (pl.simd) {
        const auto rw = d::row_desc<CT>(c, r, 0, d::stream_gradient<G>(1, n));
        done = d::fast_simd_row_dispatch(v.o.policy.kind, v.o.kl_coef != 0.0, v.sprm, rw, n, rp);
        if (!done) rp = d::fast_row_part{};  // the scalar row names the bad input
      }
    }
    if (!done) d::token_row_scalar(c, r, 0, rp);
    oc.loss = (0.0 + rp.pol) + v.o.kl_coef * (0.0 + rp.kls);
    oc.ratio_inf = rp.wsum > 0 && rp.ra[3] == std::numeric_limits<double>::infinity();
  } else if (pl.route == loss_route::general_rows) {  // tis_rows() for one row, as above
    d::fast_row_part rp;
    d::tis_row_out tw;
    bool done = false;
    if constexpr (std::is_same_v<T, float> && plan_simd_types<T, M, G>) {
      auto rw = d::row_desc<float>(c, r, 0, d::stream_gradient<G>(1, n));
      if (c.has_isw) rw.w = &b.is_weights(0, 0);  // (the sampler is not read beside it)
      const float* ls = c.has_smp && !c.has_isw ? &b.sampler_logp(0, 0) : nullptr;
      done = d::tis_row_packet(v.tq, rw, ls, nullptr, n, rp, tw);
    }
    if (done) {
      oc.loss = (0.0 + rp.pol) + v.o.kl_coef * (0.0 + rp.kls);
      oc.ratio_inf = rp.wsum > 0 && rp.ra[3] == std::numeric_limits<double>::infinity();
    } else {  // (the named error, or the exact row in double)
      d::general_part part;
      d::general_row_alone(c, r, 0, part);
      oc.loss = (0.0 + part.pol) + v.o.kl_coef * (0.0 + part.kl);
      oc.ratio_inf = part.met.ratio.max == std::numeric_limits<double>::infinity();
    }
  } else {
    GRPO_EXPECTS(pl.route == loss_route::general, bad_option,
                 "loss_chunk_plan: internal route error");
    d::general_part part;
    d::general_row(c, w.gs, r, 0, part);
    oc.loss =
        (0.0 + part.pol) + v.o.kl_coef * (0.0 + part.kl) - v.o.entropy_coef * (0.0 + part.ent);
    oc.ratio_inf = part.met.ratio.max == std::numeric_limits<double>::infinity();
  }
  return oc;
}

template <class T, class M, class G>
void loss_chunk_plan<T, M, G>::coefficients(index_t i, index_t t0, index_t n, G* g, G* h) const {
  detail::chunk_outcome oc = run(base_, i, t0, n, g, h);
  // compute_loss_into's overflow rule on the micro-batch (loss/compute.hpp).
  if (detail::overflow_rerun<T>(base_.o, oc.ratio_inf)) oc = run(clamped_, i, t0, n, g, h);
  detail::expect_finite_loss(oc.loss);
}

/// The loss scalars and metrics of compute_loss_into(o, in, out) with out = {grad_logp of the
/// batch's value type T, nothing else}, bit for bit, without a [B, T] gradient buffer: the
/// engines still store a gradient row per row, into one [T] row that every row shares (a
/// [B, T] view with row stride 0, flagged as scratch: loss_call_flags). The token-level row
/// engine gives each thread a row of its own
/// then and runs threaded; the other engines store into the shared row on one thread (run_engines,
/// loss/compute.hpp). The result does not depend on the thread count (row-order merge).
/// O(T) extra memory (per thread). @pre as compute_loss_into.
template <class T, class M>
loss_scalars compute_loss_metrics(const loss_options& o, const loss_batch<T, M>& in) {
  detail::check_view(in.logp, "logp");
  const index_t B = in.logp.extent(0), Tn = in.logp.extent(1);
  std::vector<T> sink(static_cast<std::size_t>(Tn > 0 ? Tn : 1));
  loss_outputs<T> out;
  out.grad_logp = strided_view<T, 2>(sink.data(), {B, Tn}, {0, 1});
  detail::loss_call_flags f;
  f.scratch_grad = true;  // (a caller's row-stride-0 gradient is an error: this one is ours)
  return detail::compute_loss_into_flagged(o, in, out, f);
}

}  // namespace GRPO_ISA_ABI
}  // namespace grpo
