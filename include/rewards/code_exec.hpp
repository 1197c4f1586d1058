// SPDX-License-Identifier: Apache-2.0
/// @file code_exec.hpp
/// @brief Code-execution reward (R1 "compiler + predefined test cases"): extract a completion's
///        last fenced code block, run it against stdin/stdout test cases in the sandbox of
///        rewards/sandbox/ (fresh user/PID/mount/IPC/UTS/network namespaces, read-only minimal root,
///        private tmpfs, no capabilities, no_new_privs, seccomp, rlimits), return the pass fraction.
///        Python via python3, C++ via g++. Linux only. Threat model: docs/rewards.md.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <rewards/sandbox/run.hpp>
#include <rewards/utf8.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::rewards {

/// Languages the code rule can run.
enum class code_language { python, cpp };

/// Parses a language name: "python" / "py" / "python3" and "cpp" / "c++" / "cc" / "cxx"
/// (case-insensitive). @return nullopt for anything else.
inline std::optional<code_language> parse_code_language(std::string_view name) {
  std::string s(name);
  for (char& c : s) c = static_cast<char>((c >= 'A' && c <= 'Z') ? c + 32 : c);
  if (s == "python" || s == "py" || s == "python3") return code_language::python;
  if (s == "cpp" || s == "c++" || s == "cc" || s == "cxx") return code_language::cpp;
  return std::nullopt;
}

/// The body of the LAST fenced block of `lang` in `completion`, as open-r1's `extract_code` finds
/// it with `re.findall(r"```{lang}\n(.*?)```", re.DOTALL)[-1]`: an opening fence "```" + a tag of
/// the language (any alias of parse_code_language, case-insensitive) + optional spaces/tabs + "\n"
/// (or "\r\n"), then everything up to the next "```". Matches do not overlap and the scan resumes
/// after each closing fence. @return an empty view when there is no such block.
/// @post linear time in completion.size()
inline std::string_view extract_code_block(std::string_view completion, code_language lang) {
  constexpr std::string_view fence = "```";
  std::string_view last;
  std::size_t p = completion.find(fence);
  while (p != std::string_view::npos) {
    // The tag: letters, digits and '+' after the fence.
    std::size_t t = p + fence.size();
    std::size_t e = t;
    while (e < completion.size() && e - t < 16 &&
           (std::isalnum(static_cast<unsigned char>(completion[e])) || completion[e] == '+'))
      ++e;
    std::size_t body = e;
    while (body < completion.size() && (completion[body] == ' ' || completion[body] == '\t'))
      ++body;
    if (body < completion.size() && completion[body] == '\r') ++body;
    const bool tag_ok = e > t && parse_code_language(completion.substr(t, e - t)) == lang;
    if (tag_ok && body < completion.size() && completion[body] == '\n') {
      ++body;
      const std::size_t close = completion.find(fence, body);
      if (close == std::string_view::npos) break;  // no later opening can close either
      last = completion.substr(body, close - body);
      p = completion.find(fence, close + fence.size());
    } else {
      p = completion.find(fence, p + 1);
    }
  }
  return last;
}

/// One test case: the program reads `input` on stdin and must print `output`.
struct test_case {
  std::string input;
  std::string output;
};

namespace detail {
/// Splits on '\n' into views.
inline std::vector<std::string_view> split_lines(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t b = 0;
  for (;;) {
    const std::size_t e = s.find('\n', b);
    if (e == std::string_view::npos) {
      out.push_back(s.substr(b));
      return out;
    }
    out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
}

/// Python `str.strip()` on UTF-8: removes leading and trailing Unicode whitespace.
inline std::string_view strip(std::string_view s) {
  std::size_t b = 0;
  std::size_t e = 0;  // end of the last non-space code point
  bool seen = false;
  utf8::for_each(s, [&](char32_t c, std::size_t at, std::size_t len) {
    if (utf8::is_space(c)) return;
    if (!seen) b = at;
    seen = true;
    e = at + len;
  });
  return seen ? s.substr(b, e - b) : std::string_view{};
}

/// Whitespace-separated tokens.
inline std::vector<std::string_view> split_tokens(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = std::string_view::npos;
  utf8::for_each(s, [&](char32_t c, std::size_t at, std::size_t) {
    if (utf8::is_space(c)) {
      if (start != std::string_view::npos) out.push_back(s.substr(start, at - start));
      start = std::string_view::npos;
    } else if (start == std::string_view::npos) {
      start = at;
    }
  });
  if (start != std::string_view::npos) out.push_back(s.substr(start));
  return out;
}
}  // namespace detail

/// Compares a program's stdout with the expected output under `policy`.
inline bool outputs_match(std::string_view actual, std::string_view expected,
                          output_match policy = output_match::trim_lines) {
  switch (policy) {
    case output_match::exact:
      return actual == expected;
    case output_match::tokens:
      return detail::split_tokens(actual) == detail::split_tokens(expected);
    case output_match::open_r1: {
      const auto a = detail::split_lines(detail::strip(actual));
      const auto b = detail::split_lines(expected);
      for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
        if (detail::strip(a[i]) != detail::strip(b[i])) return false;
      return true;
    }
    case output_match::trim_lines: {
      auto a = detail::split_lines(actual);
      auto b = detail::split_lines(expected);
      for (auto* v : {&a, &b}) {
        for (auto& l : *v) l = detail::strip(l);
        while (!v->empty() && v->back().empty()) v->pop_back();
      }
      return a == b;
    }
  }
  return false;
}

/// Verdict of one test case.
enum class test_verdict {
  passed,
  wrong_answer,
  runtime_error,  ///< non-zero exit status
  crashed,        ///< killed by a signal other than the limits'
  time_limit,
  output_limit,
  compile_error,  ///< C++ did not compile (every test gets this verdict)
  sandbox_error,  ///< the sandbox could not run the program
  skipped,        ///< not run (stop_at_first_failure)
};

/// Result of running a program against its tests.
struct code_result {
  double pass_fraction = 0.0;  ///< passed / tests.size()
  std::size_t passed = 0;
  std::vector<test_verdict> verdicts;  ///< one per test, in order
  std::string compile_log;             ///< compiler stderr (first 4 KiB) for C++
  bool network_isolated = false;       ///< every run was network-isolated
};

namespace detail {
/// Absolute path of `name` on the colon-separated `path` (or `name` itself when it has a '/').
inline std::string resolve_program(const std::string& name, const std::string& path) {
  if (name.find('/') != std::string::npos) return name;
  std::size_t b = 0;
  while (b <= path.size()) {
    std::size_t e = path.find(':', b);
    if (e == std::string::npos) e = path.size();
    if (e > b) {
      std::string cand = path.substr(b, e - b) + "/" + name;
      if (::access(cand.c_str(), X_OK) == 0) return cand;
    }
    b = e + 1;
  }
  return {};
}

inline test_verdict verdict_of(const run_result& r) {
  switch (r.status) {
    case run_status::exited_ok:
      return test_verdict::passed;  // caller compares the output
    case run_status::exited_error:
      return test_verdict::runtime_error;
    case run_status::signaled:
      return test_verdict::crashed;
    case run_status::time_limit:
      return test_verdict::time_limit;
    case run_status::output_limit:
      return test_verdict::output_limit;
    case run_status::spawn_error:
      return test_verdict::sandbox_error;
  }
  return test_verdict::sandbox_error;
}

/// Fails closed: a run the kernel refused to isolate is an error, never a silent 0 reward.
inline void throw_if_unavailable(const run_result& r) {
  if (r.sandbox_unavailable) throw_sandbox_unavailable(r.err);
}
}  // namespace detail

/// Runs `source` (a Python program, or a C++ translation unit compiled once with `opt.cxx`) against
/// every test: a test passes when the program exits with status 0 within the limits and its
/// stdout matches the expected output under `opt.match`.
/// @pre !tests.empty()
/// @post result.verdicts.size() == tests.size(); every process of every run is dead
/// @throws grpo::error [grpo.bad_value] when tests is empty, [grpo.bad_option] for invalid limits,
///         "[grpo.sandbox_unavailable]" when the kernel refuses an isolation step (or the build
///         has no libseccomp and allow_without_seccomp is false): never an unsandboxed run
inline code_result run_tests(std::string_view source, code_language lang,
                             std::span<const test_case> tests, const code_exec_options& opt = {}) {
  GRPO_EXPECTS(!tests.empty(), bad_value, "run_tests: tests is empty");
  detail::validate_options(opt);
  code_result res;
  res.verdicts.assign(tests.size(), test_verdict::sandbox_error);
  // Python runs /src/main.py; C++ is compiled once (under the compile limits) in its own sandbox,
  // the binary comes back through a memfd of the scorer and runs as /src/prog in each test's
  // sandbox. Sources are written by the run's init into its private root before any process of
  // the completion exists: nothing is written under a host directory.
  std::vector<std::string> argv;
  std::vector<sandbox_file> files;
  int prog_fd = -1;
  struct fd_guard {
    int& fd;
    ~fd_guard() {
      if (fd >= 0) ::close(fd);
    }
  } guard{prog_fd};
  if (lang == code_language::python) {
    const std::string py = detail::resolve_program(opt.python, opt.search_path);
    if (py.empty()) return res;
    argv.push_back(py);
    argv.insert(argv.end(), opt.python_args.begin(), opt.python_args.end());
    argv.emplace_back("/src/main.py");
    files.push_back({"/src/main.py", source, -1, 0444});
  } else {
    const std::string cxx = detail::resolve_program(opt.cxx, opt.search_path);
    if (cxx.empty()) return res;
    prog_fd = ::memfd_create("grpo-prog", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (prog_fd < 0) return res;
    std::vector<std::string> cc = {cxx};
    cc.insert(cc.end(), opt.cxx_flags.begin(), opt.cxx_flags.end());
    for (const char* a : {"-o", "/tmp/prog", "/src/main.cpp"}) cc.emplace_back(a);
    sandbox_export out{"/tmp/prog", prog_fd, opt.compile.file_bytes, false};
    const run_result c = run_sandboxed(cc, {}, "/tmp", opt.compile, opt,
                                       {{"/src/main.cpp", source, -1, 0444}}, &out);
    detail::throw_if_unavailable(c);
    res.compile_log = c.err;
    if (c.status == run_status::spawn_error) return res;
    if (c.status != run_status::exited_ok || !out.ok) {
      res.verdicts.assign(tests.size(), test_verdict::compile_error);
      return res;
    }
    ::fcntl(prog_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    argv.emplace_back("/src/prog");
    files.push_back({"/src/prog", {}, prog_fd, 0555});
  }
  bool all_isolated = true;
  bool failed = false;
  for (std::size_t i = 0; i < tests.size(); ++i) {
    if (failed && opt.stop_at_first_failure) {
      res.verdicts[i] = test_verdict::skipped;
      continue;
    }
    const run_result r = run_sandboxed(argv, tests[i].input, "/tmp", opt.run, opt, files);
    detail::throw_if_unavailable(r);
    all_isolated = all_isolated && r.network_isolated;
    test_verdict v = detail::verdict_of(r);
    if (v == test_verdict::passed && !outputs_match(r.out, tests[i].output, opt.match))
      v = test_verdict::wrong_answer;
    res.verdicts[i] = v;
    if (v == test_verdict::passed)
      ++res.passed;
    else
      failed = true;
  }
  res.network_isolated = all_isolated;
  res.pass_fraction = static_cast<double>(res.passed) / static_cast<double>(tests.size());
  return res;
}

/// Code reward: extracts the last ```lang block of `completion` and returns the fraction of tests
/// it passes (open-r1 `code_reward`); 0 when the completion has no such block.
/// @pre !tests.empty()
/// @post 0 <= result <= 1
inline double code_reward(std::string_view completion, code_language lang,
                          std::span<const test_case> tests, const code_exec_options& opt = {}) {
  GRPO_EXPECTS(!tests.empty(), bad_value, "code_reward: tests is empty");
  const std::string_view code = extract_code_block(completion, lang);
  if (code.empty()) return 0.0;
  return run_tests(code, lang, tests, opt).pass_fraction;
}

/// open-r1 `binary_code_reward`: 1 when the pass fraction exceeds 0.99, else 0.
inline double binary_code_reward(std::string_view completion, code_language lang,
                                 std::span<const test_case> tests,
                                 const code_exec_options& opt = {}) {
  return code_reward(completion, lang, tests, opt) > 0.99 ? 1.0 : 0.0;
}

}  // namespace grpo::rewards
