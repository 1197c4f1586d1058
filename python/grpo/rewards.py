# SPDX-License-Identifier: Apache-2.0
"""grpo.rewards: the math verifier and rule rewards of the C++ core (include/rewards/).

No torch needed. Every call releases the GIL while the C++ code runs; the batch functions score a
list on a pool of native threads (all cores by default). Nothing uses signals or timeouts: the
verifier bounds its own work (``budget_steps``), so it is safe in any thread, under asyncio and in
process pools (the verifier holds no global lock, so a forked child never inherits a held one).

Options are the C++ option fields by name (docs/python.md lists them): verify() takes the
``verify_options`` fields (``float_rel_tol``, ``percent_lenient``, ``multiple_choice``,
``budget_steps``, ``pred_boxed`` / ``gold_whole_string`` extraction switches, ...); the rule
functions also take ``target_language``, ``grade_answer_block``, ``unit`` and per-rule fields
(``repetition_ngram_size``, ``cosine_max_len``, ``overlong_max_len``, ``code_language``,
``code_run_wall_seconds``, ...).

Code execution (``run_tests``, ``code_reward``, ``code_reward_batch`` and the "code" /
"binary_code" rules) runs each program in the sandbox of include/rewards/sandbox/ (fresh user,
PID, mount, IPC, UTS and network namespaces, read-only minimal root, private tmpfs, no
capabilities, seccomp, rlimits). It fails closed: where the kernel refuses an isolation step the
call raises ``GrpoError`` ``[grpo.sandbox_unavailable]``, never runs the program unsandboxed.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from . import _C
from ._C import GrpoError

__all__ = [
    "verify",
    "verdict",
    "verify_batch",
    "verdict_batch",
    "accuracy_reward",
    "format_reward",
    "format_lenient_reward",
    "tag_count_reward",
    "reasoning_steps_reward",
    "language_reward",
    "repetition_reward",
    "cosine_reward",
    "soft_overlong_reward",
    "score",
    "score_rule",
    "ScoreResult",
    "rule_names",
    "trl_reward",
    "compute_score",
    "compute_score_batch",
    "make_compute_score",
    "averify",
    "ascore",
    "GrpoError",
    "CodeResult",
    "run_tests",
    "code_reward",
    "binary_code_reward",
    "code_reward_batch",
    "extract_code",
    "tests_from",
]

_VERDICTS = ("correct", "incorrect", "unparseable_gold")


def verdict(gold: str, pred: str, **options: Any) -> str:
    """"correct", "incorrect" or "unparseable_gold" (the reference itself could not be read: a
    trainer should skip the sample rather than reward it)."""
    return _VERDICTS[_C.verify(gold, pred, options)]


def verify(gold: str, pred: str, **options: Any) -> bool:
    """True when the answer in `pred` (boxed, "the answer is", <answer> tags, LaTeX, or the whole
    text) is mathematically equivalent to `gold`: exact rationals, intervals, sets, matrices,
    symbolic identities (exact rationals and Arb ball arithmetic), percent / unit / text normalisation. Never raises on model text;
    work is bounded by budget_steps."""
    return _C.verify(gold, pred, options) == 0


def _texts(xs: Sequence[Any], what: str) -> List[str]:
    if isinstance(xs, str):
        raise GrpoError(f"[grpo.bad_option] {what}: expected a list of strings, got one string")
    return [_completion_text(x) for x in xs]


def verdict_batch(golds: Sequence[str], preds: Sequence[str], *, threads: int = 0,
                  **options: Any) -> List[str]:
    """verdict() of golds[i] vs preds[i] on `threads` native threads (0: every core)."""
    return [_VERDICTS[v] for v in _C.verify_batch(_texts(golds, "golds"), _texts(preds, "preds"),
                                                  options, threads)]


def verify_batch(golds: Sequence[str], preds: Sequence[str], *, threads: int = 0,
                 **options: Any) -> List[bool]:
    """verify() of golds[i] vs preds[i] on `threads` native threads (0: every core)."""
    return [v == 0 for v in _C.verify_batch(_texts(golds, "golds"), _texts(preds, "preds"),
                                            options, threads)]


# ---------------------------------------------------------------------------------------------
# Single-sample rule scorers (the same C++ rules the batch scorer and grpo-reward use).


def score_rule(rule: str, completion: str, answer: str = "", num_tokens: int = -1,
               **options: Any) -> Optional[float]:
    """One built-in rule (rule_names()) on one completion; None when the rule skips the sample
    (accuracy / cosine with an unparseable gold)."""
    return _C.score_one(rule, _completion_text(completion), answer, num_tokens, options)


def accuracy_reward(completion: str, answer: str, **options: Any) -> Optional[float]:
    """1.0 / 0.0 from verify(answer, completion) (the last <answer> block when present); None when
    the gold is unparseable."""
    return score_rule("accuracy", completion, answer, **options)


def format_reward(completion: str, **options: Any) -> float:
    """Strict R1 layout "<think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>": 1.0 or 0.0."""
    return score_rule("format", completion, **options)


def format_lenient_reward(completion: str) -> float:
    """open-r1's lenient format regex (think block then answer block): 1.0 or 0.0."""
    return score_rule("format_lenient", completion)


def tag_count_reward(completion: str) -> float:
    """open-r1 tag_count_reward: 0.25 per correctly placed think / answer tag."""
    return score_rule("tag_count", completion)


def reasoning_steps_reward(completion: str, **options: Any) -> float:
    """open-r1 reasoning_steps_reward: min(1, steps / reasoning_target_steps)."""
    return score_rule("reasoning_steps", completion, **options)


def language_reward(completion: str, language: str = "en", **options: Any) -> float:
    """R1 language consistency: share of words of the reasoning in the target language's
    scripts (math and code removed)."""
    return score_rule("language", completion, target_language=language, **options)


def repetition_reward(completion: str, ngram_size: int = 3, max_penalty: float = -1.0,
                      **options: Any) -> float:
    """open-r1 n-gram repetition penalty in [max_penalty, 0]."""
    return score_rule("repetition", completion, repetition_ngram_size=ngram_size,
                      repetition_max_penalty=max_penalty, **options)


def cosine_reward(completion: str, answer: str, **options: Any) -> Optional[float]:
    """open-r1 cosine-scaled length reward with correctness from verify (cosine_* options)."""
    return score_rule("cosine", completion, answer, **options)


def soft_overlong_reward(completion: str = "", num_tokens: int = -1, **options: Any) -> float:
    """DAPO soft overlong punishment of num_tokens (or the text length when num_tokens < 0);
    overlong_max_len, overlong_cache_len, overlong_penalty_factor."""
    return score_rule("soft_overlong", completion, "", num_tokens, **options)


def rule_names() -> List[str]:
    """The built-in rule names accepted in a rule spec."""
    return list(_C.rule_names())


# ---------------------------------------------------------------------------------------------
# Batch scoring.


class ScoreResult(NamedTuple):
    """totals[i] = sum of weight * value over the rules that scored sample i; per_rule[name][i] is
    the rule's value (None where it skipped the sample)."""

    totals: List[float]
    per_rule: Dict[str, List[Optional[float]]]


def score(completions: Sequence[Any], answers: Optional[Sequence[str]] = None,
          rules: str = "accuracy:1,format:0.5", *, num_tokens: Optional[Sequence[int]] = None,
          tests: Optional[Sequence[Any]] = None, languages: Optional[Sequence[str]] = None,
          threads: int = 0, **options: Any) -> ScoreResult:
    """Scores completions (strings or chat message lists) with a weighted rule spec
    ("accuracy:1,format:0.5,tag_count"; weight 1 when omitted) on `threads` native threads
    (0: every core), GIL released. Same rules and numbers as the grpo-reward CLI.

    tests: per completion, the test cases of the "code" / "binary_code" rules (any form
    tests_from() reads; an empty list skips the rule for that sample); languages: per
    completion "python" / "cpp" (default: the code_language option, "python")."""
    comps = _texts(completions, "completions")
    ans = None if answers is None else [str(a) for a in answers]
    nt = None if num_tokens is None else [int(n) for n in num_tokens]
    ts = None if tests is None else [tests_from(t) for t in _seq(tests, "tests")]
    langs = None if languages is None else [str(x) for x in _seq(languages, "languages")]
    totals, per_rule, names = _C.score_batch(rules, comps, ans, nt, options, threads, ts, langs)
    return ScoreResult(list(totals), dict(zip(names, per_rule)))


def _seq(xs: Any, what: str) -> List[Any]:
    if isinstance(xs, (str, bytes, dict)):
        raise GrpoError(f"[grpo.bad_option] {what}: expected one entry per completion")
    return list(xs)


# ---------------------------------------------------------------------------------------------
# Code execution.


class CodeResult(NamedTuple):
    """Result of run_tests: pass_fraction = passed / len(tests); verdicts, one per test:
    "passed", "wrong_answer", "runtime_error" (non-zero exit), "crashed" (a signal),
    "time_limit", "output_limit", "compile_error" (C++), "sandbox_error" (could not start),
    "skipped" (stop_at_first_failure); compile_log: the compiler's stderr (first 4 KiB);
    network_isolated: every run had its own empty network namespace."""

    pass_fraction: float
    passed: int
    verdicts: List[str]
    compile_log: str
    network_isolated: bool


def tests_from(tests: Any) -> List[Tuple[str, str]]:
    """Test cases as (stdin, expected stdout) pairs, from: a list of (input, output) pairs or of
    {"input", "output"} dicts; open-r1's verification_info {"test_cases": [...], "language"};
    the APPS / PRIME form {"inputs": [...], "outputs": [...]}; or a JSON string of any of these.
    Non-string inputs / outputs are converted with str()."""
    t = tests
    if isinstance(t, (bytes, bytearray)):
        t = t.decode("utf-8", "replace")
    if isinstance(t, str):
        try:
            t = json.loads(t)
        except ValueError as e:
            raise GrpoError(f"[grpo.bad_option] tests: not valid JSON ({e})") from None
    if isinstance(t, dict):
        if "test_cases" in t:
            return tests_from(t["test_cases"])
        if "inputs" in t and "outputs" in t:
            ins, outs = list(t["inputs"]), list(t["outputs"])
            if len(ins) != len(outs):
                raise GrpoError(f"[grpo.shape_mismatch] tests: {len(ins)} inputs for "
                                f"{len(outs)} outputs")
            return [(_io(i), _io(o)) for i, o in zip(ins, outs)]
        raise GrpoError("[grpo.bad_option] tests: a dict needs 'test_cases' or 'inputs' and "
                        "'outputs'")
    if t is None:
        return []
    out = []
    for k, c in enumerate(t):
        if isinstance(c, dict):
            if "input" not in c or "output" not in c:
                raise GrpoError(f"[grpo.bad_option] tests[{k}]: needs 'input' and 'output'")
            out.append((_io(c["input"]), _io(c["output"])))
        elif isinstance(c, (list, tuple)) and len(c) == 2:
            out.append((_io(c[0]), _io(c[1])))
        else:
            raise GrpoError(f"[grpo.bad_option] tests[{k}]: expected an (input, output) pair or "
                            "an {'input', 'output'} dict")
    return out


def _io(x: Any) -> str:
    return x if isinstance(x, str) else str(x)


def _language_of(tests: Any, language: Optional[str]) -> str:
    if language is not None:
        return language
    if isinstance(tests, (str, bytes, bytearray)):
        try:
            tests = json.loads(tests)
        except ValueError:
            return "python"  # tests_from reports the bad JSON
    if isinstance(tests, dict) and isinstance(tests.get("language"), str):
        return tests["language"]
    return "python"


_CODE_RULES = ("code", "binary_code")
_TEST_KEYS = ("verification_info", "tests", "test_cases")


def _uses_code(rules: str) -> bool:
    return any(part.split(":")[0].strip() in _CODE_RULES for part in rules.split(","))


def run_tests(source: str, tests: Any, language: Optional[str] = None,
              **options: Any) -> CodeResult:
    """Runs a program (Python via python3 -I, or a C++ translation unit compiled once with g++)
    against stdin / stdout test cases, each run in a fresh sandbox, GIL released. A test passes
    when the program exits 0 within the limits and its stdout matches under ``match``.

    language: "python" (default, or verification_info's "language") / "cpp". Options
    (code_exec_options): ``run_<limit>`` and ``compile_<limit>`` with limit cpu_seconds (2),
    wall_seconds (5), memory_bytes (512 MiB), output_bytes, file_bytes, disk_bytes,
    max_processes (32), max_open_files; ``match`` ("trim_lines" default, "exact", "tokens",
    "open_r1"); ``stop_at_first_failure``; ``python``, ``python_args``, ``cxx``, ``cxx_flags``,
    ``search_path``, ``extra_ro_binds``, ``extra_env``. Raises [grpo.bad_value] for no tests,
    [grpo.bad_option] for bad limits, [grpo.sandbox_unavailable] where the kernel refuses the
    sandbox."""
    lang = _language_of(tests, language)
    r = _C.run_tests(str(source), lang, tests_from(tests), options)
    return CodeResult(float(r[0]), int(r[1]), list(r[2]), str(r[3]), bool(r[4]))


def extract_code(completion: Any, language: str = "python") -> str:
    """The body of the last fenced block of `language` (```python / ```py / ```cpp / ```c++ ...)
    of a completion, as open-r1's extract_code; "" when there is none."""
    return _C.extract_code(_completion_text(completion), language)


def code_reward(completion: Any, tests: Any, language: Optional[str] = None,
                **options: Any) -> float:
    """open-r1 code_reward: the pass fraction of the completion's last fenced `language` block
    on `tests` (0.0 when the completion has no such block). Options as run_tests."""
    lang = _language_of(tests, language)
    cases = tests_from(tests)
    if not cases:
        raise GrpoError("[grpo.bad_value] code_reward: tests is empty")
    code = extract_code(completion, lang)
    if not code:
        return 0.0
    return float(_C.run_tests(code, lang, cases, options)[0])


def binary_code_reward(completion: Any, tests: Any, language: Optional[str] = None,
                       **options: Any) -> float:
    """open-r1 binary_code_reward: 1.0 when code_reward exceeds 0.99, else 0.0."""
    return 1.0 if code_reward(completion, tests, language, **options) > 0.99 else 0.0


def code_reward_batch(completions: Sequence[Any], tests: Sequence[Any],
                      languages: Optional[Sequence[Optional[str]]] = None, *,
                      binary: bool = False, threads: int = 0,
                      **options: Any) -> List[Optional[float]]:
    """code_reward (or binary_code_reward) of completions[i] on tests[i], on `threads` native
    threads (0: every core), GIL released; programs run concurrently, each in its own sandbox.
    None where a sample has no tests or names a language the rule cannot run (skipped, not
    punished). languages[i] overrides verification_info's "language"; options as run_tests."""
    comps = _seq(completions, "completions")
    ts = _seq(tests, "tests")
    langs = [None] * len(ts) if languages is None else _seq(languages, "languages")
    if len(langs) != len(ts):
        raise GrpoError(f"[grpo.shape_mismatch] code_reward_batch: {len(langs)} languages for "
                        f"{len(ts)} test lists")
    names = [_language_of(t, lang) for t, lang in zip(ts, langs)]
    rule = "binary_code" if binary else "code"
    res = score(comps, None, rule, tests=ts, languages=names, threads=threads,
                **{"code_" + k: v for k, v in options.items()})
    return res.per_rule[rule]


async def averify(gold: str, pred: str, **options: Any) -> bool:
    """verify() without blocking the event loop (runs on the default executor; the GIL is
    released while the C++ code runs)."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: verify(gold, pred,
                                                                                 **options))


async def ascore(completions: Sequence[Any], answers: Optional[Sequence[str]] = None,
                 rules: str = "accuracy:1,format:0.5", **kw: Any) -> ScoreResult:
    """score() without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: score(completions, answers, rules, **kw))


# ---------------------------------------------------------------------------------------------
# Framework adapters.


def _completion_text(c: Any) -> str:
    """A completion as text: a string, or a chat message list / dict (content of the last
    message), as TRL passes conversational completions."""
    if isinstance(c, str):
        return c
    if isinstance(c, dict) and isinstance(c.get("content"), str):
        return c["content"]
    if isinstance(c, (list, tuple)) and c and isinstance(c[-1], dict) and isinstance(
            c[-1].get("content"), str):
        return c[-1]["content"]
    raise GrpoError("[grpo.bad_option] completion: expected a string or a list of "
                    f"{{'role', 'content'}} messages, got {type(c).__name__}")


_ANSWER_KEYS = ("solution", "answer", "ground_truth", "gold")


def trl_reward(rules: str = "accuracy", *, answer_key: Optional[str] = None,
               tests_key: Optional[str] = None, threads: int = 0, name: Optional[str] = None,
               **options: Any) -> Callable[..., List[Optional[float]]]:
    """A TRL ``reward_funcs`` entry: ``f(completions, **kwargs) -> list[float | None]``.

    Works with plain and conversational completions. The reference answers come from the dataset
    column `answer_key` (default: the first of "solution", "answer", "ground_truth", "gold" that
    TRL passes). A sample every rule skipped (accuracy with an unparseable gold) gets None, which
    TRL treats as "no reward" (NaN) rather than a wrong answer. With the "code" / "binary_code"
    rules the test cases come from the column `tests_key` (default: the first of
    "verification_info" (open-r1: {"test_cases", "language"}), "tests", "test_cases").
    """
    from_spec = rules
    code = _uses_code(rules)

    def reward(completions, **kwargs) -> List[Optional[float]]:
        key = answer_key or next((k for k in _ANSWER_KEYS if k in kwargs), None)
        answers = None
        if key is not None:
            if key not in kwargs:
                raise GrpoError(f"[grpo.bad_option] trl_reward: dataset column '{key}' missing")
            answers = [str(a) for a in kwargs[key]]
        tests = langs = None
        if code:
            tk = tests_key or next((k for k in _TEST_KEYS if k in kwargs), None)
            if tk is None or tk not in kwargs:
                raise GrpoError("[grpo.bad_option] trl_reward: the code rules need a tests column "
                                f"({tests_key or ', '.join(_TEST_KEYS)})")
            tests = list(kwargs[tk])
            langs = [_language_of(t, None) for t in tests]
        res = score(completions, answers, from_spec, tests=tests, languages=langs,
                    threads=threads, **options)
        cols = list(res.per_rule.values())
        return [None if all(col[i] is None for col in cols) else t
                for i, t in enumerate(res.totals)]

    reward.__name__ = name or ("grpo_" + "_".join(
        part.split(":")[0].strip() for part in rules.split(",")))
    reward.__qualname__ = reward.__name__
    return reward


def make_compute_score(rules: str = "accuracy", **options: Any):
    """A verl ``custom_reward_function`` (``compute_score(data_source, solution_str,
    ground_truth, extra_info=None) -> float``) scoring with a rule spec; a skipped sample scores
    0.0 (verl needs a number). With the "code" / "binary_code" rules ground_truth holds the
    test cases (any form tests_from() reads, e.g. PRIME's JSON {"inputs", "outputs"}); the
    language comes from it or from extra_info["language"] (default python)."""
    code = _uses_code(rules)

    def compute_score(data_source, solution_str, ground_truth, extra_info=None, **_: Any) -> float:
        tests = langs = None
        if code:
            tests = [ground_truth]
            lang = extra_info.get("language") if isinstance(extra_info, dict) else None
            langs = [_language_of(ground_truth, lang)]
        res = score([solution_str], [str(ground_truth)], rules, tests=tests, languages=langs,
                    threads=1, **options)
        return float(res.totals[0])

    return compute_score


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **_: Any) -> float:
    """verl custom reward function: 1.0 when solution_str's answer equals ground_truth (grpo's
    verifier), else 0.0. Point verl's custom_reward_function.path at grpo/verl.py (or this module)
    with name compute_score."""
    return 1.0 if _C.verify(str(ground_truth), str(solution_str), {}) == 0 else 0.0


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos=None,
                        **_: Any) -> List[float]:
    """verl BatchRewardManager form: lists in, list of floats out (all cores, GIL released)."""
    return [1.0 if v == 0 else 0.0 for v in _C.verify_batch(
        [str(g) for g in ground_truths], [str(s) for s in solution_strs], {}, 0)]
