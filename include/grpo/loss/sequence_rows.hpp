// SPDX-License-Identifier: Apache-2.0
/// @file sequence_rows.hpp
/// @brief The sequence-level row engine of compute_loss_into: sequence-level ratios (GSPO,
///        GSPO-token) with PPO clip and no row-wide term besides the sequence ratio
///        (kind_traits<K>::sequence_rows). The sequence ratio is one number per row: each row is
///        swept for sum m (lp - lo), then its tokens are evaluated against the row constants
///        (kernels/sequence_row.ipp for float on the avx2 / avx512 paths,
///        loss/simd_sequence_rows.hpp otherwise). The scalar twin here runs the same algorithm in
///        double with the general engine's exact operation order: it reruns a row flagged by a
///        kernel (a non-finite input on a valid token: it throws the error naming the argument; a
///        float overflow of a lane sum: it recomputes the row). Rows are threaded and merged in row
///        order. The entropy term (no top-entropy mask) is the token rows' entropy sweep, run after
///        each row (entropy_row_run). With a rollout IS weight (tis_options token / sequence /
///        seq-mask, or the caller's is_weights) the packet rows or the lane-generic rows carry the
///        weight (sequence_tis_rows) and a row they flag is rerun by the general engine's row in
///        double (general_row_alone: the named error, or the exact row).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/core/parallel.hpp>
#include <grpo/loss/call.hpp>
#include <grpo/loss/general_rows.hpp>  // packet_rows_or_double, tis_rows_params, tis_row_out
#include <grpo/loss/plan.hpp>
#include <grpo/loss/simd_sequence_rows.hpp>
#include <grpo/loss/token_rows.hpp>  // merge_entropy (the entropy term's merge, as the token rows)
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>

#include <cmath>
#include <memory>
#include <type_traits>
#include <vector>

namespace grpo::detail {
inline namespace GRPO_ISA_ABI {

/// Sweep 2 of the scalar twin for one token: per-token loss at every position (as the general
/// engine), gradient without the spread, metrics and clip counts; the entropy term (an entropy
/// input: s_ent m H into the row's entropy sum and block, dL/dH = (-coef s_ent) m, as the token
/// rows' token_row_scalar).
template <class T, class M, class G>
void sequence_token_scalar(const loss_call<T, M, G>& c, index_t i, index_t t, double mb,
                           const ratio_terms& rt, double sp, double sk, double se, double& row_g,
                           fast_row_part& rp) {
  const auto& o = c.o;
  const auto& P = o.policy;
  const auto& out = c.out;
  const bool want_ptl = has(out.per_token_loss), want_ge = has(out.grad_entropy);
  const bool kl_on = o.kl_coef != 0.0;
  const bool seq = P.level == is_level::sequence;
  const ops::ppo_clip_params<double> cpd{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
  const double r = rt.r, drd = rt.d_direct, drs = rt.d_spread;
  const double lp = c.lp_at(i, t), A = c.A_at(i, t);
  const policy_token_terms term = policy_token(P, r, A, lp);
  double ptl = term.value, g = 0.0;
  if (mb != 0.0) {
    const double W = sp * mb;
    rp.pol += W * term.value;
    g += W * (term.d_ratio * drd + term.d_logp);
    row_g += W * term.d_ratio * drs;
  }
  if (kl_on) {
    const double lr = static_cast<double>(c.in.ref_logp(i, t));
    const auto kv = ops::kl_value_grad(o.kl, lp, lr);
    double k = kv.value, kg = kv.grad, kd = 0.0, ks = 0.0;
    if (o.kl_bias_correction) {  // d(k r) = k' r + k r' (r' direct, or spread)
      kd = k * drd;
      ks = k * drs;
      kg *= r;
      k = ops::kl_bias_corrected(k, r);
    }
    ptl += o.kl_coef * k;
    if (mb != 0.0) {
      const double W = sk * mb;
      rp.kls += W * k;
      g += W * o.kl_coef * (kg + kd);
      row_g += W * o.kl_coef * ks;
      add_block(rp.kb, k, mb);
    }
  }
  if (want_ptl) out.per_token_loss(i, t) = static_cast<G>(ptl);
  if (want_ge)
    out.grad_entropy(i, t) = c.has_ent ? static_cast<G>(-o.entropy_coef * se * mb) : G(0);
  out.grad_logp(i, t) = static_cast<G>(g);
  if (mb == 0.0) return;
  if (c.has_ent) {  // (validated by sweep 1)
    const double h = static_cast<double>(c.in.entropy(i, t));
    rp.ent += se * mb * h;
    add_block(rp.eb, h, mb);
  }
  rp.wsum += mb;
  add_block(rp.ak, -(lp - c.lo_at(i, t)), mb);
  add_block(rp.av, A, mb);
  add_block(rp.ra, r, mb);
  if (!(seq && c.adv_per_row)) {
    const bool lo_c = ops::ppo_clipped_low(r, A, cpd), hi_c = ops::ppo_clipped_high(r, A, cpd);
    rp.c_lo += lo_c ? mb : 0.0;
    rp.c_hi += hi_c ? mb : 0.0;
    rp.c_re += (lo_c || hi_c) ? mb : 0.0;
    rp.c_du += ops::ppo_dual_clipped(r, A, cpd) ? mb : 0.0;
  }
}

/// The scalar twin of the sequence-level row kernels (one row, double, the general engine's
/// order): sweep 1 validation and row sums, sweep 2 per token, sweep 3 GSPO's spread.
template <class T, class M, class G>
void sequence_row_scalar(const loss_call<T, M, G>& c, const loss_rows& r, index_t i,
                         fast_row_part& rp) {
  const auto& o = c.o;
  const auto& P = o.policy;
  const auto& out = c.out;
  const bool want_ptl = has(out.per_token_loss), want_ge = has(out.grad_entropy);
  const bool kl_on = o.kl_coef != 0.0;
  const bool seq = P.level == is_level::sequence;
  const ops::ppo_clip_params<double> cpd{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
  rp = fast_row_part{};
  const double sp = r.s_pol[i], sk = r.s_kl[i], se = c.has_ent ? r.s_ent[i] : 0.0;
  // Sweep 1: validation (the general engine's order) and the row sums in token order.
  double n = 0.0, sx = 0.0;
  for (index_t t = 0; t < c.Tn; ++t) {
    const double mb = c.base_m(i, t);
    if (mb == 0.0) continue;
    const double lp = c.lp_at(i, t), lo = c.lo_at(i, t);
    GRPO_EXPECTS(std::isfinite(lp), bad_value, "logp: non-finite value on a valid token");
    GRPO_EXPECTS(std::isfinite(lo), bad_value, "old_logp: non-finite value on a valid token");
    GRPO_EXPECTS(std::isfinite(c.A_at(i, t)), bad_value,
                 "advantages: non-finite value on a valid token");
    if (kl_on)
      GRPO_EXPECTS(std::isfinite(static_cast<double>(c.in.ref_logp(i, t))), bad_value,
                   "ref_logp: non-finite value on a valid token");
    if (c.has_ent)
      GRPO_EXPECTS(std::isfinite(static_cast<double>(c.in.entropy(i, t))), bad_value,
                   "entropy: non-finite value on a valid token");
    n += mb;
    sx += mb * (lp - lo);
  }
  const double nc = n < 1.0 ? 1.0 : n;
  const ratio_terms rt = token_ratio(P, 0.0, sx / nc);
  // Sweep 2: every token (per-token loss at every position, as the general engine).
  double row_g = 0.0;
  for (index_t t = 0; t < c.Tn; ++t) {
    const double mb = c.base_m(i, t);
    if (mb == 0.0 && !want_ptl) {
      out.grad_logp(i, t) = G(0);
      if (want_ge)
        out.grad_entropy(i, t) = c.has_ent ? static_cast<G>(-o.entropy_coef * se * mb) : G(0);
      continue;
    }
    sequence_token_scalar(c, i, t, mb, rt, sp, sk, se, row_g, rp);
  }
  // Sweep 3 (GSPO): d r_i / d lp_t = r_i m_t / max(n_i, 1) times the row's summed d l / d r.
  if (seq && row_g != 0.0) {
    for (index_t t = 0; t < c.Tn; ++t) {
      const double mb = c.base_m(i, t);
      if (mb == 0.0) continue;
      out.grad_logp(i, t) =
          static_cast<G>(static_cast<double>(out.grad_logp(i, t)) + row_g * mb / nc);
    }
  }
  if (seq && c.adv_per_row) {
    const double A = c.A_at(i, 0), rr = rt.r;
    rp.seq_clip = static_cast<unsigned char>((ops::ppo_clipped_low(rr, A, cpd) ? 1 : 0) |
                                             (ops::ppo_clipped_high(rr, A, cpd) ? 2 : 0) |
                                             (ops::ppo_dual_clipped(rr, A, cpd) ? 4 : 0));
  }
}

/// One sequence row with an IS weight on the packet path of this call (false: no packet path, or
/// the row was flagged and must be rerun by general_row_alone). ls: the row's sampler log-probs.
template <class M, class G>
bool gspo_tis_row_packet([[maybe_unused]] const gspo_params& q, [[maybe_unused]] bool kl_on,
                         [[maybe_unused]] const fast_simd_row<float, M, G>& rw,
                         [[maybe_unused]] const float* ls, [[maybe_unused]] index_t Tn,
                         [[maybe_unused]] fast_row_part& rp,
                         [[maybe_unused]] tis_row_out& out) noexcept {
  [[maybe_unused]] const isa path = weighted_rows_isa();
  [[maybe_unused]] const bool row_a = rw.A == nullptr;
#if GRPO_LOSS_HAS_AVX512_ROWS
  if (path == isa::avx512)
    return row_a ? loss_avx512::gspo_row_run<true>(q, kl_on, rw, Tn, rp, ls, out.iw)
                 : loss_avx512::gspo_row_run<false>(q, kl_on, rw, Tn, rp, ls, out.iw);
#endif
#if GRPO_LOSS_HAS_AVX2_ROWS
  if (path == isa::avx2)
    return row_a ? loss_avx2::gspo_row_run<true>(q, kl_on, rw, Tn, rp, ls, out.iw)
                 : loss_avx2::gspo_row_run<false>(q, kl_on, rw, Tn, rp, ls, out.iw);
#endif
  return false;
}

/// GSPO / GSPO-token with a rollout IS weight (plan(): token / sequence / seq-mask TIS or the
/// caller's is_weights, no OPSM / entropy term / top-entropy mask; rows contiguous along t): the
/// packet rows with the weight (kernels/sequence_row.ipp) for float inputs on the avx2 / avx512
/// paths, the lane-generic rows (gspo_simd_tis_row) for double inputs and on the baseline path; a
/// row either flags is rerun by general_row_alone (double: the named error, or the exact row).
/// Merged in row order (the result does not depend on the number of threads), the metric schema
/// the general engine's: TRL's per-sequence clip metrics once per row, the rows' is_weight blocks
/// in place of merge_row_parts' weight 1.
template <class T, class M, class G>
loss_scalars sequence_tis_rows(const loss_call<T, M, G>& c, loss_rows& r, gspo_params gq) {
  const auto& o = c.o;
  const auto B = static_cast<std::size_t>(c.B);
  const bool kl_on = o.kl_coef != 0.0;
  const tis_params tq = tis_rows_params(o, c.has_isw);
  gq.tis = &tq;
  std::vector<fast_row_part> parts(B);
  std::vector<tis_row_out> outs(B);
  std::vector<std::unique_ptr<general_part>> fell(B);
  const bool smp = c.has_smp && !c.has_isw;  // (the sampler is not read beside is_weights)
  const bool stream_grad = stream_gradient<G>(c.B, c.Tn);
  [[maybe_unused]] const bool packet =
      std::is_same_v<T, float> && weighted_rows_isa() != isa::baseline;
  auto run_row = [&](index_t i) {
    const auto k = static_cast<std::size_t>(i);
    bool ok = false;
    if constexpr (plan_simd_types<T, M, G>) {
      if (c.Tn > 0) {  // (an empty row has no row pointers: the general row below)
        auto rw = row_desc<T>(c, r, i, stream_grad);
        const T* ls = smp ? &c.in.sampler_logp(i, 0) : nullptr;
        if (c.has_isw) {
          rw.w = &c.in.is_weights(i, 0);
          rw.nw = i + 1 < c.B ? &c.in.is_weights(i + 1, 0) : nullptr;
        }
        if constexpr (std::is_same_v<T, float>) {
          if (packet)
            ok = gspo_tis_row_packet(gq, kl_on, rw, ls, c.Tn, parts[k], outs[k]);
          else
            ok = gspo_simd_tis_row(gq, kl_on, rw, c.Tn, parts[k], ls, outs[k].iw);
        } else {
          ok = gspo_simd_tis_row(gq, kl_on, rw, c.Tn, parts[k], ls, outs[k].iw);
        }
      }
    }
    if (!ok) {
      parts[k] = fast_row_part{};
      fell[k] = std::make_unique<general_part>();
      general_row_alone(c, r, i, *fell[k]);
    }
  };
  par::for_each_row(c.B, run_row, loss_loop(c.Tn));
  // Row by row (a rerun row's general part holds its own per-sequence clip values and IS weights).
  const bool seq_clip = gq.seq && c.adv_per_row;
  loss_scalars res;
  res.metrics = r.met;
  double ent = 0.0;  // (no entropy term on these rows)
  std::vector<fast_row_part> one(1);
  for (std::size_t k = 0; k < B; ++k) {
    if (fell[k]) {
      add_double_row(*fell[k], res, ent);
      continue;
    }
    one[0] = parts[k];
    const stat_accumulator iw = res.metrics.is_weight;
    const loss_scalars rk = merge_row_parts(one, o.kl_coef, kl_on, seq_clip, false, res.metrics);
    res.policy_loss += rk.policy_loss;
    res.kl_loss += rk.kl_loss;
    res.metrics = rk.metrics;
    res.metrics.is_weight = iw;  // (merge_row_parts adds a weight-1 block: the row's instead)
    if (parts[k].wsum > 0) {
      const double* w = outs[k].iw;
      res.metrics.is_weight.add_block(w[0], w[1], parts[k].wsum, w[2], w[3]);
    }
  }
  res.loss = res.policy_loss + o.kl_coef * res.kl_loss;
  res.engine_used = loss_engine::sequence_rows;
  return res;
}

/// The sequence-level engine over every row (threaded), merged in row order.
template <class T, class M, class G>
loss_scalars sequence_rows(const loss_call<T, M, G>& c, loss_rows& r) {
  const auto& o = c.o;
  const auto& P = o.policy;
  const bool kl_on = o.kl_coef != 0.0;
  const bool seq = P.level == is_level::sequence;
  std::vector<fast_row_part> parts(static_cast<std::size_t>(c.B));
  gspo_params gq;
  gq.P = P;
  gq.kl = o.kl;
  gq.kl_coef = o.kl_coef;
  gq.kl_bias = o.kl_bias_correction;
  gq.seq = seq;
  if (o.tis.enabled || c.has_isw) return sequence_tis_rows(c, r, gq);
  const bool stream_grad = stream_gradient<G>(c.B, c.Tn);
  auto run_row = [&](index_t i) {
    fast_row_part& rp = parts[static_cast<std::size_t>(i)];
    if constexpr (plan_simd_types<T, M, G> && std::is_same_v<T, float>) {
      // The packet rows (kernels/sequence_row.ipp) on the run-time path; a row they flag (a
      // non-finite input on a valid token, or a float overflow) is rerun by the scalar twin,
      // which throws [grpo.bad_value] or recomputes it in double.
      [[maybe_unused]] const isa path = loss_kernel_isa();
      if (c.Tn > 0 && path >= isa::avx2) {
        const auto rw_all = row_desc<float>(c, r, i, stream_grad);
        auto rw = rw_all;
        if (rw.h != nullptr) rw.ge = nullptr;  // (dL/dH: the entropy sweep's)
        bool ok = false;
#if GRPO_LOSS_HAS_AVX512_ROWS
        if (path >= isa::avx512)
          ok = c.adv_per_row ? loss_avx512::gspo_row_run<true>(gq, kl_on, rw, c.Tn, rp)
                             : loss_avx512::gspo_row_run<false>(gq, kl_on, rw, c.Tn, rp);
        else
#endif
#if GRPO_LOSS_HAS_AVX2_ROWS
          ok = c.adv_per_row ? loss_avx2::gspo_row_run<true>(gq, kl_on, rw, c.Tn, rp)
                             : loss_avx2::gspo_row_run<false>(gq, kl_on, rw, c.Tn, rp);
#endif
        ok = ok && (rw_all.h == nullptr || entropy_row_run(rw_all, c.Tn, rp));
        if (!ok) {
          rp = fast_row_part{};
          sequence_row_scalar(c, r, i, rp);
        }
        return;
      }
    }
    if constexpr (plan_simd_types<T, M, G>) {  // xsimd twin (double; float without AVX-512)
      if (c.Tn > 0) {
        using CT = std::conditional_t<std::is_same_v<T, double>, double, float>;
        const auto rw_all = row_desc<CT>(c, r, i, stream_grad);
        auto rw = rw_all;
        if (rw.h != nullptr) rw.ge = nullptr;  // (dL/dH: the entropy sweep's)
        if (!gspo_simd_row(gq, kl_on, rw, c.Tn, rp) ||
            (rw_all.h != nullptr && !entropy_row_run(rw_all, c.Tn, rp))) {
          rp = fast_row_part{};
          sequence_row_scalar(c, r, i, rp);
        }
        return;
      }
    }
    sequence_row_scalar(c, r, i, rp);
  };
  par::for_each_row(c.B, run_row, loss_loop(c.Tn));
  loss_scalars res = merge_row_parts(parts, o.kl_coef, kl_on, seq && c.adv_per_row, false, r.met);
  if (c.has_ent) merge_entropy(parts, o.kl_coef, o.entropy_coef, res);
  res.engine_used = loss_engine::sequence_rows;
  return res;
}

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail
