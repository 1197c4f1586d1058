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
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <distill/distill.hpp>
#include <grpo/advantage.hpp>
#include <grpo/backends/torch.hpp>
#include <grpo/fused_grpo.hpp>
#include <grpo/logprob.hpp>
#include <grpo/presets.hpp>
#include <rewards/format.hpp>
#include <rewards/length.hpp>
#include <rewards/math.hpp>
#include <rewards/repetition.hpp>
#include <string>
#include <vector>

namespace r1demo {

// ------------------------------------------------------------------------------------ rewards

/// R1 accuracy reward: 1 when the answer is mathematically equal to the gold answer. The answer is
/// the body of the `<answer>` block when the completion has the strict R1 layout, otherwise
/// whatever the verifier's own extraction finds after `</think>`.
inline double accuracy_reward(const std::string& completion, const std::string& gold) {
  namespace rw = grpo::rewards;
  const auto parts = rw::parse_strict_r1(completion);
  const std::string_view pred = parts ? parts->answer : std::string_view(completion);
  return rw::math::verify(gold, pred) == rw::math::verdict::correct ? 1.0 : 0.0;
}

/// R1 format reward: 1 for `<think>\n...\n</think>\n<answer>\n...\n</answer>` exactly.
inline double format_reward(const std::string& completion) {
  return grpo::rewards::strict_format_reward(completion);
}

// ------------------------------------------------------------------------------------ GRPO

/// GRPO advantages: rewards of contiguous groups of `group` rows, z-scored within each group
/// (TRL's defaults: eps 1e-4 added to the Bessel std; zero-variance groups give 0).
inline std::vector<float> group_advantages(const std::vector<float>& rewards, int group) {
  std::vector<float> adv(rewards.size());
  grpo::compute_advantages(rewards, grpo::group_spec::fixed(group), adv,
                           grpo::advantage_options::trl());
  return adv;
}

/// log pi(y_t) at temperature `temperature` for logits [B, T, V] and ids [B, T] (no gradient).
inline torch::Tensor selective_logp(const torch::Tensor& logits, const torch::Tensor& ids,
                                    float temperature, int threads) {
  const auto B = logits.size(0), T = logits.size(1), V = logits.size(2);
  auto x = logits.detach().contiguous().view({B * T, V});
  auto y = ids.contiguous().view({B * T});
  auto out = torch::empty({B, T}, torch::kFloat);
  grpo::logprob_options opt;
  opt.temperature = temperature;
  opt.num_threads = threads;
  grpo::selective_log_softmax(grpo::as_view_as<const float, 2>(x),
                              grpo::as_view_as<const int64_t, 1>(y),
                              grpo::as_view_as<float, 1>(out.view({B * T})), {}, {}, opt);
  return out;
}

/// Loss value, gradient into the logits and the metrics the progress bar shows.
struct loss_out {
  double loss = 0;
  torch::Tensor grad;    ///< same shape as the logits
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
inline loss_out grpo_step(const grpo::loss_options& lo, const torch::Tensor& logits,
                          const torch::Tensor& ids, const torch::Tensor& old_logp,
                          const torch::Tensor& ref_logp, const torch::Tensor& adv,
                          const torch::Tensor& mask, float temperature, int threads) {
  const auto B = logits.size(0), T = logits.size(1);
  auto x = logits.detach();
  auto grad = torch::empty(x.sizes(), torch::kFloat);
  auto adv_c = adv.contiguous();
  grpo::loss_batch<float, float> in;
  in.old_logp = grpo::as_view_as<const float, 2>(old_logp);
  in.ref_logp = grpo::as_view_as<const float, 2>(ref_logp);
  in.advantages = grpo::broadcast_rows(adv_c.data_ptr<float>(), B, T);
  in.mask = grpo::as_view_as<const float, 2>(mask);
  grpo::fused_grpo_options fo;
  fo.logprob.temperature = temperature;
  fo.logprob.num_threads = threads;
  auto r = grpo::fused_grpo_step(lo, grpo::as_view_as<const float, 3>(x),
                                 grpo::as_view_as<const int64_t, 2>(ids), in,
                                 grpo::as_view_as<float, 3>(grad), fo);
  loss_out o;
  o.loss = r.loss;
  o.grad = grad;
  o.kl = r.metrics.kl.mean();
  o.clip_frac = r.metrics.clip_region.mean();
  // Entropy comes back per token; its masked mean is a metric only.
  auto m = mask.contiguous();
  const float* mp = m.data_ptr<float>();
  double h = 0, n = 0;
  for (size_t k = 0; k < r.entropy.size(); ++k) {
    h += static_cast<double>(mp[k]) * r.entropy[k];
    n += mp[k];
  }
  o.entropy = n > 0 ? h / n : 0.0;
  return o;
}

// ------------------------------------------------------------------------------------ distillation

/// SFT negative log-likelihood (token mean) of `labels` [B, T] int64 (-100 = not a target) under
/// `logits` [B, T, V]; gradient into the logits.
inline loss_out sft_step(const torch::Tensor& logits, const torch::Tensor& labels) {
  auto x = logits.detach();
  auto grad = torch::empty(x.sizes(), torch::kFloat);
  auto y = labels.contiguous();
  grpo::distill::sft_options so;
  auto r = grpo::distill::sft_loss(grpo::as_view_as<const float, 3>(x),
                                   grpo::as_view_as<const int64_t, 2>(y),
                                   grpo::as_view_as<float, 3>(grad), so);
  loss_out o;
  o.loss = r.loss;
  o.grad = grad;
  return o;
}

/// Token-level forward KL(teacher || student) over the whole vocabulary (Hinton distillation on
/// the teacher's own samples), token mean over `mask` [B, T]; gradient into the student logits.
inline loss_out distill_step(const torch::Tensor& student_logits,
                             const torch::Tensor& teacher_logits, const torch::Tensor& mask) {
  auto s = student_logits.detach();
  auto t = teacher_logits.detach();
  auto grad = torch::empty(s.sizes(), torch::kFloat);
  auto m = mask.to(torch::kByte).contiguous();
  grpo::distill::distill_options dopt;
  dopt.kind = grpo::distill::divergence::forward_kl;
  grpo::distill::token_args args;
  args.mask = grpo::as_view_as<const std::uint8_t, 2>(m);
  auto r = grpo::distill::divergence_loss(grpo::as_view_as<const float, 3>(s),
                                          grpo::as_view_as<const float, 3>(t),
                                          grpo::as_view_as<float, 3>(grad), dopt, args);
  loss_out o;
  o.loss = r.loss;
  o.grad = grad;
  return o;
}

}  // namespace r1demo
