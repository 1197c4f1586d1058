// SPDX-License-Identifier: Apache-2.0
/// @file batch.hpp
/// @brief Thread-pooled batch scoring (std::jthread pool) with deterministic output order: result i
///        always belongs to sample i, whatever the thread count or the scheduling.
#pragma once

#include <grpo/core/error.hpp>
#include <rewards/compose.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <stop_token>
#include <thread>
#include <vector>

namespace grpo::rewards {

/// A fixed pool of std::jthread workers running one parallel loop at a time. Indices are handed
/// out through an atomic counter (dynamic scheduling: code-execution samples vary by seconds), and
/// the calling thread works too. Destruction requests stop and joins (jthread).
class thread_pool {
 public:
  /// @param threads total threads including the caller; 0 -> std::thread::hardware_concurrency()
  explicit thread_pool(std::size_t threads = 0) {
    if (threads == 0) threads = std::max(1U, std::thread::hardware_concurrency());
    workers_.reserve(threads - 1);
    for (std::size_t t = 0; t + 1 < threads; ++t)
      workers_.emplace_back([this](std::stop_token st) { worker(st); });
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() {
    for (auto& w : workers_) w.request_stop();
    cv_.notify_all();
  }

  /// @return the number of threads that run a loop (workers + the caller).
  [[nodiscard]] std::size_t size() const noexcept { return workers_.size() + 1; }

  /// Calls f(i) for every i in [0, n) on the pool and waits. If calls throw, the exception of the
  /// smallest index is rethrown after all indices ran (so the outcome does not depend on timing).
  /// A call from inside a running loop of the same pool runs serially (no deadlock).
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    if (n == 0) return;
    if (current_pool() == this || workers_.empty() || n == 1) {
      run_serial(n, f);
      return;
    }
    std::lock_guard serial(submit_);  // one loop at a time
    // The job lives on this stack frame; workers reach it through job_ and the wait below keeps it
    // alive until every worker has left work() (active == 0) and every index was handed out.
    job j;
    j.n = n;
    j.body = [&f](std::size_t i) { f(i); };
    {
      std::lock_guard lk(m_);
      job_ = &j;
      ++generation_;
      ++j.active;  // the caller works too
    }
    cv_.notify_all();
    work(j);
    std::unique_lock lk(m_);
    done_cv_.wait(lk, [&] { return j.active == 0 && j.next.load() >= n; });
    job_ = nullptr;
    lk.unlock();
    if (j.error) std::rethrow_exception(j.error);
  }

 private:
  struct job {
    std::size_t n = 0;
    std::function<void(std::size_t)> body;
    std::atomic<std::size_t> next{0};
    std::size_t active = 0;  ///< threads inside work(), guarded by m_
    std::mutex err_m;
    std::size_t err_index = 0;
    std::exception_ptr error;
  };

  static const thread_pool*& current_pool() {
    thread_local const thread_pool* p = nullptr;
    return p;
  }

  template <class F>
  static void run_serial(std::size_t n, F& f) {
    std::exception_ptr first;
    for (std::size_t i = 0; i < n; ++i) {
      try {
        f(i);
      } catch (...) {
        if (!first) first = std::current_exception();
      }
    }
    if (first) std::rethrow_exception(first);
  }

  // Runs indices of j until none is left. The caller has already counted itself in j.active
  // (under m_, in the same critical section that found the job), so the submitting thread cannot
  // see active == 0 and destroy j while a worker is about to enter.
  void work(job& j) {
    const thread_pool* saved = current_pool();
    current_pool() = this;
    for (std::size_t i = j.next.fetch_add(1); i < j.n; i = j.next.fetch_add(1)) {
      try {
        j.body(i);
      } catch (...) {
        std::lock_guard lk(j.err_m);
        if (!j.error || i < j.err_index) {
          j.error = std::current_exception();
          j.err_index = i;
        }
      }
    }
    current_pool() = saved;
    {
      std::lock_guard lk(m_);
      --j.active;
    }
    done_cv_.notify_all();
  }

  // Worker loop: sleep until a new generation is posted (or stop is requested by ~jthread), join
  // the job, go back to sleep. A worker that wakes after the job finished sees job_ == nullptr.
  void worker(std::stop_token st) {
    std::size_t seen = 0;
    for (;;) {
      job* j = nullptr;
      {
        std::unique_lock lk(m_);
        if (!cv_.wait(lk, st, [&] { return generation_ != seen && job_ != nullptr; })) return;
        seen = generation_;
        j = job_;
        ++j->active;
      }
      work(*j);
    }
  }

  // Synchronisation: m_ guards job_, generation_ and job::active; cv_ wakes workers for a new job
  // (condition_variable_any, to wait with a stop_token); done_cv_ wakes the submitting thread.
  std::vector<std::jthread> workers_;
  std::mutex submit_;
  std::mutex m_;
  std::condition_variable_any cv_;
  std::condition_variable done_cv_;
  job* job_ = nullptr;
  std::size_t generation_ = 0;
};

/// Scores every sample with `rules` on `pool`. Result i is the breakdown of samples[i].
/// @post result.size() == samples.size()
/// @throws whatever a rule throws (the exception of the smallest sample index)
inline std::vector<reward_breakdown> score_batch(const reward_set& rules,
                                                 std::span<const sample> samples,
                                                 thread_pool& pool) {
  std::vector<reward_breakdown> out(samples.size());
  pool.parallel_for(samples.size(), [&](std::size_t i) { out[i] = rules.score(samples[i]); });
  return out;
}

/// Same with a temporary pool of `threads` threads (0 = hardware concurrency).
inline std::vector<reward_breakdown> score_batch(const reward_set& rules,
                                                 std::span<const sample> samples,
                                                 std::size_t threads = 0) {
  thread_pool pool(threads);
  return score_batch(rules, samples, pool);
}

}  // namespace grpo::rewards
