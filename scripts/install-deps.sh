#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages grpo needs for its tests, examples, benchmarks and tools. Idempotent:
# quiet and fast when everything is already there. Usage: scripts/install-deps.sh
# libopenblas0-openmp: Debian's libtorch links libblas.so.3, which without it is the reference
# (netlib) BLAS: 6.9 GFLOPS for a 256x128x384 GEMM against 114 with OpenBLAS on one Zen 5 core;
# the end-to-end demo's GRU runs 10x faster with it (the package registers itself as the
# higher-priority libblas.so.3 / liblapack.so.3 alternative).
set -euo pipefail
pkgs=(
  cmake g++ make pkg-config
  libeigen3-dev xtensor-dev libxsimd-dev libdlpack-dev libtorch-dev
  libopenblas0-openmp
  doctest-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev
  libgmp-dev libflint-dev libflint-arb-dev libmpfr-dev libutf8proc-dev libboost-dev libseccomp-dev
  libopenmpi-dev openmpi-bin
  python3 python3-dev python3-venv gnuplot-nox
  clang libclang-rt-14-dev
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
