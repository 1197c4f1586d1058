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
    "gspo_loss/fp32/33554432": r"BM_grpo_loss_gspo/8192/4096/{th}(/|$)",
    "gspo_loss/fp32/8388608": r"BM_grpo_loss_gspo/4096/2048/{th}(/|$)",
    "cispo_loss/fp32/33554432": r"BM_grpo_loss_cispo/8192/4096/{th}(/|$)",
    "cispo_loss/fp32/8388608": r"BM_grpo_loss_cispo/4096/2048/{th}(/|$)",
    "sapo_loss/fp32/33554432": r"BM_grpo_loss_sapo/8192/4096/{th}(/|$)",
    "sapo_loss/fp32/8388608": r"BM_grpo_loss_sapo/4096/2048/{th}(/|$)",
    "reinforce_loss/fp32/33554432": r"BM_grpo_loss_reinforce/8192/4096/{th}(/|$)",
    "reinforce_loss/fp32/8388608": r"BM_grpo_loss_reinforce/4096/2048/{th}(/|$)",
    # bench_loss_general: the options that leave the token / sequence rows (no torch peer)
    "gmpo_loss/fp32/33554432": r"BM_grpo_loss_gmpo/8192/4096/{th}(/|$)",
    "gmpo_loss/fp32/8388608": r"BM_grpo_loss_gmpo/4096/2048/{th}(/|$)",
    "vespo_loss/fp32/33554432": r"BM_grpo_loss_vespo/8192/4096/{th}(/|$)",
    "vespo_loss/fp32/8388608": r"BM_grpo_loss_vespo/4096/2048/{th}(/|$)",
    "tis_loss/fp32/33554432": r"BM_grpo_loss_tis/8192/4096/{th}(/|$)",
    "tis_loss/fp32/8388608": r"BM_grpo_loss_tis/4096/2048/{th}(/|$)",
    "tis_seq_loss/fp32/33554432": r"BM_grpo_loss_tis_seq/8192/4096/{th}(/|$)",
    "tis_seq_loss/fp32/8388608": r"BM_grpo_loss_tis_seq/4096/2048/{th}(/|$)",
    "opsm_loss/fp32/33554432": r"BM_grpo_loss_opsm/8192/4096/{th}(/|$)",
    "opsm_loss/fp32/8388608": r"BM_grpo_loss_opsm/4096/2048/{th}(/|$)",
    "entropy_loss/fp32/33554432": r"BM_grpo_loss_entropy/8192/4096/{th}(/|$)",
    "entropy_loss/fp32/8388608": r"BM_grpo_loss_entropy/4096/2048/{th}(/|$)",
    "top_entropy_loss/fp32/33554432": r"BM_grpo_loss_top_entropy/8192/4096/{th}(/|$)",
    "top_entropy_loss/fp32/8388608": r"BM_grpo_loss_top_entropy/4096/2048/{th}(/|$)",
    "gspo_tis_loss/fp32/33554432": r"BM_grpo_loss_gspo_tis/8192/4096/{th}(/|$)",
    "gspo_tis_loss/fp32/8388608": r"BM_grpo_loss_gspo_tis/4096/2048/{th}(/|$)",
    "seq_mean_token_sum_norm_loss/fp32/33554432": r"BM_grpo_loss_seq_mean_token_sum_norm/8192/4096/{th}(/|$)",
    "seq_mean_token_sum_norm_loss/fp32/8388608": r"BM_grpo_loss_seq_mean_token_sum_norm/4096/2048/{th}(/|$)",
    "forward_kl/fp32/4096x32768": r"BM_ours_dense<float, gd::divergence::forward_kl>/4096/32768(/|$)",
    "forward_kl/bf16/4096x32768":
        r"BM_ours_dense<grpo::bfloat16, gd::divergence::forward_kl>/4096/32768(/|$)",
}


# torch_cpu.py key -> (probe run-name regex, bytes factor, kind) for the issue-15 probe targets:
#   share: probe / ours (fraction of the bandwidth probe reached; target >= 70 % read, >= 60 % r+w)
#   floor: ours / probe (multiple of the exp compute floor; target <= 1.3x)
#   times: ours / (factor x probe) (multiple of one streaming pass / of the minimum traffic;
#          targets <= 1.5x)
PROBE = {
    "logprob_fwd/fp32/4096x32768": (r"BM_probe_read/4096/32768(/|$)", 1.0, "share", "read"),
    "logprob_fwd/bf16/4096x32768": (r"BM_probe_exp/4096/32768(/|$)", 1.0, "floor", "exp floor"),
    "logprob_fwd/fp32/4096x151936": (r"BM_probe_read/4096/151936(/|$)", 1.0, "share", "read"),
    "fused_step/fp32/4096x32768": (r"BM_probe_read_write/4096/32768(/|$)", 1.0, "share",
                                   "read+write"),
    "fused_step/bf16/4096x32768": (r"BM_probe_exp/4096/32768(/|$)", 1.0, "floor", "exp floor"),
    "grpo_loss/fp32/33554432": (r"BM_stream_read/8192/4096/{th}(/|$)", 1.0, "times",
                                "one streaming pass"),
    "grpo_loss/fp32/8388608": (r"BM_stream_read/4096/2048/{th}(/|$)", 1.0, "times",
                               "one streaming pass"),
    "gspo_loss/fp32/33554432": (r"BM_stream_read/8192/4096/{th}(/|$)", 1.0, "times",
                                "one streaming pass"),
    "gspo_loss/fp32/8388608": (r"BM_stream_read/4096/2048/{th}(/|$)", 1.0, "times",
                               "one streaming pass"),
    "cispo_loss/fp32/33554432": (r"BM_stream_read/8192/4096/{th}(/|$)", 1.0, "times",
                                "one streaming pass"),
    "cispo_loss/fp32/8388608": (r"BM_stream_read/4096/2048/{th}(/|$)", 1.0, "times",
                               "one streaming pass"),
    "sapo_loss/fp32/33554432": (r"BM_stream_read/8192/4096/{th}(/|$)", 1.0, "times",
                                "one streaming pass"),
    "sapo_loss/fp32/8388608": (r"BM_stream_read/4096/2048/{th}(/|$)", 1.0, "times",
                               "one streaming pass"),
    "reinforce_loss/fp32/33554432": (r"BM_stream_read/8192/4096/{th}(/|$)", 1.0, "times",
                                "one streaming pass"),
    "reinforce_loss/fp32/8388608": (r"BM_stream_read/4096/2048/{th}(/|$)", 1.0, "times",
                               "one streaming pass"),
    # bench_loss_general rows: against the streaming probe over the same streams
    "gmpo_loss/fp32/33554432": (r"BM_stream_read/8192/4096/{th}(/|$)", 1.0, "times",
        "one streaming pass"),
    "gmpo_loss/fp32/8388608": (r"BM_stream_read/4096/2048/{th}(/|$)", 1.0, "times",
        "one streaming pass"),
    "vespo_loss/fp32/33554432": (r"BM_stream_read/8192/4096/{th}(/|$)", 1.0, "times",
        "one streaming pass"),
    "vespo_loss/fp32/8388608": (r"BM_stream_read/4096/2048/{th}(/|$)", 1.0, "times",
        "one streaming pass"),
    "tis_loss/fp32/33554432": (r"BM_stream_read5/8192/4096/{th}(/|$)", 1.0, "times",
        "streaming pass (5 reads)"),
    "tis_loss/fp32/8388608": (r"BM_stream_read5/4096/2048/{th}(/|$)", 1.0, "times",
        "streaming pass (5 reads)"),
    "tis_seq_loss/fp32/33554432": (r"BM_stream_read5/8192/4096/{th}(/|$)", 1.0, "times",
        "streaming pass (5 reads)"),
    "tis_seq_loss/fp32/8388608": (r"BM_stream_read5/4096/2048/{th}(/|$)", 1.0, "times",
        "streaming pass (5 reads)"),
    "opsm_loss/fp32/33554432": (r"BM_stream_read/8192/4096/{th}(/|$)", 1.0, "times",
        "one streaming pass"),
    "opsm_loss/fp32/8388608": (r"BM_stream_read/4096/2048/{th}(/|$)", 1.0, "times",
        "one streaming pass"),
    "entropy_loss/fp32/33554432": (r"BM_stream_read5w2/8192/4096/{th}(/|$)", 1.0, "times",
        "streaming pass (5 r + 2 w)"),
    "entropy_loss/fp32/8388608": (r"BM_stream_read5w2/4096/2048/{th}(/|$)", 1.0, "times",
        "streaming pass (5 r + 2 w)"),
    "top_entropy_loss/fp32/33554432": (r"BM_stream_read5/8192/4096/{th}(/|$)", 1.0, "times",
        "streaming pass (5 reads)"),
    "top_entropy_loss/fp32/8388608": (r"BM_stream_read5/4096/2048/{th}(/|$)", 1.0, "times",
        "streaming pass (5 reads)"),
    "gspo_tis_loss/fp32/33554432": (r"BM_stream_read5/8192/4096/{th}(/|$)", 1.0, "times",
        "streaming pass (5 reads)"),
    "gspo_tis_loss/fp32/8388608": (r"BM_stream_read5/4096/2048/{th}(/|$)", 1.0, "times",
        "streaming pass (5 reads)"),
    "seq_mean_token_sum_norm_loss/fp32/33554432": (r"BM_stream_read/8192/4096/{th}(/|$)", 1.0, "times",
        "one streaming pass"),
    "seq_mean_token_sum_norm_loss/fp32/8388608": (r"BM_stream_read/4096/2048/{th}(/|$)", 1.0, "times",
        "one streaming pass"),
    # the compute floor of a dense row pair: two exps per logit pair (BM_probe_exp_pair)
    "forward_kl/bf16/4096x32768": (r"BM_probe_exp_pair/4096/32768(/|$)", 1.0, "floor",
                                   "exp-pair floor"),
    # minimum traffic = 2 reads + 1 write of 4096 x 32768 floats = 1.5x the 1 GiB read probe
    "forward_kl/fp32/4096x32768": (r"BM_probe_stream_read/268435456(/|$)", 1.5, "times",
                                   "min traffic"),
}


def probe_cell(key, o, ours, th):
    """The probe column of one row ('' when the probe did not run)."""
    if key not in PROBE:
        return ""
    pat, factor, kind, label = PROBE[key]
    rx = re.compile(pat.format(th=th))
    hits = [v for n, v in ours.items() if rx.search(n)]
    if not hits:
        return ""
    p = hits[0]
    if kind == "share":
        return f"{100.0 * p / o:.0f} % of {label}"
    return f"{o / (factor * p):.2f}x {label}"


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
    ap.add_argument("--torch", default="", help="torch_cpu.py JSON (omitted: ours and probes only)")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("gbench", nargs="+")
    a = ap.parse_args()
    ours = load_gbench(a.gbench)
    peer = {"ops": {}}
    if a.torch:
        with open(a.torch) as f:
            peer = json.load(f)
        print(f"torch {peer['torch']} ({peer['cpu_capability']}), {peer['threads']} threads, "
              f"{peer['date']}\n")
    print("| op, shape | ours | against the probe | torch eager | torch.compile | eager / ours | "
          "compile / ours |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for key, pat in MAP.items():
        rx = re.compile(pat.format(th=a.threads))
        hits = [v for n, v in ours.items() if rx.search(n)]
        if key not in peer["ops"]:
            if hits:  # no peer for it in this run: ours against the probe only
                o = hits[0]
                print(f"| {key} | {o:.1f} ms | {probe_cell(key, o, ours, a.threads)} | | | | |")
            continue
        p = peer["ops"][key]
        if not hits:
            print(f"| {key} | (not run) | | {p['eager_ms']:.1f} ms | {p['compile_ms']:.1f} ms | | |")
            continue
        o = hits[0]
        e, c = p["eager_ms"] / o, p["compile_ms"] / o
        em = "**" if e >= 20 else ""
        cm = "**" if c >= 3 else ""
        print(f"| {key} | {o:.1f} ms | {probe_cell(key, o, ours, a.threads)} | "
              f"{p['eager_ms']:.1f} ms | {p['compile_ms']:.1f} ms | "
              f"{em}{e:.1f}x{em} | {cm}{c:.2f}x{cm} |")
    print("\nBold: the issue-15 target met (>= 20x eager, >= 3x torch.compile).")


if __name__ == "__main__":
    main()
