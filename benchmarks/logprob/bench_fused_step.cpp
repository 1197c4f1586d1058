// SPDX-License-Identifier: Apache-2.0
// The fused GRPO step's fixed cost per chunk (issue 15: the loss engine's entry points): the fused
// step on [B, T, V] fp32 logits with the DAPO loss, at a small vocabulary where the per-chunk
// loss work is a large share (chunk_tokens 1: one chunk per token), at the default chunks, and at
// the 4096 x 32768 shape, next to a read + write probe of the same bytes in one binary.
// Build it against two source trees with the same flags to compare the code before and after.
#include <grpo/fused_grpo.hpp>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace {

using grpo::index_t;

using grpo_bench::threads;

/// One read of the logits and one write of the gradient (what the fused step must move).
void BM_probe_read_write(benchmark::State& st) {
  const index_t n = st.range(0) * st.range(1) * st.range(2);
  grpo_bench::probe_read_write(st, static_cast<std::size_t>(n));
}

/// Args: B, T, V, chunk_tokens (0 = default).
void BM_fused_step(benchmark::State& st) {
  const index_t B = st.range(0), T = st.range(1), V = st.range(2), C = st.range(3);
  const auto n = static_cast<std::size_t>(B * T * V);
  std::unique_ptr<float[]> x(new float[n]), g(new float[n]);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (std::size_t k = 0; k < n; ++k) x[k] = nd(rng);
#pragma omp parallel for schedule(static)
  for (std::size_t k = 0; k < n; ++k) g[k] = 0.0f;
  std::vector<std::int32_t> ids;
  std::vector<float> old_lp, adv, mask;
  for (index_t k = 0; k < B * T; ++k) {
    ids.push_back(static_cast<std::int32_t>((k * 7919) % V));
    old_lp.push_back(-std::log(static_cast<float>(V)) + 0.2f * nd(rng));
    adv.push_back(0.5f * nd(rng));
    mask.push_back(k % 13 == 12 ? 0.0f : 1.0f);
  }
  grpo::loss_batch<float, float> b;
  b.old_logp = grpo::make_view(old_lp.data(), {B, T});
  b.advantages = grpo::make_view(adv.data(), {B, T});
  b.mask = grpo::make_view(mask.data(), {B, T});
  grpo::loss_options o;  // DAPO: token mean, clip-higher
  o.policy.eps_low = 0.2;
  o.policy.eps_high = 0.28;
  grpo::fused_grpo_options fo;
  fo.chunk_tokens = C;
  for (auto _ : st) {
    auto r = grpo::fused_grpo_step(
        o, grpo::make_view(static_cast<const float*>(x.get()), {B, T, V}),
        grpo::make_view(ids.data(), {B, T}), b, grpo::make_view(g.get(), {B, T, V}), fo);
    benchmark::DoNotOptimize(r.loss);
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * n * 2 * sizeof(float)));
  st.counters["threads"] = threads();
  if (C > 0) st.counters["chunks"] = static_cast<double>(B * ((T + C - 1) / C));
}

}  // namespace

BENCHMARK(BM_probe_read_write)
    ->Args({1, 4096, 32768})
    ->Args({1, 4096, 256})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_fused_step)
    ->Args({1, 4096, 256, 1})    // one chunk per token: the per-chunk fixed cost dominates
    ->Args({64, 64, 256, 1})     // the same over 64 sequences
    ->Args({1, 4096, 256, 0})    // default chunks (64 tokens)
    ->Args({1, 4096, 32768, 0})  // the shape, default chunks (4 tokens)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
