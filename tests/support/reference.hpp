// SPDX-License-Identifier: Apache-2.0
/// @file reference.hpp
/// @brief Naive double-precision reference of the GRPO-family objective, written from the paper /
///        peer formulas WITHOUT calling grpo::ops, for tests (value oracle + finite differences).
///
/// Stop-gradients are modelled explicitly: every detached quantity (CISPO weight, VESPO phi,
/// GSPO-token sg[mean] and sg[lp], straight-through KL, OPSM gap) is evaluated at a separate
/// argument `lp_sg`. Central differences of objective(lp, lp_sg) in `lp` with lp_sg held fixed
/// therefore equal the analytic gradient autograd would produce. The option structs are the
/// library's (plain data); no library formula is used.
#pragma once

#include <grpo/loss.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace grpo_ref {

struct batch {
  long B = 0, T = 0;
  std::vector<double> lp, old, ref, adv, mask, sampler, entropy;  // [B*T]; optional ones empty
  std::vector<unsigned char> truncated;                           // [B] or empty
  double at(const std::vector<double>& v, long i, long t) const { return v[i * T + t]; }
};

inline double clampd(double x, double lo, double hi) {
  return std::min(std::max(x, lo), hi);
}

/// KL estimator value as written by the peers.
inline double kl_value(const grpo::kl_params& p, double lp, double lr) {
  double v = 0;
  switch (p.estimator) {
    case grpo::kl_estimator::k1:
      v = lp - lr;
      break;
    case grpo::kl_estimator::abs:
      v = std::fabs(lp - lr);
      break;
    case grpo::kl_estimator::k2:
      v = 0.5 * (lp - lr) * (lp - lr);
      break;
    case grpo::kl_estimator::k3: {
      double d = lr - lp;
      if (p.inner_clamp > 0) d = clampd(d, -p.inner_clamp, p.inner_clamp);
      v = std::exp(d) - d - 1.0;
      break;
    }
  }
  if (p.outer_clamp > 0) v = clampd(v, -p.outer_clamp, p.outer_clamp);
  return v;
}

/// Surrogate KL with verl's straight-through structure g - sg[g] + sg[f].
inline double kl_surrogate(const grpo::kl_params& p, double lp, double lp_sg, double lr) {
  if (!p.straight_through) return kl_value(p, lp, lr);
  auto g = [&](double x) { return 0.5 * (x - lr) * (x - lr); };
  return g(lp) - g(lp_sg) + kl_value(p, lp_sg, lr);
}

/// Row factors of the aggregation, from the row token counts.
inline std::vector<double> row_scales(const std::vector<double>& n, long T,
                                      const grpo::agg_options& o) {
  const long B = static_cast<long>(n.size());
  std::vector<double> s(B, 0.0);
  double N = 0;
  long ne = 0;
  for (double x : n) {
    N += x;
    ne += x > 0;
  }
  const double G = o.global_seqs ? *o.global_seqs : double(o.count_empty_rows ? B : ne);
  for (long i = 0; i < B; ++i) {
    switch (o.mode) {
      case grpo::agg_mode::token_mean: {
        double d = o.global_tokens ? *o.global_tokens : N;
        d = std::max(d, o.token_count_floor);
        s[i] = d > 0 ? 1.0 / d : 0.0;
        break;
      }
      case grpo::agg_mode::token_sum:
        s[i] = 1.0;
        break;
      case grpo::agg_mode::seq_mean_token_sum:
        s[i] = n[i] > 0 ? 1.0 / G : 0.0;
        break;
      case grpo::agg_mode::seq_mean_token_sum_norm: {
        const double L = o.norm_length ? *o.norm_length : double(T);
        s[i] = n[i] > 0 ? 1.0 / (L * G) : 0.0;
        break;
      }
      case grpo::agg_mode::seq_mean_token_mean: {
        const double d = std::max(n[i] + o.row_count_eps, o.row_count_floor);
        s[i] = n[i] > 0 ? 1.0 / (d * G) : 0.0;
        break;
      }
      case grpo::agg_mode::group_token_mean: {
        const long g = o.group_size, g0 = (i / g) * g;
        double Ng = 0;
        for (long k = g0; k < g0 + g; ++k) Ng += n[k];
        if (!o.group_tokens.empty()) Ng = o.group_tokens[i];
        const double ng = o.global_groups ? *o.global_groups : double(B / g);
        s[i] = Ng > 0 ? 1.0 / (Ng * ng) : 0.0;
        break;
      }
    }
    s[i] *= o.scale;
  }
  return s;
}

/// Objective value; lp_sg supplies every detached quantity (pass lp itself for the plain value).
inline double objective(const grpo::loss_options& o, const batch& b, const std::vector<double>& lp,
                        const std::vector<double>& lp_sg) {
  const auto& P = o.policy;
  const long B = b.B, T = b.T;
  auto old_at = [&](const std::vector<double>& cur, long i, long t) {
    return b.old.empty() ? lp_sg[i * T + t] : b.at(b.old, i, t);
    (void)cur;
  };
  auto base_m = [&](long i, long t) {
    if (!b.truncated.empty() && b.truncated[i]) return 0.0;
    return b.at(b.mask, i, t);
  };
  // Row means.
  std::vector<double> n0(B), mean_x(B), mean_x_sg(B), gap(B), seq_is(B, 1.0), vlw(B);
  for (long i = 0; i < B; ++i) {
    double n = 0, sx = 0, sxs = 0, sg = 0, sq = 0, sv = 0;
    for (long t = 0; t < T; ++t) {
      const double m = base_m(i, t);
      if (m == 0) continue;
      const double lo = old_at(lp, i, t);
      const double ls = b.sampler.empty() ? lo : b.at(b.sampler, i, t);
      n += m;
      sx += m * (lp[i * T + t] - lo);
      sxs += m * (lp_sg[i * T + t] - lo);
      sg += m * (ls - lp_sg[i * T + t]);
      sq += m * (lo - ls);
      sv += m * clampd(lp_sg[i * T + t] - lo, -20, 20);
    }
    n0[i] = n;
    const double nc = std::max(n, 1.0);
    mean_x[i] = sx / nc;
    mean_x_sg[i] = sxs / nc;
    gap[i] = sg / nc;
    if (o.tis.enabled && o.tis.sequence) {
      double q = sq;
      if (o.tis.log_clamp > 0) q = clampd(q, -o.tis.log_clamp, o.tis.log_clamp);
      seq_is[i] = std::exp(q);
    }
    vlw[i] = clampd(sv, std::log(1e-8), 20.0);
  }
  // Entropy threshold.
  const bool emask = o.top_entropy_quantile < 1.0;
  double thr = -std::numeric_limits<double>::infinity();
  if (emask) {
    std::vector<double> hs;
    for (long i = 0; i < B; ++i)
      for (long t = 0; t < T; ++t)
        if (base_m(i, t) != 0) hs.push_back(b.at(b.entropy, i, t));
    std::sort(hs.begin(), hs.end());
    if (o.entropy_threshold)
      thr = *o.entropy_threshold;
    else if (!hs.empty()) {
      const double pos = (1.0 - o.top_entropy_quantile) * double(hs.size() - 1);
      const long k = static_cast<long>(std::floor(pos));
      const long k1 = std::min<long>(k + 1, static_cast<long>(hs.size()) - 1);
      thr = hs[k] + (pos - double(k)) * (hs[k1] - hs[k]);
    }
  }
  const bool gm = P.kind == grpo::policy_loss_kind::gmpo;
  auto keep_opsm = [&](long i, long t) {
    return !o.opsm_threshold || b.at(b.adv, i, t) >= 0 || gap[i] <= *o.opsm_threshold;
  };
  auto keep_ent = [&](long i, long t) { return !emask || b.at(b.entropy, i, t) >= thr; };
  auto fin_m = [&](long i, long t) {
    double m = base_m(i, t);
    if ((o.opsm_in_denominator || gm) && !keep_opsm(i, t)) m = 0;
    if ((o.entropy_mask_in_denominator || gm) && !keep_ent(i, t)) m = 0;
    return m;
  };
  std::vector<double> nf(B, 0.0), ne(B, 0.0);
  for (long i = 0; i < B; ++i)
    for (long t = 0; t < T; ++t) {
      nf[i] += fin_m(i, t);
      ne[i] += keep_ent(i, t) ? fin_m(i, t) : 0.0;
    }
  const auto sp = row_scales(nf, T, o.agg);
  const auto sk = o.kl_agg ? row_scales(nf, T, *o.kl_agg) : sp;
  const auto se = row_scales(ne, T, o.entropy_agg);

  auto rho_at = [&](long i, long t) {
    if (!o.tis.enabled) return 1.0;
    const double lo = old_at(lp, i, t);
    const double ls = b.sampler.empty() ? lo : b.at(b.sampler, i, t);
    double w;
    if (o.tis.sequence)
      w = seq_is[i];
    else {
      double q = lo - ls;
      if (o.tis.log_clamp > 0) q = clampd(q, -o.tis.log_clamp, o.tis.log_clamp);
      w = std::exp(q);
    }
    const bool lo_ok = !(o.tis.c_min > 0 && w < o.tis.c_min),
               hi_ok = !(o.tis.c_max > 0 && w > o.tis.c_max);
    if (o.tis.mode == grpo::ops::tis_mode::truncate) {
      if (!lo_ok) return o.tis.c_min;
      if (!hi_ok) return o.tis.c_max;
      return w;
    }
    return (lo_ok && hi_ok) ? w : 0.0;
  };

  double total = 0;
  for (long i = 0; i < B; ++i) {
    if (gm) {
      double sx = 0, sA = 0, slw = 0;
      for (long t = 0; t < T; ++t) {
        const double m = fin_m(i, t);
        if (m == 0) continue;
        const double x = lp[i * T + t] - old_at(lp, i, t), A = b.at(b.adv, i, t);
        const double c = clampd(x, -P.eps_low, P.eps_high);
        double xt;
        if (A > 0)
          xt = std::min(x, c);
        else if (A < 0 || P.gmpo == grpo::ops::gmpo_sign::trl)
          xt = std::max(x, c);
        else
          xt = 0;
        sx += m * xt;
        sA += m * A;
        slw += m * std::log(rho_at(i, t) + 1e-10);
      }
      const double den = std::max(nf[i] + o.agg.row_count_eps, o.agg.row_count_floor);
      if (den > 0) {
        const double isw = o.tis.enabled ? std::exp(slw / den) : 1.0;
        const double G = o.agg.global_seqs ? *o.agg.global_seqs : double(B);
        total += o.agg.scale / G * (-(sA / den) * std::exp(sx / den) * isw);
      }
    }
    for (long t = 0; t < T; ++t) {
      const double m = fin_m(i, t);
      if (m == 0) continue;
      const double lpv = lp[i * T + t], lps = lp_sg[i * T + t], lo = old_at(lp, i, t);
      const double A = b.at(b.adv, i, t);
      double r, r_sg;
      switch (P.level) {
        case grpo::is_level::token:
          r = std::exp(clampd(lpv - lo, P.log_ratio_min, P.log_ratio_max));
          r_sg = std::exp(clampd(lps - lo, P.log_ratio_min, P.log_ratio_max));
          break;
        case grpo::is_level::sequence:
          r = std::exp(clampd(mean_x[i], P.log_ratio_min, P.log_ratio_max));
          r_sg = std::exp(clampd(mean_x_sg[i], P.log_ratio_min, P.log_ratio_max));
          break;
        default:  // sequence_token: sg[mean] + lp - sg[lp], clamped
          r = std::exp(clampd(mean_x_sg[i] + lpv - lps, P.log_ratio_min, P.log_ratio_max));
          r_sg = std::exp(clampd(mean_x_sg[i], P.log_ratio_min, P.log_ratio_max));
          break;
      }
      if (!gm) {
        double l = 0;
        switch (P.kind) {
          case grpo::policy_loss_kind::ppo_clip: {
            const double r1 = (P.delta > 0) ? std::min(r, P.delta) : r;
            l = std::max(-A * r1, -A * clampd(r, 1 - P.eps_low, 1 + P.eps_high));
            if (P.dual_clip_c > 0 && A < 0) l = std::min(l, -A * P.dual_clip_c);
            break;
          }
          case grpo::policy_loss_kind::cispo: {
            const double w = P.cispo == grpo::cispo_clip::trl_cap
                                 ? std::min(r_sg, P.eps_high)
                                 : clampd(r_sg, 1 - P.eps_low, 1 + P.eps_high);
            l = -w * A * lpv;
            break;
          }
          case grpo::policy_loss_kind::sapo: {
            const double tau = A > 0 ? P.sapo_tau_pos : P.sapo_tau_neg;
            l = -(4.0 / tau) / (1.0 + std::exp(-tau * (r - 1.0))) * A;
            break;
          }
          case grpo::policy_loss_kind::reinforce:
            l = -A * lpv;
            break;
          case grpo::policy_loss_kind::vespo: {
            const bool pos = A >= 0;
            const double k = pos ? P.vespo_k_pos : P.vespo_k_neg;
            const double lam = std::max(pos ? P.vespo_lambda_pos : P.vespo_lambda_neg, 1e-4);
            double phi = std::exp(lam + k * vlw[i] - lam * std::exp(vlw[i]));
            if (!std::isfinite(phi)) phi = 0;
            l = -phi * A * lpv;
            break;
          }
          default:
            break;
        }
        double c = P.kind == grpo::policy_loss_kind::vespo ? 1.0 : rho_at(i, t);
        if (!o.opsm_in_denominator && !keep_opsm(i, t)) c = 0;
        if (!o.entropy_mask_in_denominator && !keep_ent(i, t)) c = 0;
        total += sp[i] * m * c * l;
      }
      if (o.kl_coef != 0) {
        double k = kl_surrogate(o.kl, lpv, lps, b.at(b.ref, i, t));
        if (o.kl_bias_correction) k *= r;
        total += o.kl_coef * sk[i] * m * k;
      }
      if (o.entropy_coef != 0 && keep_ent(i, t))
        total -= o.entropy_coef * se[i] * m * b.at(b.entropy, i, t);
    }
  }
  return total;
}

/// Central finite difference of objective(lp, lp_sg) in lp(i, t), lp_sg fixed.
inline double fd(const grpo::loss_options& o, const batch& b, long k, double h = 1e-6) {
  std::vector<double> p = b.lp, m = b.lp;
  p[k] += h;
  m[k] -= h;
  return (objective(o, b, p, b.lp) - objective(o, b, m, b.lp)) / (2 * h);
}

}  // namespace grpo_ref
