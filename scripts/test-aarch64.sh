#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# aarch64 correctness run: cross-compiles the kernel-layer tests (tests/core, tests/grpo,
# tests/logprob, tests/distill) with Debian's g++-aarch64-linux-gnu (preset aarch64,
# cmake/toolchains/aarch64-linux-gnu.cmake) and runs them with CTest under qemu-user. The vector
# paths there are xsimd's NEON (neon64) batches and the portable code; no x86 ISA path is compiled.
# Correctness only: qemu timings say nothing about an ARM core.
#   scripts/test-aarch64.sh            configure + build + ctest
#   scripts/test-aarch64.sh -R regex   ... ctest with extra arguments (here: only tests matching)
# Needs: g++-aarch64-linux-gnu qemu-user (installed here with apt-get when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y "${need[@]}" || { apt-get update && apt-get install -y "${need[@]}"; }
  else
    echo "scripts/test-aarch64.sh: missing ${need[*]} (Debian: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi
start=$(date +%s)
cmake --preset aarch64
cmake --build --preset aarch64
built=$(date +%s)
ctest --preset aarch64 "$@"
end=$(date +%s)
echo "aarch64: build $((built - start)) s, tests under qemu $((end - built)) s"
