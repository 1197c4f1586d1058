// SPDX-License-Identifier: Apache-2.0
/// @file options.hpp
/// @brief Options, limits and results of the code sandbox (rewards/sandbox/jail.hpp), and their
///        validation. An options header: it includes no engine.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

/// Version of the namespace sandbox (rewards/sandbox/): 1 = fresh namespaces, read-only root,
/// private tmpfs, seccomp (tests use it to tell this sandbox from the earlier fork + rlimit one).
#define GRPO_REWARDS_SANDBOX 1

namespace grpo::rewards {

/// Whitespace policy when comparing the program's stdout with the expected output.
enum class output_match {
  exact,       ///< byte-for-byte equality
  trim_lines,  ///< (default) lines compared after stripping each line's surrounding whitespace
               ///< (Python isspace, so "\r" too); trailing blank lines ignored; line counts equal
  tokens,      ///< whitespace-separated tokens equal (checker style of competitive programming)
  open_r1,     ///< open-r1: stdout.strip(); zip of lines compared after strip() -- extra or
               ///< missing trailing lines are NOT detected (kept only to reproduce open-r1)
};

/// Resource limits of one sandboxed run.
struct sandbox_limits {
  double cpu_seconds = 2.0;   ///< RLIMIT_CPU soft limit (rounded up to whole s); in (0, 1e6]
  double wall_seconds = 5.0;  ///< the run (every process of it) is killed after this; in (0, 1e6]
  /// RLIMIT_AS (address space); SIZE_MAX = unlimited (needed for sanitizer-built programs)
  std::size_t memory_bytes = std::size_t{512} << 20;
  std::size_t output_bytes = std::size_t{1} << 20;  ///< stdout cap; more -> output_limit
  std::size_t file_bytes = std::size_t{1} << 20;    ///< RLIMIT_FSIZE (one file the program writes)
  /// Size of the private tmpfs mounted at /tmp, the only writable place: the total disk quota of
  /// the run (tmpfs pages are host memory). At least 64 KiB.
  std::size_t disk_bytes = std::size_t{16} << 20;
  /// RLIMIT_NPROC, counted in the run's own user namespace (so per run, not per host uid);
  /// 0 = no limit of ours (the inherited one stays). Must be >= 0.
  index_t max_processes = 32;
  index_t max_open_files = 64;  ///< RLIMIT_NOFILE; in [4, 1 << 20]
};

/// Limits for the compiler: generous, since <bits/stdc++.h> alone needs a few hundred MB.
inline sandbox_limits default_compile_limits() {
  sandbox_limits l;
  l.cpu_seconds = 30.0;
  l.wall_seconds = 60.0;
  l.memory_bytes = std::size_t{2} << 30;
  l.output_bytes = std::size_t{1} << 20;
  l.file_bytes = std::size_t{256} << 20;
  l.disk_bytes = std::size_t{512} << 20;
  l.max_processes = 64;  // g++ forks cc1plus, as, collect2, ld (counted in the run's namespace)
  l.max_open_files = 256;
  return l;
}

/// Options of the code-execution rule and of run_sandboxed.
struct code_exec_options {
  sandbox_limits run{};                               ///< limits of each test run
  sandbox_limits compile = default_compile_limits();  ///< limits of the C++ compilation
  std::string python = "python3";  ///< interpreter (a name looked up on search_path, or a path)
  std::vector<std::string> python_args = {
      "-I"};                ///< -I: isolated mode (no user site, no PYTHON* env)
  std::string cxx = "g++";  ///< compiler (name or path)
  std::vector<std::string> cxx_flags = {"-std=c++17", "-O2", "-pipe"};
  std::string search_path = "/usr/local/bin:/usr/bin:/bin";  ///< where programs are looked up
  /// Host paths bound read-only (nosuid, nodev) at the same place in the sandbox's root; missing
  /// ones are skipped, symbolic links are recreated as links. Everything else of the host is absent.
  std::vector<std::string> ro_binds = {"/usr",
                                       "/bin",
                                       "/sbin",
                                       "/lib",
                                       "/lib32",
                                       "/lib64",
                                       "/libx32",
                                       "/etc/alternatives",
                                       "/etc/ld.so.cache",
                                       "/etc/ld.so.conf",
                                       "/etc/ld.so.conf.d",
                                       "/etc/localtime"};
  std::vector<std::string> extra_ro_binds;  ///< more host paths bound read-only (must exist)
  /// Run without a seccomp filter when the build has no libseccomp (GRPO_HAVE_SECCOMP unset).
  /// Default false: such a build refuses to run programs ([grpo.sandbox_unavailable]).
  bool allow_without_seccomp = false;
  /// Host uid/gid of the sandboxed program when the scorer runs as root (must not be 0). A
  /// non-root scorer's program runs as the scorer's own uid outside (the only one it can map).
  /// Inside the sandbox the program is always uid/gid 65534.
  unsigned sandbox_uid = 65534;
  unsigned sandbox_gid = 65534;
  output_match match = output_match::trim_lines;
  bool stop_at_first_failure = false;  ///< skip remaining tests after a failure (they count failed)
  /// Extra "NAME=value" entries appended to the child's minimal environment.
  std::vector<std::string> extra_env;
  // Kept for source compatibility; the sandbox always isolates (see docs/rewards.md):
  bool isolate_network = true;             ///< ignored: every run has an empty network namespace
  bool require_network_isolation = false;  ///< ignored: isolation failing is always an error
  bool drop_privileges = true;             ///< ignored: the program never keeps privileges
  std::string temp_root;                   ///< ignored: nothing is written under a host directory
};

/// How one sandboxed run ended.
enum class run_status {
  exited_ok,     ///< exit status 0
  exited_error,  ///< non-zero exit status
  signaled,      ///< killed by a signal (crash, abort, bad_alloc -> abort)
  time_limit,    ///< CPU limit (SIGXCPU) or wall-clock deadline
  output_limit,  ///< stdout cap exceeded, or RLIMIT_FSIZE hit (SIGXFSZ)
  spawn_error,   ///< could not start (program missing, exec failed, sandbox refused)
};

/// Result of one sandboxed run.
struct run_result {
  run_status status = run_status::spawn_error;
  int exit_code = -1;  ///< exit status when it exited, else -1
  int signal = 0;      ///< terminating signal when signaled, else 0
  std::string out;     ///< stdout (at most limits.output_bytes)
  std::string err;     ///< first 4 KiB of stderr (or the spawn error)
  double wall_seconds = 0.0;
  double cpu_seconds = 0.0;       ///< user + system time of the program (and children it reaped)
  bool network_isolated = false;  ///< the run had its own empty network namespace (always, if run)
  /// The kernel refused an isolation step (namespace, mount, capability drop, seccomp): the
  /// program did not run. run_tests turns this into [grpo.sandbox_unavailable].
  bool sandbox_unavailable = false;
};

namespace detail {
/// Throws grpo::error "[grpo.sandbox_unavailable] msg" with code errc::sandbox_unavailable.
[[noreturn]] inline void throw_sandbox_unavailable(const std::string& msg) {
  const std::string what = "[grpo.sandbox_unavailable] " + msg;
#if GRPO_USE_EXCEPTIONS
  throw ::grpo::error(::grpo::errc::sandbox_unavailable, what);
#else
  GRPO_ABORT(what.c_str());
#endif
}

/// Checks one limits struct; `which` names it in the message ("run" / "compile").
inline void validate_limits(const sandbox_limits& l, std::string_view which) {
  const std::string w = "sandbox_limits (" + std::string(which) + "): ";
  // Upper bounds keep every conversion defined: seconds -> rlim_t and -> steady_clock ticks.
  constexpr double max_seconds = 1e6;
  GRPO_EXPECTS(std::isfinite(l.cpu_seconds) && l.cpu_seconds > 0 && l.cpu_seconds <= max_seconds,
               bad_option, w + "cpu_seconds must be in (0, 1e6]");
  GRPO_EXPECTS(
      std::isfinite(l.wall_seconds) && l.wall_seconds > 0 && l.wall_seconds <= max_seconds,
      bad_option, w + "wall_seconds must be in (0, 1e6]");
  GRPO_EXPECTS(l.max_processes >= 0 && l.max_processes <= (index_t{1} << 22), bad_option,
               w + "max_processes must be in [0, 2^22] (0 = no limit of ours)");
  GRPO_EXPECTS(l.max_open_files >= 4 && l.max_open_files <= (index_t{1} << 20), bad_option,
               w + "max_open_files must be in [4, 2^20]");
  GRPO_EXPECTS(l.disk_bytes >= (std::size_t{64} << 10) && l.disk_bytes <= (std::size_t{1} << 40),
               bad_option, w + "disk_bytes must be in [64 KiB, 1 TiB]");
  GRPO_EXPECTS(l.memory_bytes >= (std::size_t{1} << 20), bad_option,
               w + "memory_bytes must be >= 1 MiB");
}

/// Checks the options a run depends on.
inline void validate_options(const code_exec_options& o) {
  validate_limits(o.run, "run");
  validate_limits(o.compile, "compile");
  GRPO_EXPECTS(o.sandbox_uid != 0 && o.sandbox_gid != 0 && o.sandbox_uid < 0xFFFFFFFFu &&
                   o.sandbox_gid < 0xFFFFFFFFu,
               bad_option, "code_exec_options: sandbox_uid / sandbox_gid must not be 0 or -1");
  for (const auto* list : {&o.ro_binds, &o.extra_ro_binds})
    for (const auto& p : *list)
      GRPO_EXPECTS(!p.empty() && p[0] == '/' && p.find("/../") == std::string::npos &&
                       p.find('\0') == std::string::npos && p != "/" && p.rfind("/tmp", 0) != 0 &&
                       p.rfind("/proc", 0) != 0 && p.rfind("/dev", 0) != 0 &&
                       p.rfind("/src", 0) != 0,
                   bad_option,
                   "code_exec_options: bind '" + p +
                       "' must be an absolute path outside /tmp, /proc, /dev and /src (the "
                       "sandbox's own directories)");
}
}  // namespace detail

}  // namespace grpo::rewards
