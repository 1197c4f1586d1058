# SPDX-License-Identifier: Apache-2.0
"""PyTorch CPU peers (eager and torch.compile / inductor) of the C++ benchmarks, same shapes and
formulas, for the side-by-side tables of docs/benchmarks.md (issue 15).

    flock /tmp/grpo_bench.lock build/python-venv/bin/python benchmarks/peers/torch_cpu.py \
        --threads 2 --out build/peers-torch-2.json [--quick]

Each op is timed as the C++ benchmark times it (median of --reps calls after warm-up):
  logprob_fwd   selective log-softmax + entropy, no grad       (bench_logprob BM_ours_forward)
  fused_step    log-softmax -> gather -> DAPO loss -> backward (bench_logprob BM_ours_fused_grpo)
  grpo_loss     group advantages + DAPO loss + k3 KL, backward (bench_loss BM_grpo_loss)
  gspo_loss     the same with the sequence-level ratio (TRL GSPO) (bench_loss BM_grpo_loss_gspo)
  forward_kl    KL(teacher || student) at T=0.9, backward      (bench_distill BM_ours_dense fwd KL)
`benchmarks/peers/compare.py` joins this JSON with Google Benchmark JSON into the ratio table.
"""
import argparse
import json
import platform
import statistics
import time

import torch


def timeit(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def logprob_fwd(x, ids):
    z = torch.log_softmax(x.float(), -1)
    lp = z.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    h = -(z.exp() * z).sum(-1)
    return lp, h


def dapo_tokens(lp, old, adv, mask, lo=0.8, hi=1.28):
    r = torch.exp(lp - old)
    per_tok = -torch.min(r * adv, torch.clamp(r, lo, hi) * adv)
    return (per_tok * mask).sum() / mask.sum().clamp(min=1.0)


def fused_step(x, ids, old, adv, mask):
    lp, _ = logprob_fwd(x, ids)
    return dapo_tokens(lp, old, adv, mask)


def grpo_loss(lp, old, ref, mask, rewards, group=16, beta=0.04):
    r = rewards.view(-1, group)
    adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).reshape(-1, 1)
    ratio = torch.exp(lp - old)
    per_tok = -torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.28) * adv)
    d = ref - lp
    per_tok = per_tok + beta * (torch.exp(d) - d - 1)
    return (per_tok * mask).sum() / mask.sum().clamp(min=1.0)


def gspo_loss(lp, old, ref, mask, rewards, group=16, beta=0.04):
    """TRL importance_sampling_level="sequence": s_i = exp(sum_t m (lp - old) / n_i) per row."""
    r = rewards.view(-1, group)
    adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).reshape(-1, 1)
    n = mask.sum(1, keepdim=True).clamp(min=1.0)
    s = torch.exp(((lp - old) * mask).sum(1, keepdim=True) / n)
    per_tok = -torch.min(s * adv, torch.clamp(s, 0.8, 1.28) * adv)
    d = ref - lp
    per_tok = per_tok + beta * (torch.exp(d) - d - 1)
    return (per_tok * mask).sum() / mask.sum().clamp(min=1.0)


def forward_kl(s, t, temp=0.9):
    lq = torch.log_softmax(s.float() / temp, -1)
    lp = torch.log_softmax(t.float() / temp, -1)
    return torch.nn.functional.kl_div(lq, lp, reduction="sum", log_target=True) / s.shape[0]


def bench_pair(make_call, reps, quick):
    """Eager and compiled timings of the same closure factory."""
    eager = timeit(make_call(False), reps, 1)
    compiled = timeit(make_call(True), reps, 2 if quick else 3)
    return {"eager_ms": eager * 1e3, "compile_ms": compiled * 1e3}


def run(args):
    g = torch.Generator().manual_seed(0)
    k = max(1, args.shrink)  # rows divided by k (smoke runs); keys keep the full shape
    res = {}
    dts = {"fp32": torch.float32, "bf16": torch.bfloat16}
    lp_shapes = [(4096, 32768, "fp32"), (4096, 32768, "bf16")] + (
        [] if args.quick else [(4096, 151936, "fp32")])
    for N, V, dn in lp_shapes:
        x = (torch.randn(N // k, V, generator=g) * 2.0).to(dts[dn])
        ids = torch.randint(0, V, (N // k,), generator=g)

        def mk(comp, x=x, ids=ids):
            f = torch.compile(logprob_fwd, fullgraph=True) if comp else logprob_fwd

            def call():
                with torch.no_grad():
                    f(x, ids)
            return call
        res[f"logprob_fwd/{dn}/{N}x{V}"] = bench_pair(mk, args.reps, args.quick)
        del x

    for N, V, dn in [(4096, 32768, "fp32"), (4096, 32768, "bf16")]:
        n = N // k
        x0 = (torch.randn(n, V, generator=g) * 2.0).to(dts[dn])
        ids = torch.randint(0, V, (n,), generator=g)
        old = -10.0 + torch.randn(n, generator=g)
        adv = torch.randn(n, generator=g)
        mask = torch.ones(n)

        def mk(comp, x0=x0, ids=ids, old=old, adv=adv, mask=mask):
            f = torch.compile(fused_step, fullgraph=True) if comp else fused_step

            def call():
                x = x0.detach().requires_grad_()
                f(x, ids, old, adv, mask).backward()
            return call
        res[f"fused_step/{dn}/{N}x{V}"] = bench_pair(mk, args.reps, args.quick)
        del x0

    for B0, T in [(512 * 16, 4096), (256 * 16, 2048)]:
        B = max(16, (B0 // k) // 16 * 16)
        lp0 = -2.0 + torch.rand(B, T, generator=g) * 2 - 1
        old = lp0 - 0.3 * (torch.rand(B, T, generator=g) * 2 - 1)
        ref = lp0 - 0.3 * (torch.rand(B, T, generator=g) * 2 - 1)
        lens = (T // 4 + (torch.rand(B, generator=g) * 0.75 * T)).long()
        mask = (torch.arange(T).unsqueeze(0) < lens.unsqueeze(1)).float()
        rewards = (torch.rand(B, generator=g) > 0.5).float()

        def mk(comp, lp0=lp0, old=old, ref=ref, mask=mask, rewards=rewards):
            f = torch.compile(grpo_loss, fullgraph=True) if comp else grpo_loss

            def call():
                lp = lp0.detach().requires_grad_()
                f(lp, old, ref, mask, rewards).backward()
            return call
        res[f"grpo_loss/fp32/{B0 * T}"] = bench_pair(mk, args.reps, args.quick)

        def mk_gspo(comp, lp0=lp0, old=old, ref=ref, mask=mask, rewards=rewards):
            f = torch.compile(gspo_loss, fullgraph=True) if comp else gspo_loss

            def call():
                lp = lp0.detach().requires_grad_()
                f(lp, old, ref, mask, rewards).backward()
            return call
        res[f"gspo_loss/fp32/{B0 * T}"] = bench_pair(mk_gspo, args.reps, args.quick)
        del lp0, old, ref, mask

    for N, V, dn in [(4096, 32768, "fp32"), (4096, 32768, "bf16")]:
        s0 = (torch.randn(N // k, V, generator=g) * 2.0).to(dts[dn])
        t = (torch.randn(N // k, V, generator=g) * 2.0).to(dts[dn])

        def mk(comp, s0=s0, t=t):
            f = torch.compile(forward_kl, fullgraph=True) if comp else forward_kl

            def call():
                s = s0.detach().requires_grad_()
                f(s, t).backward()
            return call
        res[f"forward_kl/{dn}/{N}x{V}"] = bench_pair(mk, args.reps, args.quick)
        del s0, t
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="")
    ap.add_argument("--shrink", type=int, default=1, help="divide row counts (smoke test only)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "machine": platform.processor() or platform.machine(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "ops": run(a)}
    text = json.dumps(out, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
