#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds every libFuzzer target (fuzz/fuzz_*.cpp: the model-text parsers and fuzz_numeric_core,
# the numeric loss / advantage / log-prob / distill entry points) with clang and runs each for a
# bounded time.
# Fails (exit 1) when a target crashes, leaks, trips a sanitizer or exceeds the per-input timeout.
#
# Usage: scripts/run-fuzzers.sh [SECONDS_PER_TARGET=20]
# Environment: GRPO_FUZZ_BUILD_DIR (default <repo>/build-fuzz), GRPO_FUZZ_JOBS (build -j, default 2),
#              GRPO_FUZZ_TIMEOUT (seconds per input, default 10), GRPO_FUZZ_RSS_MB (default 2048),
#              GRPO_FUZZ_TARGETS (space-separated subset, default: all).
set -euo pipefail

secs="${1:-20}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
  echo "usage: $0 [SECONDS_PER_TARGET>=1]" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GRPO_FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${GRPO_FUZZ_JOBS:-2}"
per_input="${GRPO_FUZZ_TIMEOUT:-10}"
rss="${GRPO_FUZZ_RSS_MB:-2048}"
cxx="${CXX_FUZZ:-clang++}"

if [ -n "${GRPO_FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$GRPO_FUZZ_TARGETS"
else
  targets=()
  for f in "$root"/fuzz/fuzz_*.cpp; do
    [ -e "$f" ] || continue
    n="$(basename "$f" .cpp)"
    targets+=("$n")
  done
fi
if [ "${#targets[@]}" -eq 0 ]; then
  echo "run-fuzzers: no fuzz/fuzz_*.cpp targets" >&2
  exit 1
fi

echo "run-fuzzers: configuring $build with $cxx" >&2
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DGRPO_BUILD_FUZZERS=ON -DGRPO_BUILD_TESTS=OFF -DGRPO_BUILD_EXAMPLES=OFF -DGRPO_BUILD_TOOLS=OFF \
  -DGRPO_BUILD_BENCHMARKS=OFF >"$build.configure.log" 2>&1 || {
  cat "$build.configure.log" >&2
  exit 1
}
echo "run-fuzzers: building ${targets[*]}" >&2
cmake --build "$build" --target "${targets[@]}" -j "$jobs"

work="$build/fuzz-runs"
mkdir -p "$work"
# CLN (linked through grpo::rewards for GiNaC) allocates in static initialisers and never frees
# (Debian's libcln is stripped: its frames have no function names, so only the library can be
# named); GiNaC leaks a node only when an exception leaves one of its constructors: that one
# function is suppressed, not libginac, so our leaks through GiNaC calls still fail the run.
supp="$work/lsan.supp"
printf 'leak:libcln.so\nleak:GiNaC::dynallocate\n' >"$supp"
export LSAN_OPTIONS="suppressions=$supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
failed=()
for t in "${targets[@]}"; do
  bin="$build/fuzz/$t"
  corpus="$work/$t/corpus"
  artifacts="$work/$t/artifacts"
  mkdir -p "$corpus" "$artifacts"
  # Seed corpus: the checked-in one when present (fuzz/corpus/<target>/), else an empty corpus.
  seeds=()
  [ -d "$root/fuzz/corpus/$t" ] && seeds+=("$root/fuzz/corpus/$t")
  # Dictionary: fuzz/dict/<target>.dict (tokens of the test tables) when present.
  dict=()
  [ -f "$root/fuzz/dict/$t.dict" ] && dict+=("-dict=$root/fuzz/dict/$t.dict")
  echo "run-fuzzers: $t for ${secs}s (timeout ${per_input}s per input)" >&2
  if "$bin" -max_total_time="$secs" -timeout="$per_input" -rss_limit_mb="$rss" \
      -artifact_prefix="$artifacts/" -print_final_stats=1 "${dict[@]}" "$corpus" "${seeds[@]}" \
      >"$work/$t.log" 2>&1; then
    echo "run-fuzzers: $t ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || echo '?') runs)" >&2
  else
    echo "run-fuzzers: $t FAILED, log $work/$t.log, artifacts in $artifacts" >&2
    tail -n 30 "$work/$t.log" >&2
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "run-fuzzers: failures: ${failed[*]}" >&2
  exit 1
fi
echo "run-fuzzers: all ${#targets[@]} targets passed" >&2
