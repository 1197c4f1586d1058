# SPDX-License-Identifier: Apache-2.0
"""The README's ten-line PyTorch example (the python block under "Python") trains with grpo's
loss: the advantage-weighted log-likelihood rises and the loss falls."""
import pathlib
import re

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"```python\n(import torch, grpo\.ops as G\n.*?)```", text, re.S)
    assert m, "README.md has no ten-line grpo.ops example"
    return m.group(1)


def run(code: str, steps: int) -> dict:
    torch.manual_seed(0)
    ns: dict = {}
    exec(compile(code.replace("range(20)", f"range({steps})"), "README.md", "exec"), ns)
    return ns


def test_readme_ten_lines_train():
    code = readme_block()
    assert len([line for line in code.splitlines() if line.strip()]) <= 12
    import grpo.ops as G

    def objective(ns):
        with torch.no_grad():
            logp, _ = G.logprob_entropy(ns["policy"](ns["ids"]), ns["ids"])
            return float((ns["adv"].float() * logp.sum(-1)).sum())

    before = objective(run(code, 0))
    ns = run(code, 20)
    after = objective(ns)
    assert after > before + 1.0, (before, after)
