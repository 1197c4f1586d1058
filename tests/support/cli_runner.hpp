// SPDX-License-Identifier: Apache-2.0
/// @file cli_runner.hpp
/// @brief Runs the grpo-reward CLI (GRPO_REWARD_CLI) as a plain child process with memfd stdio, for
///        the CLI tests. Not through the code sandbox: the CLI sandboxes its own code runs and
///        sandboxes do not nest; and LeakSanitizer (ptrace-based) cannot work under its seccomp.
#pragma once

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#ifdef GRPO_REWARD_CLI
namespace grpo_test {
struct cli_result {
  int exit_code;
  std::string out, err;
};

// The CLI is trusted code of this build, and it runs the code sandbox itself, which does not
// nest (the sandbox's seccomp filter refuses new namespaces): run it as a plain child process,
// stdin/stdout/stderr through memfds (no pipe dead-lock), with the caller's environment (sanitizer
// settings pass through).
cli_result run_cli(std::vector<std::string> args, const std::string& stdin_data) {
  args.insert(args.begin(), GRPO_REWARD_CLI);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int in = ::memfd_create("cli-in", MFD_CLOEXEC), out = ::memfd_create("cli-out", MFD_CLOEXEC),
            err = ::memfd_create("cli-err", MFD_CLOEXEC);
  REQUIRE((in >= 0 && out >= 0 && err >= 0));
  REQUIRE(::write(in, stdin_data.data(), stdin_data.size()) ==
          static_cast<ssize_t>(stdin_data.size()));
  ::lseek(in, 0, SEEK_SET);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) ::_exit(126);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  const auto slurp = [](int fd) {
    std::string s(static_cast<std::size_t>(::lseek(fd, 0, SEEK_END)), '\0');
    if (!s.empty()) REQUIRE(::pread(fd, s.data(), s.size(), 0) == static_cast<ssize_t>(s.size()));
    ::close(fd);
    return s;
  };
  ::close(in);
  cli_result r{WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(out), slurp(err)};
  REQUIRE_MESSAGE(WIFEXITED(st), r.err);
  REQUIRE_MESSAGE(r.exit_code != 127, "could not run " GRPO_REWARD_CLI);
  return r;
}
/// The JSON records of a JSON Lines output, one per non-empty line.
inline std::vector<nlohmann::json> lines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::size_t b = 0;
  while (b < out.size()) {
    std::size_t e = out.find('\n', b);
    if (e == std::string::npos) e = out.size();
    if (e > b) v.push_back(nlohmann::json::parse(out.substr(b, e - b)));
    b = e + 1;
  }
  return v;
}
}  // namespace grpo_test
#endif  // GRPO_REWARD_CLI
