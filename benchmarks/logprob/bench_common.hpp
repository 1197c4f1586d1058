// SPDX-License-Identifier: Apache-2.0
/// @file bench_common.hpp
/// @brief What the log-prob benchmarks share (bench_logprob.cpp, bench_fused_step.cpp): the thread
///        count they report and the machine probes their figures are read against (streaming
///        read, read + write, and the exp compute floor of the statistics sweep), so that a ratio
///        in docs/benchmarks.md means the same probe in every binary.
#pragma once

#include <grpo/core/isa.hpp>
#include <grpo/vocab/engine.hpp>

#include <benchmark/benchmark.h>
#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <memory>

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

/// Streaming-read probe over n floats: each thread sums its static slice with Eigen's vectorised,
/// multi-accumulator reduction, so the probe is bound by memory, not by a float add chain.
/// Bytes processed: n x 4.
inline void probe_read(benchmark::State& st, std::size_t n) {
  std::unique_ptr<float[]> a(new float[n]);
#pragma omp parallel for schedule(static)
  for (std::size_t k = 0; k < n; ++k) a[k] = 1.0f;
  for (auto _ : st) {
    double s = 0;
#pragma omp parallel reduction(+ : s)
    {
      int nt = 1, t = 0;
#if defined(_OPENMP)
      nt = omp_get_num_threads();
      t = omp_get_thread_num();
#endif
      std::size_t b = 0, e = 0;
      slice(n, t, nt, b, e);
      s += Eigen::Map<const Eigen::ArrayXf>(a.get() + b, static_cast<Eigen::Index>(e - b)).sum();
    }
    benchmark::DoNotOptimize(s);
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * n * sizeof(float)));
  st.counters["threads"] = threads();
}

/// Read + write probe over n floats (b = 0.5 a, static slices): what a pass that reads its input
/// and writes a same-sized output must move. Bytes processed: n x 8.
inline void probe_read_write(benchmark::State& st, std::size_t n) {
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]);
#pragma omp parallel for schedule(static)
  for (std::size_t k = 0; k < n; ++k) a[k] = b[k] = 1.0f;
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (std::size_t k = 0; k < n; ++k) b[k] = 0.5f * a[k];
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * n * 2 * sizeof(float)));
  st.counters["threads"] = threads();
}

/// Compute-floor probe: n exponentials, one per logit, with the exp of the statistics sweep on
/// the active path (grpo::vocab::exp_probe: exp_fast on the packets, fast_exp_bounded on the
/// baseline) over an L1-resident 2048-float block per thread, so no memory traffic: the time the
/// forward would take if it did nothing but its exps. The block escapes before each call
/// (DoNotOptimize), so no build can hoist or fold the call: a -march build and a portable build
/// time the same work.
inline void probe_exp(benchmark::State& st, index_t n) {
  constexpr index_t blk = 2048;
  for (auto _ : st) {
    float s = 0.0f;
#pragma omp parallel reduction(+ : s)
    {
      alignas(64) float buf[blk];
      for (index_t j = 0; j < blk; ++j) buf[j] = -0.005f * static_cast<float>(j);
      int nt = 1, t = 0;
#if defined(_OPENMP)
      nt = omp_get_num_threads();
      t = omp_get_thread_num();
#endif
      std::size_t b = 0, e = 0;
      slice(static_cast<std::size_t>(n / blk), t, nt, b, e);
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
