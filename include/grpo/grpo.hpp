// SPDX-License-Identifier: Apache-2.0
/// @file grpo.hpp
/// @brief Umbrella header of the core and algorithm layers of grpo.
///
/// Includes the core vocabulary (errors, views, traits, half types, streaming softmax state), the
/// scalar element maths and every algorithm that needs no third-party library: advantages, KL
/// estimators, policy losses, aggregation, metrics, the full loss and its presets, log-probabilities
/// from logits, the fused GRPO step and sampler-matched log-probabilities.
///
/// It never includes a tensor backend (grpo/backends/*.hpp), the Eigen-based fused linear head
/// (grpo/fused_linear.hpp), the rewards (rewards/rewards.hpp), the distillation losses
/// (distill/distill.hpp) or CUDA (grpo/cuda/*.cuh): include those explicitly, with their targets.
#pragma once

// core vocabulary
#include <grpo/core/config.hpp>
#include <grpo/core/dtype.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/math.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/tensor_traits.hpp>

// element maths (the only copy of each formula)
#include <grpo/ops/advantage.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>
#include <grpo/ops/softmax.hpp>

// algorithms
#include <grpo/advantage.hpp>
#include <grpo/aggregate.hpp>
#include <grpo/collective.hpp>
#include <grpo/fused_grpo.hpp>
#include <grpo/kl.hpp>
#include <grpo/logprob.hpp>
#include <grpo/loss.hpp>
#include <grpo/metrics.hpp>
#include <grpo/openrlhf.hpp>
#include <grpo/policy_loss.hpp>
#include <grpo/presets.hpp>
#include <grpo/sampler.hpp>
