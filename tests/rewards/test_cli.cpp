// SPDX-License-Identifier: Apache-2.0
// grpo-reward CLI: runs the built binary (path from tools/grpo-reward/CMakeLists.txt) on JSON Lines
// and checks every output line against the library, the exit codes and the stderr summary.
#include <rewards/code_exec.hpp>
#include <rewards/compose.hpp>

#include <doctest/doctest.h>
#include "../support/cli_runner.hpp"
#include <nlohmann/json.hpp>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

using namespace grpo::rewards;
using nlohmann::json;

TEST_CASE("cli: the default rule spec of grpo-reward is valid" * doctest::test_suite("rewards")) {
  const auto spec = parse_rule_spec("accuracy:1,format:0.5");
  REQUIRE(spec.size() == 2);
#if GRPO_REWARDS_HAS_MATH
  CHECK(make_reward_set("accuracy:1,format:0.5").size() == 2);
#endif
  CHECK(
      make_reward_set("format:0.5,tag_count,reasoning_steps,language,repetition,soft_overlong,code")
          .size() == 7);
}

#ifdef GRPO_REWARD_CLI
namespace {
using grpo_test::cli_result;
using grpo_test::run_cli;

using grpo_test::lines;
}  // namespace

TEST_CASE("cli: JSON Lines scoring matches the library, in input order" *
          doctest::test_suite("rewards")) {
  const std::vector<std::string> completions = {
      "<think>\nStep 1: x\n</think>\n<answer>\n7\n</answer>", "<think>\nno answer block",
      "plain text plain text plain text",
      "<think>\n\xe6\x88\x91\xe4\xbb\xac think\n</think>\n<answer>\n1\n</answer>\n"};
  std::string in;
  for (std::size_t i = 0; i < completions.size(); ++i)
    in += json{{"completion", completions[i]}, {"answer", "7"}, {"id", "s" + std::to_string(i)}}
              .dump() +
          "\n";
  // a chat-format completion (list of messages): the last message's content is scored
  in +=
      json{{"completion", json::array({json{{"role", "assistant"}, {"content", completions[0]}}})}}
          .dump() +
      "\n";
  const auto r = run_cli({"--rules", "format:2,tag_count:0.5,repetition:1,language:1", "--ngram",
                          "2", "--threads", "3", "--batch-size", "2"},
                         in);
  CHECK(r.exit_code == 0);
  const auto out = lines(r.out);
  REQUIRE(out.size() == completions.size() + 1);
  repetition_options rep;
  rep.ngram_size = 2;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::string& c = completions[i < completions.size() ? i : 0];
    INFO(i);
    CHECK(out[i]["index"] == i);
    if (i < completions.size()) CHECK(out[i]["id"] == "s" + std::to_string(i));
    const json& rw = out[i]["rewards"];
    CHECK(rw["format"].get<double>() == strict_format_reward(c));
    CHECK(rw["tag_count"].get<double>() == tag_count_reward(c));
    CHECK(rw["repetition"].get<double>() == doctest::Approx(repetition_penalty_reward(c, rep)).epsilon(1e-12));
    CHECK(rw["language"].get<double>() == doctest::Approx(language_consistency_reward(c, "en")).epsilon(1e-12));
    const double total = 2 * strict_format_reward(c) + 0.5 * tag_count_reward(c) +
                         repetition_penalty_reward(c, rep) + language_consistency_reward(c, "en");
    CHECK(out[i]["total"].get<double>() == doctest::Approx(total).epsilon(1e-12));
  }
  CHECK(r.err.find("5 samples (0 invalid)") != std::string::npos);
  CHECK(r.err.find("samples/s") != std::string::npos);
}

TEST_CASE("cli: invalid lines are reported in place and set exit status 1" *
          doctest::test_suite("rewards")) {
  const std::string in =
      "{\"completion\": \"<think>\\n\"}\nnot json\n{\"answer\": \"1\"}\n\n{\"completion\": 5}\n";
  const auto r = run_cli({"-q", "--rules", "tag_count"}, in);
  CHECK(r.exit_code == 1);
  const auto out = lines(r.out);
  REQUIRE(out.size() == 4);  // the blank line is skipped
  CHECK(out[0]["rewards"]["tag_count"] == 0.25);
  CHECK(out[1].contains("error"));
  CHECK(out[2]["error"].get<std::string>().find("completion") != std::string::npos);
  CHECK(out[3]["rewards"]["tag_count"] == 0.0);            // a number is scored as its text
  CHECK(r.err.find("grpo-reward:") == std::string::npos);  // -q: no summary
}

TEST_CASE("cli: usage errors exit 2" * doctest::test_suite("rewards")) {
  CHECK(run_cli({"--rules", "bogus"}, "").exit_code == 2);
  CHECK(run_cli({"--rules", "format:abc"}, "").exit_code == 2);
  CHECK(run_cli({"--no-such-flag"}, "").exit_code == 2);
  CHECK(run_cli({"-i", "/nonexistent/file.jsonl", "--rules", "format"}, "").exit_code == 2);
  CHECK(run_cli({"--overlong-variant", "x", "--rules", "soft_overlong"}, "").exit_code == 2);
}

TEST_CASE("cli: code tests from the JSON line and open-r1 verification_info" *
          doctest::test_suite("rewards")) {
  const json a = {{"completion", "```python\nprint(int(input())+1)\n```"},
                  {"tests", json::array({json{{"input", "1\n"}, {"output", "2\n"}},
                                         json{{"input", "5\n"}, {"output", "7\n"}}})}};
  const json b = {{"completion",
                   "```cpp\n#include <cstdio>\nint main(){int "
                   "x;std::scanf(\"%d\",&x);std::printf(\"%d\\n\",x*3);}\n```"},
                  {"verification_info",
                   {{"language", "cpp"},
                    {"test_cases", json::array({json{{"input", "2"}, {"output", "6"}}})}}}};
  const json c = {{"completion", "no tests here"}};
  const auto r =
      run_cli({"-q", "--rules", "code"}, a.dump() + "\n" + b.dump() + "\n" + c.dump() + "\n");
  CHECK(r.exit_code == 0);
  const auto out = lines(r.out);
  REQUIRE(out.size() == 3);
  CHECK(out[0]["rewards"]["code"] == 0.5);
  CHECK(out[1]["rewards"]["code"] == 1.0);
  CHECK(out[2]["rewards"]["code"].is_null());  // skipped
  CHECK(out[2]["total"] == 0.0);
}

#if GRPO_REWARDS_HAS_MATH
TEST_CASE("cli: equal prints one word and exits 0" * doctest::test_suite("rewards")) {
  auto r = run_cli({"equal", "\\frac{1}{2}", "0.5"}, "");
  CHECK(r.exit_code == 0);
  CHECK(r.out == "true\n");
  r = run_cli({"equal", "2", "\\boxed{3}"}, "");
  CHECK(r.exit_code == 0);
  CHECK(r.out == "false\n");
  r = run_cli({"equal", "", "3"}, "");
  CHECK(r.exit_code == 0);
  CHECK(r.out == "unparseable\n");
  r = run_cli({"equal", "-3", "-3"}, "");  // negative numbers are positionals, not options
  CHECK(r.exit_code == 0);
  CHECK(r.out == "true\n");
  CHECK(run_cli({"equal", "1"}, "").exit_code == 2);
  // the accuracy rule and equal agree, and the summary reports accuracy
  const std::string in = json{{"completion", "<think>\nhalf\n</think>\n<answer>\n0.5\n</answer>"},
                              {"answer", "\\frac{1}{2}"}}
                             .dump() +
                         "\n" + json{{"completion", "\\boxed{3}"}, {"answer", "2"}}.dump() + "\n" +
                         json{{"completion", "x"}, {"answer", ""}}.dump() + "\n";
  r = run_cli({"--rules", "accuracy"}, in);
  const auto out = lines(r.out);
  REQUIRE(out.size() == 3);
  CHECK(out[0]["rewards"]["accuracy"] == 1.0);
  CHECK(out[1]["rewards"]["accuracy"] == 0.0);
  CHECK(out[2]["rewards"]["accuracy"].is_null());
  CHECK(r.err.find("accuracy 0.5 (2 graded, 1 skipped)") != std::string::npos);
}
#endif
#else
TEST_CASE("cli: the grpo-reward binary" * doctest::test_suite("rewards")) {
  MESSAGE("SKIPPED: grpo-reward is not built here (GRPO_BUILD_TOOLS=OFF or no CLI11): only the "
          "rule-spec case above ran");
}
#endif  // GRPO_REWARD_CLI
