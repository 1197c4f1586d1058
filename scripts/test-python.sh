#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Python package's test suite (scripts/test.sh python; also run by the default scripts/test.sh).
# Creates a venv under build/python-venv (kept between runs), installs torch, numpy, pytest, trl and
# transformers from PyPI (torch is ~3 GB: ~5 min the first time on a 2-core machine), builds and
# installs the grpo package with `pip install .`, makes sure the grpo-reward CLI exists (the reward
# adapters are compared with it) and runs tests/python.
#   PYTHON=python3.12 scripts/test-python.sh   interpreter for the venv (default python3)
#   GRPO_PY_NO_TRL=1                           skip trl / transformers (their tests are then skipped)
#   GRPO_PY_CUDA=1                             build grpo._cuda too (needs nvcc; tests/python/test_cuda.py
#                                              runs where a GPU is present, else it is skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stamp() { echo "=== [python $(( $(date +%s) - start ))s] $*"; }
venv=build/python-venv
if [ ! -x "$venv/bin/python" ]; then
  stamp "creating $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
stamp "pip install torch numpy pytest"
"${pip[@]}" install torch numpy pytest
if [ -z "${GRPO_PY_NO_TRL:-}" ]; then
  stamp "pip install trl transformers"
  "${pip[@]}" install trl transformers
fi
if [ -n "${GRPO_PY_CUDA:-}" ]; then
  stamp "pip install . -C cmake.define.GRPO_PY_CUDA=ON (builds grpo._C and grpo._cuda)"
  "${pip[@]}" install . -C cmake.define.GRPO_PY_CUDA=ON -C build-dir=build/python-cuda
else
  stamp "pip install . (builds grpo._C)"
  "${pip[@]}" install .
fi
if [ ! -x build/default/tools/grpo-reward/grpo-reward ]; then
  stamp "building the grpo-reward CLI"
  cmake --preset default >/dev/null && cmake --build build/default --target grpo-reward -j"$(nproc)"
fi
stamp "pytest tests/python"
"$venv/bin/python" -m pytest -q tests/python
stamp "python suite passed"
