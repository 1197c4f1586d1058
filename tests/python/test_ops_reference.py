# SPDX-License-Identifier: Apache-2.0
"""Every op against a plain-PyTorch float64 reference: values and autograd gradients; dtypes
(float32 / bfloat16 / float16 / float64) and strides (transposed / sliced inputs, zero-copy)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import grpo
import grpo.ops as ops
import reference as ref

torch.manual_seed(0)


def batch(B=4, T=6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    lp = -1.5 + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)
    old = lp + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    refl = lp + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.float64)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    return [x.to(dtype) for x in (lp, old, refl, adv, mask)]


def grads(fn, *xs):
    xs = [x.detach().clone().requires_grad_() for x in xs]
    v = fn(*xs)
    v.backward()
    return v.detach(), [x.grad for x in xs]


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_policy_loss_trl_grpo_vs_torch(level, beta):
    lp, old, refl, adv, mask = batch()
    opts = ops.loss_options(trl={"loss_type": "grpo", "beta": beta,
                                 "importance_sampling_level": level})
    got, (g_got,) = grads(lambda x: ops.policy_loss(x, adv, mask, old, refl, options=opts).loss, lp)
    want, (g_want,) = grads(lambda x: ref.trl_grpo_loss(x, old, adv, mask, refl, beta, level=level),
                            lp)
    assert abs(got.item() - want.item()) < 1e-12
    assert torch.allclose(g_got, g_want, atol=1e-12, rtol=0)


def test_policy_loss_dapo_vs_torch():
    lp, old, _, adv, mask = batch(seed=3)
    opts = ops.loss_options(trl={"loss_type": "dapo", "epsilon_high": 0.28})
    got, (g_got,) = grads(lambda x: ops.policy_loss(x, adv, mask, old, options=opts).loss, lp)
    want, (g_want,) = grads(lambda x: ref.dapo_loss(x, old, adv, mask), lp)
    assert abs(got.item() - want.item()) < 1e-12
    assert torch.allclose(g_got, g_want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["trl_grpo", "trl_bnpo", "trl_dr_grpo", "trl_dapo", "trl_cispo",
                                  "trl_sapo", "trl_luspo", "trl_vespo", "trl_gspo", "trl_gmpo",
                                  "verl_vanilla", "verl_gspo", "verl_sapo", "verl_cispo",
                                  "verl_geo_mean", "openrlhf"])
def test_every_preset_runs_and_matches_float32(name):
    """Every named preset: float64 finite, float32 within 1e-5 of it (same C++ engine, different
    storage), strided (transposed storage) identical to contiguous."""
    lp, old, refl, adv, mask = batch(seed=5)
    lp64 = lp.clone().requires_grad_()
    r64 = ops.policy_loss(lp64, adv, mask, old, refl, options=name)
    r64.loss.backward()
    assert torch.isfinite(r64.loss) and torch.isfinite(lp64.grad).all()
    lp32 = lp.float().requires_grad_()
    r32 = ops.policy_loss(lp32, adv.float(), mask.float(), old.float(), refl.float(), options=name)
    r32.loss.backward()
    assert r32.loss.dtype == torch.float32 and lp32.grad.dtype == torch.float32
    assert abs(r32.loss.item() - r64.loss.item()) < 1e-5
    assert torch.allclose(lp32.grad.double(), lp64.grad, atol=1e-5)
    # transposed storage: a [T, B] buffer viewed as [B, T] (non-unit inner stride)
    lpt = lp.t().contiguous().t().requires_grad_()
    assert lpt.stride() == (1, lp.shape[0])
    rt = ops.policy_loss(lpt, adv, mask.t().contiguous().t(), old.t().contiguous().t(),
                         refl.t().contiguous().t(), options=name)
    rt.loss.backward()
    assert abs(rt.loss.item() - r64.loss.item()) < 1e-13
    assert torch.allclose(lpt.grad, lp64.grad, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_policy_loss_half_inputs_computed_in_float32(dtype):
    lp, old, _, adv, mask = batch(seed=7)
    x = lp.to(dtype).requires_grad_()
    r = ops.policy_loss(x, adv, mask, old.to(dtype), options="trl_grpo")
    r.loss.backward()
    assert x.grad.dtype == dtype
    want, (g_want,) = grads(lambda y: ref.trl_grpo_loss(y, old.to(dtype).double(), adv, mask),
                            lp.to(dtype).double())
    assert abs(r.loss.item() - want.item()) < 1e-5
    assert torch.allclose(x.grad.double(), g_want, atol=2e-2 if dtype == torch.bfloat16 else 2e-3)


@pytest.mark.parametrize("est", ["k1", "abs", "k2", "k3", "low_var_kl", "k3+"])
def test_kl_vs_torch(est):
    lp, _, refl, _, _ = batch(seed=2)

    def want_fn(a, b):
        d = a - b
        base = est.rstrip("+")
        if base == "k1":
            v = d
        elif base == "abs":
            v = d.abs()
        elif base == "k2":
            v = 0.5 * d * d
        else:
            v = torch.exp(-d) + d - 1
            if est == "low_var_kl":
                v = torch.clamp(torch.exp(torch.clamp(-d, -20, 20)) + d - 1, -10, 10)
        if est.endswith("+"):  # straight-through: value of v, gradient of k2
            k2 = 0.5 * d * d
            v = k2 - k2.detach() + v.detach()
        return v

    got, (g1, g2) = grads(lambda a, b: (ops.kl_penalty(a, b, est) * torch.arange(
        1.0, 7.0, dtype=torch.float64)).sum(), lp, refl)
    want, (w1, w2) = grads(lambda a, b: (want_fn(a, b) * torch.arange(
        1.0, 7.0, dtype=torch.float64)).sum(), lp, refl)
    assert abs(got.item() - want.item()) < 1e-11
    assert torch.allclose(g1, w1, atol=1e-12) and torch.allclose(g2, w2, atol=1e-12)


def test_aggregate_modes_vs_torch():
    L, _, _, _, mask = batch(seed=4)
    n = mask.sum(-1)
    want = {
        "token-mean": lambda x: (x * mask).sum() / mask.sum(),
        "token-sum": lambda x: (x * mask).sum(),
        "seq-mean-token-sum": lambda x: (x * mask).sum(-1).mean(),
        "seq-mean-token-mean": lambda x: ((x * mask).sum(-1) / (n + 1e-8)).mean(),
        "seq-mean-token-sum-norm": lambda x: ((x * mask).sum(-1) / x.shape[1]).mean(),
    }
    for mode, fn in want.items():
        got, (g,) = grads(lambda x: ops.aggregate(x, mask, mode), L)
        w, (gw,) = grads(fn, L)
        assert abs(got.item() - w.item()) < 1e-12, mode
        assert torch.allclose(g, gw, atol=1e-12), mode


def test_advantages_vs_torch():
    g = torch.Generator().manual_seed(1)
    r = torch.randint(0, 2, (16,), generator=g).double() + 0.1 * torch.randn(16, generator=g,
                                                                             dtype=torch.float64)
    a = ops.group_advantages(r, 4, estimator="trl")
    rg = r.view(4, 4)
    want = ((rg - rg.mean(1, keepdim=True)) / (rg.std(1, keepdim=True) + 1e-4)).view(-1)
    assert torch.allclose(a, want, atol=1e-13)
    a2 = ops.group_advantages(r.numpy(), 4, estimator="verl_grpo")
    want2 = ((rg - rg.mean(1, keepdim=True)) / (rg.std(1, keepdim=True) + 1e-6)).view(-1)
    assert isinstance(a2, np.ndarray) and np.allclose(a2, want2.numpy(), atol=1e-13)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.bfloat16, 2e-5),
                                       (torch.float16, 2e-5), (torch.float64, 2e-5)])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprob_entropy_vs_torch(dtype, tol, temperature):
    g = torch.Generator().manual_seed(3)
    B, T, V = 2, 5, 301
    logits = (3 * torch.randn(B, T, V, generator=g)).to(dtype)
    ids = torch.randint(0, V, (B, T), generator=g)
    wl = torch.randn(B, T, dtype=torch.float64)
    wh = torch.randn(B, T, dtype=torch.float64)
    x = logits.clone().requires_grad_()
    lp, h = ops.logprob_entropy(x, ids, temperature=temperature)
    assert lp.dtype == torch.float32
    ((lp.double() * wl).sum() + (h.double() * wh).sum()).backward()
    assert x.grad.dtype == dtype
    xr = logits.double().requires_grad_()  # the reference reads the same stored values
    lpr, hr = ref.logprob_entropy(xr, ids, temperature)
    ((lpr * wl).sum() + (hr * wh).sum()).backward()
    assert torch.allclose(lp.double(), lpr, atol=tol * 10)
    assert torch.allclose(h.double(), hr, atol=tol * 10)
    gtol = {torch.bfloat16: 2e-2, torch.float16: 2e-3}.get(dtype, tol)
    assert torch.allclose(x.grad.double(), xr.grad, atol=gtol)


def test_logprob_entropy_strided_and_ignore_index():
    g = torch.Generator().manual_seed(4)
    big = torch.randn(3, 8, 200, generator=g)
    logits = big[:, ::2, 1:151]  # sliced: strides (1600, 400, 1), not contiguous
    ids = torch.randint(0, 150, (3, 4), generator=g)
    ids[1, 2] = -100
    lp, h = ops.logprob_entropy(logits, ids)
    lpr, hr = ref.logprob_entropy(logits.double(), ids.clamp(min=0))
    keep = ids != -100
    assert torch.allclose(lp.double()[keep], lpr[keep], atol=1e-5)
    assert lp[1, 2] == 0 and h[1, 2] == 0
    # [N, V] form
    lp2, _ = ops.logprob_entropy(logits.reshape(-1, 150), ids.reshape(-1))
    assert torch.equal(lp2, lp.reshape(-1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_grpo_step_vs_torch(dtype):
    g = torch.Generator().manual_seed(5)
    B, T, V = 3, 4, 97
    logits = (2 * torch.randn(B, T, V, generator=g)).to(dtype)
    ids = torch.randint(0, V, (B, T), generator=g)
    _, _, _, adv, _ = batch(B=B, T=T, seed=6)
    mask = torch.ones(B, T, dtype=torch.float64)
    mask[0, 3] = 0
    with torch.no_grad():
        lp0, _ = ref.logprob_entropy(logits.double(), ids)
    old = lp0 + 0.2 * torch.randn(B, T, generator=g, dtype=torch.float64)
    refl = lp0 + 0.2 * torch.randn(B, T, generator=g, dtype=torch.float64)
    opts = ops.loss_options(trl={"loss_type": "grpo", "beta": 0.04})
    x = logits.clone().requires_grad_()
    out = ops.fused_grpo_step(x, ids, adv, mask, old, refl, options=opts)
    out.loss.backward()
    xr = logits.double().requires_grad_()
    lpr, _ = ref.logprob_entropy(xr, ids)
    want = ref.trl_grpo_loss(lpr, old, adv, mask, refl, beta=0.04)
    want.backward()
    assert abs(out.loss.item() - want.item()) < 1e-5
    assert torch.allclose(out.logp.double()[mask > 0], lpr.detach()[mask > 0], atol=1e-5)
    atol = 1e-6 if dtype == torch.float32 else 2e-3
    assert x.grad.dtype == dtype
    assert torch.allclose(x.grad.double(), xr.grad, atol=atol)
    # same loss as logprob_entropy + policy_loss (two-step path)
    lp2, _ = ops.logprob_entropy(logits, ids)
    r2 = ops.policy_loss(lp2.double(), adv, mask, old, refl, options=opts)
    assert abs(r2.loss.item() - out.loss.item()) < 1e-6


def test_fused_linear_grpo_step_vs_torch():
    g = torch.Generator().manual_seed(8)
    B, T, H, V = 2, 5, 16, 53
    hidden = torch.randn(B, T, H, generator=g)
    weight = 0.3 * torch.randn(V, H, generator=g)
    ids = torch.randint(0, V, (B, T), generator=g)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.float64)
    mask[1, 3:] = 0
    with torch.no_grad():
        lp0, _ = ref.logprob_entropy((hidden @ weight.t()).double(), ids)
    old = lp0 + 0.2 * torch.randn(B, T, generator=g, dtype=torch.float64)
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    opts = ops.loss_options(trl={"loss_type": "dapo", "epsilon_high": 0.28})
    out = ops.fused_linear_grpo_step(h, w, ids, adv, mask, old, options=opts)
    out.loss.backward()
    hr = hidden.double().requires_grad_()
    wr = weight.double().requires_grad_()
    lpr, _ = ref.logprob_entropy(hr @ wr.t(), ids)
    want = ref.dapo_loss(lpr, old, adv, mask, eps_hi=0.28)
    want.backward()
    assert abs(out.loss.item() - want.item()) < 1e-5
    assert torch.allclose(h.grad.double(), hr.grad, atol=1e-5)
    assert torch.allclose(w.grad.double(), wr.grad, atol=1e-5)
    # a transposed weight view and a sliced hidden view give the same result
    wt = weight.t().contiguous().t().requires_grad_()
    hs = torch.cat([hidden, hidden], -1)[..., :H].requires_grad_()
    out2 = ops.fused_linear_grpo_step(hs, wt, ids, adv, mask, old, options=opts)
    out2.loss.backward()
    assert abs(out2.loss.item() - out.loss.item()) < 1e-6
    assert torch.allclose(wt.grad, w.grad, atol=1e-6)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_sft_loss_vs_cross_entropy(dtype, atol, smoothing):
    g = torch.Generator().manual_seed(9)
    B, L, V = 2, 4, 37
    logits = torch.randn(B, L, V, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.randint(0, V, (B, L), generator=g)
    labels[0, 1] = -100
    got, (gg,) = grads(lambda x: ops.sft_loss(x, labels, label_smoothing=smoothing), logits)
    want, (gw,) = grads(lambda x: F.cross_entropy(x.double().reshape(-1, V), labels.reshape(-1),
                                                  ignore_index=-100, label_smoothing=smoothing),
                        logits.double())
    assert abs(got.item() - want.item()) < atol
    assert torch.allclose(gg.double(), gw, atol=atol)


@pytest.mark.parametrize("div", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("T", [1.0, 2.0])
def test_distill_loss_vs_torch(div, T):
    g = torch.Generator().manual_seed(10)
    B, L, V = 2, 3, 29
    s = torch.randn(B, L, V, generator=g, dtype=torch.float64)
    t = torch.randn(B, L, V, generator=g, dtype=torch.float64)
    mask = torch.ones(B, L)
    mask[1, 2] = 0
    fn = {"forward_kl": lambda x: ref.forward_kl(x, t, mask.double(), T),
          "reverse_kl": lambda x: ref.reverse_kl(x, t, mask.double(), T),
          "jsd": lambda x: ref.jsd(x, t, mask.double(), 0.3, T)}[div]
    got, (gg,) = grads(lambda x: ops.distill_loss(x, t, mask, divergence=div, beta=0.3,
                                                  temperature=T), s)
    want, (gw,) = grads(fn, s)
    assert abs(got.item() - want.item()) < 1e-12
    assert torch.allclose(gg, gw, atol=1e-12)


def test_topk_with_full_vocabulary_equals_dense_forward_kl():
    """Invariance: a top-k teacher listing every id (K = V) is the dense teacher."""
    g = torch.Generator().manual_seed(11)
    B, L, V = 2, 3, 16
    s = torch.randn(B, L, V, generator=g, dtype=torch.float64)
    t = torch.randn(B, L, V, generator=g, dtype=torch.float64)
    t_lp = torch.log_softmax(t, -1)
    t_ids = torch.arange(V).expand(B, L, V)
    got, (gg,) = grads(lambda x: ops.topk_distill_loss(x, t_lp, t_ids), s)
    want, (gw,) = grads(lambda x: ops.distill_loss(x, t), s)
    assert abs(got.item() - want.item()) < 1e-6
    assert torch.allclose(gg, gw, atol=1e-6)


def test_cuda_tensor_is_a_clear_error_or_skipped():
    if not torch.cuda.is_available():
        pytest.skip("no GPU on this machine: CUDA routing not testable (grpo.built_with_cuda = "
                    f"{grpo.built_with_cuda})")
    x = torch.zeros(2, 3, device="cuda")
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_device\]"):
        if grpo.built_with_cuda:  # policy_loss is routed (test_cuda.py); kl_penalty is not
            ops.kl_penalty(x, x)
        else:
            ops.policy_loss(x, torch.zeros(2, device="cuda"), torch.ones(2, 3, device="cuda"))
