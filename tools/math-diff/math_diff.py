#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Differential run: grpo's math::verify (grpo-math-diff) against Math-Verify on a corpus.

Corpus lines: {"gold", "pred", "label": true|false, "category", "source", ["options"]}.
Prints, per category, how often each grader agrees with the label, false positives (label false,
grader true) and the pairs where the graders disagree. Run with the Math-Verify venv's python:

  /work/venv-mv/bin/python tools/math-diff/math_diff.py \
      --ours build/default/tools/math-diff/grpo-math-diff CORPUS.jsonl [--disagreements OUT]

Math-Verify is called as its README shows: parse(gold), parse(pred), verify(gold, pred), with bare
LaTeX (no delimiters, not prose) wrapped in $...$ first, as its README passes golds. Its per-pair timeout is its
own (signal based, main thread).
"""
import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
import time


def as_latex(text):
    """Bare LaTeX (no `$`, `\\(`, `\\[`, `\\boxed`) is wrapped in `$...$`, as Math-Verify's README
    passes golds; texts with their own delimiters or prose markers go in unchanged."""
    if any(t in text for t in ("$", "\\(", "\\[", "\\boxed")):
        return text
    words = [w for w in re.findall(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}", text)]
    if len(words) >= 2 or any(ord(ch) > 0x2e80 for ch in text):
        return text  # prose
    return "$" + text + "$"


def math_verify_verdicts(cases):
    from math_verify import parse, verify  # noqa: imported from the venv
    out, secs = [], []
    for c in cases:
        t = time.perf_counter()
        try:
            g = parse(as_latex(c["gold"]))
            p = parse(as_latex(c["pred"]))
            o = c.get("options", {})
            kw = {}
            if "float_rounding" in o:
                kw["float_rounding"] = o["float_rounding"]
            if "strict" in o:
                kw["strict"] = o["strict"]
            if "allow_set_relation_comp" in o:
                kw["allow_set_relation_comp"] = o["allow_set_relation_comp"]
            out.append(bool(g) and bool(p) and bool(verify(g, p, **kw)))
        except Exception:
            out.append(False)
        secs.append(time.perf_counter() - t)
    return out, secs


def our_verdicts(binary, cases):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for c in cases:
            rec = {"gold": c["gold"], "pred": c["pred"]}
            if "options" in c:
                rec["options"] = c["options"]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        path = f.name
    r = subprocess.run([binary, "-i", path], capture_output=True, text=True, check=True)
    sys.stderr.write(r.stderr)
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    # "unparseable" (gold unusable) is not a match: counted as false, as a trainer skips it.
    return [row["verdict"] == "true" for row in rows], [row["us"] / 1e6 for row in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--no-math-verify", action="store_true")
    ap.add_argument("--disagreements")
    ap.add_argument("corpus")
    a = ap.parse_args()
    cases = [json.loads(l) for l in open(a.corpus, encoding="utf-8") if l.strip()]
    for c in cases:  # resolved corpora carry "expected" (true / false / "unparseable")
        if "label" not in c:
            c["label"] = c.get("expected") is True
    ours, our_t = our_verdicts(a.ours, cases)
    if a.no_math_verify:
        mv, mv_t = [None] * len(cases), [0.0] * len(cases)
    else:
        mv, mv_t = math_verify_verdicts(cases)
    per = collections.defaultdict(lambda: collections.Counter())
    dis = []
    for c, o, m in zip(cases, ours, mv):
        k = per[c.get("category", "all")]
        k["n"] += 1
        k["ours"] += o == c["label"]
        k["ours_fp"] += o and not c["label"]
        if m is not None:
            k["mv"] += m == c["label"]
            k["mv_fp"] += m and not c["label"]
        if o != c["label"] or (m is not None and m != c["label"]):
            dis.append({**c, "ours": o, "math_verify": m})
    tot = collections.Counter()
    print("| category | pairs | ours agree | Math-Verify agree | ours FP | Math-Verify FP |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for cat in sorted(per):
        k = per[cat]
        tot.update(k)
        mvs = f"{k['mv']} ({100 * k['mv'] / k['n']:.1f} %)" if mv[0] is not None else "-"
        print(f"| {cat} | {k['n']} | {k['ours']} ({100 * k['ours'] / k['n']:.1f} %) | {mvs} | "
              f"{k['ours_fp']} | {k['mv_fp'] if mv[0] is not None else '-'} |")
    mvs = f"{tot['mv']} ({100 * tot['mv'] / tot['n']:.1f} %)" if mv[0] is not None else "-"
    print(f"| **all** | {tot['n']} | {tot['ours']} ({100 * tot['ours'] / tot['n']:.1f} %) | {mvs} | "
          f"{tot['ours_fp']} | {tot['mv_fp'] if mv[0] is not None else '-'} |")
    print(f"\nours: {len(cases) / max(sum(our_t), 1e-9):.0f} pairs/s (sum of per-pair times), "
          f"slowest {1e3 * max(our_t):.2f} ms; Math-Verify: "
          f"{len(cases) / max(sum(mv_t), 1e-9):.0f} pairs/s, slowest {1e3 * max(mv_t):.0f} ms",
          file=sys.stderr)
    if a.disagreements:
        with open(a.disagreements, "w", encoding="utf-8") as f:
            for d in dis:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
