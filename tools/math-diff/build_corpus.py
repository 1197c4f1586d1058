#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Builds the public-suite corpus of tools/math-diff from the test files of public graders.

Only facts are taken: (gold, prediction, expected verdict) triples written in the suites' tests,
each with its provenance (repository@commit path:line function). No code of theirs is used.
Reward-function tests (open-r1, TRL) give (solution, completion, asserted reward); the comments of
Qwen2.5-Math's grader give pairs without a verdict, labelled by hand below (QWEN_LABELS).

Usage: build_corpus.py MIRROR_ROOT [--merge CORPUS] > corpus.jsonl
With --merge, a pair that CORPUS already holds keeps its resolved "expected" and "triage".
MIRROR_ROOT holds bare-ish git mirrors as produced by the `fetch` tool
(<owner>+<name>/repo); files are read with `git show HEAD:path`.
"""
import ast
import json
import math
import re
import subprocess
import sys

SOURCES = [
    ("huggingface/Math-Verify", "tests/test_all.py"),
    ("huggingface/Math-Verify", "tests/test_numina_cases.py"),
    ("huggingface/Math-Verify", "tests/test_open_thoughts.py"),
    ("huggingface/Math-Verify", "tests/test_yujianll.py"),
    ("huggingface/Math-Verify", "tests/test_boxed.py"),
    ("huggingface/Math-Verify", "tests/test_strict.py"),
    ("huggingface/lighteval", "tests/unit/metrics/test_extractive_match.py"),
    ("NVIDIA/NeMo-Skills", "tests/test_math_equal.py"),
    ("hendrycks/math", "modeling/math_equivalence_test.py"),
    # reward-function tests: completion/solution lists and the asserted reward of each
    ("huggingface/open-r1", "tests/test_rewards.py"),
    ("huggingface/trl", "tests/test_rewards.py"),
    # Qwen2.5-Math: the pairs its authors wrote in the comments of _test_math_equal (no verdict)
    ("QwenLM/Qwen2.5-Math", "evaluation/grader.py"),
]

# Coarse categories from the test function names (breadth of the suites, not a case lookup).
CATEGORIES = [
    ("multilingual", ["multilingual"]),
    ("letters", ["abc", "letter", "string_extraction", "choice"]),
    ("numbers_in_context", ["number_extraction", "units", "dollars", "percent", "thousand"]),
    ("sets_intervals", ["set", "interval"]),
    ("relations", ["relation", "equation", "inequal"]),
    ("matrices", ["matrix"]),
    ("boxed_prose", ["boxed", "notation", "open_thoughts", "numina", "yujianll", "extraction"]),
    ("precision", ["precision"]),
    ("strict", ["strict"]),
]


def category(func):
    f = func.lower()
    for name, keys in CATEGORIES:
        if any(k in f for k in keys):
            return name
    return "expressions"


def const(node):
    """A literal's value; an f-string over the math module (Math-Verify writes golds such as
    f"{math.sqrt(17):.15f}") is evaluated with nothing but `math` in scope."""
    try:
        return ast.literal_eval(node)
    except Exception:
        pass
    if isinstance(node, ast.JoinedStr) and all(
            isinstance(n, (ast.JoinedStr, ast.FormattedValue, ast.Constant, ast.Call, ast.Attribute,
                           ast.Name, ast.Load, ast.keyword)) for n in ast.walk(node)) and all(
            n.id == "math" for n in ast.walk(node) if isinstance(n, ast.Name)):
        try:
            return eval(compile(ast.Expression(node), "<suite>", "eval"),
                        {"__builtins__": {}, "math": math})
        except Exception:
            return None
    return None


def show(root, repo, path):
    d = f"{root}/{repo.replace('/', '+')}/repo"
    commit = subprocess.run(["git", "-C", d, "rev-parse", "--short=7", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    text = subprocess.run(["git", "-C", d, "show", f"HEAD:{path}"],
                          capture_output=True, text=True, check=True).stdout
    return commit, text


def parametrize_cases(tree):
    """(function name, argnames, tuple node) for every @pytest.mark.parametrize."""
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for dec in fn.decorator_list:
            if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"):
                continue
            names = const(dec.args[0])
            if isinstance(names, str):
                names = [n.strip() for n in names.split(",")]
            if not names or not isinstance(dec.args[1], (ast.List, ast.Tuple)):
                continue
            for elt in dec.args[1].elts:
                yield fn, names, elt


def assert_calls(tree):
    """hendrycks style: self.assertTrue(is_equiv(a, b)) inside methods (a, b bound above)."""
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        env = {}
        for st in fn.body:
            if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(
                    st.targets[0], ast.Name):
                env[st.targets[0].id] = const(st.value)
            if isinstance(st, ast.Expr) and isinstance(st.value, ast.Call):
                call = st.value
                kind = getattr(call.func, "attr", "")
                if kind not in ("assertTrue", "assertFalse") or not call.args:
                    continue
                inner = call.args[0]
                if not (isinstance(inner, ast.Call) and len(inner.args) == 2):
                    continue
                vals = [env.get(a.id) if isinstance(a, ast.Name) else const(a) for a in inner.args]
                if all(isinstance(v, str) for v in vals):
                    yield fn, st.lineno, vals[0], vals[1], kind == "assertTrue"


# --- reward-function tests (open-r1, TRL): completions, solutions and the asserted rewards -------

REWARD_FUNCS = ("accuracy_reward", "reasoning_accuracy_reward", "get_cosine_scaled_reward")


def _contents(node):
    """[[{"content": X}], ...] -> [X, ...] (None when the node is not that shape)."""
    v = const(node)
    if not isinstance(v, list):
        return None
    out = []
    for m in v:
        if not (isinstance(m, list) and len(m) == 1 and isinstance(m[0], dict)):
            return None
        out.append(m[0].get("content"))
    return out


def _reward_value(node):
    """1.0 / 0.0 / None / pytest.approx(v) -> the number or None; anything else -> 'skip'."""
    if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "approx" and node.args:
        node = node.args[0]
    if isinstance(node, ast.Constant) and node.value is None:
        return None
    v = const(node)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else "skip"


def _verdict(value):
    """A reward's verdict: None = gold unparseable (skipped); > 0 correct; <= 0 wrong (accuracy
    0.0, cosine-scaled rewards of wrong answers are negative, of correct ones positive)."""
    if value is None:
        return "unparseable"
    return value > 0


def reward_test_pairs(tree):
    """(function, line, gold, pred, verdict) from tests that call an answer-checking reward."""
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        called = {getattr(c.func, "id", getattr(c.func, "attr", "")) for c in ast.walk(fn)
                  if isinstance(c, ast.Call)}
        if not called & set(REWARD_FUNCS):
            continue
        comps, sols, verdicts = None, None, {}
        for st in ast.walk(fn):
            if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(
                    st.targets[0], ast.Name):
                name, val = st.targets[0].id, st.value
                if name in ("completion", "completions"):
                    comps = _contents(val)
                elif name in ("solution", "solutions"):
                    v = const(val)
                    if isinstance(v, list) and all(isinstance(x, str) for x in v):
                        sols = v
                elif name == "test_cases":  # open-r1 cosine: (content, solution, len, reward)
                    for elt in getattr(val, "elts", []):
                        t = const(elt)
                        if isinstance(t, tuple) and len(t) == 4 and isinstance(t[0], str):
                            yield fn.name, elt.lineno, t[1], t[0].strip(), _verdict(t[3])
            # assert rewards[i] == v / rewards[i] is None; self.assertEqual(rewards[i], v)
            lhs = rhs = None
            if isinstance(st, ast.Assert) and isinstance(st.test, ast.Compare):
                lhs, rhs = st.test.left, st.test.comparators[0]
            elif isinstance(st, ast.Expr) and isinstance(st.value, ast.Call) and getattr(
                    st.value.func, "attr", "") in ("assertEqual", "assertIsNone") and st.value.args:
                a = st.value.args
                lhs, rhs = a[0], a[1] if len(a) > 1 else ast.Constant(None)
            if lhs is None:
                continue
            if isinstance(lhs, ast.Subscript) and getattr(lhs.value, "id", "") == "rewards":
                i = const(lhs.slice)
                v = _reward_value(rhs)
                if isinstance(i, int) and v != "skip":
                    verdicts[i] = (st.lineno, _verdict(v))
            elif isinstance(lhs, ast.Name) and lhs.id in ("rewards", "results") and isinstance(
                    rhs, ast.List):
                for i, e in enumerate(rhs.elts):
                    v = _reward_value(e)
                    if v != "skip":
                        verdicts[i] = (st.lineno, _verdict(v))
        if comps is None or sols is None:
            continue
        for i, (line, verdict) in sorted(verdicts.items()):
            if i < len(comps) and i < len(sols) and isinstance(comps[i], str):
                yield fn.name, line, sols[i], comps[i], verdict


# --- Qwen2.5-Math grader.py: pairs in the comments of _test_math_equal ---------------------------

_PYSTR = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""

# The comments give pairs but no verdict; each label below is derived by hand (the value of both
# sides) and, where a decimal is involved, by Qwen's own rule (math_equal: numbers equal within
# rel_tol 1e-4; matrices equal after rounding entries to 3 places). Keyed by (gold, prediction).
QWEN_LABELS = {
    ("\\frac{1}{12}", "0.0833333333333333"): (True, "1/12 = 0.08333..., 15 digits given"),
    ("(1,\\frac{9}{2})", "(1,4.5)"): (True, "9/2 = 4.5 exactly"),
    ("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}"): (True, "same rational function"),
    ("\\tan^2(y)+1", "\\sec^2(y)"): (True, "Pythagorean identity"),
    ("(\\begin{pmatrix}-\\frac{7}{4}&-2\\\\4&\\frac{1}{4}\\\\\\end{pmatrix})",
     "\\begin{pmatrix}-\\frac{7}{4}&-2\\\\4&\\frac{1}{4}\\end{pmatrix}"):
        (True, "same entries; the gold has a trailing row separator and parentheses"),
    ("(\\begin{pmatrix}\\frac{1}{3\\sqrt[3]{x}^2}&0&0\\\\0&1&0\\\\-\\sin(x)&0&0\\\\\\end{pmatrix})",
     "\\begin{pmatrix}\\frac{1}{3x^{2/3}}&0&0\\\\0&1&0\\\\-\\sin(x)&0&0\\end{pmatrix}"):
        (True, "x^{2/3} = (x^{1/3})^2"),
    ("-\\frac{2(x^2+6)}{9(x^2-2)\\sqrt[3]{x^2-2}^2}",
     "-\\frac{8x^2}{9(x^2-2)^{5/3}}+\\frac{2}{3(x^2-2)^{2/3}}"):
        (True, "over 9(x^2-2)^{5/3}: -8x^2 + 6(x^2-2) = -2(x^2+6)"),
    ("34x+45y-20z+100=0", "-34x-45y+20z-100=0"): (True, "the same plane (equation times -1)"),
    ("33.3", "\\frac{100}{3}"): (False, "100/3 = 33.33...: |33.3/33.33-1| = 1e-3 > Qwen's 1e-4"),
    ("(\\begin{pmatrix}0.29\\\\0.196\\\\-0.186\\\\\\end{pmatrix})",
     "\\begin{pmatrix}0.290243531202435\\\\0.196008371385084\\\\-0.186381278538813\\end{pmatrix}"):
        (True, "entries agree after rounding to 3 places (Qwen's matrix rule)"),
    ("\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{15+2\\sqrt{33}}",
     "\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{2\\sqrt{33}+15}"): (True, "addends reordered"),
    ("(a+5)(b+2)", "(+5)(b+2)"): (False, "the variable a is missing"),
    ("2", "\\frac{1+\\sqrt{5}}{2}"): (False, "(1+sqrt5)/2 = 1.618..."),
    ("4", "\\frac{34}{16}+\\frac{\\sqrt{1358}}{16}"): (False, "= 4.428..."),
    ("1\\\\sqrt{19}", "1"): (False, "1 vs sqrt(19) (the gold carries a doubled backslash)"),
    ("(\\frac{3}{5},\\frac{8}{3}]", "(0.6,2.6667]"): (True, "3/5 = 0.6, 8/3 = 2.66667 within 1e-4"),
    ("x+2n+1", "x+1"): (False, "2n missing"),
}


def qwen_comment_pairs(text):
    """(function, line, gold, pred) from `# print(math_equal(P, G))` and `pred = P` / `gt = G`
    lines of _test_math_equal (commented out or not)."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("def _test_math_equal")), None)
    if start is None:
        return
    pred = gold = None
    for i in range(start + 1, len(lines)):
        l = lines[i]
        if l and not l[0].isspace():
            break
        body = l.strip().lstrip("#").strip()
        m = re.search(r"math_equal\(\s*" + _PYSTR + r"\s*,\s*" + _PYSTR, body)
        if m:
            yield "_test_math_equal", i + 1, ast.literal_eval(m.group(2)), ast.literal_eval(
                m.group(1))
            continue
        for name, lit in re.findall(r"\b(pred|gt)\s*=\s*" + _PYSTR, body):
            if name == "pred":
                pred = ast.literal_eval(lit)
            else:
                gold = ast.literal_eval(lit)
            if pred is not None and gold is not None:
                yield "_test_math_equal", i + 1, gold, pred
                pred = gold = None


def content_category(gold, pred):
    """Category of a pair from its text, for suites without category-bearing test names."""
    both = gold + pred
    if "matrix" in both:
        return "matrices"
    if "=" in both:
        return "relations"
    if re.match(r"^[\(\[].*,.*[\)\]]$", gold.strip()):
        return "sets_intervals"
    return "expressions"


def main():
    root = sys.argv[1]
    seen = set()
    resolved = {}  # key -> the resolved fields of an earlier corpus ("expected", "triage")
    if len(sys.argv) == 4 and sys.argv[2] == "--merge":
        for line in open(sys.argv[3], encoding="utf-8"):
            if line.strip():
                rec = json.loads(line)
                key = (rec["gold"], rec["pred"], json.dumps(rec.get("options", {}),
                                                            sort_keys=True))
                resolved[key] = {k: rec[k] for k in ("expected", "triage") if k in rec}
    for repo, path in SOURCES:
        try:
            commit, text = show(root, repo, path)
        except subprocess.CalledProcessError:
            print(f"skip {repo} {path}: not in the mirror", file=sys.stderr)
            continue
        tree = ast.parse(text)
        out = []
        notes = {}  # (gold, pred) -> how the label was obtained, where it is not the suite's own
        if path.endswith("grader.py"):
            for fname, line, gold, pred in qwen_comment_pairs(text):
                lab = QWEN_LABELS.get((gold, pred))
                if lab is None:
                    print(f"skip {repo} {path}:{line}: no hand label", file=sys.stderr)
                    continue
                out.append((fname, line, gold, pred, lab[0], {}))
                notes[(gold, pred)] = "label by hand (the comment gives no verdict): " + lab[1]
            tree = ast.parse("")
        if path.endswith("test_rewards.py"):
            for fname, line, gold, pred, verdict in reward_test_pairs(tree):
                out.append((fname, line, gold, pred, verdict, {}))
            tree = ast.parse("")
        for fn, names, elt in parametrize_cases(tree):
            v = const(elt)
            if v is None and isinstance(elt, ast.Tuple):
                # e.g. lighteval's Language.FRENCH: keep the literal fields, name the others
                v = tuple(const(e) if const(e) is not None else ast.unparse(e) for e in elt.elts)
            if v is None:
                continue
            if names == ["output_pair"]:  # NeMo-Skills: pairs, verdict from the function name
                if not isinstance(v, tuple) or len(v) != 2:
                    continue
                good = "incorrect" not in fn.name
                gold, pred = (str(x) for x in v)
                out.append((fn.name, elt.lineno, gold, pred, good, {}))
                continue
            if not isinstance(v, tuple) or len(v) != len(names):
                continue
            row = dict(zip(names, v))
            gold, pred = row.get("gold"), row.get("pred")
            exp = row.get("expected")
            if not isinstance(gold, str) or not isinstance(pred, str) or exp is None:
                continue
            if isinstance(exp, (list, tuple)):
                continue
            opts = {}
            if "precision" in row and isinstance(row["precision"], int):
                opts["float_rounding"] = row["precision"]
            if "strict" in fn.name.lower() and "strict" in row:
                opts["strict"] = bool(row["strict"])
            if isinstance(row.get("allow_set_relation_comp"), bool):
                opts["allow_set_relation_comp"] = row["allow_set_relation_comp"]
            out.append((fn.name, elt.lineno, gold, pred, bool(exp), opts))
        for fn, line, a, b, good in assert_calls(tree):
            out.append((fn.name, line, a, b, good, {}))
        for fname, line, gold, pred, good, opts in out:
            key = (gold, pred, json.dumps(opts, sort_keys=True))
            if key in seen:
                continue
            seen.add(key)
            cat = category(fname)
            if path.endswith("test_rewards.py"):
                cat = "reward_tests"
            elif path.endswith("grader.py"):
                cat = content_category(gold, pred)
            if cat != "multilingual" and any(ord(ch) > 0x2000 for ch in pred) and not pred.isascii():
                # prose in a non-Latin script: the multilingual class whatever the test name
                if sum(ord(ch) > 0x2e80 or 0x0400 <= ord(ch) < 0x0980 for ch in pred) > 3:
                    cat = "multilingual"
            rec = {"gold": gold, "pred": pred, "label": good is True, "category": cat,
                   "source": f"{repo}@{commit} {path}:{line} {fname}"}
            if good == "unparseable":  # reward None: the suite says the gold is unusable
                rec["suite_verdict"] = "unparseable"
            if (gold, pred) in notes:
                rec["label_note"] = notes[(gold, pred)]
            if opts:
                rec["options"] = opts
            rec.update(resolved.get(key, {}))
            print(json.dumps(rec, ensure_ascii=False))


if __name__ == "__main__":
    main()
