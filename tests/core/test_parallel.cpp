// SPDX-License-Identifier: Apache-2.0
/// @file test_parallel.cpp
/// @brief core/parallel.hpp: every row runs exactly once, the lowest failing row's exception is
///        the one rethrown (whatever the threads), ranges are contiguous and ordered.
#include <grpo/core/parallel.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

TEST_CASE("parallel: every row once, threaded or not") {
  for (grpo::index_t work : {grpo::index_t{1}, grpo::par::min_parallel_work}) {
    for (int nt : {1, 2, 4}) {
      const grpo::index_t n = 1000;
      std::vector<std::atomic<int>> hits(n);
      grpo::par::loop_options o;
      o.num_threads = nt;
      o.work_per_row = work;
      grpo::par::for_each_row(n, [&](grpo::index_t i) { hits[i].fetch_add(1); }, o);
      int bad = 0;
      for (auto& h : hits) bad += h.load() != 1;
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("parallel: the lowest failing row's error is rethrown") {
  for (bool dyn : {false, true}) {
    for (int nt : {1, 2, 3}) {
      grpo::par::loop_options o;
      o.num_threads = nt;
      o.dynamic = dyn;
      std::atomic<int> ran{0};
      try {
        grpo::par::for_each_row(
            500,
            [&](grpo::index_t i) {
              ran.fetch_add(1);
              if (i == 77 || i == 300 || i == 499) throw std::runtime_error(std::to_string(i));
            },
            o);
        FAIL("no exception");
      } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "77");
      }
      CHECK(ran.load() >= 78);  // rows up to the failing one ran (serially it stops there)
    }
  }
}

TEST_CASE("parallel: ranges cover [0, n) in order, one per thread") {
  for (int nt : {1, 2, 5}) {
    grpo::par::loop_options o;
    o.num_threads = nt;
    const grpo::index_t n = 1 << 12;
    std::vector<int> owner(n, -1);
    std::atomic<int> ranges{0};
    grpo::par::for_each_range(
        n,
        [&](grpo::index_t b, grpo::index_t e) {
          const int id = ranges.fetch_add(1);
          for (grpo::index_t i = b; i < e; ++i) owner[i] = id;
        },
        o);
    int holes = 0, switches = 0;
    for (grpo::index_t i = 0; i < n; ++i) {
      holes += owner[i] < 0;
      if (i > 0 && owner[i] != owner[i - 1]) ++switches;
    }
    CHECK(holes == 0);
    CHECK(switches == ranges.load() - 1);  // contiguous ranges
    CHECK(ranges.load() <= nt);
  }
  bool called = false;
  grpo::par::for_each_range(0, [&](grpo::index_t, grpo::index_t) { called = true; });
  CHECK_FALSE(called);
}
