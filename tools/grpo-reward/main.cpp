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
/// A line may carry "options": {name: value} overriding the grader and format options for that
/// line only (names of grader_settings below, with Math-Verify's aliases).
///
/// `grpo-reward equal [OPTIONS] GOLD PRED` takes any two strings as positionals, including ones
/// that start with '-' (`equal -\frac{2}{3} -0.666...`): only the option names listed by
/// `grpo-reward equal --help` are options, and `--` ends them.

#include "jsonl.hpp"

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
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using json = nlohmann::json;
namespace rw = grpo::rewards;
using namespace grpo_reward_cli;  // NOLINT: the JSON Lines layer (jsonl.hpp) is this tool's own

int run_equal(const std::string& gold, const std::string& pred, const rw::rule_options& opt) {
#if GRPO_REWARDS_HAS_MATH
  switch (rw::math::verify(gold, pred, opt.math)) {
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
  (void)opt;
  std::cerr << "grpo-reward: built without the math verifier (<rewards/math.hpp>)\n";
  return 2;
#endif
}

/// `grpo-reward equal [OPTIONS] GOLD PRED`, parsed by hand: CLI11 reads "-0.666" or
/// "-\frac{2}{3}" as an unknown option, while a gold or a prediction is any string. Only the
/// names of grader_settings() (as `--name`, `--name=V`, `--no-name`, `--name V` for values) and
/// `--help` are options; `--` ends them; everything else is positional.
int equal_main(int argc, char** argv) {
  rw::rule_options opt;
  std::vector<std::string> pos;
  bool options_done = false;
  auto usage = [](std::ostream& os) {
    os << "usage: grpo-reward equal [OPTIONS] [--] GOLD PRED\n"
          "Grades one pair; prints true, false or unparseable (exit 0). GOLD and PRED may start "
          "with '-'.\nOptions:\n";
    for (const auto& g : grader_settings()) {
      std::string n =
          std::string("  --") + g.name + (g.flag ? ", --no-" + std::string(g.name) : " V");
      os << n << std::string(n.size() < 40 ? 40 - n.size() : 1, ' ') << g.help << "\n";
    }
  };
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (!options_done && a == "--") {
        options_done = true;
        continue;
      }
      if (!options_done && (a == "--help" || a == "-h") && pos.empty()) {
        usage(std::cout);
        return 0;
      }
      const grader_setting* hit = nullptr;
      std::string value;
      bool negated = false;
      if (!options_done && a.rfind("--", 0) == 0) {
        std::string name = a.substr(2);
        const std::size_t eq = name.find('=');
        if (eq != std::string::npos) {
          value = name.substr(eq + 1);
          name.resize(eq);
        }
        if (name.rfind("no-", 0) == 0) {
          negated = true;
          name = name.substr(3);
        }
        for (const auto& g : grader_settings())
          if (name == g.name) hit = &g;
        if (hit && negated && (!hit->flag || eq != std::string::npos)) hit = nullptr;
        if (hit) {
          if (hit->flag && eq == std::string::npos) value = negated ? "false" : "true";
          if (!hit->flag && eq == std::string::npos) {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
            value = argv[++i];
          }
          hit->set(opt, value);
          continue;
        }
      }
      pos.push_back(a);
    }
  } catch (const std::exception& e) {
    std::cerr << "grpo-reward equal: " << e.what() << "\n";
    return 2;
  }
  if (pos.size() != 2) {
    std::cerr << "grpo-reward equal: expected GOLD and PRED, got " << pos.size()
              << " argument(s)\n";
    usage(std::cerr);
    return 2;
  }
  return run_equal(pos[0], pos[1], opt);
}

struct settings {
  std::string input = "-", output = "-";
  std::string rules = "accuracy:1,format:0.5";
  std::size_t threads = 0;
  std::size_t batch = 1024;  // lines per batch: three pool barriers each (parse, score, serialise)
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
  std::vector<std::string> lines, dumped;
  std::vector<const rw::reward_breakdown*> of;
  std::string line;
  bool eof = false;
  while (!eof) {
    // Only reading is serial: JSON parsing, scoring and serialising run on the pool (with them
    // on the main thread, -j 2 gained 1.5-1.7x instead of ~2x on a symbolic-heavy batch).
    lines.clear();
    while (lines.size() < std::max<std::size_t>(1, s.batch)) {
      if (!std::getline(*in, line)) {
        eof = true;
        break;
      }
      if (!prepare_line(line)) continue;  // blank lines
      lines.push_back(std::move(line));
    }
    if (lines.empty()) break;
    recs.assign(lines.size(), record{});
    pool.parallel_for(lines.size(),
                      [&](std::size_t k) { recs[k] = parse_line(lines[k], n + k, opt); });
    std::vector<rw::reward_breakdown> scores;
    try {
      scores = score_records(set, s.rules, recs, pool);
    } catch (const std::exception& e) {
      std::cerr << "grpo-reward: scoring failed: " << e.what() << "\n";
      return 2;
    }
    of.assign(recs.size(), nullptr);
    for (std::size_t k = 0, next = 0; k < recs.size(); ++k)
      if (recs[k].error.empty()) of[k] = &scores[next++];
    dumped.assign(recs.size(), std::string{});
    pool.parallel_for(recs.size(), [&](std::size_t k) {
      dumped[k] = output_record(recs[k], of[k]).dump(-1, ' ', false, json::error_handler_t::replace);
    });
    for (std::size_t k = 0; k < recs.size(); ++k) {
      const rw::reward_breakdown* b = of[k];
      if (b) {
        for (std::size_t r = 0; r < b->rules.size(); ++r) {
          if (b->rules[r].value) {
            rule_sum[r] += *b->rules[r].value;
            ++rule_n[r];
          }
        }
        sum_total += b->total;
      } else {
        ++errors;
      }
      *out << dumped[k] << '\n';
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
  for (const auto& g : grader_settings()) {
    const std::string n = std::string("--") + g.name;
    auto set = [&opt, &g](const std::string& v) { g.set(opt, v); };
    if (g.flag) {
      app.add_flag_callback(
          n, [set] { set("true"); }, g.help);
      app.add_flag_callback(
          "--no-" + std::string(g.name), [set] { set("false"); }, std::string("opposite of ") + n);
    } else {
      app.add_option_function<std::string>(n, set, g.help);
    }
  }
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

  app.footer(
      "Grade one pair: grpo-reward equal [OPTIONS] GOLD PRED (see grpo-reward equal --help); "
      "GOLD and PRED may start with '-'.");
  if (argc >= 2 && std::string(argv[1]) == "equal") return equal_main(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const std::exception& e) {  // an option value rejected by grader_settings()
    std::cerr << "grpo-reward: " << e.what() << "\n";
    return 2;
  }
  return run_score(s, opt);
}
