#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# aarch64 correctness run: cross-compiles the kernel-layer tests (tests/core, tests/grpo,
# tests/logprob, tests/distill) with Debian's g++-aarch64-linux-gnu (preset aarch64,
# cmake/toolchains/aarch64-linux-gnu.cmake) and runs them with CTest under qemu-user. The vector
# paths there: the NEON packet kernels of vocab/ and distill/ (simd/arch/neon, isa::neon, the
# default path; GRPO_ISA=baseline selects the portable loops), xsimd's NEON (neon64) batches in
# the loss rows, and the portable code; no x86 ISA path is compiled.
# Correctness only: qemu timings say nothing about an ARM core.
#   scripts/test-aarch64.sh            configure + build + ctest
#   scripts/test-aarch64.sh -R regex   ... ctest with extra arguments (here: only tests matching)
#   scripts/test-aarch64.sh --ci       the .ci/run subset: every test except the four that take
#                                      most of the emulated time (test_logprob, test_logprob_omp:
#                                      logprob.hpp's public entry points, whose NEON kernels
#                                      test_vocab_paths / test_fused_grpo / test_sampler also run;
#                                      test_loss_gspo_fast: the 4.3 M-token GSPO case; test_math:
#                                      scalar core/math.hpp, no NEON code). docs/kernel-notes/aarch64-neon.md.
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
ci=()
if [ "${1:-}" = "--ci" ]; then
  shift
  ci=(-E '^(test_logprob|test_logprob_omp|test_loss_gspo_fast|test_math)$')
fi
start=$(date +%s)
cmake --preset aarch64
cmake --build --preset aarch64
built=$(date +%s)
ctest --preset aarch64 ${ci[@]+"${ci[@]}"} "$@"
end=$(date +%s)
echo "aarch64: build $((built - start)) s, tests under qemu $((end - built)) s"
