// SPDX-License-Identifier: Apache-2.0
/// @file bench_probe_exp.hpp
/// @brief What every vocabulary benchmark shares without Eigen: the OpenMP thread count it
///        reports, the static per-thread split of the probes, and the exp compute-floor probe
///        (one exp per logit with the statistics sweep's exp), so that bench_logprob's
///        BM_probe_exp and bench_distill's BM_probe_exp_pair time the same loop.
///        benchmarks/logprob/bench_common.hpp adds the bandwidth probes (Eigen) on top.
#pragma once

#include <grpo/core/isa.hpp>
#include <grpo/vocab/engine.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace grpo_bench {

using grpo::index_t;

/// OpenMP threads the run uses (1 without OpenMP): the `threads` counter of every benchmark.
inline int threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// [begin, end) of thread t's static slice of n items over nt threads.
inline void slice(std::size_t n, int t, int nt, std::size_t& b, std::size_t& e) {
  b = n * static_cast<std::size_t>(t) / static_cast<std::size_t>(nt);
  e = n * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(nt);
}

/// [begin, end) of the calling thread's static slice of n items inside an OpenMP parallel region
/// (all of [0, n) outside one, or without OpenMP).
inline void thread_slice(std::size_t n, std::size_t& b, std::size_t& e) {
  int nt = 1, t = 0;
#if defined(_OPENMP)
  nt = omp_get_num_threads();
  t = omp_get_thread_num();
#endif
  slice(n, t, nt, b, e);
}

/// Compute-floor probe: n exponentials, one per logit, with the exp of the statistics sweep on
/// the active path (grpo::vocab::exp_probe: exp_fast on the packets, fast_exp_bounded on the
/// baseline) over an L1-resident 2048-float block per thread, so no memory traffic: the time the
/// forward would take if it did nothing but its exps. The block escapes before each call
/// (DoNotOptimize), so no build can hoist or fold the call: a -march build and a portable build
/// time the same work. Items processed: n (rounded down to whole blocks in the loop).
inline void probe_exp(benchmark::State& st, index_t n) {
  constexpr index_t blk = 2048;
  for (auto _ : st) {
    float s = 0.0f;
#pragma omp parallel reduction(+ : s)
    {
      alignas(64) float buf[blk];
      for (index_t j = 0; j < blk; ++j) buf[j] = -0.005f * static_cast<float>(j);
      std::size_t b = 0, e = 0;
      thread_slice(static_cast<std::size_t>(n / blk), b, e);
      for (std::size_t c = b; c < e; ++c) {
        benchmark::DoNotOptimize(buf);
        s += grpo::vocab::exp_probe(buf, blk);
      }
    }
    benchmark::DoNotOptimize(s);
  }
  st.SetItemsProcessed(st.iterations() * n);
  st.counters["threads"] = threads();
  st.counters["isa"] = static_cast<double>(grpo::active_isa());
}

}  // namespace grpo_bench
