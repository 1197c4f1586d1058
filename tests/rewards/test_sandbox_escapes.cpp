// SPDX-License-Identifier: Apache-2.0
// Adversarial suite of the code sandbox (issue 13): each escape a hostile completion can try, run
// as a root scorer AND as an unprivileged scorer (a forked child that switched to a test uid),
// asserting that it is blocked, that the host files it targeted are unchanged, that the scorer
// survived, and that no process of the run is left (a scan of /proc for the run's uid). Every
// program bounds its own loops in count and time; nothing leaves loopback (no network at all).
// Each test uses its own host uid, so runs of other suites (and other users of the machine)
// never disturb the process scans.
#include <rewards/code_exec.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace grpo::rewards;
namespace fs = std::filesystem;

namespace {
const std::vector<test_case> sum_tests = {{"3 4\n", "7\n"}, {"10 -2\n", "8\n"}, {"0 0\n", "0\n"}};

// A unique host uid per (test, caller mode), far from system and login ranges.
unsigned test_uid(int test, bool unpriv) {
  return 40000U + static_cast<unsigned>(::getpid() % 1000) * 40U + static_cast<unsigned>(test) * 2U +
         (unpriv ? 1U : 0U);
}

std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}
void write_file(const std::string& p, const std::string& data, unsigned mode, unsigned uid) {
  std::ofstream(p, std::ios::binary) << data;
  ::chmod(p.c_str(), mode);
  [[maybe_unused]] const int r = ::chown(p.c_str(), uid, uid);
}

// A host directory of the test (mode 0755), removed with its contents.
struct host_dir {
  std::string path;
  explicit host_dir(const char* root = "/tmp") {
    std::string t = std::string(root) + "/grpo-h13t-XXXXXX";
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
    ::chmod(path.c_str(), 0755);
  }
  ~host_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  [[nodiscard]] std::string operator/(const std::string& n) const { return path + "/" + n; }
};

// Processes whose real uid is `uid` (from /proc/<pid>/status).
int processes_now(unsigned uid) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream st(e.path() / "status");
    std::string line;
    while (std::getline(st, line))
      if (line.rfind("Uid:", 0) == 0) {
        if (std::stoul(line.substr(4)) == uid) ++n;
        break;
      }
  }
  return n;
}
// Killed processes may stay visible for a moment: wait up to 3 s for zero.
int processes_left(unsigned uid) {
  int n = processes_now(uid);
  for (int i = 0; i < 30 && n != 0; ++i) {
    ::usleep(100000);
    n = processes_now(uid);
  }
  return n;
}

// Options for a run whose program runs as host uid `uid` when the scorer is root.
code_exec_options opts(unsigned uid) {
  code_exec_options o;
  o.run.cpu_seconds = 2;
  o.run.wall_seconds = 6;
  o.run.max_processes = 64;
  o.sandbox_uid = uid;
  o.sandbox_gid = uid;
  return o;
}

// What a scorer reports back from its child process: "key=value" lines.
using report = std::map<std::string, std::string>;
std::string encode(const report& r) {
  std::string s;
  for (const auto& [k, v] : r) {
    std::string val = v;
    for (char& ch : val)
      if (ch == '\n' || ch == '\r') ch = '|';
    s += k + "=" + val + "\n";
  }
  return s;
}

struct caller_outcome {
  bool survived = false;  // the scorer process exited normally (was not killed by the program)
  report r;
};

// Runs `scorer` in a forked child: as root (unpriv = false) or after dropping to `uid` with no
// supplementary groups (unpriv = true). Returns the child's report and whether it survived.
caller_outcome as_caller(bool unpriv, unsigned uid, const std::function<report()>& scorer) {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(p[0]);
    report r;
    if (unpriv && (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
                   ::setresuid(uid, uid, uid) != 0)) {
      r["error"] = "could not switch to the test uid";
    } else {
      try {
        r = scorer();
      } catch (const std::exception& e) {
        r["error"] = e.what();
      }
    }
    const std::string s = encode(r);
    [[maybe_unused]] const auto w = ::write(p[1], s.data(), s.size());
    ::_exit(0);
  }
  ::close(p[1]);
  std::string s;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n <= 0) break;
    s.append(buf, static_cast<std::size_t>(n));
  }
  ::close(p[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  caller_outcome out;
  out.survived = WIFEXITED(st) && WEXITSTATUS(st) == 0;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out.r[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

std::string run_py(const std::string& code, const code_exec_options& o, const std::string& in = "") {
  const std::string py = detail::resolve_program(o.python, o.search_path);
  const run_result r = run_sandboxed({py, "-I", "-c", code}, in, "/tmp", o.run, o);
  return r.out + (r.status == run_status::spawn_error ? "SPAWN:" + r.err : "");
}

// Python source for a daemon: fork, setsid (or setpgid), fork again, sleep `secs`.
std::string daemon_py(const char* detach, int secs) {
  return "import os, time\n"
         "if os.fork() == 0:\n"
         "    os." +
         std::string(detach) +
         "\n"
         "    if os.fork() == 0:\n"
         "        time.sleep(" +
         std::to_string(secs) +
         ")\n"
         "    os._exit(0)\n";
}

constexpr bool modes[] = {false, true};  // root scorer, unprivileged scorer
// The suite switches to test uids and creates a setuid-root binary: it needs root, and reports
// itself as skipped otherwise.
const auto root_only = doctest::skip(::geteuid() != 0);
}  // namespace

TEST_CASE("sandbox escape: an inotify daemon cannot redirect the next completions' files" *
          doctest::test_suite("rewards") * root_only) {
  for (const bool unpriv : modes) {
    CAPTURE(unpriv);
    const unsigned uid = test_uid(1, unpriv);
    host_dir dir, troot;
    const std::string target = dir / "target";
    write_file(target, "ORIGINAL\n", 0644, uid);
    ::chown(troot.path.c_str(), uid, uid);
    // Completion 1 leaves a daemon (double fork + setsid) that watches the temp root(s) with
    // inotify and, for 6 s, plants main.py / main.cpp -> target in every new directory and
    // replaces every compiled `prog` by a script that prints the right answer.
    const std::string daemon =
        "import os, time, ctypes, select\n"
        "T = '" + target + "'\n"
        "roots = ['" + troot.path + "', os.path.dirname(os.getcwd())]\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        libc = ctypes.CDLL(None, use_errno=True)\n"
        "        fd = libc.inotify_init1(os.O_NONBLOCK)\n"
        "        for r in roots:\n"
        "            libc.inotify_add_watch(fd, r.encode(), 0x100 | 0x80)\n"
        "        cheat = '#!/usr/bin/python3\\nprint(sum(map(int, input().split())))\\n'\n"
        "        end = time.time() + 6\n"
        "        while time.time() < end:\n"
        "            select.select([fd], [], [], 0.005)\n"
        "            try: os.read(fd, 65536)\n"
        "            except OSError: pass\n"
        "            for r in roots:\n"
        "                try: names = os.listdir(r)\n"
        "                except OSError: continue\n"
        "                for n in names:\n"
        "                    d = os.path.join(r, n)\n"
        "                    for f in ('main.py', 'main.cpp'):\n"
        "                        try: os.symlink(T, os.path.join(d, f))\n"
        "                        except OSError: pass\n"
        "                    p = os.path.join(d, 'prog')\n"
        "                    try:\n"
        "                        if os.path.exists(p) and open(p, 'rb').read(2) != b'#!':\n"
        "                            open(p + '.x', 'w').write(cheat)\n"
        "                            os.chmod(p + '.x', 0o755)\n"
        "                            os.rename(p + '.x', p)\n"
        "                    except OSError: pass\n"
        "    os._exit(0)\n"
        "print('x')\n";
    auto out = as_caller(unpriv, uid, [&] {
      auto o = opts(uid);
      o.temp_root = troot.path;  // the old sandbox's per-run directories went here
      report r;
      r["first"] = std::to_string(
          run_tests(daemon, code_language::python, {{{"", "x\n"}}}, o).pass_fraction);
      ::usleep(300000);
      // Completion 2: a wrong C++ program (a - b) passes only "0 0".
      const auto wrong = run_tests(
          "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a-b<<'\\n';}\n",
          code_language::cpp, sum_tests, o);
      r["wrong"] = std::to_string(wrong.passed);
      // Completion 3 and 4: their sources must not land in the target.
      for (int i = 0; i < 2; ++i)
        run_tests("print('PWNED')\n", code_language::python, {{{"", "x\n"}}}, o);
      return r;
    });
    CHECK(out.survived);
    CHECK(out.r["error"] == "");
    CHECK(out.r["first"] == "1.000000");
    CHECK(out.r["wrong"] == "1");                   // the cheat script never replaced the binary
    CHECK(read_file(target) == "ORIGINAL\n");        // the scorer never wrote through a link
    CHECK(processes_left(uid) == 0);                 // the daemon died with its run
    CHECK(fs::is_empty(troot.path));                 // nothing under the host temp root
  }
}

TEST_CASE("sandbox escape: setsid and setpgid daemons die with the run" *
          doctest::test_suite("rewards") * root_only) {
  for (const bool unpriv : modes) {
    CAPTURE(unpriv);
    const unsigned uid = test_uid(2, unpriv);
    auto out = as_caller(unpriv, uid, [&] {
      report r;
      const auto o = opts(uid);
      r["setsid"] = run_py(daemon_py("setsid()", 20) + "print('ok')\n", o);
      r["setpgid"] = run_py(daemon_py("setpgid(0, 0)", 20) + "print('ok')\n", o);
      // the program itself outlives the wall clock: the deadline kill takes the daemon too
      auto slow = o;
      slow.run.wall_seconds = 1;
      const auto t = run_tests(daemon_py("setsid()", 20) + "import time\ntime.sleep(30)\n",
                               code_language::python, {{{"", "x\n"}}}, slow);
      r["deadline"] = std::to_string(static_cast<int>(t.verdicts[0]));
      return r;
    });
    CHECK(out.survived);
    CHECK(out.r["setsid"] == "ok|");
    CHECK(out.r["setpgid"] == "ok|");
    CHECK(out.r["deadline"] == std::to_string(static_cast<int>(test_verdict::time_limit)));
    CHECK(processes_left(uid) == 0);
  }
}

TEST_CASE("sandbox escape: kill(getppid()) and kill(-1) cannot reach the scorer" *
          doctest::test_suite("rewards") * root_only) {
  for (const bool unpriv : modes) {
    CAPTURE(unpriv);
    const unsigned uid = test_uid(3, unpriv);
    auto out = as_caller(unpriv, uid, [&] {
      report r;
      r["out"] = run_py(
          "import os, signal\n"
          "for pid in (os.getppid(), -1):\n"
          "    try: os.kill(pid, signal.SIGKILL)\n"
          "    except OSError: pass\n"
          "print('alive')\n",
          opts(uid));
      r["after"] = "reached";  // the scorer is still running here
      return r;
    });
    CHECK(out.survived);
    CHECK(out.r["after"] == "reached");
    CHECK(out.r["out"] == "alive|");
    CHECK(processes_left(uid) == 0);
  }
}

TEST_CASE("sandbox escape: host Unix sockets (filesystem and abstract) are unreachable" *
          doctest::test_suite("rewards") * root_only) {
  for (const bool unpriv : modes) {
    CAPTURE(unpriv);
    const unsigned uid = test_uid(4, unpriv);
    host_dir dir;
    const std::string path = dir / "sock";
    const std::string abstract = "grpo-h13-" + std::to_string(::getpid()) + (unpriv ? "u" : "r");
    int lfs = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int labs = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    REQUIRE(::bind(lfs, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    ::chmod(path.c_str(), 0777);
    sockaddr_un b{};
    b.sun_family = AF_UNIX;
    std::memcpy(b.sun_path + 1, abstract.data(), abstract.size());
    const auto blen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + abstract.size());
    REQUIRE(::bind(labs, reinterpret_cast<sockaddr*>(&b), blen) == 0);
    REQUIRE(::listen(lfs, 8) == 0);
    REQUIRE(::listen(labs, 8) == 0);
    auto out = as_caller(unpriv, uid, [&] {
      report r;
      r["out"] = run_py(
          "import socket\n"
          "res = []\n"
          "for addr in ('" + path + "', '\\0" + abstract + "'):\n"
          "    s = socket.socket(socket.AF_UNIX)\n"
          "    s.settimeout(1)\n"
          "    try:\n"
          "        s.connect(addr); s.send(b'hi'); res.append('connected')\n"
          "    except OSError: res.append('blocked')\n"
          "print(' '.join(res))\n",
          opts(uid));
      return r;
    });
    CHECK(out.survived);
    CHECK(out.r["out"] == "blocked blocked|");
    CHECK(::accept(lfs, nullptr, nullptr) < 0);  // nobody connected
    CHECK(::accept(labs, nullptr, nullptr) < 0);
    ::close(lfs);
    ::close(labs);
    CHECK(processes_left(uid) == 0);
  }
}

TEST_CASE("sandbox escape: writes to /tmp, /var/tmp, /dev/shm and the caller's files stay "
          "inside; the disk quota is total" *
          doctest::test_suite("rewards") * root_only) {
  for (const bool unpriv : modes) {
    CAPTURE(unpriv);
    const unsigned uid = test_uid(5, unpriv);
    host_dir dir, troot;
    ::chown(troot.path.c_str(), uid, uid);
    const std::string mine = dir / "callers_file";
    write_file(mine, "MINE\n", 0644, uid);
    const std::string tag = "grpo-h13-escape-" + std::to_string(::getpid()) + (unpriv ? "u" : "r");
    const std::vector<std::string> outside = {"/tmp/" + tag, "/var/tmp/" + tag, "/dev/shm/" + tag};
    auto out = as_caller(unpriv, uid, [&] {
      auto o = opts(uid);
      o.temp_root = troot.path;
      report r;
      std::string code = "import os\nn = 0\n";
      for (const auto& p : outside)
        code += "try:\n    open('" + p + "', 'w').write('x'); n += 1\nexcept OSError: pass\n";
      code += "try:\n    open('" + mine + "', 'w').write('PWNED')\nexcept OSError: pass\n";
      // a directory the scorer cannot remove (the old sandbox's cleanup failed on it)
      code += "os.makedirs('d/e', exist_ok=True)\nopen('d/e/f', 'w').write('x')\n"
              "os.chmod('d/e', 0)\nos.chmod('d', 0)\n";
      run_tests(code, code_language::python, {{{"", "x\n"}}}, o);
      // 64 files of 1 MiB against the 16 MiB quota of the private /tmp (the cwd)
      const std::string quota =
          "total = 0\nfor i in range(64):\n    try:\n"
          "        with open('f%d' % i, 'wb') as f: f.write(b'z' * (1 << 20))\n"
          "        total += 1 << 20\n    except OSError: break\n"
          "print(total)\n";
#ifdef GRPO_REWARDS_SANDBOX
      const std::string cwd = "/tmp";
#else
      const std::string cwd = troot.path;  // the old sandbox ran in a host directory
#endif
      const std::string py = detail::resolve_program(o.python, o.search_path);
      r["total"] = run_sandboxed({py, "-I", "-c", quota}, "", cwd, o.run, o).out;
      return r;
    });
    CHECK(out.survived);
    for (const auto& p : outside) {
      CHECK_MESSAGE(!fs::exists(p), p);
      std::error_code ec;
      fs::remove(p, ec);
    }
    CHECK(read_file(mine) == "MINE\n");
    const std::string total = out.r["total"];
    REQUIRE(total.size() > 1);
    CHECK(std::stoll(total) <= (16LL << 20));  // quota of the private /tmp (default disk_bytes)
    CHECK(fs::is_empty(troot.path));
    CHECK(processes_left(uid) == 0);
  }
}

TEST_CASE("sandbox escape: host files are not readable, not even through #include" *
          doctest::test_suite("rewards") * root_only) {
  for (const bool unpriv : modes) {
    CAPTURE(unpriv);
    const unsigned uid = test_uid(6, unpriv);
    host_dir dir;
    std::mt19937_64 rng(std::random_device{}());
    const std::string token = "GRPO_SECRET_" + std::to_string(rng());
    const std::string secret = dir / "secret.h";
    write_file(secret, token + " ;\n", 0644, 0);
    auto out = as_caller(unpriv, uid, [&] {
      report r;
      const auto o = opts(uid);
      r["py"] = run_py(
          "for p in ('" + secret + "', '/etc/passwd', '/etc/hostname'):\n"
          "    try: print(open(p).read())\n"
          "    except OSError as e: print('denied', e.errno)\n",
          o);
      const auto c = run_tests("#include \"" + secret + "\"\nint main() {}\n", code_language::cpp,
                               sum_tests, o);
      r["log"] = c.compile_log;
      // init is a copy of the scorer: its /proc/1/cmdline would show the scorer's command line.
      r["init"] = run_py(
          "try: print(open('/proc/1/cmdline', 'rb').read().replace(b'\\0', b'').decode() or "
          "'empty')\nexcept OSError: print('hidden')\n",
          o);
      r["verdict"] = std::to_string(static_cast<int>(c.verdicts[0]));
      return r;
    });
    CHECK(out.survived);
    CHECK(out.r["py"] == "denied 2|denied 2|denied 2|");  // ENOENT: not in the sandbox's root
    CHECK(out.r["log"].find(token) == std::string::npos);
    CHECK(out.r["log"].find("No such file") != std::string::npos);
    CHECK(out.r["verdict"] == std::to_string(static_cast<int>(test_verdict::compile_error)));
    // hidepid=2 hides what the program may not ptrace-read: init holds capabilities it lacks
    CHECK(out.r["init"] == "hidden|");
    CHECK(processes_left(uid) == 0);
  }
}

TEST_CASE("sandbox escape: a fork bomb of setsid children is bounded and leaves nothing" *
          doctest::test_suite("rewards") * root_only) {
  for (const bool unpriv : modes) {
    CAPTURE(unpriv);
    const unsigned uid = test_uid(7, unpriv);
    auto out = as_caller(unpriv, uid, [&] {
      auto o = opts(uid);
      o.run.max_processes = 128;
      report r;
      r["n"] = run_py(
          "import os, time\nn = 0\nend = time.time() + 3\n"
          "for _ in range(1000):\n"
          "    if time.time() > end: break\n"
          "    try: pid = os.fork()\n"
          "    except OSError: continue\n"
          "    if pid == 0:\n"
          "        os.setsid()\n"
          "        time.sleep(20)\n"
          "        os._exit(0)\n"
          "    n += 1\n"
          "print(n)\n",
          o);
      return r;
    });
    CHECK(out.survived);
    const std::string n = out.r["n"];
    REQUIRE(!n.empty());
    CHECK(std::stoi(n) < 128);
    CHECK(std::stoi(n) > 10);  // the bound, not an earlier failure, stopped it
    CHECK(processes_left(uid) == 0);
  }
}

TEST_CASE("sandbox escape: 1 GB of output is cut at the cap without buffering it" *
          doctest::test_suite("rewards") * root_only) {
  for (const bool unpriv : modes) {
    CAPTURE(unpriv);
    const unsigned uid = test_uid(8, unpriv);
    auto out = as_caller(unpriv, uid, [&] {
      auto o = opts(uid);
      o.run.wall_seconds = 20;
      o.run.cpu_seconds = 20;
      report r;
      const std::string py = detail::resolve_program(o.python, o.search_path);
      const auto t0 = std::chrono::steady_clock::now();
      const run_result res = run_sandboxed(
          {py, "-I", "-c",
           "import sys\nb = b'y' * (1 << 20)\nfor _ in range(1024): sys.stdout.buffer.write(b)\n"},
          "", "/tmp", o.run, o);
      r["size"] = std::to_string(res.out.size());
      r["status"] = std::to_string(static_cast<int>(res.status));
      r["ok_bytes"] = res.out.find_first_not_of('y') == std::string::npos ? "1" : "0";
      r["secs"] = std::to_string(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      return r;
    });
    CHECK(out.survived);
    CHECK(out.r["size"] == std::to_string(std::size_t{1} << 20));  // exactly the cap
    CHECK(out.r["status"] == std::to_string(static_cast<int>(run_status::output_limit)));
    CHECK(out.r["ok_bytes"] == "1");
    CHECK(std::stod(out.r["secs"]) < 10.0);
    CHECK(processes_left(uid) == 0);
  }
}

TEST_CASE("sandbox escape: raising rlimits fails" * doctest::test_suite("rewards") * root_only) {
  for (const bool unpriv : modes) {
    CAPTURE(unpriv);
    const unsigned uid = test_uid(9, unpriv);
    auto out = as_caller(unpriv, uid, [&] {
      report r;
      r["out"] = run_py(
          "import resource as R\nraised = []\n"
          "for name in ('RLIMIT_CPU', 'RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_NPROC', "
          "'RLIMIT_NOFILE', 'RLIMIT_CORE'):\n"
          "    k = getattr(R, name)\n"
          "    soft, hard = R.getrlimit(k)\n"
          "    try:\n"
          "        R.setrlimit(k, (R.RLIM_INFINITY, R.RLIM_INFINITY)); raised.append(name)\n"
          "    except (ValueError, OSError): pass\n"
          "print('raised:' + ','.join(raised))\n",
          opts(uid));
      return r;
    });
    CHECK(out.survived);
    CHECK(out.r["out"] == "raised:|");
    CHECK(processes_left(uid) == 0);
  }
}

TEST_CASE("sandbox escape: a setuid-root binary does not raise privileges" *
          doctest::test_suite("rewards") * root_only) {
  REQUIRE(::geteuid() == 0);  // creating a setuid-root binary needs root
  host_dir dir("/var/tmp");   // bound read-only into the sandbox (not under its own /tmp)
  const std::string suid = dir / "pysuid";
  fs::copy_file(fs::canonical("/usr/bin/python3"), suid);
  REQUIRE(::chown(suid.c_str(), 0, 0) == 0);
  REQUIRE(::chmod(suid.c_str(), 04755) == 0);
  for (const bool unpriv : modes) {
    CAPTURE(unpriv);
    const unsigned uid = test_uid(10, unpriv);
    auto out = as_caller(unpriv, uid, [&] {
      auto o = opts(uid);
#ifdef GRPO_REWARDS_SANDBOX
      o.extra_ro_binds = {dir.path};
#endif
      report r;
      r["out"] = run_py(
          "import subprocess\n"
          "p = subprocess.run(['" + suid + "', '-I', '-c', 'import os; print(os.geteuid())'],"
          " capture_output=True, text=True)\n"
          "print(p.stdout.strip() or p.stderr.strip()[-80:])\n",
          o);
      return r;
    });
    CHECK(out.survived);
    CHECK(out.r["out"] == "65534|");  // the sandbox uid, not 0
    CHECK(processes_left(uid) == 0);
  }
}

TEST_CASE("sandbox escape: ptrace, mount and new namespaces are refused" *
          doctest::test_suite("rewards") * root_only) {
  for (const bool unpriv : modes) {
    CAPTURE(unpriv);
    const unsigned uid = test_uid(11, unpriv);
    auto out = as_caller(unpriv, uid, [&] {
      report r;
      r["out"] = run_py(
          "import ctypes, os, time, signal\n"
          "libc = ctypes.CDLL(None, use_errno=True)\n"
          "pid = os.fork()\n"
          "if pid == 0:\n"
          "    time.sleep(5); os._exit(0)\n"
          "a = libc.ptrace(16, pid, 0, 0)\n"  // PTRACE_ATTACH
          "os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)\n"
          "u = libc.unshare(0x10000000 | 0x00020000)\n"  // CLONE_NEWUSER | CLONE_NEWNS
          "m = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)\n"
          "print(a, u, m)\n",
          opts(uid));
      return r;
    });
    CHECK(out.survived);
    CHECK(out.r["out"] == "-1 -1 -1|");
    CHECK(processes_left(uid) == 0);
  }
}

TEST_CASE("sandbox: correct and wrong programs still score right as an unprivileged scorer" *
          doctest::test_suite("rewards") * root_only) {
  const unsigned uid = test_uid(12, true);
  auto out = as_caller(true, uid, [&] {
    report r;
    const auto o = opts(uid);
    r["py_ok"] = std::to_string(run_tests("a, b = map(int, input().split())\nprint(a + b)\n",
                                          code_language::python, sum_tests, o)
                                    .passed);
    r["py_bad"] = std::to_string(run_tests("a, b = map(int, input().split())\nprint(a * b)\n",
                                           code_language::python, sum_tests, o)
                                     .passed);
    r["cpp_ok"] = std::to_string(
        run_tests("#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b;}\n",
                  code_language::cpp, sum_tests, o)
            .passed);
    return r;
  });
  CHECK(out.survived);
  CHECK(out.r["error"] == "");
  CHECK(out.r["py_ok"] == "3");
  CHECK(out.r["py_bad"] == "1");  // 0 * 0 == 0 + 0
  CHECK(out.r["cpp_ok"] == "3");
  CHECK(processes_left(uid) == 0);
}
