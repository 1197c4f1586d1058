// SPDX-License-Identifier: Apache-2.0
/// @file token_rows.hpp
/// @brief The token-level row engine of compute_loss_into: token-level ratio surrogates without
///        extra masks or IS weights (GRPO / DAPO / Dr. GRPO / CISPO / SAPO / GPG at token level,
///        optional in-loss KL and entropy term; kind_traits<K>::token_rows). No row-wide terms:
///        one tight loop per row (plus, with an entropy input, one sweep over H and the mask),
///        metric statistics reduced per row, merged in row order. The vectorised rows
///        (loss/simd_token_rows.hpp, the AVX-512 kernel for float) when the layouts allow; the
///        scalar row below otherwise, and for a row the kernels flag (it throws the named error).
///        Also the top-entropy mask of the vectorised rows: its threshold in O(n) by selection
///        (quantile_select, the general engine's too), the final-mask counts after it
///        (emask_packet_counts) and the row under it (token_row_emask).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/core/parallel.hpp>
#include <grpo/loss/call.hpp>
#include <grpo/loss/plan.hpp>
#include <grpo/loss/quantile.hpp>
#include <grpo/loss/simd_token_rows.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace grpo::detail {

inline namespace GRPO_ISA_ABI {

/// One row of the token-level engine in double, the general engine's ops calls and token order
/// for the loss sums.
template <class T, class M, class G>
void token_row_scalar(const loss_call<T, M, G>& c, const loss_rows& r, index_t i,
                      fast_row_part& rp) {
  const auto& o = c.o;
  const auto& P = o.policy;
  const auto& in = c.in;
  const auto& out = c.out;
  const bool want_ptl = has(out.per_token_loss), want_ge = has(out.grad_entropy);
  const bool kl_on = o.kl_coef != 0.0;
  const ops::ppo_clip_params<double> cpf{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
  const bool ppo = P.kind == policy_loss_kind::ppo_clip;
  const bool cispo_cap = P.kind == policy_loss_kind::cispo && P.cispo == cispo_clip::trl_cap;
  const bool cispo_any = P.kind == policy_loss_kind::cispo;
  const bool clip_rules = ppo || (cispo_any && !cispo_cap);
  const bool trunc = c.trunc(i);
  const double sp = r.s_pol[i], sk = r.s_kl[i];
  // Entropy term (the general engine's step 6 with no top-entropy mask: m_e = m): loss -= coef
  // s_ent sum m H, d loss / d H = (-coef s_ent) m at every position (its signed zero off the
  // mask), the entropy metric over the valid tokens; in double, token order.
  // Top-entropy mask out of the denominators (pol_keep): a token with !(H >= thr) has policy
  // multiplier 0 and leaves the entropy term (m_e = m [keep]); in the denominators the caller
  // passes the mask m [keep] itself (token_rows) and nothing changes here.
  const bool pol_keep = o.top_entropy_quantile < 1.0 && !o.entropy_mask_in_denominator;
  const double se = c.has_ent ? r.s_ent[i] : 0.0, gh = -o.entropy_coef * se;
  for (index_t t = 0; t < c.Tn; ++t) {
    const double mf = trunc ? 0.0 : static_cast<double>(in.mask(i, t));
    const bool keep = !pol_keep || static_cast<double>(in.entropy(i, t)) >= r.h_thr;
    const double me = keep ? mf : 0.0;
    if (want_ge) out.grad_entropy(i, t) = c.has_ent ? static_cast<G>(gh * me) : G(0);
    if (mf == 0.0 && !want_ptl) {  // padding: nothing to evaluate, gradient exactly 0
      out.grad_logp(i, t) = G(0);
      continue;
    }
    const double lp = c.lp_at(i, t), lo = c.lo_at(i, t), A = c.A_at(i, t);
    if (mf != 0.0) {
      GRPO_EXPECTS(std::isfinite(lp), bad_value, "logp: non-finite value on a valid token");
      GRPO_EXPECTS(std::isfinite(lo), bad_value, "old_logp: non-finite value on a valid token");
      GRPO_EXPECTS(std::isfinite(A), bad_value, "advantages: non-finite value on a valid token");
      if (c.has_ent) {
        const double h = static_cast<double>(in.entropy(i, t));
        GRPO_EXPECTS(std::isfinite(h), bad_value, "entropy: non-finite value on a valid token");
        if (me != 0.0) {
          rp.ent += se * me * h;
          add_block(rp.eb, h, me);
        }
      }
    }
    const double x = lp - lo;
    const double rr = ops::ratio_from_log(x, P.log_ratio_min, P.log_ratio_max);
    const double drd = ops::clamp_scalar_grad(x, P.log_ratio_min, P.log_ratio_max) * rr;
    const auto term = policy_token(P, rr, A, lp);
    double ptl = keep ? term.value : 0.0 * term.value, g = 0.0;
    if (mf != 0.0 && keep) {
      const double W = sp * mf;
      rp.pol += W * term.value;
      g = W * (term.d_ratio * drd + term.d_logp);
    }
    if (kl_on) {
      const double lr = static_cast<double>(in.ref_logp(i, t));
      if (mf != 0.0)
        GRPO_EXPECTS(std::isfinite(lr), bad_value, "ref_logp: non-finite value on a valid token");
      const auto kv = ops::kl_value_grad(o.kl, lp, lr);
      double k = kv.value, kg = kv.grad, kd = 0.0;
      if (o.kl_bias_correction) {  // d(k r) = k' r + k r'
        kd = k * drd;
        kg *= rr;
        k = ops::kl_bias_corrected(k, rr);
      }
      ptl += o.kl_coef * k;
      if (mf != 0.0) {
        const double W = sk * mf;
        rp.kls += W * k;
        g += W * o.kl_coef * (kg + kd);
        add_block(rp.kb, k, mf);
      }
    }
    if (want_ptl) out.per_token_loss(i, t) = static_cast<G>(ptl);
    out.grad_logp(i, t) = static_cast<G>(g);
    if (mf == 0.0) continue;
    rp.wsum += mf;
    add_block(rp.ak,
              -(o.approx_kl_unclamped ? x : ops::clamp_scalar(x, P.log_ratio_min, P.log_ratio_max)),
              mf);
    add_block(rp.av, A, mf);
    add_block(rp.ra, rr, mf);
    if (cispo_any) rp.c_w += term.weight != rr ? mf : 0.0;
    bool lo_c = false, hi_c = false, du_c = false;
    if (cispo_cap) {
      hi_c = rr > P.eps_high && A > 0;
    } else if (clip_rules) {
      lo_c = ops::ppo_clipped_low(rr, A, cpf);
      hi_c = ops::ppo_clipped_high(rr, A, cpf);
      du_c = ops::ppo_dual_clipped(rr, A, cpf);
    }
    rp.c_lo += lo_c ? mf : 0.0;
    rp.c_hi += hi_c ? mf : 0.0;
    rp.c_re += (lo_c || hi_c) ? mf : 0.0;
    rp.c_du += du_c ? mf : 0.0;
  }
  if (!out.per_seq_loss.empty()) out.per_seq_loss[static_cast<std::size_t>(i)] = G(0);
}

/// The vectorised rows' uniform parameters, converted once to the compute type CT.
template <class CT>
fast_simd_params<CT> token_simd_params(const loss_options& o) {
  const auto& P = o.policy;
  fast_simd_params<CT> sprm;
  sprm.cp = {CT(P.eps_low), CT(P.eps_high), CT(P.delta), CT(P.dual_clip_c)};
  sprm.lr_min = CT(P.log_ratio_min);
  sprm.lr_max = CT(P.log_ratio_max);
  sprm.lr_clamped = std::isfinite(P.log_ratio_min) || std::isfinite(P.log_ratio_max);
  sprm.eps_low = CT(P.eps_low);
  sprm.eps_high = CT(P.eps_high);
  sprm.tau_pos = CT(P.sapo_tau_pos);
  sprm.tau_neg = CT(P.sapo_tau_neg);
  sprm.cispo_cap = P.kind == policy_loss_kind::cispo && P.cispo == cispo_clip::trl_cap;
  sprm.kl = o.kl;
  sprm.kl_coef = CT(o.kl_coef);
  sprm.kl_bias = o.kl_bias_correction;
  return sprm;
}

/// The entropy term of the row parts (rows with an entropy input: fast_row_part::ent / eb) into
/// the merged result, in row order: entropy_loss, the entropy metric (weight: each row's valid
/// tokens, wsum) and the loss, policy + kl_coef KL - entropy_coef entropy as the general engine.
inline void merge_entropy(const std::vector<fast_row_part>& parts, double kl_coef,
                          double entropy_coef, loss_scalars& res) {
  double ent = 0.0;
  for (const fast_row_part& rp : parts) {
    ent += rp.ent;
    const double w = rp.ewsum < 0 ? rp.wsum : rp.ewsum;  // (top-entropy mask: n_ent)
    res.metrics.entropy.add_block(rp.eb[0], rp.eb[1], w, rp.eb[2], rp.eb[3]);
  }
  res.entropy_loss = ent;
  res.loss = res.policy_loss + kl_coef * res.kl_loss - entropy_coef * ent;
}

/// The top-entropy threshold in the compute type CT of the rows: the smallest CT >= thr, so that
/// H >= result in CT is double(H) >= thr (the general engine's ent_keep) for every CT value H.
template <class CT>
CT threshold_as(double thr) noexcept {
  if constexpr (std::is_same_v<CT, double>) {
    return thr;
  } else {
    CT f = static_cast<CT>(thr);
    if (static_cast<double>(f) < thr) f = std::nextafter(f, std::numeric_limits<CT>::infinity());
    return f;
  }
}

/// One row of the token rows under the top-entropy mask (keep_t = H_t >= thr, thr = r.h_thr
/// from emask_packet_counts; vectorised rows only, plan()). km: a row buffer of the call's mask
/// type, filled with the mask m [keep] of the row.
///  - In the denominators: the row is the token row of the mask m [keep] (policy, KL, metrics,
///    entropy term all over it; n = n_fin), run on a call whose mask view is km (stride 0 along
///    the rows), so that the packet rows, the entropy sweep and the scalar rerun all see it. The
///    inputs of every valid token (base mask) are checked first: a non-finite one reruns the
///    row on the base mask in double, which throws the general engine's error for it.
///  - Out of the denominators (TRL): the policy row over the base mask with the policy term of
///    the dropped tokens 0 (fast_simd_row::hk), the entropy sweep over m [keep] (n_ent, whose
///    count is the entropy metric's weight, fast_row_part::ewsum).
/// A row the kernels flag is rerun by token_row_scalar (the named error, or the exact row).
template <class CT, class T, class M, class G>
void token_row_emask(const loss_call<T, M, G>& c, const loss_rows& r, index_t i,
                     const fast_simd_params<CT>& sprm, bool stream_grad, std::vector<M>& km,
                     fast_row_part& rp) {
  const auto& o = c.o;
  const auto k = static_cast<std::size_t>(i);
  const index_t Tn = c.Tn, rend = r.row_end[k];
  const double thr = r.h_thr;
  const bool kl_on = o.kl_coef != 0.0;
  km.resize(static_cast<std::size_t>(Tn));
  const M* m = &c.in.mask(i, 0);
  const T* h = &c.in.entropy(i, 0);
  const T thr_t = threshold_as<T>(thr);  // (h >= thr_t iff double(h) >= thr)
  M* kmp = km.data();
  for (index_t t = 0; t < rend; ++t)  // (rend = 0 for a truncated row; vectorised)
    kmp[t] = (m[t] != M(0)) & (h[t] >= thr_t) ? m[t] : M(0);
  std::fill(kmp + rend, kmp + Tn, M(0));
  index_t end = rend;  // one past the last kept token
  while (end > 0 && kmp[end - 1] == M(0)) --end;
  loss_batch<T, M> in_k = c.in;
  in_k.mask = strided_view<const M, 2>(km.data(), {c.B, Tn}, {0, 1});
  const loss_call<T, M, G> ck(o, in_k, c.out);
  if (o.entropy_mask_in_denominator) {
    // The finiteness of every valid token's inputs (x - x is 0 exactly for finite x).
    std::uint32_t bad = 0;  // (vectorised: no floating-point sum)
    const T* lp = &c.in.logp(i, 0);
    const T* lo = c.has_old ? &c.in.old_logp(i, 0) : lp;
    const T* lr = kl_on ? &c.in.ref_logp(i, 0) : lp;
    const bool row_a = c.in.advantages.stride(1) == 0;
    const T* A = &c.in.advantages(i, 0);
    for (index_t t = 0; t < rend; ++t) {
      const CT a = row_a ? CT(A[0]) : CT(A[t]);
      const CT v =
          (CT(lp[t]) - CT(lp[t])) + (CT(lo[t]) - CT(lo[t])) + (a - a) + (CT(lr[t]) - CT(lr[t]));
      bad |= static_cast<std::uint32_t>(m[t] != M(0)) & static_cast<std::uint32_t>(v != v);
    }
    if (bad != 0) {
      token_row_scalar(c, r, i, rp);  // throws [grpo.bad_value] naming the input
      return;
    }
    auto rw = row_desc<CT>(ck, r, i, stream_grad);
    rw.n = r.n_fin[k];
    rw.end = end;
    rw.prefix = rw.bin && static_cast<double>(end) == r.n_fin[k];
    if (!fast_simd_row_dispatch(o.policy.kind, kl_on, sprm, rw, Tn, rp)) {
      rp = fast_row_part{};
      token_row_scalar(ck, r, i, rp);
    }
    return;
  }
  auto rw = row_desc<CT>(c, r, i, stream_grad);
  fast_simd_row<CT, M, G> rw_pol = rw, rw_ent = rw;
  rw_pol.ge = nullptr;
  rw_pol.hk = rw.h;
  rw_pol.h_thr = threshold_as<CT>(thr);
  rw_ent.m = km.data();
  rw_ent.n = r.n_ent[k];
  rw_ent.end = end;
  rw_ent.prefix = rw.bin && static_cast<double>(end) == r.n_ent[k];
  if (!fast_simd_policy_row(o.policy.kind, kl_on, sprm, rw_pol, Tn, rp) ||
      !entropy_row_run(rw_ent, Tn, rp)) {
    rp = fast_row_part{};
    token_row_scalar(c, r, i, rp);
  }
  rp.ewsum = r.n_ent[k];
}

/// The top-entropy mask on the token rows (plan(): token-level kinds without another row-wide
/// term), after the vectorised mask pass. The threshold of TRL's get_high_entropy_mask:
/// entropy_threshold when given, else the quantile (torch.quantile, linear) at 1 - rho of the
/// entropies of the valid tokens (base mask != 0, truncated rows excluded): quantile_radix over the
/// rows in place (no gather; the bits of quantile_select, the general engine's), -inf when no token
/// is valid. keep_t = H_t >= thr (a tie is kept). Then per row (the sums of final_counts, in token
/// order in double; a row whose mask is 0 / 1 counts in integers, the same values):
///   n_fin = sum_t m_t [keep_t or the mask stays out of the denominators]
///   n_ent = sum_t m_t [keep_t]                 (the entropy term's denominators)
///   entropy_masked_tokens += sum_t m_t [!keep_t]
/// A non-finite H on a valid token is the general engine's named error (the lowest row's).
/// @pre unit stride along t of the mask and entropy rows (plan()).
template <class T, class M, class G>
void emask_packet_counts(const loss_call<T, M, G>& c, loss_rows& r) {
  using V = std::conditional_t<std::is_same_v<T, float>, float, double>;  // (exact)
  const auto B = static_cast<std::size_t>(c.B);
  const index_t Tn = c.Tn;
  const auto& o = c.o;
  const bool den = o.entropy_mask_in_denominator;
  auto check_rows = [&](index_t b, index_t e) {  // (throws the named error)
    for (index_t i = b; i < e; ++i) {
      const index_t end = r.row_end[static_cast<std::size_t>(i)];  // (0: truncated or empty)
      const M* m = end == 0 ? nullptr : &c.in.mask(i, 0);
      const T* h = end == 0 ? nullptr : &c.in.entropy(i, 0);
      for (index_t t = 0; t < end; ++t) {
        GRPO_EXPECTS(m[t] == M(0) || std::isfinite(static_cast<double>(h[t])), bad_value,
                     "entropy: non-finite value on a valid token");
      }
    }
  };
  double thr = 0.0;
  if (o.entropy_threshold) {
    thr = *o.entropy_threshold;
    par::for_each_range(c.B, check_rows, loss_loop(Tn));
  } else {
    auto each = [&](index_t b, index_t e, auto&& f) {
      for (index_t i = b; i < e; ++i) {
        const index_t end = r.row_end[static_cast<std::size_t>(i)];
        if (end == 0) continue;
        f(&c.in.entropy(i, 0), &c.in.mask(i, 0), end);
      }
    };
    const radix_quantile rq =
        quantile_radix<V>(c.B, each, 1.0 - o.top_entropy_quantile, Tn, loss_loop(Tn));
    if (rq.nonfinite) par::for_each_range(c.B, check_rows, loss_loop(Tn));  // (throws)
    thr = rq.n == 0 ? -std::numeric_limits<double>::infinity() : rq.value;
  }
  r.h_thr = thr;
  const V thr_t = threshold_as<V>(thr);  // (V(h) >= thr_t iff double(h) >= thr)
  r.n_fin.assign(B, 0.0);
  r.n_ent.assign(B, 0.0);
  std::vector<double> dropped(B, 0.0);
  par::for_each_row(
      c.B,
      [&](index_t i) {
        const auto k = static_cast<std::size_t>(i);
        const index_t end = r.row_end[k];
        if (end == 0) return;
        const M* m = &c.in.mask(i, 0);
        const T* h = &c.in.entropy(i, 0);
        if (end <= index_t{1} << 31) {  // counts (vectorised), exact when the mask is 0 / 1
          std::uint32_t ck = 0, cd = 0, nb = 0;
          for (index_t t = 0; t < end; ++t) {
            const std::uint32_t v = m[t] != M(0), kp = static_cast<V>(h[t]) >= thr_t;
            ck += v & kp;
            cd += v & (kp ^ 1u);
            nb |= v & static_cast<std::uint32_t>(m[t] != M(1));
          }
          if (nb == 0) {
            r.n_fin[k] = static_cast<double>(ck) + (den ? 0.0 : static_cast<double>(cd));
            r.n_ent[k] = static_cast<double>(ck);
            dropped[k] = static_cast<double>(cd);
            return;
          }
        }
        double nf = 0.0, ne = 0.0, nd = 0.0;
        for (index_t t = 0; t < end; ++t) {
          const double mb = static_cast<double>(m[t]);
          if (mb == 0.0) continue;
          if (static_cast<V>(h[t]) >= thr_t) {
            nf += mb;
            ne += mb;
          } else {
            nd += mb;
            if (!den) nf += mb;
          }
        }
        r.n_fin[k] = nf;
        r.n_ent[k] = ne;
        dropped[k] = nd;
      },
      loss_loop(Tn));
  for (std::size_t k = 0; k < B; ++k) {  // row order
    r.met.entropy_masked_tokens += dropped[k];
    r.met.tokens += r.n_fin[k];
    r.met.sequences += r.n_fin[k] > 0 ? 1 : 0;
  }
}

/// The token-level engine over every row (threaded), merged in row order.
template <class T, class M, class G>
loss_scalars token_rows(const loss_call<T, M, G>& c, const loss_plan& pl, loss_rows& r) {
  const auto& o = c.o;
  const auto& P = o.policy;
  const bool kl_on = o.kl_coef != 0.0;
  std::vector<fast_row_part> parts(static_cast<std::size_t>(c.B));
  using CT = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const fast_simd_params<CT> sprm = token_simd_params<CT>(o);
  const bool stream_grad = stream_gradient<G>(c.B, c.Tn);
  const bool simd = pl.simd && c.Tn > 0;
  auto run_one = [&](const loss_call<T, M, G>& cc, index_t i) {
    fast_row_part& rp = parts[static_cast<std::size_t>(i)];
    if constexpr (plan_simd_types<T, M, G>) {
      if (simd && pl.use_emask) {        // (the top-entropy mask: vectorised rows only, plan())
        thread_local std::vector<M> km;  // O(T) per thread, kept for the next call
        token_row_emask(cc, r, i, sprm, stream_grad, km, rp);
        if (!cc.out.per_seq_loss.empty()) cc.out.per_seq_loss[static_cast<std::size_t>(i)] = G(0);
        return;
      }
      if (simd) {
        // Vectorised rows: the same maths on xsimd batches (or AVX-512), inputs in their own
        // precision. A row with a non-finite input on a valid token is rerun by the scalar row,
        // which throws the error that names the argument.
        const auto rw = row_desc<CT>(cc, r, i, stream_grad);
        if (!fast_simd_row_dispatch(P.kind, kl_on, sprm, rw, cc.Tn, rp)) {
          rp = fast_row_part{};
          token_row_scalar(cc, r, i, rp);  // throws [grpo.bad_value] naming the input
        }
        if (!cc.out.per_seq_loss.empty()) cc.out.per_seq_loss[static_cast<std::size_t>(i)] = G(0);
        return;
      }
    }
    token_row_scalar(cc, r, i, rp);
  };
  // compute_loss_metrics' scratch gradient (loss_call_flags::scratch_grad: its rows share one
  // buffer) is written to a row of each thread's own instead, so that the rows run threaded.
  const bool shared = c.scratch_grad && c.B > 1;
  auto run_row = [&](index_t i) {
    if (!shared) return run_one(c, i);
    thread_local std::vector<G> own;  // O(T) per thread, kept for the next call
    if (own.size() < static_cast<std::size_t>(c.Tn)) own.resize(static_cast<std::size_t>(c.Tn));
    loss_outputs<G> out = c.out;
    out.grad_logp = strided_view<G, 2>(own.data(), {c.B, c.Tn}, {0, 1});
    run_one(loss_call<T, M, G>(c.o, c.in, out), i);
  };
  par::for_each_row(c.B, run_row, loss_loop(c.Tn));
  loss_scalars res =
      merge_row_parts(parts, o.kl_coef, kl_on, false, P.kind == policy_loss_kind::cispo, r.met);
  if (c.has_ent) merge_entropy(parts, o.kl_coef, o.entropy_coef, res);
  res.engine_used = simd ? loss_engine::token_rows_simd : loss_engine::token_rows;
  return res;
}

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail
