#!/usr/bin/env bash
# One call on a lent GPU machine (the `device` tool): the test suite with device="auto"
# (so every solve runs on CUDA), the CPU-vs-CUDA timings and the targets on CUDA.
# Logs land in $OUT. Usage there: bash tools/device_check.sh [tests|devices|targets|all]
set -u
what=${1:-all}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-/tmp/device-out}; mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
  python3 -c "import torch,sys; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0), torch.get_num_threads())"
  nproc; } 2>&1 | tee "$OUT/env.txt"
if [[ $what == all || $what == tests ]]; then
  timeout ${TEST_TIMEOUT:-240} python3 -m pytest -q -x -p no:cacheprovider -n 8 -rs 2>&1 | tail -40 | tee "$OUT/pytest.txt"
fi
if [[ $what == all || $what == devices ]]; then
  timeout ${DEVICES_TIMEOUT:-260} python3 -c "
from kanpinn.bench import run
r = run(quick=False, out='$OUT/bench', micro=False, suite=False, devices=True, targets=True, verbose=True)
" 2>&1 | tail -60
fi
