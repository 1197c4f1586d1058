#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Peer timings for the CUDA benchmarks: the same ops in PyTorch eager and torch.compile, timed with
torch.cuda events on the same shapes as benchmarks/cuda/bench_logprob_cuda.cu.

Ops (bf16 logits [N, V], N = 8192 by default):
  forward  : log p(y) and entropy at T = 1 (logsumexp + gather + softmax-weighted sum, fp32 maths)
  fused    : GRPO DAPO-style clipped loss + k3 KL from logits, forward + backward (grad into logits)
  distill  : forward KL(p_teacher || q_student) from bf16 logits, forward + backward

Writes a JSON list of {"op", "impl", "vocab", "ms"} records to --out (rewritten after every record,
so a timeout still leaves the finished ones). Stops starting new measurements after --budget seconds.
torch.compile uses dynamic=True so one compilation serves every vocabulary size.
"""
import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, default=int(os.environ.get("GRPO_BENCH_TOKENS", "8192")))
    # The headline vocabulary first: torch.compile compiles on the first shape it sees, and the
    # time budget may stop the sweep before the last sizes.
    ap.add_argument("--vocabs", default="151936,32000,65536,128256,256000")
    ap.add_argument("--budget", type=float, default=240.0)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    t_start = time.time()
    records = []

    def save():
        with open(args.out, "w") as f:
            json.dump(records, f, indent=1)

    save()
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001
        print(f"gpu_peer_bench: torch unavailable ({e})", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("gpu_peer_bench: no CUDA device", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    N = args.tokens

    def fwd(x, y):
        xf = x.float()
        lse = torch.logsumexp(xf, dim=-1)
        logp = xf.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse
        p = torch.softmax(xf, dim=-1)
        ent = lse - (p * xf).sum(-1)
        return logp, ent

    def grpo_loss(x, y, old, ref, adv):
        logp = torch.log_softmax(x.float(), dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        r = torch.exp(logp - old)
        pg = torch.maximum(-adv * r, -adv * torch.clamp(r, 0.8, 1.28))
        d = ref - logp
        kl = torch.exp(d) - d - 1.0
        return (pg + 0.04 * kl).mean()

    def fkl(s, u):
        ls = torch.log_softmax(s.float(), dim=-1)
        lu = torch.log_softmax(u.float(), dim=-1)
        return F.kl_div(ls, lu, reduction="batchmean", log_target=True)

    impls = [("eager", fwd, grpo_loss, fkl)]
    if not args.no_compile:
        try:
            impls.append(("compile", torch.compile(fwd, dynamic=True),
                          torch.compile(grpo_loss, dynamic=True), torch.compile(fkl, dynamic=True)))
        except Exception as e:  # noqa: BLE001
            print(f"gpu_peer_bench: torch.compile unavailable ({e})", file=sys.stderr)

    def time_ms(fn):
        fn()  # warm-up (and compilation)
        torch.cuda.synchronize()
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(args.iters):
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        times.sort()
        return times[len(times) // 2]  # median

    for V in [int(v) for v in args.vocabs.split(",")]:
        g = torch.Generator(device=dev).manual_seed(V)
        x = (torch.randn(N, V, device=dev, generator=g) * 2.0).to(torch.bfloat16)
        y = torch.randint(0, V, (N,), device=dev, generator=g)
        old = torch.full((N,), -12.0, device=dev)
        ref = torch.full((N,), -12.1, device=dev)
        adv = torch.full((N,), 0.5, device=dev)
        for name, f_fwd, f_grpo, f_fkl in impls:
            if time.time() - t_start > args.budget:
                print("gpu_peer_bench: time budget spent, stopping", file=sys.stderr)
                return 0
            try:
                with torch.no_grad():
                    ms = time_ms(lambda: f_fwd(x, y))
                records.append({"op": "forward", "impl": name, "vocab": V, "ms": ms})
                save()

                def step():
                    xr = x.detach().requires_grad_(True)
                    f_grpo(xr, y, old, ref, adv).backward()

                ms = time_ms(step)
                records.append({"op": "fused", "impl": name, "vocab": V, "ms": ms})
                save()
                if V == 151936:
                    u = (torch.randn(N, V, device=dev, generator=g) * 2.0).to(torch.bfloat16)

                    def dstep():
                        sr = x.detach().requires_grad_(True)
                        f_fkl(sr, u).backward()

                    ms = time_ms(dstep)
                    records.append({"op": "distill", "impl": name, "vocab": V, "ms": ms})
                    save()
                    del u
            except Exception as e:  # noqa: BLE001  (OOM, compile failure): record and go on
                records.append({"op": "error", "impl": name, "vocab": V, "ms": -1,
                                "error": str(e)[:300]})
                save()
            torch.cuda.empty_cache()
        del x, y
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
