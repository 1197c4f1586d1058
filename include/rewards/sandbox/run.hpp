// SPDX-License-Identifier: Apache-2.0
/// @file run.hpp
/// @brief run_sandboxed, the scorer's side of one sandboxed run (rewards/sandbox/jail.hpp): prepares
///        descriptors and the new root, clones the run's init into fresh namespaces, writes its id
///        maps, then enforces the wall clock and the output cap from a poll loop (no signals, no
///        global state), and classifies the outcome.
#pragma once

#include <rewards/sandbox/jail.hpp>

namespace grpo::rewards {

namespace detail {
/// A limit above the current hard limit cannot be set without CAP_SYS_RESOURCE in the initial
/// user namespace: such requests are clamped to the inherited hard limit.
inline rlimit clamped_limit(int what, rlim_t soft, rlim_t hard) {
  struct rlimit cur {};
  if (::getrlimit(what, &cur) == 0 && cur.rlim_max != RLIM_INFINITY) {
    hard = std::min(hard, cur.rlim_max);
    soft = std::min(soft, hard);
  }
  return {soft, hard};
}

/// Writes `text` to /proc/<pid>/<file>.
inline bool write_proc(pid_t pid, const char* file, const std::string& text) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

/// Maps the run's user namespace. Root scorer: inside 0 -> 0 (init, to build the root) and
/// inside 65534 -> sandbox_uid (the program). Other scorers may map one id, their own: inside
/// 65534 -> their uid, and setgroups must be denied first (user_namespaces(7)).
inline bool write_id_maps(pid_t pid, bool root, const code_exec_options& opt) {
  const std::string in = std::to_string(sandbox_inside_id);
  if (root)
    return write_proc(pid, "uid_map", "0 0 1\n" + in + " " + std::to_string(opt.sandbox_uid) +
                                          " 1\n") &&
           write_proc(pid, "gid_map",
                      "0 0 1\n" + in + " " + std::to_string(opt.sandbox_gid) + " 1\n");
  return write_proc(pid, "setgroups", "deny") &&
         write_proc(pid, "uid_map", in + " " + std::to_string(::geteuid()) + " 1\n") &&
         write_proc(pid, "gid_map", in + " " + std::to_string(::getegid()) + " 1\n");
}

/// Reads whole status messages from the (non-blocking) status pipe into `msgs`.
inline void read_status(int fd, std::vector<status_msg>& msgs, bool block_one) {
  for (;;) {
    status_msg m;
    std::size_t got = 0;
    while (got < sizeof m) {
      const ssize_t r = ::read(fd, reinterpret_cast<char*>(&m) + got, sizeof m - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN && (got > 0 || block_one)) {
        pollfd p{fd, POLLIN, 0};
        ::poll(&p, 1, 1000);
        continue;
      }
      if (r <= 0) return;
      got += static_cast<std::size_t>(r);
    }
    msgs.push_back(m);
    if (block_one) return;
  }
}

/// What the scorer saw of a run: why it ended early (if it did) and init's wait status.
struct watch_outcome {
  bool killed_time = false, killed_output = false;
  int init_status = 0;
  struct rusage ru {};
};

/// Supervises a run until init is reaped: reads stdout (up to the cap) and stderr (first 4 KiB),
/// enforces the wall clock from poll timeouts, kills init at the deadline or the cap.
/// @post init is reaped (so every process of the run is gone); the pipes are drained
inline watch_outcome watch_run(pid_t pid, int& out_r, int& err_r, const sandbox_limits& lim,
                               std::chrono::steady_clock::time_point t0, run_result& res) {
  const auto reap = [&](int flags, int& status, struct rusage* ru) {
    for (;;) {
      const pid_t r = ::wait4(pid, &status, flags, ru);
      if (r < 0 && errno == EINTR) continue;
      return r;
    }
  };
  // Event loop: stdout, stderr and a pidfd of init, until init exits, the deadline passes or
  // stdout exceeds its cap. Non-blocking reads; without pidfd_open we poll waitpid every 10 ms.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  const auto deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(lim.wall_seconds));
  watch_outcome w;
  bool& killed_time = w.killed_time;
  bool& killed_output = w.killed_output;
  bool exited = false;
  std::vector<char> buf(65536);
  const auto drain = [&](int& fd, std::string& dst, std::size_t cap, bool is_stdout) {
    for (;;) {
      const ssize_t r = ::read(fd, buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) {
        close_fd(fd);
        return;
      }
      if (r < 0) return;  // EAGAIN
      const auto n = static_cast<std::size_t>(r);
      const std::size_t room = cap > dst.size() ? cap - dst.size() : 0;
      dst.append(buf.data(), std::min(n, room));
      if (n > room && is_stdout) {  // truncated at the cap; the run dies now
        killed_output = true;
        ::kill(pid, SIGKILL);
        close_fd(fd);
        return;
      }
    }
  };
  struct rusage& ru = w.ru;
  int& init_status = w.init_status;
  while (!exited) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      killed_time = true;
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
    const long long wait_ms = std::max<long long>(1, left) + 1;
    const int timeout = static_cast<int>(pidfd >= 0 ? std::min<long long>(wait_ms, INT_MAX)
                                                    : std::min<long long>(10, wait_ms));
    const int pr = ::poll(fds, n, timeout);
    if (pr < 0 && errno != EINTR) break;
    if (out_i >= 0 && fds[out_i].revents) drain(out_r, res.out, lim.output_bytes, true);
    if (killed_output) break;
    if (err_i >= 0 && fds[err_i].revents) drain(err_r, res.err, stderr_cap, false);
    if ((pid_i >= 0 && fds[pid_i].revents) || pidfd < 0) {
      const pid_t r = reap(WNOHANG, init_status, &ru);
      if (r == pid || (r < 0 && errno == ECHILD)) exited = true;  // ECHILD: SIGCHLD ignored
    }
  }
  if (!exited) {
    ::kill(pid, SIGKILL);  // deadline, output cap or poll failure: the namespace dies with init
    reap(0, init_status, &ru);
  }
  // init is reaped, so every process of the namespace is gone: the pipes hold all there is.
  if (!killed_output && out_r >= 0) drain(out_r, res.out, lim.output_bytes, true);
  if (err_r >= 0) drain(err_r, res.err, stderr_cap, false);
  close_fd(pidfd);
  return w;
}

/// Fills status, exit code, signal and CPU time of `res` from init's reports.
/// Order: setup errors, then output cap / SIGXFSZ (the kill that caused the signal was ours),
/// then time (our deadline kill, SIGXCPU at the soft CPU limit, SIGKILL at the hard one), then
/// other signals (crashes, aborts), then the exit status.
inline void classify_run(run_result& res, const std::vector<status_msg>& msgs,
                         const watch_outcome& w, rlim_t cpu_limit, sandbox_export* exp) {
  const status_msg* err = nullptr;
  const status_msg* fin = nullptr;
  for (const auto& m : msgs) {
    if (m.tag == 'E' && err == nullptr) err = &m;
    if (m.tag == 'S') fin = &m;
    if (m.tag == 'X' && exp != nullptr) exp->ok = m.value == 0;
  }
  if (err != nullptr) {
    const std::string why =
        std::string(stage_name(err->stage)) + " failed: " + std::strerror(err->value);
    res.status = run_status::spawn_error;
    res.sandbox_unavailable = stage_is_isolation(err->stage);
    res.err = std::string(res.sandbox_unavailable ? "[grpo.sandbox_unavailable] " : "") +
              "sandbox: " + why;
    return;
  }
  const struct rusage& ru = w.ru;
  const int status = fin != nullptr ? fin->value : 0;
  res.cpu_seconds = fin != nullptr ? static_cast<double>(fin->extra) * 1e-6
                                   : static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                                         1e-6 * static_cast<double>(ru.ru_utime.tv_usec +
                                                                    ru.ru_stime.tv_usec);
  if (fin != nullptr && WIFSIGNALED(status)) res.signal = WTERMSIG(status);
  if (fin != nullptr && WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
  if (w.killed_output || res.signal == SIGXFSZ) {
    res.status = run_status::output_limit;
  } else if (w.killed_time || res.signal == SIGXCPU ||
             (res.signal == SIGKILL && res.cpu_seconds >= static_cast<double>(cpu_limit))) {
    res.status = run_status::time_limit;
  } else if (fin == nullptr) {
    res.status = run_status::spawn_error;  // init died without a report (killed from outside)
    res.err = "sandbox: the run's init exited without reporting the program's status";
  } else if (WIFSIGNALED(status)) {
    res.status = run_status::signaled;
  } else {
    res.status = res.exit_code == 0 ? run_status::exited_ok : run_status::exited_error;
  }
}
}  // namespace detail

/// Runs `argv` (argv[0] an absolute path as seen inside the sandbox) in a fresh sandbox with
/// `stdin_data` on stdin, `files` placed in its read-only root first, and `cwd` (inside; "/tmp"
/// is the private writable tmpfs) as working directory. `exp`, when given, is copied out after a
/// successful exit.
/// @pre !argv.empty(); the limits and options pass validation ([grpo.bad_option] otherwise)
/// @post every process of the run is dead on return; nothing on the host was written
/// @post never throws for a failing program: every outcome is a run_status; a refused isolation
///       step gives spawn_error with sandbox_unavailable set and "[grpo.sandbox_unavailable]" in err
inline run_result run_sandboxed(const std::vector<std::string>& argv, std::string_view stdin_data,
                                const std::string& cwd, const sandbox_limits& lim,
                                const code_exec_options& opt,
                                const std::vector<sandbox_file>& files,
                                sandbox_export* exp = nullptr) {
  using namespace detail;
  GRPO_EXPECTS(!argv.empty() && !argv[0].empty(), bad_value, "run_sandboxed: argv is empty");
  validate_limits(lim, "run_sandboxed");
  validate_options(opt);
  run_result res;
  const auto t0 = std::chrono::steady_clock::now();
  const auto unavailable = [&](const std::string& why) {
    res.status = run_status::spawn_error;
    res.sandbox_unavailable = true;
    res.err = "[grpo.sandbox_unavailable] sandbox: " + why;
    return res;
  };
  const seccomp_program& filter = sandbox_seccomp_program();
  if (filter.insns.empty() && !opt.allow_without_seccomp)
    return unavailable("no seccomp filter: " + filter.error +
                       " (set code_exec_options::allow_without_seccomp to run without one)");
  jail_ctx c;
  if (const std::string e = plan_root(c, argv, files, lim, opt); !e.empty()) {
    res.err = "sandbox: " + e;
    return res;
  }
  c.cwd = cwd.empty() ? "/tmp" : cwd;
  c.root_caller = ::geteuid() == 0;
  c.seccomp = filter.insns.empty() ? nullptr : &filter;
  c.exp = exp;
  if (exp != nullptr) exp->ok = false;
  const rlim_t cpu_s = static_cast<rlim_t>(std::max(1.0, std::ceil(lim.cpu_seconds)));
  c.cpu = clamped_limit(RLIMIT_CPU, cpu_s, cpu_s + 1);  // SIGXCPU at soft, SIGKILL at hard
  const auto bytes = [](std::size_t b) {
    return b == SIZE_MAX ? RLIM_INFINITY : static_cast<rlim_t>(b);
  };
  c.as = clamped_limit(RLIMIT_AS, bytes(lim.memory_bytes), bytes(lim.memory_bytes));
  c.fsize = clamped_limit(RLIMIT_FSIZE, bytes(lim.file_bytes), bytes(lim.file_bytes));
  const auto nofile = static_cast<rlim_t>(lim.max_open_files);
  c.nofile = clamped_limit(RLIMIT_NOFILE, nofile, nofile);
  c.set_nproc = lim.max_processes > 0;
  const auto nproc = static_cast<rlim_t>(lim.max_processes);
  c.nproc = clamped_limit(RLIMIT_NPROC, nproc, nproc);

  // Descriptors: stdin memfd (sealed: the program cannot change its input), stdout, stderr,
  // status (child -> scorer) and go (scorer -> child, after the id maps are written) pipes.
  int in_fd = -1, out_r = -1, err_r = -1, st_r = -1;
  const auto cleanup = [&] {
    for (int* f : {&in_fd, &out_r, &c.out_w, &err_r, &c.err_w, &st_r, &c.st_w, &c.go_r, &c.go_w})
      close_fd(*f);
  };
  in_fd = high_cloexec(::memfd_create("grpo-stdin", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  bool ok = in_fd >= 0 && write_all(in_fd, stdin_data.data(), stdin_data.size()) &&
            ::lseek(in_fd, 0, SEEK_SET) == 0 &&
            ::fcntl(in_fd, F_ADD_SEALS,
                    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == 0;
  for (auto [r, w] : {std::pair{&out_r, &c.out_w}, std::pair{&err_r, &c.err_w},
                      std::pair{&st_r, &c.st_w}, std::pair{&c.go_r, &c.go_w}}) {
    int p[2];
    if (ok && ::pipe2(p, O_CLOEXEC) == 0) {
      *r = high_cloexec(p[0]);
      *w = high_cloexec(p[1]);
      ok = *r >= 0 && *w >= 0;
    } else {
      ok = false;
    }
  }
  c.in_fd = in_fd;
  if (!ok) {
    res.err = std::string("sandbox: pipe/memfd setup failed: ") + std::strerror(errno);
    cleanup();
    return res;
  }
  // argv / envp as char* arrays, built now: the child may not allocate.
  for (const auto& a : argv) c.argv.push_back(const_cast<char*>(a.c_str()));
  c.argv.push_back(nullptr);
  const std::vector<std::string> env = {"PATH=" + opt.search_path, "HOME=/tmp", "TMPDIR=/tmp",
                                        "LANG=C.UTF-8", "LC_ALL=C.UTF-8",
                                        "PYTHONDONTWRITEBYTECODE=1", "PYTHONIOENCODING=utf-8"};
  for (const auto& e : env) c.envp.push_back(const_cast<char*>(e.c_str()));
  for (const auto& e : opt.extra_env) c.envp.push_back(const_cast<char*>(e.c_str()));
  c.envp.push_back(nullptr);

  // clone (not unshare: CLONE_NEWUSER is refused to multi-threaded callers) straight into every
  // namespace; the child is PID 1 of its PID namespace.
  constexpr unsigned long ns = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC |
                               CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWCGROUP;
  const pid_t pid = static_cast<pid_t>(::syscall(SYS_clone, ns | SIGCHLD, 0, 0, 0, 0));
  if (pid == 0) jail_init(c);
  if (pid < 0) {
    const int e = errno;
    cleanup();
    return unavailable(std::string(stage_name('c')) + " failed: " + std::strerror(e) +
                       " (user namespaces disabled or restricted?)");
  }
  close_fd(c.out_w);
  close_fd(c.err_w);
  close_fd(c.st_w);
  close_fd(c.go_r);
  close_fd(in_fd);
  std::vector<status_msg> msgs;
  read_status(st_r, msgs, true);
  if (msgs.empty() || msgs[0].tag != 'R' || !write_id_maps(pid, c.root_caller, opt) ||
      !write_all(c.go_w, "g", 1)) {
    const int e = errno;
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    cleanup();
    return unavailable(std::string(stage_name('m')) + " failed: " + std::strerror(e));
  }
  close_fd(c.go_w);
  res.network_isolated = true;
  // Supervise until init is reaped, then read its reports and classify.
  for (int fd : {out_r, err_r, st_r}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  const watch_outcome w = watch_run(pid, out_r, err_r, lim, t0, res);
  read_status(st_r, msgs, false);
  cleanup();
  res.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  classify_run(res, msgs, w, c.cpu.rlim_cur, exp);
  return res;
}

/// run_sandboxed without scorer files: argv[0] must exist on the host (it is bound read-only).
inline run_result run_sandboxed(const std::vector<std::string>& argv, std::string_view stdin_data,
                                const std::string& cwd, const sandbox_limits& lim,
                                const code_exec_options& opt) {
  return run_sandboxed(argv, stdin_data, cwd, lim, opt, {}, nullptr);
}

}  // namespace grpo::rewards
