#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Differential run of the math verifier across a refactor: builds driver.cpp against two include
# trees (BEFORE: a git revision of this repository; AFTER: the working tree) and requires the same
# bytes from both on the corpus of corpus.py (the committed corpora, the string literals of the
# math tests and fuzz targets, the fuzz seeds, and N generated hostile strings).
#   scripts/math-differential/run.sh [BEFORE_REV=main] [HOSTILE=50000]
# Prints the line count and the sha256 of both outputs; exit 1 and the first differing line when
# they differ.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rev=${1:-main}
n=${2:-50000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/before"
git -C "$root" archive "$rev" include | tar -x -C "$work/before"
flags=(-std=c++20 -O2)
libs=(-lflint-arb -lflint -lmpfr -lgmpxx -lgmp -lutf8proc)
[[ -e /usr/lib/x86_64-linux-gnu/libflint-arb.so || -e /usr/lib/libflint-arb.so ]] || libs=("${libs[@]:1}")
${CXX:-g++} "${flags[@]}" -I"$work/before/include" "$here/driver.cpp" -o "$work/before.bin" "${libs[@]}" &
${CXX:-g++} "${flags[@]}" -I"$root/include" "$here/driver.cpp" -o "$work/after.bin" "${libs[@]}"
wait
python3 "$here/corpus.py" --hostile "$n" \
  --jsonl "$root"/tools/math-diff/corpus/*.jsonl \
  --cpp "$root"/tests/rewards/test_math_*.cpp "$root"/fuzz/fuzz_math_*.cpp \
  --seeds "$root"/fuzz/corpus/fuzz_math_parse "$root"/fuzz/corpus/fuzz_math_verify \
          "$root"/fuzz/corpus/fuzz_math_extract > "$work/corpus.txt"
"$work/before.bin" < "$work/corpus.txt" > "$work/before.txt"
"$work/after.bin" < "$work/corpus.txt" > "$work/after.txt"
echo "pairs: $(wc -l < "$work/corpus.txt"); outputs: $(wc -l < "$work/before.txt") / $(wc -l < "$work/after.txt") lines"
sha256sum "$work/before.txt" "$work/after.txt" | sed "s|$work/||"
if ! cmp -s "$work/before.txt" "$work/after.txt"; then
  echo "DIFFERENT:"; diff "$work/before.txt" "$work/after.txt" | head -5
  exit 1
fi
echo "identical: verdicts, extractions, normal forms, budget spent, parse trees, exact values"
