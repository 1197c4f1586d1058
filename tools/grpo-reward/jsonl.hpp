// SPDX-License-Identifier: Apache-2.0
/// @file jsonl.hpp
/// @brief grpo-reward's JSON Lines layer: one input line -> a record (or a named error), a batch
///        of records -> reward breakdowns, a record -> its output object. Shared by main.cpp and
///        fuzz/fuzz_cli_jsonl.cpp so that the fuzzer runs the CLI's own line handling.
#pragma once

#include <rewards/rewards.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace grpo_reward_cli {

using json = nlohmann::json;
namespace rw = grpo::rewards;

/// One parsed input line, owning its strings (samples view into it).
struct record {
  std::size_t index = 0;
  std::string completion, answer, prompt, language;
  std::vector<rw::test_case> tests;
  grpo::index_t num_tokens = -1;
  json id;                                  ///< echoed when present
  std::string error;                        ///< non-empty when the line is invalid
  std::optional<rw::rule_options> options;  ///< per-line "options" override
};

/// One grader / format option reachable from the command line (`--name`, `--no-name` for a
/// flag), from `equal`, and from a JSON Lines "options" object (`name` with '_' for '-', or an
/// alias such as Math-Verify's `float_rounding`, `strict`, `allow_set_relation_comp`).
struct grader_setting {
  const char* name;               ///< command-line name
  std::vector<const char*> json;  ///< accepted JSON keys
  bool flag;                      ///< boolean (value "true"/"false"/"1"/"0")
  const char* help;
  void (*set)(rw::rule_options&, const std::string&);
};

inline bool parse_bool(const std::string& v) {
  if (v == "true" || v == "1" || v == "on" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "off" || v == "no") return false;
  throw std::runtime_error("expected true or false, got '" + v + "'");
}

inline long parse_int(const std::string& v) {
  std::size_t used = 0;
  long x = 0;
  try {
    x = std::stol(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size())
    throw std::runtime_error("expected an integer, got '" + v + "'");
  return x;
}

inline double parse_real(const std::string& v) {
  std::size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size() || !std::isfinite(x))
    throw std::runtime_error("expected a number, got '" + v + "'");
  return x;
}

inline const std::vector<grader_setting>& grader_settings() {
  static const std::vector<grader_setting> t = {
#if GRPO_REWARDS_HAS_MATH
    {"float-rounding",
     {"float_rounding", "precision"},
     false,
     "math: decimals agreeing after rounding to N places are equal (Math-Verify "
     "float_rounding; -1 = off)",
     [](rw::rule_options& o, const std::string& v) {
       const long n = parse_int(v);
       if (n < -1 || n > 100) throw std::runtime_error("float-rounding must be in [-1, 100]");
       o.math.float_rounding = static_cast<int>(n);
     }},
    {"float-min-significant",
     {"float_min_significant"},
     false,
     "math: significant digits from which a decimal is read as a rounding",
     [](rw::rule_options& o, const std::string& v) {
       const long n = parse_int(v);
       if (n < 1 || n > 1000) throw std::runtime_error("float-min-significant must be >= 1");
       o.math.float_min_significant = static_cast<int>(n);
     }},
    {"float-rel-tol",
     {"float_rel_tol"},
     false,
     "math: relative tolerance when a side is a decimal literal",
     [](rw::rule_options& o, const std::string& v) {
       const double x = parse_real(v);
       if (x < 0 || x >= 1) throw std::runtime_error("float-rel-tol must be in [0, 1)");
       o.math.float_rel_tol = x;
     }},
    {"strict-variables",
     {"strict_variables", "strict"},
     true,
     "math: variable names must match (Math-Verify strict; default on)",
     [](rw::rule_options& o, const std::string& v) { o.math.strict_variables = parse_bool(v); }},
    {"relation-vs-set",
     {"relation_vs_set", "allow_set_relation_comp", "allow_pred_relation_vs_gold_set"},
     true,
     "math: a predicted inequality may match a gold interval (default off)",
     [](rw::rule_options& o, const std::string& v) {
       o.math.allow_pred_relation_vs_gold_set = parse_bool(v);
     }},
    {"percent-lenient",
     {"percent_lenient"},
     true,
     "math: 10\\% also matches a bare 10 (default on)",
     [](rw::rule_options& o, const std::string& v) { o.math.percent_lenient = parse_bool(v); }},
    {"multiple-choice",
     {"multiple_choice"},
     true,
     "math: an option-letter gold compares the predicted letter (default on)",
     [](rw::rule_options& o, const std::string& v) { o.math.multiple_choice = parse_bool(v); }},
#endif
    {"allow-empty-think",
     {"allow_empty_think"},
     true,
     "format: accept an empty <think> block",
     [](rw::rule_options& o, const std::string& v) {
       o.strict_format.allow_empty_think = parse_bool(v);
     }},
    {"allow-empty-answer",
     {"allow_empty_answer"},
     true,
     "format: accept an empty <answer> block",
     [](rw::rule_options& o, const std::string& v) {
       o.strict_format.allow_empty_answer = parse_bool(v);
     }},
    {"allow-trailing-newline",
     {"allow_trailing_newline"},
     true,
     "format: accept exactly one newline after </answer>",
     [](rw::rule_options& o, const std::string& v) {
       o.strict_format.allow_trailing_newline = parse_bool(v);
     }},
    {"allow-trailing-whitespace",
     {"allow_trailing_whitespace"},
     true,
     "format: accept any whitespace after </answer>",
     [](rw::rule_options& o, const std::string& v) {
       o.strict_format.allow_trailing_whitespace = parse_bool(v);
     }},
  };
  return t;
}

/// Applies a JSON "options" object over `base`. @throws std::runtime_error naming the key.
inline rw::rule_options apply_json_options(const json& o, rw::rule_options base) {
  if (!o.is_object()) throw std::runtime_error("'options' must be an object");
  for (const auto& [key, value] : o.items()) {
    const grader_setting* hit = nullptr;
    for (const auto& g : grader_settings())
      for (const char* k : g.json)
        if (key == k) hit = &g;
    if (!hit) throw std::runtime_error("unknown option '" + key + "'");
    std::string v;
    if (value.is_boolean())
      v = value.get<bool>() ? "true" : "false";
    else if (value.is_number() || value.is_string())
      v = value.is_string() ? value.get<std::string>() : value.dump();
    else
      throw std::runtime_error("option '" + key + "' must be a boolean, number or string");
    try {
      hit->set(base, v);
    } catch (const std::exception& e) {
      throw std::runtime_error("option '" + key + "': " + e.what());
    }
  }
  return base;
}

/// Text of a string field, of a chat message list (content of the last message, open-r1 passes
/// completion[0]["content"] for single-turn completions) or of a number (its JSON text).
inline std::string text_of(const json& v, const char* field) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump();
  if (v.is_array() && !v.empty() && v.back().is_object() && v.back().contains("content") &&
      v.back()["content"].is_string())
    return v.back()["content"].get<std::string>();
  throw std::runtime_error(std::string("field '") + field + "' must be a string or a message list");
}

inline std::vector<rw::test_case> tests_of(const json& v) {
  if (!v.is_array()) throw std::runtime_error("tests must be an array of {input, output}");
  std::vector<rw::test_case> out;
  for (const auto& t : v) {
    if (!t.is_object() || !t.contains("input") || !t.contains("output"))
      throw std::runtime_error("each test must be an object with input and output");
    out.push_back({text_of(t["input"], "input"), text_of(t["output"], "output")});
  }
  return out;
}

inline record parse_line(const std::string& line, std::size_t index,
                         const rw::rule_options& base) {
  record r;
  r.index = index;
  try {
    const json j = json::parse(line);
    if (!j.is_object()) throw std::runtime_error("a line must be a JSON object");
    if (!j.contains("completion")) throw std::runtime_error("missing field 'completion'");
    r.completion = text_of(j["completion"], "completion");
    if (j.contains("answer") && !j["answer"].is_null())
      r.answer = text_of(j["answer"], "answer");
    else if (j.contains("solution") && !j["solution"].is_null())
      r.answer = text_of(j["solution"], "solution");
    if (j.contains("prompt") && !j["prompt"].is_null()) r.prompt = text_of(j["prompt"], "prompt");
    if (j.contains("tests")) r.tests = tests_of(j["tests"]);
    if (j.contains("verification_info") && j["verification_info"].is_object()) {
      const json& vi = j["verification_info"];
      if (vi.contains("test_cases")) r.tests = tests_of(vi["test_cases"]);
      if (vi.contains("language") && vi["language"].is_string()) r.language = vi["language"];
    }
    if (j.contains("language") && j["language"].is_string()) r.language = j["language"];
    if (j.contains("num_tokens")) {
      if (!j["num_tokens"].is_number_integer() || j["num_tokens"].get<long long>() < 0)
        throw std::runtime_error("num_tokens must be a non-negative integer");
      r.num_tokens = j["num_tokens"].get<grpo::index_t>();
    }
    if (j.contains("id")) r.id = j["id"];
    if (j.contains("options") && !j["options"].is_null())
      r.options = apply_json_options(j["options"], base);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

/// Finite numbers as numbers, skipped rules as null.
inline json value_json(const std::optional<double>& v) {
  if (!v || !std::isfinite(*v)) return nullptr;
  return *v;
}

/// A raw input line made ready for parse_line: a trailing '\r' dropped (CRLF files).
/// @return false for a blank line (only spaces and tabs), which yields no output record.
inline bool prepare_line(std::string& line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line.find_first_not_of(" \t") != std::string::npos;
}

/// Scores the valid records of a batch with `set` (lines carrying their own "options" with a set
/// built from `rules` and those options). @return one breakdown per record without error, in
/// record order. @throws what make_reward_set / score_batch throw.
inline std::vector<rw::reward_breakdown> score_records(const rw::reward_set& set,
                                                       const std::string& rules,
                                                       const std::vector<record>& recs,
                                                       rw::thread_pool& pool) {
  std::vector<rw::sample> samples;
  std::vector<std::size_t> which;  // samples[k] belongs to recs[which[k]]
  for (std::size_t k = 0; k < recs.size(); ++k) {
    if (!recs[k].error.empty()) continue;
    const record& r = recs[k];
    samples.push_back({r.prompt, r.completion, r.answer, r.tests, r.language, r.num_tokens});
    which.push_back(k);
  }
  std::vector<rw::reward_breakdown> scores = rw::score_batch(set, samples, pool);
  // Lines with their own "options": rescored with a reward set built from them (rare, so
  // one set per line is cheap next to the grading itself).
  for (std::size_t k = 0; k < samples.size(); ++k) {
    const record& r = recs[which[k]];
    if (!r.options) continue;
    const rw::reward_set own = rw::make_reward_set(rules, *r.options);
    scores[k] = rw::score_batch(own, std::span<const rw::sample>(&samples[k], 1), pool)[0];
  }
  return scores;
}

/// The output object of one line: {"index", ["id"], "error"} for an invalid record (`b` null),
/// {"index", ["id"], "total", "rewards": {rule: value|null}} for a scored one.
inline json output_record(const record& r, const rw::reward_breakdown* b) {
  json o;
  o["index"] = r.index;
  if (!r.id.is_null()) o["id"] = r.id;
  if (!r.error.empty()) {
    o["error"] = r.error;
    return o;
  }
  o["total"] = std::isfinite(b->total) ? json(b->total) : json(nullptr);
  json rules = json::object();
  for (const auto& rule : b->rules) rules[rule.name] = value_json(rule.value);
  o["rewards"] = std::move(rules);
  return o;
}

}  // namespace grpo_reward_cli
