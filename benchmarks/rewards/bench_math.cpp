// SPDX-License-Identifier: Apache-2.0
// Throughput of grpo::rewards::math::verify on typical (gold, completion) pairs, per category, in
// verifications per second on one core. The floor "peer" is extraction + trimmed string equality
// (what a Hendrycks-style exact-match grader costs at best), measured in the same binary.
#include <benchmark/benchmark.h>
#include <rewards/math.hpp>

#include <string>
#include <utility>
#include <vector>

namespace rm = grpo::rewards::math;

namespace {

using pairs = std::vector<std::pair<std::string, std::string>>;

const pairs& bare_numbers() {
  static const pairs p = {{"42", "42"},    {"7", "8"},   {"-3", "-3"},   {"1000", "1,000"},
                          {"0.5", "0.50"}, {"12", "12"}, {"256", "255"}, {"3.14", "3.14"}};
  return p;
}
const pairs& fractions() {
  static const pairs p = {{"\\frac{1}{2}", "0.5"},       {"\\frac{3}{4}", "\\dfrac{3}{4}"},
                          {"\\frac{2}{3}", "0.667"},     {"10/9", "\\frac{10}{9}"},
                          {"2\\frac{1}{2}", "\\frac52"}, {"\\frac{5}{7}", "\\frac{7}{5}"},
                          {"\\frac{1}{3}", "0.33"},      {"\\frac{9}{12}", "\\frac{3}{4}"}};
  return p;
}
const pairs& symbolic() {
  static const pairs p = {{"2\\sqrt{2}", "\\sqrt{8}"},
                          {"(x+1)^2", "x^2+2x+1"},
                          {"\\frac{\\sqrt{3}}{2}", "0.866"},
                          {"\\pi r^2", "r^2\\pi"},
                          {"\\tan^2 y+1", "\\sec^2 y"},
                          {"x^2-1", "(x-1)(x+1)"},
                          {"2x+4y-3=0", "y=-\\frac12x+\\frac34"},
                          {"\\sqrt{2}", "\\sqrt{3}"}};
  return p;
}
const pairs& structured() {
  static const pairs p = {
      {"(1,2)", "(1, 2)"},
      {"[0,1)", "(0,1)"},
      {"\\{1,2,3\\}", "3, 2, 1"},
      {"\\pm 2", "2, -2"},
      {"x=3", "3"},
      {"1<x<2", "(1,2)"},
      {"\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}"},
      {"C", "The answer is (C)."}};
  return p;
}
const pairs& full_responses() {
  static pairs p;
  if (p.empty()) {
    std::string reasoning = "<think>";
    for (int i = 0; i < 40; ++i)
      reasoning += "We consider step " + std::to_string(i) + " where $x_" + std::to_string(i) +
                   " = \\frac{" + std::to_string(i) +
                   "}{2}$ and check that it satisfies the constraint. ";
    reasoning += "</think>\n";
    p = {{"\\frac{1}{2}", reasoning + "The final answer is $\\boxed{\\frac{1}{2}}$."},
         {"42", reasoning + "Therefore the answer is \\boxed{42}."},
         {"42", reasoning + "Therefore the answer is \\boxed{41}."},
         {"2\\sqrt{2}", reasoning + "So $d = \\boxed{\\sqrt{8}}$."},
         {"(1,2)", reasoning + "Answer: $(1, 2)$"},
         {"7425000", reasoning + "The population is **7,425,000**."}};
  }
  return p;
}

void run_verify(benchmark::State& state, const pairs& p) {
  std::size_t i = 0, correct = 0, bytes = 0;
  for (auto _ : state) {
    const auto& [g, c] = p[i++ % p.size()];
    const rm::verdict v = rm::verify(g, c);
    correct += v == rm::verdict::correct;
    bytes += g.size() + c.size();
    benchmark::DoNotOptimize(v);
  }
  state.counters["verifications/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["correct_frac"] =
      static_cast<double>(correct) / static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}

void run_string_peer(benchmark::State& state, const pairs& p) {
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& [g, c] = p[i++ % p.size()];
    const auto a = rm::extract_answer(g);
    const auto b = rm::extract_answer(c);
    const bool same = a && b && *a == *b;
    benchmark::DoNotOptimize(same);
  }
  state.counters["verifications/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void bm_verify_bare_numbers(benchmark::State& s) {
  run_verify(s, bare_numbers());
}
void bm_verify_fractions(benchmark::State& s) {
  run_verify(s, fractions());
}
void bm_verify_symbolic(benchmark::State& s) {
  run_verify(s, symbolic());
}
void bm_verify_structured(benchmark::State& s) {
  run_verify(s, structured());
}
void bm_verify_full_responses(benchmark::State& s) {
  run_verify(s, full_responses());
}
void bm_peer_string_match_full_responses(benchmark::State& s) {
  run_string_peer(s, full_responses());
}
void bm_peer_string_match_bare_numbers(benchmark::State& s) {
  run_string_peer(s, bare_numbers());
}

}  // namespace

BENCHMARK(bm_verify_bare_numbers);
BENCHMARK(bm_verify_fractions);
BENCHMARK(bm_verify_symbolic);
BENCHMARK(bm_verify_structured);
BENCHMARK(bm_verify_full_responses);
BENCHMARK(bm_peer_string_match_bare_numbers);
BENCHMARK(bm_peer_string_match_full_responses);

BENCHMARK_MAIN();
