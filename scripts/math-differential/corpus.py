#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Corpus for the math verifier's differential run (scripts/math-differential/run.sh).

Prints lines `HEX(gold) HEX(pred)`:
  - every (gold, pred) pair of the JSON Lines corpora given with --jsonl (tools/math-diff/corpus);
  - every C++ string literal of the given test sources (--cpp), alone and paired with the next one;
  - every fuzz seed file under the given directories (--seeds), alone;
  - --hostile N generated strings (seeded): random sequences of LaTeX commands, braces, digits,
    operators, Unicode maths symbols, invalid UTF-8 and units, alone and paired with a mutation
    (one token inserted, deleted or swapped) of themselves.
"""
import argparse, ast, json, os, random, re, sys

TOKENS = [
    "\\frac", "\\dfrac", "\\tfrac", "\\sqrt", "\\sqrt[3]", "\\pi", "\\infty", "\\pm", "\\mp", "\\cdot",
    "\\times", "\\div", "\\le", "\\leq", "\\ge", "\\ne", "\\in", "\\cup", "\\cap", "\\setminus",
    "\\left(", "\\right)", "\\left[", "\\right]", "\\left\\{", "\\right\\}", "\\left|", "\\right|",
    "\\text{", "\\textbf{", "\\mathrm{", "\\mathbb{R}", "\\operatorname{", "\\boxed{", "\\begin{pmatrix}",
    "\\end{pmatrix}", "\\begin{array}{cc}", "\\end{array}", "\\\\", "&", "\\sin", "\\cos", "\\tan",
    "\\log", "\\ln", "\\log_2", "\\exp", "\\binom", "\\alpha", "\\theta", "\\emptyset", "\\varnothing",
    "\\circ", "^\\circ", "\\%", "\\$", "\\,", "\\!", "\\;", "\\quad", "{,}", "\\approx", "\\degree",
    "{", "}", "(", ")", "[", "]", "|", "^", "_", "+", "-", "*", "/", "=", "<", ">", "!", "%", ",",
    ";", ":", ".", " ", "  ", "$", "\\(", "\\)", "\\[", "\\]", "0", "1", "2", "3", "5", "7", "9",
    "10", "0.5", "3.14", "1,000", "7 425 000", "0,5", "x", "y", "e", "i", "a_1", "x^2", "2x",
    "cm", " cm", " meters", "\\text{ hours}", "percent", " and ", " or ", " students", "Answer: ",
    "</think>", "<answer>", "</answer>", "(C)", "B", "°", "π", "√", "≤", "≥", "∞", "×", "÷", "−",
    "½", "公斤", "минут", "\u00a0", "\xff", "\xc3", "\xe2\x82", "\x00", "\t", "\n", "\\", "\\x",
    "\\righ", "t", "\\mathbf{", "\\hline", "\\displaystyle", "\\overline{", "\\vec{", "\\ldots",
    "1/2", "3\\frac{1}{2}", "7 3/4", "12:00", "3:4", "5!", "\\sqrt{2}", "\\{1,2\\}", "(1,2]",
]


def hexs(b):
    return b.hex()


def enc(s):
    return s if isinstance(s, bytes) else s.encode("utf-8", "surrogateescape")


def hostile(rng, n):
    out = []
    for _ in range(n):
        k = rng.randint(1, 24)
        toks = [rng.choice(TOKENS) for _ in range(k)]
        a = "".join(toks)
        m = list(toks)
        op = rng.randrange(3)
        if op == 0:
            m.insert(rng.randint(0, len(m)), rng.choice(TOKENS))
        elif op == 1 and len(m) > 1:
            del m[rng.randrange(len(m))]
        else:
            m[rng.randrange(len(m))] = rng.choice(TOKENS)
        b = "".join(m)
        out.append((enc_tok(a), enc_tok(b)))
    return out


def enc_tok(s):
    # tokens written as "\xff" above are single code points < 256 meant as raw bytes
    return b"".join(bytes([ord(c)]) if 0x80 <= ord(c) < 0x100 and c not in "°½\u00a0" else c.encode()
                    for c in s)


CPP_STR = re.compile(r'(?:u8)?"(?:[^"\\\n]|\\.)*"')


def cpp_literals(path):
    lits = []
    for m in CPP_STR.finditer(open(path, encoding="utf-8", errors="surrogateescape").read()):
        try:
            lits.append(enc(ast.literal_eval(m.group(0).lstrip("u8"))))
        except Exception:
            pass
    return lits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jsonl", nargs="*", default=[])
    ap.add_argument("--cpp", nargs="*", default=[])
    ap.add_argument("--seeds", nargs="*", default=[])
    ap.add_argument("--hostile", type=int, default=0)
    ap.add_argument("--seed", type=int, default=16)
    a = ap.parse_args()
    w = sys.stdout.write
    for f in a.jsonl:
        for line in open(f, encoding="utf-8"):
            if line.strip():
                d = json.loads(line)
                w(hexs(enc(d.get("gold", ""))) + " " + hexs(enc(d.get("pred", ""))) + "\n")
    for f in a.cpp:
        lits = cpp_literals(f)
        for i, s in enumerate(lits):
            w(hexs(s) + " " + hexs(s) + "\n")
            if i + 1 < len(lits):
                w(hexs(s) + " " + hexs(lits[i + 1]) + "\n")
    for d in a.seeds:
        for root, _, files in os.walk(d):
            for fn in sorted(files):
                s = open(os.path.join(root, fn), "rb").read()
                w(hexs(s) + " " + hexs(s) + "\n")
    rng = random.Random(a.seed)
    for g, p in hostile(rng, a.hostile):
        w(hexs(g) + " " + hexs(p) + "\n")


if __name__ == "__main__":
    main()
