// SPDX-License-Identifier: Apache-2.0
/// @file code_exec.hpp
/// @brief Code-execution reward (R1 "compiler + predefined test cases"): extract a completion's
///        last fenced code block, run it against stdin/stdout test cases in a resource-limited
///        child process (Python via python3, C++ via g++), return the pass fraction. POSIX/Linux.
///
/// Sandbox, per child (fork + execve; only async-signal-safe calls between them, so it is safe from
/// the threads of the batch pool):
///  - own process group; the whole group is SIGKILLed at the wall-clock deadline and after the
///    child exits (stray background children die with it);
///  - RLIMIT_CPU (SIGXCPU -> time_limit), RLIMIT_AS (memory), RLIMIT_FSIZE (files), RLIMIT_NPROC
///    (fork bombs), RLIMIT_NOFILE, RLIMIT_CORE = 0;
///  - stdout read through a pipe with a byte cap (exceeding it kills the group: output_limit);
///    stderr kept up to 4 KiB; stdin from an in-memory file (memfd);
///  - no network: `unshare(CLONE_NEWNET)` (an empty network namespace, loopback down); when that is
///    not permitted (unprivileged), `unshare(CLONE_NEWUSER | CLONE_NEWNET)`; when both fail the run
///    goes on without isolation (reported in the result) unless `require_network_isolation`;
///  - when running as root, privileges are dropped to an unprivileged uid/gid (65534 "nobody" by
///    default): RLIMIT_NPROC is not enforced for root, and the program must not own the machine;
///  - a private temporary directory as cwd/HOME/TMPDIR, removed afterwards; a fixed PATH and a
///    minimal environment; interpreters and compilers resolved on `search_path`, never on $PATH.
/// Limits of this sandbox (documented in docs/rewards.md): a process that calls setsid() escapes
/// the group kill (RLIMIT_NPROC still bounds how many exist, and they stay CPU- and
/// memory-limited); the filesystem is not hidden (only Unix permissions protect it when privileges
/// are dropped).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <rewards/utf8.hpp>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
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

/// Whitespace policy when comparing the program's stdout with the expected output.
enum class output_match {
  exact,       ///< byte-for-byte equality
  trim_lines,  ///< (default) lines compared after stripping each line's surrounding whitespace
               ///< (Python isspace, so "\r" too); trailing blank lines ignored; line counts equal
  tokens,      ///< whitespace-separated tokens equal (checker style of competitive programming)
  open_r1,     ///< open-r1: stdout.strip(); zip of lines compared after strip() -- extra or
               ///< missing trailing lines are NOT detected (kept only to reproduce open-r1)
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

/// Resource limits of one child process.
struct sandbox_limits {
  double cpu_seconds = 2.0;   ///< RLIMIT_CPU soft limit (rounded up to whole s)
  double wall_seconds = 5.0;  ///< the process group is killed after this
  /// RLIMIT_AS (address space); SIZE_MAX = unlimited (needed for sanitizer-built programs)
  std::size_t memory_bytes = std::size_t{512} << 20;
  std::size_t output_bytes = std::size_t{1} << 20;  ///< stdout cap; more -> output_limit
  std::size_t file_bytes = std::size_t{1} << 20;    ///< RLIMIT_FSIZE (files the program writes)
  index_t max_processes = 32;                       ///< RLIMIT_NPROC (per uid); 0 = leave unchanged
  index_t max_open_files = 64;                      ///< RLIMIT_NOFILE
};

/// Limits for the compiler: generous, since <bits/stdc++.h> alone needs a few hundred MB.
inline sandbox_limits default_compile_limits() {
  sandbox_limits l;
  l.cpu_seconds = 30.0;
  l.wall_seconds = 60.0;
  l.memory_bytes = std::size_t{2} << 30;
  l.output_bytes = std::size_t{1} << 20;
  l.file_bytes = std::size_t{256} << 20;
  l.max_processes = 0;  // g++ forks cc1plus, as, collect2, ld
  l.max_open_files = 256;
  return l;
}

/// Options of the code-execution rule.
struct code_exec_options {
  sandbox_limits run{};                               ///< limits of each test run
  sandbox_limits compile = default_compile_limits();  ///< limits of the C++ compilation
  std::string python = "python3";  ///< interpreter (a name looked up on search_path, or a path)
  std::vector<std::string> python_args = {
      "-I"};                ///< -I: isolated mode (no user site, no PYTHON* env)
  std::string cxx = "g++";  ///< compiler (name or path)
  std::vector<std::string> cxx_flags = {"-std=c++17", "-O2", "-pipe"};
  std::string search_path = "/usr/local/bin:/usr/bin:/bin";  ///< where programs are looked up
  std::string temp_root;  ///< parent of the per-completion temp dir; empty = $TMPDIR or /tmp
  output_match match = output_match::trim_lines;
  bool isolate_network = true;             ///< try to unshare the network namespace
  bool require_network_isolation = false;  ///< fail the run instead of running with network
  bool drop_privileges = true;             ///< when euid == 0, run as sandbox_uid/sandbox_gid
  unsigned sandbox_uid = 65534;
  unsigned sandbox_gid = 65534;
  bool stop_at_first_failure = false;  ///< skip remaining tests after a failure (they count failed)
  /// Extra "NAME=value" entries appended to the child's minimal environment.
  std::vector<std::string> extra_env;
};

/// How one child process ended.
enum class run_status {
  exited_ok,     ///< exit status 0
  exited_error,  ///< non-zero exit status
  signaled,      ///< killed by a signal (crash, abort, bad_alloc -> abort)
  time_limit,    ///< CPU limit (SIGXCPU) or wall-clock deadline
  output_limit,  ///< stdout cap exceeded, or RLIMIT_FSIZE hit (SIGXFSZ)
  spawn_error,   ///< could not start (program missing, exec failed, isolation required but refused)
};

/// Result of one child process.
struct run_result {
  run_status status = run_status::spawn_error;
  int exit_code = -1;  ///< exit status when it exited, else -1
  int signal = 0;      ///< terminating signal when signaled, else 0
  std::string out;     ///< stdout (at most limits.output_bytes)
  std::string err;     ///< first 4 KiB of stderr (or the spawn error)
  double wall_seconds = 0.0;
  double cpu_seconds = 0.0;       ///< user + system time of the child
  bool network_isolated = false;  ///< the child ran in its own (empty) network namespace
};

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
inline constexpr std::size_t stderr_cap = 4096;

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

/// Moves fd to a number >= 4 (so the child's dup2 onto 0..3 never clobbers a source) with
/// FD_CLOEXEC set. @return the new fd, or -1.
inline int high_cloexec(int fd) {
  if (fd < 0 || fd >= 4) return fd;
  const int n = ::fcntl(fd, F_DUPFD_CLOEXEC, 4);
  ::close(fd);
  return n;
}

/// Closes a descriptor if open and marks it closed.
inline void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

/// Child-side failure report: stage byte + errno, then _exit(127). Async-signal-safe.
[[noreturn]] inline void child_fail(int status_fd, char stage) {
  const int e = errno;
  char msg[1 + 1 + sizeof(int)];
  msg[0] = 'E';
  msg[1] = stage;
  std::memcpy(msg + 2, &e, sizeof(int));
  [[maybe_unused]] const auto w = ::write(status_fd, msg, sizeof msg);
  ::_exit(127);
}

inline const char* stage_name(char s) {
  switch (s) {
    case 'n':
      return "unshare(CLONE_NEWNET)";
    case 'l':
      return "setrlimit";
    case 'd':
      return "chdir";
    case 'u':
      return "dropping privileges";
    case 'x':
      return "execve";
    case 'f':
      return "dup2";
    default:
      return "child setup";
  }
}
}  // namespace detail

/// Runs `argv` (argv[0] an absolute path) in the sandbox described above with `stdin_data` on
/// stdin and `cwd` as working directory.
/// @pre !argv.empty()
/// @post never throws for a failing program: every outcome is a run_status
inline run_result run_sandboxed(const std::vector<std::string>& argv, std::string_view stdin_data,
                                const std::string& cwd, const sandbox_limits& lim,
                                const code_exec_options& opt) {
  GRPO_EXPECTS(!argv.empty(), bad_value, "run_sandboxed: argv is empty");
  GRPO_EXPECTS(lim.wall_seconds > 0 && lim.cpu_seconds > 0, bad_option,
               "sandbox_limits: cpu_seconds and wall_seconds must be > 0");
  run_result res;
  const auto t0 = std::chrono::steady_clock::now();
  // Descriptors: stdin memfd, stdout pipe, stderr pipe, and a status pipe through which the child
  // reports (before exec) whether it got a network namespace, or which setup step failed. All are
  // O_CLOEXEC, so a successful exec closes the status pipe and the parent reads EOF.
  int in_fd = -1, out_r = -1, out_w = -1, err_r = -1, err_w = -1, st_r = -1, st_w = -1;
  const auto cleanup = [&] {
    for (int* f : {&in_fd, &out_r, &out_w, &err_r, &err_w, &st_r, &st_w}) detail::close_fd(*f);
  };
  // --- everything the child needs is prepared before fork (no allocation after it) ---
  in_fd = detail::high_cloexec(::memfd_create("grpo-stdin", MFD_CLOEXEC));
  int p[2];
  bool ok = in_fd >= 0;
  if (ok && ::pipe2(p, O_CLOEXEC) == 0) {
    out_r = detail::high_cloexec(p[0]);
    out_w = detail::high_cloexec(p[1]);
  } else {
    ok = false;
  }
  if (ok && ::pipe2(p, O_CLOEXEC) == 0) {
    err_r = detail::high_cloexec(p[0]);
    err_w = detail::high_cloexec(p[1]);
  } else {
    ok = false;
  }
  if (ok && ::pipe2(p, O_CLOEXEC) == 0) {
    st_r = detail::high_cloexec(p[0]);
    st_w = detail::high_cloexec(p[1]);
  } else {
    ok = false;
  }
  for (std::size_t off = 0; ok && off < stdin_data.size();) {
    const ssize_t w = ::write(in_fd, stdin_data.data() + off, stdin_data.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      ok = false;
    else
      off += static_cast<std::size_t>(w);
  }
  if (ok) ok = ::lseek(in_fd, 0, SEEK_SET) == 0;
  if (!ok || out_r < 0 || out_w < 0 || err_r < 0 || err_w < 0 || st_r < 0 || st_w < 0) {
    res.err = std::string("sandbox: pipe/memfd setup failed: ") + std::strerror(errno);
    cleanup();
    return res;
  }
  // argv / envp as char* arrays, built now: the child may not allocate (another thread of this
  // process could hold the malloc lock at the moment of fork).
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  const std::vector<std::string> env = {"PATH=" + opt.search_path, "HOME=" + cwd,
                                        "TMPDIR=" + cwd,           "LANG=C.UTF-8",
                                        "LC_ALL=C.UTF-8",          "PYTHONDONTWRITEBYTECODE=1",
                                        "PYTHONIOENCODING=utf-8"};
  std::vector<char*> cenv;
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  for (const auto& e : opt.extra_env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  // A limit above the current hard limit cannot be set without CAP_SYS_RESOURCE (which even root
  // may lack in a container): such requests are clamped to the inherited hard limit.
  const auto clamp = [](int what, rlim_t want) {
    struct rlimit cur {};
    if (::getrlimit(what, &cur) == 0 && cur.rlim_max != RLIM_INFINITY && want > cur.rlim_max)
      return cur.rlim_max;
    return want;
  };
  const rlim_t cpu_hard =
      clamp(RLIMIT_CPU, static_cast<rlim_t>(std::max(1.0, std::ceil(lim.cpu_seconds))) + 1);
  const rlim_t cpu = cpu_hard > 1 ? cpu_hard - 1 : cpu_hard;
  const rlim_t as_lim = clamp(RLIMIT_AS, static_cast<rlim_t>(lim.memory_bytes));
  const rlim_t fsize_lim = clamp(RLIMIT_FSIZE, static_cast<rlim_t>(lim.file_bytes));
  const rlim_t nofile_lim = clamp(RLIMIT_NOFILE, static_cast<rlim_t>(lim.max_open_files));
  const rlim_t nproc_lim =
      clamp(RLIMIT_NPROC, static_cast<rlim_t>(std::max<index_t>(lim.max_processes, 0)));
  const bool drop = opt.drop_privileges && ::geteuid() == 0;
  const bool is_root = ::geteuid() == 0;

  const pid_t pid = ::fork();
  if (pid < 0) {
    res.err = std::string("sandbox: fork failed: ") + std::strerror(errno);
    cleanup();
    return res;
  }
  if (pid == 0) {
    // ---------------- child: async-signal-safe calls only ----------------
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s : {SIGPIPE, SIGXCPU, SIGXFSZ, SIGINT, SIGTERM, SIGCHLD})
      ::sigaction(s, &dfl, nullptr);
    // fd 3 = status pipe; 0/1/2 = stdin memfd / stdout / stderr; everything else is closed so the
    // program inherits no descriptor of the host process (other threads may have opened some).
    if (::dup2(st_w, 3) < 0) ::_exit(127);
    ::fcntl(3, F_SETFD, FD_CLOEXEC);  // closes on successful exec: the parent then reads EOF
    if (::dup2(in_fd, 0) < 0 || ::dup2(out_w, 1) < 0 || ::dup2(err_w, 2) < 0)
      detail::child_fail(3, 'f');
    if (::syscall(SYS_close_range, 4U, ~0U, 0U) != 0) {
      for (int fd = 4; fd < 1024; ++fd) ::close(fd);
    }
    // Network: a fresh, empty namespace (only a downed loopback). As root CLONE_NEWNET suffices;
    // unprivileged users need a user namespace first. Failure is reported, not fatal, unless the
    // caller demands isolation.
    char net = 'n';
    if (opt.isolate_network) {
      if (::unshare(CLONE_NEWNET) == 0) {
        net = 'N';
      } else if (!is_root && ::unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0) {
        net = 'N';
      } else if (opt.require_network_isolation) {
        detail::child_fail(3, 'n');
      }
    }
    const auto set = [](int what, rlim_t soft, rlim_t hard) {
      struct rlimit r {
        soft, hard
      };
      return ::setrlimit(what, &r) == 0;
    };
    if (!set(RLIMIT_CPU, cpu, cpu_hard) || !set(RLIMIT_AS, as_lim, as_lim) ||
        !set(RLIMIT_FSIZE, fsize_lim, fsize_lim) || !set(RLIMIT_CORE, 0, 0) ||
        !set(RLIMIT_NOFILE, nofile_lim, nofile_lim))
      detail::child_fail(3, 'l');
    if (lim.max_processes > 0 && !set(RLIMIT_NPROC, nproc_lim, nproc_lim))
      detail::child_fail(3, 'l');
    if (::chdir(cwd.c_str()) != 0) detail::child_fail(3, 'd');
    // Limits first, identity last: after setuid the child can no longer change either. Order of
    // setgroups / setgid / setuid matters (each needs the privilege the next one drops).
    if (drop) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(opt.sandbox_gid) != 0 ||
          ::setuid(opt.sandbox_uid) != 0)
        detail::child_fail(3, 'u');
    }
    [[maybe_unused]] const auto w = ::write(3, &net, 1);
    ::execve(cargv[0], cargv.data(), cenv.data());
    detail::child_fail(3, 'x');
  }
  // ---------------- parent ----------------
  detail::close_fd(out_w);
  detail::close_fd(err_w);
  detail::close_fd(st_w);
  detail::close_fd(in_fd);
  // Status pipe: one byte ('N'/'n') then EOF at exec, or an 'E' report.
  char st[16];
  std::size_t got = 0;
  for (;;) {
    const ssize_t r = ::read(st_r, st + got, sizeof st - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
    if (got == sizeof st) break;
  }
  detail::close_fd(st_r);
  const auto reap = [&](int flags, int& status, struct rusage& ru) {
    for (;;) {
      const pid_t r = ::wait4(pid, &status, flags, &ru);
      if (r < 0 && errno == EINTR) continue;
      return r;
    }
  };
  int status = 0;
  struct rusage ru {};
  const std::size_t err_at = got > 0 && st[0] == 'E' ? 0 : (got > 1 && st[1] == 'E' ? 1 : got);
  if (err_at < got) {
    int e = 0;
    if (got >= err_at + 2 + sizeof(int)) std::memcpy(&e, st + err_at + 2, sizeof(int));
    res.err = std::string("sandbox: ") +
              detail::stage_name(got > err_at + 1 ? st[err_at + 1] : '?') +
              " failed: " + std::strerror(e);
    reap(0, status, ru);
    cleanup();
    return res;
  }
  res.network_isolated = got >= 1 && st[0] == 'N';

  // Event loop: poll stdout, stderr and a pidfd (process exit) until the child exits, the
  // deadline passes or stdout exceeds its cap. Reads are non-blocking so that a pipe kept open by
  // a grandchild never blocks us. Without pidfd_open (old kernels) we poll waitpid every 10 ms.
  ::fcntl(out_r, F_SETFL, ::fcntl(out_r, F_GETFL) | O_NONBLOCK);
  ::fcntl(err_r, F_SETFL, ::fcntl(err_r, F_GETFL) | O_NONBLOCK);
#ifdef SYS_pidfd_open
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  int pidfd = -1;
#endif
  const auto deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(lim.wall_seconds));
  bool killed_time = false, killed_output = false, exited = false;
  char buf[65536];
  // Reads what is available from fd into dst (stdout: cap -> kill; stderr: keep first 4 KiB).
  const auto drain = [&](int& fd, std::string& dst, std::size_t cap, bool is_stdout) {
    for (;;) {
      const ssize_t r = ::read(fd, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) {
        detail::close_fd(fd);
        return;
      }
      if (r < 0) return;  // EAGAIN: nothing more now
      const auto n = static_cast<std::size_t>(r);
      const std::size_t room = cap > dst.size() ? cap - dst.size() : 0;
      dst.append(buf, std::min(n, room));
      if (n > room && is_stdout) {
        killed_output = true;
        ::kill(-pid, SIGKILL);
        detail::close_fd(fd);
        return;
      }
    }
  };
  while (!exited) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      killed_time = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    pollfd fds[3];
    nfds_t n = 0;
    int out_i = -1, err_i = -1, pid_i = -1;
    if (out_r >= 0) {
      out_i = static_cast<int>(n);
      fds[n++] = {out_r, POLLIN, 0};
    }
    if (err_r >= 0) {
      err_i = static_cast<int>(n);
      fds[n++] = {err_r, POLLIN, 0};
    }
    if (pidfd >= 0) {
      pid_i = static_cast<int>(n);
      fds[n++] = {pidfd, POLLIN, 0};
    }
    // Without a pidfd, wake up every 10 ms to poll waitpid.
    const int timeout =
        static_cast<int>(pidfd >= 0 ? std::max<long long>(1, left)
                                    : std::min<long long>(10, std::max<long long>(1, left)));
    const int pr = ::poll(fds, n, timeout);
    if (pr < 0 && errno != EINTR) break;
    if (out_i >= 0 && fds[out_i].revents) drain(out_r, res.out, lim.output_bytes, true);
    if (killed_output) break;
    if (err_i >= 0 && fds[err_i].revents) drain(err_r, res.err, detail::stderr_cap, false);
    if ((pid_i >= 0 && fds[pid_i].revents) || pidfd < 0) {
      if (reap(WNOHANG, status, ru) == pid) exited = true;
    }
  }
  if (!exited) {
    ::kill(-pid, SIGKILL);  // deadline, output cap, or a poll failure: never wait on a live child
    reap(0, status, ru);
  }
  // The main child is gone: kill whatever it left in its group, then take what is in the pipes.
  ::kill(-pid, SIGKILL);
  if (!killed_output && out_r >= 0) drain(out_r, res.out, lim.output_bytes, true);
  if (err_r >= 0) drain(err_r, res.err, detail::stderr_cap, false);
  detail::close_fd(pidfd);
  cleanup();

  // Classification: output cap / SIGXFSZ first (the kill that caused the signal was ours), then
  // time (our deadline kill, SIGXCPU at the soft CPU limit, or SIGKILL at the hard one), then
  // other signals (crashes, aborts), then the exit status.
  res.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  if (WIFSIGNALED(status)) res.signal = WTERMSIG(status);
  if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
  if (killed_output || res.signal == SIGXFSZ) {
    res.status = run_status::output_limit;
  } else if (killed_time || res.signal == SIGXCPU ||
             (res.signal == SIGKILL && res.cpu_seconds >= static_cast<double>(cpu))) {
    res.status = run_status::time_limit;
  } else if (WIFSIGNALED(status)) {
    res.status = run_status::signaled;
  } else {
    res.status = res.exit_code == 0 ? run_status::exited_ok : run_status::exited_error;
  }
  return res;
}

namespace detail {
/// A private temporary directory, removed (recursively) on destruction.
class temp_dir {
 public:
  explicit temp_dir(const code_exec_options& opt) {
    std::string root = opt.temp_root;
    if (root.empty()) {
      const char* t = std::getenv("TMPDIR");
      root = (t != nullptr && *t != '\0') ? t : "/tmp";
    }
    std::string tmpl = root + "/grpo-code-XXXXXX";
    std::vector<char> b(tmpl.begin(), tmpl.end());
    b.push_back('\0');
    if (::mkdtemp(b.data()) == nullptr) return;
    path_ = b.data();
    // The program runs as the sandbox user when privileges are dropped: give it the directory.
    if (opt.drop_privileges && ::geteuid() == 0) {
      if (::chown(path_.c_str(), opt.sandbox_uid, opt.sandbox_gid) != 0) path_.clear();
    }
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

inline bool write_file(const std::string& path, std::string_view data) {
  std::ofstream f(path, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(f);
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
}  // namespace detail

/// Runs `source` (a Python program, or a C++ translation unit compiled once with `opt.cxx`) against
/// every test: a test passes when the program exits with status 0 within the limits and its
/// stdout matches the expected output under `opt.match`.
/// @pre !tests.empty()
/// @post result.verdicts.size() == tests.size(); temp files are removed
/// @throws grpo::error [grpo.bad_value] when tests is empty
inline code_result run_tests(std::string_view source, code_language lang,
                             std::span<const test_case> tests, const code_exec_options& opt = {}) {
  GRPO_EXPECTS(!tests.empty(), bad_value, "run_tests: tests is empty");
  code_result res;
  res.verdicts.assign(tests.size(), test_verdict::sandbox_error);
  detail::temp_dir dir(opt);
  if (dir.path().empty()) return res;
  // Python runs the source file directly; C++ is compiled once (under the compile limits) and the
  // binary runs once per test. Every run shares the private directory, removed by ~temp_dir.
  std::vector<std::string> argv;
  if (lang == code_language::python) {
    const std::string py = detail::resolve_program(opt.python, opt.search_path);
    if (py.empty() || !detail::write_file(dir.path() + "/main.py", source)) return res;
    argv.push_back(py);
    argv.insert(argv.end(), opt.python_args.begin(), opt.python_args.end());
    argv.push_back("main.py");
  } else {
    const std::string cxx = detail::resolve_program(opt.cxx, opt.search_path);
    if (cxx.empty() || !detail::write_file(dir.path() + "/main.cpp", source)) return res;
    std::vector<std::string> cc = {cxx};
    cc.insert(cc.end(), opt.cxx_flags.begin(), opt.cxx_flags.end());
    for (const char* a : {"-o", "prog", "main.cpp"}) cc.emplace_back(a);
    const run_result c = run_sandboxed(cc, {}, dir.path(), opt.compile, opt);
    res.compile_log = c.err;
    if (c.status == run_status::spawn_error) return res;
    if (c.status != run_status::exited_ok) {
      res.verdicts.assign(tests.size(), test_verdict::compile_error);
      return res;
    }
    argv.push_back(dir.path() + "/prog");
  }
  bool all_isolated = true;
  bool failed = false;
  for (std::size_t i = 0; i < tests.size(); ++i) {
    if (failed && opt.stop_at_first_failure) {
      res.verdicts[i] = test_verdict::skipped;
      continue;
    }
    const run_result r = run_sandboxed(argv, tests[i].input, dir.path(), opt.run, opt);
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
