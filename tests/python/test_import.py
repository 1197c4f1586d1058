# SPDX-License-Identifier: Apache-2.0
"""`import grpo` and grpo.rewards work without torch; grpo.ops then fails with a clear ImportError.
The type stubs of the extension are installed next to it."""
import pathlib
import subprocess
import sys

import grpo

CODE = r"""
import sys
sys.modules["torch"] = None          # as if torch were not installed
import grpo
assert grpo.rewards.verify("\\frac12", "0.5") is True
assert grpo.rewards.score(["<think>\nx\n</think>\n<answer>\n1\n</answer>"], ["1"]).totals == [1.5]
import numpy as np                    # grpo.experience needs numpy only
kl = grpo.experience.kl_for_reward(np.zeros((1, 2)), np.full((1, 2), -1.0), np.ones((1, 2)), 0.5)
assert kl.tolist() == [[0.5, 0.5]], kl
assert grpo.experience.masked_whiten([[1.0, 3.0]], [[1.0, 1.0]], preset="openrlhf").tolist() == [
    [-1.0, 1.0]]
try:
    grpo.ops
except ImportError as e:
    assert "grpo.ops needs an optional dependency" in str(e), e
    print("ok")
"""


def test_import_without_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_stubs_and_marker_installed():
    pkg = pathlib.Path(grpo.__file__).parent
    assert (pkg / "py.typed").exists()
    stub = (pkg / "_C.pyi").read_text()
    assert "def compute_loss(" in stub and "class GrpoError(ValueError)" in stub
    for name in ("run_tests", "extract_code", "kl_for_reward", "masked_whiten", "verl_metrics",
                 "merge_stats", "openrlhf_advantages", "openrlhf_approx_kl", "openrlhf_metrics"):
        assert f"def {name}(" in stub, name
