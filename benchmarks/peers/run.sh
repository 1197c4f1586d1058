#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Side-by-side run of the issue-15 table: ours (Google Benchmark binaries of a build dir) and the
# PyTorch eager / torch.compile peers (benchmarks/peers/torch_cpu.py) in one window, same threads.
#   benchmarks/peers/run.sh [build-dir (build/bench)] [threads (2)] [python (build/python-venv/bin/python)]
# Env: GRPO_ISA=avx2|baseline pins the kernels' run-time path; REPS (3) repetitions per benchmark;
#      SUFFIX=_portable runs the portable builds (bench_*_portable: no -march, run-time dispatch);
#      NO_TORCH=1 skips the PyTorch peers (ours against the probes only);
#      GENERAL=1 adds bench_loss_general's rows (GENERAL_SHAPE=4096/2048: the 8.4M-token shape only).
# Takes the shared benchmark lock itself. Writes build-dir/peers-<threads>/ and prints the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
bdir=${1:-build/bench}
th=${2:-2}
py=${3:-build/python-venv/bin/python}
reps=${REPS:-3}
sfx=${SUFFIX:-}
out="$bdir/peers-$th${sfx}${GRPO_ISA:+-$GRPO_ISA}"
mkdir -p "$out"
exec 9>/tmp/grpo_bench.lock
flock 9
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); GRPO_ISA=${GRPO_ISA:-unset}"
gb=(--benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true
    --benchmark_out_format=json)
lp=$(find "$bdir" -name "bench_logprob$sfx" -type f -perm -u+x | head -1)
lsn=bench_loss_omp  # the OpenMP-threaded loss binary (bench_loss runs its rows on one thread)
[ -n "$sfx" ] && lsn=bench_loss$sfx
ls=$(find "$bdir" -name "$lsn" -type f -perm -u+x | head -1)
ds=$(find "$bdir" -name "bench_distill$sfx" -type f -perm -u+x | head -1)
files=()
if [ -n "$lp" ]; then
  OMP_NUM_THREADS=$th "$lp" "${gb[@]}" --benchmark_out="$out/logprob.json" \
    --benchmark_filter='BM_probe|BM_ours_(forward|fused_grpo)<(float|grpo::bfloat16)>/4096/(32768|151936)' \
    >/dev/null
  files+=("$out/logprob.json")
fi
if [ -n "$ls" ]; then
  "$ls" "${gb[@]}" --benchmark_out="$out/loss.json" \
    --benchmark_filter="BM_(grpo_loss[a-z_]*|stream_read)/[0-9]+/[0-9]+/$th/" >/dev/null
  files+=("$out/loss.json")
fi
# GENERAL=1: also the general-engine rows (bench_loss_general; its scalar rows take seconds per call);
# GENERAL_SHAPE restricts them (e.g. 4096/2048 = 8.4M tokens only); their 4-read probe is bench_loss's.
gn=bench_loss_general_omp
[ -n "$sfx" ] && gn=bench_loss_general$sfx
gl=$(find "$bdir" -name "$gn" -type f -perm -u+x | head -1)
if [ -n "${GENERAL:-}" ] && [ -n "$gl" ]; then
  "$gl" "${gb[@]}" --benchmark_out="$out/loss_general.json" \
    --benchmark_filter="BM_(grpo_loss_[a-z_]*|stream_read5(w2)?)/${GENERAL_SHAPE:-[0-9]+/[0-9]+}/$th/" \
    >/dev/null
  files+=("$out/loss_general.json")
fi
if [ -n "$ds" ]; then
  GRPO_BENCH_THREADS=$th OMP_NUM_THREADS=$th "$ds" "${gb[@]}" --benchmark_out="$out/distill.json" \
    --benchmark_filter='BM_probe|BM_ours_dense<(float|grpo::bfloat16), gd::divergence::forward_kl>/4096/32768$' \
    >/dev/null
  files+=("$out/distill.json")
fi
targs=()
if [ -z "${NO_TORCH:-}" ]; then
  "$py" benchmarks/peers/torch_cpu.py --threads "$th" --out "$out/torch.json" >/dev/null
  targs=(--torch "$out/torch.json")
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 benchmarks/peers/compare.py "${targs[@]}" --threads "$th" "${files[@]}"
