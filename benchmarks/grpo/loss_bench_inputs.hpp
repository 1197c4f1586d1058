// SPDX-License-Identifier: Apache-2.0
/// @file loss_bench_inputs.hpp
/// @brief The loss benchmarks' workload (bench_loss, bench_loss_general): per-sequence pass / fail
///        rewards, right-padded masks 25-100 % valid, float log-probs around -2 with old / ref
///        within +-0.3, plus the optional streams of the general engine's options (sampler
///        log-probs, entropies, the entropy gradient; made on first use, so that bench_loss does not
///        allocate them), and the streaming probe over a given set of streams.
#pragma once

#include <grpo/loss/options.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace grpo_bench {

constexpr long kGroup = 16;  ///< completions per prompt

/// One shape's inputs. lp / old / ref / mask / rewards are bench_loss.cpp's generator's (same
/// draw order); the extra streams (empty until add_extra_streams) come from a second generator.
struct loss_inputs {
  long B = 0, T = 0;
  std::vector<float> lp, old, ref, mask, grad, rewards, adv;
  std::vector<float> smp, ent, grad_ent;  ///< sampler log-probs, entropies, dL/dH (extras)
};

/// The extra streams of `in` (no-op when present): sampler log-probs within +-0.2 of old
/// (rollout / training mismatch), token entropies in [0, 4) nats, the entropy gradient.
inline void add_extra_streams(loss_inputs& in) {
  if (!in.smp.empty()) return;
  const auto n = static_cast<std::size_t>(in.B * in.T);
  std::mt19937 g2(2);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  in.smp.resize(n);
  in.ent.resize(n);
  in.grad_ent.resize(n);
  for (std::size_t k = 0; k < n; ++k) {
    in.smp[k] = in.old[k] - 0.2f * u(g2);
    in.ent[k] = 2.f + 2.f * u(g2);
  }
}

/// The inputs of one shape; `extras`: with the extra streams.
inline std::unique_ptr<loss_inputs> make_loss_inputs(long B, long T, bool extras = true) {
  auto in = std::make_unique<loss_inputs>();
  in->B = B;
  in->T = T;
  const auto n = static_cast<std::size_t>(B * T);
  in->lp.resize(n);
  in->old.resize(n);
  in->ref.resize(n);
  in->mask.resize(n);
  in->grad.resize(n);
  in->rewards.resize(static_cast<std::size_t>(B));
  in->adv.resize(static_cast<std::size_t>(B));
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (long i = 0; i < B; ++i) {
    in->rewards[static_cast<std::size_t>(i)] = u(g) > 0.f ? 1.f : 0.f;  // pass / fail reward
    // right-padded completions, 25-100 % of T valid
    const long len = T / 4 + static_cast<long>((u(g) + 1.f) * 0.375f * static_cast<float>(T));
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      in->lp[k] = -2.f + u(g);
      in->old[k] = in->lp[k] - 0.3f * u(g);
      in->ref[k] = in->lp[k] - 0.3f * u(g);
      in->mask[k] = t < len ? 1.f : 0.f;
    }
  }
  if (extras) add_extra_streams(*in);
  return in;
}

/// Both shapes stay resident so that switching benchmarks does not regenerate; the extra streams
/// are added on the first call that asks for them.
inline loss_inputs& shared_loss_inputs(long B, long T, bool extras = true) {
  static std::map<std::pair<long, long>, std::unique_ptr<loss_inputs>> cache;
  auto& slot = cache[{B, T}];
  if (!slot) slot = make_loss_inputs(B, T, extras);
  if (extras) add_extra_streams(*slot);
  return *slot;
}

/// The batch every loss benchmark starts from: log-probs, old / ref log-probs, the mask and the
/// per-sequence advantages of `in` (the callers add their optional streams).
inline grpo::loss_batch<float, float> base_batch(loss_inputs& in) {
  grpo::loss_batch<float, float> b;
  b.logp = grpo::make_view(in.lp.data(), {in.B, in.T});
  b.old_logp = grpo::make_view(in.old.data(), {in.B, in.T});
  b.ref_logp = grpo::make_view(in.ref.data(), {in.B, in.T});
  b.mask = grpo::make_view(in.mask.data(), {in.B, in.T});
  b.advantages = grpo::broadcast_rows(in.adv.data(), in.B, in.T);
  return b;
}

/// Outputs: dL/dlogp into `in.grad` (the callers add dL/dH where they write it).
inline grpo::loss_outputs<float> base_outputs(loss_inputs& in) {
  grpo::loss_outputs<float> out;
  out.grad_logp = grpo::make_view(in.grad.data(), {in.B, in.T});
  return out;
}

/// OpenMP threads from the benchmark's third argument.
inline void set_threads(benchmark::State& st) {
#if defined(_OPENMP)
  omp_set_num_threads(static_cast<int>(st.range(2)));
#else
  (void)st;
#endif
}

/// Items = tokens; bytes = (reads + writes) float streams per token.
inline void report(benchmark::State& st, const loss_inputs& in, int streams) {
  const auto tokens = static_cast<int64_t>(in.B * in.T);
  st.SetItemsProcessed(st.iterations() * tokens);
  st.SetBytesProcessed(st.iterations() * tokens * static_cast<int64_t>(streams * sizeof(float)));
}

/// One streaming pass: reads `nr` of (lp, old, ref, mask, smp/ent) and writes grad (and grad_ent
/// when two_out), elementwise, threaded over rows as the engines.
inline void stream_pass(benchmark::State& st, int nr, bool two_out) {
  auto& in = shared_loss_inputs(st.range(0), st.range(1), nr != 4 || two_out);
  set_threads(st);
  const long B = in.B, T = in.T;
  const float *a = in.lp.data(), *b = in.old.data(), *c = in.ref.data(), *d = in.mask.data();
  const float* e = in.smp.data();
  float *g = in.grad.data(), *h = in.grad_ent.data();
  for (auto _ : st) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (long i = 0; i < B; ++i) {
      const long o = i * T;
      if (nr == 4) {
        for (long t = 0; t < T; ++t) g[o + t] = a[o + t] + b[o + t] + c[o + t] + d[o + t];
      } else if (!two_out) {
        for (long t = 0; t < T; ++t)
          g[o + t] = a[o + t] + b[o + t] + c[o + t] + d[o + t] + e[o + t];
      } else {
        for (long t = 0; t < T; ++t) {
          g[o + t] = a[o + t] + b[o + t] + c[o + t] + d[o + t] + e[o + t];
          h[o + t] = d[o + t] * e[o + t];
        }
      }
    }
    benchmark::DoNotOptimize(g);
    benchmark::ClobberMemory();
  }
  report(st, in, nr + (two_out ? 2 : 1));
}

/// {sequences, tokens, threads}: 8192 x 4096 (33.5M tokens) and 4096 x 2048 (8.4M), 1 and 2
/// threads (1 only without OpenMP).
inline void shapes(benchmark::internal::Benchmark* b) {
  for (long th : {1L, 2L}) {
#if !defined(_OPENMP)
    if (th > 1) continue;
#endif
    b->Args({512 * kGroup, 4096, th});
    b->Args({256 * kGroup, 2048, th});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
}

}  // namespace grpo_bench
