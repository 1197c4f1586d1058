// SPDX-License-Identifier: Apache-2.0
/// @file options.hpp
/// @brief The options, inputs, outputs and scalars of grpo::compute_loss (loss_options,
///        tis_options, loss_batch, loss_outputs, loss_engine, loss_scalars) and validate(): no
///        engine, no ISA-dependent code. What presets and the CUDA glue (loss_terms.cuh) need.
#pragma once

#include <grpo/aggregate.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/kl.hpp>
#include <grpo/metrics.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>
#include <grpo/policy_loss.hpp>

#include <cmath>
#include <optional>
#include <span>

namespace grpo {

/// Rollout / training mismatch correction (detached IS weights on the policy term).
struct tis_options {
  bool enabled = false;
  bool sequence = false;  ///< sequence weight exp(sum_t m (lo - ls)) instead of per token
  ops::tis_mode mode = ops::tis_mode::truncate;
  double c_min = 0.0;  ///< lower threshold (<= 0: none)
  double c_max = 0.0;  ///< upper threshold (<= 0: none)
  /// Safety clamp of the log weight before exp (verl 20); 0 = none (TRL).
  double log_clamp = 0.0;
  /// OpenRLHF `seq-mask-tis`: row i is kept iff c_min <= exp(sum_t m (lo - ls) / n_i) <= c_max
  /// (the geometric mean of its token weights; a side with a bound <= 0 is open; an empty row
  /// is dropped, as OpenRLHF's 0/0 = NaN fails both tests), and a kept row's tokens carry the
  /// UNBOUNDED token weight rho_t = exp(lo - ls); dropped rows get weight 0 (they stay in the
  /// denominators). `mode` and `sequence` are ignored when set. Not combinable with VESPO.
  bool seq_mask = false;
};

/// Every option of the objective. Presets (<grpo/presets.hpp>) fill it for TRL, verl, OpenRLHF.
struct loss_options {
  policy_options policy{};
  agg_options agg{};  ///< aggregation of the policy term (and of KL unless kl_agg is set)
  // In-loss KL.
  double kl_coef = 0.0;  ///< TRL beta, verl kl_loss_coef; 0 = no KL term (ref_logp not needed)
  kl_params kl{};
  bool kl_bias_correction = false;    ///< TRL use_bias_correction_kl: KL * r, r not detached
  std::optional<agg_options> kl_agg;  ///< verl aggregates KL with loss_agg_mode separately
  // Entropy bonus: loss -= entropy_coef * agg(H).
  double entropy_coef = 0.0;
  agg_options entropy_agg{};  ///< TRL: token mean over m * entropy mask (default)
  // Top-entropy token mask (TRL top_entropy_quantile rho; 1 = off).
  double top_entropy_quantile = 1.0;
  std::optional<double> entropy_threshold;  ///< global threshold (gathered by the caller)
  bool entropy_mask_in_denominator = true;  ///< our contract; TRL: false
  // Off-policy sequence mask (DeepSeek-V3.2), threshold delta on the mean sampler/current gap.
  std::optional<double> opsm_threshold;
  bool opsm_in_denominator = true;  ///< our contract; TRL: false
  tis_options tis{};
  /// OpenRLHF GSPO under vLLM IS correction: the ratio is taken against the rollout engine's
  /// log-probs (batch.sampler_logp, required) instead of old_logp, and no IS weight is applied
  /// (tis must be off). old_logp is then not read.
  bool ratio_base_sampler = false;
  /// OpenRLHF's in-loss KL in float32 (from_openrlhf with algo.kl.use_loss and emulate_float32):
  /// the KL term is computed by detail::openrlhf_kl_loss_core (compute_approx_kl's `.float()`,
  /// torch's float32 sum, the float32 autograd chain of kl_loss * kl_coef) over the batch, the
  /// policy and entropy terms as without it. Requires kl = openrlhf_kl_params(k1 / k2 / k3),
  /// token_mean KL aggregation, no bias correction, OPSM or top-entropy mask, 0 / 1 masks.
  /// kl_loss and metrics.kl are then OpenRLHF's float32 values; loss adds fl(kl_loss kl_coef).
  bool kl_openrlhf_float32 = false;
  /// metrics.approx_kl over the UNCLAMPED log ratio lo - lp (OpenRLHF ppo_kl) instead of the
  /// log ratio clamped to [log_ratio_min, log_ratio_max] (verl ppo_kl, the default). Sequence
  /// levels are unclamped either way.
  bool approx_kl_unclamped = false;
};

/// The inputs of one (micro-)batch. Optional views are left default-constructed (null data).
template <class T, class M = T>
struct loss_batch {
  strided_view<const T, 2> logp;      ///< [B, T] current log-probs (differentiable)
  strided_view<const T, 2> old_logp;  ///< [B, T] behaviour log-probs; null: on-policy (= sg[logp])
  strided_view<const T, 2> ref_logp;  ///< [B, T] reference log-probs; needed iff kl_coef != 0
  strided_view<const T, 2> advantages;    ///< [B, T]; per-sequence [B] via broadcast_rows()
  strided_view<const M, 2> mask;          ///< [B, T] loss mask (completion * tool mask)
  strided_view<const T, 2> sampler_logp;  ///< [B, T] rollout-engine log-probs (TIS, OPSM)
  strided_view<const T, 2> is_weights;    ///< [B, T] precomputed detached IS weights rho
  strided_view<const T, 2> entropy;       ///< [B, T] per-token entropy (bonus, top-entropy mask)
  std::span<const unsigned char> truncated{};  ///< [B] 1 = truncated completion (row dropped)
};

/// A per-sequence [B] vector seen as [B, T] with a zero stride along T (advantages per sequence).
template <class T>
constexpr strided_view<const T, 2> broadcast_rows(const T* data, index_t rows, index_t cols,
                                                  index_t row_stride = 1) noexcept {
  return strided_view<const T, 2>(data, {rows, cols}, {row_stride, 0});
}

/// Caller-owned outputs. grad_logp is required; the others are optional (null = not written).
template <class G>
struct loss_outputs {
  strided_view<G, 2> grad_logp;       ///< [B, T] d loss / d logp (0 on masked tokens)
  strided_view<G, 2> per_token_loss;  ///< [B, T] policy integrand (x multipliers) + kl_coef * KL
  strided_view<G, 2> grad_entropy;    ///< [B, T] d loss / d H (for the fused path to chain)
  std::span<G> per_seq_loss{};        ///< [B] GMPO sequence losses
};

/// Which engine of compute_loss_into produced a result (reported so that tests can assert the
/// path they mean to test instead of relying on today's dispatch rules). In a fused_grpo_result
/// it is the engine of the two-phase schedule's loss call; see also its schedule_used.
enum class loss_engine : unsigned char {
  general,          ///< the general engine (every option; per-token ops in double)
  token_rows,       ///< token-level fast path, scalar row loop
  token_rows_simd,  ///< token-level fast path, vectorised row kernels (AVX-512 / xsimd)
  sequence_rows,    ///< sequence-level (GSPO) row path (AVX-512 / xsimd / scalar row kernels)
  /// the general engine's packet rows (float inputs, AVX2 / AVX-512 paths): GMPO / VESPO with
  /// per-sequence advantages, and the token-level kinds with a rollout IS weight (token TIS,
  /// sequence TIS, seq-mask-tis); a row with a non-finite input reruns the general engine's row
  general_rows,
};

/// Scalars of a compute_loss call.
struct loss_scalars {
  loss_engine engine_used = loss_engine::general;  ///< the path that ran (see loss_engine)
  double loss = 0.0;          ///< policy_loss + kl_coef * kl_loss - entropy_coef * entropy_loss
  double policy_loss = 0.0;   ///< aggregated policy term
  double kl_loss = 0.0;       ///< aggregated KL (before the coefficient)
  double entropy_loss = 0.0;  ///< aggregated entropy (before the coefficient)
  loss_metrics metrics{};
};

/// Validates loss_options (batch-independent). Throws [grpo.bad_option] / [grpo.bad_value].
inline void validate(const loss_options& o) {
  validate(o.policy);
  validate(o.agg);
  if (o.kl_agg) validate(*o.kl_agg);
  validate(o.entropy_agg);
  detail::expect_enum(o.kl.estimator, 4, "loss_options.kl.estimator");
  detail::expect_enum(o.tis.mode, 2, "loss_options.tis.mode");
  GRPO_EXPECTS(std::isfinite(o.kl_coef), bad_value, "loss_options.kl_coef must be finite");
  GRPO_EXPECTS(std::isfinite(o.entropy_coef), bad_value,
               "loss_options.entropy_coef must be finite");
  GRPO_EXPECTS(o.kl.inner_clamp >= 0 && o.kl.outer_clamp >= 0 && std::isfinite(o.kl.inner_clamp) &&
                   std::isfinite(o.kl.outer_clamp),
               bad_value, "loss_options.kl clamps must be finite and >= 0");
  GRPO_EXPECTS(o.top_entropy_quantile >= 0 && o.top_entropy_quantile <= 1, bad_value,
               "loss_options.top_entropy_quantile must be in [0, 1]");
  GRPO_EXPECTS(!o.opsm_threshold || std::isfinite(*o.opsm_threshold), bad_value,
               "loss_options.opsm_threshold must be finite");
  GRPO_EXPECTS(!o.tis.enabled || o.tis.c_min > 0 || o.tis.c_max > 0, bad_option,
               "loss_options.tis: at least one of c_min / c_max is required");
  GRPO_EXPECTS(!o.tis.enabled || o.tis.c_min <= 0 || o.tis.c_max <= 0 || o.tis.c_min <= o.tis.c_max,
               bad_option, "loss_options.tis: c_min must be <= c_max");
  GRPO_EXPECTS(!(o.tis.enabled && o.tis.seq_mask && o.policy.kind == policy_loss_kind::vespo),
               bad_option, "loss_options.tis.seq_mask: not supported with VESPO");
  GRPO_EXPECTS(!(o.ratio_base_sampler && o.tis.enabled), bad_option,
               "loss_options.ratio_base_sampler and tis.enabled are exclusive (OpenRLHF GSPO "
               "uses the sampler log-probs as the ratio base instead of an IS weight)");
  if (o.kl_openrlhf_float32 && o.kl_coef != 0.0) {
    const auto e = o.kl.estimator;
    const bool k123 = e == kl_estimator::k1 || e == kl_estimator::k2 || e == kl_estimator::k3;
    const kl_params ok = openrlhf_kl_params(k123 ? e : kl_estimator::k1);
    GRPO_EXPECTS(k123 && o.kl.inner_clamp == ok.inner_clamp && o.kl.outer_clamp == ok.outer_clamp &&
                     o.kl.straight_through == ok.straight_through,
                 bad_option,
                 "loss_options.kl_openrlhf_float32: kl must be openrlhf_kl_params(k1 / k2 / k3)");
    GRPO_EXPECTS((o.kl_agg ? *o.kl_agg : o.agg).mode == agg_mode::token_mean, bad_option,
                 "loss_options.kl_openrlhf_float32: the KL aggregation must be token_mean");
    GRPO_EXPECTS(!o.kl_bias_correction && !o.opsm_threshold && !(o.top_entropy_quantile < 1.0),
                 bad_option,
                 "loss_options.kl_openrlhf_float32: not combinable with kl_bias_correction, "
                 "opsm_threshold or top_entropy_quantile (OpenRLHF has none of them)");
  }
}

}  // namespace grpo
