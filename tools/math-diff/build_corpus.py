#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Builds the public-suite corpus of tools/math-diff from the test files of public graders.

Only facts are taken: (gold, prediction, expected verdict) triples written in the suites' tests,
each with its provenance (repository@commit path:line function). No code of theirs is used.

Usage: build_corpus.py MIRROR_ROOT > corpus.jsonl
MIRROR_ROOT holds bare-ish git mirrors as produced by the `fetch` tool
(<owner>+<name>/repo); files are read with `git show HEAD:path`.
"""
import ast
import json
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
    try:
        return ast.literal_eval(node)
    except Exception:
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


def main():
    root = sys.argv[1]
    seen = set()
    for repo, path in SOURCES:
        try:
            commit, text = show(root, repo, path)
        except subprocess.CalledProcessError:
            print(f"skip {repo} {path}: not in the mirror", file=sys.stderr)
            continue
        tree = ast.parse(text)
        out = []
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
            out.append((fn.name, elt.lineno, gold, pred, bool(exp), opts))
        for fn, line, a, b, good in assert_calls(tree):
            out.append((fn.name, line, a, b, good, {}))
        for fname, line, gold, pred, good, opts in out:
            key = (gold, pred, json.dumps(opts, sort_keys=True))
            if key in seen:
                continue
            seen.add(key)
            cat = category(fname)
            if cat != "multilingual" and any(ord(ch) > 0x2000 for ch in pred) and not pred.isascii():
                # prose in a non-Latin script: the multilingual class whatever the test name
                if sum(ord(ch) > 0x2e80 or 0x0400 <= ord(ch) < 0x0980 for ch in pred) > 3:
                    cat = "multilingual"
            rec = {"gold": gold, "pred": pred, "label": good, "category": cat,
                   "source": f"{repo}@{commit} {path}:{line} {fname}"}
            if opts:
                rec["options"] = opts
            print(json.dumps(rec, ensure_ascii=False))


if __name__ == "__main__":
    main()
