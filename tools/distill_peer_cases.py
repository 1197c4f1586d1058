# SPDX-License-Identifier: Apache-2.0
"""Generate tests/distill/data/peer_jsd_cases.json: distillation losses and student-logit gradients
produced by the peers' OWN code, run in float64 with torch's autograd.

Peers (their source is read from a git snapshot given on the command line, never copied here):
  * TRL   trl/experimental/gkd/gkd_trainer.py   GKDTrainer.generalized_jsd_loss
  * Liger src/liger_kernel/chunked_loss/jsd_loss.py
          LigerFusedLinearJSDFunction.distillation_loss_fn (the torch reference the fused kernel
          calls per chunk)

Each function is located in the snapshot file with `ast`, its decorators (@staticmethod) are
dropped, and the function definition is compiled and executed alone with the names it uses
(torch, torch.nn.functional as F, math): importing the whole modules would pull in transformers /
triton. The body that runs is the peer's, byte for byte.

Usage (the snapshots are bare git directories, e.g. from the fetch tool):
  python tools/distill_peer_cases.py --trl /work/.mirror/huggingface+trl/repo \
      --liger /work/.mirror/linkedin+Liger-Kernel/repo -o tests/distill/data/peer_jsd_cases.json
Only torch is needed (tested with torch 2.15.0 CPU).
"""

import argparse
import ast
import json
import math
import subprocess

import torch
import torch.nn.functional as F

TRL_FILE = "trl/experimental/gkd/gkd_trainer.py"
TRL_FN = ("GKDTrainer", "generalized_jsd_loss")
LIGER_FILE = "src/liger_kernel/chunked_loss/jsd_loss.py"
LIGER_FN = ("LigerFusedLinearJSDFunction", "distillation_loss_fn")


def git(repo, *args):
    return subprocess.check_output(["git", "--git-dir", repo, *args], text=True)


def load_peer_function(repo, path, cls, fn):
    """Returns (callable, provenance) for method `cls.fn` of `path` at the snapshot's HEAD."""
    commit = git(repo, "rev-parse", "HEAD").strip()
    src = git(repo, "show", f"{commit}:{path}")
    tree = ast.parse(src)
    node = None
    for top in tree.body:
        if isinstance(top, ast.ClassDef) and top.name == cls:
            for item in top.body:
                if isinstance(item, ast.FunctionDef) and item.name == fn:
                    node = item
    if node is None:
        raise SystemExit(f"{cls}.{fn} not found in {path} @ {commit}")
    node.decorator_list = []  # @staticmethod: run as a plain function
    module = ast.Module(body=[node], type_ignores=[])
    ns = {"torch": torch, "F": F, "math": math}
    exec(compile(module, f"{repo}:{commit}:{path}", "exec"), ns)
    prov = {
        "file": path,
        "function": f"{cls}.{fn}",
        "commit": commit,
        "lines": [node.lineno, node.end_lineno],
    }
    return ns[fn], prov


def tensor_list(t):
    return t.detach().tolist()


def make_logits(gen, shape, scale, shift=0.0):
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift).contiguous()


def trl_cases(fn, prov, gen):
    out = []
    B, L, V = 2, 3, 7
    labels = torch.tensor([[5, -100, 2], [-100, 1, 3]], dtype=torch.int64)
    k = 0
    for beta in (0.0, 0.1, 0.5, 0.9, 1.0):
        for temperature in (1.0, 2.0, 0.7):
            for reduction, use_labels, n_items in (
                ("batchmean", True, None),
                ("batchmean", False, None),
                ("sum", True, None),
                ("batchmean", True, 11.0),
            ):
                k += 1
                s = make_logits(gen, (B, L, V), 2.0)
                t = make_logits(gen, (B, L, V), 3.0, 1.5)
                if k % 5 == 0:  # a sharp teacher row (near one-hot after the softmax)
                    t[0, 0, 3] += 25.0
                s.requires_grad_(True)
                loss = fn(s, t, labels=labels if use_labels else None, beta=beta,
                          temperature=temperature, reduction=reduction,
                          num_items_in_batch=n_items)
                loss.backward()
                out.append({
                    "id": f"trl-gjsd-{k:03d}",
                    "peer": "trl",
                    "source": prov,
                    "args": {"beta": beta, "temperature": temperature, "reduction": reduction,
                             "labels": use_labels, "num_items_in_batch": n_items},
                    "inputs": {
                        "student_logits": tensor_list(s),
                        "teacher_logits": tensor_list(t),
                        "labels": tensor_list(labels) if use_labels else None,
                    },
                    "outputs": {"loss": loss.item(), "grad_student_logits": tensor_list(s.grad)},
                })
    return out


def liger_cases(fn, prov, gen):
    out = []
    N, V = 5, 6
    target = torch.tensor([3, -100, 0, 5, -100], dtype=torch.int64)
    k = 0
    for beta in (0.0, 0.25, 0.5, 0.75, 1.0):
        for use_target in (True, False):
            k += 1
            s = make_logits(gen, (N, V), 1.5)
            t = make_logits(gen, (N, V), 2.5, -0.5)
            s.requires_grad_(True)
            loss = fn(s, t, beta=beta, target=target if use_target else None, ignore_index=-100)
            loss.backward()
            out.append({
                "id": f"liger-jsd-{k:03d}",
                "peer": "liger",
                "source": prov,
                "args": {"beta": beta, "ignore_index": -100, "target": use_target},
                "inputs": {
                    "student_logits": tensor_list(s),
                    "teacher_logits": tensor_list(t),
                    "labels": tensor_list(target) if use_target else None,
                },
                "outputs": {"loss": loss.item(), "grad_student_logits": tensor_list(s.grad)},
            })
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trl", required=True, help="git dir of a huggingface/trl snapshot")
    ap.add_argument("--liger", required=True, help="git dir of a linkedin/Liger-Kernel snapshot")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(20260)
    trl_fn, trl_prov = load_peer_function(a.trl, TRL_FILE, *TRL_FN)
    trl_prov["repo"] = "huggingface/trl"
    liger_fn, liger_prov = load_peer_function(a.liger, LIGER_FILE, *LIGER_FN)
    liger_prov["repo"] = "linkedin/Liger-Kernel"
    doc = {
        "generator": "tools/distill_peer_cases.py",
        "torch": torch.__version__,
        "dtype": "float64",
        "cases": trl_cases(trl_fn, trl_prov, gen) + liger_cases(liger_fn, liger_prov, gen),
    }
    with open(a.output, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{len(doc['cases'])} cases -> {a.output}")


if __name__ == "__main__":
    main()
