// SPDX-License-Identifier: Apache-2.0
/// @file params.hpp
/// @brief detail::make_loss_params: the flat parameter block of the per-token composition
///        (<grpo/detail/loss_token.hpp>) built from loss_options, shared by the CPU engines and
///        the CUDA launchers (grpo::cuda::make_loss_params). Host+device code only, no engine.
#pragma once

#include <grpo/aggregate.hpp>
#include <grpo/detail/loss_token.hpp>
#include <grpo/loss/options.hpp>
#include <grpo/loss/plan.hpp>

namespace grpo::detail {

/// The flat, trivially copyable parameter block of the per-token composition
/// (<grpo/detail/loss_token.hpp>) built from loss_options; shared by compute_loss_into and the
/// CUDA launchers (grpo::cuda::make_loss_params).
/// @pre validate(o) passed. @post every option copied; unset optionals flagged off.
inline loss_params make_loss_params(const loss_options& o) noexcept {
  const auto& P = o.policy;
  loss_params out{};
  out.policy = P;
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
  out.tis_seq_mask = o.tis.enabled && o.tis.seq_mask;
  out.agg = make_agg_params(o.agg);
  out.kl_agg = o.kl_agg ? make_agg_params(*o.kl_agg) : out.agg;
  out.ent_agg = make_agg_params(o.entropy_agg);
  // Row log-prob sums: every row statistic (needs_row_stats), a kind's own sequence weight
  // (GMPO, VESPO: kind_traits::sequence_weight) and the top-entropy mask.
  out.needs_row_logp = needs_row_stats(o) || kind_traits_of(P.kind).sequence_weight || out.emask;
  out.uses_entropy = o.entropy_coef != 0.0 || out.emask;
  return out;
}

}  // namespace grpo::detail
