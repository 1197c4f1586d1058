// SPDX-License-Identifier: Apache-2.0
/// @file token_rows.hpp
/// @brief The token-level row engine of compute_loss_into: token-level ratio surrogates without
///        extra masks or IS weights (GRPO / DAPO / Dr. GRPO / CISPO / SAPO / GPG at token level,
///        optional in-loss KL and entropy term; kind_traits<K>::token_rows). No row-wide terms:
///        one tight loop per row (plus, with an entropy input, one sweep over H and the mask),
///        metric statistics reduced per row, merged in row order. The vectorised rows
///        (loss/simd_token_rows.hpp, the AVX-512 kernel for float) when the layouts allow; the
///        scalar row below otherwise, and for a row the kernels flag (it throws the named error).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/core/parallel.hpp>
#include <grpo/loss/call.hpp>
#include <grpo/loss/plan.hpp>
#include <grpo/loss/simd_token_rows.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>

#include <cmath>
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
  const double se = c.has_ent ? r.s_ent[i] : 0.0, gh = -o.entropy_coef * se;
  for (index_t t = 0; t < c.Tn; ++t) {
    const double mf = trunc ? 0.0 : static_cast<double>(in.mask(i, t));
    if (want_ge) out.grad_entropy(i, t) = c.has_ent ? static_cast<G>(gh * mf) : G(0);
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
        rp.ent += se * mf * h;
        add_block(rp.eb, h, mf);
      }
    }
    const double x = lp - lo;
    const double rr = ops::ratio_from_log(x, P.log_ratio_min, P.log_ratio_max);
    const double drd = ops::clamp_scalar_grad(x, P.log_ratio_min, P.log_ratio_max) * rr;
    const auto term = policy_token(P, rr, A, lp);
    double ptl = term.value, g = 0.0;
    if (mf != 0.0) {
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
    res.metrics.entropy.add_block(rp.eb[0], rp.eb[1], rp.wsum, rp.eb[2], rp.eb[3]);
  }
  res.entropy_loss = ent;
  res.loss = res.policy_loss + kl_coef * res.kl_loss - entropy_coef * ent;
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
