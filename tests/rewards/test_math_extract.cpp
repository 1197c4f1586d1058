// SPDX-License-Identifier: Apache-2.0
// Tests of grpo::rewards::math::extract_answer: priority order of the extraction modes, brace
// matching, box joining, </think> handling, option switches. Expected strings are written by hand
// from the input text.
#include <doctest/doctest.h>
#include <rewards/math.hpp>

#include <optional>
#include <string>

namespace rm = grpo::rewards::math;

namespace {

struct ecase {
  const char* text;
  const char* want;  // nullptr: nothing extracted
};

void run(std::initializer_list<ecase> cases, const rm::extract_options& opt = {}) {
  for (const ecase& c : cases) {
    const std::optional<std::string> got = rm::extract_answer(c.text, opt);
    INFO("text = " << std::string(c.text));
    if (c.want == nullptr) {
      const std::string msg = "got " + got.value_or("");
      CHECK_MESSAGE(!got.has_value(), msg);
    } else {
      const std::string msg = std::string("expected ") + c.want;
      REQUIRE_MESSAGE(got.has_value(), msg);
      CHECK(*got == std::string(c.want));
    }
  }
}

}  // namespace

TEST_CASE("extract: boxed answers with balanced braces" * doctest::test_suite("rewards.math")) {
  run({
      {"so \\boxed{42}.", "42"},
      {"\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"},
      {"\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"},
      {"\\boxed{x^{2}+{y}}", "x^{2}+{y}"},
      {"roots \\boxed{1}, \\boxed{2}", "1, 2"},       // separators only: joined
      {"first \\boxed{1}, finally \\boxed{2}", "2"},  // words between: last only
      {"first \\boxed{1}. After checking the other case we get \\boxed{2}", "2"},
      {"\\boxed{3} and \\boxed{4}", "3, 4"},
      {"\\boxed{3} \\text{ or } \\boxed{4}", "3, 4"},
      {"$\\boxed{3}$, $\\boxed{4}$", "3, 4"},
      {"\\boxed{5} \\boxed{5}", "5"},         // duplicates dropped
      {"\\boxed{\\boxed{7}}", "\\boxed{7}"},  // outer box kept whole
      {"\\fbox{8}", "8"},
      {"\\boxed {9}", "9"},
      {"$\\boxed 10$", "10"},
      {"\\boxed{1} then \\boxed{", "1"},             // unclosed box ignored
      {"\\boxed{} and then", nullptr},  // empty box: an empty answer (issue 14), no fallback
      {"\\boxed{\\text{(C)}}", "\\text{(C)}"},
      {"\\boxed{a \\} b}", "a \\} b"},  // escaped brace
  });
}

TEST_CASE("extract: answer phrases" * doctest::test_suite("rewards.math")) {
  run({
      {"Final Answer: The final answer is $42$. I hope it is correct.", "42"},
      {"The final answer is 7.", "7"},
      {"the answer is \\(\\frac{3}{4}\\).", "\\frac{3}{4}"},
      {"So the answer is: 12 apples.\nDone", "12 apples"},
      {"Answer: 3.5", "3.5"},
      {"ANSWER: x = 4", "x = 4"},
      {"The answer is **73**.", "73"},
      {"answer is $28$\\%", "28\\%"},
      {"The answer is 1.5. Next line", "1.5"},
      {"Final answer\n\n 19", "19"},
      {"The answer is $5$ but the final answer is $6$", "6"},
  });
}

TEST_CASE("extract: markdown bold, LaTeX environments, whole string" *
          doctest::test_suite("rewards.math")) {
  run({
      {"so we get **15** total", "15"},
      {"**Step 1:** compute. Result **\\frac{1}{2}**", "\\frac{1}{2}"},
      {"**Note** the value $x=3$", "x=3"},
      {"We find $a=1$ and then $b=2$.", "b=2"},
      {"Thus \\[ y = 5 \\]", "y = 5"},
      {"Thus \\( z \\) is $$ 7 $$", "7"},
      {"cost is \\$5 and $6$", "6"},
      {"42", "42"},
      {"  \\frac{1}{2}  ", "\\frac{1}{2}"},
      {"", nullptr},
      {"   ", nullptr},
      {"$ $", "$ $"},
  });
}

TEST_CASE("extract: think blocks are ignored" * doctest::test_suite("rewards.math")) {
  run({
      {"<think>\\boxed{1}</think>\\boxed{2}", "2"},
      {"<think>\\boxed{1}</think> no box here", "no box here"},
      {"<think>a</think><think>\\boxed{3}</think>\\boxed{4}", "4"},
      {"<think>\\boxed{1}", "1"},  // unterminated thought: nothing to strip
  });
  rm::extract_options keep;
  keep.strip_think = false;
  run({{"\\boxed{1}</think> text", "1"}}, keep);
}

TEST_CASE("extract: options switch modes off" * doctest::test_suite("rewards.math")) {
  rm::extract_options boxed_only;
  boxed_only.answer_phrase = boxed_only.markdown_bold = boxed_only.latex_delimiters = false;
  boxed_only.whole_string = false;
  run({{"The answer is 5", nullptr}, {"\\boxed{5}", "5"}, {"$5$", nullptr}}, boxed_only);
  rm::extract_options no_box;
  no_box.boxed = false;
  run({{"\\boxed{5} The answer is 6", "6"}}, no_box);
  rm::extract_options short_answers;
  short_answers.max_answer_chars = 3;
  run({{"\\boxed{1234}", nullptr}, {"\\boxed{123}", "123"}}, short_answers);
}

TEST_CASE("normalize: rewrites before parsing" * doctest::test_suite("rewards.math")) {
  struct ncase {
    const char* in;
    const char* want;
  };
  const ncase cases[] = {
      {"\\left( 1, 2 \\right)", "( 1, 2 )"},
      {"\\dfrac{1}{2}", "\\frac{1}{2}"},
      {"\\tfrac12", "\\frac12"},
      {"5\\text{ cm}", "5"},
      {"5 \\text{ cm}^2", "5"},
      {"12 inches", "12"},
      {"\\$10", "10"},
      {"$10$", "10"},
      {"90^\\circ", "90"},
      {"90^{\\circ}", "90"},
      {"10\\%", "10%"},
      {"28 percent", "28 %"},
      {"7,425,000", "7425000"},
      {"7 425 000", "7425000"},
      {"14{,}916", "14916"},
      {"3{,}5", "3.5"},
      {"0,5", "0.5"},
      {"1000,99", "1000.99"},
      {"3,5", "3,5"},
      {"1, 2", "1, 2"},
      {"x = 3 or x = 4", "x = 3 , x = 4"},
      {"\\mathrm{km}", "\\text{km}"},
      {"\\textbf{5}", "\\text{5}"},
      {"x\\!=\\!3", "x=3"},
      {"a\\,b", "a b"},
      {"\\displaystyle\\frac{1}{2}", "\\frac{1}{2}"},
      {"5.", "5"},
      {"\\leq", "\\le"},
      {"\\varnothing", "\\emptyset"},
      {"\u2212"
       "3",
       "-3"},
      {"\\text{Sandra}", "\\text{Sandra}"},
      {"d", "d"},
      {"185\\", "185"},
      {"i,\\", "i"},  // the stray backslash hid a trailing comma (fuzz_math_parse finding)
      {"\\S\\.;\\.", "\\S"},  // ... and again after the comma went
      {"1cm\\", "1"},        // the backslash hid a unit (fuzz_math_parse finding)
      {"x{{}}", "x"},         // nested empty groups go in one pass (fuzz_math_parse finding)
  };
  for (const auto& c : cases) {
    rm::budget b(100000);
    INFO("in = " << std::string(c.in));
    CHECK(rm::normalize_answer(c.in, b) == std::string(c.want));
  }
}

TEST_CASE("extract: a final-answer statement after the last box wins" *
          doctest::test_suite("rewards.math")) {
  run({
      {"so \\boxed{200} and \\boxed{255} ... Final Answer: The final answer is $10,455$.",
       "10,455"},
      {"Final answer: 7. Check: \\boxed{7}", "7"},
      {"The answer is 5. Indeed \\boxed{6}", "6"},  // weak phrases do not override boxes
      {"Final Answer: The largest $n$ is 34.", "34"},
      {"Final Answer: we get $x = 2$ here", "x = 2"},
  });
}

TEST_CASE("extract: R1-Zero <answer> tags" * doctest::test_suite("rewards.math")) {
  run({
      {"<think>try 3</think> <answer>5</answer>", "5"},
      {"<think>x</think>\n<answer>\nThe answer is \\boxed{7}\n</answer>", "7"},
      {"<answer>1</answer> then <answer> $2$ </answer>", "2"},
      {"<answer>3", "3"},
      {"\\boxed{4} <answer>5</answer>", "5"},
  });
  rm::extract_options no_tags;
  no_tags.answer_tags = false;
  run({{"\\boxed{4} <answer>5</answer>", "4"}}, no_tags);
}
