// SPDX-License-Identifier: Apache-2.0
// Composition: rule specs, weighted totals with skipped rules, the built-in rule factory agreeing
// with the direct functions, and the accuracy rule wired to the math verifier.
#include <rewards/compose.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

using namespace grpo::rewards;

TEST_CASE("compose: rule spec parsing" * doctest::test_suite("rewards")) {
  auto s = parse_rule_spec("accuracy:1,format:0.5,tag_count");
  REQUIRE(s.size() == 3);
  CHECK(s[0].first == "accuracy");
  CHECK(s[0].second == 1.0);
  CHECK(s[1].first == "format");
  CHECK(s[1].second == 0.5);
  CHECK(s[2].first == "tag_count");
  CHECK(s[2].second == 1.0);
  s = parse_rule_spec(" a : -2.5 ,b:1e-3");
  REQUIRE(s.size() == 2);
  CHECK(s[0].first == "a");
  CHECK(s[0].second == -2.5);
  CHECK(s[1].second == 1e-3);
  for (const char* bad : {"", ",", "a,", "a:", "a:x", "a:1x", ":1", "a:nan", "a:inf", "a:1e999"}) {
    INFO(bad);
    CHECK_THROWS_WITH_AS(parse_rule_spec(bad), doctest::Contains("[grpo.bad_option]"), grpo::error);
  }
}

TEST_CASE("compose: weighted total, breakdown and skipped rules" * doctest::test_suite("rewards")) {
  reward_set set;
  set.add("one", 2.0, [](const sample&) -> std::optional<double> { return 1.0; })
      .add("len", 0.5,
           [](const sample& s) -> std::optional<double> {
             return static_cast<double>(s.completion.size());
           })
      .add("skip", 10.0, [](const sample&) -> std::optional<double> { return std::nullopt; });
  sample s;
  s.completion = "abcd";
  const reward_breakdown b = set.score(s);
  CHECK(b.total == doctest::Approx(2.0 * 1.0 + 0.5 * 4.0).epsilon(1e-12));  // skipped rule adds nothing
  REQUIRE(b.rules.size() == 3);
  CHECK(b.rules[0].name == "one");
  CHECK(b.rules[1].value.value() == 4.0);
  CHECK_FALSE(b.rules[2].value.has_value());
  CHECK(b.rules[2].weight == 10.0);
  CHECK(b.value("len").value() == 4.0);
  CHECK_FALSE(b.value("absent").has_value());
  CHECK(set.size() == 3);
  const auto none = [](const sample&) -> std::optional<double> { return 0.0; };
  CHECK_THROWS_WITH_AS(set.add("one", 1.0, none), doctest::Contains("duplicate"), grpo::error);
  CHECK_THROWS_WITH_AS(set.add("", 1.0, none), doctest::Contains("[grpo.bad_option]"), grpo::error);
  CHECK_THROWS_WITH_AS(set.add("w", std::nan(""), none), doctest::Contains("not finite"),
                       grpo::error);
  CHECK_THROWS_WITH_AS(set.add("f", 1.0, rule_fn{}), doctest::Contains("no function"), grpo::error);
  // empty set: total 0
  CHECK(reward_set{}.score(s).total == 0.0);
}

TEST_CASE("compose: built-in rules agree with the direct functions" *
          doctest::test_suite("rewards")) {
  rule_options o;
  o.cosine.max_len = 50;
  o.overlong.max_len = 40;
  o.overlong.cache_len = 10;
  o.repetition.ngram_size = 2;
  o.target_language = "zh";
  const std::vector<std::string> texts = {
      "<think>\nStep 1: a\nStep 2: b\n</think>\n<answer>\n42\n</answer>",
      "<think>\n我们 think 这个 this this this\n</think>\n<answer>\n42\n</answer>\ntrailing",
      "no tags at all, First, one. Next, two.", ""};
  for (const auto& t : texts) {
    INFO(t);
    sample s;
    s.completion = t;
    CHECK(make_rule("format", o)(s).value() == strict_format_reward(t));
    CHECK(make_rule("format_lenient", o)(s).value() == lenient_format_reward(t));
    CHECK(make_rule("tag_count", o)(s).value() == tag_count_reward(t));
    CHECK(make_rule("reasoning_steps", o)(s).value() == reasoning_steps_reward(t));
    CHECK(make_rule("language", o)(s).value() == language_consistency_reward(t, "zh"));
    CHECK(make_rule("repetition", o)(s).value() == repetition_penalty_reward(t, o.repetition));
    CHECK(make_rule("soft_overlong", o)(s).value() ==
          soft_overlong_reward(text_length(t), o.overlong));
    s.num_tokens = 35;  // token count wins over the text length
    CHECK(make_rule("soft_overlong", o)(s).value() == doctest::Approx(-0.5).epsilon(1e-12));
  }
  CHECK_THROWS_WITH_AS(make_rule("nope", o), doctest::Contains("unknown reward rule 'nope'"),
                       grpo::error);
  rule_options bad = o;
  bad.target_language = "klingon";
  CHECK_THROWS_WITH_AS(make_rule("language", bad), doctest::Contains("[grpo.bad_option]"),
                       grpo::error);
  bad = o;
  bad.repetition.max_penalty = 1.0;
  CHECK_THROWS_WITH_AS(make_rule("repetition", bad), doctest::Contains("[grpo.bad_option]"), grpo::error);
  bad = o;
  bad.overlong.cache_len = 0;
  CHECK_THROWS_WITH_AS(make_rule("soft_overlong", bad), doctest::Contains("[grpo.bad_option]"), grpo::error);
  bad = o;
  bad.code_language = "cobol";
  CHECK_THROWS_WITH_AS(make_rule("code", bad), doctest::Contains("[grpo.bad_option]"), grpo::error);
}

TEST_CASE("compose: code rule skips samples without tests and honours their language" *
          doctest::test_suite("rewards")) {
  rule_options o;
  o.code.run.cpu_seconds = 2;
  o.code.run.wall_seconds = 10;
  const auto code = make_rule("code", o);
  const auto binary = make_rule("binary_code", o);
  sample s;
  s.completion = "```python\nprint(int(input()) * 2)\n```";
  CHECK_FALSE(code(s).has_value());  // no tests: skipped, not punished
  const std::vector<test_case> tests = {{"2\n", "4\n"}, {"5\n", "10\n"}, {"1\n", "3\n"}};
  s.tests = tests;
  CHECK(code(s).value() == doctest::Approx(2.0 / 3.0).epsilon(1e-12));
  CHECK(binary(s).value() == 0.0);
  s.code_language = "cpp";  // no ```cpp block -> 0
  CHECK(code(s).value() == 0.0);
  s.code_language = "haskell";  // a language the rule cannot run -> skipped
  CHECK_FALSE(code(s).has_value());
}

TEST_CASE("compose: graded text is the last answer block" * doctest::test_suite("rewards")) {
  CHECK(graded_text("<think>\nx\n</think>\n<answer>\n42\n</answer>", true) == "\n42\n");
  CHECK(graded_text("<answer>1</answer> <answer>2</answer>", true) == "2");
  CHECK(graded_text("<answer>unclosed", true) == "unclosed");
  CHECK(graded_text("plain \\boxed{3}", true) == "plain \\boxed{3}");
  CHECK(graded_text("<answer>1</answer>", false) == "<answer>1</answer>");
}

#if GRPO_REWARDS_HAS_MATH
TEST_CASE("compose: accuracy and cosine rules use the math verifier" *
          doctest::test_suite("rewards")) {
  rule_options o;
  o.cosine.max_len = 100;
  const auto acc = make_rule("accuracy", o);
  const auto cos = make_rule("cosine", o);
  sample s;
  s.answer = "42";
  s.completion = "<think>\nsix times seven\n</think>\n<answer>\n42\n</answer>";
  CHECK(acc(s).value() == 1.0);
  CHECK(cos(s).value() ==
        doctest::Approx(cosine_scaled_reward(true, text_length(s.completion), o.cosine)).epsilon(1e-12));
  s.completion = "The answer is \\boxed{41}.";
  CHECK(acc(s).value() == 0.0);
  CHECK(cos(s).value() ==
        doctest::Approx(cosine_scaled_reward(false, text_length(s.completion), o.cosine)).epsilon(1e-12));
  s.completion = "So \\boxed{\\frac{84}{2}}";
  CHECK(acc(s).value() == 1.0);
  // unparseable gold: skipped (never rewarded 1.0, open-r1 issues #86/#215/#293)
  s.answer = "";
  CHECK_FALSE(acc(s).has_value());
  CHECK_FALSE(cos(s).has_value());
  const reward_set set = make_reward_set("accuracy:1,format:0.5", o);
  s.answer = "42";
  s.completion = "<think>\nok\n</think>\n<answer>\n42\n</answer>";
  CHECK(set.score(s).total == doctest::Approx(1.5).epsilon(1e-12));
}
#else
TEST_CASE("compose: math rules report the missing verifier" * doctest::test_suite("rewards")) {
  CHECK_THROWS_WITH_AS(make_rule("accuracy", rule_options{}), doctest::Contains("math verifier"),
                       grpo::error);
}
#endif
