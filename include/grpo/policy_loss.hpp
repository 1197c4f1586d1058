// SPDX-License-Identifier: Apache-2.0
/// @file policy_loss.hpp
/// @brief Policy-loss options (PPO clip / DAPO / dual clip / delta, GSPO and GSPO-token, CISPO in
///        both conventions, SAPO, GMPO, REINFORCE/GPG, VESPO) and the per-token dispatcher that
///        turns (ratio, advantage, log-prob) into a loss value and its derivatives.
///
/// The batch engine that adds masks, IS correction, KL, entropy bonus and aggregation is
/// grpo::compute_loss in <grpo/loss.hpp>; the scalar formulas live in <grpo/ops/policy_loss.hpp>.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/validate.hpp>  // expect_enum, expect_finite_option
#include <grpo/ops/policy_loss.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <string_view>

namespace grpo {

/// The surrogate applied to each token.
enum class policy_loss_kind : unsigned char {
  ppo_clip,   ///< -min(r A, clip(r) A) (+ dual clip, delta): GRPO, DAPO, GSPO, verl vanilla
  cispo,      ///< -sg[w(r)] A lp, w = min(r, cap) (TRL) or clip(r, 1-l, 1+h) (verl)
  sapo,       ///< -(4/tau) sigmoid(tau (r-1)) A
  gmpo,       ///< geometric mean of sign-clipped token ratios per sequence, -A_i w_i
  reinforce,  ///< -A lp (GPG, verl bypass reinforce); IS weights multiply it
  vespo,      ///< -sg[phi(w_i)] A lp, VESPO gamma weight of the sequence log-weight
};
/// Number of policy_loss_kind values (validate's range; loss/plan.hpp: every kind has traits).
inline constexpr unsigned policy_loss_kind_count = 6;

/// Which ratio a token sees.
enum class is_level : unsigned char {
  token,     ///< r_t = exp(lp_t - lo_t)
  sequence,  ///< TRL GSPO: s_i = exp(sum_t m (lp-lo) / max(n_i,1)), d s_i/d lp_t = s_i m_t/n_i
  sequence_token,  ///< verl gspo / TRL GSPO-token: value s_i, d/d lp_t of sg[mean] + lp - sg[lp]
};

/// CISPO weight convention.
enum class cispo_clip : unsigned char {
  trl_cap,    ///< w = min(r, eps_high): eps_high is an ABSOLUTE cap (TRL loss_type="cispo")
  verl_clip,  ///< w = clip(r, 1 - eps_low, 1 + eps_high) (verl loss_mode="cispo")
};

/// Options of the policy term.
struct policy_options {
  policy_loss_kind kind = policy_loss_kind::ppo_clip;
  is_level level = is_level::token;
  double eps_low = 0.2;      ///< clip_ratio_low / epsilon
  double eps_high = 0.2;     ///< clip_ratio_high / epsilon_high (TRL cispo: absolute cap)
  double dual_clip_c = 0.0;  ///< verl clip_ratio_c for A < 0; 0 = off (must be > 1 when on)
  double delta = 0.0;        ///< TRL delta (INTELLECT-2) upper cap of the first surrogate; 0 = off
  /// Clamp of the log ratio before exp (token log ratio, or the sequence mean for sequence levels):
  /// verl +-20 (vanilla/sapo/cispo), GSPO max 10; TRL none (+-inf).
  double log_ratio_min = -std::numeric_limits<double>::infinity();
  double log_ratio_max = std::numeric_limits<double>::infinity();
  cispo_clip cispo = cispo_clip::trl_cap;
  double sapo_tau_pos = 1.0;
  double sapo_tau_neg = 1.05;
  ops::gmpo_sign gmpo = ops::gmpo_sign::verl;
  double vespo_k_pos = 2.0, vespo_lambda_pos = 3.0;
  double vespo_k_neg = 3.0, vespo_lambda_neg = 2.0;
};

/// Parses TRL / verl loss names: "ppo", "vanilla", "grpo", "dapo", "bnpo", "dr_grpo", "luspo"
/// (-> ppo_clip), "gspo" (-> ppo_clip at sequence_token level), "cispo", "sapo", "geo_mean"/"gmpo",
/// "gpg"/"reinforce", "vespo". Throws [grpo.bad_option] otherwise.
inline policy_loss_kind policy_loss_kind_from_string(std::string_view s) {
  if (s == "ppo" || s == "vanilla" || s == "grpo" || s == "dapo" || s == "bnpo" || s == "dr_grpo" ||
      s == "luspo" || s == "gspo")
    return policy_loss_kind::ppo_clip;
  if (s == "cispo") return policy_loss_kind::cispo;
  if (s == "sapo") return policy_loss_kind::sapo;
  if (s == "geo_mean" || s == "gmpo") return policy_loss_kind::gmpo;
  if (s == "gpg" || s == "reinforce") return policy_loss_kind::reinforce;
  if (s == "vespo") return policy_loss_kind::vespo;
  GRPO_THROW(bad_option, "policy loss: unknown loss type '" + std::string(s) + "'");
}

/// Validates a policy_options value. Throws [grpo.bad_option] / [grpo.bad_value] naming the field.
/// Combinations the peers reject (or that silently change meaning) are refused here rather than
/// producing a different objective: e.g. verl asserts clip_ratio_c > 1, and GMPO / VESPO /
/// REINFORCE define their own sequence weighting so a sequence IS level would be ignored.
inline void validate(const policy_options& p) {
  detail::expect_enum(p.kind, policy_loss_kind_count, "policy_options.kind");
  detail::expect_enum(p.level, 3, "policy_options.level");
  detail::expect_enum(p.cispo, 2, "policy_options.cispo");
  detail::expect_enum(p.gmpo, 2, "policy_options.gmpo");
  detail::expect_finite_option(p.vespo_k_pos, "policy_options.vespo_k_pos");
  detail::expect_finite_option(p.vespo_k_neg, "policy_options.vespo_k_neg");
  detail::expect_finite_option(p.vespo_lambda_pos, "policy_options.vespo_lambda_pos");
  detail::expect_finite_option(p.vespo_lambda_neg, "policy_options.vespo_lambda_neg");
  GRPO_EXPECTS(std::isfinite(p.eps_low) && p.eps_low >= 0, bad_value,
               "policy_options.eps_low must be finite and >= 0");
  GRPO_EXPECTS(std::isfinite(p.eps_high) && p.eps_high >= 0, bad_value,
               "policy_options.eps_high must be finite and >= 0");
  GRPO_EXPECTS(std::isfinite(p.dual_clip_c) && (p.dual_clip_c == 0 || p.dual_clip_c > 1),
               bad_option,
               "policy_options.dual_clip_c must be 0 (off) or > 1 (verl asserts clip_ratio_c > 1)");
  GRPO_EXPECTS(std::isfinite(p.delta) && (p.delta == 0 || p.delta > 1), bad_option,
               "policy_options.delta must be 0 (off) or > 1");
  GRPO_EXPECTS(!std::isnan(p.log_ratio_min) && !std::isnan(p.log_ratio_max) &&
                   p.log_ratio_min < p.log_ratio_max,
               bad_option, "policy_options.log_ratio_min must be < log_ratio_max");
  GRPO_EXPECTS(p.sapo_tau_pos > 0 && p.sapo_tau_neg > 0 && std::isfinite(p.sapo_tau_pos) &&
                   std::isfinite(p.sapo_tau_neg),
               bad_value, "policy_options.sapo_tau_pos/neg must be finite and > 0");
  GRPO_EXPECTS(
      p.kind != policy_loss_kind::cispo || p.cispo != cispo_clip::trl_cap || p.eps_high > 0,
      bad_value, "policy_options.eps_high (CISPO cap) must be > 0");
  GRPO_EXPECTS(!(p.kind == policy_loss_kind::gmpo && p.level != is_level::token), bad_option,
               "policy_options: GMPO builds its own sequence ratio; level must be token");
  GRPO_EXPECTS(!(p.kind == policy_loss_kind::vespo && p.level != is_level::token), bad_option,
               "policy_options: VESPO builds its own sequence weight; level must be token");
  GRPO_EXPECTS(!(p.kind == policy_loss_kind::reinforce && p.level != is_level::token), bad_option,
               "policy_options: REINFORCE does not use a ratio; level must be token");
}

/// Per-token result of the dispatcher: value, d value / d r (for ratio-based surrogates) and the
/// direct d value / d lp (for detached-weight surrogates).
struct policy_token_terms {
  double value = 0.0;
  double d_ratio = 0.0;  ///< chain with d r / d lp (level dependent)
  double d_logp = 0.0;   ///< direct dependence on lp (CISPO, REINFORCE, VESPO)
  double weight = 1.0;   ///< detached weight used (CISPO w, VESPO phi), for metrics
};

/// Evaluates the token surrogate of `p` (all kinds except GMPO, which is per sequence) at ratio
/// value r, advantage A, log-prob lp; `phi` is the VESPO sequence weight (ignored otherwise).
/// Host and device callable: this is the ONE dispatch of the token surrogate, used by
/// compute_loss_into (loss.hpp) and by the CUDA kernels (<grpo/cuda/loss_terms.cuh>), which keep
/// a policy_options (trivially copyable) in their parameter block.
/// @pre p passed validate(). @post GMPO returns all-zero terms (its loss is per sequence).
GRPO_HOST_DEVICE inline policy_token_terms policy_token(const policy_options& p, double r, double A,
                                                        double lp, double phi = 1.0) noexcept {
  // Ratio-based surrogates report d l / d r (the caller chains the level-dependent d r / d lp);
  // detached-weight surrogates (-sg[w] A lp) report d l / d lp with w held constant, exactly what
  // autograd gives for TRL's clamp(...).detach() and verl's clipped_ratio.detach().
  policy_token_terms o;
  switch (p.kind) {
    case policy_loss_kind::ppo_clip: {
      const ops::ppo_clip_params<double> c{p.eps_low, p.eps_high, p.delta, p.dual_clip_c};
      o.value = ops::ppo_clip_loss(r, A, c);
      o.d_ratio = ops::ppo_clip_loss_grad(r, A, c);
      break;
    }
    case policy_loss_kind::cispo: {
      const double w = p.cispo == cispo_clip::trl_cap
                           ? ops::cispo_weight_cap(r, p.eps_high)
                           : ops::cispo_weight_clip(r, p.eps_low, p.eps_high);
      o.weight = w;
      o.value = ops::weighted_pg_loss(w, A, lp);
      o.d_logp = ops::weighted_pg_loss_grad(w, A, lp);
      break;
    }
    case policy_loss_kind::sapo:
      o.value = ops::sapo_loss(r, A, p.sapo_tau_pos, p.sapo_tau_neg);
      o.d_ratio = ops::sapo_loss_grad(r, A, p.sapo_tau_pos, p.sapo_tau_neg);
      break;
    case policy_loss_kind::reinforce:
      o.value = ops::weighted_pg_loss(1.0, A, lp);
      o.d_logp = ops::weighted_pg_loss_grad(1.0, A, lp);
      break;
    case policy_loss_kind::vespo:
      o.weight = phi;
      o.value = ops::weighted_pg_loss(phi, A, lp);
      o.d_logp = ops::weighted_pg_loss_grad(phi, A, lp);
      break;
    case policy_loss_kind::gmpo:
      break;  // per-sequence: handled by compute_loss
  }
  return o;
}

}  // namespace grpo
