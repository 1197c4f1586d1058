# SPDX-License-Identifier: Apache-2.0
"""grpo.ops: the GRPO loss family, KL estimators, fused log-prob / entropy, fused GRPO steps and
distillation losses on torch tensors (numpy arrays where no autograd is needed).

Every differentiable op is a ``torch.library.custom_op`` (namespace ``grpo``) with
``register_fake`` (shapes for ``torch.compile(fullgraph=True)`` / meta tensors) and
``register_autograd``. The C++ core computes the gradient in the forward pass (its contract: every
loss returns its value and its analytic gradient), so backward is one multiply by the upstream
gradient; for the log-prob op the backward is a second custom op that recomputes the softmax
statistics from the logits instead of storing [N, V] probabilities.

Tensors are passed zero-copy (data pointer + strides, any layout). Dtypes: the loss family and KL
run in float32 or float64 (bfloat16 / float16 inputs are computed in float32 and gradients cast
back); logits of the log-prob and fused steps are read as float32, bfloat16 or float16 directly
(float64 logits are converted to float32); the fused linear step reads float32 hidden states and
weights (others converted); distillation reads float32 / float64 / bfloat16 / float16 logits.
CUDA tensors: with a build made with ``-C cmake.define.GRPO_PY_CUDA=ON`` (``grpo.built_with_cuda``),
``policy_loss``, ``logprob_entropy`` and ``fused_grpo_step`` run the kernels of cuda/ on torch's
current stream (float32 log-probs; per-token loss and metric accumulators are NaN there, the loss,
gradients and four loss scalars are computed); every other op, and every op of a build without
CUDA, raises ``GrpoError`` ``[grpo.bad_device]`` for a CUDA tensor.
"""
import json
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import torch

from . import _C
from ._C import GrpoError
from ._tensors import np_desc
from .experience import (METRIC_NAMES, kl_for_reward, masked_whiten, merge_stats, metrics_dict,
                         openrlhf_advantages, openrlhf_approx_kl, openrlhf_args, openrlhf_metrics,
                         verl_metrics)

__all__ = [
    "LossOutput",
    "loss_options",
    "policy_loss",
    "aggregate",
    "kl_penalty",
    "group_advantages",
    "reinforce_pp_advantages",
    "logprob_entropy",
    "fused_grpo_step",
    "fused_linear_grpo_step",
    "sft_loss",
    "distill_loss",
    "topk_distill_loss",
    "metrics_dict",
    "METRIC_NAMES",
    "kl_for_reward",
    "masked_whiten",
    "openrlhf_args",
    "openrlhf_approx_kl",
    "openrlhf_advantages",
    "openrlhf_metrics",
    "verl_metrics",
    "merge_stats",
]

_TORCH_CODES = {
    torch.float32: 0,
    torch.float64: 1,
    torch.bfloat16: 2,
    torch.float16: 3,
    torch.int64: 4,
    torch.int32: 5,
    torch.uint8: 6,
    torch.bool: 6,
}


def _d(t: Optional[torch.Tensor]):
    """Descriptor of a CPU tensor (None passes through)."""
    if t is None:
        return None
    if not t.is_cpu:  # is_cpu: ~0.1 us; t.device.type costs ~2 us per tensor
        raise _bad_device(t)
    return (t.data_ptr(), t.shape, t.stride(), _TORCH_CODES[t.dtype])


def _bad_device(t: torch.Tensor) -> GrpoError:
    if _cuda is not None:
        return GrpoError(
            f"[grpo.bad_device] tensor on {t.device}: this op runs on the CPU only (CUDA routes: "
            f"{', '.join(CUDA_OPS)}); move the tensor to the CPU, or pass every tensor of a "
            "routed op on the same CUDA device")
    return GrpoError(
        f"[grpo.bad_device] tensor on {t.device}: this grpo build has no CUDA kernels "
        "(grpo.built_with_cuda is False); move the tensor to the CPU or build with CUDA "
        "(pip install . -C cmake.define.GRPO_PY_CUDA=ON)"
        + (f" [grpo._cuda failed to load: {_CUDA_IMPORT_ERROR}]" if _CUDA_IMPORT_ERROR else ""))


# ---------------------------------------------------------------------------------------------
# CUDA routes (grpo._cuda, built with -DGRPO_PY_CUDA=ON): policy_loss, logprob_entropy (forward and
# backward) and fused_grpo_step run the launchers of cuda/grpo/cuda/ on torch's current stream of
# the tensors' device. Each call reads the kernels' status word back (one stream synchronisation),
# so bad ids and non-finite inputs raise GrpoError as on the CPU.

CUDA_OPS = ("policy_loss", "logprob_entropy", "fused_grpo_step")
_cuda = None
_CUDA_IMPORT_ERROR = ""
if _C.built_with_cuda:
    try:
        from . import _cuda  # noqa: F811
    except ImportError as _e:  # e.g. no libcudart on this machine: CUDA tensors then raise
        _CUDA_IMPORT_ERROR = str(_e)


def _cu(t: Optional[torch.Tensor], dev: torch.device):
    """Descriptor of a tensor on CUDA device `dev` (None passes through)."""
    if t is None:
        return None
    if t.device != dev:
        raise GrpoError(f"[grpo.bad_device] tensor on {t.device}: every tensor of this call must "
                        f"be on {dev}")
    return (t.data_ptr(), t.shape, t.stride(), _TORCH_CODES[t.dtype])


def _cuda_ready(t: torch.Tensor) -> torch.device:
    """The device of a CUDA call, after checking that this build can run it."""
    if _cuda is None:
        raise _bad_device(t)
    return t.device


def _workspace(nbytes: int, dev: torch.device) -> torch.Tensor:
    return torch.empty((max(int(nbytes), 1),), dtype=torch.uint8, device=dev)


def _stream(dev: torch.device) -> int:
    return torch.cuda.current_stream(dev).cuda_stream


def _cuda_stats(dev: torch.device) -> torch.Tensor:
    """A stats buffer for a CUDA loss: the device kernels write the four scalars; they compute no
    metric accumulators, so those read NaN (means, min, max) and 0 (sums, counts)."""
    st = torch.zeros((_N_STATS,), dtype=torch.float64, device=dev)
    st[4:4 + 3 * len(METRIC_NAMES)] = float("nan")
    return st


def _per_seq_adv(adv: torch.Tensor, B: int, T: int) -> torch.Tensor:
    """[B] advantages as a [B, T] view with a zero T-stride (no copy)."""
    return adv[:, None].expand(B, T) if adv.dim() == 1 else adv


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _to(t: Optional[torch.Tensor], dtype) -> Optional[torch.Tensor]:
    return None if t is None else t.to(dtype)


# ---------------------------------------------------------------------------------------------
# Registration: every op is a torch.library.custom_op with register_fake and register_autograd.
# Eager calls outside torch.compile take a cheaper route to the same implementation and the same
# backward (a torch.autograd.Function, or the plain function under no_grad): the custom-op
# dispatcher costs ~100 us per call on small shapes, more than the computation. Under
# torch.compile / torch.export (torch.compiler.is_compiling()) the custom op itself is called.


def _op(name: str):
    def deco(fn):
        op = torch.library.custom_op(name, mutates_args=())(fn)
        op._grpo_impl = fn
        return op

    return deco


def _plain(args) -> bool:
    """True when every tensor argument is a plain eager tensor (not a FakeTensor / FunctionalTensor
    of a tracer such as AOTAutograd, export or opcheck, which must see the custom op)."""
    return all(type(a) is torch.Tensor for a in args if isinstance(a, torch.Tensor))


def _autograd(op, backward, setup):
    """register_autograd(op) and the eager fast path with the same setup / backward."""
    op.register_autograd(backward, setup_context=setup)
    impl = op._grpo_impl

    class _Eager(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            out = impl(*args)
            setup(ctx, args, out)
            return out

        @staticmethod
        def backward(ctx, *grads):
            return backward(ctx, *grads)

    def call(*args):
        if torch.compiler.is_compiling() or not _plain(args):
            return op(*args)
        if not torch.is_grad_enabled():
            return impl(*args)
        return _Eager.apply(*args)

    call.__name__ = call.__qualname__ = impl.__name__
    return call


# ---------------------------------------------------------------------------------------------
# Loss options: a canonical JSON spec (hashable, a plain str for custom_op schemas) -> C++ object.

_OPTIONS_CACHE: dict = {}


def loss_options(
    preset: Optional[str] = None,
    *,
    trl: Optional[dict] = None,
    verl: Optional[dict] = None,
    openrlhf: Optional[dict] = None,
    overrides: Optional[dict] = None,
) -> str:
    """The loss-options spec for a named preset, TRL GRPOConfig fields, verl actor fields or
    OpenRLHF flags.

    preset: "trl_grpo", "trl_bnpo", "trl_dr_grpo", "trl_dapo", "trl_cispo", "trl_sapo",
    "trl_luspo", "trl_vespo", "trl_gspo", "trl_gmpo", "verl_vanilla", "verl_gspo", "verl_sapo",
    "verl_cispo", "verl_geo_mean", "openrlhf". trl: {"loss_type", "importance_sampling_level",
    "beta", "epsilon", "epsilon_high", "delta", "max_completion_length", ...} (TRL's names). verl:
    {"loss_mode", "loss_agg_mode", "clip_ratio", "clip_ratio_low", "clip_ratio_high",
    "clip_ratio_c", "use_kl_loss", "kl_loss_coef", "kl_loss_type", ...}. openrlhf: OpenRLHF's
    flag names, flat ("actor.eps_clip") or nested (see openrlhf_args; grpo::from_openrlhf
    reproduces PolicyLoss.forward + aggregate_loss + the actor's KL loss). overrides: kl_coef,
    kl_estimator, entropy_coef, top_entropy_quantile, opsm_threshold, loss_agg_mode,
    global_tokens, global_seqs (micro-batch / data-parallel denominators), agg_scale, epsilon_low,
    epsilon_high, dual_clip_c. Unknown names raise GrpoError [grpo.bad_option] at once.
    """
    given = sum(x is not None for x in (preset, trl, verl, openrlhf))
    if given != 1:
        raise GrpoError("[grpo.bad_option] give exactly one of preset=, trl=, verl=, openrlhf=")
    if preset is not None:
        kind, name, args = "preset", preset, {}
    elif trl is not None:
        kind, name, args = "trl", "", dict(trl)
    elif verl is not None:
        kind, name, args = "verl", "", dict(verl)
    else:
        kind, name, args = "openrlhf", "", openrlhf_args(openrlhf)
    spec = json.dumps([kind, name, args, dict(overrides or {})], sort_keys=True)
    _options(spec)  # validate now: errors surface at the call that made them
    return spec


def _options(spec: str):
    o = _OPTIONS_CACHE.get(spec)
    if o is None:
        kind, name, args, over = json.loads(spec)
        o = _C.make_loss_options(kind, name, args, over)
        _OPTIONS_CACHE[spec] = o
    return o


@torch.compiler.assume_constant_result
def _json(obj) -> str:
    """Options dict -> the str a custom op takes (evaluated once at trace time under compile)."""
    return json.dumps(obj, sort_keys=True)


@torch.compiler.assume_constant_result
def _spec_of(options) -> str:
    if options is None:
        return loss_options("trl_grpo")
    if isinstance(options, str):
        return options if options.startswith("[") else loss_options(options)
    if isinstance(options, dict):
        return loss_options(**options)
    raise GrpoError("[grpo.bad_option] options: a preset name, a loss_options() spec or a dict")


_N_STATS = int(_C.n_stats)  # layout: grpo.experience.metrics_dict / python/src/common.hpp


class LossOutput(NamedTuple):
    """Result of policy_loss: ``loss`` (0-dim, differentiable), ``per_token_loss`` [B, T] (policy
    integrand + kl_coef * KL), ``per_seq_loss`` [B] (GMPO) and ``stats`` (float64 [N_STATS]: loss,
    policy_loss, kl_loss, entropy_loss, the metric accumulators and counts; read it with
    metrics_dict / verl_metrics, combine micro-batches with merge_stats)."""

    loss: torch.Tensor
    per_token_loss: torch.Tensor
    per_seq_loss: torch.Tensor
    stats: torch.Tensor


# ---------------------------------------------------------------------------------------------
# Policy loss family.


@_op("grpo::policy_loss")
def _policy_loss_op(
    logp: torch.Tensor,
    old_logp: Optional[torch.Tensor],
    ref_logp: Optional[torch.Tensor],
    advantages: torch.Tensor,
    mask: torch.Tensor,
    entropy: Optional[torch.Tensor],
    sampler_logp: Optional[torch.Tensor],
    spec: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
           torch.Tensor]:
    if logp.is_cuda:
        return _policy_loss_cuda(logp, old_logp, ref_logp, advantages, mask, entropy,
                                 sampler_logp, spec)
    dt = logp.dtype
    B, T = logp.shape
    grad = torch.empty((B, T), dtype=dt)
    ptl = torch.empty((B, T), dtype=dt)
    gh = torch.empty((B, T), dtype=dt)
    per_seq = torch.zeros((B,), dtype=dt)
    stats = torch.empty((_N_STATS,), dtype=torch.float64)
    _C.compute_loss(
        _options(spec), _d(logp), _d(old_logp), _d(ref_logp), _d(advantages), _d(mask),
        _d(entropy), _d(sampler_logp), _d(grad), _d(ptl), _d(gh), _d(per_seq), _d(stats))
    return stats[0].to(dt, copy=True), ptl, per_seq, stats, grad, gh


def _policy_loss_cuda(logp, old_logp, ref_logp, advantages, mask, entropy, sampler_logp, spec):
    """grpo::cuda::compute_loss: float32 log-probs / entropies, float64 side inputs. The device
    kernels compute the loss, its gradients and the four scalars, not the per-token / per-sequence
    loss or the metric accumulators: those outputs are NaN on CUDA."""
    dev = _cuda_ready(logp)
    dt = logp.dtype
    B, T = logp.shape
    f32, f64 = torch.float32, torch.float64
    lp = logp.to(f32).contiguous()
    h = None if entropy is None else entropy.to(f32).contiguous()
    side = lambda x: None if x is None else x.to(f64)  # noqa: E731
    adv = _per_seq_adv(advantages.to(f64), B, T)
    grad = torch.empty((B, T), dtype=f32, device=dev)
    gh = torch.zeros((B, T), dtype=f32, device=dev)
    stats = _cuda_stats(dev)
    ws = _workspace(_cuda.loss_workspace_bytes(B, T), dev)
    kind, name, args, over = json.loads(spec)
    with torch.cuda.device(dev):
        _cuda.compute_loss(spec, kind, name, args, over, _cu(lp, dev), _cu(h, dev),
                           _cu(side(old_logp), dev), _cu(side(ref_logp), dev), _cu(adv, dev),
                           _cu(mask.to(f64), dev), _cu(side(sampler_logp), dev), _cu(grad, dev),
                           _cu(gh, dev), stats.data_ptr(), ws.data_ptr(), _stream(dev))
    nan = float("nan")
    return (stats[0].to(dt, copy=True), torch.full((B, T), nan, dtype=dt, device=dev),
            torch.full((B,), nan, dtype=dt, device=dev), stats, grad.to(dt), gh.to(dt))


@_policy_loss_op.register_fake
def _(logp, old_logp, ref_logp, advantages, mask, entropy, sampler_logp, spec):
    B, T = logp.shape
    e = logp.new_empty
    return (e(()), e((B, T)), e((B,)), logp.new_empty((_N_STATS,), dtype=torch.float64),
            e((B, T)), e((B, T)))


def _policy_loss_setup(ctx, inputs, output):
    ctx.save_for_backward(output[4], output[5])
    ctx.has_entropy = inputs[5] is not None


def _policy_loss_backward(ctx, g_loss, g_ptl, g_seq, g_stats, g_grad, g_gh):
    grad, gh = ctx.saved_tensors
    g_lp = g_loss * grad
    g_h = g_loss * gh if ctx.has_entropy else None
    return g_lp, None, None, None, None, g_h, None, None


_policy_loss = _autograd(_policy_loss_op, _policy_loss_backward, _policy_loss_setup)


def policy_loss(
    logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    old_logp: Optional[torch.Tensor] = None,
    ref_logp: Optional[torch.Tensor] = None,
    *,
    entropy: Optional[torch.Tensor] = None,
    sampler_logp: Optional[torch.Tensor] = None,
    options: Any = None,
) -> LossOutput:
    """The GRPO objective of one (micro-)batch (grpo::compute_loss_into).

    logp [B, T] current log-probs (differentiable); advantages [B] (per sequence) or [B, T];
    mask [B, T]; old_logp [B, T] (None: on-policy, ratio 1 with the gradient of logp); ref_logp
    [B, T] when the options have a KL term; entropy [B, T] (differentiable) for the entropy bonus
    / top-entropy mask; sampler_logp for TIS / OPSM. options: a preset name ("trl_grpo"), a
    loss_options(...) spec or a dict of loss_options keyword arguments.
    Returns LossOutput; ``out.loss.backward()`` gives d loss / d logp (and d entropy).
    """
    spec = _spec_of(options)
    dt = _compute_dtype(logp)
    src = logp.dtype
    lp = logp.to(dt)
    h = _to(entropy, dt)
    out = _policy_loss(lp, _to(old_logp, dt), _to(ref_logp, dt), advantages.to(dt),
                          mask.to(dt), h, _to(sampler_logp, dt), spec)
    loss, ptl, per_seq, stats = out[0], out[1], out[2], out[3]
    if src != dt:  # bf16 / fp16 inputs: computed in float32 (autograd casts gradients back)
        ptl = ptl.to(src)
    return LossOutput(loss, ptl, per_seq, stats)


# ---------------------------------------------------------------------------------------------
# Aggregation and KL.


@_op("grpo::aggregate")
def _aggregate_op(loss_mat: torch.Tensor, mask: torch.Tensor, mode: str,
                  info: str) -> tuple[torch.Tensor, torch.Tensor]:
    grad = torch.empty(loss_mat.shape, dtype=loss_mat.dtype)
    v = _C.aggregate(mode, json.loads(info), _d(loss_mat), _d(mask), _d(grad))
    return torch.tensor(v, dtype=loss_mat.dtype), grad


@_aggregate_op.register_fake
def _(loss_mat, mask, mode, info):
    return loss_mat.new_empty(()), loss_mat.new_empty(loss_mat.shape)


def _agg_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])


def _agg_backward(ctx, g, g_grad):
    (grad,) = ctx.saved_tensors
    return g * grad, None, None, None


_aggregate = _autograd(_aggregate_op, _agg_backward, _agg_setup)


def aggregate(loss_mat, mask, mode: str = "token-mean", *, dp_size: float = 1,
              batch_num_tokens: Optional[float] = None, global_batch_size: Optional[float] = None,
              loss_scale_factor: Optional[float] = None):
    """verl agg_loss: reduce a [B, T] per-token loss under a mask with a loss_agg_mode
    ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean",
    "seq-mean-token-sum-norm", "group-token-mean") and optional global batch information; or
    OpenRLHF aggregate_loss with mode "openrlhf-token" / "openrlhf-sample" (token_level_loss
    true / false; dp_size, batch_num_tokens, global_batch_size as loss_batch_info).
    torch: differentiable in loss_mat. numpy: returns a float."""
    info = {"dp_size": dp_size, "batch_num_tokens": batch_num_tokens,
            "global_batch_size": global_batch_size, "loss_scale_factor": loss_scale_factor}
    if isinstance(loss_mat, np.ndarray):
        lm = np.asarray(loss_mat, dtype=np.float64)
        m = np.asarray(mask, dtype=np.float64)
        return _C.aggregate(mode, info, np_desc(lm), np_desc(m), None)
    dt = _compute_dtype(loss_mat)
    return _aggregate(loss_mat.to(dt), mask.to(dt), mode, _json(info))[0]


@_op("grpo::kl_penalty")
def _kl_op(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str,
           clamps: str) -> tuple[torch.Tensor, torch.Tensor]:
    kl = torch.empty(logp.shape, dtype=logp.dtype)
    grad = torch.empty(logp.shape, dtype=logp.dtype)
    _C.kl_penalty(estimator, clamps, _d(logp), _d(ref_logp), _d(kl), _d(grad))
    return kl, grad


@_kl_op.register_fake
def _(logp, ref_logp, estimator, clamps):
    return logp.new_empty(logp.shape), logp.new_empty(logp.shape)


def _kl_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])


def _kl_backward(ctx, g, g_grad):
    (grad,) = ctx.saved_tensors
    # Every estimator is a function of d = lp - lr: d/dlr = -d/dlp.
    return g * grad, -(g * grad), None, None


_kl = _autograd(_kl_op, _kl_backward, _kl_setup)


def kl_penalty(logp, ref_logp, estimator: str = "low_var_kl", clamps: str = "verl"):
    """Elementwise KL estimator (unmasked [B, T]), verl names: "kl"/"k1", "abs", "mse"/"k2",
    "low_var_kl"/"k3", each with an optional "+" (straight-through k2 gradient). clamps: "verl"
    (low_var_kl inner 20 / outer 10), "openrlhf" (every value clamped to [-10, 10]) or "none"
    (TRL). torch: differentiable in logp (and ref_logp). numpy: returns the KL array."""
    if isinstance(logp, np.ndarray):
        lp = np.asarray(logp, dtype=np.float64)
        lr = np.asarray(ref_logp, dtype=np.float64)
        out = np.empty(lp.shape)
        _C.kl_penalty(estimator, clamps, np_desc(lp), np_desc(lr), np_desc(out), None)
        return out
    dt = _compute_dtype(logp)
    kl = _kl(logp.to(dt), ref_logp.to(dt), estimator, clamps)[0]
    return kl if logp.dtype == dt else kl.to(logp.dtype)


# ---------------------------------------------------------------------------------------------
# Advantages (no autograd: numpy or torch in, the same kind out).


def _as_f64(x):
    if isinstance(x, torch.Tensor):
        if x.device.type != "cpu":
            raise GrpoError(f"[grpo.bad_device] tensor on {x.device}: CPU tensors only")
        return x.detach().to(torch.float64).contiguous().numpy()
    return np.ascontiguousarray(x, dtype=np.float64)


def group_advantages(
    rewards,
    group_size: Optional[int] = None,
    *,
    group_ids=None,
    estimator: str = "trl",
    mask=None,
    reward_weights: Optional[Sequence[float]] = None,
    return_std: bool = False,
    **options,
):
    """Group-relative advantages (grpo::compute_advantages) of per-sequence rewards [B] (NaN =
    unscorable), or of several reward functions [B, K] with reward_weights [K] (TRL
    multi-objective). Groups: consecutive blocks of group_size, or group_ids [B] (any int64
    labels, e.g. verl's uid mapped to ints). estimator presets: "trl" (options scale_rewards=
    "group"|"batch"|"none", multi_objective_aggregation), "verl_grpo", "verl_grpo_vectorized"
    (norm_adv_by_std_in_grpo), "verl_rloo", "verl_rloo_vectorized",
    "verl_reinforce_pp_baseline" and "verl_opo" (need mask [B, T]), "verl_gpg",
    "verl_grpo_passk", "openrlhf_group_norm", "openrlhf_dr_grpo", "openrlhf_rloo",
    "openrlhf_reinforce_baseline"; epsilon= overrides the preset's eps.
    Returns float64 advantages [B] (a torch tensor for torch input, else numpy); with
    return_std also the per-row group std and the batch std (TRL's std_rewards)."""
    is_torch = isinstance(rewards, torch.Tensor)
    r = _as_f64(rewards)
    if group_ids is None and group_size is None:
        raise GrpoError("[grpo.bad_option] give group_size or group_ids")
    ids = None
    if group_ids is not None:
        ids = np.ascontiguousarray(
            group_ids.detach().cpu().numpy() if isinstance(group_ids, torch.Tensor) else group_ids,
            dtype=np.int64)
    m = None if mask is None else _as_f64(mask)
    out = np.empty(r.shape[0], dtype=np.float64)
    row_std, batch_std = _C.advantages(
        estimator, options, np_desc(r), int(group_size or 0), None if ids is None else np_desc(ids),
        None if m is None else np_desc(m),
        None if reward_weights is None else [float(w) for w in reward_weights], np_desc(out))
    adv = torch.from_numpy(out) if is_torch else out
    if not return_std:
        return adv
    std = np.asarray(row_std, dtype=np.float64)
    return adv, (torch.from_numpy(std) if is_torch else std), batch_std


def reinforce_pp_advantages(token_rewards, mask, gamma: float = 1.0):
    """verl REINFORCE++: discounted returns over unmasked tokens, then masked whitening.
    Returns (advantages, returns), float64 [B, T] (torch for torch input, else numpy)."""
    is_torch = isinstance(token_rewards, torch.Tensor)
    r, m = _as_f64(token_rewards), _as_f64(mask)
    adv, ret = np.empty(r.shape), np.empty(r.shape)
    _C.reinforce_pp(np_desc(r), np_desc(m), float(gamma), np_desc(adv), np_desc(ret))
    if is_torch:
        return torch.from_numpy(adv), torch.from_numpy(ret)
    return adv, ret


# ---------------------------------------------------------------------------------------------
# Fused log-prob + entropy from logits.

_LOGIT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _logits_in(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in _LOGIT_DTYPES else x.to(torch.float32)


@_op("grpo::logprob_entropy")
def _logprob_op(logits: torch.Tensor, ids: torch.Tensor, temperature: float,
                ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    B, T = ids.shape
    if logits.is_cuda:
        dev = _cuda_ready(logits)
        x, y = logits.reshape(B * T, logits.shape[-1]), ids.reshape(B * T)
        logp = torch.empty((B, T), dtype=torch.float32, device=dev)
        ent = torch.empty((B, T), dtype=torch.float32, device=dev)
        ws = _workspace(_cuda.logprob_workspace_bytes(), dev)
        with torch.cuda.device(dev):
            _cuda.logprob_forward(_cu(x, dev), _cu(y, dev), _cu(logp.view(-1), dev),
                                  _cu(ent.view(-1), dev), temperature, ignore_index,
                                  ws.data_ptr(), _stream(dev))
        return logp, ent
    logp = torch.empty((B, T), dtype=torch.float32)
    ent = torch.empty((B, T), dtype=torch.float32)
    _C.logprob_forward(_d(logits), _d(ids), _d(logp), None, _d(ent), temperature, ignore_index)
    return logp, ent


@_logprob_op.register_fake
def _(logits, ids, temperature, ignore_index):
    B, T = ids.shape
    return (logits.new_empty((B, T), dtype=torch.float32),
            logits.new_empty((B, T), dtype=torch.float32))


@_op("grpo::logprob_entropy_backward")
def _logprob_bwd_op(logits: torch.Tensor, ids: torch.Tensor, g_logp: torch.Tensor,
                    g_entropy: torch.Tensor, temperature: float,
                    ignore_index: int) -> torch.Tensor:
    if logits.is_cuda:
        dev = _cuda_ready(logits)
        B, T = ids.shape
        V = logits.shape[-1]
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=dev)
        ws = _workspace(_cuda.logprob_workspace_bytes(), dev)
        with torch.cuda.device(dev):
            _cuda.logprob_backward(_cu(logits.reshape(B * T, V), dev), _cu(ids.reshape(B * T), dev),
                                   _cu(g_logp.reshape(B * T), dev),
                                   _cu(g_entropy.reshape(B * T), dev),
                                   _cu(grad.view(B * T, V), dev), temperature, ignore_index,
                                   ws.data_ptr(), _stream(dev))
        return grad
    grad = torch.empty(logits.shape, dtype=logits.dtype)
    _C.logprob_backward(_d(logits), _d(ids), _d(g_logp), _d(g_entropy), _d(grad), temperature,
                        ignore_index)
    return grad


@_logprob_bwd_op.register_fake
def _(logits, ids, g_logp, g_entropy, temperature, ignore_index):
    return logits.new_empty(logits.shape)


def _logprob_setup(ctx, inputs, output):
    logits, ids, temperature, ignore_index = inputs
    ctx.save_for_backward(logits, ids)
    ctx.temperature, ctx.ignore_index = temperature, ignore_index


def _logprob_backward(ctx, g_logp, g_ent):
    logits, ids = ctx.saved_tensors
    if g_logp is None:
        g_logp = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    if g_ent is None:
        g_ent = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    eager = not torch.compiler.is_compiling() and _plain((logits, ids, g_logp, g_ent))
    bwd = _logprob_bwd_op._grpo_impl if eager else _logprob_bwd_op
    grad = bwd(logits, ids, g_logp.to(torch.float32).contiguous(),
                           g_ent.to(torch.float32).contiguous(), ctx.temperature,
                           ctx.ignore_index)
    return grad, None, None, None


_logprob = _autograd(_logprob_op, _logprob_backward, _logprob_setup)


def logprob_entropy(logits: torch.Tensor, ids: torch.Tensor, *, temperature: float = 1.0,
                    ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective log-softmax and entropy: logits [B, T, V] (or [N, V]) and sampled ids [B, T]
    (or [N]) -> (log softmax(logits / T)[ids], entropy), float32, without a [B, T, V] temporary.
    Rows whose id equals ignore_index give 0. Differentiable in logits (the backward recomputes
    the row statistics: no [B, T, V] probabilities are kept)."""
    flat = logits.dim() == 2
    x = _logits_in(logits.unsqueeze(0) if flat else logits)
    y = (ids.unsqueeze(0) if flat else ids).to(torch.int64)
    logp, ent = _logprob(x, y, float(temperature), int(ignore_index))
    if flat:
        logp, ent = logp.squeeze(0), ent.squeeze(0)
    return logp, ent


# ---------------------------------------------------------------------------------------------
# Fused GRPO steps.


class FusedOutput(NamedTuple):
    """Result of the fused steps: ``loss`` (0-dim float64, differentiable in logits / hidden and
    weight), ``logp`` and ``entropy`` [B, T] float32 (detached), ``stats`` as LossOutput.stats."""

    loss: torch.Tensor
    logp: torch.Tensor
    entropy: torch.Tensor
    stats: torch.Tensor


def _side(x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if x is None else x.detach().to(torch.float64)


@_op("grpo::fused_grpo_step")
def _fused_op(logits: torch.Tensor, ids: torch.Tensor, old_logp: Optional[torch.Tensor],
              ref_logp: Optional[torch.Tensor], advantages: torch.Tensor, mask: torch.Tensor,
              sampler_logp: Optional[torch.Tensor], spec: str,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                           torch.Tensor]:
    B, T, _ = logits.shape
    if logits.is_cuda:
        return _fused_cuda(logits, ids, old_logp, ref_logp, advantages, mask, sampler_logp, spec,
                           temperature)
    grad = torch.empty(logits.shape, dtype=logits.dtype)
    logp = torch.empty((B, T), dtype=torch.float32)
    ent = torch.empty((B, T), dtype=torch.float32)
    stats = torch.empty((_N_STATS,), dtype=torch.float64)
    _C.fused_grpo_step(
        _options(spec), _d(logits), _d(ids), _d(old_logp), _d(ref_logp), _d(advantages), _d(mask),
        _d(sampler_logp), _d(grad), _d(logp), _d(ent), _d(stats), temperature)
    return stats[0].clone(), logp, ent, stats, grad


def _fused_cuda(logits, ids, old_logp, ref_logp, advantages, mask, sampler_logp, spec,
                temperature):
    """grpo::cuda::fused_grpo_step (single pass or two phases, as the options need); the
    metric accumulators of stats are NaN on CUDA (the device computes the four scalars)."""
    dev = _cuda_ready(logits)
    B, T, V = logits.shape
    x = logits if B <= 1 or logits.stride(0) == T * logits.stride(1) else logits.contiguous()
    grad = torch.empty(logits.shape, dtype=logits.dtype, device=dev)
    logp = torch.empty((B, T), dtype=torch.float32, device=dev)
    ent = torch.empty((B, T), dtype=torch.float32, device=dev)
    stats = _cuda_stats(dev)
    ws = _workspace(_cuda.loss_workspace_bytes(B, T), dev)
    kind, name, args, over = json.loads(spec)
    with torch.cuda.device(dev):
        _cuda.fused_grpo_step(spec, kind, name, args, over, _cu(x, dev),
                              _cu(ids.contiguous(), dev), _cu(old_logp, dev),
                              _cu(ref_logp, dev), _cu(_per_seq_adv(advantages, B, T), dev),
                              _cu(mask, dev), _cu(sampler_logp, dev), _cu(grad, dev),
                              _cu(logp, dev), _cu(ent, dev), stats.data_ptr(), temperature,
                              ws.data_ptr(), _stream(dev))
    return stats[0].clone(), logp, ent, stats, grad


@_fused_op.register_fake
def _(logits, ids, old_logp, ref_logp, advantages, mask, sampler_logp, spec, temperature):
    B, T, _ = logits.shape
    f = torch.float32
    return (logits.new_empty((), dtype=torch.float64), logits.new_empty((B, T), dtype=f),
            logits.new_empty((B, T), dtype=f), logits.new_empty((_N_STATS,), dtype=torch.float64),
            logits.new_empty(logits.shape))


def _fused_setup(ctx, inputs, output):
    ctx.save_for_backward(output[4])


def _fused_backward(ctx, g_loss, g_logp, g_ent, g_stats, g_grad):
    (grad,) = ctx.saved_tensors
    return (g_loss.to(grad.dtype) * grad, None, None, None, None, None, None, None, None)


_fused = _autograd(_fused_op, _fused_backward, _fused_setup)


def fused_grpo_step(logits: torch.Tensor, ids: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, old_logp: Optional[torch.Tensor] = None,
                    ref_logp: Optional[torch.Tensor] = None, *,
                    sampler_logp: Optional[torch.Tensor] = None, options: Any = None,
                    temperature: float = 1.0) -> FusedOutput:
    """Fused GRPO step from logits [B, T, V] (float32 / bfloat16 / float16, any strides) and
    sampled ids [B, T]: log-probs, entropies, the loss of `options` and d loss / d logits in one
    C++ call (grpo::fused_grpo_step). ``out.loss.backward()`` hands the precomputed gradient (in
    the logits' dtype) to autograd."""
    spec = _spec_of(options)
    x = _logits_in(logits)
    out = _fused(x, ids.to(torch.int64), _side(old_logp), _side(ref_logp), _side(advantages),
                    _side(mask), _side(sampler_logp), spec, float(temperature))
    return FusedOutput(out[0], out[1], out[2], out[3])


@_op("grpo::fused_linear_grpo_step")
def _fused_linear_op(hidden: torch.Tensor, weight: torch.Tensor, ids: torch.Tensor,
                     old_logp: Optional[torch.Tensor], ref_logp: Optional[torch.Tensor],
                     advantages: torch.Tensor, mask: torch.Tensor,
                     sampler_logp: Optional[torch.Tensor], spec: str,
                     temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                  torch.Tensor, torch.Tensor, torch.Tensor]:
    B, T, _ = hidden.shape
    gh = torch.empty(hidden.shape, dtype=torch.float32)
    gw = torch.empty(weight.shape, dtype=torch.float32)
    logp = torch.empty((B, T), dtype=torch.float32)
    ent = torch.empty((B, T), dtype=torch.float32)
    stats = torch.empty((_N_STATS,), dtype=torch.float64)
    _C.fused_linear_grpo_step(
        _options(spec), _d(hidden), _d(weight), _d(ids), _d(old_logp), _d(ref_logp),
        _d(advantages), _d(mask), _d(sampler_logp), _d(gh), _d(gw), _d(logp), _d(ent), _d(stats),
        temperature)
    return stats[0].clone(), logp, ent, stats, gh, gw


@_fused_linear_op.register_fake
def _(hidden, weight, ids, old_logp, ref_logp, advantages, mask, sampler_logp, spec,
      temperature):
    B, T, _ = hidden.shape
    f = torch.float32
    return (hidden.new_empty((), dtype=torch.float64), hidden.new_empty((B, T), dtype=f),
            hidden.new_empty((B, T), dtype=f), hidden.new_empty((_N_STATS,), dtype=torch.float64),
            hidden.new_empty(hidden.shape, dtype=f), weight.new_empty(weight.shape, dtype=f))


def _fl_setup(ctx, inputs, output):
    ctx.save_for_backward(output[4], output[5])


def _fl_backward(ctx, g_loss, g_logp, g_ent, g_stats, g_gh, g_gw):
    gh, gw = ctx.saved_tensors
    g = g_loss.to(torch.float32)
    return (g * gh, g * gw) + (None,) * 8


_fused_linear = _autograd(_fused_linear_op, _fl_backward, _fl_setup)


def fused_linear_grpo_step(hidden: torch.Tensor, weight: torch.Tensor, ids: torch.Tensor,
                           advantages: torch.Tensor, mask: torch.Tensor,
                           old_logp: Optional[torch.Tensor] = None,
                           ref_logp: Optional[torch.Tensor] = None, *,
                           sampler_logp: Optional[torch.Tensor] = None, options: Any = None,
                           temperature: float = 1.0) -> FusedOutput:
    """Fused GRPO step from hidden states [B, T, H] and the lm_head weight [V, H] (float32;
    other dtypes converted): the logits are computed chunk by chunk and never materialised.
    ``out.loss.backward()`` gives d loss / d hidden and d loss / d weight (exact up to fp32 GEMM
    rounding)."""
    spec = _spec_of(options)
    h = hidden.to(torch.float32)
    w = weight.to(torch.float32)
    if w.stride(-1) != 1:  # the GEMM blocks read weight rows contiguously (any row stride)
        w = w.contiguous()
    out = _fused_linear(h, w, ids.to(torch.int64), _side(old_logp), _side(ref_logp),
                           _side(advantages), _side(mask), _side(sampler_logp), spec,
                           float(temperature))
    return FusedOutput(out[0], out[1], out[2], out[3])


# ---------------------------------------------------------------------------------------------
# Distillation.

_STUDENT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _student(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in _STUDENT_DTYPES else x.to(torch.float32)


def _mask_u8(mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if mask is None else (mask != 0).to(torch.uint8)


def _grad_backward(n_inputs: int):
    def backward(ctx, g_loss, g_grad):
        (grad,) = ctx.saved_tensors
        return (g_loss.to(grad.dtype) * grad,) + (None,) * (n_inputs - 1)

    return backward


def _save_grad(ctx, inputs, output):
    ctx.save_for_backward(output[1])


@_op("grpo::distill_dense")
def _dense_op(student: torch.Tensor, teacher: torch.Tensor, mask: Optional[torch.Tensor],
              opts: str) -> tuple[torch.Tensor, torch.Tensor]:
    grad = torch.empty(student.shape, dtype=student.dtype)
    loss, _ = _C.distill_dense(json.loads(opts), _d(student), _d(teacher), _d(grad), _d(mask),
                               None)
    return torch.tensor(loss, dtype=torch.float64), grad


@_dense_op.register_fake
def _(student, teacher, mask, opts):
    return student.new_empty((), dtype=torch.float64), student.new_empty(student.shape)


_dense = _autograd(_dense_op, _grad_backward(4), _save_grad)


def _rank3(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if x.dim() == 2 else x


def _rank2(x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if x is None else (x.unsqueeze(0) if x.dim() == 1 else x)


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 mask: Optional[torch.Tensor] = None, *, divergence: str = "forward_kl",
                 beta: float = 0.5, alpha: float = 0.1, temperature: float = 1.0,
                 scale_by_t2: bool = False, loss_agg_mode: str = "token-mean",
                 jsd_endpoints: str = "kl_limits") -> torch.Tensor:
    """Dense distillation loss (grpo::distill::divergence_loss): divergence "forward_kl",
    "reverse_kl", "jsd" (beta), "skew_forward_kl" / "skew_reverse_kl" (alpha) between teacher p
    and student q at temperature T, aggregated with loss_agg_mode. student / teacher [B, L, V]
    or [N, V]; mask [B, L]. Differentiable in the student logits; the teacher is a constant."""
    s = _student(_rank3(student_logits))
    t = _rank3(teacher_logits).detach().to(s.dtype)
    opts = {"divergence": divergence, "beta": beta, "alpha": alpha, "temperature": temperature,
            "scale_by_t2": scale_by_t2, "loss_agg_mode": loss_agg_mode,
            "jsd_endpoints": jsd_endpoints}
    return _dense(s, t, _mask_u8(_rank2(mask)), _json(opts))[0]


@_op("grpo::sft_loss")
def _sft_op(logits: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor],
            opts: str) -> tuple[torch.Tensor, torch.Tensor]:
    grad = torch.empty(logits.shape, dtype=logits.dtype)
    loss, _ = _C.distill_sft(json.loads(opts), _d(logits), _d(labels), _d(grad), _d(mask), None)
    return torch.tensor(loss, dtype=torch.float64), grad


@_sft_op.register_fake
def _(logits, labels, mask, opts):
    return logits.new_empty((), dtype=torch.float64), logits.new_empty(logits.shape)


_sft = _autograd(_sft_op, _grad_backward(4), _save_grad)


def sft_loss(logits: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None, *,
             ignore_index: int = -100, label_smoothing: float = 0.0, temperature: float = 1.0,
             loss_agg_mode: str = "token-mean") -> torch.Tensor:
    """SFT negative log-likelihood on teacher tokens (DeepSeek-R1 distillation), torch
    CrossEntropyLoss semantics (ignore_index, label_smoothing) plus temperature and the GRPO
    aggregation modes. logits [B, L, V] or [N, V]; labels [B, L] or [N]."""
    x = _student(_rank3(logits))
    y = _rank2(labels).to(torch.int64)
    opts = {"ignore_index": ignore_index, "label_smoothing": label_smoothing,
            "temperature": temperature, "loss_agg_mode": loss_agg_mode}
    return _sft(x, y, _mask_u8(_rank2(mask)), _json(opts))[0]


@_op("grpo::distill_topk")
def _topk_op(student: torch.Tensor, t_logp: torch.Tensor, t_ids: torch.Tensor,
             mask: Optional[torch.Tensor], opts: str) -> tuple[torch.Tensor, torch.Tensor]:
    grad = torch.empty(student.shape, dtype=student.dtype)
    loss, _ = _C.distill_topk(json.loads(opts), _d(student), _d(t_logp), _d(t_ids), _d(grad),
                              _d(mask), None)
    return torch.tensor(loss, dtype=torch.float64), grad


@_topk_op.register_fake
def _(student, t_logp, t_ids, mask, opts):
    return student.new_empty((), dtype=torch.float64), student.new_empty(student.shape)


_topk = _autograd(_topk_op, _grad_backward(5), _save_grad)


def topk_distill_loss(student_logits: torch.Tensor, teacher_logprobs: torch.Tensor,
                      teacher_ids: torch.Tensor, mask: Optional[torch.Tensor] = None, *,
                      convention: str = "renormalized_teacher", divergence: str = "forward_kl",
                      beta: float = 0.5, alpha: float = 0.1, temperature: float = 1.0,
                      scale_by_t2: bool = False, loss_agg_mode: str = "token-mean",
                      teacher_power: float = 1.0) -> torch.Tensor:
    """Distillation from a top-k teacher (log-probs [B, L, K] of ids [B, L, K], negative id =
    padding, K <= 128). convention: "renormalized_teacher", "tail_bucket", "renormalized_both"
    (see docs/distillation.md). Differentiable in the student logits."""
    s = _student(_rank3(student_logits))
    opts = {"convention": convention, "divergence": divergence, "beta": beta, "alpha": alpha,
            "temperature": temperature, "scale_by_t2": scale_by_t2,
            "loss_agg_mode": loss_agg_mode, "teacher_power": teacher_power}
    return _topk(s, _rank3(teacher_logprobs).detach().to(torch.float32),
                    _rank3(teacher_ids).to(torch.int64), _mask_u8(_rank2(mask)),
                    _json(opts))[0]
