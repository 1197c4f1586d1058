# SPDX-License-Identifier: Apache-2.0
"""grpo.ops against PyTorch eager and torch.compile (inductor) on the same ops, plus the binding
overhead per call on small shapes. Run under the shared benchmark lock:

    flock /tmp/grpo_bench.lock python benchmarks/python/bench_ops.py [--threads N] [--quick]

Each figure is the median of `reps` timed calls after warm-up (forward + backward unless said).
The PyTorch peers are written from the same formulas as tests/python/reference.py, in float32.
"""
import argparse
import json
import platform
import statistics
import time

import torch

import grpo
import grpo.ops as G
from grpo import _C


def timeit(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def trl_grpo_ref(lp, old, ref, adv, mask, beta=0.04, eps=0.2):
    r = torch.exp(lp - old)
    a = adv.unsqueeze(-1)
    per_tok = -torch.min(r * a, torch.clamp(r, 1 - eps, 1 + eps) * a)
    d = ref - lp
    per_tok = per_tok + beta * (torch.exp(d) - d - 1)
    return ((per_tok * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


def logprob_ref(logits, ids):
    z = torch.log_softmax(logits.float(), -1)
    lp = z.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    h = -(z.exp() * z).sum(-1)
    return lp, h


OPTS = G.loss_options(trl={"loss_type": "grpo", "beta": 0.04})


def bench_loss(B, T, reps):
    g = torch.Generator().manual_seed(0)
    lp0 = -1.5 + 0.5 * torch.randn(B, T, generator=g)
    old = lp0 + 0.1 * torch.randn(B, T, generator=g)
    ref = lp0 + 0.1 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    mask = (torch.rand(B, T, generator=g) < 0.9).float()

    def run(f):
        def go():
            x = lp0.clone().requires_grad_()
            f(x).backward()
        return go

    grpo_f = run(lambda x: G.policy_loss(x, adv, mask, old, ref, options=OPTS).loss)
    eager_f = run(lambda x: trl_grpo_ref(x, old, ref, adv, mask))
    comp = torch.compile(lambda x: trl_grpo_ref(x, old, ref, adv, mask), fullgraph=True)
    comp_f = run(comp)
    return {"grpo": timeit(grpo_f, reps), "eager": timeit(eager_f, reps),
            "compile": timeit(comp_f, reps, warmup=5)}


def bench_logprob(N, V, reps):
    g = torch.Generator().manual_seed(1)
    logits0 = torch.randn(1, N, V, generator=g)
    ids = torch.randint(0, V, (1, N), generator=g)
    w = torch.randn(1, N, generator=g)

    def run(f):
        def go():
            x = logits0.clone().requires_grad_()
            lp, h = f(x)
            ((lp * w).sum() + h.sum()).backward()
        return go

    comp = torch.compile(lambda x: logprob_ref(x, ids), fullgraph=True)
    return {"grpo": timeit(run(lambda x: G.logprob_entropy(x, ids)), reps),
            "eager": timeit(run(lambda x: logprob_ref(x, ids)), reps),
            "compile": timeit(run(comp), reps, warmup=5)}


def bench_fused(B, T, V, reps):
    g = torch.Generator().manual_seed(2)
    logits0 = torch.randn(B, T, V, generator=g)
    ids = torch.randint(0, V, (B, T), generator=g)
    with torch.no_grad():
        lp0, _ = logprob_ref(logits0, ids)
    old = lp0 + 0.1 * torch.randn(B, T, generator=g)
    ref = lp0 + 0.1 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    mask = torch.ones(B, T)

    def peer(x):
        lp, _ = logprob_ref(x, ids)
        return trl_grpo_ref(lp, old, ref, adv, mask)

    def run(f):
        def go():
            x = logits0.clone().requires_grad_()
            f(x).backward()
        return go

    comp = torch.compile(peer, fullgraph=True)
    return {"grpo": timeit(run(lambda x: G.fused_grpo_step(x, ids, adv, mask, old, ref,
                                                            options=OPTS).loss), reps),
            "eager": timeit(run(peer), reps),
            "compile": timeit(run(comp), reps, warmup=5)}


def bench_overhead(reps):
    """Per-call cost on [2, 4] inputs: the raw binding (descriptors + C++ call, GIL release), the
    custom-op forward (dispatcher + output allocation), forward + backward, and torch eager's
    forward of the same loss for scale."""
    B, T = 2, 4
    lp = torch.randn(B, T)
    old, ref = lp - 0.1, lp + 0.1
    adv, mask = torch.randn(B), torch.ones(B, T)
    grad, ptl, gh, ps = torch.empty(B, T), torch.empty(B, T), torch.empty(B, T), torch.zeros(B)
    stats = torch.empty(G._N_STATS, dtype=torch.float64)
    o = G._options(OPTS)
    d = G._d
    descs = [d(x) for x in (lp, old, ref, adv, mask, grad, ptl, gh, ps, stats)]

    def raw_prebuilt():
        _C.compute_loss(o, descs[0], descs[1], descs[2], descs[3], descs[4], None, None,
                        descs[5], descs[6], descs[7], descs[8], descs[9])

    def raw_with_descriptors():
        _C.compute_loss(o, d(lp), d(old), d(ref), d(adv), d(mask), None, None, d(grad), d(ptl),
                        d(gh), d(ps), d(stats))

    def op_forward():
        with torch.no_grad():
            G.policy_loss(lp, adv, mask, old, ref, options=OPTS)

    def op_fwd_bwd():
        x = lp.clone().requires_grad_()
        G.policy_loss(x, adv, mask, old, ref, options=OPTS).loss.backward()

    def eager_forward():
        with torch.no_grad():
            trl_grpo_ref(lp, old, ref, adv, mask)

    def verify_call():
        grpo.rewards.verify("\\frac12", "0.5")

    return {k: timeit(f, reps, warmup=50) for k, f in (
        ("raw_binding_prebuilt_descriptors", raw_prebuilt),
        ("raw_binding_with_descriptors", raw_with_descriptors),
        ("policy_loss_forward", op_forward), ("policy_loss_forward_backward", op_fwd_bwd),
        ("torch_eager_forward_same_loss", eager_forward), ("rewards_verify_frac12", verify_call))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0, help="torch / OpenMP threads (0: keep)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    reps = 5 if a.quick else 15
    res = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "overhead_us": {k: v * 1e6 for k, v in bench_overhead(2000).items()},
        "policy_loss_B64_T1024_ms": {k: v * 1e3 for k, v in bench_loss(64, 1024, reps).items()},
        "logprob_entropy_N1024_V32768_ms": {k: v * 1e3 for k, v in
                                            bench_logprob(1024, 32768, reps).items()},
        "fused_grpo_step_B8_T128_V32768_ms": {k: v * 1e3 for k, v in
                                              bench_fused(8, 128, 32768, reps).items()},
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
