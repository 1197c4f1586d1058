// SPDX-License-Identifier: Apache-2.0
// grpo/collective.hpp: the single-process identity, the concept, and sharded advantages over an
// in-process "thread ranks" collective (std::barrier), which proves the sharding logic without MPI
// (tests/mpi/ runs the same checks under mpirun with grpo::mpi_collective).
#include <grpo/advantage.hpp>
#include <grpo/collective.hpp>

#include <doctest/doctest.h>

#include "mpi/shard_check.hpp"

#include <atomic>
#include <barrier>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

// P threads act as ranks. all_reduce: publish the buffer, wait, reduce every rank's buffer in rank
// order into a private copy (identical on all ranks), wait, write back. Sizes must agree.
struct thread_world {
  explicit thread_world(int p) : size(p), slots(static_cast<std::size_t>(p)), sync(p) {}
  int size;
  std::vector<std::span<double>> slots;
  std::barrier<> sync;
  std::atomic<int> calls{0};
  std::atomic<bool> size_mismatch{false};
};

class thread_collective {
 public:
  thread_collective(thread_world& w, int rank) : w_(&w), rank_(rank) {}
  void all_reduce(std::span<double> buf, grpo::reduce_op op) const {
    w_->slots[static_cast<std::size_t>(rank_)] = buf;
    w_->sync.arrive_and_wait();
    std::vector<double> acc(buf.size());
    for (std::size_t i = 0; i < buf.size(); ++i) {
      double v = w_->slots[0].size() > i ? w_->slots[0][i] : 0.0;
      for (int r = 1; r < w_->size; ++r) {
        const auto& s = w_->slots[static_cast<std::size_t>(r)];
        if (s.size() != buf.size()) {
          w_->size_mismatch = true;
          continue;
        }
        v = op == grpo::reduce_op::sum   ? v + s[i]
            : op == grpo::reduce_op::max ? std::max(v, s[i])
                                         : std::min(v, s[i]);
      }
      acc[i] = v;
    }
    if (w_->slots[0].size() != buf.size()) w_->size_mismatch = true;
    w_->sync.arrive_and_wait();
    std::copy(acc.begin(), acc.end(), buf.begin());
    if (rank_ == 0) ++w_->calls;
  }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return w_->size; }

 private:
  thread_world* w_;
  int rank_;
};
static_assert(grpo::collective<thread_collective>);

// Run f(comm) on P thread ranks; an exception on any rank fails the test (after joining).
void run_ranks(int P, const std::function<void(const thread_collective&)>& f,
               thread_world* world_out = nullptr) {
  thread_world local(P);
  thread_world& w = world_out ? *world_out : local;
  std::vector<std::thread> th;
  std::mutex mu;
  std::vector<std::string> errors;
  for (int r = 0; r < P; ++r)
    th.emplace_back([&, r] {
      try {
        f(thread_collective(w, r));
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lk(mu);
        errors.push_back(e.what());
      }
    });
  for (auto& t : th) t.join();
  for (const auto& e : errors) FAIL_CHECK(e);
  CHECK(!w.size_mismatch);
}

// Logs calls and sizes: collective calls must not depend on how many rows a rank holds. The
// "other ranks" are simulated by overwriting every reduced element with 5 (a plausible global
// count / sum), so both a full and an empty rank run every pass to the end.
struct recording_collective {
  mutable std::vector<std::pair<std::size_t, grpo::reduce_op>>* log;
  void all_reduce(std::span<double> buf, grpo::reduce_op op) const {
    log->emplace_back(buf.size(), op);
    std::fill(buf.begin(), buf.end(), 5.0);
  }
  int rank() const noexcept { return 1; }
  int size() const noexcept { return 2; }
};

}  // namespace

TEST_CASE("collective: single_process is the identity and satisfies the concept" *
          doctest::test_suite("collective")) {
  static_assert(grpo::collective<grpo::single_process>);
  static_assert(!grpo::collective<int>);
  grpo::single_process sp;
  std::vector<double> v{1.5, -2, 3};
  grpo::all_reduce_sum(sp, std::span<double>(v));
  grpo::all_reduce_max(sp, std::span<double>(v));
  grpo::all_reduce_min(sp, std::span<double>(v));
  CHECK(v == std::vector<double>{1.5, -2, 3});
  CHECK(grpo::all_reduce_sum(sp, 4.25) == 4.25);
  CHECK(sp.rank() == 0);
  CHECK(sp.size() == 1);
  CHECK(grpo::to_string(grpo::reduce_op::max) == "max");
}

TEST_CASE("collective: thread ranks reduce sum / max / min element-wise" *
          doctest::test_suite("collective")) {
  for (int P : {1, 2, 3, 4}) {
    run_ranks(P, [P](const thread_collective& c) {
      std::vector<double> v{static_cast<double>(c.rank()), 1.0, -static_cast<double>(c.rank())};
      grpo::all_reduce_sum(c, std::span<double>(v));
      CHECK(v[0] == P * (P - 1) / 2.0);
      CHECK(v[1] == P);
      std::vector<double> m{static_cast<double>(c.rank())};
      grpo::all_reduce_max(c, std::span<double>(m));
      CHECK(m[0] == P - 1);
      grpo::all_reduce_min(c, std::span<double>(m));  // every rank now holds P - 1
      CHECK(m[0] == P - 1);
      CHECK(grpo::all_reduce_sum(c, 1.0) == P);
    });
  }
}

TEST_CASE("collective: sharded advantages over 1-4 thread ranks equal the single-process result" *
          doctest::test_suite("collective")) {
  for (int P : {1, 2, 3, 4}) {
    CAPTURE(P);
    std::atomic<int> configs{0};
    run_ranks(P, [&](const thread_collective& c) {
      const int n = grpo_test::check_sharded(c);
      if (c.rank() == 0) configs = n;
    });
    CHECK(configs == 2 * (12 + 3));
  }
}

TEST_CASE("collective: the sequence of collective calls does not depend on the local rows" *
          doctest::test_suite("collective")) {
  // A rank with no rows must make the same calls (count, size, op) as a rank with many, or MPI
  // would deadlock / mismatch.
  for (auto o : {grpo::advantage_options::trl(), grpo::advantage_options::verl_grpo_passk(),
                 grpo::advantage_options::verl_reinforce_pp_baseline(),
                 grpo::advantage_options::verl_gpg()}) {
    o.singleton = grpo::singleton_policy::zero;
    std::vector<std::pair<std::size_t, grpo::reduce_op>> full, empty;
    const std::vector<double> r{1, 0, 1, 1, 0.5, 0.25};
    const std::vector<std::int64_t> ids{0, 1, 2, 0, 1, 2};
    const std::vector<double> mask(12, 1.0);
    std::vector<double> a(6);
    grpo::compute_advantages(r, grpo::group_spec::ids(ids, 3), grpo::make_view(mask.data(), {6, 2}),
                             a, o, recording_collective{&full});
    const std::vector<double> r0;
    const std::vector<std::int64_t> ids0;
    std::vector<double> a0;
    grpo::compute_advantages(r0, grpo::group_spec::ids(ids0, 3),
                             grpo::make_view(mask.data(), {0, 2}), a0, o,
                             recording_collective{&empty});
    CHECK(full.size() >= 3);
    CHECK(empty == full);
  }
}

TEST_CASE("collective: a sharded batch without global group information is rejected" *
          doctest::test_suite("collective")) {
  std::vector<std::pair<std::size_t, grpo::reduce_op>> log;
  const std::vector<double> r{1, 0};
  const std::vector<std::int64_t> ids{10, 20};
  std::vector<double> a(2);
  bool threw = false;
  try {
    grpo::compute_advantages(r, grpo::group_spec::ids(ids), a, grpo::advantage_options{},
                             recording_collective{&log});
  } catch (const grpo::error& e) {
    threw = e.code() == grpo::errc::bad_option;
  }
  CHECK(threw);
  threw = false;
  try {
    grpo::compute_advantages(r, grpo::group_spec::fixed(2), a, grpo::advantage_options{},
                             recording_collective{&log});
  } catch (const grpo::error& e) {
    threw = e.code() == grpo::errc::bad_option;
  }
  CHECK(threw);
  threw = false;
  try {
    grpo::compute_advantages(r, grpo::group_spec::ids(ids), a,
                             grpo::advantage_options::verl_grpo_vectorized(),
                             recording_collective{&log});
  } catch (const grpo::error& e) {
    threw = e.code() == grpo::errc::bad_option;
  }
  CHECK(threw);
  CHECK(log.empty());  // rejected before any collective call
}
