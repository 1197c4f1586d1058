// SPDX-License-Identifier: Apache-2.0
/// @file loss_terms.cuh
/// @brief Host+device glue of the GRPO-family objective for the CUDA kernels: a flat parameter
///        block built from grpo::loss_options, the per-row statistics, the aggregation row factors
///        and the per-token coefficients (dL/dlogp, dL/dH, loss contributions), composed from the
///        scalar functions of <grpo/ops/policy_loss.hpp> and <grpo/ops/kl.hpp>.
///
/// Why a separate header: compute_loss_into (loss.hpp) is a host loop over std::vector; its
/// composition (ratio -> IS weight -> surrogate -> KL -> entropy -> aggregation) is restated here
/// as GRPO_HOST_DEVICE steps so that one kernel thread can evaluate one token. Every formula is
/// still an ops:: call; this file holds only the order of operations (loss.hpp's file comment,
/// steps 1-6). Because the steps are host-callable, tests/cuda/test_loss_terms_host.cu checks them
/// against compute_loss_into on the CPU, without a GPU.
///
/// Every option of loss_options is supported: policy kinds ppo_clip (clip-higher, dual clip,
/// delta), cispo (both conventions), sapo, reinforce, gmpo (per-sequence geometric mean of
/// sign-clipped ratios) and vespo (gamma weight of the sequence log weight); levels token, sequence
/// (TRL GSPO) and sequence_token (verl GSPO); log-ratio clamps; every KL estimator with clamps,
/// straight-through and bias correction; entropy bonus; top-entropy token mask (explicit threshold
/// or the linear quantile, computed on the device by the caller); OPSM and the entropy mask in or
/// out of the denominator; TIS per token or per sequence; precomputed IS weights; truncated rows;
/// every aggregation mode with global denominators, separate KL and entropy aggregation. The
/// loss_metrics schema (clip fractions, ratio statistics) is not computed on the device.
#pragma once

// The CPU loss engine's xsimd fast path instantiates the GRPO_HOST_DEVICE ops on xsimd batches,
// which nvcc rejects in device code; an nvcc translation unit uses its scalar lanes (same maths).
#if defined(__CUDACC__) && !defined(GRPO_NO_XSIMD)
#define GRPO_NO_XSIMD 1
#endif

#include <grpo/aggregate.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/math.hpp>
#include <grpo/loss.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>
#include <grpo/policy_loss.hpp>

#include <exception>

namespace grpo::cuda {

/// Aggregation options flattened for the device (unset optionals are negative).
struct agg_params {
  agg_mode mode = agg_mode::token_mean;
  double global_tokens = -1, global_seqs = -1, global_groups = -1, norm_length = -1;
  bool count_empty_rows = false;
  double row_count_eps = 0, row_count_floor = 0, token_count_floor = 0, scale = 1;
  index_t group_size = 0;
};

/// Every option of grpo::loss_options that the device path supports, as a trivially copyable block.
struct loss_params {
  // Policy term (policy_options).
  policy_loss_kind kind = policy_loss_kind::ppo_clip;
  is_level level = is_level::token;
  double eps_low = 0.2, eps_high = 0.2, dual_c = 0, delta = 0;
  double lr_min = -math::infinity<double>(), lr_max = math::infinity<double>();
  cispo_clip cispo = cispo_clip::trl_cap;
  double tau_pos = 1.0, tau_neg = 1.05;
  ops::gmpo_sign gmpo = ops::gmpo_sign::verl;
  double vespo_k_pos = 2.0, vespo_lambda_pos = 3.0, vespo_k_neg = 3.0, vespo_lambda_neg = 2.0;
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
  // Aggregations: policy, KL (a copy of the policy's unless kl_agg is set), entropy.
  agg_params agg{}, kl_agg{}, ent_agg{};
  /// True when a coefficient depends on more than its own token and the row's mask (sequence
  /// ratio, OPSM, sequence TIS, GMPO, VESPO, top-entropy mask): the fused step then runs in two
  /// phases.
  bool needs_row_logp = false;
  /// The loss reads the entropy (bonus or top-entropy mask).
  bool uses_entropy = false;

  [[nodiscard]] GRPO_HOST_DEVICE constexpr bool is_gmpo() const noexcept {
    return kind == policy_loss_kind::gmpo;
  }
  [[nodiscard]] GRPO_HOST_DEVICE constexpr bool is_vespo() const noexcept {
    return kind == policy_loss_kind::vespo;
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

/// Copies an agg_options (the group_tokens span is passed separately as a device pointer).
inline agg_params make_agg_params(const agg_options& o) noexcept {
  agg_params a;
  a.mode = o.mode;
  a.global_tokens = o.global_tokens ? *o.global_tokens : -1.0;
  a.global_seqs = o.global_seqs ? *o.global_seqs : -1.0;
  a.global_groups = o.global_groups ? *o.global_groups : -1.0;
  a.norm_length = o.norm_length ? *o.norm_length : -1.0;
  a.count_empty_rows = o.count_empty_rows;
  a.row_count_eps = o.row_count_eps;
  a.row_count_floor = o.row_count_floor;
  a.token_count_floor = o.token_count_floor;
  a.scale = o.scale;
  a.group_size = o.group_size;
  return a;
}

/// Builds the device parameter block. Validates with grpo::validate (never throws out of here).
/// @return false when the options are invalid (grpo::validate throws); `out` is then unspecified.
inline bool make_loss_params(const loss_options& o, loss_params& out) noexcept {
  try {
    validate(o);
  } catch (const std::exception&) {
    return false;
  }
  const auto& P = o.policy;
  out = loss_params{};
  out.kind = P.kind;
  out.level = P.level;
  out.eps_low = P.eps_low;
  out.eps_high = P.eps_high;
  out.dual_c = P.dual_clip_c;
  out.delta = P.delta;
  out.lr_min = P.log_ratio_min;
  out.lr_max = P.log_ratio_max;
  out.cispo = P.cispo;
  out.tau_pos = P.sapo_tau_pos;
  out.tau_neg = P.sapo_tau_neg;
  out.gmpo = P.gmpo;
  out.vespo_k_pos = P.vespo_k_pos;
  out.vespo_lambda_pos = P.vespo_lambda_pos;
  out.vespo_k_neg = P.vespo_k_neg;
  out.vespo_lambda_neg = P.vespo_lambda_neg;
  out.kl_coef = o.kl_coef;
  out.kl = o.kl;
  out.kl_bias = o.kl_bias_correction;
  out.entropy_coef = o.entropy_coef;
  out.emask = o.top_entropy_quantile < 1.0;
  out.top_entropy_quantile = o.top_entropy_quantile;
  out.has_entropy_threshold = o.entropy_threshold.has_value();
  out.entropy_threshold = o.entropy_threshold ? *o.entropy_threshold : 0.0;
  out.entropy_mask_in_denominator = o.entropy_mask_in_denominator;
  out.opsm = o.opsm_threshold.has_value();
  out.opsm_threshold = o.opsm_threshold ? *o.opsm_threshold : 0.0;
  out.opsm_in_denominator = o.opsm_in_denominator;
  out.tis = o.tis.enabled;
  out.tis_sequence = o.tis.sequence;
  out.tis_mode = o.tis.mode;
  out.tis_c_min = o.tis.c_min;
  out.tis_c_max = o.tis.c_max;
  out.tis_log_clamp = o.tis.log_clamp;
  out.agg = make_agg_params(o.agg);
  out.kl_agg = o.kl_agg ? make_agg_params(*o.kl_agg) : out.agg;
  out.ent_agg = make_agg_params(o.entropy_agg);
  out.needs_row_logp = P.level != is_level::token || out.opsm || (out.tis && out.tis_sequence) ||
                       out.is_gmpo() || out.is_vespo() || out.emask;
  out.uses_entropy = o.entropy_coef != 0.0 || out.emask;
  return true;
}

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
  if (p.tis && p.tis_sequence) {
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

/// Contribution of one token to the second row pass (needs the finished row_ctx).
GRPO_HOST_DEVICE inline row_sums2 token_row_sums2(const loss_params& p, const row_ctx& r,
                                                  const token_in& x) noexcept {
  row_sums2 s;
  const double mf = final_mask(p, r, x);
  if (mf == 0.0) return s;
  s.nf = mf;
  s.ne = ent_keep(p, r, x) ? mf : 0.0;
  if (p.is_gmpo()) {
    s.sxc = mf * ops::gmpo_clip_log_ratio(x.lp - x.lo, x.A, p.eps_low, p.eps_high, p.gmpo);
    s.sa = mf * x.A;
    double rho = x.has_isw ? x.isw : 1.0;
    if (p.tis)
      rho = p.tis_sequence
                ? r.rho_seq
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

/// GMPO's weighted sequence loss s_g (-A_i w_i isw_i), added once per row to the policy sum.
GRPO_HOST_DEVICE constexpr double gmpo_row_loss(const loss_params& p, const row_ctx& r) noexcept {
  return p.is_gmpo() ? r.s_gmpo * (-r.g_abar * r.g_w * r.g_isw) : 0.0;
}

/// Batch totals the aggregation factors need.
struct agg_totals {
  double n_total = 0;    ///< sum of final-mask row counts
  double non_empty = 0;  ///< rows with n_i > 0
  double rows = 0;       ///< B
  double width = 0;      ///< padded T
};

/// Aggregation factor s_i of one row (aggregate.hpp, aggregation_row_scales, restated per row):
/// loss = sum_i s_i sum_t m_it l_it. `group_tokens` is N_g of the row's group (group_token_mean).
GRPO_HOST_DEVICE inline double agg_row_scale(const agg_params& o, double n_i, const agg_totals& t,
                                             double group_tokens) noexcept {
  const double G = o.global_seqs > 0 ? o.global_seqs : (o.count_empty_rows ? t.rows : t.non_empty);
  switch (o.mode) {
    case agg_mode::token_mean: {
      double N = o.global_tokens > 0 ? o.global_tokens : t.n_total;
      N = N < o.token_count_floor ? o.token_count_floor : N;
      return N > 0 ? o.scale / N : 0.0;
    }
    case agg_mode::token_sum:
      return o.scale;
    case agg_mode::seq_mean_token_sum:
    case agg_mode::seq_mean_token_sum_norm: {
      double L = 1.0;
      if (o.mode == agg_mode::seq_mean_token_sum_norm)
        L = o.norm_length > 0 ? o.norm_length : t.width;
      return (n_i > 0 && G > 0 && L > 0) ? o.scale / (L * G) : 0.0;
    }
    case agg_mode::seq_mean_token_mean: {
      double d = n_i + o.row_count_eps;
      d = d < o.row_count_floor ? o.row_count_floor : d;
      return (n_i > 0 && d > 0 && G > 0) ? o.scale / (d * G) : 0.0;
    }
    case agg_mode::group_token_mean: {
      const double groups = o.global_groups > 0
                                ? o.global_groups
                                : (o.group_size > 0 ? t.rows / double(o.group_size) : 0);
      return (group_tokens > 0 && groups > 0) ? o.scale / (group_tokens * groups) : 0.0;
    }
  }
  return 0.0;
}

/// Value and derivatives of the token surrogate (grpo::policy_token restated for the device).
struct surrogate_terms {
  double value = 0, d_ratio = 0, d_logp = 0;
};
GRPO_HOST_DEVICE inline surrogate_terms surrogate(const loss_params& p, double r, double A,
                                                  double lp, double phi = 1.0) noexcept {
  surrogate_terms o;
  switch (p.kind) {
    case policy_loss_kind::ppo_clip: {
      const ops::ppo_clip_params<double> c{p.eps_low, p.eps_high, p.delta, p.dual_c};
      o.value = ops::ppo_clip_loss(r, A, c);
      o.d_ratio = ops::ppo_clip_loss_grad(r, A, c);
      break;
    }
    case policy_loss_kind::cispo: {
      const double w = p.cispo == cispo_clip::trl_cap
                           ? ops::cispo_weight_cap(r, p.eps_high)
                           : ops::cispo_weight_clip(r, p.eps_low, p.eps_high);
      o.value = ops::weighted_pg_loss(w, A, lp);
      o.d_logp = ops::weighted_pg_loss_grad(w, A, lp);
      break;
    }
    case policy_loss_kind::sapo:
      o.value = ops::sapo_loss(r, A, p.tau_pos, p.tau_neg);
      o.d_ratio = ops::sapo_loss_grad(r, A, p.tau_pos, p.tau_neg);
      break;
    case policy_loss_kind::reinforce:
      o.value = ops::weighted_pg_loss(1.0, A, lp);
      o.d_logp = ops::weighted_pg_loss_grad(1.0, A, lp);
      break;
    case policy_loss_kind::vespo:
      o.value = ops::weighted_pg_loss(phi, A, lp);
      o.d_logp = ops::weighted_pg_loss_grad(phi, A, lp);
      break;
    case policy_loss_kind::gmpo:  // per sequence: gmpo_row_loss / token_terms
      break;
  }
  return o;
}

/// Everything one token contributes: its gradients, its weighted loss terms and its share of the
/// sequence-ratio spread (TRL GSPO: added to every valid token of the row as row_g m_t / nc).
struct token_out {
  double g_logp = 0;  ///< dL/dlogp (without the spread term)
  double g_h = 0;     ///< dL/dH
  double pol = 0;     ///< s_pol m c l_pol (summed: policy_loss)
  double kl = 0;      ///< s_kl m KL (summed: kl_loss)
  double ent = 0;     ///< s_ent m H (summed: entropy_loss)
  double spread = 0;  ///< contribution to row_g
  bool bad = false;   ///< a non-finite input on a valid token
};

/// Per-token composition of compute_loss_into (loss.hpp steps 2-6):
///   2. ratio r (token: exp(clamp(lp - lo)); sequence levels: exp(clamp(xbar_i))) and dr/dlp;
///   3. policy term W l_pol with W = s_pol m c, c = rho [OPSM keep] [entropy keep] (VESPO: phi
///      replaces rho; GMPO: the sequence term, gradient s_g (-A w isw) clip'(x) m / den);
///   4. + kl_coef W_kl KL(lp, lr), times r with the product rule when bias-corrected;
///   6. - entropy_coef s_ent m_e H (gradient dL/dH = -entropy_coef s_ent m_e).
/// Aggregation (step 5) is in the factors s_* of row_ctx.
/// @param has_ent  entropy is an input of the loss (p.uses_entropy).
GRPO_HOST_DEVICE inline token_out token_terms(const loss_params& p, const row_ctx& r,
                                              const token_in& x, bool has_ent) noexcept {
  token_out o;
  const double mf = final_mask(p, r, x);
  if (x.m != 0.0) {
    const bool fin = (x.lp - x.lp == 0.0) && (x.lo - x.lo == 0.0) && (x.A - x.A == 0.0) &&
                     (p.kl_coef == 0.0 || x.lr - x.lr == 0.0) && (!p.emask || x.h - x.h == 0.0);
    o.bad = !fin;
  }
  // Step 2: ratio and its derivative with respect to lp (direct, or spread over the row).
  double r_val, drd, drs;
  if (p.level == is_level::token) {
    const double xr = x.lp - x.lo;
    r_val = ops::ratio_from_log(xr, p.lr_min, p.lr_max);
    drd = ops::clamp_scalar_grad(xr, p.lr_min, p.lr_max) * r_val;
    drs = 0.0;
  } else {
    r_val = ops::ratio_from_log(r.xbar, p.lr_min, p.lr_max);
    const double d = ops::clamp_scalar_grad(r.xbar, p.lr_min, p.lr_max) * r_val;
    drd = p.level == is_level::sequence_token ? d : 0.0;
    drs = p.level == is_level::sequence_token ? 0.0 : d;
  }
  // Step 3: detached IS weight, OPSM multiplier (when OPSM is not in the denominator).
  double rho = 1.0;
  if (x.has_isw) {
    rho = x.isw;
  } else if (p.tis) {
    double q = x.lo - x.ls;
    if (p.tis_log_clamp > 0) q = ops::clamp_scalar(q, -p.tis_log_clamp, p.tis_log_clamp);
    rho = p.tis_sequence ? r.rho_seq
                         : ops::tis_weight(math::exp(q), p.tis_c_min, p.tis_c_max, p.tis_mode);
  }
  double c = p.is_vespo() ? 1.0 : rho;  // VESPO folds rho into phi
  if (!p.opsm_masks() && !opsm_keep(p, r, x)) c = 0.0;
  if (!p.ent_masks() && !ent_keep(p, r, x)) c = 0.0;
  double g = 0.0;
  if (p.is_gmpo()) {
    // d/dlp_t of s_g (-A_i exp(sum m clip(x) / den) isw_i) = s_g (-A_i w_i isw_i) clip'(x) m / den.
    if (mf != 0.0 && r.g_den > 0) {
      const double dx =
          ops::gmpo_clip_log_ratio_grad(x.lp - x.lo, x.A, p.eps_low, p.eps_high, p.gmpo);
      g += r.s_gmpo * (-r.g_abar * r.g_w * r.g_isw) * dx * mf / r.g_den;
    }
  } else if (mf != 0.0) {
    const double phi = p.is_vespo()
                           ? ops::vespo_phi(r.vespo_lw, x.A, p.vespo_k_pos, p.vespo_lambda_pos,
                                            p.vespo_k_neg, p.vespo_lambda_neg)
                           : 1.0;
    const surrogate_terms t = surrogate(p, r_val, x.A, x.lp, phi);
    const double W = r.s_pol * mf * c;
    o.pol = W * t.value;
    g += W * (t.d_ratio * drd + t.d_logp);
    o.spread += W * t.d_ratio * drs;
  }
  // Step 4: in-loss KL (not multiplied by rho or OPSM), product rule when bias-corrected.
  if (p.kl_coef != 0.0 && mf != 0.0) {
    const auto kv = ops::kl_value_grad(p.kl, x.lp, x.lr);
    double k = kv.value, kg = kv.grad, kd = 0.0, ks = 0.0;
    if (p.kl_bias) {
      kd = k * drd;
      ks = k * drs;
      kg *= r_val;
      k = ops::kl_bias_corrected(k, r_val);
    }
    const double W = r.s_kl * mf;
    o.kl = W * k;
    g += W * p.kl_coef * (kg + kd);
    o.spread += W * p.kl_coef * ks;
  }
  // Step 6: entropy bonus, loss -= entropy_coef * agg(H) over m x entropy mask.
  const double me = (mf != 0.0 && ent_keep(p, r, x)) ? mf : 0.0;
  if (has_ent && me != 0.0) o.ent = r.s_ent * me * x.h;
  o.g_h = -p.entropy_coef * r.s_ent * me;
  o.g_logp = g;
  return o;
}

/// The sequence-ratio spread added to a valid token's gradient: row_g m_t / max(n_i, 1)
/// (d s_i / d lp_t = s_i m_t / max(n_i, 1) for TRL's sequence level; 0 for other levels).
GRPO_HOST_DEVICE constexpr double spread_grad(const loss_params& p, const row_ctx& r, double row_g,
                                              double m_base) noexcept {
  return (p.level == is_level::sequence && m_base != 0.0) ? row_g * m_base / r.nc : 0.0;
}

}  // namespace grpo::cuda
