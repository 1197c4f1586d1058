// SPDX-License-Identifier: Apache-2.0
/// @file options.hpp
/// @brief Loss options of grpo._C (and grpo._cuda) from Python dicts: TRL GRPOConfig names, verl
///        actor names, OpenRLHF flag names, presets and overrides. Unknown keys and wrong types
///        raise [grpo.bad_option]; the result passes grpo::validate.
#pragma once

#include "common.hpp"

#include <grpo/kl.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <array>
#include <cmath>
#include <string>
#include <vector>

namespace grpo::py {

inline std::array<double, 2> pair_of(nb::handle v, const std::string& key) {
  GRPO_EXPECTS(nb::isinstance<nb::list>(v) || nb::isinstance<nb::tuple>(v), bad_option,
               "option '" + key + "': expected a pair of numbers");
  std::vector<double> x;
  for (nb::handle e : v) x.push_back(num(e, key));
  GRPO_EXPECTS(x.size() == 2, bad_option, "option '" + key + "': expected a pair of numbers");
  return {x[0], x[1]};
}

/// The keys are OpenRLHF's command-line flags without the dashes (openrlhf/cli/train_ppo_ray.py at
/// the snapshot presets.hpp cites), plus PolicyLoss's token_level_loss, the loss_batch_info counts
/// and emulate_float32. None leaves an optional unset.
inline openrlhf_args openrlhf_from_dict(const nb::dict& d) {
  openrlhf_args a;
  auto& ac = a.actor;
  auto& ad = a.algo.advantage;
  auto& kl = a.algo.kl;
  for (auto [k, v] : d) {
    const std::string key = nb::cast<std::string>(k);
    if (key == "actor.policy_loss_type") ac.policy_loss_type = str(v, key);
    else if (key == "actor.eps_clip") ac.eps_clip = num(v, key);
    else if (key == "actor.eps_clip_low_high") {
      if (v.is_none()) ac.eps_clip_low_high.reset();
      else ac.eps_clip_low_high = pair_of(v, key);
    } else if (key == "actor.dual_clip") ac.dual_clip = opt_num(v, key);
    else if (key == "actor.entropy_coef") ac.entropy_coef = opt_num(v, key);
    else if (key == "actor.token_level_loss") ac.token_level_loss = flag(v, key);
    else if (key == "algo.advantage.estimator") ad.estimator = str(v, key);
    else if (key == "algo.advantage.gamma") ad.gamma = num(v, key);
    else if (key == "algo.advantage.lambd") ad.lambd = num(v, key);
    else if (key == "algo.advantage.no_std_norm") ad.no_std_norm = flag(v, key);
    else if (key == "algo.advantage.is_correction_enable") ad.is_correction_enable = flag(v, key);
    else if (key == "algo.advantage.is_correction_threshold")
      ad.is_correction_threshold = pair_of(v, key);
    else if (key == "algo.advantage.is_correction_type") ad.is_correction_type = str(v, key);
    else if (key == "algo.kl.init_coef") kl.init_coef = num(v, key);
    else if (key == "algo.kl.use_loss") kl.use_loss = flag(v, key);
    else if (key == "algo.kl.estimator") kl.estimator = str(v, key);
    else if (key == "reward.clip_range") {
      if (v.is_none()) a.reward.clip_range.reset();
      else a.reward.clip_range = pair_of(v, key);
    } else if (key == "rollout.n_samples_per_prompt") {
      const double n = num(v, key);
      GRPO_EXPECTS(n >= 1 && n == std::floor(n), bad_option,
                   "rollout.n_samples_per_prompt must be an integer >= 1");
      a.rollout.n_samples_per_prompt = static_cast<index_t>(n);
    } else if (key == "dp_size") a.dp_size = num(v, key);
    else if (key == "batch_num_tokens") a.batch_num_tokens = opt_num(v, key);
    else if (key == "global_batch_size") a.global_batch_size = opt_num(v, key);
    else if (key == "emulate_float32") a.emulate_float32 = flag(v, key);
    else unknown_key("openrlhf", key);
  }
  return a;
}

/// trl_args from a dict whose keys are GRPOConfig field names (unknown key: [grpo.bad_option]).
inline trl_args trl_from_dict(const nb::dict& d) {
  trl_args a;
  for (auto [k, v] : d) {
    const std::string key = nb::cast<std::string>(k);
    if (key == "loss_type") a.loss_type = str(v, key);
    else if (key == "beta") a.beta = num(v, key);
    else if (key == "epsilon") a.epsilon = num(v, key);
    else if (key == "epsilon_high") a.epsilon_high = opt_num(v, key);
    else if (key == "delta") a.delta = opt_num(v, key);
    else if (key == "importance_sampling_level") a.importance_sampling_level = str(v, key);
    else if (key == "max_completion_length") a.max_completion_length = num(v, key);
    else if (key == "sapo_temperature_pos") a.sapo_temperature_pos = num(v, key);
    else if (key == "sapo_temperature_neg") a.sapo_temperature_neg = num(v, key);
    else if (key == "use_bias_correction_kl") a.use_bias_correction_kl = flag(v, key);
    else if (key == "off_policy_mask_threshold") a.off_policy_mask_threshold = opt_num(v, key);
    else if (key == "num_items_in_batch") a.num_items_in_batch = opt_num(v, key);
    else if (key == "num_processes") a.num_processes = num(v, key);
    else if (key == "gradient_accumulation_steps") a.gradient_accumulation_steps = num(v, key);
    else if (key == "steps_per_generation") a.steps_per_generation = opt_num(v, key);
    else if (key == "vespo_k_pos") a.vespo_k_pos = num(v, key);
    else if (key == "vespo_lambda_pos") a.vespo_lambda_pos = num(v, key);
    else if (key == "vespo_k_neg") a.vespo_k_neg = num(v, key);
    else if (key == "vespo_lambda_neg") a.vespo_lambda_neg = num(v, key);
    else if (key == "top_entropy_quantile") a.top_entropy_quantile = num(v, key);
    else if (key == "entropy_coef") a.entropy_coef = num(v, key);
    else unknown_key("trl", key);
  }
  return a;
}

/// verl_args from a dict whose keys are verl actor config names.
inline verl_args verl_from_dict(const nb::dict& d) {
  verl_args a;
  for (auto [k, v] : d) {
    const std::string key = nb::cast<std::string>(k);
    if (key == "loss_mode" || key == "policy_loss") a.loss_mode = str(v, key);
    else if (key == "loss_agg_mode") a.loss_agg_mode = str(v, key);
    else if (key == "clip_ratio") a.clip_ratio = num(v, key);
    else if (key == "clip_ratio_low") a.clip_ratio_low = opt_num(v, key);
    else if (key == "clip_ratio_high") a.clip_ratio_high = opt_num(v, key);
    else if (key == "clip_ratio_c") a.clip_ratio_c = num(v, key);
    else if (key == "tau_pos") a.tau_pos = num(v, key);
    else if (key == "tau_neg") a.tau_neg = num(v, key);
    else if (key == "use_kl_loss") a.use_kl_loss = flag(v, key);
    else if (key == "kl_loss_coef") a.kl_loss_coef = num(v, key);
    else if (key == "kl_loss_type") a.kl_loss_type = str(v, key);
    else if (key == "entropy_coeff") a.entropy_coeff = num(v, key);
    else if (key == "dp_size") a.dp_size = num(v, key);
    else if (key == "batch_num_tokens") a.batch_num_tokens = opt_num(v, key);
    else if (key == "global_batch_size") a.global_batch_size = opt_num(v, key);
    else if (key == "loss_scale_factor") a.loss_scale_factor = opt_num(v, key);
    else unknown_key("verl", key);
  }
  return a;
}

/// Overrides applied on top of a preset (global denominators for micro-batching, coefficients).
inline void apply_overrides(loss_options& o, const nb::dict& d) {
  for (auto [k, v] : d) {
    const std::string key = nb::cast<std::string>(k);
    if (key == "kl_coef") o.kl_coef = num(v, key);
    else if (key == "kl_estimator") o.kl = kl_params_from_string(str(v, key), false);
    else if (key == "entropy_coef") o.entropy_coef = num(v, key);
    else if (key == "top_entropy_quantile") o.top_entropy_quantile = num(v, key);
    else if (key == "opsm_threshold") o.opsm_threshold = opt_num(v, key);
    else if (key == "loss_agg_mode") o.agg.mode = agg_mode_from_string(str(v, key));
    else if (key == "global_tokens") o.agg.global_tokens = opt_num(v, key);
    else if (key == "global_seqs") o.agg.global_seqs = opt_num(v, key);
    else if (key == "agg_scale") o.agg.scale = num(v, key);
    else if (key == "epsilon_low") o.policy.eps_low = num(v, key);
    else if (key == "epsilon_high") o.policy.eps_high = num(v, key);
    else if (key == "dual_clip_c") o.policy.dual_clip_c = num(v, key);
    else unknown_key("overrides", key);
  }
}

/// The loss options of `kind` in {"preset", "trl", "verl", "openrlhf"}; validated.
inline loss_options make_options(const std::string& kind, const std::string& name,
                                 const nb::dict& args, const nb::dict& overrides) {
  loss_options o;
  if (kind == "preset") o = preset(name);
  else if (kind == "trl") o = from_trl(trl_from_dict(args));
  else if (kind == "verl") o = from_verl(verl_from_dict(args));
  else if (kind == "openrlhf") o = from_openrlhf(openrlhf_from_dict(args));
  else GRPO_THROW(bad_option, "loss options: unknown kind '" + kind + "'");
  apply_overrides(o, overrides);
  validate(o);
  return o;
}

}  // namespace grpo::py
