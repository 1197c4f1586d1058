# SPDX-License-Identifier: Apache-2.0
"""grpo.experience (also grpo.ops.<name>): KL in the reward and masked whitening against plain
numpy float64 references written from verl's / OpenRLHF's formulas; OpenRLHF's options, approx KL,
advantages and metrics against its 51 conformance cases (OpenRLHF's own outputs); verl metrics
against the verl peer cases; merge_stats against the unsplit batch; bad inputs."""
import json

import numpy as np
import pytest
import torch

import grpo
import grpo.ops as ops
from grpo import experience as E
from conftest import shared_dir

TOL = 1e-10


def close(got, want, tol=TOL):
    if isinstance(got, torch.Tensor):
        got = got.detach().numpy()
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    assert err <= tol * scale, f"max abs error {err}"


def batch(seed=0, B=5, T=7, spread=0.5):
    g = np.random.default_rng(seed)
    lp = -2.0 + g.standard_normal((B, T))
    lr = lp + g.uniform(-spread, spread, (B, T))
    m = np.ones((B, T))
    m[1, 4:] = 0
    m[3, 2:] = 0
    m[4, :] = 0
    return lp, lr, m


# ---------------------------------------------------------------------------------------------
# kl_for_reward


def ref_kl(lp, lr, est, clamps):
    """verl core_algos.kl_penalty_forward written in numpy (float64)."""
    d = lp - lr
    if est in ("kl", "k1"):
        v = d
    elif est == "abs":
        v = np.abs(d)
    elif est in ("mse", "k2"):
        v = 0.5 * d * d
    else:  # low_var_kl / k3: exp(lr - lp) - (lr - lp) - 1
        x = -d
        if clamps == "verl":
            x = np.clip(x, -20, 20)
        v = np.exp(x) - x - 1
        if clamps == "verl":
            v = np.clip(v, -10, 10)
    if clamps == "openrlhf":
        v = np.clip(v, -10, 10)
    return v


@pytest.mark.parametrize("est", ["kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3"])
@pytest.mark.parametrize("clamps", ["verl", "none", "openrlhf"])
def test_kl_for_reward_matches_reference(est, clamps):
    lp, lr, m = batch(1, spread=3.0)  # wide enough for the clamps to bind
    m[0, 1] = 0.5  # a fractional mask weight scales the token's penalty
    kl = ref_kl(lp, lr, est, clamps)
    coef = 0.05
    close(E.kl_for_reward(lp, lr, m, coef, estimator=est, clamps=clamps), coef * m * kl)
    close(E.kl_for_reward(lp, lr, m, coef, estimator=est, clamps=clamps,
                          placement="sequence_sum"), coef * (m * kl).sum(-1))
    # torch in, torch out (float64, CPU); the same values from grpo.ops
    got = ops.kl_for_reward(torch.tensor(lp, dtype=torch.float32), torch.tensor(lr),
                            torch.tensor(m), coef, estimator=est, clamps=clamps)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    close(got, coef * m * ref_kl(lp.astype(np.float32).astype(np.float64), lr, est, clamps))


def test_kl_for_reward_equals_masked_kl_penalty():
    """Token placement = coef * mask * kl_penalty (the differentiable op) on every token."""
    lp, lr, m = batch(2)
    want = 0.1 * m * ops.kl_penalty(lp, lr, "low_var_kl")
    close(E.kl_for_reward(lp, lr, m, 0.1, estimator="low_var_kl"), want)


def test_kl_for_reward_bad_inputs():
    lp, lr, m = batch(3)
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.shape_mismatch\]"):
        E.kl_for_reward(lp, lr[:, :3], m, 0.1)
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_option\]"):
        E.kl_for_reward(lp, lr, m, 0.1, placement="row")
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_option\]"):
        E.kl_for_reward(lp, lr, m, 0.1, estimator="k9")
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_value\]"):
        E.kl_for_reward(lp, lr, m, float("nan"))
    bad = lp.copy()
    bad[0, 0] = np.nan
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_value\]"):
        E.kl_for_reward(bad, lr, m, 0.1)
    bad[0, 0] = 0.0
    bad[4, 0] = np.nan  # masked token: never read
    E.kl_for_reward(bad, lr, m, 0.1)


# ---------------------------------------------------------------------------------------------
# masked_whiten


def ref_whiten_verl(x, m):
    """verl.utils.torch_functional.masked_whiten (shift_mean=True) in numpy."""
    mm = lambda v: (v * m).sum() / (m.sum() + 1e-8)  # noqa: E731
    mean = mm(x)
    var = mm((x - mean) ** 2)
    n = m.sum()
    var = var * n / (n - 1)
    return (x - mean) / np.sqrt(var + 1e-8), mean, var


def test_masked_whiten_verl():
    g = np.random.default_rng(4)
    x = g.standard_normal((6, 9)) * 3 + 1
    _, _, m = batch(5, 6, 9)
    want, mean, var = ref_whiten_verl(x, m)
    got, st = E.masked_whiten(x, m, return_stats=True)
    close(got, want * m)  # 0 at masked tokens (verl multiplies by the mask afterwards)
    assert st["count"] == m.sum()
    close(st["mean"], mean)
    close(st["var"], var)
    got_t = ops.masked_whiten(torch.tensor(x), torch.tensor(m))
    assert isinstance(got_t, torch.Tensor)
    close(got_t, want * m)
    # invariance: an affine change of the values leaves the whitened values unchanged
    close(E.masked_whiten(4.0 * x - 7.0, m), want * m, 1e-9)


def test_masked_whiten_openrlhf_and_overrides():
    g = np.random.default_rng(6)
    x = g.standard_normal((4, 5))
    m = (g.uniform(size=(4, 5)) > 0.3).astype(np.float64)
    v = x[m != 0]
    mean, var = v.mean(), v.var()  # biased
    close(E.masked_whiten(x, m, preset="openrlhf"), (x - mean) / np.sqrt(max(var, 1e-8)) * m)
    close(E.masked_whiten(x, m, preset="openrlhf", center_only=True), (x - mean) * m)
    s = v.std(ddof=1)
    close(E.masked_whiten(x, m, eps=1e-6, eps_placement="add_to_std", mean_eps=0.0),
          (x - mean) / (s + 1e-6) * m)


def test_masked_whiten_bad_inputs():
    x = np.ones((2, 3))
    one = np.zeros((2, 3))
    one[0, 0] = 1
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_value\]"):
        E.masked_whiten(x, one)  # verl raises for fewer than 2 tokens with Bessel
    E.masked_whiten(x, one, preset="openrlhf")  # one token is fine without Bessel
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_option\]"):
        E.masked_whiten(x, np.ones((2, 3)), eps_placement="outside")
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_option\]"):
        E.masked_whiten(x, np.ones((2, 3)), preset="trl")
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.shape_mismatch\]"):
        E.masked_whiten(x, np.ones((3, 2)))
    y = x.copy()
    y[1, 1] = np.inf
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_value\]"):
        E.masked_whiten(y, np.ones((2, 3)))


# ---------------------------------------------------------------------------------------------
# OpenRLHF conformance (51 cases of OpenRLHF's own code).

_PATH = shared_dir() / "conformance" / "openrlhf_peer_cases.json"
ORL = json.loads(_PATH.read_text()) if _PATH.exists() else None


def orl_ids(fn):
    return [c["id"] for c in ORL if c["fn"] == fn] if ORL else []


def orl(cid):
    return next(c for c in ORL if c["id"] == cid)


def test_openrlhf_case_count():
    if ORL is None:
        pytest.skip(f"conformance file not found: {_PATH} (set GRPO_SHARED_DIR)")
    assert len(ORL) == 51
    assert len(orl_ids("PolicyLoss.forward")) == 24
    assert len(orl_ids("compute_approx_kl")) == 6
    assert len(orl_ids("aggregate_loss")) == 4
    assert len(orl_ids("RemoteExperienceMaker.compute_advantages_and_returns")) == 17


def policy_args(o):
    a = {"actor.policy_loss_type": o["policy_loss_type"],
         "actor.eps_clip_low_high": [o["clip_eps_low"], o["clip_eps_high"]],
         "actor.dual_clip": o["dual_clip"], "actor.token_level_loss": o["token_level_loss"],
         "algo.advantage.is_correction_enable": o["enable_vllm_is_correction"],
         "algo.advantage.is_correction_type": o["vllm_is_correction_type"],
         "dp_size": o["dp_size"], "batch_num_tokens": o["batch_num_tokens"],
         "global_batch_size": o["global_batch_size"]}
    if o["vllm_is_truncated_threshold"] is not None:
        a["algo.advantage.is_correction_threshold"] = o["vllm_is_truncated_threshold"]
    return a


def t64(x):
    return torch.tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("cid", orl_ids("PolicyLoss.forward"))
def test_openrlhf_policy_loss(cid):
    c = orl(cid)
    args = policy_args(c["options"])
    inp, out = c["inputs"], c["outputs"]
    lp = t64(inp["log_probs"]).requires_grad_()
    M = t64(inp["action_mask"])
    ls = t64(inp["rollout_log_probs"]) if "rollout_log_probs" in inp else None
    r = ops.policy_loss(lp, t64(inp["advantages"]), M, t64(inp["old_log_probs"]),
                        sampler_logp=ls, options=ops.loss_options(openrlhf=args))
    close(r.loss.item(), out["loss"])
    ptl, want = r.per_token_loss.detach().numpy(), np.asarray(out["per_token_loss"])
    if args["actor.policy_loss_type"] == "gspo":  # OpenRLHF's GSPO loss is nonzero at padding
        ptl, want = ptl * M.numpy(), want * M.numpy()
    close(ptl, want)
    r.loss.backward()
    close(lp.grad, out["grad_log_probs"])
    mt = out["metrics"]
    close(ops.metrics_dict(r.stats)["approx_kl"], mt["ppo_kl"])
    got = E.openrlhf_metrics(inp["log_probs"], inp["old_log_probs"], inp["advantages"],
                             inp["action_mask"], inp.get("rollout_log_probs"), openrlhf=args)
    assert set(got) == set(mt)
    for k in mt:
        close(got[k], mt[k])
    rerun = c["diag"].get("float64_rerun", {}).get("metrics")
    if rerun and "clip_ratio" in rerun:
        m64 = E.openrlhf_metrics(inp["log_probs"], inp["old_log_probs"], inp["advantages"],
                                 inp["action_mask"], inp.get("rollout_log_probs"),
                                 openrlhf=dict(args, emulate_float32=False))
        close(m64["clip_ratio"], rerun["clip_ratio"])


@pytest.mark.parametrize("cid", orl_ids("aggregate_loss"))
def test_openrlhf_aggregate_loss(cid):
    c = orl(cid)
    o = c["options"]
    L = t64(c["inputs"]["loss_mat"]).requires_grad_()
    M = t64(c["inputs"]["loss_mask"])
    mode = "openrlhf-token" if o["token_level_loss"] else "openrlhf-sample"
    kw = {k: o[k] for k in ("dp_size", "batch_num_tokens", "global_batch_size")}
    loss = ops.aggregate(L, M, mode, **kw)
    close(loss.item(), c["outputs"]["loss"])
    loss.backward()
    close(L.grad, c["outputs"]["grad_loss_mat"])
    close(ops.aggregate(L.detach().numpy(), M.numpy(), mode, **kw), c["outputs"]["loss"])
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_option\]"):
        ops.aggregate(L, M, mode, loss_scale_factor=2.0)


@pytest.mark.parametrize("cid", orl_ids("compute_approx_kl"))
@pytest.mark.parametrize("f32", [True, False])
def test_openrlhf_approx_kl_and_kl_loss(cid, f32):
    c = orl(cid)
    o, inp = c["options"], c["inputs"]
    out = c["outputs"] if f32 else c["diag"]["float64_rerun"]
    kl, g = E.openrlhf_approx_kl(inp["log_probs"], inp["log_probs_base"], o["kl_estimator"],
                                 emulate_float32=f32)
    close(kl, out["kl"])
    close(g, out.get("grad_log_probs_elementwise", c["outputs"]["grad_log_probs_elementwise"]))
    # The actor's KL loss through policy_loss: zero advantages and old = current log-probs make
    # the policy term 0, so loss = init_coef * kl_loss and its gradient is the KL loss's.
    lp = t64(inp["log_probs"]).requires_grad_()
    args = {"algo": {"kl": {"use_loss": True, "init_coef": 1.0, "estimator": o["kl_estimator"]}},
            "batch_num_tokens": o["batch_num_tokens"], "global_batch_size": o["global_batch_size"],
            "emulate_float32": f32}
    r = ops.policy_loss(lp, torch.zeros(lp.shape[0], dtype=torch.float64),
                        t64(inp["action_mask"]), lp.detach(), t64(inp["log_probs_base"]),
                        options=ops.loss_options(openrlhf=args))
    close(ops.metrics_dict(r.stats)["kl_loss"], out["kl_loss"])
    close(r.loss.item(), out["kl_loss"])
    r.loss.backward()
    close(lp.grad, out["grad_kl_loss"])


@pytest.mark.parametrize("cid", orl_ids("RemoteExperienceMaker.compute_advantages_and_returns"))
@pytest.mark.parametrize("f32", [True, False])
def test_openrlhf_advantages(cid, f32):
    c = orl(cid)
    o, inp = c["options"], c["inputs"]
    args = {"algo.advantage.estimator": o["estimator"],
            "rollout.n_samples_per_prompt": o["n_samples_per_prompt"],
            "algo.advantage.gamma": o["gamma"], "algo.advantage.lambd": o["lambd"],
            "algo.advantage.no_std_norm": o["no_std_norm"],
            "reward.clip_range": o["reward_clip_range"], "algo.kl.init_coef": o["kl_coef"],
            "emulate_float32": f32}
    kl = None
    if o["kl_estimator"] is not None:
        args["algo.kl.estimator"] = o["kl_estimator"]
        kl, _ = E.openrlhf_approx_kl(inp["action_log_probs"], inp["base_action_log_probs"],
                                     o["kl_estimator"], emulate_float32=f32)
        if f32:
            close(kl, inp["kl"])
    # torch input: torch output
    adv, ret, st = ops.openrlhf_advantages(t64(inp["rewards"]), t64(inp["action_mask"]), kl=kl,
                                           values=inp.get("values"), index=inp["index"],
                                           openrlhf=args, return_stats=True)
    assert isinstance(adv, torch.Tensor) and isinstance(ret, torch.Tensor)
    rerun = c["diag"].get("float64_rerun")
    want = c["outputs"] if (f32 or not rerun) else rerun
    close(adv, want.get("advantages", c["outputs"]["advantages"]))
    close(ret, want.get("returns", c["outputs"]["returns"]))
    sd = c["outputs"]["metrics"]["group_reward_std"]
    close(st["group_reward_std"], sd if sd else np.zeros(0))


def test_openrlhf_options():
    # nested, flat and keyword forms are the same options
    a = E.openrlhf_args({"actor": {"eps_clip": 0.1}}, algo__kl__init_coef=0.02)
    assert a == {"actor.eps_clip": 0.1, "algo.kl.init_coef": 0.02}
    assert ops.loss_options(openrlhf={"actor": {"eps_clip": 0.1}}) == \
        ops.loss_options(openrlhf={"actor.eps_clip": 0.1})
    for bad in ({"actor.policy_loss_type": "cispo"}, {"actor.dual_clip": 1.0},
                {"actor.eps_clip_typo": 0.2}, {"algo.kl.estimator": "abs"},
                {"algo.advantage.is_correction_type": "seq-tis"},
                {"reward.clip_range": [1.0]}):
        with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_option\]"):
            ops.loss_options(openrlhf=bad)
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.bad_option\]"):
        ops.loss_options("openrlhf", openrlhf={})
    # default OpenRLHF options = the "openrlhf" preset
    lp, lo, m = batch(7)
    adv = np.random.default_rng(8).standard_normal(lp.shape[0])
    a1 = ops.policy_loss(t64(lp), t64(adv), t64(m), t64(lo), options="openrlhf")
    a2 = ops.policy_loss(t64(lp), t64(adv), t64(m), t64(lo), options=ops.loss_options(openrlhf={}))
    assert a1.loss.item() == a2.loss.item()
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.shape_mismatch\]"):
        E.openrlhf_advantages([1.0, 0.0, 1.0], np.ones((3, 4)),
                              openrlhf={"algo.advantage.estimator": "group_norm",
                                        "rollout.n_samples_per_prompt": 2})
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.shape_mismatch\]"):
        E.openrlhf_advantages([1.0, 0.0], np.ones((2, 4)))  # gae needs values


# ---------------------------------------------------------------------------------------------
# verl metrics and merge_stats


from conftest import CASES  # noqa: E402


def verl_ids():
    return [c["id"] for c in CASES if c["fn"].startswith("compute_policy_loss_")] if CASES else []


@pytest.mark.parametrize("cid", verl_ids())
def test_verl_metrics_match_verl(cid):
    c = next(x for x in CASES if x["id"] == cid)
    mode = c["fn"][len("compute_policy_loss_"):]
    cfg = c["options"]["config"]
    verl = {"loss_mode": mode, "loss_agg_mode": c["options"]["loss_agg_mode"],
            "clip_ratio": cfg["clip_ratio"], "clip_ratio_low": cfg.get("clip_ratio_low"),
            "clip_ratio_high": cfg.get("clip_ratio_high"), "clip_ratio_c": cfg["clip_ratio_c"],
            "tau_pos": cfg["tau_pos"], "tau_neg": cfg["tau_neg"]}
    inp = c["inputs"]
    r = ops.policy_loss(t64(inp["log_prob"]), t64(inp["advantages"]), t64(inp["response_mask"]),
                        t64(inp["old_log_prob"]), options=ops.loss_options(verl=verl))
    got = ops.verl_metrics(r.stats, verl)
    mt = c["outputs"]["metrics"]
    for k in ("pg_clipfrac", "pg_clipfrac_lower", "ppo_kl"):
        close(got[k], mt["actor/" + k], 1e-6)  # verl logs float32 .item() values


def test_merge_stats_equals_whole_batch():
    """Two micro-batches with the step's global token count merge into the whole batch's
    metrics and loss (token-weighted accumulators; loss additive under global denominators)."""
    g = np.random.default_rng(9)
    lp, lo, m = batch(10, 8, 6)
    adv = g.standard_normal(8)
    n = float(m.sum())
    opts = ops.loss_options(trl={"loss_type": "dapo", "epsilon_high": 0.28},
                            overrides={"global_tokens": n})
    whole = ops.policy_loss(t64(lp), t64(adv), t64(m), t64(lo), options=opts)
    parts = [ops.policy_loss(t64(lp[s]), t64(adv[s]), t64(m[s]), t64(lo[s]), options=opts).stats
             for s in (slice(0, 3), slice(3, 8))]
    merged = ops.merge_stats(parts)
    assert isinstance(merged, torch.Tensor)
    a, b = ops.metrics_dict(merged), ops.metrics_dict(whole.stats)
    assert a.keys() == b.keys() and "tokens" in a
    for k in a:
        if np.isnan(b[k]):
            assert np.isnan(a[k]), k
        else:
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-14), k
    assert a["tokens"] == n
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.shape_mismatch\]"):
        ops.merge_stats([np.zeros(7)])
    with pytest.raises(grpo.GrpoError, match=r"\[grpo.shape_mismatch\]"):
        ops.merge_stats([])
