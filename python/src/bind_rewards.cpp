// SPDX-License-Identifier: Apache-2.0
/// @file bind_rewards.cpp
/// @brief grpo._C: the math verifier, the rule scorers and batch scoring over lists of strings
///        (GIL released, std::jthread pool over every core). The verifier holds no global lock
///        (Arb ball arithmetic with thread-local caches), so fork() needs no handlers.
#include "common.hpp"

#include <rewards/rewards.hpp>

#include <nanobind/stl/pair.h>

#include <string_view>
#include <utility>

namespace grpo::py {

namespace {

namespace rw = grpo::rewards;
namespace rm = grpo::rewards::math;

/// verify_options from a dict (verify_options field names; extraction switches with a gold_ /
/// pred_ prefix, e.g. pred_boxed=False).
void fill_extract(rm::extract_options& e, const std::string& key, nb::handle v) {
  if (key == "strip_think") e.strip_think = flag(v, key);
  else if (key == "answer_tags") e.answer_tags = flag(v, key);
  else if (key == "boxed") e.boxed = flag(v, key);
  else if (key == "answer_phrase") e.answer_phrase = flag(v, key);
  else if (key == "markdown_bold") e.markdown_bold = flag(v, key);
  else if (key == "latex_delimiters") e.latex_delimiters = flag(v, key);
  else if (key == "whole_string") e.whole_string = flag(v, key);
  else if (key == "max_answer_chars") e.max_answer_chars = static_cast<std::size_t>(num(v, key));
  else unknown_key("verify", key);
}

bool fill_verify(rm::verify_options& o, const std::string& key, nb::handle v) {
  if (key == "float_min_significant") o.float_min_significant = static_cast<int>(num(v, key));
  else if (key == "float_rel_tol") o.float_rel_tol = num(v, key);
  else if (key == "percent_lenient") o.percent_lenient = flag(v, key);
  else if (key == "allow_pred_relation_vs_gold_set") o.allow_pred_relation_vs_gold_set = flag(v, key);
  else if (key == "multiple_choice") o.multiple_choice = flag(v, key);
  else if (key == "budget_steps") {
    const double b = num(v, key);
    GRPO_EXPECTS(b >= 1, bad_option, "budget_steps must be >= 1");
    o.budget_steps = static_cast<std::size_t>(b);
  } else if (key == "max_depth") {
    const double d = num(v, key);
    GRPO_EXPECTS(d >= 1, bad_option, "max_depth must be >= 1");
    o.max_depth = static_cast<int>(d);
  } else if (key.rfind("gold_", 0) == 0) fill_extract(o.gold_extraction, key.substr(5), v);
  else if (key.rfind("pred_", 0) == 0) fill_extract(o.pred_extraction, key.substr(5), v);
  else return false;
  return true;
}

rm::verify_options verify_opts(const nb::dict& d) {
  rm::verify_options o;
  for (auto [k, v] : d) {
    const std::string key = nb::cast<std::string>(k);
    if (!fill_verify(o, key, v)) unknown_key("verify", key);
  }
  return o;
}

/// One sandbox_limits field (cpu_seconds, wall_seconds, memory_bytes, output_bytes, file_bytes,
/// disk_bytes, max_processes, max_open_files); false for another key.
bool fill_limits(rw::sandbox_limits& l, const std::string& key, nb::handle v,
                 const std::string& full) {
  auto bytes = [&] {
    const double b = num(v, full);
    GRPO_EXPECTS(b >= 0 && b <= 9.0e18, bad_option, "option '" + full + "': expected bytes >= 0");
    return static_cast<std::size_t>(b);
  };
  if (key == "cpu_seconds") l.cpu_seconds = num(v, full);
  else if (key == "wall_seconds") l.wall_seconds = num(v, full);
  else if (key == "memory_bytes") l.memory_bytes = bytes();
  else if (key == "output_bytes") l.output_bytes = bytes();
  else if (key == "file_bytes") l.file_bytes = bytes();
  else if (key == "disk_bytes") l.disk_bytes = bytes();
  else if (key == "max_processes") l.max_processes = static_cast<index_t>(num(v, full));
  else if (key == "max_open_files") l.max_open_files = static_cast<index_t>(num(v, full));
  else return false;
  return true;
}

std::vector<std::string> str_list(nb::handle v, const std::string& key) {
  GRPO_EXPECTS(nb::isinstance<nb::list>(v) || nb::isinstance<nb::tuple>(v), bad_option,
               "option '" + key + "': expected a list of strings");
  std::vector<std::string> out;
  for (nb::handle x : v) out.push_back(str(x, key));
  return out;
}

/// One code_exec_options field: run_<limit> / compile_<limit> (sandbox_limits fields), python,
/// python_args, cxx, cxx_flags, search_path, ro_binds, extra_ro_binds, extra_env, match,
/// stop_at_first_failure, allow_without_seccomp, sandbox_uid, sandbox_gid. The limits are
/// validated when a program runs (detail::validate_options), so a bad value raises there.
bool fill_code(rw::code_exec_options& o, const std::string& key, nb::handle v,
               const std::string& full) {
  if (key.rfind("run_", 0) == 0 && fill_limits(o.run, key.substr(4), v, full)) return true;
  if (key.rfind("compile_", 0) == 0 && fill_limits(o.compile, key.substr(8), v, full)) return true;
  if (key == "python") o.python = str(v, full);
  else if (key == "python_args") o.python_args = str_list(v, full);
  else if (key == "cxx") o.cxx = str(v, full);
  else if (key == "cxx_flags") o.cxx_flags = str_list(v, full);
  else if (key == "search_path") o.search_path = str(v, full);
  else if (key == "ro_binds") o.ro_binds = str_list(v, full);
  else if (key == "extra_ro_binds") o.extra_ro_binds = str_list(v, full);
  else if (key == "extra_env") o.extra_env = str_list(v, full);
  else if (key == "stop_at_first_failure") o.stop_at_first_failure = flag(v, full);
  else if (key == "allow_without_seccomp") o.allow_without_seccomp = flag(v, full);
  else if (key == "sandbox_uid") o.sandbox_uid = static_cast<unsigned>(num(v, full));
  else if (key == "sandbox_gid") o.sandbox_gid = static_cast<unsigned>(num(v, full));
  else if (key == "match") {
    const std::string m = str(v, full);
    if (m == "exact") o.match = rw::output_match::exact;
    else if (m == "trim_lines") o.match = rw::output_match::trim_lines;
    else if (m == "tokens") o.match = rw::output_match::tokens;
    else if (m == "open_r1") o.match = rw::output_match::open_r1;
    else
      GRPO_THROW(bad_option,
                 "option '" + full + "': 'exact', 'trim_lines', 'tokens' or 'open_r1'");
  } else return false;
  return true;
}

rw::code_exec_options code_opts(const nb::dict& d) {
  rw::code_exec_options o;
  for (auto [k, v] : d) {
    const std::string key = nb::cast<std::string>(k);
    if (!fill_code(o, key, v, key)) unknown_key("code", key);
  }
  rw::detail::validate_options(o);  // bad limits raise now, not inside a worker thread
  return o;
}

/// rule_options from a dict: verify options, target_language, grade_answer_block, unit, and the
/// per-rule parameters spelled <rule>_<field> (repetition_ngram_size, cosine_max_len, ...).
rw::rule_options rule_opts(const nb::dict& d) {
  rw::rule_options o;
  for (auto [k, v] : d) {
    const std::string key = nb::cast<std::string>(k);
    if (fill_verify(o.math, key, v)) continue;
    if (key == "target_language") o.target_language = str(v, key);
    else if (key == "grade_answer_block") o.grade_answer_block = flag(v, key);
    else if (key == "unit") {
      const std::string u = str(v, key);
      GRPO_EXPECTS(u == "code_points" || u == "bytes", bad_option, "unit: 'code_points' or 'bytes'");
      o.unit = u == "bytes" ? rw::length_unit::bytes : rw::length_unit::code_points;
    } else if (key == "format_allow_trailing_whitespace")
      o.strict_format.allow_trailing_whitespace = flag(v, key);
    else if (key == "format_allow_empty_think") o.strict_format.allow_empty_think = flag(v, key);
    else if (key == "format_allow_empty_answer") o.strict_format.allow_empty_answer = flag(v, key);
    else if (key == "reasoning_target_steps") o.reasoning_steps.target_steps = num(v, key);
    else if (key == "language_reasoning_only") o.language.reasoning_only = flag(v, key);
    else if (key == "language_empty_value") o.language.empty_value = num(v, key);
    else if (key == "repetition_ngram_size")
      o.repetition.ngram_size = static_cast<index_t>(num(v, key));
    else if (key == "repetition_max_penalty") o.repetition.max_penalty = num(v, key);
    else if (key == "cosine_min_value_wrong") o.cosine.min_value_wrong = num(v, key);
    else if (key == "cosine_max_value_wrong") o.cosine.max_value_wrong = num(v, key);
    else if (key == "cosine_min_value_correct") o.cosine.min_value_correct = num(v, key);
    else if (key == "cosine_max_value_correct") o.cosine.max_value_correct = num(v, key);
    else if (key == "cosine_max_len") o.cosine.max_len = static_cast<index_t>(num(v, key));
    else if (key == "overlong_max_len") o.overlong.max_len = static_cast<index_t>(num(v, key));
    else if (key == "overlong_cache_len") o.overlong.cache_len = static_cast<index_t>(num(v, key));
    else if (key == "overlong_penalty_factor") o.overlong.penalty_factor = num(v, key);
    else if (key == "code_language") {
      o.code_language = str(v, key);
      GRPO_EXPECTS(rw::parse_code_language(o.code_language).has_value(), bad_option,
                   "code_language: 'python' or 'cpp', got '" + o.code_language + "'");
    } else if (key.rfind("code_", 0) == 0 && fill_code(o.code, key.substr(5), v, key)) continue;
    else unknown_key("rules", key);
  }
  rw::detail::validate_options(o.code);
  return o;
}

int verify_py(std::string_view gold, std::string_view pred, const nb::dict& opts) {
  const rm::verify_options o = verify_opts(opts);
  nb::gil_scoped_release nogil;  // pure C++ from here: other Python threads run meanwhile
  return static_cast<int>(rm::verify(gold, pred, o));
}

/// Verdicts of golds[i] vs preds[i] on `threads` threads (0 = every core).
std::vector<int> verify_batch_py(std::vector<std::string> golds, std::vector<std::string> preds,
                                 const nb::dict& opts, std::size_t threads) {
  GRPO_EXPECTS(golds.size() == preds.size(), shape_mismatch,
               "verify_batch: " + std::to_string(golds.size()) + " golds for " +
                   std::to_string(preds.size()) + " predictions");
  const rm::verify_options o = verify_opts(opts);
  std::vector<int> out(golds.size());
  nb::gil_scoped_release nogil;
  rw::thread_pool pool(std::min<std::size_t>(threads == 0 ? std::thread::hardware_concurrency()
                                                          : threads,
                                             std::max<std::size_t>(golds.size(), 1)));
  pool.parallel_for(golds.size(), [&](std::size_t i) {
    out[i] = static_cast<int>(rm::verify(golds[i], preds[i], o));
  });
  return out;
}

using batch_ret = std::tuple<std::vector<double>, std::vector<std::vector<std::optional<double>>>,
                             std::vector<std::string>>;

/// Scores completions with a weighted rule spec ("accuracy:1,format:0.5"): totals, per-rule values
/// (None where a rule skipped the sample) and the rule names, in input order.
using tests_t = std::vector<std::pair<std::string, std::string>>;

std::vector<rw::test_case> to_tests(const tests_t& t) {
  std::vector<rw::test_case> out;
  out.reserve(t.size());
  for (const auto& [in, want] : t) out.push_back({in, want});
  return out;
}

batch_ret score_batch_py(const std::string& spec, std::vector<std::string> completions,
                         std::optional<std::vector<std::string>> answers,
                         std::optional<std::vector<std::int64_t>> num_tokens, const nb::dict& opts,
                         std::size_t threads, std::optional<std::vector<tests_t>> tests,
                         std::optional<std::vector<std::string>> languages) {
  const rw::reward_set set = rw::make_reward_set(spec, rule_opts(opts));
  const std::size_t n = completions.size();
  GRPO_EXPECTS(!answers || answers->size() == n, shape_mismatch,
               "score_batch: " + std::to_string(answers ? answers->size() : 0) + " answers for " +
                   std::to_string(n) + " completions");
  GRPO_EXPECTS(!num_tokens || num_tokens->size() == n, shape_mismatch,
               "score_batch: num_tokens must have one entry per completion");
  GRPO_EXPECTS(!tests || tests->size() == n, shape_mismatch,
               "score_batch: " + std::to_string(tests ? tests->size() : 0) + " test lists for " +
                   std::to_string(n) + " completions");
  GRPO_EXPECTS(!languages || languages->size() == n, shape_mismatch,
               "score_batch: languages must have one entry per completion");
  std::vector<std::vector<rw::test_case>> cases(tests ? n : 0);
  std::vector<rw::sample> samples(n);
  for (std::size_t i = 0; i < n; ++i) {
    samples[i].completion = completions[i];
    if (answers) samples[i].answer = (*answers)[i];
    if (num_tokens) samples[i].num_tokens = static_cast<index_t>((*num_tokens)[i]);
    if (tests) {
      cases[i] = to_tests((*tests)[i]);
      samples[i].tests = cases[i];
    }
    if (languages) samples[i].code_language = (*languages)[i];
  }
  std::vector<rw::reward_breakdown> res;
  {
    nb::gil_scoped_release nogil;
    const std::size_t t = threads == 0 ? std::thread::hardware_concurrency() : threads;
    res = rw::score_batch(set, samples, std::max<std::size_t>(1, std::min(t, std::max<std::size_t>(n, 1))));
  }
  batch_ret out;
  auto& [totals, per_rule, names] = out;
  for (const auto& r : set.rules()) names.push_back(r.name);
  per_rule.assign(names.size(), std::vector<std::optional<double>>(n));
  for (std::size_t i = 0; i < n; ++i) {
    totals.push_back(res[i].total);
    for (std::size_t k = 0; k < res[i].rules.size(); ++k) per_rule[k][i] = res[i].rules[k].value;
  }
  return out;
}

/// One text through one built-in rule (the same functions score_batch uses).
std::optional<double> score_one_py(const std::string& rule, std::string_view completion,
                                   std::string_view answer, std::int64_t num_tokens,
                                   const nb::dict& opts) {
  const rw::rule_fn fn = rw::make_rule(rule, rule_opts(opts));
  rw::sample s;
  s.completion = completion;
  s.answer = answer;
  s.num_tokens = static_cast<index_t>(num_tokens);
  nb::gil_scoped_release nogil;
  return fn(s);
}

const char* verdict_name(rw::test_verdict v) {
  switch (v) {
    case rw::test_verdict::passed: return "passed";
    case rw::test_verdict::wrong_answer: return "wrong_answer";
    case rw::test_verdict::runtime_error: return "runtime_error";
    case rw::test_verdict::crashed: return "crashed";
    case rw::test_verdict::time_limit: return "time_limit";
    case rw::test_verdict::output_limit: return "output_limit";
    case rw::test_verdict::compile_error: return "compile_error";
    case rw::test_verdict::sandbox_error: return "sandbox_error";
    case rw::test_verdict::skipped: return "skipped";
  }
  return "sandbox_error";
}

rw::code_language language_of(const std::string& name) {
  const auto l = rw::parse_code_language(name);
  GRPO_EXPECTS(l.has_value(), bad_option, "language: 'python' or 'cpp', got '" + name + "'");
  return *l;
}

/// run_tests(source, language, tests, options): (pass_fraction, passed, verdicts, compile_log,
/// network_isolated). Sandboxed, GIL released for the whole run.
std::tuple<double, std::size_t, std::vector<std::string>, std::string, bool> run_tests_py(
    const std::string& source, const std::string& language, const tests_t& tests,
    const nb::dict& opts) {
  const rw::code_exec_options o = code_opts(opts);
  const rw::code_language lang = language_of(language);
  const std::vector<rw::test_case> t = to_tests(tests);
  rw::code_result r;
  {
    nb::gil_scoped_release nogil;
    r = rw::run_tests(source, lang, t, o);
  }
  std::vector<std::string> verdicts;
  for (const auto v : r.verdicts) verdicts.emplace_back(verdict_name(v));
  return {r.pass_fraction, r.passed, verdicts, r.compile_log, r.network_isolated};
}

}  // namespace

void bind_rewards(nb::module_& m) {
  m.def("verify", &verify_py);
  m.def("verify_batch", &verify_batch_py);
  m.def("score_batch", &score_batch_py);
  m.def("score_one", &score_one_py);
  m.def("rule_names", [] {
    std::vector<std::string> v;
    for (auto s : rw::builtin_rule_names) v.emplace_back(s);
    return v;
  });
  m.def("run_tests", &run_tests_py);
  m.def("extract_code", [](std::string_view completion, const std::string& language) {
    return std::string(rw::extract_code_block(completion, language_of(language)));
  });
  m.def("text_length", [](std::string_view s, bool bytes) {
    return static_cast<std::int64_t>(
        rw::text_length(s, bytes ? rw::length_unit::bytes : rw::length_unit::code_points));
  });

}

}  // namespace grpo::py
