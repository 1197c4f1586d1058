# SPDX-License-Identifier: Apache-2.0
"""All 112 peer cases (verl and TRL's own outputs, float64) through grpo.ops: advantages, KL,
agg_loss, verl policy losses and TRL GRPOTrainer._compute_loss, values and autograd gradients."""
import numpy as np
import pytest
import torch

import grpo.ops as ops
from conftest import CASES

TOL = 1e-10
METRIC_TOL = 1e-6  # verl metrics are float32 .item() values


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def ids_of(cases_fn):
    return [c["id"] for c in CASES if cases_fn(c["fn"])] if CASES else []


def by_id(i):
    return next(c for c in CASES if c["id"] == i)


def close(got, want, tol=TOL):
    if isinstance(got, torch.Tensor):
        got = got.detach()
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    err = np.max(np.abs(got - want)) if got.size else 0.0
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    assert err <= tol * scale, f"max abs error {err}"


def test_case_count(cases):
    assert len(cases) == 112
    covered = sum(1 for c in cases if _kind(c["fn"]) is not None)
    assert covered == 112


def _kind(fn):
    if fn.startswith("compute_") and "outcome_advantage" in fn:
        return "verl_adv"
    if fn == "GRPOTrainer._generate_and_score_completions[advantages]":
        return "trl_adv"
    if fn == "kl_penalty":
        return "kl"
    if fn == "agg_loss":
        return "agg"
    if fn.startswith("compute_policy_loss_"):
        return "verl_loss"
    if fn == "GRPOTrainer._compute_loss":
        return "trl_loss"
    return None


_VERL_EST = {
    "compute_grpo_outcome_advantage": "verl_grpo",
    "compute_grpo_vectorized_outcome_advantage": "verl_grpo_vectorized",
    "compute_rloo_outcome_advantage": "verl_rloo",
    "compute_rloo_vectorized_outcome_advantage": "verl_rloo_vectorized",
    "compute_reinforce_plus_plus_baseline_outcome_advantage": "verl_reinforce_pp_baseline",
    "compute_opo_outcome_advantage": "verl_opo",
    "compute_gpg_outcome_advantage": "verl_gpg",
}


@pytest.mark.parametrize("cid", ids_of(lambda f: _kind(f) == "verl_adv"))
def test_verl_advantages(cid):
    c = by_id(cid)
    fn, o = c["fn"], c["options"]
    tr = np.array(c["inputs"]["token_level_rewards"], dtype=np.float64)
    mask = np.array(c["inputs"]["response_mask"], dtype=np.float64)
    want = np.array(c["outputs"]["advantages"])
    if fn == "compute_reinforce_plus_plus_outcome_advantage":
        adv, ret = ops.reinforce_pp_advantages(t(tr), t(mask), o["config.gamma"])
        close(ret, c["outputs"]["returns"])
        close(adv, want)
        return
    labels = {}
    gids = np.array([labels.setdefault(u, len(labels)) for u in c["inputs"]["index"]])
    kw = {}
    if fn in ("compute_grpo_outcome_advantage", "compute_grpo_vectorized_outcome_advantage"):
        kw["norm_adv_by_std_in_grpo"] = o.get("norm_adv_by_std_in_grpo", True)
    if "epsilon" in o:
        kw["epsilon"] = o["epsilon"]
    # numpy in, numpy out (no autograd needed)
    seq = ops.group_advantages(tr.sum(-1), group_ids=gids, estimator=_VERL_EST[fn], mask=mask, **kw)
    assert isinstance(seq, np.ndarray)
    close(seq[:, None] * mask, want)
    close(seq[:, None] * mask, c["outputs"]["returns"])


@pytest.mark.parametrize("cid", ids_of(lambda f: _kind(f) == "trl_adv"))
def test_trl_advantages(cid):
    c = by_id(cid)
    o = c["options"]
    rpf = torch.tensor([[float("nan") if x is None else x for x in row]  # None: unscorable
                        for row in c["inputs"]["rewards_per_func"]], dtype=torch.float64)
    adv, row_std, batch_std = ops.group_advantages(
        rpf, o["num_generations"], estimator="trl", reward_weights=o["reward_weights"],
        scale_rewards=o["scale_rewards"],
        multi_objective_aggregation=o["multi_objective_aggregation"], return_std=True)
    assert isinstance(adv, torch.Tensor)
    close(adv, c["outputs"]["advantages"])
    nts = o["multi_objective_aggregation"] == "normalize_then_sum"
    std = np.full(len(adv), batch_std) if (nts or o["scale_rewards"] == "batch") else row_std
    close(std, c["outputs"]["std_rewards"])
    assert list(np.abs(np.asarray(std)) <= 1e-8) == c["outputs"]["is_std_zero"]


@pytest.mark.parametrize("cid", ids_of(lambda f: _kind(f) == "kl"))
def test_kl_penalty(cid):
    c = by_id(cid)
    lp = t(c["inputs"]["logprob"]).requires_grad_()
    lr = t(c["inputs"]["ref_logprob"])
    m = t(c["inputs"]["response_mask"])
    kl = ops.kl_penalty(lp, lr, c["options"]["kl_penalty"])
    close(kl.detach(), c["outputs"]["kl"])
    kl.sum().backward()
    close(lp.grad, c["outputs"]["grad_logprob_elementwise"])
    lp.grad = None
    loss = ops.aggregate(ops.kl_penalty(lp, lr, c["options"]["kl_penalty"]), m, "token-mean")
    close(loss.item(), c["outputs"]["token_mean_loss"])
    loss.backward()
    close(lp.grad, c["outputs"]["grad_logprob_token_mean_loss"])
    # numpy path: same values
    close(ops.kl_penalty(lp.detach().numpy(), lr.numpy(), c["options"]["kl_penalty"]),
          c["outputs"]["kl"])


@pytest.mark.parametrize("cid", ids_of(lambda f: _kind(f) == "agg"))
def test_agg_loss(cid):
    c = by_id(cid)
    o = c["options"]
    L = t(c["inputs"]["loss_mat"]).requires_grad_()
    M = t(c["inputs"]["loss_mask"])
    kw = {k: o[k] for k in ("dp_size", "batch_num_tokens", "global_batch_size",
                            "loss_scale_factor") if k in o}
    loss = ops.aggregate(L, M, o["loss_agg_mode"], **kw)
    close(loss.item(), c["outputs"]["loss"])
    loss.backward()
    close(L.grad, c["outputs"]["grad_loss_mat"])
    close(ops.aggregate(L.detach().numpy(), M.numpy(), o["loss_agg_mode"], **kw),
          c["outputs"]["loss"])


@pytest.mark.parametrize("cid", ids_of(lambda f: _kind(f) == "verl_loss"))
@pytest.mark.parametrize("with_entropy", [False, True])
def test_verl_policy_loss(cid, with_entropy):
    c = by_id(cid)
    mode = c["fn"][len("compute_policy_loss_"):]
    cfg = c["options"]["config"]
    verl = {"loss_mode": mode, "loss_agg_mode": c["options"]["loss_agg_mode"],
            "clip_ratio": cfg["clip_ratio"], "clip_ratio_low": cfg.get("clip_ratio_low"),
            "clip_ratio_high": cfg.get("clip_ratio_high"), "clip_ratio_c": cfg["clip_ratio_c"],
            "tau_pos": cfg["tau_pos"], "tau_neg": cfg["tau_neg"]}
    inp, out = c["inputs"], c["outputs"]
    lp = t(inp["log_prob"]).requires_grad_()
    # an all-zero entropy input (coefficient 0) forces the general engine instead of the fast path
    ent = torch.zeros_like(lp) if with_entropy else None
    r = ops.policy_loss(lp, t(inp["advantages"]), t(inp["response_mask"]), t(inp["old_log_prob"]),
                        entropy=ent, options=ops.loss_options(verl=verl))
    close(r.loss.item(), out["loss"])
    if mode == "geo_mean":
        close(r.per_seq_loss, out["per_seq_loss"])
    else:
        close(r.per_token_loss, out["per_token_loss"])
    r.loss.backward()
    close(lp.grad, out["grad_log_prob"])
    m = ops.metrics_dict(r.stats)
    clipfrac, lower = m["clip_region"], m["clip_dual"]
    if mode == "cispo":
        clipfrac, lower = m["weight_clip"], 0.0
    elif mode == "geo_mean":
        clipfrac, lower = m["clip_high"], m["clip_low"]
    elif mode in ("gspo", "sapo"):
        lower = 0.0
    mt = out["metrics"]
    close(clipfrac, mt["actor/pg_clipfrac"], METRIC_TOL)
    close(lower, mt["actor/pg_clipfrac_lower"], METRIC_TOL)
    close(m["approx_kl"], mt["actor/ppo_kl"], METRIC_TOL)


_TRL_KEYS = ("loss_type", "beta", "epsilon", "epsilon_high", "delta", "importance_sampling_level",
             "max_completion_length", "sapo_temperature_pos", "sapo_temperature_neg",
             "use_bias_correction_kl", "off_policy_mask_threshold", "num_items_in_batch",
             "num_processes", "gradient_accumulation_steps", "vespo_k_pos", "vespo_lambda_pos",
             "vespo_k_neg", "vespo_lambda_neg")


@pytest.mark.parametrize("cid", ids_of(lambda f: _kind(f) == "trl_loss"))
@pytest.mark.parametrize("with_entropy", [False, True])
def test_trl_compute_loss(cid, with_entropy):
    c = by_id(cid)
    o = c["options"]
    trl = {k: o[k] for k in _TRL_KEYS if k in o}
    inp, out = c["inputs"], c["outputs"]
    lp = t(inp["per_token_logps"]).requires_grad_()
    ref = t(inp["ref_per_token_logps"]) if "ref_per_token_logps" in inp else None
    ent = torch.zeros_like(lp) if with_entropy else None
    r = ops.policy_loss(lp, t(inp["advantages"]), t(inp["completion_mask"]),
                        t(inp["old_per_token_logps"]), ref, entropy=ent,
                        options=ops.loss_options(trl=trl))
    close(r.loss.item(), out["loss"])
    ptl = np.array(out["per_token_loss"])
    if ptl.shape[1] == 1 and lp.shape[1] != 1:  # (B, 1) sequence-level loss: broadcast
        ptl = np.repeat(ptl, lp.shape[1], axis=1)
    close(r.per_token_loss, ptl)
    r.loss.backward()
    close(lp.grad, out["grad_per_token_logps"])
    m = ops.metrics_dict(r.stats)
    mt = out["metrics"]
    for key, got in (("clip_ratio/low_mean", m["clip_low"]), ("clip_ratio/high_mean", m["clip_high"]),
                     ("clip_ratio/region_mean", m["clip_region"]),
                     ("clip_ratio/low_min", m["clip_low_seq/min"]),
                     ("clip_ratio/high_max", m["clip_high_seq/max"]),
                     ("cispo_clip_ratio", m["clip_high"]), ("vespo/phi_seq_mean", m["vespo_phi"]),
                     ("kl", m["kl"])):
        if key in mt:
            close(got, mt[key][0])
    if with_entropy and "entropy" in mt:
        close(m["entropy"], mt["entropy"][0])
