// SPDX-License-Identifier: Apache-2.0
/// @file main.cpp
/// @brief grpo-reward: scores JSON Lines completions with weighted rule rewards, or grades one
///        gold/prediction pair (`grpo-reward equal GOLD PRED`).
///
/// Input, one JSON object per line: {"completion": str | [{"role","content"}...], "answer": str,
/// "prompt": ..., "tests": [{"input","output"}...] (or open-r1's "verification_info":
/// {"test_cases": [...], "language": ...}), "language": "python"|"cpp", "num_tokens": int, "id":
/// any}. Output, one line per input in input order: {"index", ["id"], "total", "rewards": {rule:
/// value|null}} or {"index", "error"} for a line that could not be read. Summary on stderr. Exit
/// status: 0 on success, 1 when some input lines were invalid, 2 on a usage or I/O error.

#include <rewards/rewards.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

using json = nlohmann::json;
namespace rw = grpo::rewards;

/// One parsed input line, owning its strings (samples view into it).
struct record {
  std::size_t index = 0;
  std::string completion, answer, prompt, language;
  std::vector<rw::test_case> tests;
  grpo::index_t num_tokens = -1;
  json id;            ///< echoed when present
  std::string error;  ///< non-empty when the line is invalid
};

/// Text of a string field, of a chat message list (content of the last message, open-r1 passes
/// completion[0]["content"] for single-turn completions) or of a number (its JSON text).
std::string text_of(const json& v, const char* field) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump();
  if (v.is_array() && !v.empty() && v.back().is_object() && v.back().contains("content") &&
      v.back()["content"].is_string())
    return v.back()["content"].get<std::string>();
  throw std::runtime_error(std::string("field '") + field + "' must be a string or a message list");
}

std::vector<rw::test_case> tests_of(const json& v) {
  if (!v.is_array()) throw std::runtime_error("tests must be an array of {input, output}");
  std::vector<rw::test_case> out;
  for (const auto& t : v) {
    if (!t.is_object() || !t.contains("input") || !t.contains("output"))
      throw std::runtime_error("each test must be an object with input and output");
    out.push_back({text_of(t["input"], "input"), text_of(t["output"], "output")});
  }
  return out;
}

record parse_line(const std::string& line, std::size_t index) {
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
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

/// Finite numbers as numbers, skipped rules as null.
json value_json(const std::optional<double>& v) {
  if (!v || !std::isfinite(*v)) return nullptr;
  return *v;
}

int run_equal(const std::string& gold, const std::string& pred) {
#if GRPO_REWARDS_HAS_MATH
  switch (rw::math::verify(gold, pred, rw::math::verify_options{})) {
    case rw::math::verdict::correct:
      std::cout << "true\n";
      break;
    case rw::math::verdict::incorrect:
      std::cout << "false\n";
      break;
    case rw::math::verdict::unparseable_gold:
      std::cout << "unparseable\n";
      break;
  }
  return 0;
#else
  (void)gold;
  (void)pred;
  std::cerr << "grpo-reward: built without the math verifier (<rewards/math.hpp>)\n";
  return 2;
#endif
}

struct settings {
  std::string input = "-", output = "-";
  std::string rules = "accuracy:1,format:0.5";
  std::size_t threads = 0;
  std::size_t batch = 256;
  std::string overlong_variant = "dapo";
  double code_memory_mb = 512;
  bool quiet = false;
};

int run_score(const settings& s, rw::rule_options opt) {
  if (s.overlong_variant == "dapo")
    opt.overlong.variant = rw::overlong_variant::dapo;
  else if (s.overlong_variant == "verl")
    opt.overlong.variant = rw::overlong_variant::verl;
  else if (s.overlong_variant == "openrlhf")
    opt.overlong.variant = rw::overlong_variant::openrlhf;
  else {
    std::cerr << "grpo-reward: --overlong-variant must be dapo, verl or openrlhf\n";
    return 2;
  }
  opt.code.run.memory_bytes = static_cast<std::size_t>(s.code_memory_mb * 1024.0 * 1024.0);
  rw::reward_set set;
  try {
    set = rw::make_reward_set(s.rules, opt);
  } catch (const grpo::error& e) {
    std::cerr << "grpo-reward: " << e.what() << "\n";
    return 2;
  }
  std::ifstream fin;
  std::istream* in = &std::cin;
  if (s.input != "-") {
    fin.open(s.input, std::ios::binary);
    if (!fin) {
      std::cerr << "grpo-reward: cannot open input '" << s.input << "'\n";
      return 2;
    }
    in = &fin;
  }
  std::ofstream fout;
  std::ostream* out = &std::cout;
  if (s.output != "-") {
    fout.open(s.output, std::ios::binary);
    if (!fout) {
      std::cerr << "grpo-reward: cannot open output '" << s.output << "'\n";
      return 2;
    }
    out = &fout;
  }
  rw::thread_pool pool(s.threads);
  const auto t0 = std::chrono::steady_clock::now();
  std::size_t n = 0, errors = 0;
  double sum_total = 0;
  std::vector<double> rule_sum(set.size(), 0.0);
  std::vector<std::size_t> rule_n(set.size(), 0);
  std::vector<record> recs;
  std::string line;
  bool eof = false;
  while (!eof) {
    recs.clear();
    while (recs.size() < std::max<std::size_t>(1, s.batch)) {
      if (!std::getline(*in, line)) {
        eof = true;
        break;
      }
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines
      recs.push_back(parse_line(line, n + recs.size()));
    }
    if (recs.empty()) break;
    std::vector<rw::sample> samples;
    std::vector<std::size_t> which;  // samples[k] belongs to recs[which[k]]
    for (std::size_t k = 0; k < recs.size(); ++k) {
      if (!recs[k].error.empty()) continue;
      const record& r = recs[k];
      samples.push_back({r.prompt, r.completion, r.answer, r.tests, r.language, r.num_tokens});
      which.push_back(k);
    }
    std::vector<rw::reward_breakdown> scores;
    try {
      scores = rw::score_batch(set, samples, pool);
    } catch (const std::exception& e) {
      std::cerr << "grpo-reward: scoring failed: " << e.what() << "\n";
      return 2;
    }
    std::size_t next = 0;
    for (std::size_t k = 0; k < recs.size(); ++k) {
      json o;
      o["index"] = recs[k].index;
      if (!recs[k].id.is_null()) o["id"] = recs[k].id;
      if (!recs[k].error.empty()) {
        o["error"] = recs[k].error;
        ++errors;
      } else {
        const rw::reward_breakdown& b = scores[next++];
        o["total"] = std::isfinite(b.total) ? json(b.total) : json(nullptr);
        json rules = json::object();
        for (std::size_t r = 0; r < b.rules.size(); ++r) {
          rules[b.rules[r].name] = value_json(b.rules[r].value);
          if (b.rules[r].value) {
            rule_sum[r] += *b.rules[r].value;
            ++rule_n[r];
          }
        }
        o["rewards"] = std::move(rules);
        sum_total += b.total;
      }
      *out << o.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
    }
    n += recs.size();
    out->flush();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!s.quiet) {
    const std::size_t ok = n - errors;
    std::string acc = "accuracy n/a (no accuracy rule)";
    for (std::size_t r = 0; r < set.size(); ++r) {
      if (set.rules()[r].name != "accuracy") continue;
      char b[128];
      std::snprintf(b, sizeof b, "accuracy %.6g (%zu graded, %zu skipped)",
                    rule_n[r] ? rule_sum[r] / static_cast<double>(rule_n[r]) : 0.0, rule_n[r],
                    ok - rule_n[r]);
      acc = b;
    }
    std::fprintf(stderr,
                 "grpo-reward: %zu samples (%zu invalid), %s, mean total %.6g, %.1f samples/s "
                 "(%.3f s, %zu threads)\n",
                 n, errors, acc.c_str(), ok ? sum_total / static_cast<double>(ok) : 0.0,
                 secs > 0 ? static_cast<double>(n) / secs : 0.0, secs, pool.size());
    for (std::size_t r = 0; r < set.size(); ++r) {
      const auto& name = set.rules()[r].name;
      std::fprintf(stderr,
                   "grpo-reward:   %-16s weight %-6g mean %.6g over %zu scored (%zu skipped)\n",
                   name.c_str(), set.rules()[r].weight,
                   rule_n[r] ? rule_sum[r] / static_cast<double>(rule_n[r]) : 0.0, rule_n[r],
                   ok - rule_n[r]);
    }
  }
  return errors ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "grpo-reward: rule-based rewards for GRPO / DeepSeek-R1 training (JSON Lines in, JSON Lines "
      "out)"};
  settings s;
  rw::rule_options opt;
  app.add_option("-i,--input", s.input, "JSON Lines input file ('-' = stdin)");
  app.add_option("-o,--output", s.output, "JSON Lines output file ('-' = stdout)");
  app.add_option(
         "-r,--rules", s.rules,
         "weighted rules, e.g. accuracy:1,format:0.5 (accuracy, format, format_lenient, tag_count, "
         "reasoning_steps, language, cosine, repetition, soft_overlong, code, binary_code)")
      ->capture_default_str();
  app.add_option("-j,--threads", s.threads, "threads (0 = all cores)")->capture_default_str();
  app.add_option("--batch-size", s.batch, "lines scored together (output order is input order)")
      ->capture_default_str();
  app.add_flag("-q,--quiet", s.quiet, "no summary on stderr");
  app.add_option("--language", opt.target_language,
                 "language rule: target language code (en, zh, ja, ...)")
      ->capture_default_str();
  app.add_option("--steps-target", opt.reasoning_steps.target_steps,
                 "reasoning_steps: steps for full reward")
      ->capture_default_str();
  app.add_flag("--allow-trailing-whitespace", opt.strict_format.allow_trailing_whitespace,
               "format: accept whitespace after </answer>");
  app.add_option("--cosine-max-len", opt.cosine.max_len, "cosine: max_len (characters)")
      ->capture_default_str();
  app.add_option("--ngram", opt.repetition.ngram_size, "repetition: n-gram size")
      ->capture_default_str();
  app.add_option("--max-penalty", opt.repetition.max_penalty, "repetition: max penalty (<= 0)")
      ->capture_default_str();
  app.add_option("--max-completion-len", opt.overlong.max_len, "soft_overlong: L_max (tokens)")
      ->capture_default_str();
  app.add_option("--cache-len", opt.overlong.cache_len, "soft_overlong: L_cache (tokens)")
      ->capture_default_str();
  app.add_option("--overlong-variant", s.overlong_variant, "soft_overlong: dapo, verl or openrlhf")
      ->capture_default_str();
  app.add_option("--penalty-factor", opt.overlong.penalty_factor, "soft_overlong: penalty factor")
      ->capture_default_str();
  app.add_option("--code-language", opt.code_language, "code: default language (python, cpp)")
      ->capture_default_str();
  app.add_option("--code-timeout", opt.code.run.wall_seconds, "code: wall-clock seconds per test")
      ->capture_default_str();
  app.add_option("--code-cpu", opt.code.run.cpu_seconds, "code: CPU seconds per test")
      ->capture_default_str();
  app.add_option("--code-memory-mb", s.code_memory_mb, "code: address-space limit per test (MiB)")
      ->capture_default_str();

  std::string gold, pred;
  CLI::App* equal =
      app.add_subcommand("equal", "grade one pair: prints true, false or unparseable");
  equal->add_option("GOLD", gold, "reference answer")->required();
  equal->add_option("PRED", pred, "predicted answer or completion")->required();
  app.require_subcommand(0, 1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (*equal) return run_equal(gold, pred);
  return run_score(s, opt);
}
