// SPDX-License-Identifier: Apache-2.0
/// @file general_rows.hpp
/// @brief The general engine of compute_loss_into (every option): pass 1 (base mask, row
///        statistics, validation, the top-entropy threshold), the final-mask counts, and pass 2
///        (per-token loss, gradient, metrics) over the shared per-token composition of
///        <grpo/detail/loss_token.hpp> (the CUDA kernels' code), rows threaded and merged in row
///        order. Also pass 1 of the scalar token-row engine (loss/token_rows.hpp), and the
///        packet rows of the sequence-weighted kinds (weighted_rows: GMPO / VESPO with
///        per-sequence advantages, kernels/general_row.ipp) with this engine's row as their
///        double fallback (general_row_alone).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/core/parallel.hpp>
#include <grpo/detail/loss_token.hpp>
#include <grpo/loss/call.hpp>
#include <grpo/loss/kernels/general_rows.hpp>
#include <grpo/loss/plan.hpp>
#include <grpo/loss/token_rows.hpp>  // token_simd_params
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

namespace grpo::detail {

inline namespace GRPO_ISA_ABI {

/// Pass-1 row state of the general engine: the row contexts of the shared composition and the
/// row quantities pass 2 reads directly.
struct general_stats {
  std::vector<row_ctx> rows;
  std::vector<double> xbar;      ///< mean log ratio (sequence levels)
  std::vector<double> vespo_lw;  ///< VESPO sequence log weight
};

/// Pass 1: base mask, row statistics, validation. Row quantities that every token of the row
/// needs before its loss can be formed:
///   n_i    = sum_t m_it (base mask: loss mask x truncation)
///   xbar_i = sum_t m (lp - lo) / max(n_i, 1)          sequence log ratio (GSPO, TRL clamp(min=1))
///   gap_i  = sum_t m (ls - lp) / max(n_i, 1)          OPSM off-policy gap (ls = sampler or old)
///   rho_i  = exp(sum_t m (lo - ls))                   sequence TIS weight (a product, not a mean)
///   lw_i   = clamp(sum_t m clamp(lp-lo, +-20) + sum_t clamp(log rho_t), log 1e-8, 20)  VESPO
/// then the top-entropy threshold (TRL get_high_entropy_mask: quantile at 1 - rho, linear
/// interpolation; TRL gathers the valid entropies of all ranks first, callers that shard pass the
/// global value in entropy_threshold so every shard masks the same tokens).
/// The valid entropies are gathered per thread over contiguous row ranges and joined in row
/// order, kept in the input's precision where it is float (exact: double(float) is monotone).
template <class T, class M, class G>
general_stats general_pass1(const loss_call<T, M, G>& c, const loss_plan& pl, loss_rows& r) {
  using V = std::conditional_t<std::is_same_v<T, float>, float, double>;
  const index_t B = c.B, Tn = c.Tn;
  const auto& o = c.o;
  general_stats gs;
  gs.rows.resize(static_cast<std::size_t>(B));
  gs.xbar.assign(static_cast<std::size_t>(B), 0.0);
  gs.vespo_lw.assign(static_cast<std::size_t>(B), 0.0);
  // The quantile needs the sample; a given threshold does not.
  const bool gather = pl.use_emask && !o.entropy_threshold;
  std::vector<std::vector<V>> ent_parts(static_cast<std::size_t>(B));  // by range start
  auto rows = [&](index_t b, index_t e) {
    std::vector<V>& ents = ent_parts[static_cast<std::size_t>(b)];
    for (index_t i = b; i < e; ++i) {
      const bool trunc = c.trunc(i);
      row_sums rs;
      for (index_t t = 0; t < Tn; ++t) {
        const double mraw = static_cast<double>(c.in.mask(i, t));
        expect_mask_entry(mraw, "mask", i, t);  // the shared mask rule (core/validate.hpp)
        const double m = trunc ? 0.0 : mraw;
        if (m == 0.0) continue;
        if (pl.use_emask) {
          const double h = static_cast<double>(c.in.entropy(i, t));
          GRPO_EXPECTS(std::isfinite(h), bad_value, "entropy: non-finite value on a valid token");
          if (gather) ents.push_back(static_cast<V>(h));
        }
        if (!pl.row_stats) {  // plain token-level losses need only the counts here
          rs.n += m;
          continue;
        }
        // (finiteness of lp / old / A / ref is checked in pass 2; NaN here cannot escape)
        rs += token_row_sums(c.lpar, c.tok(i, t, m));
      }
      const auto k = static_cast<std::size_t>(i);
      gs.rows[k] = finish_row(c.lpar, rs);
      r.n_base[k] = gs.rows[k].n_base;
      gs.xbar[k] = gs.rows[k].xbar;
      gs.vespo_lw[k] = gs.rows[k].vespo_lw;
    }
  };
  par::for_each_range(B, rows, loss_loop(Tn));  // (the lowest failing range's error)
  for (index_t i = 0; i < B; ++i)
    if (c.trunc(i)) r.met.truncated_seqs += 1;
  double h_thr = -std::numeric_limits<double>::infinity();
  if (pl.use_emask) h_thr = entropy_threshold_of(ent_parts, o);
  for (auto& rc : gs.rows) rc.h_thr = h_thr;
  return gs;
}

/// OPSM's sums of a row on the packet path of this call (opsm_row_sums: the same code as the
/// row's first sweep, so the row takes the keep decisions counted here). ls: the sampler row, or
/// lo; A: per-token advantages (null: per sequence).
template <class M>
opsm_sums opsm_sums_packet([[maybe_unused]] const float* lp, [[maybe_unused]] const float* ls,
                           [[maybe_unused]] const M* m, [[maybe_unused]] const float* A,
                           [[maybe_unused]] index_t end) noexcept {
  [[maybe_unused]] const isa path = weighted_rows_isa();
#if GRPO_LOSS_HAS_AVX512_ROWS
  if (path == isa::avx512) return loss_avx512::opsm_row_sums(lp, ls, m, A, end);
#endif
#if GRPO_LOSS_HAS_AVX2_ROWS
  if (path == isa::avx2) return loss_avx2::opsm_row_sums(lp, ls, m, A, end);
#endif
  return opsm_sums{};  // (unreachable: plan() routes OPSM here only where the rows exist)
}

/// Final-mask counts of the OPSM packet rows (after the vectorised mask pass; no top-entropy
/// mask): per row the gap sum m (ls - lp) / max(n, 1) and the keeps of opsm_keep (A >= 0 or gap
/// <= delta): per-sequence A keeps or drops the row; per-token A keeps the A >= 0 tokens of a
/// row whose gap exceeds delta (n_fin = sum m [A >= 0] when OPSM joins the denominators, else
/// n). opsm_dropped_seqs: the rows with a valid token dropped. Rows threaded, merged in order.
template <class T, class M, class G>
void opsm_packet_counts(const loss_call<T, M, G>& c, loss_rows& r) {
  const auto B = static_cast<std::size_t>(c.B);
  std::vector<unsigned char> dropped(B, 0);
  [[maybe_unused]] const double delta = c.o.opsm_threshold.value_or(0.0);
  [[maybe_unused]] const bool den = c.o.opsm_in_denominator;
  // A row with nothing valid (its gap sum is 0: 0 / 1 <= delta) keeps its tokens' multipliers
  // as its row kernel decides on that gap (its per-token loss at masked positions reads them).
  r.opsm_gap_ok.assign(B, 0.0 <= delta ? 1 : 0);
  par::for_each_row(
      c.B,
      [&](index_t i) {
        const auto k = static_cast<std::size_t>(i);
        const double nb = r.n_base[k];
        r.n_fin[k] = nb;
        if constexpr (std::is_same_v<T, float> && plan_simd_types<T, M, G>) {
          if (c.Tn == 0 || !(nb > 0)) return;  // (nothing valid: nothing dropped)
          const auto& in = c.in;
          const float* lp = &in.logp(i, 0);
          const float* lo = c.has_old ? &in.old_logp(i, 0) : lp;
          const bool row_a = c.adv_per_row;
          const opsm_sums s =
              opsm_sums_packet(lp, c.has_smp ? &in.sampler_logp(i, 0) : lo, &in.mask(i, 0),
                               row_a ? nullptr : &in.advantages(i, 0), r.row_end[k]);
          r.opsm_gap_ok[k] = s.sg / (nb < 1.0 ? 1.0 : nb) <= delta ? 1 : 0;
          if (r.opsm_gap_ok[k]) return;  // every token kept
          if (row_a && in.advantages(i, 0) >= 0.0f) return;
          dropped[k] = row_a || s.neg ? 1 : 0;
          if (den) r.n_fin[k] = row_a ? 0.0 : s.npos;
        }
      },
      loss_loop(c.Tn));
  for (std::size_t k = 0; k < B; ++k) {  // row order
    r.n_ent[k] = r.n_fin[k];
    r.met.tokens += r.n_fin[k];
    r.met.sequences += r.n_fin[k] > 0 ? 1 : 0;
    r.met.opsm_dropped_seqs += dropped[k];
  }
}

/// Final-mask counts n_fin, n_ent and the token / sequence metrics. Token multipliers: OPSM keep
/// and entropy keep (both either in the mask or on the policy term). OPSM is evaluated per token
/// so token-level advantages work: keep iff A_t >= 0 or gap_i <= delta (for per-sequence A this is
/// TRL's (B, 1) sequence mask). Without OPSM and top-entropy mask the final mask is the base mask
/// (gs may then be empty: the vectorised engines).
template <class T, class M, class G>
void final_counts(const loss_call<T, M, G>& c, const general_stats& gs, loss_rows& r) {
  const index_t B = c.B, Tn = c.Tn;
  r.n_fin.assign(static_cast<std::size_t>(B), 0.0);
  r.n_ent.assign(static_cast<std::size_t>(B), 0.0);
  const bool extra_masks = c.o.opsm_threshold.has_value() || c.o.top_entropy_quantile < 1.0;
  if (c.o.top_entropy_quantile < 1.0 && gs.rows.size() != static_cast<std::size_t>(B)) {
    emask_packet_counts(c, r);  // (the vectorised pass 1: the token rows, plan())
    return;
  }
  if (extra_masks && gs.rows.size() != static_cast<std::size_t>(B)) {
    opsm_packet_counts(c, r);  // (the vectorised pass 1: OPSM on the TIS rows, plan())
    return;
  }
  auto& met = r.met;
  for (index_t i = 0; i < B; ++i) {
    if (!extra_masks) {  // final mask == base mask
      r.n_fin[i] = r.n_ent[i] = r.n_base[i];
      met.tokens += r.n_base[i];
      met.sequences += r.n_base[i] > 0 ? 1 : 0;
      continue;
    }
    const row_ctx& rc = gs.rows[static_cast<std::size_t>(i)];
    double nf = 0, ne = 0;
    bool dropped = false;
    for (index_t t = 0; t < Tn; ++t) {
      const double mb = c.base_m(i, t);
      if (mb == 0.0) continue;
      const token_in x = c.tok(i, t, mb);
      if (!opsm_keep(c.lpar, rc, x)) dropped = true;
      const bool ek = ent_keep(c.lpar, rc, x);
      if (!ek) met.entropy_masked_tokens += mb;
      const double mf = final_mask(c.lpar, rc, x);
      nf += mf;
      if (ek) ne += mf;
    }
    if (dropped) met.opsm_dropped_seqs += 1;
    r.n_fin[i] = nf;
    r.n_ent[i] = ne;
    met.tokens += nf;
    met.sequences += nf > 0 ? 1 : 0;
  }
}

/// Partial results of one row of pass 2 (merged in row order).
struct general_part {
  double pol = 0.0, kl = 0.0, ent = 0.0;
  double row_g = 0.0;  ///< sequence-level spread gradient of the row
  loss_metrics met;
};

/// Clip indicators of one valid token (general engine rules, all kinds).
struct clip_flags {
  bool lo = false, hi = false, du = false;
};
inline clip_flags general_clip(const policy_options& P, double x, double r, double A) {
  clip_flags f;
  const ops::ppo_clip_params<double> cp{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
  if (!kind_traits_of(P.kind).clip_metrics) {
    // SAPO, REINFORCE, VESPO have no clipping: fractions are 0 (verl/TRL report none).
  } else if (P.kind == policy_loss_kind::gmpo) {  // verl geo_mean: log ratio outside the band
    const bool out_band = x < -P.eps_low || x > P.eps_high;
    f.lo = out_band && A < 0;
    f.hi = out_band && A > 0;
  } else if (P.kind == policy_loss_kind::cispo && P.cispo == cispo_clip::trl_cap) {
    f.hi = r > P.eps_high && A > 0;
  } else {
    f.lo = ops::ppo_clipped_low(r, A, cp);
    f.hi = ops::ppo_clipped_high(r, A, cp);
    f.du = ops::ppo_dual_clipped(r, A, cp);
  }
  return f;
}

/// GMPO's per-sequence ratio of sign-clipped log ratios (before the row's token loop):
///   w_i = exp(sum_t m x~_t / den_i),  Abar_i = sum_t m A_t / den_i,  l_i = -Abar_i w_i
///   den_i = n_i + 1e-8 (verl) or max(n_i, 1) (TRL); loss = scale * sum_i l_i / G (G = B in
///   verl) d l_i / d lp_t = -Abar_i w_i x~'_t m_t / den_i
template <class T, class M, class G>
void general_gmpo_row(const loss_call<T, M, G>& c, const loss_rows& r, index_t i, row_ctx& rc,
                      general_part& part) {
  row_sums2 s2;
  for (index_t t = 0; t < c.Tn; ++t) {
    const double mb = c.base_m(i, t);
    if (mb == 0.0) continue;
    const auto c2 = token_row_sums2(c.lpar, rc, c.tok(i, t, mb));
    if (c2.nf != 0.0) s2 += c2;
  }
  s2.nf = r.n_fin[i];  // the count of the final mask, as summed above
  finish_row2(c.lpar, s2, c.has_isw, rc);
  rc.n_ent = r.n_ent[i];
  rc.s_gmpo = gmpo_scale(c.lpar, static_cast<double>(c.B));
  const double g_loss = gmpo_seq_loss(rc);
  if (!c.out.per_seq_loss.empty())
    c.out.per_seq_loss[static_cast<std::size_t>(i)] = static_cast<G>(g_loss);
  part.pol += gmpo_row_loss(c.lpar, rc);
}

/// Per-sequence clip statistics of a row (TRL clip_ratio/low_min and high_max are min / max over
/// rows of the per-row token fractions; at sequence level with per-sequence advantages each row
/// is one 0/1 value, over ALL rows, empty ones included).
template <class T, class M, class G>
void general_row_clips(const loss_call<T, M, G>& c, double xbar, const loss_rows& r, index_t i,
                       const double* ls, loss_metrics& met) {
  const auto& P = c.o.policy;
  if (P.level == is_level::sequence && c.adv_per_row) {
    const ratio_terms rt = token_ratio(P, 0.0, xbar);
    const double rr = rt.r, A = c.A_at(i, 0);
    const ops::ppo_clip_params<double> cp{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
    bool lo_c = false, hi_c = false, du_c = false;
    if (P.kind == policy_loss_kind::ppo_clip) {
      lo_c = ops::ppo_clipped_low(rr, A, cp);
      hi_c = ops::ppo_clipped_high(rr, A, cp);
      du_c = ops::ppo_dual_clipped(rr, A, cp);
    } else if (P.kind == policy_loss_kind::cispo && P.cispo == cispo_clip::trl_cap) {
      hi_c = rr > P.eps_high && A > 0;
    }
    met.clip_low.add(lo_c ? 1.0 : 0.0);
    met.clip_high.add(hi_c ? 1.0 : 0.0);
    met.clip_region.add((lo_c || hi_c) ? 1.0 : 0.0);
    met.clip_dual.add(du_c ? 1.0 : 0.0);
    met.clip_low_seq.add(lo_c ? 1.0 : 0.0);
    met.clip_high_seq.add(hi_c ? 1.0 : 0.0);
  } else if (r.n_fin[i] > 0) {
    met.clip_low.add_indicator(ls[0], r.n_fin[i]);
    met.clip_high.add_indicator(ls[1], r.n_fin[i]);
    met.clip_region.add_indicator(ls[2], r.n_fin[i]);
    met.clip_dual.add_indicator(ls[3], r.n_fin[i]);
    met.clip_low_seq.add(ls[0] / r.n_fin[i]);
    met.clip_high_seq.add(ls[1] / r.n_fin[i]);
  }
}

/// Pass 2 of one row. Each valid token contributes W_it * l_it with W_it = s_i m_it (aggregation
/// weight) times its policy multiplier c_it; the gradient is therefore W_it c_it (dl/dr dr/dlp +
/// dl/dlp) plus, for sequence-level ratios, a row-wide term accumulated in row_g and spread in a
/// second sweep (TRL GSPO: d s_i / d lp_t = s_i m_t / max(n_i, 1)).
/// rc0: the row's pass-1 context (general_pass1's gs.rows[i]).
template <class T, class M, class G>
void general_row(const loss_call<T, M, G>& c, const row_ctx& rc0, const loss_rows& r, index_t i,
                 general_part& part) {
  const auto& o = c.o;
  const auto& P = o.policy;
  const auto& in = c.in;
  const auto& out = c.out;
  const bool gmpo = P.kind == policy_loss_kind::gmpo;
  const bool seq_level = P.level != is_level::token;
  loss_metrics& met = part.met;  // (this row's metrics; merged into the call's below)
  const double nc = r.n_base[i] < 1.0 ? 1.0 : r.n_base[i];
  double ls[4] = {0, 0, 0, 0};  // per-row clip counts (token weight): low, high, region, dual
  // Row context of the shared per-token composition: the pass-1 statistics, the final-mask
  // counts and the aggregation factors of the three terms.
  row_ctx rc = rc0;
  rc.n_fin = r.n_fin[i];
  rc.n_ent = r.n_ent[i];
  rc.s_pol = r.s_pol[i];
  rc.s_kl = r.s_kl[i];
  rc.s_ent = r.s_ent[i];
  if (gmpo) general_gmpo_row(c, r, i, rc, part);
  // VESPO phi of the row (sign of the row's advantage taken per token, as TRL's (B,1) tensor).
  if (P.kind == policy_loss_kind::vespo)  // TRL logs the (B,1) phi over all rows
    met.vespo_phi.add(ops::vespo_phi(rc0.vespo_lw, c.A_at(i, 0), P.vespo_k_pos, P.vespo_lambda_pos,
                                     P.vespo_k_neg, P.vespo_lambda_neg));
  for (index_t t = 0; t < c.Tn; ++t) {
    const double mb = c.base_m(i, t);
    const double lp = c.lp_at(i, t), A = c.A_at(i, t);
    if (mb != 0.0) {
      GRPO_EXPECTS(std::isfinite(lp), bad_value, "logp: non-finite value on a valid token");
      GRPO_EXPECTS(std::isfinite(c.lo_at(i, t)), bad_value,
                   "old_logp: non-finite value on a valid token");
      GRPO_EXPECTS(std::isfinite(A), bad_value, "advantages: non-finite value on a valid token");
      if (o.kl_coef != 0.0)
        GRPO_EXPECTS(std::isfinite(static_cast<double>(in.ref_logp(i, t))), bad_value,
                     "ref_logp: non-finite value on a valid token");
      if (c.has_isw)  // (else a NaN loss, caught only as "the loss is not finite")
        GRPO_EXPECTS(std::isfinite(static_cast<double>(in.is_weights(i, t))), bad_value,
                     "is_weights: non-finite value on a valid token");
      if (c.has_smp && (c.lpar.tis || c.lpar.opsm))  // the IS weight / OPSM gap read it
        GRPO_EXPECTS(std::isfinite(static_cast<double>(in.sampler_logp(i, t))), bad_value,
                     "sampler_logp: non-finite value on a valid token");
      if (c.has_ent)  // (likewise)
        GRPO_EXPECTS(std::isfinite(static_cast<double>(in.entropy(i, t))), bad_value,
                     "entropy: non-finite value on a valid token");
    }
    // Steps 2-6 of loss.hpp's file comment for this token (shared with the CUDA kernels).
    const token_in x = c.tok(i, t, mb);
    const token_out tt = token_terms(c.lpar, rc, x, c.has_ent);
    const double mf = tt.mf;
    const double rt = tt.ratio, rho = tt.rho;
    if (mf != 0.0) {
      if (!gmpo) {
        part.pol += tt.pol;
        part.row_g += tt.spread_pol;
        if (P.kind == policy_loss_kind::cispo) met.weight_clip.add(tt.weight != rt ? 1.0 : 0.0, mf);
      }
      if (o.kl_coef != 0.0) {
        part.kl += tt.kl;
        part.row_g += tt.spread_kl;
        met.kl.add(tt.kl_value, mf);
      }
    }
    // Entropy bonus: loss -= coef * sum s^H_i m^H_it H_it, so d loss / d H_it = -coef s^H_i
    // m^H_it; the fused logits path chains this with d H / d logits (not computed here).
    if (o.entropy_coef != 0.0 || c.has_ent) {
      if (c.has_ent && tt.me != 0.0) {
        part.ent += tt.ent;
        met.entropy.add(x.h, tt.me);
      }
      if (has(out.grad_entropy)) out.grad_entropy(i, t) = static_cast<G>(tt.g_h);
    } else if (has(out.grad_entropy)) {
      out.grad_entropy(i, t) = G(0);
    }
    if (has(out.per_token_loss)) out.per_token_loss(i, t) = static_cast<G>(tt.ptl);
    out.grad_logp(i, t) = static_cast<G>(tt.g_logp);  // spread term added in the second sweep
    if (mf == 0.0) continue;
    // Metrics over valid tokens of the final mask.
    const double lx = lp - c.lo_at(i, t);
    const double xc = seq_level || o.approx_kl_unclamped
                          ? lx
                          : ops::clamp_scalar(lx, P.log_ratio_min, P.log_ratio_max);
    met.approx_kl.add(-xc, mf);
    met.advantage.add(A, mf);
    met.is_weight.add(rho, mf);
    met.ratio.add(gmpo ? std::exp(lx) : rt, mf);
    const clip_flags f = general_clip(P, lx, rt, A);
    if (!(P.level == is_level::sequence && c.adv_per_row)) {
      ls[0] += f.lo ? mf : 0.0;
      ls[1] += f.hi ? mf : 0.0;
      ls[2] += (f.lo || f.hi) ? mf : 0.0;
      ls[3] += f.du ? mf : 0.0;
    }
  }
  general_row_clips(c, rc0.xbar, r, i, ls, met);
  if (P.level == is_level::sequence && part.row_g != 0.0) {
    for (index_t t = 0; t < c.Tn; ++t) {
      const double mb = c.base_m(i, t);
      if (mb == 0.0) continue;
      out.grad_logp(i, t) =
          static_cast<G>(static_cast<double>(out.grad_logp(i, t)) + part.row_g * mb / nc);
    }
  }
}

/// general_row of row i with the row's context from pass 1 (gs.rows[i]).
template <class T, class M, class G>
void general_row(const loss_call<T, M, G>& c, const general_stats& gs, const loss_rows& r,
                 index_t i, general_part& part) {
  general_row(c, gs.rows[static_cast<std::size_t>(i)], r, i, part);
}

/// One row of the general engine on its own: the row's pass-1 sums (in token order, as
/// general_pass1), then general_row. The double fallback of the packet rows for a configuration
/// with no top-entropy mask (OPSM: the row's gap from these sums, n_fin from final_counts).
template <class T, class M, class G>
void general_row_alone(const loss_call<T, M, G>& c, const loss_rows& r, index_t i,
                       general_part& part) {
  row_sums rs;
  for (index_t t = 0; t < c.Tn; ++t) {
    const double mb = c.base_m(i, t);
    if (mb == 0.0) continue;
    rs += token_row_sums(c.lpar, c.tok(i, t, mb));
  }
  row_ctx rc = finish_row(c.lpar, rs);
  rc.h_thr = r.h_thr;  // (the top-entropy threshold of the call, or -inf)
  general_row(c, rc, r, i, part);
}

/// Pass 2 over every row (threaded; rows are independent here: pass 1 produced every cross-row
/// quantity), then the row-order merge, so the result does not depend on the number of threads.
template <class T, class M, class G>
loss_scalars general_rows(const loss_call<T, M, G>& c, const general_stats& gs, loss_rows& r) {
  std::vector<general_part> parts(static_cast<std::size_t>(c.B));
  par::for_each_row(
      c.B, [&](index_t i) { general_row(c, gs, r, i, parts[static_cast<std::size_t>(i)]); },
      loss_loop(c.Tn));
  double pol_sum = 0.0, kl_sum = 0.0, ent_sum = 0.0;
  loss_metrics met = r.met;
  for (const general_part& part : parts) {  // row order
    pol_sum += part.pol;
    kl_sum += part.kl;
    ent_sum += part.ent;
    met.merge(part.met);
  }
  loss_scalars res;
  res.policy_loss = pol_sum;
  res.kl_loss = kl_sum;
  res.entropy_loss = ent_sum;
  res.loss = pol_sum + c.o.kl_coef * kl_sum - c.o.entropy_coef * ent_sum;
  res.metrics = met;
  return res;
}

/// The weighted rows' parameters of a call (weighted_params; side is set per row).
template <class T, class M, class G>
weighted_params weighted_rows_params(const loss_call<T, M, G>& c) {
  const auto& o = c.o;
  const auto& P = o.policy;
  constexpr float inf = std::numeric_limits<float>::infinity();
  weighted_params q;
  q.P = P;
  q.kl = o.kl;
  q.kl_coef = o.kl_coef;
  q.gmpo = P.kind == policy_loss_kind::gmpo;
  q.lr_min = static_cast<float>(P.log_ratio_min);
  q.lr_max = static_cast<float>(P.log_ratio_max);
  q.ak_min = o.approx_kl_unclamped ? -inf : q.lr_min;
  q.ak_max = o.approx_kl_unclamped ? inf : q.lr_max;
  q.row_count_eps = c.lpar.agg.row_count_eps;
  q.row_count_floor = c.lpar.agg.row_count_floor;
  q.s_gmpo = gmpo_scale(c.lpar, static_cast<double>(c.B));
  return q;
}

/// The rows of a packet-row engine (weighted_rows, tis_rows), threaded: `packet(i, rw, part)`
/// runs row i on the packet path (rw: the row's descriptor, row_desc) and returns false when it
/// has none or flags the row (a non-finite input on a valid token, a float overflow); such a
/// row's part is reset and the row rerun in double by general_row_alone (the named error, or the
/// exact row) into the returned vector (null: the packet row stands). `packet` is a generic
/// lambda, instantiated only for float inputs of the vectorised storage types.
/// @post parts[k] holds the packet row's partial results, or is empty where fell[k] is set.
template <class T, class M, class G, class Packet>
std::vector<std::unique_ptr<general_part>> packet_rows_or_double(const loss_call<T, M, G>& c,
                                                                 const loss_rows& r,
                                                                 std::vector<fast_row_part>& parts,
                                                                 Packet&& packet) {
  std::vector<std::unique_ptr<general_part>> fell(static_cast<std::size_t>(c.B));
  const bool stream_grad = stream_gradient<G>(c.B, c.Tn);
  auto run_row = [&](index_t i) {
    const auto k = static_cast<std::size_t>(i);
    bool ok = false;
    if constexpr (std::is_same_v<T, float> && plan_simd_types<T, M, G>) {
      if (c.Tn > 0)  // (an empty row has no row pointers: the general row below)
        ok = packet(i, row_desc<float>(c, r, i, stream_grad), parts[k]);
    }
    if (!ok) {
      parts[k] = fast_row_part{};
      fell[k] = std::make_unique<general_part>();
      general_row_alone(c, r, i, *fell[k]);
    }
  };
  par::for_each_row(c.B, run_row, loss_loop(c.Tn));
  return fell;
}

/// Adds a row rerun in double (packet_rows_or_double) to the call's result, in row order: its
/// policy and KL sums and metrics; its entropy sum into ent.
inline void add_double_row(const general_part& p, loss_scalars& res, double& ent) noexcept {
  res.policy_loss += p.pol;
  res.kl_loss += p.kl;
  ent += p.ent;
  res.metrics.merge(p.met);
}

/// One GMPO / VESPO row on the packet path of this call (false: no packet path, or the row was
/// flagged and must be rerun by general_row_alone).
template <class M, class G>
bool weighted_row_packet([[maybe_unused]] const weighted_params& q,
                         [[maybe_unused]] const fast_simd_row<float, M, G>& rw,
                         [[maybe_unused]] index_t Tn, [[maybe_unused]] fast_row_part& rp,
                         [[maybe_unused]] weighted_row_out& out) noexcept {
  [[maybe_unused]] const isa path = weighted_rows_isa();
#if GRPO_LOSS_HAS_AVX512_ROWS
  if (path == isa::avx512) return loss_avx512::weighted_row_run(q, rw, Tn, rp, out);
#endif
#if GRPO_LOSS_HAS_AVX2_ROWS
  if (path == isa::avx2) return loss_avx2::weighted_row_run(q, rw, Tn, rp, out);
#endif
  return false;
}

/// The general engine's sequence-weighted kinds (GMPO, VESPO) at token level with per-sequence
/// advantages and no other row-wide term (plan(): float inputs where weighted_rows_isa() has
/// packet rows), after the vectorised mask pass: each row runs the packet row of
/// kernels/general_row.ipp; a row it flags runs general_row_alone (double: the named error, or
/// the exact row). Rows threaded, merged in row order (the result does not depend on the number
/// of threads); the metric schema is the general engine's (merge_row_parts + VESPO's phi).
template <class T, class M, class G>
loss_scalars weighted_rows(const loss_call<T, M, G>& c, loss_rows& r) {
  const auto& o = c.o;
  const auto B = static_cast<std::size_t>(c.B);
  const bool kl_on = o.kl_coef != 0.0, vespo = o.policy.kind == policy_loss_kind::vespo;
  std::vector<fast_row_part> parts(B);
  std::vector<weighted_row_out> outs(B);
  const weighted_params q = weighted_rows_params(c);
  const auto fell = packet_rows_or_double(
      c, r, parts, [&](index_t i, const auto& rw, fast_row_part& rp) {
        weighted_params qi = q;
        qi.side = weighted_side(static_cast<double>(rw.a0), o.policy.gmpo);
        return weighted_row_packet(qi, rw, c.Tn, rp, outs[static_cast<std::size_t>(i)]);
      });
  loss_scalars res = merge_row_parts(parts, o.kl_coef, kl_on, false, false, r.met);
  double ent_fell = 0.0;  // (no entropy term on these rows)
  for (std::size_t k = 0; k < B; ++k) {  // row order
    if (fell[k]) {
      add_double_row(*fell[k], res, ent_fell);
      continue;
    }
    if (vespo) res.metrics.vespo_phi.add(outs[k].phi);  // TRL logs the (B, 1) phi of all rows
    if (!vespo && !c.out.per_seq_loss.empty())
      c.out.per_seq_loss[k] = static_cast<G>(outs[k].seq_loss);
  }
  res.loss = res.policy_loss + o.kl_coef * res.kl_loss;
  res.engine_used = loss_engine::general_rows;
  return res;
}

/// The TIS rows' parameters of a call's options (tis_params); isw: the batch gives is_weights
/// (the token weight is then the caller's, wkind 3).
inline tis_params tis_rows_params(const loss_options& o, bool isw) {
  const auto& P = o.policy;
  constexpr float inf = std::numeric_limits<float>::infinity();
  tis_params q;
  q.fp = token_simd_params<float>(o);
  q.lpar = make_loss_params(o);
  q.kind = P.kind;
  q.ak_min = o.approx_kl_unclamped ? -inf : static_cast<float>(P.log_ratio_min);
  q.ak_max = o.approx_kl_unclamped ? inf : static_cast<float>(P.log_ratio_max);
  q.wkind = isw ? 3 : !o.tis.enabled ? 4 : (o.tis.seq_mask ? 2 : (o.tis.sequence ? 1 : 0));
  q.opsm = o.opsm_threshold.has_value();
  q.opsm_den = o.opsm_in_denominator;
  q.opsm_delta = o.opsm_threshold.value_or(0.0);
  q.mask_mode = o.tis.mode == ops::tis_mode::mask;
  q.c_min = static_cast<float>(o.tis.c_min);
  q.c_max = static_cast<float>(o.tis.c_max);
  q.log_clamp = static_cast<float>(o.tis.log_clamp);
  return q;
}

/// One TIS row on the packet path of this call (false: no packet path, or the row was flagged and
/// must be rerun by general_row_alone). ls / nls: the row's and the next row's sampler log-probs.
template <class M, class G>
bool tis_row_packet([[maybe_unused]] const tis_params& q,
                    [[maybe_unused]] const fast_simd_row<float, M, G>& rw,
                    [[maybe_unused]] const float* ls, [[maybe_unused]] const float* nls,
                    [[maybe_unused]] index_t Tn, [[maybe_unused]] fast_row_part& rp,
                    [[maybe_unused]] tis_row_out& out) noexcept {
  [[maybe_unused]] const isa path = weighted_rows_isa();
#if GRPO_LOSS_HAS_AVX512_ROWS
  if (path == isa::avx512) return loss_avx512::tis_row_run(q, rw, ls, nls, Tn, rp, out);
#endif
#if GRPO_LOSS_HAS_AVX2_ROWS
  if (path == isa::avx2) return loss_avx2::tis_row_run(q, rw, ls, nls, Tn, rp, out);
#endif
  return false;
}

/// A TIS row under the top-entropy mask (keep = H >= thr; tis_rows, where plan() sends it: no
/// OPSM): the packet row with the keep of each token (fast_simd_row::hk: in the denominators
/// the dropped tokens leave the row's valid lanes, n = n_fin; else their policy multiplier is
/// 0), then the entropy sweep over the mask m [keep] (km: a row buffer of the mask type; n_ent,
/// the entropy metric's weight, fast_row_part::ewsum). False: rerun the row in double.
template <class H, class M, class G>
bool tis_row_emask(const tis_params& q, fast_simd_row<float, M, G> rw, const H* h, double thr,
                   double nf, double ne, const float* ls, const float* nls, index_t Tn,
                   std::vector<M>& km, fast_row_part& rp, tis_row_out& out) {
  const fast_simd_row<float, M, G> rw0 = rw;
  rw.hk = h;
  rw.h_thr = threshold_as<float>(thr);
  rw.nf = nf;
  rw.h = nullptr;  // (the entropy sweep below)
  rw.ge = nullptr;
  if (!tis_row_packet(q, rw, ls, nls, Tn, rp, out)) return false;
  km.assign(static_cast<std::size_t>(Tn), M(0));
  index_t end = 0;  // one past the last kept token
  const index_t rend = rw0.trunc ? 0 : rw0.end;
  for (index_t t = 0; t < rend; ++t) {
    if (rw0.m[t] != M(0) && static_cast<double>(h[t]) >= thr) {
      km[static_cast<std::size_t>(t)] = rw0.m[t];
      end = t + 1;
    }
  }
  fast_simd_row<float, M, G> re = rw0;
  re.m = km.data();
  re.n = ne;
  re.end = end;
  re.prefix = re.bin && static_cast<double>(end) == ne;
  if (!entropy_row_run(re, Tn, rp)) return false;
  rp.ewsum = ne;
  return true;
}

/// The token-level kinds with a rollout IS weight and no other row-wide term (plan(): float
/// inputs where weighted_rows_isa() has packet rows; token TIS, sequence TIS, seq-mask-tis, or
/// the caller's is_weights, unit stride along t),
/// after the vectorised mask pass: each row runs the packet row of kernels/tis_row.ipp; a row it
/// flags runs general_row_alone (double: the named error, or the exact row). Rows threaded,
/// merged in row order; the metric schema is the general engine's (merge_row_parts, with the
/// rows' IS-weight blocks in place of the token rows' weight 1).
template <class T, class M, class G>
loss_scalars tis_rows(const loss_call<T, M, G>& c, loss_rows& r) {
  const auto& o = c.o;
  const auto B = static_cast<std::size_t>(c.B);
  const bool kl_on = o.kl_coef != 0.0;
  std::vector<fast_row_part> parts(B);
  std::vector<tis_row_out> outs(B);
  const tis_params q = tis_rows_params(o, c.has_isw);
  const bool smp = c.has_smp && !c.has_isw;  // (the sampler is not read beside is_weights)
  const bool emask = o.top_entropy_quantile < 1.0;
  const auto fell = packet_rows_or_double(
      c, r, parts, [&](index_t i, auto rw, fast_row_part& rp) {
        // (const auto*: this lambda is only called for float rows; typed `const float*` its
        // body would not compile for double T under EDG / nvcc, which checks it eagerly)
        const auto* ls = smp ? &c.in.sampler_logp(i, 0) : nullptr;
        const auto* nls = smp && i + 1 < c.B ? &c.in.sampler_logp(i + 1, 0) : nullptr;
        if (c.has_isw) {
          rw.w = &c.in.is_weights(i, 0);
          rw.nw = i + 1 < c.B ? &c.in.is_weights(i + 1, 0) : nullptr;
        }
        if (q.opsm) {  // (the row's gap decision and n_fin from final_counts)
          rw.gap_ok = r.opsm_gap_ok[static_cast<std::size_t>(i)] != 0;
          rw.nf = r.n_fin[static_cast<std::size_t>(i)];
        }
        const auto k = static_cast<std::size_t>(i);
        if (emask) {  // (emask_packet_counts: the threshold, n_fin, n_ent)
          thread_local std::vector<M> km;  // O(T) per thread, kept for the next call
          return tis_row_emask(q, rw, &c.in.entropy(i, 0), r.h_thr, r.n_fin[k], r.n_ent[k], ls,
                               nls, c.Tn, km, rp, outs[k]);
        }
        return tis_row_packet(q, rw, ls, nls, c.Tn, rp, outs[k]);
      });
  const stat_accumulator iw0 = r.met.is_weight;
  loss_scalars res = merge_row_parts(parts, o.kl_coef, kl_on, false,
                                     o.policy.kind == policy_loss_kind::cispo, r.met);
  res.metrics.is_weight = iw0;  // (merge_row_parts adds weight 1 blocks: replaced by the rows')
  double ent_fell = 0.0;  // the entropy term of the rows rerun in double
  for (std::size_t k = 0; k < B; ++k) {  // row order
    if (fell[k]) {
      add_double_row(*fell[k], res, ent_fell);
    } else if (parts[k].wsum > 0) {
      const double* w = outs[k].iw;
      res.metrics.is_weight.add_block(w[0], w[1], parts[k].wsum, w[2], w[3]);
    }
  }
  res.loss = res.policy_loss + o.kl_coef * res.kl_loss;
  if (c.has_ent) {  // the rows' entropy sweeps (token_rows.hpp merge_entropy), then the reruns'
    merge_entropy(parts, o.kl_coef, o.entropy_coef, res);
    res.entropy_loss += ent_fell;
    res.loss = res.policy_loss + o.kl_coef * res.kl_loss - o.entropy_coef * res.entropy_loss;
  }
  res.engine_used = loss_engine::general_rows;
  return res;
}

/// The general engine's packet rows (plan()'s loss_route::general_rows): GMPO / VESPO
/// (weighted_rows) or the rollout-IS rows (tis_rows).
template <class T, class M, class G>
loss_scalars general_packet_rows(const loss_call<T, M, G>& c, loss_rows& r) {
  if (kind_traits_of(c.o.policy.kind).sequence_weight) return weighted_rows(c, r);
  return tis_rows(c, r);
}

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail
