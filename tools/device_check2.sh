#!/usr/bin/env bash
# Second device call: the whole test suite on CUDA (no -x), the Quickstart CLI with
# device=cuda, and the quick bench with the suite on CUDA. Logs land in $OUT.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-/tmp/device-out}; mkdir -p "$OUT"
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 8 -rf --tb=short > "$OUT/pytest_full.txt" 2>&1
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/pytest_full.txt" | tail -40
( time timeout 120 python3 -m kanpinn solve problems/poisson_2d.py --set device=cuda --out "$OUT/poisson_cuda.h5" ) 2>&1 | tail -8
timeout 200 python3 -m kanpinn bench --quick --device cuda --out "$OUT/quick" > "$OUT/quick.log" 2>&1; tail -45 "$OUT/quick.log"
