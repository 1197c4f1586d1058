// SPDX-License-Identifier: Apache-2.0
/// @file model.hpp
/// @brief The tiny autoregressive policy of the demo (embedding -> GRU -> linear head, libtorch)
///        and batched sampling at a temperature that reuses the recurrent state (the GRU analogue
///        of a KV cache: each new token costs one cell step, not a pass over the prefix).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <random>
#include <vector>

#include "task.hpp"

namespace r1demo {

struct model_options {
  int64_t embed = 32;
  int64_t hidden = 128;
  int64_t layers = 1;
};

/// logits[b, t, :] = head(GRU(embed(ids[b, :t+1]))): next-token logits after each position.
struct policy_impl : torch::nn::Module {
  explicit policy_impl(model_options o)
      : opt(o),
        emb(register_module("emb", torch::nn::Embedding(vocab_size, o.embed))),
        gru(register_module(
            "gru",
            torch::nn::GRU(
                torch::nn::GRUOptions(o.embed, o.hidden).num_layers(o.layers).batch_first(true)))),
        head(register_module("head", torch::nn::Linear(o.hidden, vocab_size))) {}

  /// ids [B, T] int64 -> logits [B, T, V].
  torch::Tensor forward(const torch::Tensor& ids) { return step(ids, {}).first; }

  /// Runs ids [B, T] from the state h ([layers, B, hidden], undefined = zeros); returns the
  /// logits [B, T, V] and the state after the last position.
  std::pair<torch::Tensor, torch::Tensor> step(const torch::Tensor& ids, const torch::Tensor& h) {
    auto x = emb->forward(ids);
    auto [y, hn] = h.defined() ? gru->forward(x, h) : gru->forward(x);
    return {head->forward(y), hn};
  }

  [[nodiscard]] int64_t parameter_count() {
    int64_t n = 0;
    for (const auto& p : parameters()) n += p.numel();
    return n;
  }

  model_options opt;
  torch::nn::Embedding emb;
  torch::nn::GRU gru;
  torch::nn::Linear head;
};
TORCH_MODULE_IMPL(policy, policy_impl);

/// A frozen copy of `src` (same options, copied weights, no gradients): the KL reference.
inline policy frozen_copy(policy& src) {
  policy dst(src->opt);
  torch::NoGradGuard ng;
  auto s = src->parameters();
  auto d = dst->parameters();
  for (size_t i = 0; i < s.size(); ++i) d[i].copy_(s[i]);
  for (auto& p : d) p.set_requires_grad(false);
  dst->eval();
  return dst;
}

/// A batch of sampled sequences: prompt followed by `max_new` completion slots.
struct rollout {
  torch::Tensor ids;   ///< [B, Tp + max_new] int64; after eos the slots hold pad
  torch::Tensor mask;  ///< [B, max_new] float: 1 on generated tokens up to and including eos
  int64_t prompt_len = 0;
  int64_t max_new = 0;
  int64_t generated_tokens = 0;    ///< sum of mask
  std::vector<std::string> texts;  ///< decoded completions
};

/// Samples one completion per row of `prompts` ([B, Tp] int64). temperature == 0 is greedy.
/// Sampling draws from our own RNG on the host (inverse CDF over V = 23 probabilities), so a
/// seed reproduces the run whatever libtorch's generator does.
inline rollout sample(policy& pol, const torch::Tensor& prompts, int64_t max_new,
                      double temperature, std::mt19937_64& rng) {
  torch::NoGradGuard ng;
  const int64_t B = prompts.size(0), Tp = prompts.size(1);
  rollout r;
  r.prompt_len = Tp;
  r.max_new = max_new;
  r.ids = torch::full({B, Tp + max_new}, static_cast<int64_t>(tok_pad), torch::kLong);
  r.ids.narrow(1, 0, Tp).copy_(prompts);
  r.mask = torch::zeros({B, max_new}, torch::kFloat);
  auto ids_a = r.ids.accessor<int64_t, 2>();
  auto mask_a = r.mask.accessor<float, 2>();
  std::vector<char> done(static_cast<size_t>(B), 0);
  std::uniform_real_distribution<double> unif(0.0, 1.0);

  // Prefix once, then one cell step per new token from the carried state.
  auto [logits, h] = pol->step(prompts, {});
  auto last = logits.select(1, Tp - 1);  // [B, V]
  auto next = torch::empty({B, 1}, torch::kLong);
  auto next_a = next.accessor<int64_t, 2>();
  for (int64_t t = 0; t < max_new; ++t) {
    // Probabilities at temperature tau: softmax(z / tau), in double so the CDF sums cleanly.
    auto probs = temperature > 0 ? torch::softmax(last.to(torch::kDouble) / temperature, -1)
                                 : last.to(torch::kDouble);
    probs = probs.contiguous();
    auto pa = probs.accessor<double, 2>();
    int64_t alive = 0;
    for (int64_t b = 0; b < B; ++b) {
      int64_t tok = tok_pad;
      if (!done[b]) {
        if (temperature > 0) {
          const double u = unif(rng);
          double c = 0.0;
          tok = vocab_size - 1;
          for (int64_t v = 0; v < vocab_size; ++v) {
            c += pa[b][v];
            if (u < c) {
              tok = v;
              break;
            }
          }
        } else {  // greedy: argmax of the logits
          tok = 0;
          for (int64_t v = 1; v < vocab_size; ++v)
            if (pa[b][v] > pa[b][tok]) tok = v;
        }
        ids_a[b][Tp + t] = tok;
        mask_a[b][t] = 1.f;
        ++r.generated_tokens;
        if (tok == tok_eos)
          done[b] = 1;
        else
          ++alive;
      }
      next_a[b][0] = tok;
    }
    if (alive == 0 || t + 1 == max_new) break;
    std::tie(logits, h) = pol->step(next, h);
    last = logits.select(1, 0);
  }
  r.texts.resize(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) r.texts[b] = decode(r.ids[b].data_ptr<int64_t>() + Tp, max_new);
  return r;
}

}  // namespace r1demo
