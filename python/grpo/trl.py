# SPDX-License-Identifier: Apache-2.0
"""TRL drop-in: ``grpo.trl.GRPOTrainer`` is ``trl.GRPOTrainer`` with its loss computed by grpo.

Only ``_compute_loss`` changes: the per-token log-probs and entropies still come from TRL's own
model forward (``_get_per_token_logps_and_entropies``), then ``grpo.ops.policy_loss`` computes the
objective TRL's ``loss_type`` / ``importance_sampling_level`` / ``beta`` / ``epsilon*`` /
``delta`` / ``off_policy_mask_threshold`` / ``top_entropy_quantile`` / ``entropy_coef`` describe
(``grpo::from_trl``, which reproduces TRL's ``_compute_loss`` to 1e-10 on the peer cases) with its
gradient computed in C++. Configurations this subclass does not map (vLLM importance-sampling
correction, adaptive entropy, auxiliary MoE loss) fall back to TRL's own loss, so results never
silently differ. Reward functions: ``grpo.rewards.trl_reward("accuracy")`` and friends.

    from grpo.trl import GRPOTrainer
    from grpo.rewards import trl_reward
    trainer = GRPOTrainer(model=model, args=GRPOConfig(...), train_dataset=ds,
                          processing_class=tokenizer,
                          reward_funcs=[trl_reward("accuracy"), trl_reward("format")])
"""
from __future__ import annotations

from typing import Any, Dict

import torch
import trl as _trl

from . import ops

__all__ = ["GRPOTrainer", "trl_loss_options"]


def trl_loss_options(trainer: Any, inputs: Dict[str, Any], train: bool) -> str:
    """grpo loss options equal to what `trainer._compute_loss` would compute for `inputs`."""
    a = trainer.args
    ga = trainer.current_gradient_accumulation_steps if train else 1
    opts: Dict[str, Any] = {
        "loss_type": trainer.loss_type,
        "beta": float(trainer.beta),
        "epsilon": float(trainer.epsilon_low),
        "epsilon_high": float(trainer.epsilon_high),
        "delta": getattr(a, "delta", None),
        "importance_sampling_level": trainer.importance_sampling_level,
        "max_completion_length": float(trainer.max_completion_length),
        "sapo_temperature_pos": float(getattr(a, "sapo_temperature_pos", 1.0)),
        "sapo_temperature_neg": float(getattr(a, "sapo_temperature_neg", 1.05)),
        "use_bias_correction_kl": bool(getattr(a, "use_bias_correction_kl", False)),
        "off_policy_mask_threshold": getattr(trainer, "off_policy_mask_threshold", None),
        "top_entropy_quantile": float(trainer.top_entropy_quantile),
        "num_processes": float(trainer.accelerator.num_processes),
        "gradient_accumulation_steps": float(ga),
    }
    if getattr(trainer, "_entropy_bonus_enabled", False):
        opts["entropy_coef"] = float(trainer.entropy_coef)
    if trainer.loss_type in ("dapo", "cispo", "vespo"):
        opts["num_items_in_batch"] = float(inputs["num_items_in_batch"])
        if train:
            opts["steps_per_generation"] = float(a.steps_per_generation)
    if trainer.loss_type == "vespo":
        for k in ("vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg"):
            if hasattr(a, k):
                opts[k] = float(getattr(a, k))
    return ops.loss_options(trl=opts)


class GRPOTrainer(_trl.GRPOTrainer):
    """trl.GRPOTrainer whose loss (value, gradient, clip metrics) is grpo's."""

    def _grpo_supported(self) -> bool:
        vllm_is = getattr(self, "use_vllm", False) and getattr(
            self, "vllm_importance_sampling_correction", False)
        return not (vllm_is or getattr(self, "use_adaptive_entropy", False)
                    or getattr(self, "aux_loss_enabled", False))

    def _compute_loss(self, model, inputs):
        if not self._grpo_supported():
            return super()._compute_loss(model, inputs)
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        extra = {k: inputs.get(k) for k in ("pixel_values", "image_grid_thw", "num_images",
                                            "pixel_attention_mask", "image_sizes",
                                            "token_type_ids") if inputs.get(k) is not None}
        res = self._get_per_token_logps_and_entropies(model, input_ids, attention_mask,
                                                      completion_ids.size(1), compute_entropy=True,
                                                      **extra)
        logps, entropies = res[0], res[1]
        train = self.model.training
        need_h = self.top_entropy_quantile < 1.0 or getattr(self, "_entropy_bonus_enabled", False)
        old = inputs.get("old_per_token_logps")
        out = ops.policy_loss(
            logps, inputs["advantages"], mask, old, inputs.get("ref_per_token_logps"),
            entropy=entropies if need_h else None,
            sampler_logp=inputs.get("sampling_per_token_logps"),
            options=trl_loss_options(self, inputs, train))
        m = ops.metrics_dict(out.stats)
        mode = "train" if train else "eval"
        gather = self.accelerator.gather

        def log(key, value):
            self._metrics[mode][key].append(gather(torch.tensor(value, device=logps.device))
                                            .nanmean().item())

        log("clip_ratio/low_mean", m["clip_low"])
        log("clip_ratio/high_mean", m["clip_high"])
        log("clip_ratio/region_mean", m["clip_region"])
        if self.beta != 0.0:
            log("kl", m["kl"])
        return out.loss.to(logps.dtype)
