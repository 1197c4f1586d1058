// SPDX-License-Identifier: Apache-2.0
/// @file bridge.cpp
/// @brief The demo's calls into the library but the fused step (bridge.hpp): rule rewards, group
///        advantages, the selective log-softmax, SFT and distillation losses. ATen's tensor and
///        `at::empty` only: <torch/torch.h> (16 s of g++ -O2) is main.cpp's alone.
#include "bridge.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cstdint>
#include <distill/distill.hpp>
#include <grpo/advantage.hpp>
#include <grpo/backends/torch.hpp>
#include <grpo/logprob.hpp>
#include <rewards/format.hpp>
#include <rewards/math.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace r1demo {

double accuracy_reward(const std::string& completion, const std::string& gold) {
  namespace rw = grpo::rewards;
  const auto parts = rw::parse_strict_r1(completion);
  const std::string_view pred = parts ? parts->answer : std::string_view(completion);
  return rw::math::verify(gold, pred) == rw::math::verdict::correct ? 1.0 : 0.0;
}

double format_reward(const std::string& completion) {
  return grpo::rewards::strict_format_reward(completion);
}

std::vector<float> group_advantages(const std::vector<float>& rewards, int group) {
  std::vector<float> adv(rewards.size());
  grpo::compute_advantages(rewards, grpo::group_spec::fixed(group), adv,
                           grpo::advantage_options::trl());
  return adv;
}

at::Tensor selective_logp(const at::Tensor& logits, const at::Tensor& ids, float temperature,
                          int threads) {
  const auto B = logits.size(0), T = logits.size(1), V = logits.size(2);
  auto x = logits.detach().contiguous().view({B * T, V});
  auto y = ids.contiguous().view({B * T});
  auto out = at::empty({B, T}, at::kFloat);
  grpo::logprob_options opt;
  opt.temperature = temperature;
  opt.num_threads = threads;
  grpo::selective_log_softmax(grpo::as_view_as<const float, 2>(x),
                              grpo::as_view_as<const int64_t, 1>(y),
                              grpo::as_view_as<float, 1>(out.view({B * T})), {}, {}, opt);
  return out;
}

loss_out sft_step(const at::Tensor& logits, const at::Tensor& labels) {
  auto x = logits.detach();
  auto grad = at::empty(x.sizes(), at::kFloat);
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

loss_out distill_step(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                      const at::Tensor& mask) {
  auto s = student_logits.detach();
  auto t = teacher_logits.detach();
  auto grad = at::empty(s.sizes(), at::kFloat);
  auto m = mask.to(at::kByte).contiguous();
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
