// SPDX-License-Identifier: Apache-2.0
// Format rules: strict R1 layout, open-r1 lenient regex, tag count, reasoning steps.
// Oracles: hand-computed cases, open-r1's own test values, and a differential test against the
// open-r1 regexes run by the real Python `re` module on random tag soups.
#include <rewards/format.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "python_oracle.hpp"

#include <random>
#include <string>
#include <vector>

using namespace grpo::rewards;
using grpo::rewards::test::python_oracle;

namespace {
std::string random_soup(std::mt19937& g, const std::vector<std::string>& tokens, int max_tokens) {
  std::uniform_int_distribution<int> len(0, max_tokens);
  std::uniform_int_distribution<std::size_t> pick(0, tokens.size() - 1);
  std::string s;
  const int n = len(g);
  for (int i = 0; i < n; ++i) s += tokens[pick(g)];
  return s;
}
}  // namespace

TEST_CASE("format: strict R1 layout accepts exactly one think and one answer block" *
          doctest::test_suite("rewards")) {
  CHECK(strict_format_reward("<think>\nI reason.\n</think>\n<answer>\n42\n</answer>") == 1.0);
  CHECK(strict_format_reward("<think>\nline 1\nline 2\n</think>\n<answer>\na\nb\n</answer>") ==
        1.0);
  const auto parts = parse_strict_r1("<think>\nwhy\n</think>\n<answer>\n7\n</answer>");
  REQUIRE(parts.has_value());
  CHECK(parts->think == "why");
  CHECK(parts->answer == "7");
}

TEST_CASE("format: strict R1 layout rejects every deviation" * doctest::test_suite("rewards")) {
  // text before / after
  CHECK(strict_format_reward("x<think>\na\n</think>\n<answer>\nb\n</answer>") == 0.0);
  CHECK(strict_format_reward("<think>\na\n</think>\n<answer>\nb\n</answer>x") == 0.0);
  CHECK(strict_format_reward("<think>\na\n</think>\n<answer>\nb\n</answer>\n") == 0.0);
  // missing newlines of the exact layout
  CHECK(strict_format_reward("<think>a\n</think>\n<answer>\nb\n</answer>") == 0.0);
  CHECK(strict_format_reward("<think>\na</think>\n<answer>\nb\n</answer>") == 0.0);
  CHECK(strict_format_reward("<think>\na\n</think><answer>\nb\n</answer>") == 0.0);
  CHECK(strict_format_reward("<think>\na\n</think>\n\n<answer>\nb\n</answer>") == 0.0);
  CHECK(strict_format_reward("<think>\na\n</think>\n<answer>b\n</answer>") == 0.0);
  CHECK(strict_format_reward("<think>\na\n</think>\n<answer>\nb</answer>") == 0.0);
  // two blocks (open-r1 issue #359 accepted these)
  CHECK(strict_format_reward("<think>\na\n</think>\n<answer>\nb\n</answer>\n<think>\nc\n</"
                             "think>\n<answer>\nd\n</answer>") == 0.0);
  CHECK(strict_format_reward("<think>\na <think> b\n</think>\n<answer>\nb\n</answer>") == 0.0);
  CHECK(strict_format_reward("<think>\na\n</think>\n<answer>\nb </answer> c\n</answer>") == 0.0);
  // DeepSeek-R1's own style (think, then a plain answer) is not the R1-Zero layout
  CHECK(strict_format_reward("<think>\na\n</think>\n42") == 0.0);
  // empty bodies: "\n" of the opening tag cannot double as the one before the closing tag
  CHECK(strict_format_reward("<think>\n</think>\n<answer>\nb\n</answer>") == 0.0);
  CHECK(strict_format_reward("") == 0.0);
}

TEST_CASE("format: strict options relax trailing whitespace and empty blocks" *
          doctest::test_suite("rewards")) {
  const std::string empty_think = "<think>\n\n</think>\n<answer>\n1\n</answer>";
  CHECK(strict_format_reward(empty_think) == 0.0);
  strict_format_options o;
  o.allow_empty_think = true;
  CHECK(strict_format_reward(empty_think, o) == 1.0);
  const std::string empty_answer = "<think>\nx\n</think>\n<answer>\n \n</answer>";
  CHECK(strict_format_reward(empty_answer) == 0.0);
  o.allow_empty_answer = true;
  CHECK(strict_format_reward(empty_answer, o) == 1.0);
  const std::string trailing = "<think>\nx\n</think>\n<answer>\ny\n</answer>\n  \n";
  CHECK(strict_format_reward(trailing) == 0.0);
  o.allow_trailing_whitespace = true;
  CHECK(strict_format_reward(trailing, o) == 1.0);
  CHECK(strict_format_reward(trailing + "z", o) == 0.0);
}

TEST_CASE("format: lenient rule reproduces open-r1's regex quirks" *
          doctest::test_suite("rewards")) {
  CHECK(lenient_format_reward("<think>\na\n</think>\n<answer>\nb\n</answer>") == 1.0);
  // MULTILINE: $ before a newline, so trailing lines still score
  CHECK(lenient_format_reward("<think>\na\n</think>\n<answer>\nb\n</answer>\ntrailing text") ==
        1.0);
  // lazy .*? spans inner tags: two blocks score (open-r1 issue #359)
  CHECK(lenient_format_reward("<think>\na\n</think>\n<answer>\nb\n</answer>\n<think>\nc\n</"
                              "think>\n<answer>\nd\n</answer>") == 1.0);
  // empty bodies are fine for the regex
  CHECK(lenient_format_reward("<think>\n\n</think>\n<answer>\n\n</answer>") == 1.0);
  CHECK(lenient_format_reward("<think>\n</think>\n<answer>\nb\n</answer>") == 0.0);
  CHECK(lenient_format_reward("<think>\na\n</think>\n<answer>\nb\n</answer>x") == 0.0);
  CHECK(lenient_format_reward(" <think>\na\n</think>\n<answer>\nb\n</answer>") == 0.0);
  // the first tail candidate fails, a later one succeeds
  CHECK(lenient_format_reward("<think>\na\n</think>\n<answer>\nb\n</answer>x\n</answer>") == 1.0);
}

TEST_CASE("format: tag count gives 0.25 per tag present exactly once" *
          doctest::test_suite("rewards")) {
  CHECK(tag_count_reward("<think>\na\n</think>\n<answer>\nb\n</answer>") == 1.0);
  CHECK(tag_count_reward("") == 0.0);
  CHECK(tag_count_reward("<think>\n") == 0.25);
  CHECK(tag_count_reward("<think>\n<think>\n") == 0.0);
  CHECK(tag_count_reward("<think>\na\n</think>\n") == 0.5);
  CHECK(tag_count_reward("\n<answer>\nx\n</answer>") == 0.5);
  // Python str.count is non-overlapping: "\n</think>\n</think>\n" holds one count of "\n</think>\n"
  CHECK(tag_count_reward("\n</think>\n</think>\n") == 0.25);
  CHECK(tag_count_reward("\n</think>\nx\n</think>\n") == 0.0);
}

TEST_CASE("format: reasoning steps follow open-r1's pattern and tests" *
          doctest::test_suite("rewards")) {
  // open-r1 tests/test_rewards.py: three steps -> 1, one step -> 1/3
  CHECK(reasoning_steps_reward(
            "Step 1: Add 2 and 3\nStep 2: Multiply by 4\nStep 3: Get final answer") == 1.0);
  CHECK(reasoning_steps_reward("Step 1: Only step") == doctest::Approx(1.0 / 3.0).epsilon(1e-12));
  CHECK(count_reasoning_steps("First, x. Second, y. Next, z. Finally, w.") == 4);
  CHECK(count_reasoning_steps("list:\n- a\n- b\n* c") == 3);
  // ^\d+\. matches only at the very start (no MULTILINE)
  CHECK(count_reasoning_steps("1. a\n2. b\n3. c") == 1);
  reasoning_steps_options ml;
  ml.numbered_items_at_line_start = true;
  CHECK(count_reasoning_steps("1. a\n2. b\n3. c", ml) == 3);
  // Step needs digits and a colon
  CHECK(count_reasoning_steps("Step one: Step 12 Step 34:") == 1);
  // \d is Unicode Nd in a Python str pattern: Arabic-Indic digits count
  CHECK(count_reasoning_steps("Step \xd9\xa3: done") == 1);
  CHECK(count_reasoning_steps("") == 0);
  CHECK(reasoning_steps_reward("no steps here") == 0.0);
  reasoning_steps_options bad;
  bad.target_steps = 0;
  CHECK_THROWS_WITH_AS(reasoning_steps_reward("x", bad), doctest::Contains("[grpo.bad_option]"),
                       grpo::error);
}

TEST_CASE("format: reasoning text and answer region" * doctest::test_suite("rewards")) {
  CHECK(reasoning_text("pre<think>abc</think>post") == "abc");
  CHECK(reasoning_text("abc</think>post") == "abc");  // <think> was in the prompt
  CHECK(reasoning_text("<think>unclosed") == "unclosed");
  CHECK(reasoning_text("plain") == "plain");
  CHECK(reasoning_text("plain", false).empty());
  CHECK(after_reasoning("<think>a</think> b </think> c").value() == " c");
  CHECK_FALSE(after_reasoning("no think").has_value());
}

TEST_CASE("format: differential test against open-r1's regexes in Python" *
          doctest::test_suite("rewards")) {
  const std::vector<std::string> tokens = {"<think>",
                                           "</think>",
                                           "<answer>",
                                           "</answer>",
                                           "\n",
                                           "\n",
                                           "a",
                                           " ",
                                           "Step ",
                                           "1",
                                           "23",
                                           ":",
                                           ".",
                                           "-",
                                           "*",
                                           "First,",
                                           "Next,",
                                           "Finally,",
                                           "\xc3\xa9",
                                           "\xe4\xb8\xad",
                                           "<think>\n",
                                           "\n</think>\n",
                                           "\n<answer>\n",
                                           "\n</answer>",
                                           "\r",
                                           "\xd9\xa3"};
  std::mt19937 g(12345);
  std::vector<std::string> cases;
  for (int i = 0; i < 3000; ++i) cases.push_back(random_soup(g, tokens, 24));
  // Random near-layouts: the R1 template around random soup, half of them with one random token
  // inserted at a random place (both regex outcomes arise from random cases, not only from the
  // hand-made ones below).
  const std::size_t n_random = 4000;
  for (int i = 0; i < 1000; ++i) {
    std::string c = "<think>\n" + random_soup(g, tokens, 6) + "\n</think>\n<answer>\n" +
                    random_soup(g, tokens, 6) + "\n</answer>";
    if (i % 2 == 1) {
      std::uniform_int_distribution<std::size_t> at(0, c.size());
      std::uniform_int_distribution<std::size_t> pick(0, tokens.size() - 1);
      std::size_t pos = at(g);  // a character boundary: the JSON oracle needs valid UTF-8
      while (pos < c.size() && (static_cast<unsigned char>(c[pos]) & 0xC0u) == 0x80u) ++pos;
      c.insert(pos, tokens[pick(g)]);
    }
    cases.push_back(c);
  }
  // Hand-made near misses mixed in.
  cases.push_back("<think>\nx\n</think>\n<answer>\ny\n</answer>\n");
  cases.push_back("<think>\n\n</think>\n<answer>\n\n</answer>");
  const std::string script = R"PY(
import re, json, sys
cases = json.load(sys.stdin)
fmt = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.DOTALL | re.MULTILINE)
steps = re.compile(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)")
strict = re.compile(r"<think>\n(.*)\n</think>\n<answer>\n(.*)\n</answer>\Z", re.DOTALL)
def tags(t):
    return sum(0.25 for k in ["<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>"] if t.count(k) == 1)
def strict_ok(t):
    m = strict.match(t)
    if not m: return 0.0
    if any(t.count(k) != 1 for k in ["<think>", "</think>", "<answer>", "</answer>"]): return 0.0
    if not m.group(1).strip() or not m.group(2).strip(): return 0.0
    return 1.0
print(json.dumps([[1.0 if fmt.match(c) else 0.0, tags(c), len(steps.findall(c)), strict_ok(c)] for c in cases]))
)PY";
  const nlohmann::json want = python_oracle(script, cases);
  REQUIRE(want.size() == cases.size());
  int accepted = 0, rejected = 0, strict_ok = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i << ": " << nlohmann::json(cases[i]).dump());
    CHECK(lenient_format_reward(cases[i]) == want[i][0].get<double>());
    CHECK(tag_count_reward(cases[i]) == want[i][1].get<double>());
    CHECK(count_reasoning_steps(cases[i]) == want[i][2].get<std::size_t>());
    CHECK(strict_format_reward(cases[i]) == want[i][3].get<double>());
    if (i < n_random) {  // random cases only: the hand-made ones cannot satisfy these counts
      (want[i][0].get<double>() > 0 ? accepted : rejected) += 1;
      strict_ok += want[i][3].get<double>() > 0 ? 1 : 0;
    }
  }
  // The random cases must exercise both outcomes of the regexes, or the test proves little.
  INFO("random cases: accepted ", accepted, ", rejected ", rejected, ", strict ", strict_ok);
  CHECK(accepted >= 100);
  CHECK(rejected >= 100);
  CHECK(strict_ok >= 50);
}

TEST_CASE("format: adversarial inputs (1 MB, 10k nested tags, invalid UTF-8)" *
          doctest::test_suite("rewards")) {
  std::string nested;
  for (int i = 0; i < 10000; ++i) nested += "<think>\n";
  for (int i = 0; i < 10000; ++i) nested += "\n</think>\n";
  CHECK(strict_format_reward(nested) == 0.0);
  CHECK(lenient_format_reward(nested) == 0.0);
  CHECK(tag_count_reward(nested) == 0.0);
  std::string big(1 << 20, 'a');
  CHECK(lenient_format_reward("<think>\n" + big) == 0.0);
  CHECK(lenient_format_reward("<think>\n" + big + "\n</think>\n<answer>\n" + big + "\n</answer>") ==
        1.0);
  CHECK(strict_format_reward("<think>\n" + big + "\n</think>\n<answer>\n" + big + "\n</answer>") ==
        1.0);
  std::string steps;
  for (int i = 0; i < 100000; ++i) steps += "Step 1:";
  CHECK(count_reasoning_steps(steps) == 100000);
  const std::string bad = "<think>\n\xff\xfe\xc3\n</think>\n<answer>\n\x80\n</answer>";
  CHECK(strict_format_reward(bad) == 1.0);  // bytes are opaque to the layout
  std::string digits = "Step ";
  digits += std::string(1 << 20, '7');
  CHECK(count_reasoning_steps(digits) == 0);  // no colon: one linear digit run, no backtracking
}
