// SPDX-License-Identifier: Apache-2.0
// Repetition penalty: open-r1 test values, hand counts, open-r1's Python function as a
// differential oracle on random texts, token-id variant, adversarial inputs.
#include <rewards/repetition.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "python_oracle.hpp"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

using namespace grpo::rewards;
using grpo::rewards::test::python_oracle;


TEST_CASE("repetition: open-r1 test values" * doctest::test_suite("rewards")) {
  CHECK(repetition_penalty_reward("this this this this this", {2, -1.0}) == doctest::Approx(-0.75).epsilon(1e-12));
  // 15 words, 13 trigrams, 8 distinct -> 1 - 8/13 = 0.384615
  CHECK(repetition_penalty_reward("A B C A B C E F G A B C A B C", {3, -1.0}) ==
        doctest::Approx(-(1.0 - 8.0 / 13.0)).epsilon(1e-12));
  CHECK(repetition_penalty_reward("A B C A B C E F G A B C A B C", {3, -1.0}) ==
        doctest::Approx(-0.3846).epsilon(1e-4));
  // no repetition, short texts, empty
  CHECK(repetition_penalty_reward("a b c d e", {2, -1.0}) == 0.0);
  CHECK(repetition_penalty_reward("a b", {3, -1.0}) == 0.0);
  CHECK(repetition_penalty_reward("", {1, -1.0}) == 0.0);
  CHECK(repetition_penalty_reward("   \n\t ", {1, -1.0}) == 0.0);
}

TEST_CASE("repetition: lower-casing, Python whitespace and scaling" *
          doctest::test_suite("rewards")) {
  // "The the THE" -> 3 identical unigrams -> 1 - 1/3
  CHECK(repetition_penalty_reward("The the THE", {1, -0.5}) == doctest::Approx(-0.5 * (2.0 / 3.0)).epsilon(1e-12));
  // NBSP and ideographic space separate words like str.split()
  CHECK(repetition_penalty_reward("x\xc2\xa0x\xe3\x80\x80x", {1, -1.0}) ==
        doctest::Approx(-2.0 / 3.0).epsilon(1e-12));
  // Unicode lower-casing: É and é are the same word
  CHECK(repetition_penalty_reward("\xc3\x89t\xc3\xa9 \xc3\xa9t\xc3\xa9", {1, -1.0}) ==
        doctest::Approx(-0.5).epsilon(1e-12));
  // max_penalty 0 gives 0 whatever the text
  CHECK(repetition_penalty_reward("a a a a", {1, 0.0}) == 0.0);
  CHECK_THROWS_WITH_AS(repetition_penalty_reward("a", {1, 0.5}),
                       doctest::Contains("[grpo.bad_option]"), grpo::error);
  CHECK_THROWS_WITH_AS(repetition_penalty_reward("a", {0, -1.0}),
                       doctest::Contains("[grpo.bad_option]"), grpo::error);
}

TEST_CASE("repetition: CJK character words and token ids" * doctest::test_suite("rewards")) {
  repetition_options zh{1, -1.0, repetition_words::cjk_characters};
  // 中中中 -> 3 words, 1 distinct -> -2/3; whitespace mode sees one word -> 0
  CHECK(repetition_penalty_reward("\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad", zh) ==
        doctest::Approx(-2.0 / 3.0).epsilon(1e-12));
  CHECK(repetition_penalty_reward("\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad", {1, -1.0}) == 0.0);
  const std::vector<std::int64_t> ids = {5, 6, 5, 6, 5, 6};
  // bigrams: 56 65 56 65 56 -> 2 distinct of 5
  CHECK(repetition_penalty_reward(std::span<const std::int64_t>(ids), {2, -1.0}) ==
        doctest::Approx(-(1.0 - 2.0 / 5.0)).epsilon(1e-12));
  const std::vector<std::int64_t> few = {1};
  CHECK(repetition_penalty_reward(std::span<const std::int64_t>(few), {2, -1.0}) == 0.0);
}

TEST_CASE("repetition: differential test against open-r1's Python implementation" *
          doctest::test_suite("rewards")) {
  const std::vector<std::string> vocab = {
      "a", "b", "c", "A", "the", "The", "\xc3\x89", "\xc3\xa9", "x1", "\xe4\xb8\xad", "!", "a.b"};
  const std::vector<std::string> spaces = {" ",        "  ",           "\n",  "\t",
                                           "\xc2\xa0", "\xe3\x80\x80", "\x0b"};
  std::mt19937 g(99);
  std::uniform_int_distribution<std::size_t> pv(0, vocab.size() - 1), ps(0, spaces.size() - 1);
  std::uniform_int_distribution<int> len(0, 40), n(1, 4);
  nlohmann::json cases = nlohmann::json::array();
  for (int i = 0; i < 1500; ++i) {
    std::string t;
    const int L = len(g);
    for (int k = 0; k < L; ++k) t += vocab[pv(g)] + spaces[ps(g)];
    cases.push_back({t, n(g)});
  }
  const std::string script = R"PY(
import json, sys
def zipngram(text, ngram_size):
    words = text.lower().split()
    return zip(*[words[i:] for i in range(ngram_size)]), words
def reward(completion, ngram_size, max_penalty=-1.0):
    # open-r1 get_repetition_penalty_reward inner loop, verbatim
    if completion == "":
        return 0.0
    if len(completion.split()) < ngram_size:
        return 0.0
    ngrams = set()
    total = 0
    ngram_array, words = zipngram(completion, ngram_size)
    for ng in ngram_array:
        ngrams.add(ng)
        total += 1
    scaling = 1 - len(ngrams) / total
    return scaling * max_penalty
print(json.dumps([reward(t, n) for t, n in json.load(sys.stdin)]))
)PY";
  const nlohmann::json want = python_oracle(script, cases);
  int nonzero = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i << ": " << cases[i].dump());
    const repetition_options o{cases[i][1].get<grpo::index_t>(), -1.0};
    CHECK(repetition_penalty_reward(cases[i][0].get<std::string>(), o) ==
          doctest::Approx(want[i].get<double>()).epsilon(1e-12));
    nonzero += want[i].get<double>() != 0.0 ? 1 : 0;
  }
  CHECK(nonzero > 100);
}

TEST_CASE("repetition: large and adversarial inputs" * doctest::test_suite("rewards")) {
  std::string big;
  for (int i = 0; i < 200000; ++i) big += "w ";
  // 200000 identical words, n = 3: 199998 trigrams, 1 distinct
  CHECK(repetition_penalty_reward(big, {3, -1.0}) == doctest::Approx(-(1.0 - 1.0 / 199998.0)).epsilon(1e-12));
  std::string distinct;
  for (int i = 0; i < 100000; ++i) distinct += std::to_string(i) + " ";
  CHECK(repetition_penalty_reward(distinct, {2, -1.0}) == 0.0);
  CHECK(repetition_penalty_reward("\xff\xfe \xff\xfe \x80", {1, -1.0}) ==
        doctest::Approx(-1.0 / 3.0).epsilon(1e-12));
  // long n-grams over a repeated text: exact distinct count despite equal-hash confirmations
  CHECK(repetition_penalty_reward(big, {500, -1.0}) ==
        doctest::Approx(-(1.0 - 1.0 / (200000.0 - 499.0))).epsilon(1e-12));
}
