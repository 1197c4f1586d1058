// SPDX-License-Identifier: Apache-2.0
/// @file jail.hpp
/// @brief run_sandboxed: runs one program in fresh Linux namespaces (user, PID, mount, IPC, UTS,
///        network, cgroup) with a read-only minimal root, a private size-limited tmpfs, no
///        capabilities, no_new_privs, a seccomp filter and rlimits. Built as nsjail / bubblewrap
///        are; no cgroups needed. Threat model and limits: docs/rewards.md.
///
/// Process layout of one run:
///   scorer thread --clone(CLONE_NEW*)--> init (PID 1 of the new PID namespace; builds the root,
///   writes the scorer's files into it, then forks) --> program (drops every privilege, execs).
/// When the program exits, init SIGKILLs everything else in the namespace and exits; at the
/// wall-clock deadline or the output cap the scorer SIGKILLs init, and the kernel kills every
/// process of the namespace with it. Nothing of a run outlives it.
/// Between clone and execve only async-signal-safe calls are made (raw syscalls, no allocation),
/// so the scorer may call this from any thread of a multi-threaded process.
#pragma once

#include <rewards/sandbox/options.hpp>
#include <rewards/sandbox/seccomp.hpp>

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace grpo::rewards {

/// A file the scorer places in the sandbox's read-only root before the program exists (so no
/// process of any run can race its creation): e.g. the source "/src/main.py".
struct sandbox_file {
  std::string path;       ///< absolute path inside the sandbox; its directories are created
  std::string_view data;  ///< contents (when fd < 0)
  int fd = -1;            ///< or: the contents of this file (read with pread from offset 0)
  unsigned mode = 0444;
};

/// A file handed back when the program exits with status 0 (the compiled binary): init copies it,
/// after every other process of the run is dead, into `fd` (a file of the scorer).
struct sandbox_export {
  std::string path;  ///< inside the sandbox, e.g. "/tmp/prog"
  int fd = -1;
  std::size_t max_bytes = 0;
  bool ok = false;  ///< out: a regular file of at most max_bytes was copied
};

namespace detail {
inline constexpr unsigned sandbox_inside_id = 65534;  ///< uid/gid of the program inside
inline constexpr const char* jail_base = "/tmp";      ///< where the new root is built
inline constexpr std::size_t stderr_cap = 4096;

/// One step of building the new root (paths already prefixed with jail_base).
struct jail_op {
  enum kind : char { mkdir, touch, symlink, bind, bind_dev, proc, tmpfs, file } k = mkdir;
  std::string a;                    ///< target path
  std::string b;                    ///< bind source / link target / tmpfs options
  unsigned long fallback_flags = 0;  ///< MS_* flags of the bind source (for a MS_REMOUNT)
  std::string_view data;
  int fd = -1;
  unsigned mode = 0755;
};

/// Message of the child on the status pipe (fixed size, written atomically).
struct status_msg {
  char tag = 0;    ///< 'R' ready for the id maps, 'E' setup error, 'S' program status, 'X' export
  char stage = 0;  ///< failing step for 'E'
  char pad[2] = {0, 0};
  std::int32_t value = 0;  ///< errno ('E'), wait status ('S'), 0 or errno ('X')
  std::int64_t extra = 0;  ///< CPU microseconds ('S')
};

inline const char* stage_name(char s) {
  switch (s) {
    case 'c': return "clone(CLONE_NEWUSER|NEWPID|NEWNS|NEWIPC|NEWUTS|NEWNET)";
    case 'm': return "writing the user namespace id maps";
    case 'p': return "making the mounts private";
    case 'r': return "mounting the root tmpfs";
    case 'M': return "mkdir in the new root";
    case 'T': return "creating a bind mount point";
    case 'L': return "symlink in the new root";
    case 'B': return "bind mount";
    case 'O': return "making a bind mount read-only";
    case 't': return "mounting the private /tmp";
    case 'P': return "pivot_root";
    case 'o': return "remounting the root read-only";
    case 'w': return "writing a file into the sandbox";
    case 'f': return "fork of the program";
    case 'd': return "dup2";
    case 'l': return "setrlimit";
    case 'u': return "switching to the sandbox uid/gid";
    case 'k': return "dropping capabilities";
    case 'n': return "PR_SET_NO_NEW_PRIVS";
    case 's': return "installing the seccomp filter";
    case 'C': return "chdir";
    case 'x': return "execve";
    default: return "sandbox setup";
  }
}
/// Steps whose failure means the kernel refused isolation (fail closed, named error), as opposed
/// to the program itself being unusable (exec, chdir) or the run out of resources.
inline bool stage_is_isolation(char s) {
  return std::string_view("cmprMTLBOtPoluokns").find(s) != std::string_view::npos;
}

inline void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}
/// Moves fd to a number >= 4 with FD_CLOEXEC (the child's dup2 onto 0..3 never clobbers a source).
inline int high_cloexec(int fd) {
  if (fd < 0 || fd >= 4) return fd;
  const int n = ::fcntl(fd, F_DUPFD_CLOEXEC, 4);
  ::close(fd);
  return n;
}
inline bool write_all(int fd, const void* p, std::size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}
/// Child side: report a failed step and exit. Async-signal-safe.
[[noreturn]] inline void child_fail(int fd, char stage) {
  status_msg m;
  m.tag = 'E';
  m.stage = stage;
  m.value = errno;
  write_all(fd, &m, sizeof m);
  ::_exit(127);
}

/// Everything the child needs, prepared before clone (the child never allocates).
struct jail_ctx {
  std::vector<jail_op> ops;
  std::string root_opts;
  std::vector<char*> argv, envp;
  std::string cwd;
  int go_r = -1, go_w = -1, st_w = -1, in_fd = -1, out_w = -1, err_w = -1;
  bool root_caller = false;
  unsigned inside_id = sandbox_inside_id;
  rlimit cpu{}, as{}, fsize{}, nofile{}, nproc{};
  bool set_nproc = false;
  const seccomp_program* seccomp = nullptr;
  sandbox_export* exp = nullptr;
};

/// Creates `p` and its missing parents as mkdir ops (inside paths, e.g. "/etc/x" -> /etc).
inline void plan_dirs(std::vector<jail_op>& ops, std::set<std::string>& made, const std::string& p,
                      bool self) {
  std::size_t at = 1;
  for (;;) {
    const std::size_t s = p.find('/', at);
    if (s == std::string::npos && !self) return;
    const std::string dir = s == std::string::npos ? p : p.substr(0, s);
    if (!dir.empty() && made.insert(dir).second) {
      jail_op o;
      o.k = jail_op::mkdir;
      o.a = std::string(jail_base) + dir;
      ops.push_back(std::move(o));
    }
    if (s == std::string::npos) return;
    at = s + 1;
  }
}

/// MS_* flags a read-only remount of a bind of `src` must keep (locked in a user namespace).
inline unsigned long locked_flags(const std::string& src) {
  struct statvfs v {};
  if (::statvfs(src.c_str(), &v) != 0) return 0;
  unsigned long f = 0;
  if (v.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (v.f_flag & ST_NODEV) f |= MS_NODEV;
  if (v.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (v.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (v.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (v.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

/// Plans the new root: read-only binds, /dev nodes, /proc, the private /tmp, the scorer's files.
/// @return an error message, empty on success.
inline std::string plan_root(jail_ctx& c, const std::vector<std::string>& argv,
                             const std::vector<sandbox_file>& files, const sandbox_limits& lim,
                             const code_exec_options& opt) {
  std::set<std::string> made;
  std::vector<std::string> covered;  // inside prefixes that exist (binds and links)
  const auto add_bind = [&](const std::string& p, bool required) -> std::string {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return required ? "bind source " + p + " is missing" : "";
    jail_op o;
    o.a = std::string(jail_base) + p;
    if (S_ISLNK(st.st_mode)) {
      char t[PATH_MAX];
      const ssize_t n = ::readlink(p.c_str(), t, sizeof t - 1);
      if (n <= 0) return "readlink " + p + " failed";
      plan_dirs(c.ops, made, p, false);
      o.k = jail_op::symlink;
      o.b.assign(t, static_cast<std::size_t>(n));
    } else {
      plan_dirs(c.ops, made, p, S_ISDIR(st.st_mode));
      if (!S_ISDIR(st.st_mode)) {
        jail_op t;
        t.k = jail_op::touch;
        t.a = o.a;
        c.ops.push_back(std::move(t));
      }
      o.k = jail_op::bind;
      o.b = p;
      o.fallback_flags = locked_flags(p);
    }
    c.ops.push_back(std::move(o));
    covered.push_back(p);
    return "";
  };
  for (const auto& p : opt.ro_binds)
    if (auto e = add_bind(p, false); !e.empty()) return e;
  for (const auto& p : opt.extra_ro_binds)
    if (auto e = add_bind(p, true); !e.empty()) return e;
  // The program itself, when it lives outside the binds (a tool of the build tree).
  const std::string& prog = argv[0];
  const bool is_file = std::any_of(files.begin(), files.end(),
                                   [&](const sandbox_file& f) { return f.path == prog; });
  const bool is_covered = std::any_of(covered.begin(), covered.end(), [&](const std::string& p) {
    return prog.size() > p.size() && prog.compare(0, p.size(), p) == 0 && prog[p.size()] == '/';
  });
  if (!is_file && !is_covered && prog.size() > 1 && prog[0] == '/')
    if (auto e = add_bind(prog, true); !e.empty()) return e;
  // /dev: the harmless character devices only (bound from the host), and the /proc links.
  plan_dirs(c.ops, made, "/dev", true);
  for (const char* d : {"null", "zero", "full", "random", "urandom"}) {
    const std::string host = std::string("/dev/") + d;
    struct stat st {};
    if (::stat(host.c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) continue;
    jail_op t;
    t.k = jail_op::touch;
    t.a = std::string(jail_base) + host;
    c.ops.push_back(t);
    t.k = jail_op::bind_dev;
    t.b = host;
    t.fallback_flags = locked_flags(host);
    c.ops.push_back(std::move(t));
  }
  for (const auto& [name, target] : {std::pair<const char*, const char*>{"fd", "/proc/self/fd"},
                                     {"stdin", "/proc/self/fd/0"},
                                     {"stdout", "/proc/self/fd/1"},
                                     {"stderr", "/proc/self/fd/2"}}) {
    jail_op l;
    l.k = jail_op::symlink;
    l.a = std::string(jail_base) + "/dev/" + name;
    l.b = target;
    c.ops.push_back(std::move(l));
  }
  plan_dirs(c.ops, made, "/proc", true);
  jail_op proc;
  proc.k = jail_op::proc;
  proc.a = std::string(jail_base) + "/proc";
  c.ops.push_back(std::move(proc));
  plan_dirs(c.ops, made, "/tmp", true);
  jail_op tmp;
  tmp.k = jail_op::tmpfs;
  tmp.a = std::string(jail_base) + "/tmp";
  const std::size_t inodes = std::clamp<std::size_t>(lim.disk_bytes / 4096, 1024, 1 << 20);
  tmp.b = "size=" + std::to_string(lim.disk_bytes) + ",nr_inodes=" + std::to_string(inodes) +
          ",mode=0700,uid=" + std::to_string(sandbox_inside_id) +
          ",gid=" + std::to_string(sandbox_inside_id);
  c.ops.push_back(std::move(tmp));
  // The scorer's files, on the root tmpfs (read-only for the program once it is remounted).
  std::size_t bytes = std::size_t{1} << 20;
  for (const auto& f : files) {
    if (f.path.size() < 2 || f.path[0] != '/' || f.path.find("/../") != std::string::npos ||
        f.path.rfind("/tmp/", 0) == 0 || f.path.rfind("/proc/", 0) == 0)
      return "sandbox_file path '" + f.path + "' must be absolute, outside /tmp and /proc";
    plan_dirs(c.ops, made, f.path, false);
    jail_op o;
    o.k = jail_op::file;
    o.a = std::string(jail_base) + f.path;
    o.data = f.data;
    o.fd = f.fd;
    o.mode = f.mode & 0555u;  // never writable, never setuid
    std::size_t n = f.data.size();
    if (f.fd >= 0) {
      struct stat st {};
      if (::fstat(f.fd, &st) != 0) return "fstat of a sandbox_file fd failed";
      n = static_cast<std::size_t>(st.st_size);
    }
    bytes += n + 4096;
    c.ops.push_back(std::move(o));
  }
  c.root_opts = "size=" + std::to_string(bytes) + ",mode=0755";
  return "";
}

// ---------------------------------------------------------------------------------------------
// Child side (async-signal-safe only).

/// Binds `src` read-only (nosuid, nodev unless a device) over `dst`, recursively.
inline bool bind_ro(const jail_op& o, bool dev) {
  if (::mount(o.b.c_str(), o.a.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) return false;
  struct {
    std::uint64_t attr_set, attr_clr, propagation, userns_fd;
  } attr{0x1U /*RDONLY*/ | 0x2U /*NOSUID*/ | (dev ? 0x8U /*NOEXEC*/ : 0x4U /*NODEV*/), 0, 0, 0};
  if (::syscall(SYS_mount_setattr, AT_FDCWD, o.a.c_str(), 0x8000 /*AT_RECURSIVE*/, &attr,
                sizeof attr) == 0)
    return true;
  if (errno != ENOSYS) return false;
  // Kernels before 5.12: remount the top mount read-only, keeping its locked flags.
  const unsigned long f = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | o.fallback_flags |
                          (dev ? MS_NOEXEC : MS_NODEV);
  return ::mount(nullptr, o.a.c_str(), nullptr, f, nullptr) == 0;
}

/// Copies a scorer file into the root (O_EXCL | O_NOFOLLOW: a fresh file, never through a link).
inline bool write_jail_file(const jail_op& o) {
  const int fd = ::open(o.a.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = true;
  if (o.fd < 0) {
    ok = write_all(fd, o.data.data(), o.data.size());
  } else {
    char buf[16384];
    for (off_t off = 0;;) {
      const ssize_t r = ::pread(o.fd, buf, sizeof buf, off);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) ok = false;
      if (r <= 0) break;
      ok = write_all(fd, buf, static_cast<std::size_t>(r));
      if (!ok) break;
      off += r;
    }
  }
  ok = ok && ::fchmod(fd, o.mode) == 0;
  ::close(fd);
  return ok;
}

/// The program: stdio, rlimits, identity, capabilities, no_new_privs, seccomp, execve.
[[noreturn]] inline void program_exec(const jail_ctx& c) {
  if (::dup2(c.st_w, 3) < 0) ::_exit(127);
  ::fcntl(3, F_SETFD, FD_CLOEXEC);  // closed by a successful exec
  if (::dup2(c.in_fd, 0) < 0 || ::dup2(c.out_w, 1) < 0 || ::dup2(c.err_w, 2) < 0)
    child_fail(3, 'd');
  if (::syscall(SYS_close_range, 4U, ~0U, 0U) != 0)
    for (int fd = 4; fd < 65536; ++fd) ::close(fd);
  ::setsid();
  // Hard limits too: the program cannot raise them back (no CAP_SYS_RESOURCE anywhere).
  const rlimit core{0, 0};
  if (::setrlimit(RLIMIT_CPU, &c.cpu) != 0 || ::setrlimit(RLIMIT_AS, &c.as) != 0 ||
      ::setrlimit(RLIMIT_FSIZE, &c.fsize) != 0 || ::setrlimit(RLIMIT_CORE, &core) != 0 ||
      ::setrlimit(RLIMIT_NOFILE, &c.nofile) != 0 ||
      (c.set_nproc && ::setrlimit(RLIMIT_NPROC, &c.nproc) != 0))
    child_fail(3, 'l');
  if (::chdir(c.cwd.c_str()) != 0) child_fail(3, 'C');
  // Identity and capabilities: empty bounding and ambient sets, locked securebits (no uid 0
  // magic, no capability fixups), then the sandbox ids, then empty capability sets.
  // Raw syscalls, not glibc's setgroups / setres[ug]id: those broadcast the change to every thread
  // glibc believes exists (nptl setxid), taking the thread-stack lock that another scorer thread may
  // have held at clone() time: the child would then hang until the wall-clock kill (seen as rare
  // code-reward timeouts under a thread pool). The child is single-threaded; the raw call suffices.
  if (c.root_caller && ::syscall(SYS_setgroups, 0, nullptr) != 0) child_fail(3, 'u');
  for (int cap = 0; cap < 64; ++cap)
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) child_fail(3, 'k');
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    child_fail(3, 'k');
  const unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                             SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                             SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (::prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0) child_fail(3, 'k');
  const unsigned id = c.inside_id;
  if (::syscall(SYS_setresgid, id, id, id) != 0 || ::syscall(SYS_setresuid, id, id, id) != 0)
    child_fail(3, 'u');
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {{0, 0, 0}, {0, 0, 0}};
  if (::syscall(SYS_capset, &hdr, data) != 0) child_fail(3, 'k');
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(3, 'n');
  if (c.seccomp != nullptr && !c.seccomp->insns.empty()) {
    sock_fprog prog{static_cast<unsigned short>(c.seccomp->insns.size()),
                    const_cast<sock_filter*>(c.seccomp->insns.data())};
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) child_fail(3, 's');
  }
  ::execve(c.argv[0], c.argv.data(), c.envp.data());
  child_fail(3, 'x');
}

/// Zeroes this process's copy of the scorer's argv and environment strings (fields 48-51 of
/// /proc/self/stat): /proc/1/cmdline of the run must not show the scorer's command line. Defence
/// in depth: /proc is mounted with hidepid=2, which already hides init from the program.
inline void wipe_scorer_args() {
  char buf[4096];
  const int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return;
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // comm may contain spaces and parentheses
  if (p == nullptr) return;
  unsigned long v[52] = {};
  int field = 2;
  for (++p; *p != 0 && field < 51;) {
    while (*p == ' ') ++p;
    ++field;
    unsigned long x = 0;
    for (; *p >= '0' && *p <= '9'; ++p) x = x * 10 + static_cast<unsigned long>(*p - '0');
    while (*p != 0 && *p != ' ') ++p;
    v[field] = x;
  }
  if (field < 51) return;
  for (int f : {48, 50})
    if (v[f] != 0 && v[f + 1] > v[f] && v[f + 1] - v[f] < (1UL << 26))
      std::memset(reinterpret_cast<void*>(v[f]), 0, v[f + 1] - v[f]);
}

/// init (PID 1 of the run): builds the root, starts the program, reaps, reports, exits.
[[noreturn]] inline void jail_init(jail_ctx& c) {
  close_fd(c.go_w);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s : {SIGPIPE, SIGXCPU, SIGXFSZ, SIGINT, SIGTERM, SIGCHLD, SIGHUP})
    ::sigaction(s, &dfl, nullptr);
  wipe_scorer_args();
  // Dumpable, so that a scorer that changed its uid (non-dumpable) can still write our id maps.
  ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
  status_msg ready;
  ready.tag = 'R';
  write_all(c.st_w, &ready, sizeof ready);
  char go = 0;
  for (;;) {
    const ssize_t r = ::read(c.go_r, &go, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r != 1 || go != 'g') ::_exit(127);  // the scorer gave up
    break;
  }
  close_fd(c.go_r);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);  // the scorer dies -> the whole run dies
  ::umask(022);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) child_fail(c.st_w, 'p');
  if (::mount("tmpfs", jail_base, "tmpfs", MS_NOSUID | MS_NODEV, c.root_opts.c_str()) != 0)
    child_fail(c.st_w, 'r');
  for (const jail_op& o : c.ops) {
    switch (o.k) {
      case jail_op::mkdir:
        if (::mkdir(o.a.c_str(), 0755) != 0 && errno != EEXIST) child_fail(c.st_w, 'M');
        break;
      case jail_op::touch: {
        const int fd = ::open(o.a.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) child_fail(c.st_w, 'T');
        ::close(fd);
        break;
      }
      case jail_op::symlink:
        if (::symlink(o.b.c_str(), o.a.c_str()) != 0) child_fail(c.st_w, 'L');
        break;
      case jail_op::bind:
      case jail_op::bind_dev:
        if (!bind_ro(o, o.k == jail_op::bind_dev)) child_fail(c.st_w, 'B');
        break;
      case jail_op::proc:
        // Optional: a container that masks parts of its /proc forbids a fresh proc mount; the
        // sandbox is not weaker without /proc (programs see less).
        // hidepid=2: processes the program may not ptrace-read (init) are invisible.
        if (::mount("proc", o.a.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2") !=
            0)
          ::mount("proc", o.a.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
        break;
      case jail_op::tmpfs:
        if (::mount("tmpfs", o.a.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, o.b.c_str()) != 0)
          child_fail(c.st_w, 't');
        break;
      case jail_op::file:
        if (!write_jail_file(o)) child_fail(c.st_w, 'w');
        break;
    }
  }
  ::sethostname("sandbox", 7);
  // pivot_root(".", "."): the old root ends up on top of the new one and is detached at once.
  if (::chdir(jail_base) != 0 || ::syscall(SYS_pivot_root, ".", ".") != 0 ||
      ::umount2(".", MNT_DETACH) != 0 || ::chdir("/") != 0)
    child_fail(c.st_w, 'P');
  if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
              nullptr) != 0)
    child_fail(c.st_w, 'o');
  const pid_t prog = static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
  if (prog < 0) child_fail(c.st_w, 'f');
  if (prog == 0) program_exec(c);
  close_fd(c.in_fd);
  close_fd(c.out_w);
  close_fd(c.err_w);
  status_msg st;
  st.tag = 'S';
  st.value = -1;
  bool have = false;
  for (;;) {  // reap orphans until the program itself exits
    int ws = 0;
    struct rusage ru {};
    const pid_t r = ::wait4(-1, &ws, 0, &ru);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (r == prog) {
      have = true;
      st.value = ws;
      st.extra = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL + ru.ru_utime.tv_usec +
                 ru.ru_stime.tv_usec;
      break;
    }
  }
  ::kill(-1, SIGKILL);  // from PID 1: every other process of the namespace
  for (;;) {
    const pid_t r = ::wait4(-1, nullptr, 0, nullptr);
    if (r > 0 || (r < 0 && errno == EINTR)) continue;
    break;
  }
  if (have && c.exp != nullptr && WIFEXITED(st.value) && WEXITSTATUS(st.value) == 0) {
    status_msg x;
    x.tag = 'X';
    const int in = ::open(c.exp->path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb {};
    if (in < 0 || ::fstat(in, &sb) != 0 || !S_ISREG(sb.st_mode) ||
        static_cast<std::size_t>(sb.st_size) > c.exp->max_bytes || ::ftruncate(c.exp->fd, 0) != 0) {
      x.value = in < 0 ? errno : EFBIG;
    } else {
      char buf[16384];
      for (off_t off = 0;;) {
        const ssize_t r = ::read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) x.value = errno;
        if (r <= 0) break;
        if (::pwrite(c.exp->fd, buf, static_cast<std::size_t>(r), off) != r) {
          x.value = EIO;
          break;
        }
        off += r;
      }
    }
    if (in >= 0) ::close(in);
    write_all(c.st_w, &x, sizeof x);
  }
  if (have) write_all(c.st_w, &st, sizeof st);
  ::_exit(0);
}
}  // namespace detail
}  // namespace grpo::rewards
