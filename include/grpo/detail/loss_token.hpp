// SPDX-License-Identifier: Apache-2.0
/// @file loss_token.hpp
/// @brief The composition of the GRPO-family objective per row and per token (loss.hpp steps
///        1-6: row statistics, final mask, ratio -> IS weight -> surrogate -> KL -> entropy) as
///        GRPO_HOST_DEVICE functions: the ONE copy, called by grpo::compute_loss_into's general
///        engine (loss.hpp) and by the CUDA kernels (<grpo/cuda/loss_terms.cuh>, fused_grpo.cuh).
///
/// Every formula is still an ops:: call (<grpo/ops/policy_loss.hpp>, <grpo/ops/kl.hpp>) or
/// grpo::policy_token; this file holds only the order of operations and which row quantities
/// each token sees. Nothing here allocates, throws or uses std::string, so a kernel thread can
/// evaluate one token; input validation (with named arguments) stays with the callers.
/// The aggregation factor s_i is grpo::detail::agg_row_scale (<grpo/aggregate.hpp>).
/// The vectorised token-level fast path of loss.hpp (<grpo/detail/simd.hpp>) is a separate,
/// lane-generic evaluation of the same ops:: calls and is not routed through this file.
#pragma once

#include <grpo/aggregate.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/math.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>
#include <grpo/policy_loss.hpp>

namespace grpo::detail {

/// Every option of grpo::loss_options, as a trivially copyable block (host and device).
struct loss_params {
  /// Policy term: the host options themselves (trivially copyable), read by grpo::policy_token.
  policy_options policy{};
  // KL and entropy terms.
  double kl_coef = 0;
  ops::kl_params kl{};
  bool kl_bias = false;
  double entropy_coef = 0;
  // Top-entropy token mask: keep iff H >= threshold (given, or the quantile at 1 - q).
  bool emask = false;
  double top_entropy_quantile = 1.0;
  bool has_entropy_threshold = false;
  double entropy_threshold = 0;
  bool entropy_mask_in_denominator = true;
  // OPSM.
  bool opsm = false;
  double opsm_threshold = 0;
  bool opsm_in_denominator = true;
  // TIS.
  bool tis = false, tis_sequence = false;
  ops::tis_mode tis_mode = ops::tis_mode::truncate;
  double tis_c_min = 0, tis_c_max = 0, tis_log_clamp = 0;
  /// OpenRLHF seq-mask-tis (tis_options::seq_mask): row filter on the geometric-mean weight, then
  /// the unbounded token weight.
  bool tis_seq_mask = false;
  // Aggregations: policy, KL (a copy of the policy's unless kl_agg is set), entropy.
  agg_params agg{}, kl_agg{}, ent_agg{};
  /// True when a coefficient depends on more than its own token and the row's mask (sequence
  /// ratio, OPSM, sequence TIS, GMPO, VESPO, top-entropy mask): the fused step then runs in two
  /// phases.
  bool needs_row_logp = false;
  /// The loss reads the entropy (bonus or top-entropy mask).
  bool uses_entropy = false;

  [[nodiscard]] GRPO_HOST_DEVICE constexpr bool is_gmpo() const noexcept {
    return policy.kind == policy_loss_kind::gmpo;
  }
  [[nodiscard]] GRPO_HOST_DEVICE constexpr bool is_vespo() const noexcept {
    return policy.kind == policy_loss_kind::vespo;
  }
  /// OPSM / the entropy mask join the denominators (always for GMPO, which has no per-token
  /// multiplier to carry them).
  [[nodiscard]] GRPO_HOST_DEVICE constexpr bool opsm_masks() const noexcept {
    return opsm_in_denominator || is_gmpo();
  }
  [[nodiscard]] GRPO_HOST_DEVICE constexpr bool ent_masks() const noexcept {
    return entropy_mask_in_denominator || is_gmpo();
  }
};

/// The inputs of one valid token, widened to double (absent optional inputs already replaced by
/// their defaults: old = lp on-policy, sampler = old, ref = lp, is_weight = 1 unless has_isw).
struct token_in {
  double m = 0;    ///< base mask (0 on a truncated row)
  double lp = 0;   ///< current log-prob
  double lo = 0;   ///< behaviour log-prob
  double A = 0;    ///< advantage
  double lr = 0;   ///< reference log-prob (KL)
  double ls = 0;   ///< sampler log-prob (TIS, OPSM)
  double isw = 1;  ///< precomputed IS weight (when has_isw)
  double h = 0;    ///< entropy
  bool has_isw = false;
};

/// Sums over one row's valid tokens (pass 1 of compute_loss_into, base mask).
struct row_sums {
  double n = 0;    ///< sum m
  double sx = 0;   ///< sum m (lp - lo)                  (sequence ratio)
  double sg = 0;   ///< sum m (ls - lp)                  (OPSM gap)
  double sq = 0;   ///< sum m (lo - ls)                  (sequence TIS)
  double sv = 0;   ///< sum m clamp(lp - lo, -20, 20)    (VESPO log weight)
  double svr = 0;  ///< sum clamp(log rho_t, log 1e-8, 20) (VESPO, token IS weights)
  GRPO_HOST_DEVICE constexpr row_sums& operator+=(const row_sums& o) noexcept {
    n += o.n;
    sx += o.sx;
    sg += o.sg;
    sq += o.sq;
    sv += o.sv;
    svr += o.svr;
    return *this;
  }
};
/// Sum functor for cub::BlockReduce over row_sums.
struct row_sums_add {
  GRPO_HOST_DEVICE constexpr row_sums operator()(row_sums a, const row_sums& b) const noexcept {
    a += b;
    return a;
  }
};

/// log(1e-8), the lower clamp of VESPO's log weights (TRL).
GRPO_HOST_DEVICE inline double vespo_log_floor() noexcept {
  return math::log(1e-8);
}

/// Contribution of one token to its row's sums.
GRPO_HOST_DEVICE inline row_sums token_row_sums(const loss_params& p, const token_in& x) noexcept {
  row_sums s;
  if (x.m == 0.0) return s;
  s.n = x.m;
  s.sx = x.m * (x.lp - x.lo);
  s.sg = x.m * (x.ls - x.lp);
  s.sq = x.m * (x.lo - x.ls);
  if (p.is_vespo()) {
    s.sv = x.m * ops::clamp_scalar(x.lp - x.lo, -20.0, 20.0);
    double rho = x.has_isw ? x.isw : 1.0;
    if (p.tis && !p.tis_sequence) rho = math::exp(x.lo - x.ls);  // raw rho before bounds
    if (x.has_isw || p.tis) {
      if (p.tis) rho = ops::tis_weight(rho, p.tis_c_min, p.tis_c_max, p.tis_mode);
      s.svr = ops::clamp_scalar(math::log(rho), vespo_log_floor(), 20.0);
    }
  }
  return s;
}

/// Row quantities derived from the sums: n_i, mean log ratio, OPSM gap, sequence TIS weight,
/// VESPO log weight, the entropy threshold, the final-mask counts and GMPO's sequence terms, and
/// the aggregation factors (filled later by agg_row_scale).
struct row_ctx {
  double n_base = 0, nc = 1, xbar = 0, gap = 0, rho_seq = 1, vespo_lw = 0;
  double h_thr = -math::infinity<double>();  ///< top-entropy threshold (global)
  double n_fin = 0, n_ent = 0;               ///< final-mask counts (policy/KL; entropy term)
  double g_w = 0, g_abar = 0, g_isw = 1, g_den = 0;  ///< GMPO: w_i, mean A, IS mean, denominator
  double s_pol = 0, s_kl = 0, s_ent = 0;
  double s_gmpo = 0;  ///< GMPO's per-sequence factor scale / G
};

/// Finishes a row's statistics (nc = max(n, 1) as TRL's clamp(min=1)).
GRPO_HOST_DEVICE inline row_ctx finish_row(const loss_params& p, const row_sums& s) noexcept {
  row_ctx r;
  r.n_base = s.n;
  r.nc = s.n < 1.0 ? 1.0 : s.n;
  r.xbar = s.sx / r.nc;
  r.gap = s.sg / r.nc;
  if (p.tis && p.tis_seq_mask) {
    // OpenRLHF: seq_is = exp(masked_mean(lo - ls)); keep iff lo <= seq_is <= hi. The mean has no
    // floor (an empty row gives NaN, which fails both comparisons: dropped). rho_seq holds the
    // row's keep factor (1 / 0), multiplied into every token weight.
    const double g = math::exp(s.sq / s.n);
    const bool lo_ok = !(p.tis_c_min > 0) || g >= p.tis_c_min;
    const bool hi_ok = !(p.tis_c_max > 0) || g <= p.tis_c_max;
    r.rho_seq = (g == g && lo_ok && hi_ok) ? 1.0 : 0.0;
  } else if (p.tis && p.tis_sequence) {
    double q = s.sq;
    if (p.tis_log_clamp > 0) q = ops::clamp_scalar(q, -p.tis_log_clamp, p.tis_log_clamp);
    r.rho_seq = ops::tis_weight(math::exp(q), p.tis_c_min, p.tis_c_max, p.tis_mode);
  }
  double svr = s.svr;
  if (p.is_vespo() && p.tis && p.tis_sequence)  // the (B, 1) sequence weight folded once
    svr = ops::clamp_scalar(math::log(r.rho_seq), vespo_log_floor(), 20.0);
  r.vespo_lw = ops::clamp_scalar(s.sv + svr, vespo_log_floor(), 20.0);
  return r;
}

/// OPSM keep decision of a token (true when OPSM is off).
GRPO_HOST_DEVICE inline bool opsm_keep(const loss_params& p, const row_ctx& r,
                                       const token_in& x) noexcept {
  return !p.opsm || ops::opsm_keep(x.A, r.gap, p.opsm_threshold);
}

/// Top-entropy keep decision of a token (true when the mask is off).
GRPO_HOST_DEVICE inline bool ent_keep(const loss_params& p, const row_ctx& r,
                                      const token_in& x) noexcept {
  return !p.emask || x.h >= r.h_thr;
}

/// Final mask of a token (the denominators' mask): base mask, times the OPSM and entropy keeps
/// when they join the denominators.
GRPO_HOST_DEVICE inline double final_mask(const loss_params& p, const row_ctx& r,
                                          const token_in& x) noexcept {
  if (x.m == 0.0) return 0.0;
  if (p.opsm_masks() && !opsm_keep(p, r, x)) return 0.0;
  if (p.ent_masks() && !ent_keep(p, r, x)) return 0.0;
  return x.m;
}

/// Second row pass (over the final mask): counts and GMPO's sums.
struct row_sums2 {
  double nf = 0;   ///< sum of the final mask
  double ne = 0;   ///< ... restricted to entropy-kept tokens (entropy term's denominators)
  double sxc = 0;  ///< GMPO: sum m clip(x)
  double sa = 0;   ///< GMPO: sum m A
  double slw = 0;  ///< GMPO: sum m log(rho + 1e-10)
  GRPO_HOST_DEVICE constexpr row_sums2& operator+=(const row_sums2& o) noexcept {
    nf += o.nf;
    ne += o.ne;
    sxc += o.sxc;
    sa += o.sa;
    slw += o.slw;
    return *this;
  }
};
struct row_sums2_add {
  GRPO_HOST_DEVICE constexpr row_sums2 operator()(row_sums2 a, const row_sums2& b) const noexcept {
    a += b;
    return a;
  }
};

/// Detached rollout IS weight of a token (p.tis set, no precomputed weight): the row weight
/// (sequence TIS), the bounded token weight, or OpenRLHF seq-mask-tis's row keep x exp(lo - ls).
GRPO_HOST_DEVICE inline double tis_token_weight(const loss_params& p, const row_ctx& r,
                                                const token_in& x) noexcept {
  double q = x.lo - x.ls;
  if (p.tis_seq_mask) return r.rho_seq * math::exp(q);
  if (p.tis_sequence) return r.rho_seq;
  if (p.tis_log_clamp > 0) q = ops::clamp_scalar(q, -p.tis_log_clamp, p.tis_log_clamp);
  return ops::tis_weight(math::exp(q), p.tis_c_min, p.tis_c_max, p.tis_mode);
}

/// Contribution of one token to the second row pass (needs the finished row_ctx).
GRPO_HOST_DEVICE inline row_sums2 token_row_sums2(const loss_params& p, const row_ctx& r,
                                                  const token_in& x) noexcept {
  row_sums2 s;
  const double mf = final_mask(p, r, x);
  if (mf == 0.0) return s;
  s.nf = mf;
  s.ne = ent_keep(p, r, x) ? mf : 0.0;
  if (p.is_gmpo()) {
    s.sxc = mf * ops::gmpo_clip_log_ratio(x.lp - x.lo, x.A, p.policy.eps_low, p.policy.eps_high,
                                          p.policy.gmpo);
    s.sa = mf * x.A;
    double rho = x.has_isw ? x.isw : 1.0;
    if (p.tis)
      rho = (p.tis_sequence || p.tis_seq_mask)
                ? tis_token_weight(p, r, x)
                : ops::tis_weight(math::exp(x.lo - x.ls), p.tis_c_min, p.tis_c_max, p.tis_mode);
    s.slw = mf * math::log(rho + 1e-10);  // verl: per-sequence geometric mean of IS weights
  }
  return s;
}

/// Finishes the second pass: final-mask counts and GMPO's w_i = exp(sum m clip(x) / den),
/// mean advantage and IS geometric mean (den = max(n_fin + row_count_eps, row_count_floor)).
GRPO_HOST_DEVICE inline void finish_row2(const loss_params& p, const row_sums2& s, bool has_isw,
                                         row_ctx& r) noexcept {
  r.n_fin = s.nf;
  r.n_ent = s.ne;
  if (!p.is_gmpo()) return;
  double den = s.nf + p.agg.row_count_eps;
  den = den < p.agg.row_count_floor ? p.agg.row_count_floor : den;
  r.g_den = den;
  r.g_w = 0.0;
  r.g_abar = 0.0;
  r.g_isw = 1.0;
  if (den > 0) {
    r.g_w = math::exp(s.sxc / den);
    r.g_abar = s.sa / den;
    if (has_isw || p.tis) r.g_isw = math::exp(s.slw / den);
  }
}

/// GMPO's per-sequence factor s_g = scale / G (G = global_seqs, else the row count B: verl's
/// geo_mean averages the sequence losses over all rows of the batch).
GRPO_HOST_DEVICE constexpr double gmpo_scale(const loss_params& p, double rows) noexcept {
  if (!p.is_gmpo()) return 0.0;
  const double G = p.agg.global_seqs > 0 ? p.agg.global_seqs : rows;
  return p.agg.scale / G;
}

/// GMPO's sequence loss l_i = -Abar_i w_i isw_i (unweighted: per_seq_loss, per-token loss).
/// @pre r finished by finish_row2.
GRPO_HOST_DEVICE constexpr double gmpo_seq_loss(const row_ctx& r) noexcept {
  return -r.g_abar * r.g_w * r.g_isw;
}

/// GMPO's weighted sequence loss s_g l_i, added once per row to the policy sum.
GRPO_HOST_DEVICE constexpr double gmpo_row_loss(const loss_params& p, const row_ctx& r) noexcept {
  return p.is_gmpo() ? r.s_gmpo * gmpo_seq_loss(r) : 0.0;
}

/// Ratio of a token (step 2) and its derivative with respect to lp_t, split into the direct part
/// and the part spread over the row (TRL GSPO, times m_t / max(n_i, 1)).
struct ratio_terms {
  double r = 1;         ///< ratio value
  double d_direct = 0;  ///< d r / d lp_t through this token
  double d_spread = 0;  ///< d r / d xbar_i (sequence level), spread as m_t / max(n_i, 1)
};

/// Step 2. d r / d x = 1[x inside the clamp] r: one exp per token.
///   token:          r_t = exp(clamp(lp_t - lo_t)),   d r_t / d lp_t = r_t [inside the clamp]
///   sequence:       r_i = exp(clamp(xbar_i)),        d r_i / d lp_t = r_i m_t / max(n_i, 1)
///   sequence_token: value r_i, but d/d lp_t of sg[xbar] + lp_t - sg[lp_t] = r_i (direct only)
/// @param x     the token's log ratio lp_t - lo_t (read at token level)
/// @param xbar  the row's mean log ratio (read at the sequence levels)
GRPO_HOST_DEVICE inline ratio_terms token_ratio(const policy_options& P, double x,
                                                double xbar) noexcept {
  ratio_terms o;
  if (P.level == is_level::token) {
    o.r = ops::ratio_from_log(x, P.log_ratio_min, P.log_ratio_max);
    o.d_direct = ops::clamp_scalar_grad(x, P.log_ratio_min, P.log_ratio_max) * o.r;
    return o;
  }
  o.r = ops::ratio_from_log(xbar, P.log_ratio_min, P.log_ratio_max);
  const double d = ops::clamp_scalar_grad(xbar, P.log_ratio_min, P.log_ratio_max) * o.r;
  if (P.level == is_level::sequence_token)
    o.d_direct = d;  // d/dlp_t of sg[mean] + lp_t - sg[lp_t]
  else
    o.d_spread = d;  // times m_t / max(n_i, 1), summed over the row's loss terms
  return o;
}

/// Everything one token contributes: its gradients, its weighted loss terms and its share of the
/// sequence-ratio spread (TRL GSPO: added to every valid token of the row as row_g m_t / nc), plus
/// the unweighted quantities the CPU engine reports (per-token loss, metrics).
struct token_out {
  double g_logp = 0;      ///< dL/dlogp (without the spread term)
  double g_h = 0;         ///< dL/dH = -entropy_coef s_ent m_e
  double pol = 0;         ///< s_pol m c l_pol (summed: policy_loss); 0 off the final mask
  double kl = 0;          ///< s_kl m KL (summed: kl_loss); 0 off the final mask
  double ent = 0;         ///< s_ent m_e H (summed: entropy_loss)
  double spread = 0;      ///< contribution to row_g (spread_pol + spread_kl)
  double spread_pol = 0;  ///< policy part of spread
  double spread_kl = 0;   ///< KL part of spread
  double ptl = 0;         ///< per-token loss c l_pol + kl_coef KL (GMPO: the row's -A w isw),
                          ///< evaluated at every position, padding included
  double ratio = 1;       ///< ratio value r (token or sequence)
  double rho = 1;         ///< detached IS weight
  double kl_value = 0;    ///< KL value (times r when bias-corrected)
  double weight = 1;      ///< detached weight of the surrogate (CISPO w, VESPO phi)
  double mf = 0;          ///< final mask of the token (the denominators' mask)
  double me = 0;          ///< entropy-term mask m_e (final mask x entropy keep)
  bool bad = false;       ///< a non-finite input on a valid token
};

/// Per-token composition of compute_loss_into (loss.hpp steps 2-6):
///   2. ratio r (token: exp(clamp(lp - lo)); sequence levels: exp(clamp(xbar_i))) and dr/dlp;
///   3. policy term W l_pol with W = s_pol m c, c = rho [OPSM keep] [entropy keep] (VESPO: phi
///      replaces rho; GMPO: the sequence term, gradient s_g (-A w isw) clip'(x) m / den);
///   4. + kl_coef W_kl KL(lp, lr), times r with the product rule when bias-corrected;
///   6. - entropy_coef s_ent m_e H (gradient dL/dH = -entropy_coef s_ent m_e).
/// Aggregation (step 5) is in the factors s_* of row_ctx.
/// @param has_ent  entropy is an input of the loss (its value enters entropy_loss).
/// @pre r finished by finish_row / finish_row2 and its s_* factors set.
/// @post g_logp, pol, kl, ent are 0 off the final mask.
GRPO_HOST_DEVICE inline token_out token_terms(const loss_params& p, const row_ctx& r,
                                              const token_in& x, bool has_ent) noexcept {
  token_out o;
  const double mf = final_mask(p, r, x);
  o.mf = mf;
  if (x.m != 0.0) {
    const bool fin = (x.lp - x.lp == 0.0) && (x.lo - x.lo == 0.0) && (x.A - x.A == 0.0) &&
                     (p.kl_coef == 0.0 || x.lr - x.lr == 0.0) && (!p.emask || x.h - x.h == 0.0) &&
                     (!(p.tis || p.opsm) || x.ls - x.ls == 0.0) &&
                     (!x.has_isw || x.isw - x.isw == 0.0);
    o.bad = !fin;
  }
  // Step 2: ratio and its derivative with respect to lp (direct, or spread over the row).
  const policy_options& P = p.policy;
  const ratio_terms rt = token_ratio(P, x.lp - x.lo, r.xbar);
  const double r_val = rt.r, drd = rt.d_direct, drs = rt.d_spread;
  o.ratio = r_val;
  // Step 3: detached IS weight, OPSM multiplier (when OPSM is not in the denominator).
  double rho = 1.0;
  if (x.has_isw) {
    rho = x.isw;
  } else if (p.tis) {
    rho = tis_token_weight(p, r, x);
  }
  o.rho = rho;
  double c = p.is_vespo() ? 1.0 : rho;  // VESPO folds rho into phi
  if (!p.opsm_masks() && !opsm_keep(p, r, x)) c = 0.0;
  if (!p.ent_masks() && !ent_keep(p, r, x)) c = 0.0;
  double g = 0.0;
  if (p.is_gmpo()) {
    o.ptl = gmpo_seq_loss(r);
    // d/dlp_t of s_g (-A_i exp(sum m clip(x) / den) isw_i) = s_g (-A_i w_i isw_i) clip'(x) m / den.
    if (mf != 0.0 && r.g_den > 0) {
      const double dx =
          ops::gmpo_clip_log_ratio_grad(x.lp - x.lo, x.A, P.eps_low, P.eps_high, P.gmpo);
      g += r.s_gmpo * gmpo_seq_loss(r) * dx * mf / r.g_den;
    }
  } else {
    const double phi = p.is_vespo()
                           ? ops::vespo_phi(r.vespo_lw, x.A, P.vespo_k_pos, P.vespo_lambda_pos,
                                            P.vespo_k_neg, P.vespo_lambda_neg)
                           : 1.0;
    const policy_token_terms t = policy_token(P, r_val, x.A, x.lp, phi);
    o.weight = t.weight;
    o.ptl = c * t.value;
    if (mf != 0.0) {
      const double W = r.s_pol * mf * c;
      o.pol = W * t.value;
      g += W * (t.d_ratio * drd + t.d_logp);
      o.spread_pol = W * t.d_ratio * drs;
    }
  }
  // Step 4: in-loss KL (not multiplied by rho or OPSM), product rule when bias-corrected:
  // value k r, gradient k' r + k r' (r' direct, or its row spread at sequence level).
  if (p.kl_coef != 0.0) {
    const auto kv = ops::kl_value_grad(p.kl, x.lp, x.lr);
    double k = kv.value, kg = kv.grad, kd = 0.0, ks = 0.0;
    if (p.kl_bias) {
      kd = k * drd;
      ks = k * drs;
      kg *= r_val;
      k = ops::kl_bias_corrected(k, r_val);
    }
    o.kl_value = k;
    o.ptl += p.kl_coef * k;
    if (mf != 0.0) {
      const double W = r.s_kl * mf;
      o.kl = W * k;
      g += W * p.kl_coef * (kg + kd);
      o.spread_kl = W * p.kl_coef * ks;
    }
  }
  o.spread = o.spread_pol + o.spread_kl;
  // Step 6: entropy bonus, loss -= entropy_coef * agg(H) over m x entropy mask.
  const double me = (mf != 0.0 && ent_keep(p, r, x)) ? mf : 0.0;
  o.me = me;
  if (has_ent && me != 0.0) o.ent = r.s_ent * me * x.h;
  o.g_h = -p.entropy_coef * r.s_ent * me;
  o.g_logp = g;
  return o;
}

/// The sequence-ratio spread added to a valid token's gradient: row_g m_t / max(n_i, 1)
/// (d s_i / d lp_t = s_i m_t / max(n_i, 1) for TRL's sequence level; 0 for other levels).
GRPO_HOST_DEVICE constexpr double spread_grad(const loss_params& p, const row_ctx& r, double row_g,
                                              double m_base) noexcept {
  return (p.policy.level == is_level::sequence && m_base != 0.0) ? row_g * m_base / r.nc : 0.0;
}

}  // namespace grpo::detail
