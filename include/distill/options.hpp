// SPDX-License-Identifier: Apache-2.0
/// @file options.hpp
/// @brief Options, per-token inputs and the result type shared by every grpo::distill loss.
#pragma once

#include <grpo/aggregate.hpp>  // grpo::agg_options, the aggregation contract of every loss
#include <grpo/core/config.hpp>
#include <grpo/core/strided_view.hpp>

#include <cstdint>
#include <type_traits>

namespace grpo::distill {

/// The divergence between the teacher distribution p and the student distribution q (both at the
/// shared temperature T). See docs/distillation.md for the anchors each one reproduces.
enum class divergence : unsigned char {
  forward_kl,       ///< KL(p || q) = sum p log(p / q)             (Hinton; TRL GKD beta = 0)
  reverse_kl,       ///< KL(q || p) = sum q log(q / p)             (MiniLLM step term; GKD beta = 1)
  jsd,              ///< beta KL(p || M) + (1 - beta) KL(q || M),  M = beta p + (1 - beta) q
  skew_forward_kl,  ///< KL(p || a p + (1 - a) q)                  (DistiLLM SKL, a = alpha)
  skew_reverse_kl,  ///< KL(q || (1 - a) p + a q)                  (DistiLLM SRKL, a = alpha)
};

/// Calls f(std::integral_constant<divergence, K>{}) for the run-time kind k (one instantiation per
/// kind, so the element maths inline without a per-element switch), or unknown() for a value
/// outside the enumeration: the one divergence dispatch of the CPU engine (unknown throws
/// bad_option) and of the CUDA launchers (unknown returns cudaErrorInvalidValue). Host code on
/// both sides (it calls host lambdas), so not GRPO_HOST_DEVICE.
template <class F, class Unknown>
decltype(auto) visit_divergence(divergence k, F&& f, Unknown&& unknown) {
  using K = divergence;
  switch (k) {
    case K::forward_kl: return f(std::integral_constant<K, K::forward_kl>{});
    case K::reverse_kl: return f(std::integral_constant<K, K::reverse_kl>{});
    case K::jsd: return f(std::integral_constant<K, K::jsd>{});
    case K::skew_forward_kl: return f(std::integral_constant<K, K::skew_forward_kl>{});
    case K::skew_reverse_kl: return f(std::integral_constant<K, K::skew_reverse_kl>{});
  }
  return unknown();
}

/// What the generalised JSD does at beta = 0 and beta = 1, where its formula is identically 0.
enum class jsd_endpoints : unsigned char {
  /// TRL GKDTrainer.generalized_jsd_loss and Liger: beta = 0 computes KL(p || q) and beta = 1
  /// computes KL(q || p) (so the loss scale jumps at the endpoints). The default.
  kl_limits,
  /// The formula as written: 0 at both endpoints (JSD/beta -> KL(p||q) only in the limit).
  formula,
};

/// Options of the dense and top-k distillation losses.
struct distill_options {
  divergence kind = divergence::forward_kl;
  double beta = 0.5;   ///< JSD mixture weight in [0, 1] (TRL GKD default 0.5)
  double alpha = 0.1;  ///< skew weight in [0, 1) for the skew KLs (DistiLLM default 0.1)
  jsd_endpoints endpoints = jsd_endpoints::kl_limits;
  double temperature = 1.0;  ///< T > 0: teacher and student logits are divided by T
  /// Multiply the loss by T^2 (Hinton et al. 2015; DistillKit) so gradient magnitudes stay
  /// comparable across temperatures. TRL GKD and Liger do not (false).
  bool scale_by_t2 = false;
  /// Reduction of the per-token losses (grpo/aggregate.hpp: token_mean, seq_mean_token_mean, ...,
  /// with optional global token / sequence counts for exact micro-batch and data-parallel splits).
  agg_options aggregate{};
  double grad_output = 1.0;  ///< upstream dL_total/dL: the written gradient is grad_output * dL/ds
};

/// Per-token inputs and outputs, all [B, L] (for [N, V] logits: [1, N]). Empty views (the
/// default) mean "all active", "weight 1" and "not requested".
struct token_args {
  strided_view<const std::uint8_t, 2> mask{};  ///< nonzero = token takes part (bool-compatible)
  strided_view<const float, 2> weights{};      ///< per-token weight w_bt (finite)
  strided_view<float, 2> per_token_loss{};     ///< out: unweighted l_bt (T^2 included), 0 if masked
  /// Optional labels (TRL GKD / HF convention): tokens whose label equals ignore_index are masked,
  /// AND-ed with `mask`. Only the ignore test reads them (the dense and top-k losses have no
  /// label).
  strided_view<const std::int64_t, 2> labels{};
  std::int64_t ignore_index = -100;
};

/// The aggregated loss and the counts its denominators came from.
struct loss_result {
  double loss = 0.0;             ///< aggregated loss (T^2 included when requested)
  index_t active_tokens = 0;     ///< tokens with m_bt != 0 in this call
  index_t active_sequences = 0;  ///< sequences with at least one active token in this call
};

}  // namespace grpo::distill
