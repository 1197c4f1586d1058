# SPDX-License-Identifier: Apache-2.0
"""grpo.experience: the experience side of RL training, no autograd, no torch needed.

KL as a reward penalty (``kl_for_reward``), verl / OpenRLHF advantage whitening
(``masked_whiten``), OpenRLHF's ``compute_approx_kl`` / ``compute_advantages_and_returns`` /
PolicyLoss metrics (``openrlhf_approx_kl``, ``openrlhf_advantages``, ``openrlhf_metrics``) and the
metric helpers of a loss call's ``stats`` (``verl_metrics``, ``merge_stats``, ``metrics_dict``).

Inputs are numpy arrays, sequences or CPU torch tensors; the computation is float64 in C++ with
the GIL released, and results come back as numpy arrays, or as CPU float64 torch tensors when the
first array argument is a torch tensor. Everything here is also reachable as ``grpo.ops.<name>``.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from . import _C
from ._C import GrpoError
from ._tensors import np_desc

__all__ = [
    "kl_for_reward",
    "masked_whiten",
    "openrlhf_args",
    "openrlhf_approx_kl",
    "openrlhf_advantages",
    "openrlhf_metrics",
    "verl_metrics",
    "merge_stats",
    "metrics_dict",
    "METRIC_NAMES",
    "N_STATS",
]

METRIC_NAMES: tuple = tuple(_C.metric_names)
N_STATS: int = int(_C.n_stats)
_COUNTS = ("opsm_dropped_seqs", "entropy_masked_tokens", "truncated_seqs", "tokens", "sequences")

ArrayLike = Any  # numpy array, nested sequence or CPU torch tensor


def _is_torch(x) -> bool:
    t = sys.modules.get("torch")
    return t is not None and isinstance(x, t.Tensor)


def _f64(x, what: str) -> np.ndarray:
    """x as a C-contiguous float64 numpy array (a copy only when needed)."""
    if _is_torch(x):
        if x.device.type != "cpu":
            raise GrpoError(f"[grpo.bad_device] {what}: tensor on {x.device}; this function runs "
                            "on the CPU (call .cpu())")
        x = x.detach().to(dtype=sys.modules["torch"].float64).numpy()
    try:
        return np.ascontiguousarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise GrpoError(f"[grpo.bad_dtype] {what}: not convertible to float64 ({e})") from None


def _out(a: np.ndarray, like_torch: bool):
    if like_torch:
        return sys.modules["torch"].from_numpy(a)
    return a


# ---------------------------------------------------------------------------------------------
# KL in the reward and whitening.


def kl_for_reward(logp: ArrayLike, ref_logp: ArrayLike, mask: ArrayLike, coef: float, *,
                  estimator: str = "kl", clamps: str = "verl", placement: str = "token"):
    """KL to subtract from the rewards (grpo::kl_for_reward), the in-reward KL of verl
    ``apply_kl_penalty`` (token placement: ``token_level_rewards = scores - coef * kl * mask``),
    OpenRLHF ``compute_reward`` and TRL RLOO (``sequence_sum``: ``R - beta sum_t (lo - lr)``).

    logp (usually the rollout / old log-probs), ref_logp, mask: [B, T]. estimator: verl's
    ``kl_penalty`` names ("kl"/"k1", "abs", "mse"/"k2", "low_var_kl"/"k3"); clamps "verl",
    "openrlhf" or "none" (as ``grpo.ops.kl_penalty``). placement "token" returns
    ``coef * m * kl`` [B, T] (0 where masked); "sequence_sum" returns ``coef * sum_t m kl`` [B].
    Masks must be finite and >= 0; NaN / Inf log-probs on valid tokens raise [grpo.bad_value]."""
    like = _is_torch(logp)
    lp, lr, m = _f64(logp, "logp"), _f64(ref_logp, "ref_logp"), _f64(mask, "mask")
    if lp.ndim != 2:
        raise GrpoError(f"[grpo.shape_mismatch] logp: expected [B, T], got shape {lp.shape}")
    out = np.empty(lp.shape if placement == "token" else lp.shape[:1])
    _C.kl_for_reward(estimator, clamps, float(coef), placement, np_desc(lp), np_desc(lr),
                     np_desc(m), np_desc(out))
    return _out(out, like)


_WHITEN_PRESETS: Dict[str, Dict[str, Any]] = {
    # verl core_algos masked_whiten: masked_mean divides by mask.sum() + 1e-8, unbiased variance,
    # (x - mean) * rsqrt(var + 1e-8).
    "verl": dict(eps=1e-8, eps_placement="inside_sqrt", bessel=True, mean_eps=1e-8),
    # OpenRLHF global whitening (float64 formula): biased variance, rsqrt(max(var, 1e-8)).
    "openrlhf": dict(eps=1e-8, eps_placement="floor_var", bessel=False, mean_eps=0.0),
}


def masked_whiten(values: ArrayLike, mask: ArrayLike, *, preset: str = "verl",
                  eps: Optional[float] = None, eps_placement: Optional[str] = None,
                  bessel: Optional[bool] = None, mean_eps: Optional[float] = None,
                  center_only: bool = False, return_stats: bool = False):
    """Token whitening over the unmasked entries of a [B, T] batch (grpo::masked_whiten):
    ``out = (x - mu) / scale`` at unmasked tokens and 0 elsewhere, with
    ``mu = sum m x / (N + mean_eps)``, ``var = sum m (x - mu)^2 / (N + mean_eps)`` (times
    ``N / (N - 1)`` with bessel) and ``scale = sqrt(var + eps)`` ("inside_sqrt"),
    ``sqrt(var) + eps`` ("add_to_std") or ``sqrt(max(var, eps))`` ("floor_var").

    preset "verl" (``verl.utils.torch_functional.masked_whiten`` with shift_mean=True) or
    "openrlhf" (its float64 formula; the float32-emulated one is inside openrlhf_advantages);
    the keyword arguments override single fields. center_only: ``x - mu`` (OpenRLHF
    no_std_norm). Fewer than 2 unmasked tokens (1 without bessel) raise [grpo.bad_value], as verl.
    With return_stats also returns ``{"mean", "var", "count"}``."""
    if preset not in _WHITEN_PRESETS:
        raise GrpoError(f"[grpo.bad_option] masked_whiten: preset 'verl' or 'openrlhf', got "
                        f"'{preset}'")
    o = dict(_WHITEN_PRESETS[preset])
    for k, v in (("eps", eps), ("eps_placement", eps_placement), ("bessel", bessel),
                 ("mean_eps", mean_eps)):
        if v is not None:
            o[k] = v
    like = _is_torch(values)
    x, m = _f64(values, "values"), _f64(mask, "mask")
    out = np.empty(x.shape)
    mean, var, count = _C.masked_whiten(np_desc(x), np_desc(m), np_desc(out), float(o["eps"]),
                                        str(o["eps_placement"]), bool(o["bessel"]),
                                        float(o["mean_eps"]), bool(center_only))
    res = _out(out, like)
    if return_stats:
        return res, {"mean": mean, "var": var, "count": count}
    return res


# ---------------------------------------------------------------------------------------------
# OpenRLHF.


def openrlhf_args(args: Optional[Mapping[str, Any]] = None, **flags: Any) -> Dict[str, Any]:
    """OpenRLHF options as a flat dict of its command-line flag names (``--actor.eps_clip`` ->
    "actor.eps_clip"). Accepts the flat form, nested dicts ({"actor": {"eps_clip": 0.2}}) and
    keyword arguments with "__" for the dots (``algo__kl__init_coef=0.01``). Keys: actor.
    policy_loss_type, eps_clip, eps_clip_low_high, dual_clip, entropy_coef, token_level_loss;
    algo.advantage.estimator, gamma, lambd, no_std_norm, is_correction_enable,
    is_correction_threshold, is_correction_type; algo.kl.init_coef, use_loss, estimator;
    reward.clip_range; rollout.n_samples_per_prompt; dp_size, batch_num_tokens,
    global_batch_size (loss_batch_info); emulate_float32 (reproduce OpenRLHF's float32 casts,
    default True). Unknown keys raise [grpo.bad_option] when used."""
    flat: Dict[str, Any] = {}

    def walk(prefix: str, d: Mapping[str, Any]) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, Mapping):
                walk(key + ".", v)
            else:
                flat[key] = list(v) if isinstance(v, tuple) else v

    walk("", dict(args or {}))
    walk("", {k.replace("__", "."): v for k, v in flags.items()})
    return flat


def openrlhf_approx_kl(logp: ArrayLike, ref_logp: ArrayLike, estimator: str = "k1", *,
                       emulate_float32: bool = True):
    """OpenRLHF ``compute_approx_kl(log_probs, log_probs_base, kl_estimator)``: the elementwise
    KL [B, T] (k1 = x, k2 = x^2 / 2, k3 = exp(-x) - 1 + x with x = lp - lb, clamped to [-10, 10];
    unmasked) and d kl / d logp. emulate_float32 reproduces OpenRLHF's ``.float()`` (every
    operation rounded to float32); False gives the float64 formula. Returns (kl, grad)."""
    like = _is_torch(logp)
    lp, lb = _f64(logp, "log_probs"), _f64(ref_logp, "log_probs_base")
    kl, g = np.empty(lp.shape), np.empty(lp.shape)
    _C.openrlhf_approx_kl(estimator, bool(emulate_float32), np_desc(lp), np_desc(lb), np_desc(kl),
                          np_desc(g))
    return _out(kl, like), _out(g, like)


def openrlhf_advantages(rewards: ArrayLike, mask: ArrayLike, *, kl: Optional[ArrayLike] = None,
                        values: Optional[ArrayLike] = None,
                        index: Optional[Sequence[int]] = None,
                        openrlhf: Optional[Mapping[str, Any]] = None,
                        return_stats: bool = False):
    """OpenRLHF ``RemoteExperienceMaker.compute_advantages_and_returns`` (one process, no length
    penalties), grpo::compute_openrlhf_advantages: group baselines by
    ``algo.advantage.estimator`` (gae, reinforce, rloo, reinforce_baseline, group_norm, dr_grpo;
    rows grouped by index // rollout.n_samples_per_prompt), reward clipping to reward.clip_range,
    the KL in the reward (``-algo.kl.init_coef * kl`` per token unless algo.kl.use_loss), returns or
    GAE (values [B, T] required), then OpenRLHF's global token whitening.

    rewards [B]; mask [B, T]; kl [B, T] from openrlhf_approx_kl (None: no KL); index: original
    sample ids of the experience order (None: 0..B-1). Returns (advantages, returns) [B, T]
    float64; with return_stats also {"group_reward_std", "whiten_mean", "whiten_rstd",
    "whitened"}. The whitened advantages are nonzero at padding, as OpenRLHF's."""
    like = _is_torch(rewards)
    r, m = _f64(rewards, "rewards"), _f64(mask, "action_mask")
    k = None if kl is None else _f64(kl, "kl")
    v = None if values is None else _f64(values, "values")
    idx = None if index is None else [int(i) for i in index]
    adv, ret = np.empty(m.shape), np.empty(m.shape)
    std, mean, rstd, whitened = _C.openrlhf_advantages(
        openrlhf_args(openrlhf), np_desc(r), idx, np_desc(m), None if k is None else np_desc(k),
        None if v is None else np_desc(v), np_desc(adv), np_desc(ret))
    res = (_out(adv, like), _out(ret, like))
    if return_stats:
        return res + ({"group_reward_std": np.asarray(std, dtype=np.float64),
                       "whiten_mean": mean, "whiten_rstd": rstd, "whitened": whitened},)
    return res


def openrlhf_metrics(logp: ArrayLike, old_logp: ArrayLike, advantages: ArrayLike,
                     mask: ArrayLike, sampler_logp: Optional[ArrayLike] = None, *,
                     openrlhf: Optional[Mapping[str, Any]] = None) -> Dict[str, float]:
    """The metrics OpenRLHF's ``PolicyLoss.forward`` returns for this batch under the options
    ``openrlhf`` (the same dict as ``loss_options(openrlhf=...)``): {"clip_ratio", "ppo_kl"} and
    "vllm_kl" with ppo IS correction. advantages [B, T] (or [B], broadcast along T)."""
    lp, lo, m = _f64(logp, "log_probs"), _f64(old_logp, "old_log_probs"), _f64(mask, "mask")
    a = _f64(advantages, "advantages")
    if a.ndim == 1:
        a = np.ascontiguousarray(np.broadcast_to(a[:, None], lp.shape))
    s = None if sampler_logp is None else _f64(sampler_logp, "rollout_log_probs")
    clip, ppo_kl, vllm_kl = _C.openrlhf_metrics(openrlhf_args(openrlhf), np_desc(lp),
                                                np_desc(lo), np_desc(a), np_desc(m),
                                                None if s is None else np_desc(s))
    out = {"clip_ratio": clip, "ppo_kl": ppo_kl}
    if vllm_kl is not None:
        out["vllm_kl"] = vllm_kl
    return out


# ---------------------------------------------------------------------------------------------
# Metrics of a loss call's stats buffer.


def _stats(stats, what: str = "stats") -> np.ndarray:
    s = _f64(stats, what)
    if s.shape != (N_STATS,):
        raise GrpoError(f"[grpo.shape_mismatch] {what}: expected a float64 [{N_STATS}] stats "
                        f"buffer (LossOutput.stats / FusedOutput.stats), got shape {s.shape}")
    return s


def metrics_dict(stats: ArrayLike) -> Dict[str, float]:
    """The named metrics of a stats buffer (LossOutput.stats / FusedOutput.stats): "loss",
    "policy_loss", "kl_loss", "entropy_loss"; per METRIC_NAMES entry its mean, "name/min",
    "name/max" (NaN when nothing was accumulated); and the counts "opsm_dropped_seqs",
    "entropy_masked_tokens", "truncated_seqs", "tokens", "sequences"."""
    v = _stats(stats).tolist()
    out = {"loss": v[0], "policy_loss": v[1], "kl_loss": v[2], "entropy_loss": v[3]}
    for k, name in enumerate(METRIC_NAMES):
        out[name] = v[4 + 3 * k]
        out[name + "/min"] = v[5 + 3 * k]
        out[name + "/max"] = v[6 + 3 * k]
    base = 4 + 6 * len(METRIC_NAMES)
    for k, name in enumerate(_COUNTS):
        out[name] = v[base + k]
    return out


def verl_metrics(stats: ArrayLike, verl: Optional[Mapping[str, Any]] = None) -> Dict[str, float]:
    """verl's logged policy metrics of one loss call, exactly as verl computes them
    (grpo::verl_metrics): {"pg_clipfrac", "pg_clipfrac_lower", "ppo_kl"} with verl's
    ``masked_mean`` (sum / (count + 1e-8)) over the indicators verl logs for ``loss_mode``
    (vanilla: clip region and dual clip; cispo: weight clip; geo_mean: band exits; gspo: region;
    sapo: 0 / 0; gpg: all 0). ``stats`` comes from policy_loss / fused steps run with
    ``loss_options(verl=verl)``; ``verl`` is the same dict (default loss_mode vanilla)."""
    s = _stats(stats)
    a, b, c = _C.verl_metrics(np_desc(s), dict(verl or {}))
    return {"pg_clipfrac": a, "pg_clipfrac_lower": b, "ppo_kl": c}


def merge_stats(*stats: ArrayLike):
    """Merges the stats buffers of several micro-batches or ranks (loss_metrics::merge: every
    accumulator's sums, weights, min and max combine exactly, so means are token-weighted over
    all parts); the four loss scalars are summed (the step's loss when each micro-batch used the
    step's global denominators). Returns a buffer of the same kind as the first one."""
    if len(stats) == 1 and isinstance(stats[0], (list, tuple)):
        stats = tuple(stats[0])
    if not stats:
        raise GrpoError("[grpo.shape_mismatch] merge_stats: no stats to merge")
    parts = [_stats(s, f"stats[{i}]") for i, s in enumerate(stats)]
    out = np.empty(N_STATS)
    _C.merge_stats([np_desc(p) for p in parts], np_desc(out))
    return _out(out, _is_torch(stats[0]))
