#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One-shot GPU validation of the CUDA kernels: configure, build the CUDA targets, run the gpu- and
# cuda-labelled tests, run the CUDA benchmarks and the PyTorch peers, and write a summary
# (pass/fail, ms, GB/s, fraction of the measured copy bandwidth, ratios to torch eager and
# torch.compile, the H200 targets). Robust by design: every step has a time limit, a failing step
# does not stop the next ones, and the summary is always written.
#
#   scripts/gpu-check.sh                # build dir: build-gpu (GRPO_GPU_BUILD_DIR overrides)
#   OUT=/some/dir scripts/gpu-check.sh  # summary.md and raw logs go to $OUT (else the build dir)
#   GRPO_SKIP_BUILD=1                   # reuse an existing build
#   GRPO_SKIP_PEERS=1                   # no PyTorch peers
#
# Worst case (every step hitting its limit: 60 + 170 + 90 + 60 + 95 s) is under 8 minutes; a
# normal run on an H200 with 16 cores should take 3-5 minutes (the nvcc build dominates).
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${GRPO_GPU_BUILD_DIR:-$ROOT/build-gpu}"
DEST="${OUT:-$BUILD}"
mkdir -p "$BUILD" "$DEST"
LOG="$DEST/gpu-check-logs"
mkdir -p "$LOG"
JOBS="$(nproc 2>/dev/null || echo 4)"
export PATH="$PATH:/usr/local/cuda/bin"
declare -A STEP
T0=$(date +%s)

run_step() {  # run_step <name> <seconds> <command...>
  local name="$1" limit="$2"
  shift 2
  local t=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" >"$LOG/$name.log" 2>&1
  local rc=$?
  STEP[$name]="rc=$rc, $(( $(date +%s) - t ))s"
  [ $rc -eq 124 ] && STEP[$name]="TIMEOUT after ${limit}s"
  echo "   -> ${STEP[$name]}"
  return $rc
}

# 1. Configure (CUDA on, benchmarks on, nothing else optional).
if [ "${GRPO_SKIP_BUILD:-0}" != "1" ]; then
  run_step configure 60 cmake -S "$ROOT" -B "$BUILD" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release \
    -DGRPO_ENABLE_CUDA=ON -DGRPO_BUILD_TESTS=ON -DGRPO_BUILD_BENCHMARKS=ON \
    -DGRPO_BUILD_EXAMPLES=OFF -DGRPO_BUILD_TOOLS=OFF -DGRPO_BUILD_FUZZERS=OFF
  # 2. Build only the CUDA targets (every tests/cuda/test_*.cu, the benchmark).
  TARGETS=""
  for f in "$ROOT"/tests/cuda/test_*.cu; do TARGETS="$TARGETS $(basename "$f" .cu)"; done
  TARGETS="$TARGETS bench_logprob_cuda"
  # make -k: a target that fails to compile does not stop the others (their tests still run).
  # Targets that do not exist (no NCCL: test_nccl_cuda) are dropped first.
  have=""
  for t in $TARGETS; do
    if cmake --build "$BUILD" --target help 2>/dev/null | grep -q "\.\.\. $t\$"; then
      have="$have $t"
    else
      echo "no target: $t" >>"$LOG/build-failures.txt"
    fi
  done
  run_step build 170 cmake --build "$BUILD" -j "$JOBS" --target $have -- -k ||
    grep -E "error|Error" "$LOG/build.log" | head -20 >>"$LOG/build-failures.txt"
fi

# 3. Tests: gpu (kernels vs CPU) and cuda (host glue). One at a time, per-test timeout.
run_step tests 90 ctest --test-dir "$BUILD" -L "gpu|cuda" --output-on-failure --timeout 60

# 4. Benchmarks (JSON for the summary).
BENCH="$BUILD/benchmarks/cuda/bench_logprob_cuda"
if [ -x "$BENCH" ]; then
  run_step bench 60 "$BENCH" --benchmark_min_time=0.1 \
    --benchmark_out="$DEST/bench_cuda.json" --benchmark_out_format=json
else
  STEP[bench]="not built"
fi

# 5. PyTorch peers (eager and torch.compile) on the same shapes.
if [ "${GRPO_SKIP_PEERS:-0}" != "1" ]; then
  run_step peers 95 python3 "$ROOT/scripts/gpu_peer_bench.py" --out "$DEST/peers.json" \
    --budget 75
else
  STEP[peers]="skipped"
fi

# 6. Summary (always written; python3 formats it, a plain fallback otherwise).
SUMMARY="$DEST/summary.md"
{
  echo "# grpo CUDA gpu-check"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), host: $(hostname)"
  echo "- device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
  echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -c . ) changed files"
  echo "- total wall time: $(( $(date +%s) - T0 ))s"
  echo
  echo "## Steps"
  for s in configure build tests bench peers; do echo "- $s: ${STEP[$s]:-not run}"; done
  [ -s "$LOG/build-failures.txt" ] && { echo; echo '```'; cat "$LOG/build-failures.txt"; echo '```'; }
  echo
  echo "## Tests"
  echo '```'
  grep -E "Test +#|tests passed|tests failed|\*\*\*" "$LOG/tests.log" 2>/dev/null | tail -40
  echo '```'
} >"$SUMMARY"

python3 - "$DEST/bench_cuda.json" "$DEST/peers.json" >>"$SUMMARY" 2>>"$LOG/summary.log" <<'PY' ||
import json, sys
bench_path, peers_path = sys.argv[1], sys.argv[2]
try:
    bench = json.load(open(bench_path))["benchmarks"]
except Exception as e:
    print(f"\n(no benchmark results: {e})"); sys.exit(0)
try:
    peers = json.load(open(peers_path))
except Exception:
    peers = []
copy = None
rows = []
for b in bench:
    if b.get("error_occurred"):
        rows.append((b["name"], None, None, b.get("error_message", "error"))); continue
    ms = b["real_time"] if b.get("time_unit") == "ms" else b["real_time"] / 1e6
    gbs = b.get("bytes_per_second", 0) / 1e9
    if b["name"].startswith("BM_copy_d2d"): copy = gbs
    rows.append((b["name"], ms, gbs, ""))
op_of = {"BM_logprob_forward_bf16": "forward", "BM_fused_grpo_bf16": "fused",
         "BM_distill_fkl_bf16": "distill"}
def peer(op, impl, v):
    for p in peers:
        if p.get("op") == op and p.get("impl") == impl and p.get("vocab") == v and p.get("ms", -1) > 0:
            return p["ms"]
    return None
print("\n## Benchmarks (N = 8192 tokens, bf16)\n")
print(f"Device copy bandwidth (cudaMemcpy D2D, read + write): {copy:.0f} GB/s\n" if copy else
      "Device copy bandwidth: not measured\n")
print("| benchmark | ms | GB/s | of copy | torch eager ms | x eager | torch.compile ms | x compile |")
print("|---|---|---|---|---|---|---|---|")
verdicts = []
for name, ms, gbs, err in rows:
    if ms is None:
        print(f"| {name} | error: {err} | | | | | | |"); continue
    parts = name.split("/")
    op = op_of.get(parts[0]); v = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
    # Second argument of the fused benchmark: row-cache policy (0 automatic, 2 prefix, 3 none);
    # the targets are judged on the default policy, the others are reported for the choice.
    pol = parts[2] if len(parts) > 3 and parts[2].isdigit() else "0"
    frac = f"{gbs / copy:.0%}" if copy and not name.startswith("BM_copy") else ""
    e = peer(op, "eager", v) if op else None
    c = peer(op, "compile", v) if op else None
    fe = f"{e:.3f}" if e else ""; xe = f"{e / ms:.2f}" if e else ""
    fc = f"{c:.3f}" if c else ""; xc = f"{c / ms:.2f}" if c else ""
    print(f"| {name} | {ms:.3f} | {gbs:.0f} | {frac} | {fe} | {xe} | {fc} | {xc} |")
    if pol != "0":
        continue
    if op == "forward" and v == 151936:
        verdicts.append(f"forward log p + entropy [8192, 151936] bf16 <= 0.70 ms: {ms:.3f} ms -> "
                        + ("PASS" if ms <= 0.70 else "FAIL"))
    if op == "fused" and v == 151936:
        verdicts.append(f"fused GRPO forward + gradient [8192, 151936] <= 1.4 ms: {ms:.3f} ms -> "
                        + ("PASS" if ms <= 1.4 else "FAIL"))
    if op in ("forward", "fused") and c:
        verdicts.append(f"{op} V={v}: never slower than torch.compile: {ms:.3f} vs {c:.3f} ms -> "
                        + ("PASS" if ms <= c else "FAIL"))
print("\n## Targets\n")
for line in verdicts or ["(no target could be evaluated)"]:
    print(f"- {line}")
PY
  echo "(summary formatting failed; raw results in $DEST)" >>"$SUMMARY"

echo "summary: $SUMMARY"
cat "$SUMMARY"
exit 0
