#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The R1 recipe end to end at toy scale, in one command: installs the Debian dependencies, builds
# only the demo (Release, tests off) in build/demo and runs it. Extra arguments go to the demo
# (see `scripts/demo.sh --help`), e.g. `scripts/demo.sh --steps 300 --seed 2 --out /tmp/run2`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install-deps.sh"
build="$root/build/demo"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGRPO_BUILD_TESTS=OFF \
  -DGRPO_BUILD_EXAMPLES=ON -DGRPO_BUILD_TOOLS=OFF -DGRPO_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" --target r1_demo -j"$(nproc)"
# Outputs (steps.csv, curves.png) go to build/demo/out unless the caller names a directory.
out=(--out "$build/out")
for a in "$@"; do
  case "$a" in --out | --out=*) out=() ;; esac
done
exec "$build/examples/r1_demo/r1_demo" "${out[@]}" "$@"
