// SPDX-License-Identifier: Apache-2.0
// CUDA benchmarks of the hot paths against the device's own copy bandwidth, measured in the same
// binary (cudaMemcpy device-to-device, bytes read + written):
//   - forward selective log-softmax (log p, lse, entropy) on [N, V] bf16 logits,
//   - the fused GRPO step (forward + loss + bf16 gradient into the logits' shape, DAPO preset),
//   - the dense forward-KL distillation (student and teacher bf16, bf16 gradient),
// over V in {32000, 65536, 128256, 151936, 256000} (N = 8192 tokens by default; GRPO_BENCH_TOKENS
// overrides). Times are cudaEvent intervals around one launch (UseManualTime), after a warm-up
// launch outside the timed loop; bytes processed count the minimal HBM traffic (logits read once,
// gradient written once), so bytes_per_second / copy bandwidth is the fraction of the roofline.
// The PyTorch eager / torch.compile equivalents are timed by scripts/gpu_peer_bench.py.
#include <grpo/cuda/distill.cuh>
#include <grpo/cuda/fused_grpo.cuh>
#include <grpo/cuda/logprob.cuh>
#include <grpo/presets.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using grpo::index_t;

index_t tokens() {
  const char* s = std::getenv("GRPO_BENCH_TOKENS");
  return s ? std::atoll(s) : 8192;
}

/// Owning device allocation (benchmark helper; aborts the benchmark on failure).
template <class T>
struct dbuf {
  T* p = nullptr;
  explicit dbuf(std::size_t n) {
    if (cudaMalloc(&p, sizeof(T) * (n ? n : 1)) != cudaSuccess) p = nullptr;
  }
  dbuf(const dbuf&) = delete;
  ~dbuf() {
    if (p) cudaFree(p);
  }
};

/// Deterministic pseudo-normal fill (sum of 4 uniforms from a hash), scale 2: logits of a typical
/// language-model row, no host round trip.
template <class T>
__global__ void fill_logits(T* x, std::size_t n, unsigned seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    unsigned h = static_cast<unsigned>(i) * 2654435761u ^ seed ^ static_cast<unsigned>(i >> 32);
    float s = 0.0f;
    for (int k = 0; k < 4; ++k) {
      h ^= h >> 13;
      h *= 0x5bd1e995u;
      h ^= h >> 15;
      s += static_cast<float>(h & 0xffffff) / 16777216.0f;
    }
    x[i] = grpo::narrow<T>(2.0f * (s - 2.0f) * 1.7320508f);
  }
}
__global__ void fill_ids(std::int64_t* y, index_t n, index_t V) {
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    y[i] = (i * 7919) % V;
}
__global__ void fill_value(float* x, index_t n, float v) {
  for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
       i += index_t(gridDim.x) * blockDim.x)
    x[i] = v;
}

/// Times `launch` with cudaEvents: one warm-up call, then one launch per iteration.
template <class F>
void timed_loop(benchmark::State& st, F&& launch, double bytes) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  if (launch() != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) {
    st.SkipWithError("launch failed");
    return;
  }
  for (auto _ : st) {
    cudaEventRecord(a);
    const cudaError_t e = launch();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    if (e != cudaSuccess) {
      st.SkipWithError(cudaGetErrorString(e));
      break;
    }
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, a, b);
    st.SetIterationTime(ms / 1e3);
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(bytes) * st.iterations());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
}

/// Device copy bandwidth probe: cudaMemcpy D2D of 2 GiB; bytes = read + write.
void BM_copy_d2d(benchmark::State& st) {
  const std::size_t n = std::size_t(1) << 31;
  dbuf<unsigned char> src(n), dst(n);
  if (!src.p || !dst.p) {
    st.SkipWithError("cudaMalloc failed");
    return;
  }
  cudaMemset(src.p, 1, n);
  timed_loop(
      st, [&] { return cudaMemcpyAsync(dst.p, src.p, n, cudaMemcpyDeviceToDevice); },
      2.0 * static_cast<double>(n));
  st.counters["role"] = 0;  // marks the probe for scripts/gpu-check.sh
}

/// Forward log p + lse + entropy, [N, V] bf16.
void BM_logprob_forward_bf16(benchmark::State& st) {
  const index_t N = tokens(), V = st.range(0);
  const auto NV = static_cast<std::size_t>(N * V);
  dbuf<grpo::bfloat16> x(NV);
  dbuf<std::int64_t> y(static_cast<std::size_t>(N));
  dbuf<float> lp(N), lse(N), ent(N);
  if (!x.p) {
    st.SkipWithError("cudaMalloc failed");
    return;
  }
  fill_logits<<<1024, 256>>>(x.p, NV, 1u);
  fill_ids<<<64, 256>>>(y.p, N, V);
  std::size_t wsb = 0;
  const auto X = grpo::make_view(static_cast<const grpo::bfloat16*>(x.p), {N, V});
  const auto Y = grpo::make_view(static_cast<const std::int64_t*>(y.p), {N});
  (void)grpo::cuda::selective_log_softmax(X, Y, {}, {}, {}, 1.0f, -100, nullptr, wsb);
  dbuf<unsigned char> ws(wsb);
  timed_loop(
      st,
      [&] {
        return grpo::cuda::selective_log_softmax(
            X, Y, grpo::make_view(lp.p, {N}), grpo::make_view(lse.p, {N}),
            grpo::make_view(ent.p, {N}), 1.0f, -100, ws.p, wsb);
      },
      static_cast<double>(NV) * 2.0);
}

/// Fused GRPO step (DAPO preset + k3 KL), bf16 logits -> bf16 gradient (separate buffer).
/// range(1): row-cache policy (grpo::cuda::row_cache; 0 = automatic).
void BM_fused_grpo_bf16(benchmark::State& st) {
  const index_t N = tokens(), V = st.range(0);
  grpo::cuda::fused_grpo_options opt;
  opt.cache = static_cast<grpo::cuda::row_cache>(st.range(1));
  const index_t B = N / 1024 > 0 ? N / 1024 : 1, T = N / B;
  const auto NV = static_cast<std::size_t>(B * T * V);
  dbuf<grpo::bfloat16> x(NV), g(NV);
  dbuf<std::int64_t> y(static_cast<std::size_t>(B * T));
  dbuf<float> old_lp(B * T), ref_lp(B * T), adv(B * T), mask(B * T), lp(B * T), ent(B * T);
  dbuf<double> sc(4);
  if (!x.p || !g.p) {
    st.SkipWithError("cudaMalloc failed");
    return;
  }
  fill_logits<<<1024, 256>>>(x.p, NV, 2u);
  fill_ids<<<64, 256>>>(y.p, B * T, V);
  fill_value<<<64, 256>>>(old_lp.p, B * T, -12.0f);
  fill_value<<<64, 256>>>(ref_lp.p, B * T, -12.1f);
  fill_value<<<64, 256>>>(adv.p, B * T, 0.5f);
  fill_value<<<64, 256>>>(mask.p, B * T, 1.0f);
  auto lo = grpo::preset("trl_dapo");
  lo.kl_coef = 0.04;
  grpo::cuda::loss_params p;
  if (!grpo::cuda::make_loss_params(lo, p)) {
    st.SkipWithError("make_loss_params failed");
    return;
  }
  grpo::cuda::device_loss_batch<float, float> db;
  auto v2 = [&](float* q) { return grpo::make_view(static_cast<const float*>(q), {B, T}); };
  db.old_logp = v2(old_lp.p);
  db.ref_logp = v2(ref_lp.p);
  db.advantages = v2(adv.p);
  db.mask = v2(mask.p);
  const auto X = grpo::make_view(static_cast<const grpo::bfloat16*>(x.p), {B, T, V});
  const auto Y = grpo::make_view(static_cast<const std::int64_t*>(y.p), {B, T});
  const auto G = grpo::make_view(g.p, {B, T, V});
  std::size_t wsb = 0;
  (void)grpo::cuda::fused_grpo_step(p, X, Y, db, G, grpo::make_view(lp.p, {B, T}),
                                    grpo::make_view(ent.p, {B, T}), sc.p, opt, nullptr, wsb);
  dbuf<unsigned char> ws(wsb);
  timed_loop(
      st,
      [&] {
        return grpo::cuda::fused_grpo_step(p, X, Y, db, G, grpo::make_view(lp.p, {B, T}),
                                           grpo::make_view(ent.p, {B, T}), sc.p, opt, ws.p, wsb);
      },
      static_cast<double>(NV) * 4.0);
}

/// Dense forward-KL distillation: bf16 student + bf16 teacher read, bf16 gradient written.
void BM_distill_fkl_bf16(benchmark::State& st) {
  const index_t N = tokens(), V = st.range(0);
  const auto NV = static_cast<std::size_t>(N * V);
  dbuf<grpo::bfloat16> s(NV), u(NV), g(NV);
  dbuf<double> loss(1);
  if (!s.p || !u.p || !g.p) {
    st.SkipWithError("cudaMalloc failed");
    return;
  }
  fill_logits<<<1024, 256>>>(s.p, NV, 3u);
  fill_logits<<<1024, 256>>>(u.p, NV, 4u);
  grpo::cuda::distill_params p;
  (void)grpo::cuda::make_distill_params(grpo::distill::distill_options{}, p);
  const auto S = grpo::make_view(static_cast<const grpo::bfloat16*>(s.p), {N, V});
  const auto U = grpo::make_view(static_cast<const grpo::bfloat16*>(u.p), {N, V});
  const auto G = grpo::make_view(g.p, {N, V});
  std::size_t wsb = 0;
  (void)grpo::cuda::dense_distill(p, S, U, G, nullptr, loss.p, nullptr, nullptr, wsb);
  dbuf<unsigned char> ws(wsb);
  timed_loop(
      st,
      [&] { return grpo::cuda::dense_distill(p, S, U, G, nullptr, loss.p, nullptr, ws.p, wsb); },
      static_cast<double>(NV) * 6.0);
}

void vocabs(benchmark::internal::Benchmark* b) {
  for (long v : {32000L, 65536L, 128256L, 151936L, 256000L}) b->Args({v, 0});
  b->UseManualTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_copy_d2d)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_logprob_forward_bf16)->Apply(vocabs);
BENCHMARK(BM_fused_grpo_bf16)->Apply(vocabs);
// Row-cache policies at the headline shape (1 = whole_rows, 2 = prefix, 3 = none).
BENCHMARK(BM_fused_grpo_bf16)
    ->Args({151936, 2})
    ->Args({151936, 3})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_distill_fkl_bf16)->Arg(151936)->UseManualTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
