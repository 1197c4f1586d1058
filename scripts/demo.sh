#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The R1 recipe end to end at toy scale, in one command: installs the Debian dependencies, builds
# only the demo (Release, tests off) in build/demo and runs it. Extra arguments go to the demo
# (see `scripts/demo.sh --help`), e.g. `scripts/demo.sh --steps 300 --seed 2 --out /tmp/run2` or
# `scripts/demo.sh --pipeline r1` (all four R1 stages, then distillation).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install-deps.sh"
build="$root/build/demo"
# The build is quiet (its log is shown only when it fails), so `--help` and the run's own output
# come first; a run (not --help) says on stderr that it builds, as the first build takes minutes.
help=0
for a in "$@"; do
  case "$a" in -h | --help | --help-all) help=1 ;; esac
done
if ((!help)); then echo "scripts/demo.sh: building the demo in $build (log shown on failure)" >&2; fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGRPO_BUILD_TESTS=OFF \
         -DGRPO_BUILD_EXAMPLES=ON -DGRPO_BUILD_TOOLS=OFF -DGRPO_BUILD_BENCHMARKS=OFF &&
       cmake --build "$build" --target r1_demo -j"$(nproc)"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "scripts/demo.sh: building the demo failed (output above)" >&2
  exit 1
fi
# Outputs (steps.csv, curves.png) go to build/demo/out unless --out names a directory; the demo's
# --help shows this default and the program name scripts/demo.sh.
export R1_DEMO_OUT="$build/out" R1_DEMO_PROG="scripts/demo.sh"
exec "$build/examples/r1_demo/r1_demo" "$@"
