// SPDX-License-Identifier: Apache-2.0
/// @file seccomp.hpp
/// @brief The sandbox's syscall filter, built once with libseccomp and kept as raw BPF so that the
///        forked child only has to call prctl (async-signal-safe). Without libseccomp
///        (GRPO_HAVE_SECCOMP unset) the filter is empty and the sandbox refuses to run unless the
///        caller opts out (code_exec_options::allow_without_seccomp).
#pragma once

#include <linux/filter.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <sched.h>
#include <string>
#include <vector>

#if defined(GRPO_HAVE_SECCOMP)
#include <seccomp.h>
#endif

namespace grpo::rewards::detail {

/// The exported filter (empty when unavailable) and why it is unavailable.
struct seccomp_program {
  std::vector<sock_filter> insns;
  std::string error;  ///< empty when insns is usable
};

#if defined(GRPO_HAVE_SECCOMP)
/// Builds the filter: default ALLOW, and EPERM (not kill: the program sees a failing call, as on a
/// hardened host) for what a test program never needs. Syscalls of other ABIs (i386 via int 0x80,
/// x32) hit libseccomp's bad-arch action, which kills. Names unknown to this libseccomp/arch are
/// skipped.
inline seccomp_program build_seccomp_program() {
  seccomp_program out;
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) {
    out.error = "seccomp_init failed";
    return out;
  }
  const auto deny = [&](const char* name, int err = EPERM) {
    const int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return true;  // not on this architecture
    return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(static_cast<unsigned>(err)), nr, 0) == 0;
  };
  // One-comparison rule, built without libseccomp's SCMP_A* macros (C99 compound literals).
  const auto rule1 = [&](unsigned action, int nr, unsigned arg, scmp_compare op,
                         std::uint64_t a, std::uint64_t b = 0) {
    scmp_arg_cmp cmp{};
    cmp.arg = arg;
    cmp.op = op;
    cmp.datum_a = a;
    cmp.datum_b = b;
    return seccomp_rule_add_array(ctx, action, nr, 1, &cmp) == 0;
  };
  bool ok = true;
  // Debugging other processes, kernel and mount state, namespaces, keys, BPF, perf, modules,
  // reboot, swap, clock, accounting, cross-process memory, userfaultfd, io_uring (its requests
  // bypass this filter), file handles (open_by_handle_at escapes bind mounts), moving other
  // processes' pages.
  for (const char* n :
       {"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "mount",
        "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
        "move_mount", "open_tree", "mount_setattr", "unshare", "setns", "keyctl", "add_key",
        "request_key", "bpf", "perf_event_open", "kexec_load", "kexec_file_load", "init_module",
        "finit_module", "delete_module", "create_module", "reboot", "swapon", "swapoff", "acct",
        "quotactl", "quotactl_fd", "syslog", "vhangup", "iopl", "ioperm", "lookup_dcookie",
        "open_by_handle_at", "name_to_handle_at", "fanotify_init", "userfaultfd", "io_uring_setup",
        "io_uring_enter", "io_uring_register", "settimeofday", "clock_settime", "clock_adjtime",
        "adjtimex", "sethostname", "setdomainname", "uselib", "_sysctl", "nfsservctl",
        "move_pages", "migrate_pages"})
    ok = ok && deny(n);
  // clone3 passes its flags in memory, which BPF cannot read: ENOSYS makes glibc fall back to
  // clone, whose flags are checked below.
  ok = ok && deny("clone3", ENOSYS);
  constexpr unsigned long ns_flags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,
                                        CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
                                        CLONE_NEWCGROUP, 0x00000080UL /* CLONE_NEWTIME */};
  for (const unsigned long f : ns_flags)
    ok = ok && rule1(SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 0, SCMP_CMP_MASKED_EQ, f, f);
  // Sockets: only AF_UNIX (socketpair and sockets inside the sandbox's own filesystem).
  ok = ok && rule1(SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 0, SCMP_CMP_NE, AF_UNIX);
  ok = ok && rule1(SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socketpair), 0, SCMP_CMP_NE, AF_UNIX);
  // personality: only the query personality(0xffffffff) (no ASLR-off, no READ_IMPLIES_EXEC).
  ok = ok && rule1(SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 0, SCMP_CMP_NE, 0xffffffffUL);
  // TIOCSTI (push input into a terminal) even though the sandbox has no terminal.
  ok = ok && rule1(SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1, SCMP_CMP_MASKED_EQ, 0xffffffffUL,
                   0x5412UL);
  if (!ok) {
    out.error = "seccomp_rule_add failed";
    seccomp_release(ctx);
    return out;
  }
  // Export the BPF through a memfd and read it back: the child installs it with one prctl.
  const int fd = ::memfd_create("grpo-seccomp", MFD_CLOEXEC);
  if (fd < 0 || seccomp_export_bpf(ctx, fd) != 0) {
    out.error = "seccomp_export_bpf failed";
  } else {
    const off_t n = ::lseek(fd, 0, SEEK_END);
    if (n > 0 && n % static_cast<off_t>(sizeof(sock_filter)) == 0) {
      out.insns.resize(static_cast<std::size_t>(n) / sizeof(sock_filter));
      if (::pread(fd, out.insns.data(), static_cast<std::size_t>(n), 0) != n) {
        out.insns.clear();
        out.error = "reading the exported seccomp filter failed";
      }
    } else {
      out.error = "the exported seccomp filter is empty";
    }
  }
  if (fd >= 0) ::close(fd);
  seccomp_release(ctx);
  return out;
}
#else
inline seccomp_program build_seccomp_program() {
  return {{}, "built without libseccomp (GRPO_HAVE_SECCOMP unset; Debian: libseccomp-dev)"};
}
#endif

/// The filter of this process, built on first use (thread-safe static initialisation).
inline const seccomp_program& sandbox_seccomp_program() {
  static const seccomp_program p = build_seccomp_program();
  return p;
}

}  // namespace grpo::rewards::detail
