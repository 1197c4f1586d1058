# SPDX-License-Identifier: Apache-2.0
"""grpo.rewards code execution: programs run in the sandbox of include/rewards/sandbox/ against
stdin / stdout tests. A correct, a wrong, a crashing, a timed-out and a hostile program; C++; the
batch scorer (GIL released, concurrent sandboxes); the TRL / verl adapters; the grpo-reward CLI on
the same rows; bad inputs. Skipped with a reason only where the kernel refuses the namespaces."""
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

import grpo
from grpo import rewards as rw
from conftest import reward_cli


def fence(code, lang="python"):
    return f"Here is my solution.\n```{lang}\n{code}\n```\nDone."


ADD = "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))"
ADD_TESTS = [("1 2", "3"), ("10 -4", "6"), ("0 0 0", "0")]


@pytest.fixture(scope="module")
def sandbox():
    """Skips the module where the kernel refuses the sandbox's namespaces (fail-closed error)."""
    try:
        r = rw.run_tests("print(7)", [("", "7")])
    except grpo.GrpoError as e:
        if grpo.error_id(e) == "sandbox_unavailable":
            pytest.skip(f"the kernel refuses the code sandbox here: {e}")
        raise
    assert r.verdicts == ["passed"], r
    return True


def test_correct_program(sandbox):
    r = rw.run_tests(ADD, ADD_TESTS)
    assert r == rw.CodeResult(1.0, 3, ["passed"] * 3, "", True)
    assert rw.code_reward(fence(ADD), ADD_TESTS) == 1.0
    assert rw.binary_code_reward(fence(ADD), [{"input": "2 2", "output": "4"}]) == 1.0
    # open-r1 verification_info and the APPS / PRIME JSON form read the same tests
    vi = {"language": "python", "test_cases": [{"input": "1 2", "output": "3", "type": "stdin"}]}
    assert rw.code_reward(fence(ADD), vi) == 1.0
    prime = json.dumps({"inputs": ["4 5\n", "1 1\n"], "outputs": ["9\n", "2\n"]})
    assert rw.code_reward(fence(ADD), prime) == 1.0


def test_wrong_and_failing_programs(sandbox):
    wrong = "print(int(input().split()[0]) * 2)"  # right only when a = b
    r = rw.run_tests(wrong, [("2 2", "4"), ("1 2", "3"), ("5 1", "6")])
    assert r.verdicts == ["passed", "wrong_answer", "wrong_answer"]
    assert r.pass_fraction == pytest.approx(1 / 3) and r.passed == 1
    assert rw.code_reward(fence(wrong), [("2 2", "4"), ("1 2", "3")]) == 0.5
    assert rw.binary_code_reward(fence(wrong), [("2 2", "4"), ("1 2", "3")]) == 0.0
    assert rw.run_tests("import sys\nsys.exit(3)", [("", "")]).verdicts == ["runtime_error"]
    assert rw.run_tests("import os\nos.abort()", [("", "")]).verdicts == ["crashed"]
    assert rw.run_tests("def f(:\n", [("", "")]).verdicts == ["runtime_error"]
    # no ```python block: 0, the program is not run
    assert rw.code_reward("print(3)", [("", "3")]) == 0.0
    assert rw.code_reward(fence("print(3)", "cpp"), [("", "3")]) == 0.0
    # stop_at_first_failure skips the rest
    r = rw.run_tests("print(1)", [("", "2"), ("", "1")], stop_at_first_failure=True)
    assert r.verdicts == ["wrong_answer", "skipped"] and r.pass_fraction == 0.0


def test_output_matching_policies(sandbox):
    prog = "print('1  2 ')\nprint()\n"
    assert rw.run_tests(prog, [("", "1  2")]).passed == 1  # trim_lines (default)
    assert rw.run_tests(prog, [("", "1 2")]).passed == 0
    assert rw.run_tests(prog, [("", "1 2")], match="tokens").passed == 1
    assert rw.run_tests(prog, [("", "1  2")], match="exact").passed == 0
    assert rw.run_tests(prog, [("", "1  2 \n\n")], match="exact").passed == 1


def test_timeouts(sandbox):
    t0 = time.monotonic()
    r = rw.run_tests("while True:\n    pass", [("", "")], run_cpu_seconds=1, run_wall_seconds=3)
    assert r.verdicts == ["time_limit"] and r.pass_fraction == 0.0
    r = rw.run_tests("import time\ntime.sleep(60)", [("", "")], run_wall_seconds=1)
    assert r.verdicts == ["time_limit"]
    assert time.monotonic() - t0 < 20  # the limits, not the programs, ended the runs
    assert rw.code_reward(fence("import time\ntime.sleep(60)"), [("", "")],
                          run_wall_seconds=0.5) == 0.0


HOSTILE = r"""
import os, socket, sys
escaped = []
try:                                     # the host's loopback is in another network namespace
    s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
    s.sendall(b"escaped")
    escaped.append("network")
except OSError:
    pass
for path in ({host_file!r}, "/usr/grpo_hostile_marker", "/etc/grpo_hostile_marker"):
    try:                                 # read-only root; the host's directories are absent
        with open(path, "w") as f:
            f.write("escaped")
        if not path.startswith("/tmp"):
            escaped.append("write " + path)
    except OSError:
        pass
try:
    open("/etc/shadow").read()
    escaped.append("read /etc/shadow")
except OSError:
    pass
pids = []
try:                                     # RLIMIT_NPROC of the run's user namespace
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            import time
            time.sleep(2)
            os._exit(0)
        pids.append(pid)
    escaped.append("fork bomb")
except OSError:
    pass
try:
    os.kill(1, 9)                        # pid 1 is the sandbox's own init, not the host's
except OSError:
    pass
print("contained" if not escaped else "ESCAPED " + ",".join(escaped))
"""


def test_hostile_program_is_contained(sandbox, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    host_file = tmp_path / "marker"
    prog = HOSTILE.format(port=listener.getsockname()[1], host_file=str(host_file))
    try:
        r = rw.run_tests(prog, [("", "contained")], run_wall_seconds=10)
        assert r.verdicts == ["passed"], r
        assert r.network_isolated
        with pytest.raises(BlockingIOError):  # nobody connected to the host's listener
            listener.accept()
    finally:
        listener.close()
    assert not host_file.exists()
    assert not os.path.exists("/usr/grpo_hostile_marker")


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_cpp_program(sandbox):
    src = "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a*b<<'\\n';}"
    r = rw.run_tests(src, [("3 4", "12"), ("5 5", "26")], "cpp")
    assert r.verdicts == ["passed", "wrong_answer"]
    bad = rw.run_tests("int main( {", [("", ""), ("", "")], "cpp")
    assert bad.verdicts == ["compile_error"] * 2 and "error" in bad.compile_log
    assert rw.code_reward(fence(src, "c++"), [("2 3", "6")], "cpp") == 1.0


def test_batch_releases_the_gil_and_keeps_order(sandbox):
    comps = [fence(f"import time\ntime.sleep(0.3)\nprint({i})") for i in range(6)]
    tests = [[("", str(i if i % 2 == 0 else -1))] for i in range(6)]
    comps.append("no code here")
    tests.append([("", "1")])
    comps.append(fence("print(1)"))
    tests.append([])  # no tests: the rule skips the sample
    ticks = 0
    stop = threading.Event()

    def spin():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    th = threading.Thread(target=spin)
    th.start()
    try:
        t0 = time.monotonic()
        got = rw.code_reward_batch(comps, tests, threads=2)
        took = time.monotonic() - t0
    finally:
        stop.set()
        th.join()
    assert got == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, None]
    assert ticks > 50 * took * 0.2, (ticks, took)  # the Python thread ran during the batch
    assert rw.code_reward_batch(comps[:2], tests[:2], binary=True) == [1.0, 0.0]
    # a language the rule cannot run is skipped, not punished
    assert rw.code_reward_batch([fence("print(1)")], [[("", "1")]], ["rust"]) == [None]


def test_score_and_adapters(sandbox):
    good, bad = fence(ADD), fence("print(0)")
    res = rw.score([good, bad], None, "code:1,binary_code:0.5",
                   tests=[ADD_TESTS, ADD_TESTS])
    assert res.per_rule["code"] == [1.0, pytest.approx(1 / 3)]
    assert res.totals == [1.5, pytest.approx(1 / 3)]
    vi = {"language": "python", "test_cases": [{"input": "1 2", "output": "3"}]}
    f = rw.trl_reward("code")
    conv = [[{"role": "assistant", "content": good}], [{"role": "assistant", "content": bad}]]
    assert f(conv, verification_info=[vi, vi]) == [1.0, 0.0]
    with pytest.raises(grpo.GrpoError, match="tests column"):
        f(conv, solution=["1", "2"])
    cs = rw.make_compute_score("code")
    prime = json.dumps({"inputs": ["1 2"], "outputs": ["3"]})
    assert cs("codecontests", good, prime) == 1.0
    assert cs("codecontests", bad, prime, {"language": "python"}) == 0.0


@pytest.fixture(scope="module")
def cli():
    p = reward_cli()
    if p is None:
        pytest.skip("grpo-reward CLI not built (cmake --build build/default --target grpo-reward,"
                    " or set GRPO_REWARD_CLI)")
    return p


def test_code_rules_match_cli(sandbox, cli):
    wrong = fence("print(int(input().split()[0]) * 2)")
    rows = [{"completion": fence(ADD), "tests": [{"input": a, "output": b} for a, b in ADD_TESTS]},
            {"completion": wrong, "tests": [{"input": "2 2", "output": "4"},
                                            {"input": "1 2", "output": "3"}]},
            {"completion": "no code", "tests": [{"input": "", "output": ""}]},
            {"completion": fence(ADD), "verification_info": {
                "language": "python", "test_cases": [{"input": "1 1", "output": "2"}]}},
            {"completion": fence("print(1)")}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    out = subprocess.run([str(cli), "-q", "--rules", "code,binary_code:0.5", "-i", "-"],
                         input=text, capture_output=True, text=True, check=True)
    want = [json.loads(line) for line in out.stdout.splitlines()]
    tests = [r.get("tests", r.get("verification_info", [])) for r in rows]
    got = rw.score([r["completion"] for r in rows], None, "code,binary_code:0.5", tests=tests)
    assert len(want) == len(rows)
    for i, w in enumerate(want):
        assert got.totals[i] == pytest.approx(w["total"], abs=1e-12), i
        for name, v in w["rewards"].items():
            assert got.per_rule[name][i] == (None if v is None else pytest.approx(v)), (i, name)


def test_bad_inputs(sandbox):
    def err(fn, *a, **kw):
        with pytest.raises(grpo.GrpoError) as e:
            fn(*a, **kw)
        return grpo.error_id(e.value)

    assert err(rw.run_tests, "print(1)", []) == "bad_value"
    assert err(rw.code_reward, fence("print(1)"), []) == "bad_value"
    assert err(rw.run_tests, "print(1)", [("", "1")], "rust") == "bad_option"
    assert err(rw.run_tests, "print(1)", [("", "1")], run_wall_seconds=-1) == "bad_option"
    assert err(rw.run_tests, "print(1)", [("", "1")], run_max_open_files=1) == "bad_option"
    assert err(rw.run_tests, "print(1)", [("", "1")], timeout=3) == "bad_option"
    assert err(rw.run_tests, "print(1)", [("", "1")], match="fuzzy") == "bad_option"
    assert err(rw.run_tests, "print(1)", [("only input",)]) == "bad_option"
    assert err(rw.run_tests, "print(1)", "{not json") == "bad_option"
    assert err(rw.run_tests, "print(1)", {"inputs": ["1"], "outputs": []}) == "shape_mismatch"
    assert err(rw.score, ["a", "b"], None, "code", tests=[[("", "1")]]) == "shape_mismatch"
    assert err(rw.score, ["a"], None, "code", code_language="rust") == "bad_option"
    assert err(rw.score, ["a"], None, "code", code_run_cpu_seconds=0) == "bad_option"
