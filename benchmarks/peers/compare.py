# SPDX-License-Identifier: Apache-2.0
"""Joins Google Benchmark JSON (bench_logprob, bench_loss, bench_distill run with
--benchmark_out=<file> --benchmark_out_format=json) with benchmarks/peers/torch_cpu.py's JSON of the
same window into the side-by-side table of docs/benchmarks.md: ours, PyTorch eager, torch.compile,
and the two ratios against the issue-15 targets (>= 20x eager, >= 3x compile).

    python benchmarks/peers/compare.py --torch build/peers-torch-2.json --threads 2 \
        build/bench-logprob.json build/bench-loss.json build/bench-distill.json
"""
import argparse
import json
import re

UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}

# torch_cpu.py key -> regular expression over Google Benchmark run names ({th}: threads)
MAP = {
    "logprob_fwd/fp32/4096x32768": r"BM_ours_forward<float>/4096/32768(/|$)",
    "logprob_fwd/bf16/4096x32768": r"BM_ours_forward<grpo::bfloat16>/4096/32768(/|$)",
    "logprob_fwd/fp32/4096x151936": r"BM_ours_forward<float>/4096/151936(/|$)",
    "fused_step/fp32/4096x32768": r"BM_ours_fused_grpo<float>/4096/32768(/|$)",
    "fused_step/bf16/4096x32768": r"BM_ours_fused_grpo<grpo::bfloat16>/4096/32768(/|$)",
    "grpo_loss/fp32/33554432": r"BM_grpo_loss/8192/4096/{th}(/|$)",
    "grpo_loss/fp32/8388608": r"BM_grpo_loss/4096/2048/{th}(/|$)",
    "forward_kl/fp32/4096x32768": r"BM_ours_dense<float, gd::divergence::forward_kl>/4096/32768(/|$)",
    "forward_kl/bf16/4096x32768":
        r"BM_ours_dense<grpo::bfloat16, gd::divergence::forward_kl>/4096/32768(/|$)",
}


def load_gbench(paths):
    """run name -> real time in ms (the median aggregate when repetitions ran)."""
    out, medians = {}, {}
    for p in paths:
        with open(p) as f:
            data = json.load(f)
        for b in data.get("benchmarks", []):
            name = b.get("run_name", b["name"])
            ms = b["real_time"] * UNIT_MS[b.get("time_unit", "ns")]
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    medians[name] = ms
            elif b.get("error_occurred"):
                continue
            else:
                out.setdefault(name, ms)
    out.update(medians)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torch", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("gbench", nargs="+")
    a = ap.parse_args()
    ours = load_gbench(a.gbench)
    with open(a.torch) as f:
        peer = json.load(f)
    print(f"torch {peer['torch']} ({peer['cpu_capability']}), {peer['threads']} threads, "
          f"{peer['date']}\n")
    print("| op, shape | ours | torch eager | torch.compile | eager / ours | compile / ours |")
    print("| --- | --- | --- | --- | --- | --- |")
    for key, pat in MAP.items():
        if key not in peer["ops"]:
            continue
        rx = re.compile(pat.format(th=a.threads))
        hits = [v for n, v in ours.items() if rx.search(n)]
        p = peer["ops"][key]
        if not hits:
            print(f"| {key} | (not run) | {p['eager_ms']:.1f} ms | {p['compile_ms']:.1f} ms | | |")
            continue
        o = hits[0]
        e, c = p["eager_ms"] / o, p["compile_ms"] / o
        em = "**" if e >= 20 else ""
        cm = "**" if c >= 3 else ""
        print(f"| {key} | {o:.1f} ms | {p['eager_ms']:.1f} ms | {p['compile_ms']:.1f} ms | "
              f"{em}{e:.1f}x{em} | {cm}{c:.2f}x{cm} |")
    print("\nBold: the issue-15 target met (>= 20x eager, >= 3x torch.compile).")


if __name__ == "__main__":
    main()
