// SPDX-License-Identifier: Apache-2.0
/// @file fuzz_cli_jsonl.cpp
/// libFuzzer target: grpo-reward's JSON Lines input layer (tools/grpo-reward/jsonl.hpp, the
/// functions main.cpp runs). The input is a whole file; each line goes through prepare_line ->
/// parse_line -> score_records -> output_record exactly as `grpo-reward` does. Checked: no crash,
/// no leak, scoring never throws (in the CLI a throw ends the run with status 2 and loses every
/// line of the batch), and every non-blank line yields exactly one output record that is either
/// a scored record ("total" and "rewards" with every rule, no "error") or a named error record
/// (a non-empty "error", no "total" / "rewards"), never both and never nothing. The code rules
/// are left out: they run a sandboxed process per test case.
#include "jsonl.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace cli = grpo_reward_cli;

constexpr const char* rules_spec =
    "accuracy:1,format:0.5,format_lenient:0.5,tag_count:0.25,reasoning_steps:0.25,language:0.1,"
    "cosine:1,repetition:1,soft_overlong:1";

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_cli_jsonl: %s: %s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const grpo::rewards::rule_options base{};
  static const grpo::rewards::reward_set set = grpo::rewards::make_reward_set(rules_spec, base);
  static grpo::rewards::thread_pool pool(1);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Lines as std::getline splits them: on '\n', a final line without '\n' included.
  std::vector<cli::record> recs;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string line(text.substr(pos, end - pos));
    pos = end + 1;
    if (!cli::prepare_line(line)) continue;
    recs.push_back(cli::parse_line(line, recs.size(), base));
  }
  std::vector<grpo::rewards::reward_breakdown> scores;
  try {
    scores = cli::score_records(set, rules_spec, recs, pool);
  } catch (const std::exception& e) {
    fail("scoring threw", e.what());
  }
  std::size_t next = 0;
  for (std::size_t k = 0; k < recs.size(); ++k) {
    const bool bad = !recs[k].error.empty();
    if (!bad && next >= scores.size()) fail("no score for a valid line", std::to_string(k));
    const grpo::rewards::reward_breakdown* b = bad ? nullptr : &scores[next++];
    // The bytes the CLI writes, read back: what a consumer of the output sees.
    const std::string shown =
        cli::output_record(recs[k], b).dump(-1, ' ', false, cli::json::error_handler_t::replace);
    const cli::json o = cli::json::parse(shown);
    if (!o.is_object() || !o.contains("index") || o["index"] != k) fail("bad index", shown);
    const bool has_error = o.contains("error");
    const bool has_score = o.contains("total") || o.contains("rewards");
    if (has_error == has_score) fail("not exactly one of error / score", shown);
    if (has_error) {
      if (!o["error"].is_string() || o["error"].get<std::string>().empty())
        fail("unnamed error", shown);
      continue;
    }
    if (!o.contains("total") || !(o["total"].is_number() || o["total"].is_null()))
      fail("bad total", shown);
    const cli::json& r = o["rewards"];
    if (!r.is_object() || r.size() != set.size()) fail("rewards do not name every rule", shown);
    for (const auto& rule : set.rules())
      if (!r.contains(rule.name) || !(r[rule.name].is_number() || r[rule.name].is_null()))
        fail("bad rule value", shown);
  }
  if (next != scores.size()) fail("scores left over", std::to_string(scores.size() - next));
  return 0;
}
