// SPDX-License-Identifier: Apache-2.0
// Selective log-softmax and fused GRPO step on the CPU against (a) a memory-bandwidth probe
// (streaming read; read + write), (b) a naive per-row loop and (c) libtorch eager as a user writes
// it (log_softmax / logsumexp + gather + autograd backward), all with the same thread count. Every
// benchmark reports bytes processed (logits read, gradient written) so the fraction of the probe's
// bandwidth can be read off. Shapes whose working set exceeds GRPO_BENCH_MAX_GB (default 6) are
// skipped with a message (the machine is shared).
#include <grpo/fused_grpo.hpp>
#include <grpo/logprob.hpp>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"

#if __has_include(<torch/torch.h>) && defined(GRPO_BENCH_WITH_TORCH)
#include <torch/torch.h>
#define GRPO_HAVE_TORCH 1
#else
#define GRPO_HAVE_TORCH 0
#endif

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using grpo::index_t;

using grpo_bench::threads;

double max_gb() {
  const char* s = std::getenv("GRPO_BENCH_MAX_GB");
  return s ? std::atof(s) : 6.0;
}

bool skip_if_too_big(benchmark::State& st, double bytes) {
  if (bytes / 1e9 > max_gb()) {
    st.SkipWithError(
        ("working set " + std::to_string(bytes / 1e9) + " GB > GRPO_BENCH_MAX_GB").c_str());
    return true;
  }
  return false;
}

/// A counter-based pseudo-random draw (splitmix64 finaliser) mapped to an approximately normal
/// value of mean 0 and standard deviation 2: the sum of four 16-bit uniforms (Irwin-Hall), fast
/// enough to fill 2.5 G logits in seconds (std::normal_distribution took ~10 ns per value).
inline float normal2(std::uint64_t k) {
  std::uint64_t z = k * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  const float u =
      static_cast<float>((z & 0xffff) + ((z >> 16) & 0xffff) + ((z >> 32) & 0xffff) + (z >> 48)) *
      (1.0f / 65536.0f);           // sum of 4 U(0,1): mean 2, variance 1/3
  return (u - 2.0f) * 3.4641016f;  // * 2 sqrt(3): standard deviation 2
}

/// Logits of a given dtype, filled once (in parallel) with ~N(0, 2) values, plus ids and loss
/// inputs.
template <class T>
struct data {
  index_t N, V;
  std::unique_ptr<T[]> x;
  std::vector<std::int32_t> ids;
  std::vector<float> old_lp, adv, mask;
  data(index_t n, index_t v) : N(n), V(v), x(new T[static_cast<std::size_t>(n * v)]) {
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < N; ++i)
      for (index_t j = 0; j < V; ++j)
        x[i * V + j] = grpo::narrow<T>(normal2(static_cast<std::uint64_t>(i * V + j)));
    std::mt19937 rng(7);
    std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(V - 1));
    std::normal_distribution<float> n01(0.0f, 1.0f);
    for (index_t i = 0; i < N; ++i) {
      ids.push_back(pick(rng));
      old_lp.push_back(-12.0f + 0.1f * n01(rng));
      adv.push_back(n01(rng));
      mask.push_back(1.0f);
    }
  }
};

// ---------------------------------------------------------------- probes (bench_common.hpp)
void BM_probe_read(benchmark::State& st) {
  grpo_bench::probe_read(st, static_cast<std::size_t>(st.range(0) * st.range(1)));
}
void BM_probe_read_write(benchmark::State& st) {
  grpo_bench::probe_read_write(st, static_cast<std::size_t>(st.range(0) * st.range(1)));
}
/// One exp per logit on an L1-resident block: the compute floor of the statistics sweep.
void BM_probe_exp(benchmark::State& st) {
  grpo_bench::probe_exp(st, st.range(0) * st.range(1));
}

// ---------------------------------------------------------------- forward: log p + entropy
template <class T>
void BM_ours_forward(benchmark::State& st) {
  const index_t N = st.range(0), V = st.range(1);
  if (skip_if_too_big(st, static_cast<double>(N) * V * sizeof(T))) return;
  data<T> d(N, V);
  std::vector<float> lp(N), h(N);
  for (auto _ : st) {
    grpo::selective_log_softmax(grpo::make_view(static_cast<const T*>(d.x.get()), {N, V}),
                                grpo::make_view(d.ids.data(), {N}), grpo::make_view(lp.data(), {N}),
                                {}, grpo::make_view(h.data(), {N}));
    benchmark::DoNotOptimize(lp.data());
  }
  st.SetBytesProcessed(st.iterations() * N * V * static_cast<std::int64_t>(sizeof(T)));
  st.counters["threads"] = threads();
}

/// The loop anyone writes first: per row max, sum of exp, log, and entropy as a third pass.
template <class T>
void BM_naive_forward(benchmark::State& st) {
  const index_t N = st.range(0), V = st.range(1);
  if (skip_if_too_big(st, static_cast<double>(N) * V * sizeof(T))) return;
  data<T> d(N, V);
  std::vector<float> lp(N), h(N);
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < N; ++i) {
      const T* r = d.x.get() + i * V;
      float m = -INFINITY;
      for (index_t j = 0; j < V; ++j) m = std::max(m, static_cast<float>(r[j]));
      float s = 0;
      for (index_t j = 0; j < V; ++j) s += std::exp(static_cast<float>(r[j]) - m);
      const float lse = m + std::log(s);
      float ent = 0;
      for (index_t j = 0; j < V; ++j) {
        const float l = static_cast<float>(r[j]) - lse;
        ent -= std::exp(l) * l;
      }
      lp[i] = static_cast<float>(r[d.ids[i]]) - lse;
      h[i] = ent;
    }
    benchmark::DoNotOptimize(lp.data());
  }
  st.SetBytesProcessed(st.iterations() * N * V * static_cast<std::int64_t>(sizeof(T)));
  st.counters["threads"] = threads();
}

// ---------------------------------------------------------------- fused GRPO step (DAPO preset)
grpo::loss_options dapo() {
  grpo::loss_options o;  // PPO clip 0.2/0.28, token mean (TRL dapo defaults)
  o.policy.eps_high = 0.28;
  return o;
}

/// Pipe: the fused step's schedule (automatic: the library's choice for the active path; on / off:
/// the software pipeline forced, to measure both on one machine).
template <class T, grpo::fused_pipeline Pipe = grpo::fused_pipeline::automatic>
void BM_ours_fused_grpo(benchmark::State& st) {
  const index_t N = st.range(0), V = st.range(1);
  if (skip_if_too_big(st, 2.0 * static_cast<double>(N) * V * sizeof(T))) return;
  data<T> d(N, V);
  std::unique_ptr<T[]> g(new T[static_cast<std::size_t>(N * V)]);
  // Touch the gradient buffer before timing (a fresh buffer would time the kernel's page faults).
#pragma omp parallel for schedule(static)
  for (index_t k = 0; k < N * V; ++k) g[k] = T{};
  grpo::loss_batch<float, float> b;
  b.old_logp = grpo::make_view(d.old_lp.data(), {1, N});
  b.advantages = grpo::make_view(d.adv.data(), {1, N});
  b.mask = grpo::make_view(d.mask.data(), {1, N});
  grpo::fused_grpo_options fo;
  fo.pipeline = Pipe;
  const auto o = dapo();
  bool pipelined = false;
  for (auto _ : st) {
    auto r = grpo::fused_grpo_step(o, grpo::make_view(static_cast<const T*>(d.x.get()), {1, N, V}),
                                   grpo::make_view(d.ids.data(), {1, N}), b,
                                   grpo::make_view(g.get(), {1, N, V}), fo);
    benchmark::DoNotOptimize(r.loss);
    pipelined = r.pipelined;
  }
  st.counters["pipelined"] = pipelined ? 1.0 : 0.0;
  // One read of the logits, one write of the gradient.
  st.SetBytesProcessed(st.iterations() * N * V * static_cast<std::int64_t>(2 * sizeof(T)));
  st.counters["threads"] = threads();
}

#if GRPO_HAVE_TORCH
template <class T>
torch::Tensor to_torch(data<T>& d) {
  const auto dt = std::is_same_v<T, float> ? torch::kFloat32 : torch::kBFloat16;
  return torch::from_blob(d.x.get(), {d.N, d.V}, torch::TensorOptions().dtype(dt)).clone();
}

template <class T>
void BM_torch_forward(benchmark::State& st) {
  const index_t N = st.range(0), V = st.range(1);
  // log_softmax makes an fp32 N x V temporary (plus the upcast copy for bf16).
  if (skip_if_too_big(st, static_cast<double>(N) * V * (sizeof(T) + 8))) return;
  torch::set_num_threads(threads());
  data<T> d(N, V);
  auto x = to_torch(d);
  auto ids = torch::from_blob(d.ids.data(), {N, 1}, torch::kInt32).to(torch::kInt64);
  torch::NoGradGuard ng;
  for (auto _ : st) {
    auto lsm = torch::log_softmax(x.to(torch::kFloat32), -1);
    auto lp = lsm.gather(-1, ids);
    auto ent = -(lsm.exp() * lsm).sum(-1);
    benchmark::DoNotOptimize(lp.data_ptr());
    benchmark::DoNotOptimize(ent.data_ptr());
  }
  st.SetBytesProcessed(st.iterations() * N * V * static_cast<std::int64_t>(sizeof(T)));
  st.counters["threads"] = threads();
}

template <class T>
void BM_torch_fused_grpo(benchmark::State& st) {
  const index_t N = st.range(0), V = st.range(1);
  if (skip_if_too_big(st, static_cast<double>(N) * V * (2 * sizeof(T) + 12))) return;
  torch::set_num_threads(threads());
  data<T> d(N, V);
  auto x = to_torch(d).requires_grad_(true);
  auto ids = torch::from_blob(d.ids.data(), {N, 1}, torch::kInt32).to(torch::kInt64);
  auto old = torch::from_blob(d.old_lp.data(), {N}, torch::kFloat32).clone();
  auto adv = torch::from_blob(d.adv.data(), {N}, torch::kFloat32).clone();
  auto mask = torch::from_blob(d.mask.data(), {N}, torch::kFloat32).clone();
  for (auto _ : st) {
    x.mutable_grad() = torch::Tensor();
    auto lp = torch::log_softmax(x.to(torch::kFloat32), -1).gather(-1, ids).squeeze(-1);
    auto r = torch::exp(lp - old);
    auto l = torch::max(-adv * r, -adv * torch::clamp(r, 0.8, 1.28));
    auto loss = (l * mask).sum() / mask.sum().clamp_min(1.0);
    loss.backward();
    benchmark::DoNotOptimize(x.grad().data_ptr());
  }
  st.SetBytesProcessed(st.iterations() * N * V * static_cast<std::int64_t>(2 * sizeof(T)));
  st.counters["threads"] = threads();
}
#endif

void shapes(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {4096, 16384})
    for (std::int64_t v : {32768, 151936}) b->Args({n, v});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
void probe_shapes(benchmark::internal::Benchmark* b) {
  b->Args({4096, 151936})->Unit(benchmark::kMillisecond)->UseRealTime();
}
/// The issue-15 shape: probes and kernels at 4096 x 32768 (read / read+write / exp floor next to
/// the forward and the fused step in one run).
void floor_shapes(benchmark::internal::Benchmark* b) {
  b->Args({4096, 32768})->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_probe_read)->Apply(probe_shapes)->Apply(floor_shapes);
BENCHMARK(BM_probe_read_write)->Apply(probe_shapes)->Apply(floor_shapes);
BENCHMARK(BM_probe_exp)->Apply(floor_shapes);
BENCHMARK(BM_ours_forward<float>)->Apply(shapes);
BENCHMARK(BM_ours_forward<grpo::bfloat16>)->Apply(shapes);
BENCHMARK(BM_naive_forward<float>)->Apply(shapes);
BENCHMARK(BM_naive_forward<grpo::bfloat16>)->Apply(shapes);
BENCHMARK(BM_ours_fused_grpo<float>)->Apply(shapes);
BENCHMARK(BM_ours_fused_grpo<grpo::bfloat16>)->Apply(shapes);
BENCHMARK(BM_ours_fused_grpo<grpo::bfloat16, grpo::fused_pipeline::on>)->Apply(floor_shapes);
BENCHMARK(BM_ours_fused_grpo<grpo::bfloat16, grpo::fused_pipeline::off>)->Apply(floor_shapes);
#if GRPO_HAVE_TORCH
BENCHMARK(BM_torch_forward<float>)->Apply(shapes);
BENCHMARK(BM_torch_forward<grpo::bfloat16>)->Apply(shapes);
BENCHMARK(BM_torch_fused_grpo<float>)->Apply(shapes);
BENCHMARK(BM_torch_fused_grpo<grpo::bfloat16>)->Apply(shapes);
#endif

BENCHMARK_MAIN();
