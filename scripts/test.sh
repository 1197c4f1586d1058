#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's test command. Installs what is missing (Debian packages), configures, builds and runs
# the CPU test suite (CTest, label gpu excluded).
#   scripts/test.sh              Release build of everything, then ctest, then the Python suite
#   scripts/test.sh python       pip install . into build/python-venv, pytest tests/python
#   scripts/test.sh asan         Debug + AddressSanitizer + UBSan, then ctest      (preset debug-asan)
#   scripts/test.sh cuda         nvcc compiles and links every kernel and CUDA test (preset cuda; no GPU needed)
#   scripts/test.sh gpu          the cuda preset, then the gpu-labelled tests       (needs a GPU)
#   scripts/test.sh fuzz [secs]  builds the libFuzzer targets with clang and runs each for secs seconds
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-default}
scripts/install-deps.sh
case "$mode" in
  default)    cmake --workflow --preset default && scripts/test-python.sh ;;
  python)     scripts/test-python.sh ;;
  asan)       cmake --workflow --preset debug-asan ;;
  cuda)       cmake --workflow --preset cuda ;;
  gpu)        cmake --preset cuda && cmake --build --preset cuda && ctest --preset gpu ;;
  fuzz)       scripts/run-fuzzers.sh "${2:-20}" ;;
  *) echo "usage: scripts/test.sh [default|python|asan|cuda|gpu|fuzz [seconds]]" >&2; exit 2 ;;
esac
