// SPDX-License-Identifier: Apache-2.0
// Distillation loss benchmarks. Every benchmark reports bytes processed as the MINIMUM memory
// traffic of the operation (dense KL: two reads of the logits and one write of the gradient per
// element), so "bytes_per_second" divided by the streaming-read probe's figure is the fraction of
// the memory bandwidth reached. The libtorch-eager peer (log_softmax + kl_div + backward) runs in
// the same binary with the same thread count. Arguments: {tokens, vocab}.
// BM_probe_exp_pair is the compute floor of the dense rows (two exps per logit pair), the
// reference of the bf16 rows.
//
// Threads: GRPO_BENCH_THREADS (default 1) for our OpenMP loop and torch::set_num_threads alike.
// Buffers are 64-byte aligned, as torch's CPU allocator aligns tensors (the gradient rows then
// take non-temporal stores); BM_ours_dense_unaligned measures a gradient buffer 16 bytes off.
#include <distill/distill.hpp>

#include <benchmark/benchmark.h>

#include "../common/bench_probe_exp.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(GRPO_BENCH_WITH_TORCH)
#include <torch/torch.h>
#endif

namespace gd = grpo::distill;
using grpo::index_t;

namespace {

int bench_threads() {
  const char* e = std::getenv("GRPO_BENCH_THREADS");
  return e ? std::max(1, std::atoi(e)) : 1;
}

void set_threads() {
#if defined(_OPENMP)
  omp_set_num_threads(bench_threads());
#endif
#if defined(GRPO_BENCH_WITH_TORCH)
  torch::set_num_threads(bench_threads());
#endif
}

/// 64-byte aligned storage (torch's CPU allocator alignment).
template <class T>
struct aligned64 {
  using value_type = T;
  aligned64() = default;
  template <class U>
  aligned64(const aligned64<U>&) noexcept {}
  T* allocate(std::size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { std::free(p); }
  template <class U>
  bool operator==(const aligned64<U>&) const noexcept {
    return true;
  }
};
template <class T>
using avec = std::vector<T, aligned64<T>>;

template <class T>
avec<T> random_logits(std::size_t n, std::uint32_t seed, float scale) {
  avec<T> v(n);
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, scale);
  for (auto& x : v) x = grpo::narrow<T>(d(gen));
  return v;
}

// ---------------------------------------------------------------------------------------------
// Bandwidth probes: a streaming read (sum of floats) and a streaming read + write (scale copy),
// on GRPO_BENCH_THREADS threads like the kernels (contiguous blocks per thread), so that a
// 2-thread kernel is compared with the 2-thread bandwidth.

void BM_probe_stream_read(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  avec<float> a(n, 1.0f);
  constexpr std::size_t blk = 4096;
  const auto blocks = static_cast<std::ptrdiff_t>(n / blk);
  set_threads();
  for (auto _ : state) {
    float s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s)
    for (std::ptrdiff_t b = 0; b < blocks; ++b) {
      const float* p = a.data() + static_cast<std::size_t>(b) * blk;
      float acc[16] = {};
      for (std::size_t i = 0; i < blk; i += 16)
        for (int k = 0; k < 16; ++k) acc[k] += p[i + k];
      for (float v : acc) s += v;
    }
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * sizeof(float));
  state.counters["threads"] = bench_threads();
}
BENCHMARK(BM_probe_stream_read)->Arg(1 << 28)->Unit(benchmark::kMillisecond);

void BM_probe_stream_read_write(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  avec<float> a(n, 1.0f), b(n);
  set_threads();
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(n); ++i)
      b[static_cast<std::size_t>(i)] = 0.5f * a[static_cast<std::size_t>(i)];
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * 2 * sizeof(float));
  state.counters["threads"] = bench_threads();
}
BENCHMARK(BM_probe_stream_read_write)->Arg(1 << 27)->Unit(benchmark::kMillisecond);

// The compute floor of a dense divergence row pair: TWO exponentials per logit pair (q needs
// exp of the student logit, p of the teacher's; pass 1 computes each once and the later passes
// reuse them from the per-thread cache), with the vocabulary sweeps' exp
// (grpo::vocab::exp_probe on the active path: one exp per element of an L1-resident block,
// bench_logprob's BM_probe_exp: the same loop, ../common/bench_probe_exp.hpp) over 2 x tokens x
// vocab elements. For bf16 rows the memory traffic (2 bytes per element) is below this floor on
// this class of machine, so the bf16 rows compare with it. Arguments: {tokens, vocab}.
void BM_probe_exp_pair(benchmark::State& state) {
  set_threads();
  grpo_bench::probe_exp(state, 2 * state.range(0) * state.range(1));
}
BENCHMARK(BM_probe_exp_pair)->Args({4096, 32768})->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------------------------
// Ours: fused dense divergence, value + gradient written (gradient in the logits' dtype).

template <class T, gd::divergence K, int GradOffsetBytes = 0>
void BM_ours_dense(benchmark::State& state) {
  set_threads();
  const index_t N = state.range(0), V = state.range(1);
  const auto s = random_logits<T>(static_cast<std::size_t>(N * V), 1, 2.0f);
  const auto u = random_logits<T>(static_cast<std::size_t>(N * V), 2, 2.0f);
  constexpr std::size_t off = GradOffsetBytes / sizeof(T);
  avec<T> gbuf(static_cast<std::size_t>(N * V) + 64);
  T* g = gbuf.data() + off;
  gd::distill_options o;
  o.kind = K;
  o.temperature = 0.9;
  for (auto _ : state) {
    const auto r =
        gd::divergence_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(u.data(), {N, V}),
                            grpo::make_view(g, {N, V}), o);
    benchmark::DoNotOptimize(r.loss);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * N * V * 3 *
                          static_cast<std::int64_t>(sizeof(T)));
  state.counters["threads"] = bench_threads();
}

template <class T>
void BM_ours_sft(benchmark::State& state) {
  set_threads();
  const index_t N = state.range(0), V = state.range(1);
  const auto s = random_logits<T>(static_cast<std::size_t>(N * V), 1, 2.0f);
  std::vector<std::int64_t> y(static_cast<std::size_t>(N));
  for (index_t i = 0; i < N; ++i) y[i] = (i * 7919) % V;
  avec<T> g(static_cast<std::size_t>(N * V));
  for (auto _ : state) {
    const auto r = gd::sft_loss(grpo::make_view(s.data(), {N, V}), y,
                                grpo::make_view(g.data(), {N, V}), gd::sft_options{});
    benchmark::DoNotOptimize(r.loss);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * N * V * 2 *
                          static_cast<std::int64_t>(sizeof(T)));
}

template <class T>
void BM_ours_topk_tail(benchmark::State& state) {
  set_threads();
  const index_t N = state.range(0), V = state.range(1), K = 64;
  const auto s = random_logits<T>(static_cast<std::size_t>(N * V), 1, 2.0f);
  std::vector<float> tl(static_cast<std::size_t>(N * K));
  std::vector<std::int32_t> ids(static_cast<std::size_t>(N * K));
  for (index_t i = 0; i < N; ++i)
    for (index_t j = 0; j < K; ++j) {
      ids[i * K + j] = static_cast<std::int32_t>((i * 131 + j * 977) % V);
      tl[i * K + j] = -4.5f - 0.05f * static_cast<float>(j);  // listed mass about 0.21
    }
  avec<T> g(static_cast<std::size_t>(N * V));
  gd::topk_options o;
  o.convention = gd::topk_convention::tail_bucket;
  for (auto _ : state) {
    const auto r =
        gd::topk_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(tl.data(), {N, K}),
                      grpo::make_view(ids.data(), {N, K}), grpo::make_view(g.data(), {N, V}), o);
    benchmark::DoNotOptimize(r.loss);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * N * V * 2 *
                          static_cast<std::int64_t>(sizeof(T)));
}

#if defined(GRPO_BENCH_WITH_TORCH)
// libtorch eager, as a user writes it: log_softmax of both, kl_div(log_target) batchmean, backward.
template <class T>
void BM_torch_eager_forward_kl(benchmark::State& state) {
  set_threads();
  const index_t N = state.range(0), V = state.range(1);
  const auto dt = std::is_same_v<T, float> ? torch::kFloat32 : torch::kBFloat16;
  torch::manual_seed(0);
  auto s = (torch::randn({N, V}) * 2.0).to(dt);
  auto u = (torch::randn({N, V}) * 2.0).to(dt);
  const double T_ = 0.9;
  for (auto _ : state) {
    auto sl = s.detach().requires_grad_(true);
    auto lq = torch::log_softmax(sl / T_, -1);
    auto lp = torch::log_softmax(u / T_, -1);
    auto loss = torch::kl_div(lq, lp, at::Reduction::Sum, /*log_target=*/true) / N;
    loss.backward();
    benchmark::DoNotOptimize(sl.grad().data_ptr());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * N * V * 3 *
                          static_cast<std::int64_t>(sizeof(T)));
  state.counters["threads"] = bench_threads();
}
#endif

}  // namespace

#define GRPO_DENSE_ARGS ->Args({4096, 32768})->Args({4096, 151936})->Unit(benchmark::kMillisecond)
BENCHMARK(BM_ours_dense<float, gd::divergence::forward_kl>) GRPO_DENSE_ARGS;
BENCHMARK(BM_ours_dense<grpo::bfloat16, gd::divergence::forward_kl>) GRPO_DENSE_ARGS;
BENCHMARK(BM_ours_dense<float, gd::divergence::forward_kl, 16>)
    ->Name("BM_ours_dense_unaligned<float, gd::divergence::forward_kl>")
    ->Args({4096, 32768})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ours_dense<float, gd::divergence::reverse_kl>) GRPO_DENSE_ARGS;
BENCHMARK(BM_ours_dense<grpo::bfloat16, gd::divergence::reverse_kl>)
    ->Args({4096, 32768})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ours_dense<grpo::bfloat16, gd::divergence::jsd>) GRPO_DENSE_ARGS;
BENCHMARK(BM_ours_dense<float, gd::divergence::jsd>)
    ->Args({4096, 32768})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ours_sft<grpo::bfloat16>)
    ->Args({4096, 32768})
    ->Args({4096, 151936})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ours_topk_tail<grpo::bfloat16>)->Args({4096, 32768})->Unit(benchmark::kMillisecond);
#if defined(GRPO_BENCH_WITH_TORCH)
// 4096 x 151936 eager needs ~5 fp32 N x V temporaries (> 12 GB): the large vocabulary runs with
// 512 tokens (bytes_per_second stays comparable, the ratio is per element).
BENCHMARK(BM_torch_eager_forward_kl<float>)
    ->Args({4096, 32768})
    ->Args({512, 151936})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_torch_eager_forward_kl<grpo::bfloat16>)
    ->Args({4096, 32768})
    ->Args({512, 151936})
    ->Unit(benchmark::kMillisecond);
#endif

BENCHMARK_MAIN();
