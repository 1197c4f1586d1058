# SPDX-License-Identifier: Apache-2.0
"""torch.compile(fullgraph=True) on every op (forward and backward equal to eager, no graph
break) and torch.autograd.gradcheck (finite differences) on small float64 shapes."""
import pytest
import torch

import grpo.ops as ops

torch._dynamo.config.cache_size_limit = 64


def _inputs(B=3, T=4, V=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    lp = -1.0 + 0.4 * torch.randn(B, T, generator=g, dtype=torch.float64)
    old = lp + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    refl = lp + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.float64)
    mask[1, 3] = 0
    logits = torch.randn(B, T, V, generator=g)
    ids = torch.randint(0, V, (B, T), generator=g)
    return lp, old, refl, adv, mask, logits, ids


OPTS = ops.loss_options(trl={"loss_type": "grpo", "beta": 0.04})

CASES = {
    "policy_loss": (lambda x, i: ops.policy_loss(x, i[3], i[4], i[1], i[2], options=OPTS).loss,
                    lambda i: i[0]),
    "policy_loss_gspo": (lambda x, i: ops.policy_loss(x, i[3], i[4], i[1], options="verl_gspo").loss,
                         lambda i: i[0]),
    "kl_penalty": (lambda x, i: ops.kl_penalty(x, i[2]).sum(), lambda i: i[0]),
    "aggregate": (lambda x, i: ops.aggregate(x * x, i[4], "seq-mean-token-mean"), lambda i: i[0]),
    "logprob_entropy": (lambda x, i: sum(t.sum() for t in ops.logprob_entropy(x, i[6])),
                        lambda i: i[5]),
    "fused_grpo_step": (lambda x, i: ops.fused_grpo_step(x, i[6], i[3], i[4], i[1], i[2],
                                                         options=OPTS).loss,
                        lambda i: i[5]),
    "fused_linear_grpo_step": (
        lambda x, i: ops.fused_linear_grpo_step(x, torch.ones(11, 5) * 0.1, i[6], i[3], i[4],
                                                i[1]).loss,
        lambda i: torch.randn(3, 4, 5)),
    "sft_loss": (lambda x, i: ops.sft_loss(x, i[6]), lambda i: i[5]),
    "distill_loss": (lambda x, i: ops.distill_loss(x, i[5] * 0.5, divergence="jsd"),
                     lambda i: i[5] + 0.1),
    "topk_distill_loss": (
        lambda x, i: ops.topk_distill_loss(x, torch.log_softmax(i[5], -1)[..., :4],
                                           torch.arange(4).expand(3, 4, 4)), lambda i: i[5]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_compile_fullgraph_matches_eager(name):
    fn, pick = CASES[name]
    inp = _inputs()
    x0 = pick(inp).detach()
    xe = x0.clone().requires_grad_()
    ve = fn(xe, inp)
    ve.backward()
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: fn(x, inp), fullgraph=True, backend="inductor")
    xc = x0.clone().requires_grad_()
    vc = compiled(xc)
    vc.backward()
    assert torch.allclose(vc.detach().double(), ve.detach().double(), atol=1e-6, rtol=1e-6)
    assert torch.allclose(xc.grad.double(), xe.grad.double(), atol=1e-6, rtol=1e-6)
    # no graph break: dynamo's explain sees one graph
    torch._dynamo.reset()
    ex = torch._dynamo.explain(lambda x: fn(x, inp))(x0.clone().requires_grad_())
    assert ex.graph_break_count == 0, ex.break_reasons


def test_custom_ops_pass_opcheck():
    """torch.library.opcheck: schema, fake (meta) kernel and autograd registration consistent."""
    lp, old, refl, adv, mask, logits, ids = _inputs()
    from grpo.ops import _policy_loss_op, _kl_op, _logprob_op
    # The stats output holds NaN for metrics with no data (entropy not given), which opcheck's
    # AOT comparison treats as a mismatch; compiled vs eager values are checked above instead.
    utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(_policy_loss_op, (lp.requires_grad_(), old, refl, adv, mask, None, None,
                                            OPTS), test_utils=utils)
    torch.library.opcheck(_kl_op, (lp.detach().requires_grad_(), refl, "k3", "verl"))
    torch.library.opcheck(_logprob_op, (logits.requires_grad_(), ids, 1.0, -100))


def _gc(fn, x):
    assert torch.autograd.gradcheck(fn, (x.detach().clone().requires_grad_(),), eps=1e-6,
                                    atol=1e-6, rtol=1e-5)


# CISPO and VESPO are not here: their weights are stop-gradient terms (sg[clip(r)] A log p), so the
# defined gradient differs from finite differences of the value by design; their gradients are
# checked against TRL's autograd in test_conformance.py.
@pytest.mark.parametrize("opts", ["trl_grpo", "trl_dapo", "trl_sapo", "trl_gspo", "trl_luspo",
                                  "verl_vanilla", "verl_geo_mean", "openrlhf"])
def test_gradcheck_policy_loss(opts):
    lp, old, refl, adv, mask, _, _ = _inputs(seed=2)
    _gc(lambda x: ops.policy_loss(x, adv, mask, old, refl, options=opts).loss, lp)


@pytest.mark.parametrize("est", ["k1", "k2", "low_var_kl", "abs"])
def test_gradcheck_kl(est):
    lp, _, refl, _, _, _, _ = _inputs(seed=3)
    _gc(lambda x: ops.kl_penalty(x, refl, est).sum(), lp)


def test_gradcheck_aggregate_and_distill():
    lp, _, _, _, mask, logits, ids = _inputs(seed=4)
    _gc(lambda x: ops.aggregate(x * x, mask, "seq-mean-token-sum"), lp)
    l64 = logits.double()
    _gc(lambda x: ops.sft_loss(x, ids, label_smoothing=0.1), l64)
    _gc(lambda x: ops.distill_loss(x, l64.flip(-1), divergence="reverse_kl"), l64)
    _gc(lambda x: ops.distill_loss(x, l64.flip(-1), divergence="skew_forward_kl"), l64)
