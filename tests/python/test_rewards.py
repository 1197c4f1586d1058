# SPDX-License-Identifier: Apache-2.0
"""grpo.rewards: the verifier, the scorers and the TRL / verl adapters against the C++ CLI
(tools/grpo-reward) on the same inputs; thread, asyncio and process-pool safety."""
import asyncio
import concurrent.futures as cf
import json
import multiprocessing as mp
import subprocess
import threading

import pytest

import grpo
from grpo import rewards as rw
from conftest import reward_cli

THINK = "<think>\n{}\n</think>\n<answer>\n{}\n</answer>"

CORPUS = [
    (THINK.format("First, add. Second, check. Finally, done.", "\\boxed{\\frac{1}{2}}"), "0.5"),
    (THINK.format("Step 1: x. Step 2: y.", "42"), "42"),
    (THINK.format("", "7"), "7"),
    ("<think>\nno close tag", "1"),
    ("The answer is \\boxed{3}.", "3"),
    ("The answer is \\boxed{4}.", "3"),
    ("So x = $\\sqrt{8}$", "2\\sqrt{2}"),
    ("**Final answer: (1, 2]**", "(1,2]"),
    ("I think it is C) 42", "C"),
    ("repeat repeat repeat repeat repeat repeat repeat repeat", "1"),
    (THINK.format("我们先计算 then check", "\\boxed{10\\%}"), "0.1"),
    ("", "5"),
    ("\\boxed{x^2+2x+1}", "(x+1)^2"),
    ("answer: 1/3", "0.333"),
    (THINK.format("1. a\n2. b\n- c\n* d", "\\boxed{\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}}"),
     "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
    ("\\boxed{\\infty}", "\\infty"),
    ("x" * 3000, "1"),
    ("\xff\xfe invalid-ish \\boxed{2}", "2"),
    ("The final answer is $\\{1,2,3\\}$", "\\{3,2,1\\}"),
    ("<answer>\n12\n</answer>", "12"),
] * 3

RULES = ("accuracy:1,format:0.5,format_lenient:0.2,tag_count:0.25,reasoning_steps:0.1,"
         "language:0.2,repetition:0.3,soft_overlong:0.1,cosine:0.5")


def test_done_criterion_and_verdicts():
    assert rw.verify("\\frac12", "0.5") is True
    assert rw.verify("3", "The answer is \\boxed{4}") is False
    assert rw.verdict("", "4") == "unparseable_gold"
    assert rw.verdict("(x+1)^2", "\\boxed{x^2+2x+1}") == "correct"
    assert rw.verify("0.1", "10\\%", percent_lenient=True)


@pytest.fixture(scope="module")
def cli():
    p = reward_cli()
    if p is None:
        pytest.skip("grpo-reward CLI not built (cmake --build build/default --target grpo-reward,"
                    " or set GRPO_REWARD_CLI)")
    return p


def run_cli(cli, rules, rows, extra=()):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    out = subprocess.run([str(cli), "-q", "--rules", rules, "-i", "-", *extra], input=text,
                         capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_score_matches_cli(cli):
    rows = [{"completion": c, "answer": a} for c, a in CORPUS]
    want = run_cli(cli, RULES, rows)
    got = rw.score([c for c, _ in CORPUS], [a for _, a in CORPUS], RULES)
    assert len(want) == len(CORPUS)
    for i, w in enumerate(want):
        assert got.totals[i] == pytest.approx(w["total"], abs=1e-12), i
        for name, v in w["rewards"].items():
            g = got.per_rule[name][i]
            assert (g is None) == (v is None), (i, name)
            if v is not None:
                assert g == pytest.approx(v, abs=1e-12), (i, name)


def test_single_scorers_match_cli(cli):
    rows = [{"completion": c, "answer": a} for c, a in CORPUS[:20]]
    want = run_cli(cli, "format,format_lenient,tag_count,reasoning_steps,language,repetition,"
                   "accuracy,cosine", rows)
    for (c, a), w in zip(CORPUS[:20], want):
        r = w["rewards"]
        assert rw.format_reward(c) == r["format"]
        assert rw.format_lenient_reward(c) == r["format_lenient"]
        assert rw.tag_count_reward(c) == r["tag_count"]
        assert rw.reasoning_steps_reward(c) == pytest.approx(r["reasoning_steps"])
        assert rw.language_reward(c, "en") == pytest.approx(r["language"])
        assert rw.repetition_reward(c) == pytest.approx(r["repetition"])
        assert rw.accuracy_reward(c, a) == r["accuracy"]
        assert rw.cosine_reward(c, a) == (None if r["cosine"] is None else pytest.approx(r["cosine"]))


def test_verify_matches_cli_equal(cli):
    for c, a in CORPUS[:20]:
        out = subprocess.run([str(cli), "equal", a, c], capture_output=True, text=True, check=True)
        word = out.stdout.strip()
        assert word == {"correct": "true", "incorrect": "false",
                        "unparseable_gold": "unparseable"}[rw.verdict(a, c)], (a, c)


def test_trl_adapter_plain_and_conversational(cli):
    rows = [{"completion": c, "answer": a} for c, a in CORPUS]
    want = run_cli(cli, "accuracy:1,format:0.5", rows)
    f = rw.trl_reward("accuracy:1,format:0.5")
    assert f.__name__ == "grpo_accuracy_format"
    plain = f([c for c, _ in CORPUS], solution=[a for _, a in CORPUS], prompts=["p"] * len(CORPUS))
    conv = f([[{"role": "assistant", "content": c}] for c, _ in CORPUS],
             answer=[a for _, a in CORPUS])
    assert plain == conv
    for got, w in zip(plain, want):
        assert got == pytest.approx(w["total"])
    # accuracy alone: an unparseable gold is None (TRL: NaN, not a wrong answer)
    acc = rw.trl_reward("accuracy")(["\\boxed{5}", "\\boxed{5}"], solution=["", "5"])
    assert acc == [None, 1.0]


def test_verl_adapters():
    import grpo.verl as gv
    assert gv.compute_score("math", "\\boxed{0.5}", "\\frac{1}{2}") == 1.0
    assert gv.compute_score("math", "\\boxed{0.6}", "\\frac{1}{2}", {"x": 1}) == 0.0
    sols = [c for c, _ in CORPUS]
    gts = [a for _, a in CORPUS]
    batch = gv.compute_score_batch(["math"] * len(sols), sols, gts, [None] * len(sols))
    assert batch == [gv.compute_score("math", s, g) for s, g in zip(sols, gts)]
    fmt = gv.make_compute_score("accuracy:1,format:0.5")
    assert fmt("math", THINK.format("r", "2"), "2") == 1.5


def test_batch_helpers_match_single_calls():
    golds = [a for _, a in CORPUS]
    preds = [c for c, _ in CORPUS]
    assert rw.verify_batch(golds, preds) == [rw.verify(g, p) for g, p in zip(golds, preds)]
    assert rw.verdict_batch(golds, preds, threads=3) == [rw.verdict(g, p)
                                                         for g, p in zip(golds, preds)]


def test_many_python_threads_score_at_once():
    golds = [a for _, a in CORPUS]
    preds = [c for c, _ in CORPUS]
    want = [rw.verdict(g, p) for g, p in zip(golds, preds)]
    want_score = rw.score(preds, golds, RULES).totals
    errors = []

    def work(k):
        try:
            for _ in range(3):
                if k % 2:
                    assert [rw.verdict(g, p) for g, p in zip(golds, preds)] == want
                else:
                    assert rw.score(preds, golds, RULES, threads=2).totals == want_score
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_asyncio():
    async def main():
        return await asyncio.gather(*[rw.averify(a, c) for c, a in CORPUS],
                                    rw.ascore([c for c, _ in CORPUS], [a for _, a in CORPUS]))

    res = asyncio.run(main())
    assert res[:-1] == [rw.verify(a, c) for c, a in CORPUS]
    assert res[-1].totals == rw.score([c for c, _ in CORPUS], [a for _, a in CORPUS]).totals


def _verify_pair(pair):
    return rw.verdict(pair[1], pair[0])


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_process_pools(method):
    want = [rw.verdict(a, c) for c, a in CORPUS]
    # fork while other threads are inside the verifier (no global lock can be inherited held)
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            rw.verify("(x+1)^2", "x^2+2x+1")

    bg = [threading.Thread(target=busy) for _ in range(2)]
    for t in bg:
        t.start()
    try:
        with cf.ProcessPoolExecutor(2, mp_context=mp.get_context(method)) as ex:
            got = list(ex.map(_verify_pair, CORPUS, timeout=120))
    finally:
        stop.set()
        for t in bg:
            t.join()
    assert got == want


def test_reward_errors_carry_ids():
    with pytest.raises(grpo.GrpoError) as e:
        rw.score(["a"], ["b"], "nonsense:1")
    assert grpo.error_id(e.value) == "bad_option" and "nonsense" in str(e.value)
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_option\].*not_an_option"):
        rw.verify("1", "1", not_an_option=True)
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.shape_mismatch\]"):
        rw.score(["a", "b"], ["1"], "accuracy")
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.shape_mismatch\]"):
        rw.verify_batch(["1"], ["1", "2"])
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_option\]"):
        rw.score("one string", None, "format")
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_option\]"):
        rw.repetition_reward("a b c", max_penalty=0.5)
    assert isinstance(grpo.GrpoError("x"), ValueError)
