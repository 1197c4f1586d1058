# SPDX-License-Identifier: Apache-2.0
"""CUDA routes of grpo.ops (a build made with -C cmake.define.GRPO_PY_CUDA=ON): policy_loss,
logprob_entropy (forward and backward) and fused_grpo_step on CUDA tensors against the CPU path on
the same inputs, on torch's current stream (a side stream too), and their errors. Every test needs a
GPU and such a build: elsewhere it is skipped with the reason ("no GPU" first)."""
import pytest
import torch

import grpo
import grpo.ops as ops

HAS_GPU = torch.cuda.is_available()
pytestmark = [
    pytest.mark.skipif(not HAS_GPU, reason="no GPU"),
    pytest.mark.skipif(HAS_GPU and not grpo.built_with_cuda,
                       reason="grpo built without CUDA (pip install . -C "
                              "cmake.define.GRPO_PY_CUDA=ON)"),
]

DEV = torch.device("cuda", 0)


def data(seed=0, B=4, T=6, V=50, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(B, T, V, generator=g)).to(dtype)
    ids = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.float64)
    mask[1, 4:] = 0
    mask[3, 1:] = 0
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    old = -3.0 + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    ref = old + 0.1 * torch.randn(B, T, generator=g, dtype=torch.float64)
    return logits, ids, mask, adv, old, ref


def close(a, b, tol):
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    assert a.shape == b.shape
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= tol * max(1.0, b.abs().max().item()), err


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_logprob_entropy_matches_cpu(dtype):
    logits, ids, *_ = data(1, dtype=dtype)
    x_cpu = logits.clone().requires_grad_()
    x_gpu = logits.to(DEV).requires_grad_()
    lp_c, h_c = ops.logprob_entropy(x_cpu, ids, temperature=0.7)
    lp_g, h_g = ops.logprob_entropy(x_gpu, ids.to(DEV), temperature=0.7)
    assert lp_g.device == DEV
    close(lp_g, lp_c, 1e-5)
    close(h_g, h_c, 1e-5)
    w = torch.randn(lp_c.shape)
    (lp_c * w + h_c).sum().backward()
    (lp_g * w.to(DEV) + h_g).sum().backward()
    assert x_gpu.grad.dtype == dtype
    close(x_gpu.grad, x_cpu.grad, 1e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize("options", ["trl_grpo", "trl_dapo", "verl_vanilla", "trl_gspo",
                                     {"trl": {"loss_type": "grpo", "beta": 0.04}}])
def test_policy_loss_matches_cpu(options):
    logits, ids, mask, adv, old, ref = data(2)
    lp = torch.log_softmax(logits.double(), -1).gather(-1, ids[..., None])[..., 0]
    lp = (lp.float().double()).requires_grad_()  # float32-representable: the CUDA path reads fp32
    lp_g = lp.detach().to(DEV).requires_grad_()
    c = ops.policy_loss(lp, adv, mask, old, ref, options=options)
    g = ops.policy_loss(lp_g, adv.to(DEV), mask.to(DEV), old.to(DEV), ref.to(DEV),
                        options=options)
    close(g.loss, c.loss, 1e-5)
    c.loss.backward()
    g.loss.backward()
    close(lp_g.grad, lp.grad, 1e-5)
    assert torch.isnan(g.per_token_loss).all()  # not computed on the device
    close(g.stats[:4], c.stats[:4], 1e-5)


@pytest.mark.parametrize("options", ["trl_grpo", "trl_dapo", "trl_gspo"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_grpo_step_matches_cpu(options, dtype):
    logits, ids, mask, adv, old, ref = data(3, dtype=dtype)
    x_c = logits.clone().requires_grad_()
    x_g = logits.to(DEV).requires_grad_()
    c = ops.fused_grpo_step(x_c, ids, adv, mask, old, options=options)
    g = ops.fused_grpo_step(x_g, ids.to(DEV), adv.to(DEV), mask.to(DEV), old.to(DEV),
                            options=options)
    close(g.loss, c.loss, 1e-5)
    close(g.logp, c.logp, 1e-5)
    close(g.entropy, c.entropy, 1e-5)
    c.loss.backward()
    g.loss.backward()
    close(x_g.grad, x_c.grad, 1e-5 if dtype == torch.float32 else 1e-2)


def test_runs_on_the_current_stream():
    logits, ids, mask, adv, old, _ = data(4)
    want = ops.fused_grpo_step(logits, ids, adv, mask, old).loss
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        x = logits.to(DEV, non_blocking=True)
        out = ops.fused_grpo_step(x, ids.to(DEV), adv.to(DEV), mask.to(DEV), old.to(DEV))
        lp, _ = ops.logprob_entropy(x, ids.to(DEV))
    s.synchronize()
    close(out.loss, want, 1e-5)
    close(lp, ops.logprob_entropy(logits, ids)[0], 1e-5)


def test_cuda_errors():
    logits, ids, mask, adv, old, _ = data(5)
    x = logits.to(DEV)
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.out_of_range\]"):
        ops.logprob_entropy(x, torch.full(ids.shape, 999, device=DEV))
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_device\]"):  # mixed devices
        ops.fused_grpo_step(x, ids.to(DEV), adv, mask, old)
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_device\]"):  # not a routed op
        ops.kl_penalty(old.to(DEV), old.to(DEV))
