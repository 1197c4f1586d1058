// SPDX-License-Identifier: Apache-2.0
/// @file parallel.hpp
/// @brief The one row loop of the CPU engines: OpenMP when compiled with it, one error channel
///        (the failure of the LOWEST failing row is rethrown, whatever the thread count), one
///        threshold for when threads pay.
///
/// Rows are independent and write only their own outputs, so results never depend on the number
/// of threads. Exceptions must not leave an OpenMP region: each row's exception is captured and
/// the one of the lowest row index is rethrown after the loop (deterministic error messages).
/// Built without exceptions, a failing precondition aborts (GRPO_ABORT) wherever it happens.
#pragma once

#include <grpo/core/config.hpp>

#include <exception>
#include <limits>
#include <mutex>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace grpo::par {

/// Rows x work per row below which a loop runs on one thread (thread start-up costs a few us).
#ifndef GRPO_PARALLEL_MIN_WORK
#define GRPO_PARALLEL_MIN_WORK (index_t{1} << 15)
#endif
inline constexpr index_t min_parallel_work = GRPO_PARALLEL_MIN_WORK;

/// How a loop is split over threads.
struct loop_options {
  int num_threads = 0;   ///< 0: the OpenMP default (OMP_NUM_THREADS or all cores)
  index_t work_per_row = min_parallel_work;  ///< elements per row (for the threshold)
  bool dynamic = false;  ///< dynamic schedule (rows of uneven cost)
};

/// The error channel: keeps the exception of the lowest failing row.
class first_failure {
 public:
  /// Call from a catch block: records std::current_exception() for row r if r is the lowest yet.
  void capture(index_t r) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    if (r < row_) {
      row_ = r;
      ex_ = std::current_exception();
    }
  }
  /// The lowest failing row, or -1.
  index_t row() const noexcept { return row_ == none ? -1 : row_; }
  /// Rethrows the recorded exception, if any.
  void rethrow_if_any() const {
    if (ex_) std::rethrow_exception(ex_);
  }

 private:
  static constexpr index_t none = std::numeric_limits<index_t>::max();
  std::mutex mu_;
  index_t row_ = none;
  std::exception_ptr ex_;
};

/// Number of threads a loop over n rows of `work_per_row` elements would use.
inline int threads_for(index_t n, const loop_options& o = {}) noexcept {
#if defined(_OPENMP)
  if (n < 2 || n * o.work_per_row < min_parallel_work) return 1;
  const int nt = o.num_threads > 0 ? o.num_threads : omp_get_max_threads();
  return nt < 1 ? 1 : nt;
#else
  (void)n;
  (void)o;
  return 1;
#endif
}

/// Runs row(i) for every i in [0, n). Threaded when threads_for(n, o) > 1. The exception of the
/// lowest failing row is the one that leaves (serially the loop stops there; threaded, the other
/// rows finish first). The outputs of a failed call are unspecified.
template <class F>
void for_each_row(index_t n, F&& row, const loop_options& o = {}) {
  const int nt = threads_for(n, o);
#if defined(_OPENMP) && GRPO_USE_EXCEPTIONS
  if (nt > 1) {
    first_failure err;
    if (o.dynamic) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
      for (index_t i = 0; i < n; ++i) {
        try {
          row(i);
        } catch (...) {
          err.capture(i);
        }
      }
    } else {
#pragma omp parallel for schedule(static) num_threads(nt)
      for (index_t i = 0; i < n; ++i) {
        try {
          row(i);
        } catch (...) {
          err.capture(i);
        }
      }
    }
    err.rethrow_if_any();
    return;
  }
#elif defined(_OPENMP)
  if (nt > 1) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (index_t i = 0; i < n; ++i) row(i);
    return;
  }
#else
  (void)nt;
#endif
  for (index_t i = 0; i < n; ++i) row(i);
}

/// Runs body(begin, end) on contiguous, ordered ranges of [0, n), one per thread, for loops that
/// carry state from one index to the next (pipelines). Same error channel as for_each_row (the
/// range with the lowest begin wins).
template <class F>
void for_each_range(index_t n, F&& body, const loop_options& o = {}) {
  const int nt = threads_for(n, o);
#if defined(_OPENMP)
  if (nt > 1) {
    first_failure err;
#pragma omp parallel num_threads(nt)
    {
      const auto T = static_cast<index_t>(omp_get_num_threads());
      const auto t = static_cast<index_t>(omp_get_thread_num());
      const index_t b = n * t / T, e = n * (t + 1) / T;
#if GRPO_USE_EXCEPTIONS
      try {
        if (b < e) body(b, e);
      } catch (...) {
        err.capture(b);
      }
#else
      if (b < e) body(b, e);
#endif
    }
    err.rethrow_if_any();
    return;
  }
#else
  (void)nt;
#endif
  if (n > 0) body(index_t{0}, n);
}

}  // namespace grpo::par
