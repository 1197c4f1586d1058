// SPDX-License-Identifier: Apache-2.0
/// @file bridge_fused.cpp
/// @brief The fused GRPO step of the demo (bridge.hpp): logits -> loss, metrics and
///        d loss / d logits. A unit of its own: it instantiates the float loss engine (every ISA's
///        packet rows), the longest part of the demo's build, in parallel with the others.
#include "bridge.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cstddef>
#include <cstdint>
#include <grpo/backends/torch.hpp>
#include <grpo/fused_grpo.hpp>

namespace r1demo {

loss_out grpo_step(const grpo::loss_options& lo, const at::Tensor& logits, const at::Tensor& ids,
                   const at::Tensor& old_logp, const at::Tensor& ref_logp, const at::Tensor& adv,
                   const at::Tensor& mask, float temperature, int threads) {
  const auto B = logits.size(0), T = logits.size(1);
  auto x = logits.detach();
  auto grad = at::empty(x.sizes(), at::kFloat);
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

}  // namespace r1demo
