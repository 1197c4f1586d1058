# SPDX-License-Identifier: Apache-2.0
"""TRL GRPOTrainer with grpo's loss and grpo's verifier as reward, on CPU, no downloads.

    python examples/python/trl_grpo_tiny.py [--steps 4]

A 2-layer Qwen2 model (random init, ~60k parameters) and a character tokenizer are built locally
(tiny_local_model.py); the dataset is generated arithmetic. The rewards are grpo.rewards adapters:
accuracy (the math verifier against the `solution` column) plus a plain Python reward (the share of
digits in the completion) so that a random model already gets non-constant rewards and a real
gradient. About 15-20 s per step on one shared CPU core.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from trl import GRPOConfig  # noqa: E402

from grpo.rewards import trl_reward  # noqa: E402
from grpo.trl import GRPOTrainer  # noqa: E402
from tiny_local_model import arithmetic_dataset, make_model, make_tokenizer  # noqa: E402


def digit_share(completions, **kwargs):
    """A plain TRL reward function next to grpo's: share of digit characters."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--loss-type", default="dapo")
    ap.add_argument("--beta", type=float, default=0.04)
    args = ap.parse_args()
    tok = make_tokenizer()
    with tempfile.TemporaryDirectory() as out:
        # A local checkpoint directory (config + random weights + tokenizer): TRL loads the policy
        # and, with beta != 0, the frozen reference model from it; nothing is downloaded.
        model_dir = os.path.join(out, "tiny-qwen2")
        make_model(tok).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        cfg = GRPOConfig(output_dir=out, use_cpu=True, bf16=False, max_steps=args.steps,
                         per_device_train_batch_size=4, num_generations=4,
                         max_completion_length=12, learning_rate=1e-3, logging_steps=1,
                         loss_type=args.loss_type, beta=args.beta, report_to="none",
                         save_strategy="no", seed=0)
        trainer = GRPOTrainer(model=model_dir, args=cfg, processing_class=tok,
                              train_dataset=arithmetic_dataset(),
                              reward_funcs=[trl_reward("accuracy"), digit_share])
        result = trainer.train()
        for rec in trainer.state.log_history:
            if "loss" in rec:
                print({k: rec[k] for k in ("step", "loss", "grad_norm", "reward", "reward_std",
                                                     "rewards/grpo_accuracy/mean", "kl")
                       if k in rec})
        print("train_loss", result.training_loss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
