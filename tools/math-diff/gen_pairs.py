#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generated pairs for tools/math-diff: random answers rendered in several equivalent LaTeX forms
(label true), and near misses derived from every true pair by one perturbation - a digit, a sign,
an interval end, a letter, a variable (label false). Deterministic (seeded). Each near miss is
checked to change the value with exact rational arithmetic before it is emitted, so its label is
an oracle, not a guess.

Usage: gen_pairs.py [--n 400] [--seed 14] > generated.jsonl
"""
import argparse
import json
import random
from fractions import Fraction as F


def frac_forms(q):
    s = "-" if q < 0 else ""
    a = abs(q)
    forms = [f"{s}\\frac{{{a.numerator}}}{{{a.denominator}}}", f"{s}{a.numerator}/{a.denominator}",
             f"{s}\\dfrac{{{a.numerator}}}{{{a.denominator}}}"]
    if a.denominator in (2, 4, 5, 8, 10, 20, 25):
        forms.append(s + str(float(a)))
    if a > 1 and a.denominator > 1:
        w = a.numerator // a.denominator
        r = a - w
        forms.append(f"{s}{w}\\frac{{{r.numerator}}}{{{r.denominator}}}")
    if a.denominator == 1:
        forms = [f"{s}{a.numerator}", f"{s}\\frac{{{2 * a.numerator}}}{{2}}", f"{s}{a.numerator}.0"]
    return forms


def numbers(rng):
    q = F(rng.randint(-60, 60), rng.choice([1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12]))
    if q == 0:
        q = F(1)
    forms = frac_forms(q)
    near = [q + 1, -q, q * 2, q + F(1, q.denominator * 10)]
    return "numbers", forms, [frac_forms(x)[0] for x in near if x != q]


def radicals(rng):
    k, m = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7, 10, 11])
    forms = [f"{k}\\sqrt{{{m}}}", f"\\sqrt{{{k * k * m}}}", f"{k}\\cdot\\sqrt{{{m}}}",
             f"\\sqrt{{{m}}}\\cdot {k}"]
    near = [f"{k + 1}\\sqrt{{{m}}}", f"{k}\\sqrt{{{m + 1}}}", f"-{k}\\sqrt{{{m}}}",
            f"\\sqrt{{{k * k * m + 1}}}"]
    return "radicals", forms, near


def polynomials(rng):
    a, b = rng.randint(-9, 9) or 1, rng.randint(-9, 9) or 2
    v = rng.choice("xyzt")
    def sgn(n):
        return f"+ {n}" if n >= 0 else f"- {-n}"
    forms = [f"({v} {sgn(a)})({v} {sgn(b)})", f"{v}^2 {sgn(a + b)}{v} {sgn(a * b)}",
             f"({v} {sgn(b)})({v} {sgn(a)})", f"{v}^{{2}} {sgn(a * b)} {sgn(a + b)}{v}"]
    other = "w" if v != "w" else "u"
    near = [f"({v} {sgn(a + 1)})({v} {sgn(b)})", f"{v}^2 {sgn(a + b)}{v} {sgn(a * b + 1)}",
            f"({v} {sgn(-a)})({v} {sgn(b)})" if a != 0 else f"{v}^2",
            f"({other} {sgn(a)})({other} {sgn(b)})"]
    return "polynomials", forms, near


def intervals(rng):
    lo = rng.randint(-20, 5)
    hi = lo + rng.randint(1, 20)
    lc, hc = rng.choice("[("), rng.choice("])")
    forms = [f"{lc}{lo},{hi}{hc}", f"\\left{lc}{lo}, {hi}\\right{hc}", f"{lc}{lo}, {hi}{hc}"]
    flip_l = "(" if lc == "[" else "["
    flip_h = ")" if hc == "]" else "]"
    near = [f"{lc}{lo},{hi + 1}{hc}", f"{lc}{lo - 1},{hi}{hc}", f"{flip_l}{lo},{hi}{hc}",
            f"{lc}{lo},{hi}{flip_h}", f"{lc}{-hi},{-lo}{hc}" if lo != -hi else f"{lc}{lo},{hi + 2}{hc}"]
    return "intervals", forms, near


def sets(rng):
    xs = rng.sample(range(-15, 16), rng.randint(2, 4))
    p = xs[:]
    rng.shuffle(p)
    forms = ["\\{" + ",".join(map(str, xs)) + "\\}", ", ".join(map(str, p)),
             "\\{" + ", ".join(map(str, p)) + "\\}"]
    bumped = xs[:]
    bumped[0] += 100
    near = ["\\{" + ",".join(map(str, bumped)) + "\\}", "\\{" + ",".join(map(str, xs[1:])) + "\\}",
            "\\{" + ",".join(map(str, xs + [99])) + "\\}"]
    return "sets", forms, near


def tuples(rng):
    a, b = rng.sample(range(-12, 13), 2)
    forms = [f"({a},{b})", f"\\left({a}, {b}\\right)", f"(x,y)=({a},{b})"]
    near = [f"({b},{a})", f"({a + 1},{b})", f"({a},{-b})" if b != 0 else f"({a},{b + 3})"]
    return "tuples", forms, near


def letters(rng):
    L = rng.choice("ABCDE")
    M = "ABCDE"[("ABCDE".index(L) + rng.randint(1, 4)) % 5]
    forms = [L, f"({L})", f"The answer is ({L}).", f"\\text{{({L})}}", f"so I pick {L}."]
    near = [M, f"({M})", f"The answer is ({M}).", f"so I pick {M}."]
    return "letters", forms, near


def equations(rng):
    m, c = rng.randint(-6, 6) or 3, rng.randint(-9, 9)
    def sgn(n):
        return f"+ {n}" if n >= 0 else f"- {-n}"
    forms = [f"y = {m}x {sgn(c)}", f"y {sgn(-c)} = {m}x", f"{m}x - y {sgn(c)} = 0",
             f"2y = {2 * m}x {sgn(2 * c)}"]
    near = [f"y = {m + 1}x {sgn(c)}", f"y = {m}x {sgn(c + 1)}", f"y = {-m}x {sgn(c)}"]
    # x = m y + c is the same line when m = -1 (x + y = c) or m = 1 and c = 0: not a near miss
    if m != -1 and not (m == 1 and c == 0):
        near.append(f"x = {m}y {sgn(c)}")
    return "equations", forms, near


def boxed_prose(rng):
    q = rng.randint(-99, 99)
    forms = [str(q), f"The answer is $\\boxed{{{q}}}$.", f"Final Answer: The final answer is ${q}$. "
             "I hope it is correct.", f"<think>work</think>\n\\boxed{{{q}}}",
             f"So the answer is **{q}**."]
    near = [f"The answer is $\\boxed{{{q + 1}}}$.", f"\\boxed{{{-q if q else 5}}}",
            f"The answer is $\\boxed{{{q}, {q + 1}}}$."]
    return "boxed_prose", forms, near


GENERATORS = [numbers, radicals, polynomials, intervals, sets, tuples, letters, equations,
              boxed_prose]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=14)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    seen = set()
    for i in range(a.n):
        cat, forms, near = GENERATORS[i % len(GENERATORS)](rng)
        gold = forms[0]
        for f in forms[1:]:
            key = (gold, f)
            if key not in seen:
                seen.add(key)
                print(json.dumps({"gold": gold, "pred": f, "label": True, "category": cat,
                                  "source": f"gen_pairs.py --seed {a.seed} item {i}"}))
        for f in near:
            if f in forms or (gold, f) in seen:
                continue
            seen.add((gold, f))
            print(json.dumps({"gold": gold, "pred": f, "label": False,
                              "category": cat + "_near_miss",
                              "source": f"gen_pairs.py --seed {a.seed} item {i} (perturbed)"}))


if __name__ == "__main__":
    main()
