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
#include <grpo/loss/options.hpp>
#include <grpo/policy_loss.hpp>

#include <array>
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

/// verl's logged policy metrics (actor/pg_clipfrac, actor/pg_clipfrac_lower, actor/ppo_kl).
struct verl_policy_metrics {
  double pg_clipfrac = 0.0;
  double pg_clipfrac_lower = 0.0;
  double ppo_kl = 0.0;
};

/// verl's metrics from our accumulators, exactly as verl computes them: masked_mean(x, mask) =
/// sum(x m) / (sum(m) + 1e-8) (verl_F.masked_mean's epsilon, which our plain means omit), over
/// the indicators verl logs for a.loss_mode: vanilla region / dual-clip (A < 0 and r > c);
/// cispo the weight clip (lower: verl's constant 0); geo_mean high / low band exits; gspo region
/// (lower: constant 0); sapo verl's constants 0 / 0. ppo_kl is the mean of the clamped lo - lp
/// (our approx_kl). gpg logs no metrics in verl: all three are 0 here.
/// @pre m comes from compute_loss(from_verl(a), ...) on one micro-batch (verl logs per call).
inline verl_policy_metrics verl_metrics(const verl_args& a, const loss_metrics& m) {
  auto mm = [](const stat_accumulator& s) { return s.sum / (s.weight + 1e-8); };
  const std::string& k = a.loss_mode;
  verl_policy_metrics r;
  r.ppo_kl = mm(m.approx_kl);
  if (k == "cispo") {
    r.pg_clipfrac = mm(m.weight_clip);
  } else if (k == "geo_mean") {
    r.pg_clipfrac = mm(m.clip_high);
    r.pg_clipfrac_lower = mm(m.clip_low);
  } else if (k == "gspo") {
    r.pg_clipfrac = mm(m.clip_region);
  } else if (k == "sapo") {
    // verl: torch.tensor(0.0) for both (SAPO's gate does not clip)
  } else if (k == "gpg") {
    r.ppo_kl = 0.0;  // verl returns an empty metric dict
  } else if (k == "vanilla") {
    r.pg_clipfrac = mm(m.clip_region);
    r.pg_clipfrac_lower = mm(m.clip_dual);
  } else {
    GRPO_THROW(bad_option, "verl_metrics: unsupported loss_mode '" + k + "'");
  }
  return r;
}

/// OpenRLHF's configuration, with its own argument names: a field `x.y` here is the command-line
/// flag `--x.y` of openrlhf/cli/train_ppo_ray.py @ 3c3be62 (defaults copied from there), plus
/// PolicyLoss's token_level_loss and the loss_batch_info the trainer passes to aggregate_loss.
struct openrlhf_args {
  struct actor_args {
    std::string policy_loss_type = "ppo";            ///< ppo | gspo
    double eps_clip = 0.2;                           ///< symmetric clip range
    std::optional<std::array<double, 2>> eps_clip_low_high;  ///< (low, high); None: eps_clip
    std::optional<double> dual_clip;                 ///< dual-clip c (> 1); None: off
    std::optional<double> entropy_coef;              ///< None: no entropy term
    bool token_level_loss = true;  ///< PolicyLoss argument (gspo forces per-sample)
  } actor;
  struct algo_args {
    struct advantage_args {
      std::string estimator = "gae";  ///< gae, reinforce, rloo, reinforce_baseline, group_norm,
                                      ///< dr_grpo
      double gamma = 1.0;
      double lambd = 1.0;
      bool no_std_norm = false;  ///< whitening keeps the centring only
      bool is_correction_enable = false;
      std::array<double, 2> is_correction_threshold{0.5, 5.0};
      std::string is_correction_type = "tis";  ///< tis, icepop, seq-mask-tis
    } advantage;
    struct kl_args {
      double init_coef = 0.01;
      bool use_loss = false;            ///< KL as a loss (else in the reward)
      std::string estimator = "k1";     ///< k1, k2, k3
    } kl;
  } algo;
  struct reward_args {
    std::optional<std::array<double, 2>> clip_range = std::array<double, 2>{-10.0, 10.0};
  } reward;
  struct rollout_args {
    index_t n_samples_per_prompt = 1;
  } rollout;
  /// loss_batch_info (aggregate_loss): DP ranks and the global counts of the optimizer step; unset
  /// counts: aggregate_loss's local masked means (dp_size then ignored, as OpenRLHF).
  double dp_size = 1;
  std::optional<double> batch_num_tokens, global_batch_size;
  /// Reproduce OpenRLHF's float32 casts (compute_approx_kl, the clip_ratio metric, whitening and
  /// the KL-in-reward path of <grpo/openrlhf.hpp>); false: the exact float64 formula.
  bool emulate_float32 = true;
};

/// OpenRLHF aggregate_loss(token_level_loss, dp_size, batch_num_tokens, global_batch_size) as
/// agg_options: token mode sum m l / N x dp (local: masked_mean, no floor); sample mode sum of
/// row means sum m l / (n_i + 1e-8) over non-empty rows / G x dp (local: mean over non-empty rows).
inline agg_options openrlhf_agg(bool token_level_loss, const openrlhf_args& a) {
  GRPO_EXPECTS(std::isfinite(a.dp_size) && a.dp_size >= 1, bad_value,
               "openrlhf_args.dp_size must be >= 1");
  agg_options g;
  if (token_level_loss) {
    g.mode = agg_mode::token_mean;
    if (a.batch_num_tokens) {
      g.global_tokens = a.batch_num_tokens;
      g.scale = a.dp_size;
    }
  } else {
    g.mode = agg_mode::seq_mean_token_mean;
    g.row_count_eps = 1e-8;
    if (a.global_batch_size) {
      g.global_seqs = a.global_batch_size;
      g.scale = a.dp_size;
    }
  }
  return g;
}

/// loss_options reproducing OpenRLHF's PolicyLoss.forward + aggregate_loss (+ the actor's KL loss
/// and entropy term). ppo: r = exp(clamp(lp - lo, +-20)); gspo: r_i = exp(sum m (lp - base) /
/// max(n_i, 1)), no clamp, per-sample aggregation, base = the sampler log-probs when IS correction
/// is on (ratio_base_sampler; no IS weight); dual clip for A < 0. IS correction (ppo): tis =
/// clamp(rho, lo, hi), icepop = rho 1[lo <= rho <= hi], seq-mask-tis = row filter on the geometric
/// mean, unbounded rho (tis_options::seq_mask). KL: in the loss with use_loss (k1/k2/k3 clamped to
/// +-10, token-level aggregation even for gspo, coefficient init_coef; none when init_coef <= 0,
/// as OpenRLHF's zero KL; in float32 as OpenRLHF with emulate_float32: kl_openrlhf_float32),
/// otherwise off here and put into the reward by compute_openrlhf_advantages
/// (<grpo/openrlhf.hpp>). metrics.approx_kl is OpenRLHF's ppo_kl (approx_kl_unclamped).
/// @pre names as OpenRLHF's argparse choices, else [grpo.bad_option].
/// @post compute_loss(from_openrlhf(a), ...) reproduces PolicyLoss's loss, per-token loss (valid
///       tokens) and gradient to 1e-10 (tests/grpo/test_openrlhf_conformance.cpp).
inline loss_options from_openrlhf(const openrlhf_args& a) {
  loss_options o;
  auto& p = o.policy;
  p.kind = policy_loss_kind::ppo_clip;
  const auto lh = a.actor.eps_clip_low_high.value_or(
      std::array<double, 2>{a.actor.eps_clip, a.actor.eps_clip});
  p.eps_low = lh[0];
  p.eps_high = lh[1];
  if (a.actor.dual_clip) {
    GRPO_EXPECTS(*a.actor.dual_clip > 1.0, bad_option,
                 "openrlhf_args.actor.dual_clip must be > 1 (OpenRLHF asserts it)");
    p.dual_clip_c = *a.actor.dual_clip;
  }
  const std::string& t = a.actor.policy_loss_type;
  const auto& adv = a.algo.advantage;
  bool token_level = a.actor.token_level_loss;
  if (t == "ppo") {
    p.log_ratio_min = -20.0;
    p.log_ratio_max = 20.0;
  } else if (t == "gspo") {
    p.level = is_level::sequence;
    token_level = false;  // GSPO forces the per-sample loss
  } else {
    GRPO_THROW(bad_option, "openrlhf_args.actor.policy_loss_type: unknown '" + t + "'");
  }
  const std::string& ct = adv.is_correction_type;
  GRPO_EXPECTS(ct == "tis" || ct == "icepop" || ct == "seq-mask-tis", bad_option,
               "openrlhf_args.algo.advantage.is_correction_type: unknown '" + ct + "'");
  if (adv.is_correction_enable) {
    if (t == "gspo") {
      o.ratio_base_sampler = true;
    } else {
      o.tis.enabled = true;
      o.tis.c_min = adv.is_correction_threshold[0];
      o.tis.c_max = adv.is_correction_threshold[1];
      o.tis.mode = ct == "icepop" ? ops::tis_mode::mask : ops::tis_mode::truncate;
      o.tis.seq_mask = ct == "seq-mask-tis";
    }
  }
  o.agg = openrlhf_agg(token_level, a);
  o.kl = openrlhf_kl_params(kl_params_from_string(a.algo.kl.estimator, false).estimator);
  GRPO_EXPECTS(a.algo.kl.estimator == "k1" || a.algo.kl.estimator == "k2" ||
                   a.algo.kl.estimator == "k3",
               bad_option, "openrlhf_args.algo.kl.estimator must be k1, k2 or k3");
  if (a.algo.kl.use_loss && a.algo.kl.init_coef > 0) {  // OpenRLHF: zero KL when init_coef <= 0
    o.kl_coef = a.algo.kl.init_coef;
    o.kl_agg = openrlhf_agg(true, a);
    o.kl_openrlhf_float32 = a.emulate_float32;  // compute_approx_kl's `.float()`
  }
  o.approx_kl_unclamped = true;  // OpenRLHF ppo_kl: masked_mean(-log_ratio), before the clamp
  if (a.actor.entropy_coef) {
    o.entropy_coef = *a.actor.entropy_coef;
    o.entropy_agg = openrlhf_agg(true, a);
  }
  return o;
}

/// OpenRLHF actor defaults (policy_loss_type "ppo"): eps 0.2, log ratio clamp +-20, no dual clip,
/// token-level mean; KL goes into the reward by default (k1, init_coef 0.01: see
/// compute_openrlhf_advantages), so the in-loss KL is off. Same as from_openrlhf(openrlhf_args{}).
inline loss_options openrlhf_defaults() { return from_openrlhf(openrlhf_args{}); }

/// The metrics PolicyLoss.forward returns.
struct openrlhf_policy_metrics {
  double clip_ratio = 0.0;  ///< masked_mean(surr2 < surr1) (float32 when emulated)
  double ppo_kl = 0.0;      ///< masked_mean(lo - lp), the UNCLAMPED log ratio (ours: clamped)
  std::optional<double> vllm_kl;  ///< masked_mean(ls - lo) (ppo with IS correction only)
};

/// OpenRLHF's metrics of one PolicyLoss.forward call on `in` (the batch given to compute_loss with
/// from_openrlhf(a); sampler_logp = rollout_log_probs). surr1 = r A, surr2 = clamp(r, 1 - lo,
/// 1 + hi) A with r the token ratio (ppo) or the row's sequence ratio (gspo), counted per valid
/// token. With emulate_float32 clip_ratio is float(count) / float(N) as OpenRLHF's
/// `torch.lt(...).float()` mean; N = 0 gives NaN, as OpenRLHF.
/// @pre in.logp, old_logp, advantages, mask of equal [B, T] extents (sampler_logp with IS on).
template <class T, class M>
openrlhf_policy_metrics openrlhf_metrics(const openrlhf_args& a, const loss_batch<T, M>& in) {
  const index_t B = in.logp.extent(0), Tn = in.logp.extent(1);
  const std::array<index_t, 2> ext{B, Tn};
  GRPO_EXPECTS(in.old_logp.data_handle() != nullptr, shape_mismatch, "old_logp: required");
  expect_extents(in.old_logp, ext, "old_logp");
  expect_extents(in.advantages, ext, "advantages");
  expect_extents(in.mask, ext, "mask");
  const bool is_on = a.algo.advantage.is_correction_enable;
  if (is_on) {
    GRPO_EXPECTS(in.sampler_logp.data_handle() != nullptr, shape_mismatch,
                 "sampler_logp: required when is_correction_enable is set");
    expect_extents(in.sampler_logp, ext, "sampler_logp");
  }
  const loss_options o = from_openrlhf(a);
  const auto& P = o.policy;
  const bool gspo = P.level != is_level::token;
  double n = 0, clipped = 0, kl = 0, vkl = 0;
  for (index_t i = 0; i < B; ++i) {
    double seq_lr = 0.0;  // gspo: sum m (lp - base) / max(n_i, 1)
    if (gspo) {
      double s = 0, ni = 0;
      for (index_t t = 0; t < Tn; ++t) {
        const double m = static_cast<double>(in.mask(i, t));
        const double base = static_cast<double>(is_on ? in.sampler_logp(i, t) : in.old_logp(i, t));
        s += m * (static_cast<double>(in.logp(i, t)) - base);
        ni += m;
      }
      seq_lr = s / (ni < 1.0 ? 1.0 : ni);
    }
    for (index_t t = 0; t < Tn; ++t) {
      const double m = static_cast<double>(in.mask(i, t));
      if (m == 0.0) continue;
      const double lp = static_cast<double>(in.logp(i, t));
      const double lo = static_cast<double>(in.old_logp(i, t));
      const double A = static_cast<double>(in.advantages(i, t));
      const double r = ops::ratio_from_log(gspo ? seq_lr : lp - lo, P.log_ratio_min,
                                           P.log_ratio_max);
      const double s1 = r * A, s2 = ops::clamp_scalar(r, 1.0 - P.eps_low, 1.0 + P.eps_high) * A;
      n += m;
      clipped += s2 < s1 ? m : 0.0;
      kl += m * (lo - lp);
      if (is_on && !gspo) vkl += m * (static_cast<double>(in.sampler_logp(i, t)) - lo);
    }
  }
  openrlhf_policy_metrics r;
  r.clip_ratio = a.emulate_float32
                     ? static_cast<double>(static_cast<float>(clipped) / static_cast<float>(n))
                     : clipped / n;
  r.ppo_kl = kl / n;
  if (is_on && !gspo) r.vllm_kl = vkl / n;
  return r;
}

/// Named presets: "trl_grpo", "trl_bnpo", "trl_dr_grpo", "trl_dapo", "trl_cispo", "trl_sapo",
/// "trl_luspo", "trl_vespo", "trl_gspo" (loss_type grpo + importance_sampling_level sequence),
/// "trl_gmpo" (TRL experimental GMPO trainer; not covered by the peer conformance file),
/// "verl_vanilla", "verl_gspo", "verl_sapo", "verl_cispo", "verl_geo_mean", "openrlhf" (ppo),
/// "openrlhf_gspo".
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
  if (name == "openrlhf_gspo") {
    openrlhf_args a;
    a.actor.policy_loss_type = "gspo";
    return from_openrlhf(a);
  }
  GRPO_THROW(bad_option, "preset: unknown name '" + std::string(name) + "'");
}

}  // namespace grpo
