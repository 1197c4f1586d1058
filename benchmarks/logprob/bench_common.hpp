// SPDX-License-Identifier: Apache-2.0
/// @file bench_common.hpp
/// @brief What the log-prob benchmarks share (bench_logprob.cpp, bench_fused_step.cpp): the
///        machine probes their figures are read against, streaming read and read + write here
///        (Eigen), the exp compute floor and the thread split in ../common/bench_probe_exp.hpp
///        (shared with bench_distill), so that a ratio in docs/benchmarks.md means the same probe
///        in every binary.
#pragma once

#include "../common/bench_probe_exp.hpp"

#include <benchmark/benchmark.h>
#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace grpo_bench {

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
      std::size_t b = 0, e = 0;
      thread_slice(n, b, e);
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

}  // namespace grpo_bench
