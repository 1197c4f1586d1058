// SPDX-License-Identifier: Apache-2.0
/// @file presets.hpp
/// @brief loss_options that reproduce TRL GRPOTrainer (every loss_type, token / sequence IS level),
///        verl core_algos policy losses (vanilla, gspo, sapo, cispo, geo_mean) with agg_loss, and
///        OpenRLHF's PPO defaults; plus named presets.
///
/// Anchors: huggingface/trl @ f2cd577 (grpo_trainer.py _compute_loss), verl-project/verl @ 1dda039
/// (core_algos.py), OpenRLHF @ 3c3be62 (models/loss.py). docs/algorithms.md tabulates the
/// differences; tests/grpo/test_loss_conformance.cpp checks them against the peers' own outputs.
#pragma once

#include <grpo/aggregate.hpp>
#include <grpo/core/error.hpp>
#include <grpo/kl.hpp>
#include <grpo/loss.hpp>
#include <grpo/policy_loss.hpp>

#include <cmath>
#include <optional>
#include <string>
#include <string_view>

namespace grpo {

/// The subset of GRPOConfig / trainer state that changes TRL's loss numbers.
struct trl_args {
  std::string loss_type = "dapo";  ///< grpo, bnpo, dr_grpo, dapo, cispo, sapo, luspo, vespo
  double beta = 0.0;
  double epsilon = 0.2;
  std::optional<double> epsilon_high;               ///< None -> epsilon (cispo: absolute cap)
  std::optional<double> delta;                      ///< two-sided clip (INTELLECT-2)
  std::string importance_sampling_level = "token";  ///< token, sequence, sequence_token
  double max_completion_length = 512;
  double sapo_temperature_pos = 1.0, sapo_temperature_neg = 1.05;
  bool use_bias_correction_kl = false;
  std::optional<double> off_policy_mask_threshold;
  /// dapo/cispo/vespo normaliser: all-gathered valid tokens of the generation batch. Unset: the
  /// local token count of the batch (one process, one micro-batch).
  std::optional<double> num_items_in_batch;
  double num_processes = 1;
  double gradient_accumulation_steps = 1;
  /// Post-snapshot TRL (PR #6024): dapo/cispo/vespo normaliser x GA / steps_per_generation, exact
  /// when the generation batch spans more or fewer micro-steps than one accumulation window. Unset:
  /// the f2cd577 snapshot behaviour (no rescale).
  std::optional<double> steps_per_generation;
  double vespo_k_pos = 2.0, vespo_lambda_pos = 3.0, vespo_k_neg = 3.0, vespo_lambda_neg = 2.0;
  double top_entropy_quantile = 1.0;
  double entropy_coef = 0.0;
};

/// loss_options reproducing TRL GRPOTrainer._compute_loss for `a`.
/// @pre a.loss_type and a.importance_sampling_level are known names, else [grpo.bad_option].
inline loss_options from_trl(const trl_args& a) {
  loss_options o;
  auto& p = o.policy;
  p.kind = policy_loss_kind_from_string(a.loss_type);
  GRPO_EXPECTS(a.loss_type != "gspo" && a.loss_type != "vanilla" && a.loss_type != "ppo" &&
                   a.loss_type != "geo_mean" && a.loss_type != "gmpo" && a.loss_type != "gpg" &&
                   a.loss_type != "reinforce",
               bad_option, "trl_args.loss_type: '" + a.loss_type + "' is not a TRL loss_type");
  if (a.importance_sampling_level == "token")
    p.level = is_level::token;
  else if (a.importance_sampling_level == "sequence")
    p.level = is_level::sequence;
  else if (a.importance_sampling_level == "sequence_token")
    p.level = is_level::sequence_token;
  else
    GRPO_THROW(bad_option,
               "trl_args.importance_sampling_level: unknown '" + a.importance_sampling_level + "'");
  GRPO_EXPECTS(a.gradient_accumulation_steps > 0 && a.num_processes > 0, bad_value,
               "trl_args: gradient_accumulation_steps and num_processes must be > 0");
  p.eps_low = a.epsilon;
  p.eps_high = a.epsilon_high.value_or(a.epsilon);
  p.delta = a.delta.value_or(0.0);
  p.cispo = cispo_clip::trl_cap;
  p.sapo_tau_pos = a.sapo_temperature_pos;
  p.sapo_tau_neg = a.sapo_temperature_neg;
  p.gmpo = ops::gmpo_sign::trl;
  p.vespo_k_pos = a.vespo_k_pos;
  p.vespo_lambda_pos = a.vespo_lambda_pos;
  p.vespo_k_neg = a.vespo_k_neg;
  p.vespo_lambda_neg = a.vespo_lambda_neg;
  // TRL: no log-ratio clamp (VESPO's own +-20 lives in its weight).
  // TRL divides micro-batch-local losses by the accumulation steps itself (HF's own GA scaling is
  // off); dapo/cispo/vespo instead divide by the generation-batch token count per process, which
  // already spans the accumulation window. Snapshot semantics: no GA/steps_per_generation rescale
  // (TRL PR #6024 landed after f2cd577), so set num_items_in_batch accordingly when they differ.
  const double inv_ga = 1.0 / a.gradient_accumulation_steps;
  auto& g = o.agg;
  const std::string& lt = a.loss_type;
  if (lt == "grpo" || lt == "sapo") {  // mean_i(sum_t m l / max(n_i, 1)) / GA
    g.mode = agg_mode::seq_mean_token_mean;
    g.row_count_floor = 1.0;
    g.count_empty_rows = true;
    g.scale = inv_ga;
  } else if (lt == "bnpo") {  // sum m l / max(sum m, 1) / GA
    g.mode = agg_mode::token_mean;
    g.token_count_floor = 1.0;
    g.scale = inv_ga;
  } else if (lt == "dr_grpo") {  // sum m l / (B * max_completion_length) / GA
    g.mode = agg_mode::seq_mean_token_sum_norm;
    g.norm_length = a.max_completion_length;
    g.count_empty_rows = true;
    g.scale = inv_ga;
  } else if (lt == "dapo" || lt == "cispo" || lt == "vespo") {  // sum m l / (max(N_gen,1) / P)
    g.mode = agg_mode::token_mean;
    g.token_count_floor = 1.0;
    if (a.num_items_in_batch) {
      const double n = *a.num_items_in_batch < 1.0 ? 1.0 : *a.num_items_in_batch;
      g.global_tokens = n / a.num_processes;
      if (a.steps_per_generation) {
        GRPO_EXPECTS(*a.steps_per_generation > 0, bad_value,
                     "trl_args.steps_per_generation must be > 0");
        *g.global_tokens *= a.gradient_accumulation_steps / *a.steps_per_generation;
      }
    }
  } else if (lt == "luspo") {  // mean_i(l_i n_i) / GA
    g.mode = agg_mode::seq_mean_token_sum;
    g.count_empty_rows = true;
    g.scale = inv_ga;
  } else {
    GRPO_THROW(bad_option, "trl_args.loss_type: unknown '" + lt + "'");
  }
  // KL: TRL only has k3 (exp(lr - lp) - (lr - lp) - 1), unclamped, added per token AFTER the
  // policy multipliers, so it shares the policy denominator but not rho / OPSM / entropy mask.
  o.kl_coef = a.beta;
  o.kl = kl_params{};  // k3, no clamps
  o.kl.estimator = kl_estimator::k3;
  o.kl_bias_correction = a.use_bias_correction_kl;
  // TRL's OPSM and top-entropy masks multiply the per-token loss only: denominators keep those
  // tokens (documented difference from our contract, which drops them).
  o.opsm_threshold = a.off_policy_mask_threshold;
  o.opsm_in_denominator = false;
  o.top_entropy_quantile = a.top_entropy_quantile;
  o.entropy_mask_in_denominator = false;
  o.entropy_coef = a.entropy_coef;
  o.entropy_agg.mode = agg_mode::token_mean;
  o.entropy_agg.token_count_floor = 1.0;
  o.entropy_agg.scale = inv_ga;
  return o;
}

/// The subset of verl's actor config and global batch info that changes its loss numbers.
struct verl_args {
  std::string loss_mode = "vanilla";  ///< vanilla, gspo, sapo, cispo, geo_mean, gpg
  std::string loss_agg_mode = "token-mean";
  double clip_ratio = 0.2;
  std::optional<double> clip_ratio_low, clip_ratio_high;  ///< None -> clip_ratio
  double clip_ratio_c = 3.0;
  double tau_pos = 1.0, tau_neg = 1.05;
  bool use_kl_loss = false;
  double kl_loss_coef = 0.001;
  std::string kl_loss_type = "low_var_kl";
  double entropy_coeff = 0.0;
  // global_batch_info
  double dp_size = 1;
  std::optional<double> batch_num_tokens, global_batch_size, loss_scale_factor;
};

/// agg_options of verl's agg_loss(loss_agg_mode, dp_size, batch_num_tokens, global_batch_size,
/// loss_scale_factor). Without global info verl falls back to local counts (and raises for dp>1).
/// @pre mode is a verl loss_agg_mode; dp_size > 1 comes with the matching global count, else
///      [grpo.bad_option]. @post scale == dp_size, row_count_eps == 1e-8.
inline agg_options verl_agg(std::string_view mode, const verl_args& a) {
  agg_options g;
  g.mode = agg_mode_from_string(mode);
  g.row_count_eps = 1e-8;
  g.scale = a.dp_size;
  g.global_tokens = a.batch_num_tokens;
  g.global_seqs = a.global_batch_size;
  g.norm_length = a.loss_scale_factor;
  GRPO_EXPECTS(a.dp_size == 1 || g.mode == agg_mode::token_sum ||
                   (g.mode == agg_mode::token_mean ? a.batch_num_tokens.has_value()
                                                   : a.global_batch_size.has_value()),
               bad_option,
               "verl_args: dp_size > 1 needs batch_num_tokens (token-mean) or global_batch_size "
               "(seq-mean-*)");
  return g;
}

/// loss_options reproducing verl compute_policy_loss_<loss_mode> followed by agg_loss, plus the
/// optional KL loss (use_kl_loss) and entropy bonus.
/// @pre a.loss_mode in {vanilla, gspo, sapo, cispo, geo_mean, gpg}, else [grpo.bad_option].
/// @post compute_loss(from_verl(a), ...) reproduces verl's (loss, pg_losses, grad) to 1e-10.
inline loss_options from_verl(const verl_args& a) {
  loss_options o;
  auto& p = o.policy;
  p.eps_low = a.clip_ratio_low.value_or(a.clip_ratio);
  p.eps_high = a.clip_ratio_high.value_or(a.clip_ratio);
  p.sapo_tau_pos = a.tau_pos;
  p.sapo_tau_neg = a.tau_neg;
  p.cispo = cispo_clip::verl_clip;
  p.gmpo = ops::gmpo_sign::verl;
  // verl passes every loss through agg_loss(loss_agg_mode, **global_batch_info) except gspo and
  // sapo (hard-coded seq-mean-token-mean) and geo_mean (torch.mean over rows).
  std::string agg_mode_name = a.loss_agg_mode;
  const std::string& m = a.loss_mode;
  if (m == "vanilla") {
    p.kind = policy_loss_kind::ppo_clip;
    p.dual_clip_c = a.clip_ratio_c;
    p.log_ratio_min = -20.0;
    p.log_ratio_max = 20.0;
  } else if (m == "gspo") {  // sg[mean] + lp - sg[lp], clamp max 10; forced seq-mean-token-mean
    p.kind = policy_loss_kind::ppo_clip;
    p.level = is_level::sequence_token;
    p.log_ratio_max = 10.0;
    agg_mode_name = "seq-mean-token-mean";
  } else if (m == "sapo") {
    p.kind = policy_loss_kind::sapo;
    p.log_ratio_min = -20.0;
    p.log_ratio_max = 20.0;
    agg_mode_name = "seq-mean-token-mean";
  } else if (m == "cispo") {
    p.kind = policy_loss_kind::cispo;
    p.log_ratio_min = -20.0;
    p.log_ratio_max = 20.0;
  } else if (m == "geo_mean") {
    p.kind = policy_loss_kind::gmpo;
  } else if (m == "gpg") {
    p.kind = policy_loss_kind::reinforce;
  } else {
    GRPO_THROW(bad_option, "verl_args.loss_mode: unsupported '" + m + "'");
  }
  o.agg = verl_agg(agg_mode_name, a);
  if (m == "geo_mean") {  // torch.mean over all B rows, global batch info ignored
    o.agg = agg_options{};
    o.agg.mode = agg_mode::seq_mean_token_mean;
    o.agg.row_count_eps = 1e-8;
    o.agg.count_empty_rows = true;
  }
  // verl's KL loss: kl_penalty(kl_loss_type) with the low_var_kl clamps (inner 20, outer 10),
  // aggregated separately with loss_agg_mode (even when the policy mode is forced), times coef.
  if (a.use_kl_loss) {
    o.kl_coef = a.kl_loss_coef;
    o.kl = kl_params_from_string(a.kl_loss_type, true);
    o.kl_agg = verl_agg(a.loss_agg_mode, a);
  }
  o.entropy_coef = a.entropy_coeff;
  o.entropy_agg = verl_agg(a.loss_agg_mode, a);
  return o;
}

/// OpenRLHF actor defaults (policy_loss_type "ppo"): eps 0.2, log ratio clamp +-20, no dual clip,
/// token-level mean; KL goes into the reward by default (k1, init_coef 0.01: see kl_for_reward with
/// openrlhf_kl_params), so the in-loss KL is off.
inline loss_options openrlhf_defaults() {
  loss_options o;
  o.policy.kind = policy_loss_kind::ppo_clip;
  o.policy.log_ratio_min = -20.0;
  o.policy.log_ratio_max = 20.0;
  o.agg.mode = agg_mode::token_mean;
  o.kl = openrlhf_kl_params(kl_estimator::k1);
  return o;
}

/// Named presets: "trl_grpo", "trl_bnpo", "trl_dr_grpo", "trl_dapo", "trl_cispo", "trl_sapo",
/// "trl_luspo", "trl_vespo", "trl_gspo" (loss_type grpo + importance_sampling_level sequence),
/// "trl_gmpo" (TRL experimental GMPO trainer; not covered by the peer conformance file),
/// "verl_vanilla", "verl_gspo", "verl_sapo", "verl_cispo", "verl_geo_mean", "openrlhf".
/// TRL presets use each loss_type's documented defaults (ScaleRL's cap 5.0 for cispo, luspo at
/// sequence level); throws [grpo.bad_option] for an unknown name.
/// @pre none. @post the result passes validate(loss_options).
inline loss_options preset(std::string_view name) {
  // TRL experimental GMPO trainer (trl.experimental.gmpo): log-space clip e^(+-0.4) (paper), sign
  // branch A > 0 ? min : max, w_i = exp(sum m x~ / max(n_i, 1)), loss = mean over B rows / GA; its
  // KL (beta) is the per-sequence mean of k3 added to the sequence loss, i.e. seq-mean-token-mean.
  if (name == "trl_gmpo") {
    loss_options o = from_trl(trl_args{});
    o.policy.kind = policy_loss_kind::gmpo;
    o.policy.gmpo = ops::gmpo_sign::trl;
    o.policy.eps_low = o.policy.eps_high = 0.4;
    o.agg = agg_options{};
    o.agg.mode = agg_mode::seq_mean_token_mean;
    o.agg.row_count_floor = 1.0;
    o.agg.count_empty_rows = true;
    o.kl_agg = o.agg;
    return o;
  }
  // TRL presets keep GRPOConfig defaults except where a loss_type documents its own: luspo needs
  // importance_sampling_level="sequence"; ScaleRL recommends epsilon_high = 5 for cispo.
  if (name.substr(0, 4) == "trl_") {
    trl_args a;
    a.loss_type = std::string(name.substr(4));
    if (a.loss_type == "gspo") {
      a.loss_type = "grpo";
      a.importance_sampling_level = "sequence";
    }
    if (a.loss_type == "luspo") a.importance_sampling_level = "sequence";
    if (a.loss_type == "cispo") a.epsilon_high = 5.0;
    return from_trl(a);
  }
  if (name.substr(0, 5) == "verl_") {
    verl_args a;
    a.loss_mode = std::string(name.substr(5));
    return from_verl(a);
  }
  if (name == "openrlhf") return openrlhf_defaults();
  GRPO_THROW(bad_option, "preset: unknown name '" + std::string(name) + "'");
}

}  // namespace grpo
