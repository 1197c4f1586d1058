# SPDX-License-Identifier: Apache-2.0
"""grpo.trl.GRPOTrainer: its loss and gradients equal trl.GRPOTrainer's own _compute_loss on the
same inputs (every mapped loss_type), and the CPU example trains a step. Skipped without trl."""
import os
import pathlib
import subprocess
import sys

import pytest
import torch

trl = pytest.importorskip("trl")
pytest.importorskip("transformers")

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "python"))

import grpo.trl as gt  # noqa: E402
from tiny_local_model import arithmetic_dataset, make_model, make_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    out = tmp_path_factory.mktemp("trl")
    tok = make_tokenizer()
    model_dir = str(out / "tiny")
    make_model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    cfg = trl.GRPOConfig(output_dir=str(out), use_cpu=True, bf16=False, max_steps=1,
                         per_device_train_batch_size=4, num_generations=4,
                         max_completion_length=6, beta=0.04, report_to="none",
                         save_strategy="no")
    t = gt.GRPOTrainer(model=model_dir, args=cfg, processing_class=tok,
                       train_dataset=arithmetic_dataset(8), reward_funcs=[lambda completions, **k:
                                                                          [0.0] * len(completions)])
    t.current_gradient_accumulation_steps = 1
    t.model.train()
    return t


def _inputs(trainer, seed):
    g = torch.Generator().manual_seed(seed)
    B, P, C = 4, 5, 6
    V = trainer.model.config.vocab_size
    cm = torch.ones(B, C, dtype=torch.long)
    cm[1, 4:] = 0
    cm[3, 2:] = 0
    inputs = {"prompt_ids": torch.randint(3, V, (B, P), generator=g),
              "prompt_mask": torch.ones(B, P, dtype=torch.long),
              "completion_ids": torch.randint(3, V, (B, C), generator=g),
              "completion_mask": cm,
              "advantages": torch.randn(B, generator=g),
              "num_items_in_batch": cm.sum().float()}
    with torch.no_grad():
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        am = torch.cat([inputs["prompt_mask"], cm], 1)
        lp = trainer._get_per_token_logps_and_entropies(trainer.model, ids, am, C)[0]
    inputs["old_per_token_logps"] = lp + 0.3 * torch.randn(B, C, generator=g)
    inputs["ref_per_token_logps"] = lp + 0.3 * torch.randn(B, C, generator=g)
    return inputs


def _loss_and_grads(fn, trainer, inputs):
    trainer.model.zero_grad()
    loss = fn(trainer, trainer.model, inputs)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]


@pytest.mark.parametrize("loss_type,level", [("grpo", "token"), ("grpo", "sequence"),
                                             ("dapo", "token"), ("bnpo", "token"),
                                             ("dr_grpo", "token"), ("cispo", "token"),
                                             ("sapo", "token"), ("luspo", "sequence")])
def test_grpo_loss_equals_trl_loss(trainer, loss_type, level):
    trainer.loss_type = loss_type
    trainer.importance_sampling_level = level
    if loss_type == "cispo":
        trainer.epsilon_high = 5.0
    else:
        trainer.epsilon_high = 0.28
    inputs = _inputs(trainer, seed=hash(loss_type + level) % 1000)
    want, gw = _loss_and_grads(trl.GRPOTrainer._compute_loss, trainer, inputs)
    got, gg = _loss_and_grads(gt.GRPOTrainer._compute_loss, trainer, inputs)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert len(gg) == len(gw) and len(gg) > 0
    for a, b in zip(gg, gw):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_trl_example_runs_one_step():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "python" / "trl_grpo_tiny.py"),
                          "--steps", "1"], capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "train_loss" in out.stdout
