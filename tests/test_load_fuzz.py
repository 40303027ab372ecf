"""Fuzz: kp.load on randomly mutated result files (attributes, JSON, dataset shapes and
dtypes, declared-but-unwritten huge datasets, deleted objects, flipped bytes, truncation),
each case bounded in time and memory. Every outcome must be a successful load or a
KanpinnError (see tests/load_fuzz_worker.py)."""
import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "load_fuzz_worker.py")


def _fuzz(tmp_path, n, seed=None, timeout=240):
    args = [sys.executable, WORKER, str(n), str(tmp_path)] + ([] if seed is None else [str(seed)])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["failures"] == [], summary["failures"][:5]
    counts = summary["counts"]
    assert sum(counts.values()) >= n * 0.8, counts          # (mutations h5py cannot write are skipped)
    assert counts["loaded"] > 0 and counts["KanpinnError"] > 0, counts
    return summary


def test_mutated_files_load_or_raise_kanpinn_error(tmp_path):
    _fuzz(tmp_path, 100)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mutated_files_many_random_cases(tmp_path, seed):
    _fuzz(tmp_path, 1500, seed=seed, timeout=1800)
