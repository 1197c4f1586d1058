// SPDX-License-Identifier: Apache-2.0
// Code execution: fenced-block extraction (open-r1 semantics), output comparison policies, and
// real Python / C++ programs in the sandbox: passing, failing, crashing, infinite loop, sleeping,
// fork bomb, memory hog, output flood, no network, temp-dir cleanup; limit validation and the
// fail-closed policy when the kernel refuses a namespace. The escapes: test_sandbox_escapes.cpp.
#include <rewards/code_exec.hpp>

#include <doctest/doctest.h>

#include <dirent.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <limits>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

using namespace grpo::rewards;

namespace {
// Fast limits for tests: 1 s CPU, 4 s wall.
code_exec_options fast() {
  code_exec_options o;
  o.run.cpu_seconds = 1;
  o.run.wall_seconds = 4;
  o.run.max_processes = 16;
#ifndef GRPO_HAVE_SECCOMP
  o.allow_without_seccomp = true;  // documented opt-out of a build without libseccomp
#endif
  return o;
}

const std::vector<test_case> sum_tests = {{"3 4\n", "7\n"}, {"10 -2\n", "8\n"}, {"0 0\n", "0\n"}};

// Names of grpo-code-* directories under /tmp (to prove cleanup).
std::set<std::string> temp_dirs() {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/tmp", ec))
    if (e.path().filename().string().rfind("grpo-code-", 0) == 0) out.insert(e.path().string());
  return out;
}

// Number of processes owned by uid (from /proc).
int processes_now(unsigned uid) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat st {};
    if (::stat(e.path().c_str(), &st) == 0 && st.st_uid == uid) ++n;
  }
  return n;
}

// Same, once the SIGKILLed group has been reaped by init: killed orphans stay visible in /proc
// for a moment, so this waits (up to 20 s) for the count to reach zero.
int processes_of(unsigned uid) {
  int n = processes_now(uid);
  for (int i = 0; i < 200 && n != 0; ++i) {
    ::usleep(100000);
    n = processes_now(uid);
  }
  return n;
}
}  // namespace

TEST_CASE("code: language names and fenced-block extraction" * doctest::test_suite("rewards")) {
  CHECK(parse_code_language("Python") == code_language::python);
  CHECK(parse_code_language("py") == code_language::python);
  CHECK(parse_code_language("C++") == code_language::cpp);
  CHECK(parse_code_language("cxx") == code_language::cpp);
  CHECK_FALSE(parse_code_language("rust").has_value());
  const std::string c = "text\n```python\nprint(1)\n```\nmore\n```python\nprint(2)\n```\n";
  CHECK(extract_code_block(c, code_language::python) == "print(2)\n");  // the last block
  CHECK(extract_code_block(c, code_language::cpp).empty());
  CHECK(extract_code_block("```cpp\nint main(){}\n```", code_language::cpp) == "int main(){}\n");
  CHECK(extract_code_block("```c++ \r\nx\n```", code_language::cpp) == "x\n");
  // no newline after the tag, unknown tag, prefix tag, unclosed block
  CHECK(extract_code_block("```python print(1)```", code_language::python).empty());
  CHECK(extract_code_block("```pythonic\nx\n```", code_language::python).empty());
  CHECK(extract_code_block("```python\nunclosed", code_language::python).empty());
  CHECK(extract_code_block("```python\na\n``` ```python\nb", code_language::python) == "a\n");
  // the closing fence may be mid-line, as in open-r1's (.*?)```
  CHECK(extract_code_block("```py\nx = 1```", code_language::python) == "x = 1");
  // findall semantics: a fence inside a block closes it; scanning resumes after the close
  CHECK(extract_code_block("```python\na\n```python\nb\n```", code_language::python) == "a\n");
}

TEST_CASE("code: output comparison policies" * doctest::test_suite("rewards")) {
  CHECK(outputs_match("7\n", "7\n", output_match::exact));
  CHECK_FALSE(outputs_match("7", "7\n", output_match::exact));
  CHECK(outputs_match("7  \r\n\n\n", "7", output_match::trim_lines));
  CHECK(outputs_match("  a b \nc", "a b\n c \n", output_match::trim_lines));
  CHECK_FALSE(
      outputs_match("a\nb", "a\n\nb", output_match::trim_lines));       // inner blank lines count
  CHECK_FALSE(outputs_match("a b", "a  b", output_match::trim_lines));  // inner spaces count
  CHECK(outputs_match("a  b\n\n c", "a b c", output_match::tokens));
  CHECK_FALSE(outputs_match("a b", "a b c", output_match::tokens));
  // open-r1's zip: missing or extra trailing lines are not detected
  CHECK(outputs_match("1\n2", "1\n2\n3", output_match::open_r1));
  CHECK(outputs_match("1\n2\n3", "1", output_match::open_r1));
  CHECK_FALSE(outputs_match("1\n3", "1\n2", output_match::open_r1));
  // open-r1 strips the actual output only: an expected output with a leading blank line never
  // matches, not even itself (found by fuzz/fuzz_rules_code_extract.cpp)
  CHECK_FALSE(outputs_match("\n1", "\n1", output_match::open_r1));
  CHECK(outputs_match("\n1", "\n1", output_match::trim_lines));
  CHECK_FALSE(outputs_match("1\n2", "1\n2\n3", output_match::trim_lines));
}

TEST_CASE("code: Python programs that pass, fail and crash" * doctest::test_suite("rewards")) {
  const auto o = fast();
  const auto pass = run_tests("a, b = map(int, input().split())\nprint(a + b)\n",
                              code_language::python, sum_tests, o);
  CHECK(pass.pass_fraction == 1.0);
  CHECK(pass.passed == 3);
  for (auto v : pass.verdicts) CHECK(v == test_verdict::passed);
  // wrong on one test of three: prints a+b except for zeros
  const auto part = run_tests("a, b = map(int, input().split())\nprint(a + b if a else 1)\n",
                              code_language::python, sum_tests, o);
  CHECK(part.pass_fraction == doctest::Approx(2.0 / 3.0));
  CHECK(part.verdicts[2] == test_verdict::wrong_answer);
  const auto raise = run_tests("raise ValueError('boom')\n", code_language::python, sum_tests, o);
  CHECK(raise.pass_fraction == 0.0);
  CHECK(raise.verdicts[0] == test_verdict::runtime_error);
  const auto abort = run_tests("import os\nos.abort()\n", code_language::python, sum_tests, o);
  CHECK(abort.verdicts[0] == test_verdict::crashed);
  // right output but non-zero exit status fails (open-r1 requires returncode 0)
  const auto exit1 = run_tests("print(7)\nimport sys\nsys.exit(3)\n", code_language::python,
                               {sum_tests.data(), 1}, o);
  CHECK(exit1.verdicts[0] == test_verdict::runtime_error);
  const auto syntax = run_tests("def f(:\n", code_language::python, sum_tests, o);
  CHECK(syntax.pass_fraction == 0.0);
}

TEST_CASE("code: Python limits: infinite loop, sleep, memory hog, output flood" *
          doctest::test_suite("rewards")) {
  const auto o = fast();
  const std::vector<test_case> one = {{"", "x\n"}};
  const auto spin = run_tests("while True:\n    pass\n", code_language::python, one, o);
  CHECK(spin.verdicts[0] == test_verdict::time_limit);
  const auto sleep = run_tests("import time\ntime.sleep(1000)\n", code_language::python, one, o);
  CHECK(sleep.verdicts[0] == test_verdict::time_limit);  // wall clock: no CPU used
  const auto hog =
      run_tests("x = bytearray(4 * 1024 ** 3)\nprint('x')\n", code_language::python, one, o);
  CHECK(hog.verdicts[0] == test_verdict::runtime_error);  // MemoryError under RLIMIT_AS
  const auto flood =
      run_tests("while True:\n    print('y' * 1000)\n", code_language::python, one, o);
  CHECK(flood.verdicts[0] == test_verdict::output_limit);
  const auto file = run_tests("f = open('big', 'w')\nwhile True:\n    f.write('z' * 65536)\n",
                              code_language::python, one, o);
  // RLIMIT_FSIZE: CPython ignores SIGXFSZ, so the write raises OSError(EFBIG) and exits 1
  CHECK(file.verdicts[0] == test_verdict::runtime_error);
}

TEST_CASE("code: fork bomb is bounded and its processes are gone afterwards" *
          doctest::test_suite("rewards")) {
  auto o = fast();
  o.run.max_processes = 8;
  // Tries to create 200 sleeping children; prints how many it got.
  const std::string bomb =
      "import os, time\nn = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n"
      "    except OSError:\n        continue\n    if pid == 0:\n        time.sleep(100)\n        "
      "os._exit(0)\n"
      "    n += 1\nprint(n)\n";
  const std::vector<test_case> want200 = {{"", "200\n"}};
  const auto r = run_tests(bomb, code_language::python, want200, o);
  CHECK(r.verdicts[0] != test_verdict::passed);  // RLIMIT_NPROC stopped it short of 200
  // The block is RLIMIT_NPROC's, not any failure: fork() fails with EAGAIN exactly when the
  // run's uid owns max_processes processes in its own namespace (the program + its children),
  // i.e. after limit - 1 children, and the stopping point moves one for one with the limit.
  const std::string count =
      "import os, time, errno\nn = 0\nerr = 'none'\nfor _ in range(200):\n    try:\n"
      "        pid = os.fork()\n    except OSError as e:\n"
      "        err = errno.errorcode.get(e.errno, str(e.errno))\n        break\n"
      "    if pid == 0:\n        time.sleep(100)\n        os._exit(0)\n    n += 1\n"
      "print(n, err, flush=True)\n";
  auto children_at = [&](long limit) {
    auto lim = o.run;
    lim.max_processes = limit;
    const auto res = run_sandboxed({"/usr/bin/python3", "-c", count}, "", "/tmp", lim, o);
    INFO("limit " << limit << ": status " << static_cast<int>(res.status) << " out '" << res.out
                  << "' err '" << res.err << "'");
    REQUIRE(res.status == run_status::exited_ok);
    long n = -1;
    char e[32] = {0};
    REQUIRE(std::sscanf(res.out.c_str(), "%ld %31s", &n, e) == 2);
    CHECK(std::string(e) == "EAGAIN");
    return n;
  };
  const long n8 = children_at(8), n13 = children_at(13);
  CHECK(n8 == 8 - 1);  // the program itself counts
  CHECK(n13 == 13 - 1);
  if (::geteuid() == 0) {
    CHECK(processes_of(o.sandbox_uid) == 0);  // the group kill reaped every child
  }
  // The sandbox still works right after.
  const auto ok =
      run_tests("print(int(input().split()[0]) + int(input().split()[0]) if False else 7)\n",
                code_language::python, {sum_tests.data(), 1}, o);
  CHECK(ok.pass_fraction == 1.0);
}

TEST_CASE("code: no network and a private, removed temp directory" *
          doctest::test_suite("rewards")) {
  const auto o = fast();
  const auto before = temp_dirs();
  const std::string net =
      "import socket\ntry:\n    s = socket.create_connection(('1.1.1.1', 53), timeout=1)\n    "
      "print('net')\n"
      "except OSError:\n    print('nonet')\n";
  const std::vector<test_case> t = {{"", "nonet\n"}};
  const auto r = run_tests(net, code_language::python, t, o);
  CHECK(r.network_isolated);
  CHECK(r.verdicts[0] == test_verdict::passed);
  // cwd is a private directory the program can write to
  const auto w = run_tests("open('f.txt','w').write('hi')\nprint(open('f.txt').read())\n",
                           code_language::python, {{{"", "hi\n"}}}, o);
  CHECK(w.pass_fraction == 1.0);
  CHECK(temp_dirs() == before);
  // stdin larger than a pipe buffer is delivered whole
  std::string big(1 << 20, 'q');
  const auto in = run_tests("import sys\nprint(len(sys.stdin.read()))\n", code_language::python,
                            {{{big, std::to_string(big.size()) + "\n"}}}, o);
  CHECK(in.pass_fraction == 1.0);
}

TEST_CASE("code: C++ programs compile once and run against the tests" *
          doctest::test_suite("rewards")) {
  const auto o = fast();
  const auto before = temp_dirs();
  const auto pass =
      run_tests("#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b<<'\\n';}\n",
                code_language::cpp, sum_tests, o);
  CHECK(pass.pass_fraction == 1.0);
  const auto wrong =
      run_tests("#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a-b<<'\\n';}\n",
                code_language::cpp, sum_tests, o);
  CHECK(wrong.pass_fraction == doctest::Approx(1.0 / 3.0));  // only 0 0 -> 0
  const auto bad = run_tests("int main( {", code_language::cpp, sum_tests, o);
  CHECK(bad.pass_fraction == 0.0);
  for (auto v : bad.verdicts) CHECK(v == test_verdict::compile_error);
  CHECK(bad.compile_log.find("error") != std::string::npos);
  CHECK(temp_dirs() == before);
}

TEST_CASE("code: C++ crash, infinite loop, memory hog, output flood, fork bomb" *
          doctest::test_suite("rewards")) {
  auto o = fast();
  o.run.max_processes = 8;
  const std::vector<test_case> one = {{"", "x\n"}};
  // One program, behaviour chosen by stdin, so the test compiles once.
  const std::string prog = R"CPP(
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <unistd.h>
    int main() {
      char m[16] = {0};
      if (std::scanf("%15s", m) != 1) return 2;
      if (!std::strcmp(m, "segv")) {
        volatile int* p = nullptr;
        *p = 1;
      }
      if (!std::strcmp(m, "spin")) {
        volatile unsigned long x = 0;
        for (;;) ++x;
      }
      if (!std::strcmp(m, "hog")) {
        std::vector<char> v(std::size_t(8) << 30, 1);
        std::printf("%d\n", v[5]);
      }
      if (!std::strcmp(m, "flood")) {
        for (;;) std::fputs("yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n", stdout);
      }
      if (!std::strcmp(m, "fork")) {
        int n = 0;
        for (int i = 0; i < 200; ++i) {
          pid_t p = fork();
          if (p == 0) {
            sleep(100);
            _exit(0);
          }
          if (p > 0) ++n;
        }
        std::printf("%d\n", n);
        return 0;
      }
      if (!std::strcmp(m, "file")) {
        FILE* f = std::fopen("big", "w");
        for (;;) std::fputs("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\n", f);
      }
      if (!std::strcmp(m, "ok")) {
        std::puts("x");
        return 0;
      }
      return 1;
    }
  )CPP";
  const std::vector<test_case> tests = {{"ok", "x\n"},  {"segv", "x\n"},  {"spin", "x\n"},
                                        {"hog", "x\n"}, {"flood", "x\n"}, {"fork", "7\n"},
                                        {"file", "x\n"}};
  const auto r = run_tests(prog, code_language::cpp, tests, o);
  REQUIRE(r.verdicts.size() == tests.size());
  CHECK(r.verdicts[0] == test_verdict::passed);
  CHECK(r.verdicts[1] == test_verdict::crashed);
  CHECK(r.verdicts[2] == test_verdict::time_limit);
  CHECK(r.verdicts[3] == test_verdict::crashed);  // std::bad_alloc -> terminate -> SIGABRT
  CHECK(r.verdicts[4] == test_verdict::output_limit);
  CHECK(r.verdicts[5] == test_verdict::passed);  // max_processes 8: exactly 7 children, not 200
  CHECK(r.verdicts[6] == test_verdict::output_limit);  // RLIMIT_FSIZE -> SIGXFSZ
  CHECK(r.pass_fraction == doctest::Approx(2.0 / 7.0));
  if (::geteuid() == 0) {
    CHECK(processes_of(o.sandbox_uid) == 0);
  }
}

TEST_CASE("code: reward from a completion, stop at first failure, errors" *
          doctest::test_suite("rewards")) {
  const auto o = fast();
  const std::string completion =
      "<think>\nsum two ints\n</think>\n<answer>\n```python\nprint(sum(map(int, "
      "input().split())))\n```\n</answer>";
  CHECK(code_reward(completion, code_language::python, sum_tests, o) == 1.0);
  CHECK(binary_code_reward(completion, code_language::python, sum_tests, o) == 1.0);
  CHECK(code_reward("no code here", code_language::python, sum_tests, o) == 0.0);
  CHECK(code_reward(completion, code_language::cpp, sum_tests, o) == 0.0);  // no ```cpp block
  auto stop = o;
  stop.stop_at_first_failure = true;
  const auto r = run_tests("print(1)\n", code_language::python, sum_tests, stop);
  CHECK(r.verdicts[0] == test_verdict::wrong_answer);
  CHECK(r.verdicts[1] == test_verdict::skipped);
  CHECK(r.verdicts[2] == test_verdict::skipped);
  CHECK_THROWS_WITH_AS(run_tests("x", code_language::python, {}, o),
                       doctest::Contains("[grpo.bad_value]"), grpo::error);
  auto missing = o;
  missing.python = "no-such-python-interpreter";
  const auto m = run_tests("print(1)", code_language::python, sum_tests, missing);
  CHECK(m.pass_fraction == 0.0);
  CHECK(m.verdicts[0] == test_verdict::sandbox_error);
}

TEST_CASE("code: sandbox limits are validated (named errors, no float-to-int UB)" *
          doctest::test_suite("rewards")) {
  const std::vector<test_case> one = {{"", "1\n"}};
  const auto rejects = [&](auto&& edit) {
    auto o = fast();
    edit(o);
    CHECK_THROWS_WITH_AS(run_tests("print(1)\n", code_language::python, one, o),
                         doctest::Contains("[grpo.bad_option]"), grpo::error);
  };
  rejects([](code_exec_options& o) { o.run.cpu_seconds = 1e30; });   // rlim_t overflow
  rejects([](code_exec_options& o) { o.run.wall_seconds = 1e30; });  // chrono overflow
  rejects([](code_exec_options& o) { o.run.wall_seconds = std::nan(""); });
  rejects([](code_exec_options& o) { o.run.cpu_seconds = 0; });
  rejects([](code_exec_options& o) { o.run.cpu_seconds = -1; });
  rejects([](code_exec_options& o) { o.compile.wall_seconds = INFINITY; });
  rejects([](code_exec_options& o) { o.run.max_processes = -5; });  // used to remove the limit
  rejects([](code_exec_options& o) { o.run.max_open_files = -1; });
  rejects([](code_exec_options& o) { o.sandbox_uid = 0; });  // the program would be host root
#ifdef GRPO_REWARDS_SANDBOX  // fields of the namespace sandbox
  rejects([](code_exec_options& o) { o.run.disk_bytes = 0; });
  rejects([](code_exec_options& o) { o.extra_ro_binds = {"relative/path"}; });
  rejects([](code_exec_options& o) { o.extra_ro_binds = {"/tmp/x"}; });  // hidden by /tmp
#endif
  // run_sandboxed validates the limits it is given, too
  auto o = fast();
  auto lim = o.run;
  lim.cpu_seconds = 1e30;
  CHECK_THROWS_WITH_AS(run_sandboxed({"/bin/true"}, "", "/tmp", lim, o),
                       doctest::Contains("[grpo.bad_option]"), grpo::error);
  // the edges that are allowed still run
  o.run.max_processes = 0;  // no limit of ours
  o.run.cpu_seconds = 0.5;  // rounded up to 1 s
  CHECK(run_tests("print(1)\n", code_language::python, one, o).pass_fraction == 1.0);
}

TEST_CASE("code: a kernel that refuses a namespace fails closed with a named error" *
          doctest::test_suite("rewards")) {
  // A child process installs a seccomp filter that makes clone(CLONE_NEWUSER) fail with EPERM
  // (what user namespaces disabled by sysctl or a container's policy look like), then scores.
  int p[2];
  REQUIRE(::pipe(p) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(p[0]);
    sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof f / sizeof f[0]), f};
    std::string msg = "no-filter";
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
        ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0) {
      try {
        const auto r = run_tests("print(7)\n", code_language::python, {sum_tests.data(), 1}, fast());
        msg = "ran:" + std::to_string(r.pass_fraction);
      } catch (const grpo::error& e) {
        msg = e.what();
        if (e.code() != grpo::errc::sandbox_unavailable) msg += " (wrong errc)";
      }
    }
    [[maybe_unused]] const auto w = ::write(p[1], msg.data(), msg.size());
    ::_exit(0);
  }
  ::close(p[1]);
  std::string msg;
  char buf[512];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) msg.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  ::waitpid(pid, nullptr, 0);
  CHECK(msg.find("[grpo.sandbox_unavailable]") != std::string::npos);
  CHECK(msg.find("clone") != std::string::npos);  // names the refused step
  CHECK(msg.find("(wrong errc)") == std::string::npos);
  // run_sandboxed reports it in the result instead of throwing
  CHECK(msg.find("ran:") == std::string::npos);
}
