# SPDX-License-Identifier: Apache-2.0
"""verl adapters: ``compute_score`` for ``custom_reward_function`` (path: this file, name:
compute_score) and ``compute_score_batch`` for the batch reward manager; no torch needed.

verl config::

    custom_reward_function:
      path: /path/to/site-packages/grpo/verl.py   # python -c "import grpo.verl; print(grpo.verl.__file__)"
      name: compute_score

For the loss, ``grpo.ops.policy_loss(..., options=grpo.ops.loss_options(verl={...}))`` reproduces
``compute_policy_loss_<loss_mode>`` + ``agg_loss`` (loss_agg_mode names as verl spells them).
"""
from .rewards import compute_score, compute_score_batch, make_compute_score

__all__ = ["compute_score", "compute_score_batch", "make_compute_score"]
