// SPDX-License-Identifier: Apache-2.0
// Fused linear GRPO step (hidden x W -> logp -> loss -> dH, dW without the logits) against the
// three GEMMs a materialised implementation needs (logits = h W^T, dH = G W, dW = G^T h), run by
// Eigen on the full [N, V] logits with the same threads. Counters: FLOP rate of 3 GEMMs (2 N H V
// each), the fused path's workspace (independent of N) and the materialised logits size.
#include <grpo/fused_linear.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace {

using grpo::index_t;
using rmat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct lin_data {
  index_t N, H, V;
  rmat h, w;
  std::vector<std::int32_t> ids;
  std::vector<float> old_lp, adv, mask;
  lin_data(index_t n, index_t hd, index_t v) : N(n), H(hd), V(v), h(n, hd), w(v, hd) {
    std::mt19937 rng(1);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    for (index_t k = 0; k < h.size(); ++k) h.data()[k] = n01(rng);
    for (index_t k = 0; k < w.size(); ++k) w.data()[k] = 0.05f * n01(rng);
    std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(V - 1));
    for (index_t k = 0; k < N; ++k) {
      ids.push_back(pick(rng));
      old_lp.push_back(-10.0f + 0.1f * n01(rng));
      adv.push_back(n01(rng));
      mask.push_back(1.0f);
    }
  }
};

void counters(benchmark::State& st, const lin_data& d, double workspace) {
  const double flops = 3.0 * 2.0 * static_cast<double>(d.N) * d.H * d.V;
  st.counters["GEMM_FLOPs"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["workspace_MB"] = workspace / 1e6;
  st.counters["logits_MB"] = static_cast<double>(d.N) * d.V * 4 / 1e6;
}

void BM_fused_linear_grpo(benchmark::State& st) {
  lin_data d(st.range(0), st.range(1), st.range(2));
  rmat gh(d.N, d.H), gw(d.V, d.H);
  grpo::loss_options o;  // PPO clip, token mean: token-local, single pass
  grpo::loss_batch<float, float> b;
  b.old_logp = grpo::make_view(d.old_lp.data(), {1, d.N});
  b.advantages = grpo::make_view(d.adv.data(), {1, d.N});
  b.mask = grpo::make_view(d.mask.data(), {1, d.N});
  grpo::fused_linear_options fo;
  if (st.range(3) > 0) fo.workspace_bytes = static_cast<std::size_t>(st.range(3)) << 20;
  for (auto _ : st) {
    auto r = grpo::fused_linear_grpo_step(
        o, grpo::make_view(static_cast<const float*>(d.h.data()), {1, d.N, d.H}),
        grpo::make_view(static_cast<const float*>(d.w.data()), {d.V, d.H}),
        grpo::make_view(d.ids.data(), {1, d.N}), b, grpo::make_view(gh.data(), {1, d.N, d.H}),
        grpo::make_view(gw.data(), {d.V, d.H}), fo);
    benchmark::DoNotOptimize(r.loss);
  }
  // Workspace: chunk x H (gathered hidden) + chunk x V (logits block) + chunk x H (dH block).
  const double chunk = static_cast<double>(std::min(d.N, grpo::fused_linear_chunk_tokens(fo, d.V)));
  counters(st, d, 4.0 * chunk * (2.0 * d.H + d.V));
}

/// The GEMMs alone on materialised logits (what the fused path must approach): forward logits, then
/// dH = G W and dW = G^T h with G = the logits buffer standing in for the gradient.
void BM_gemm_alone(benchmark::State& st) {
  lin_data d(st.range(0), st.range(1), st.range(2));
  (void)st.range(3);
  rmat logits(d.N, d.V), gh(d.N, d.H), gw(d.V, d.H);
  for (auto _ : st) {
    logits.noalias() = d.h * d.w.transpose();
    gh.noalias() = logits * d.w;
    gw.noalias() = logits.transpose() * d.h;
    benchmark::DoNotOptimize(gw.data());
  }
  counters(st, d, 4.0 * static_cast<double>(d.N) * d.V);
}

void shapes(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {256, 1024, 4096}) b->Args({n, 256, 32768, 0});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
/// The fused path with a given logits workspace budget in MiB (0: the default).
void workspace_shapes(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {256, 1024, 4096})
    for (std::int64_t mb : {0, 32, 8}) b->Args({n, 256, 32768, mb});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_gemm_alone)->Apply(shapes);
BENCHMARK(BM_fused_linear_grpo)->Apply(workspace_shapes);

BENCHMARK_MAIN();
