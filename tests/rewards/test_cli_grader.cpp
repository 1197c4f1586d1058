// SPDX-License-Identifier: Apache-2.0
// grpo-reward: grader and format options on `equal` (dash-leading positionals), on the scoring
// command line and per JSON Lines line ("options" override). Oracles: the library called with the
// same options, and hand-checked verdicts (0.333 and 0.3349 both round to 0.33).
#include <rewards/code_exec.hpp>
#include <rewards/compose.hpp>
#include <rewards/format.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

using namespace grpo::rewards;
using nlohmann::json;

TEST_CASE("format: exactly one trailing newline is its own option" *
          doctest::test_suite("rewards")) {
  const std::string body = "<think>\nwork\n</think>\n<answer>\n3\n</answer>";
  strict_format_options nl;
  nl.allow_trailing_newline = true;
  strict_format_options ws;
  ws.allow_trailing_whitespace = true;
  CHECK(strict_format_reward(body) == 1.0);
  CHECK(strict_format_reward(body + "\n") == 0.0);
  CHECK(strict_format_reward(body + "\n", nl) == 1.0);
  CHECK(strict_format_reward(body + "\n\n", nl) == 0.0);
  CHECK(strict_format_reward(body + " \n", nl) == 0.0);
  CHECK(strict_format_reward(body + "\n\n", ws) == 1.0);
  CHECK(strict_format_reward(body, nl) == 1.0);
}

#ifdef GRPO_REWARD_CLI
#include "../support/cli_runner.hpp"
namespace {
using grpo_test::cli_result;
using grpo_test::run_cli;

using grpo_test::lines;

std::string equal(std::vector<std::string> args) {
  args.insert(args.begin(), "equal");
  const cli_result r = run_cli(args, "");
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  return r.out;
}
}  // namespace

TEST_CASE("cli equal: answers starting with '-' are positionals" * doctest::test_suite("rewards")) {
#if GRPO_REWARDS_HAS_MATH
  CHECK(equal({"-\\frac{2}{3}", "-0.667"}) == "true\n");
  CHECK(equal({"-\\frac{2}{3}", "-0.6667"}) == "true\n");
  CHECK(equal({"-\\frac{2}{3}", "0.667"}) == "false\n");
  CHECK(equal({"-x", "-x"}) == "true\n");
  CHECK(equal({"--", "-5", "-5"}) == "true\n");
  CHECK(equal({"-5", "--", "-5"}) == "true\n");
  CHECK(equal({"-1", "-2"}) == "false\n");
  // `--no-such` is not an option name: a positional like any other string.
  CHECK(equal({"--no-such", "--no-such"}) == "true\n");
  CHECK(run_cli({"equal", "-1"}, "").exit_code == 2);
  CHECK(run_cli({"equal", "-1", "-1", "-1"}, "").exit_code == 2);
  CHECK(run_cli({"equal", "--float-rounding", "x", "1", "1"}, "").exit_code == 2);
  CHECK(run_cli({"equal", "--help"}, "").out.find("--float-rounding") != std::string::npos);
#endif
}

TEST_CASE("cli equal: grader options" * doctest::test_suite("rewards")) {
#if GRPO_REWARDS_HAS_MATH
  CHECK(equal({"0.333", "0.3349"}) == "false\n");
  CHECK(equal({"--float-rounding", "2", "0.333", "0.3349"}) == "true\n");
  CHECK(equal({"--float-rounding=2", "0.333", "0.3449"}) == "false\n");
  CHECK(equal({"x^2+1", "y^2+1"}) == "false\n");
  CHECK(equal({"--no-strict-variables", "x^2+1", "y^2+1"}) == "true\n");
  CHECK(equal({"--no-strict-variables", "x^2+1", "y^2+2"}) == "false\n");
  CHECK(equal({"(1,2)", "1<x<2"}) == "false\n");
  CHECK(equal({"--relation-vs-set", "(1,2)", "1<x<2"}) == "true\n");
  CHECK(equal({"10", "10\\%"}) == "true\n");
  CHECK(equal({"--no-percent-lenient", "10", "10\\%"}) == "false\n");
#endif
}

TEST_CASE("cli scoring: options on the command line and per line" *
          doctest::test_suite("rewards")) {
#if GRPO_REWARDS_HAS_MATH
  const json a{{"completion", "\\boxed{0.3349}"}, {"answer", "0.333"}};
  json b = a;
  b["options"] = {{"float_rounding", 2}};
  json c = a;
  c["options"] = {{"precision", 2}, {"strict", false}};
  json bad = a;
  bad["options"] = {{"no_such_option", 1}};
  json badv = a;
  badv["options"] = {{"float_rounding", "two"}};
  const std::string in =
      a.dump() + "\n" + b.dump() + "\n" + c.dump() + "\n" + bad.dump() + "\n" + badv.dump() + "\n";
  cli_result r = run_cli({"-q", "--rules", "accuracy"}, in);
  CHECK(r.exit_code == 1);  // two invalid lines
  auto out = lines(r.out);
  REQUIRE(out.size() == 5);
  CHECK(out[0]["rewards"]["accuracy"] == 0.0);
  CHECK(out[1]["rewards"]["accuracy"] == 1.0);
  CHECK(out[2]["rewards"]["accuracy"] == 1.0);
  CHECK(out[3]["error"].get<std::string>().find("no_such_option") != std::string::npos);
  CHECK(out[4]["error"].get<std::string>().find("float_rounding") != std::string::npos);
  // The same option for all lines from the command line.
  r = run_cli({"-q", "--rules", "accuracy", "--float-rounding", "2"}, a.dump() + "\n");
  out = lines(r.out);
  REQUIRE(out.size() == 1);
  CHECK(out[0]["rewards"]["accuracy"] == 1.0);
#endif
  // Format options: one trailing newline, empty think.
  const std::string body = "<think>\nwork\n</think>\n<answer>\n3\n</answer>";
  const json f0{{"completion", body + "\n"}};
  json f1 = f0;
  f1["options"] = {{"allow_trailing_newline", true}};
  json f2{{"completion", body + "\n\n"}, {"options", {{"allow_trailing_newline", true}}}};
  json f3{{"completion", "<think>\n\n</think>\n<answer>\n3\n</answer>"}};
  json f4 = f3;
  f4["options"] = {{"allow_empty_think", true}};
  const std::string fin =
      f0.dump() + "\n" + f1.dump() + "\n" + f2.dump() + "\n" + f3.dump() + "\n" + f4.dump() + "\n";
  r = run_cli({"-q", "--rules", "format"}, fin);
  CHECK(r.exit_code == 0);
  out = lines(r.out);
  REQUIRE(out.size() == 5);
  CHECK(out[0]["rewards"]["format"] == 0.0);
  CHECK(out[1]["rewards"]["format"] == 1.0);
  CHECK(out[2]["rewards"]["format"] == 0.0);
  CHECK(out[3]["rewards"]["format"] == 0.0);
  CHECK(out[4]["rewards"]["format"] == 1.0);
  r = run_cli({"-q", "--rules", "format", "--allow-trailing-newline"}, f0.dump() + "\n");
  out = lines(r.out);
  REQUIRE(out.size() == 1);
  CHECK(out[0]["rewards"]["format"] == 1.0);
}
#endif  // GRPO_REWARD_CLI
