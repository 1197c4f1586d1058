// SPDX-License-Identifier: Apache-2.0
// Full GRPO loss forward + d loss / d logp over realistic shapes (TRL "dapo" with beta = 0.04,
// k3 KL, clip 0.2/0.28): grpo::compute_loss_into (one CPU thread) vs the same computation written
// with libtorch ops (eager forward, autograd backward) in the same binary, plus a streaming-read
// probe over the same input bytes, so a fraction of the machine's read bandwidth can be read off.
//
// Shapes: {sequences, tokens}. 4096 x 2048 = 8.4M tokens (256 prompts x 16 samples x 2048); inputs
// in float32 (logp, old, ref, mask: 16 B/token read, grad 4 B/token written). The issue's
// 512x16x4096 (33.5M tokens) fits in memory for our path but libtorch eager materialises ~15
// temporaries of the same size, so the comparison uses the 8.4M-token shape.
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#if defined(GRPO_BENCH_HAS_TORCH)
#include <torch/torch.h>
#endif

namespace {

struct inputs {
  long B = 0, T = 0;
  std::vector<float> lp, old, ref, mask, adv, grad;
};

inputs make(long B, long T) {
  inputs in;
  in.B = B;
  in.T = T;
  const auto n = static_cast<std::size_t>(B * T);
  in.lp.resize(n);
  in.old.resize(n);
  in.ref.resize(n);
  in.mask.resize(n);
  in.grad.resize(n);
  in.adv.resize(static_cast<std::size_t>(B));
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (long i = 0; i < B; ++i) {
    in.adv[static_cast<std::size_t>(i)] = u(g);
    const long len = T / 4 + static_cast<long>((u(g) + 1.f) * 0.375f * static_cast<float>(T));
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      in.lp[k] = -2.f + u(g);
      in.old[k] = in.lp[k] - 0.3f * u(g);
      in.ref[k] = in.lp[k] - 0.3f * u(g);
      in.mask[k] = t < len ? 1.f : 0.f;
    }
  }
  return in;
}

inputs& shared(long B, long T) {
  static inputs cache;
  if (cache.B != B || cache.T != T) cache = make(B, T);
  return cache;
}

grpo::loss_options options() {
  grpo::trl_args a;
  a.loss_type = "dapo";
  a.beta = 0.04;
  a.epsilon_high = 0.28;
  return grpo::from_trl(a);
}

void report(benchmark::State& st, const inputs& in) {
  const auto tokens = static_cast<int64_t>(in.B * in.T);
  st.SetItemsProcessed(st.iterations() * tokens);
  // bytes that must move: 4 float inputs read + 1 float gradient written per token
  st.SetBytesProcessed(st.iterations() * tokens * static_cast<int64_t>(5 * sizeof(float)));
}

void BM_grpo_loss(benchmark::State& st) {
  auto& in = shared(st.range(0), st.range(1));
  const auto o = options();
  grpo::loss_batch<float, float> b;
  b.logp = grpo::make_view(in.lp.data(), {in.B, in.T});
  b.old_logp = grpo::make_view(in.old.data(), {in.B, in.T});
  b.ref_logp = grpo::make_view(in.ref.data(), {in.B, in.T});
  b.mask = grpo::make_view(in.mask.data(), {in.B, in.T});
  b.advantages = grpo::broadcast_rows(in.adv.data(), in.B, in.T);
  grpo::loss_outputs<float> out;
  out.grad_logp = grpo::make_view(in.grad.data(), {in.B, in.T});
  for (auto _ : st) {
    auto r = grpo::compute_loss_into(o, b, out);
    benchmark::DoNotOptimize(r.loss);
    benchmark::ClobberMemory();
  }
  report(st, in);
}

void BM_stream_read(benchmark::State& st) {
  auto& in = shared(st.range(0), st.range(1));
  const std::size_t n = in.lp.size();
  for (auto _ : st) {
    float acc = 0.f;
    const float *a = in.lp.data(), *b = in.old.data(), *c = in.ref.data(), *d = in.mask.data();
    float* g = in.grad.data();
    for (std::size_t k = 0; k < n; ++k) {
      const float s = a[k] + b[k] + c[k] + d[k];
      g[k] = s;
      acc += s;
    }
    benchmark::DoNotOptimize(acc);
    benchmark::ClobberMemory();
  }
  report(st, in);
}

#if defined(GRPO_BENCH_HAS_TORCH)
void BM_torch_loss(benchmark::State& st) {
  auto& in = shared(st.range(0), st.range(1));
  at::set_num_threads(static_cast<int>(st.range(2)));
  const auto opt = torch::TensorOptions().dtype(torch::kFloat32);
  auto lp = torch::from_blob(in.lp.data(), {in.B, in.T}, opt).clone().requires_grad_(true);
  auto old = torch::from_blob(in.old.data(), {in.B, in.T}, opt);
  auto ref = torch::from_blob(in.ref.data(), {in.B, in.T}, opt);
  auto mask = torch::from_blob(in.mask.data(), {in.B, in.T}, opt);
  auto adv = torch::from_blob(in.adv.data(), {in.B, 1}, opt);
  const double beta = 0.04, lo = 0.8, hi = 1.28;
  for (auto _ : st) {
    lp.mutable_grad() = torch::Tensor();
    auto coef1 = torch::exp(lp - old);
    auto coef2 = torch::clamp(coef1, lo, hi);
    auto ptl = -torch::min(coef1 * adv, coef2 * adv);
    auto d = ref - lp;
    auto kl = torch::exp(d) - d - 1;
    ptl = ptl + beta * kl;
    auto loss = (ptl * mask).sum() / mask.sum().clamp_min(1.0);
    loss.backward();
    benchmark::DoNotOptimize(lp.grad().data_ptr());
  }
  report(st, in);
  at::set_num_threads(1);
}
#endif

}  // namespace

BENCHMARK(BM_grpo_loss)
    ->Args({512, 1024})
    ->Args({4096, 2048})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_stream_read)
    ->Args({512, 1024})
    ->Args({4096, 2048})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
#if defined(GRPO_BENCH_HAS_TORCH)
BENCHMARK(BM_torch_loss)
    ->Args({512, 1024, 1})
    ->Args({4096, 2048, 1})
    ->Args({4096, 2048, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
#endif
BENCHMARK_MAIN();
