// SPDX-License-Identifier: Apache-2.0
/// @file bridge.hpp
/// @brief The demo's only calls into the library, on libtorch tensors through grpo::torch:
///        rule rewards (grpo::rewards), group advantages (grpo::compute_advantages), the fused
///        GRPO step (grpo::fused_grpo_step: logits -> loss, metrics and d loss / d logits), the
///        selective log-softmax for the old / reference log-probs, and distillation losses
///        (grpo::distill::sft_loss, grpo::distill::divergence_loss); the length and repetition
///        rewards of stage 4 are called from main.cpp (grpo::rewards::soft_overlong_reward,
///        repetition_penalty_reward). No loss maths lives here:
///        every gradient comes back from the library and is handed to autograd with
///        logits.backward(grad).
///        Declarations (at::Tensor is torch::Tensor); the definitions are compiled apart
///        (bridge_fused.cpp: the fused step and its float loss engine; bridge.cpp: the rest) so
///        that they build in parallel with main.cpp and not again when main.cpp changes.
#pragma once

#include <ATen/core/Tensor.h>

#include <grpo/loss/options.hpp>
#include <string>
#include <vector>

namespace r1demo {

// ------------------------------------------------------------------------------------ rewards

/// R1 accuracy reward: 1 when the answer is mathematically equal to the gold answer. The answer is
/// the body of the `<answer>` block when the completion has the strict R1 layout, otherwise
/// whatever the verifier's own extraction finds after `</think>`.
double accuracy_reward(const std::string& completion, const std::string& gold);

/// R1 format reward: 1 for `<think>\n...\n</think>\n<answer>\n...\n</answer>` exactly.
double format_reward(const std::string& completion);

// ------------------------------------------------------------------------------------ GRPO

/// GRPO advantages: rewards of contiguous groups of `group` rows, z-scored within each group
/// (TRL's defaults: eps 1e-4 added to the Bessel std; zero-variance groups give 0).
std::vector<float> group_advantages(const std::vector<float>& rewards, int group);

/// log pi(y_t) at temperature `temperature` for logits [B, T, V] and ids [B, T] (no gradient).
at::Tensor selective_logp(const at::Tensor& logits, const at::Tensor& ids, float temperature,
                          int threads);

/// Loss value, gradient into the logits and the metrics the progress bar shows.
struct loss_out {
  double loss = 0;
  at::Tensor grad;       ///< same shape as the logits
  double kl = 0;         ///< token mean of the KL estimate to the reference
  double clip_frac = 0;  ///< token fraction where the ratio was clipped
  double entropy = 0;    ///< token mean of the policy entropy (nats)
};

/// One fused GRPO step on a micro-batch.
/// @param logits  [B, T, V] float raw logits of the completion slots (any strides)
/// @param ids     [B, T] int64 sampled tokens
/// @param old_logp, ref_logp [B, T] float at the sampling temperature
/// @param adv     [B] float per-sequence advantages
/// @param mask    [B, T] float completion mask
loss_out grpo_step(const grpo::loss_options& lo, const at::Tensor& logits, const at::Tensor& ids,
                   const at::Tensor& old_logp, const at::Tensor& ref_logp, const at::Tensor& adv,
                   const at::Tensor& mask, float temperature, int threads);

// ------------------------------------------------------------------------------------ distillation

/// SFT negative log-likelihood (token mean) of `labels` [B, T] int64 (-100 = not a target) under
/// `logits` [B, T, V]; gradient into the logits.
loss_out sft_step(const at::Tensor& logits, const at::Tensor& labels);

/// Token-level forward KL(teacher || student) over the whole vocabulary (Hinton distillation on
/// the teacher's own samples), token mean over `mask` [B, T]; gradient into the student logits.
loss_out distill_step(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                      const at::Tensor& mask);

}  // namespace r1demo
