# SPDX-License-Identifier: Apache-2.0
"""Bad inputs to grpo.ops raise grpo.GrpoError (a ValueError) carrying the [grpo.<id>]."""
import pytest
import torch

import grpo
import grpo.ops as ops


def _err(id_, fn):
    with pytest.raises(grpo.GrpoError) as e:
        fn()
    assert grpo.error_id(e.value) == id_, str(e.value)
    return str(e.value)


def test_loss_errors():
    lp = torch.zeros(2, 3, dtype=torch.float64)
    m = torch.ones(2, 3, dtype=torch.float64)
    msg = _err("shape_mismatch", lambda: ops.policy_loss(lp, torch.zeros(3), m))
    assert "advantages" in msg
    _err("shape_mismatch", lambda: ops.policy_loss(lp, torch.zeros(2), torch.ones(2, 4)))
    bad = lp.clone()
    bad[0, 0] = float("nan")
    _err("bad_value", lambda: ops.policy_loss(bad, torch.zeros(2), m, lp))
    _err("bad_option", lambda: ops.policy_loss(lp, torch.zeros(2), m, options="no_such_preset"))
    _err("bad_option", lambda: ops.loss_options(trl={"loss_type": "gspo"}))
    _err("bad_option", lambda: ops.loss_options(trl={"los_type": "grpo"}))
    _err("bad_option", lambda: ops.loss_options(verl={"loss_agg_mode": "mean"}))
    _err("shape_mismatch", lambda: ops.policy_loss(
        lp, torch.zeros(2), m, options=ops.loss_options(trl={"loss_type": "grpo", "beta": 0.1})))
    _err("bad_option", lambda: ops.loss_options())


def test_logprob_errors():
    logits = torch.randn(2, 3, 5)
    msg = _err("out_of_range", lambda: ops.logprob_entropy(logits, torch.full((2, 3), 5)))
    assert "ids" in msg
    bad = logits.clone()
    bad[0, 1, 2] = float("nan")
    _err("bad_value", lambda: ops.logprob_entropy(bad, torch.zeros(2, 3, dtype=torch.long)))
    _err("shape_mismatch", lambda: ops.logprob_entropy(logits, torch.zeros(2, 4, dtype=torch.long)))
    _err("bad_option", lambda: ops.logprob_entropy(logits, torch.zeros(2, 3, dtype=torch.long),
                                                   temperature=0.0))
    _err("out_of_range", lambda: ops.fused_grpo_step(
        logits, torch.full((2, 3), 7), torch.zeros(2), torch.ones(2, 3)))


def test_other_errors():
    _err("bad_option", lambda: ops.kl_penalty(torch.zeros(2, 2), torch.zeros(2, 2), "k7"))
    _err("bad_option", lambda: ops.aggregate(torch.zeros(2, 2), torch.ones(2, 2), "mean"))
    _err("bad_option", lambda: ops.group_advantages(torch.zeros(4), 2, estimator="magic"))
    _err("shape_mismatch", lambda: ops.group_advantages(torch.zeros(5), 2))
    _err("out_of_range", lambda: ops.sft_loss(torch.randn(2, 3, 4), torch.full((2, 3), 9)))
    _err("bad_option", lambda: ops.distill_loss(torch.randn(1, 2, 3), torch.randn(1, 2, 3),
                                                divergence="wasserstein"))
    _err("bad_option", lambda: ops.distill_loss(torch.randn(1, 2, 3), torch.randn(1, 2, 3),
                                                divergence="jsd", beta=1.5))


def test_cuda_tensors_refused_without_cuda_build():
    if grpo.built_with_cuda:
        pytest.skip("module built with CUDA")
    # A meta-free check that does not need a GPU: the descriptor refuses non-CPU devices.
    from grpo.ops import _d

    class FakeCuda:
        is_cpu = False
        device = torch.device("cuda", 0)

    _err("bad_device", lambda: _d(FakeCuda()))
