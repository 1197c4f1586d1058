// SPDX-License-Identifier: Apache-2.0
// Batch scoring: the jthread pool covers every index once, output order is input order for every
// thread count, exceptions are deterministic, nested loops do not deadlock, pools are reusable.
#include <rewards/batch.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace grpo::rewards;

TEST_CASE("batch: parallel_for runs every index exactly once" * doctest::test_suite("rewards")) {
  for (std::size_t threads : {1u, 2u, 3u, 8u}) {
    thread_pool pool(threads);
    CHECK(pool.size() == threads);
    for (std::size_t n : {0u, 1u, 7u, 1000u}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, [&](std::size_t i) { hits[i].fetch_add(1); });
      for (std::size_t i = 0; i < n; ++i) CHECK(hits[i].load() == 1);
    }
  }
}

TEST_CASE("batch: a pool survives many consecutive loops" * doctest::test_suite("rewards")) {
  thread_pool pool(4);
  std::atomic<long> sum{0};
  for (int rep = 0; rep < 2000; ++rep)
    pool.parallel_for(5, [&](std::size_t i) { sum += static_cast<long>(i); });
  CHECK(sum.load() == 2000L * 10L);
}

TEST_CASE("batch: the exception of the smallest index is rethrown, after all indices ran" *
          doctest::test_suite("rewards")) {
  thread_pool pool(4);
  std::atomic<int> ran{0};
  try {
    pool.parallel_for(64, [&](std::size_t i) {
      ++ran;
      if (i == 41 || i == 7 || i == 63) throw std::runtime_error(std::to_string(i));
    });
    FAIL("no exception");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "7");
  }
  CHECK(ran.load() == 64);
  // the pool is still usable
  std::atomic<int> again{0};
  pool.parallel_for(10, [&](std::size_t) { ++again; });
  CHECK(again.load() == 10);
}

TEST_CASE("batch: nested parallel_for on the same pool runs serially" *
          doctest::test_suite("rewards")) {
  thread_pool pool(3);
  std::vector<std::atomic<int>> hits(10 * 10);
  pool.parallel_for(10, [&](std::size_t i) {
    pool.parallel_for(10, [&](std::size_t j) { hits[i * 10 + j].fetch_add(1); });
  });
  for (auto& h : hits) CHECK(h.load() == 1);
}

TEST_CASE("batch: output order is input order for any thread count" *
          doctest::test_suite("rewards")) {
  reward_set set;
  set.add("len", 1.0,
          [](const sample& s) -> std::optional<double> {
            // uneven work so that completion order differs from index order
            if (s.completion.size() % 3 == 0)
              std::this_thread::sleep_for(std::chrono::milliseconds(1));
            return static_cast<double>(s.completion.size());
          })
      .add("format", 0.5, make_rule("tag_count", rule_options{}));
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i)
    texts.push_back(std::string(static_cast<std::size_t>(i), 'x') + (i % 2 ? "<think>\n" : ""));
  std::vector<sample> samples(texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) samples[i].completion = texts[i];
  const auto serial = score_batch(set, samples, 1);
  for (std::size_t threads : {2u, 4u, 8u}) {
    const auto par = score_batch(set, samples, threads);
    REQUIRE(par.size() == samples.size());
    for (std::size_t i = 0; i < samples.size(); ++i) {
      CHECK(par[i].total == serial[i].total);
      CHECK(par[i].rules[0].value.value() == static_cast<double>(texts[i].size()));
      CHECK(par[i].rules[1].value.value() == (i % 2 ? 0.25 : 0.0));
    }
  }
  CHECK(score_batch(set, std::span<const sample>{}, 4).empty());
}

TEST_CASE("batch: code execution from several threads at once" * doctest::test_suite("rewards")) {
  rule_options o;
  o.code.run.cpu_seconds = 2;
  o.code.run.wall_seconds = 20;
  reward_set set;
  set.add("code", 1.0, make_rule("code", o));
  const std::vector<test_case> tests = {{"3\n", "9\n"}, {"4\n", "16\n"}};
  const std::vector<std::string> progs = {"```python\nx=int(input())\nprint(x*x)\n```",
                                          "```python\nx=int(input())\nprint(x+x)\n```",
                                          "```python\nraise SystemExit(1)\n```"};
  std::vector<sample> samples;
  for (int i = 0; i < 12; ++i) {
    sample s;
    s.completion = progs[static_cast<std::size_t>(i) % 3];
    s.tests = tests;
    samples.push_back(s);
  }
  const auto r = score_batch(set, samples, 4);
  for (std::size_t i = 0; i < r.size(); ++i) {
    INFO(i);
    CHECK(r[i].total == (i % 3 == 0 ? 1.0 : 0.0));
  }
}
