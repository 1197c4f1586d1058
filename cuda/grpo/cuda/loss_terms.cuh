// SPDX-License-Identifier: Apache-2.0
/// @file loss_terms.cuh
/// @brief Host+device glue of the GRPO-family objective for the CUDA kernels: a flat parameter
///        block built from grpo::loss_options, the per-row statistics, the aggregation row factors
///        and the per-token coefficients (dL/dlogp, dL/dH, loss contributions), composed from the
///        scalar functions of <grpo/ops/policy_loss.hpp> and <grpo/ops/kl.hpp>.
///
/// Nothing is restated here: the per-row and per-token composition (ratio -> IS weight ->
/// surrogate -> KL -> entropy -> aggregation, loss.hpp steps 1-6) is grpo::detail in
/// <grpo/detail/loss_token.hpp> and the aggregation factor is grpo::detail::agg_row_scale
/// (<grpo/aggregate.hpp>): the same GRPO_HOST_DEVICE functions that compute_loss_into's general
/// engine calls, brought into grpo::cuda by using-declarations so that the kernels keep their
/// names. tests/cuda/test_loss_terms_host.cu checks them against the naive double-precision
/// reference of tests/support/reference.hpp (and finite differences), without a GPU.
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

// Only the engine-free parts of the loss (options, validate, the parameter block): the CPU
// engines' xsimd / AVX-512 row kernels are not included, so nvcc needs no GRPO_NO_XSIMD here.
#include <grpo/aggregate.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/math.hpp>
#include <grpo/loss/options.hpp>
#include <grpo/loss/params.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>
#include <grpo/policy_loss.hpp>

#include <exception>

namespace grpo::cuda {

/// Aggregation options flattened for the device, and the row factor: the host definitions of
/// <grpo/aggregate.hpp> (grpo::detail), so the CPU and the kernels share one copy.
using grpo::detail::agg_params;
using grpo::detail::agg_row_scale;
using grpo::detail::agg_totals;
using grpo::detail::make_agg_params;

/// The per-row and per-token composition shared with the CPU engine (<grpo/detail/loss_token.hpp>).
using grpo::detail::ent_keep;
using grpo::detail::final_mask;
using grpo::detail::finish_row;
using grpo::detail::finish_row2;
using grpo::detail::gmpo_row_loss;
using grpo::detail::gmpo_scale;
using grpo::detail::gmpo_seq_loss;
using grpo::detail::loss_params;
using grpo::detail::opsm_keep;
using grpo::detail::row_ctx;
using grpo::detail::row_sums;
using grpo::detail::row_sums2;
using grpo::detail::row_sums2_add;
using grpo::detail::row_sums_add;
using grpo::detail::spread_grad;
using grpo::detail::token_in;
using grpo::detail::token_out;
using grpo::detail::token_row_sums;
using grpo::detail::token_row_sums2;
using grpo::detail::token_terms;
using grpo::detail::vespo_log_floor;

/// Builds the device parameter block (grpo::detail::make_loss_params, the one the CPU engine
/// uses). Validates with grpo::validate (never throws out of here).
/// @return false when the options are invalid (grpo::validate throws); `out` is then unspecified.
inline bool make_loss_params(const loss_options& o, loss_params& out) noexcept {
  try {
    validate(o);
  } catch (const std::exception&) {
    return false;
  }
  // OpenRLHF GSPO's sampler-based ratio is a host-side substitution of old_logp in
  // compute_loss_into: the device kernels would read old_logp, so refuse it here (pass
  // sampler_logp as old_logp instead).
  if (o.ratio_base_sampler) return false;
  // OpenRLHF's float32 in-loss KL (kl_openrlhf_float32) is a batch-wide float32 reduction in
  // torch's CPU order done by compute_loss_into on the host; the device kernels would compute the
  // double KL instead, so refuse it (compute the KL term with grpo::openrlhf_kl_loss on the host,
  // or clear the flag for the double KL). approx_kl_unclamped only touches loss_metrics, which
  // the device does not compute.
  if (o.kl_openrlhf_float32 && o.kl_coef != 0.0) return false;
  out = grpo::detail::make_loss_params(o);
  return true;
}

}  // namespace grpo::cuda
