"""Fuzz ``kp.load`` with randomly mutated result files (run by tests/test_load_fuzz.py in a
subprocess: ``python tests/load_fuzz_worker.py N_EXAMPLES FOLDER``).

The address space is capped at what is mapped after the imports + 1 GiB, and each load
gets ``CASE_SECONDS`` (a timer interrupts Python code; a hang inside C code is caught by
the parent's timeout). Every outcome must be a successful load or a KanpinnError.
Prints one JSON summary line."""
import json
import math
import os
import resource
import shutil
import signal
import sys
import time

import h5py
import numpy as np
import sympy
import torch
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from kanpinn.errors import KanpinnError
from kanpinn.kan import KAN
from kanpinn.result import Result, load

CASE_SECONDS = 30           # generous: the machines running the tests are shared and noisy

N_EXAMPLES, FOLDER = int(sys.argv[1]), sys.argv[2]
SEED = int(sys.argv[3]) if len(sys.argv) > 3 else None      # None: the same examples every run
BASE = os.path.join(FOLDER, "base.h5")
CASE = os.path.join(FOLDER, "case.h5")


def make_base():
    model = KAN([2, [1, 1], 1], grid=4, k=3, seed=0, dtype=torch.float64)
    model.fix_symbolic(0, 0, 1, "sin", a=2.0, expr=sympy.sin)
    x = np.random.default_rng(0).uniform(-1, 1, (30, 2))
    Result(model, None, {"step": np.arange(4), "loss": np.logspace(0, -3, 4), "l2_relative": np.ones(4)},
           {"l2_relative": 0.01, "max_abs": 0.02}, {"steps": 4, "grids": [4]},
           test_x=x, test_u=np.sin(x[:, :1]), variables=("x", "y"), domain_spec={"type": "Rectangle",
           "lo": [-1, -1], "hi": [1, 1]}).save(BASE)


make_base()
with open("/proc/self/statm") as fh:
    _mapped = int(fh.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (_mapped + 2 ** 30, resource.RLIM_INFINITY))

with h5py.File(BASE, "r") as _f:
    DATASETS, OBJECTS = [], ["/"]
    _f.visititems(lambda n, o: (DATASETS if isinstance(o, h5py.Dataset) else OBJECTS).append("/" + n))
ATTRS = [("/", "format"), ("/", "version"), ("/", "metrics"), ("/", "options"), ("/model", "config"),
         ("/problem", "name"), ("/problem", "domain"), ("/problem", "variables")]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 30, 10 ** 30) | st.sampled_from([0, 1, 2, 3, -1, 10 ** 9])
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["9**9**9*z", "sin(z)", "z**2", "bspline", "KAN", "MLP", "__import__('os')"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
attr_values = (st.text(max_size=40) | st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats() | st.binary(min_size=1, max_size=40)
               | json_values.map(lambda v: json.dumps(v, default=str)))
dtypes = st.sampled_from(["f2", "f4", "f8", "i1", "i8", "u8", "?", "S3", "c16"])
shapes = st.lists(st.integers(0, 6), min_size=0, max_size=3).map(tuple)


def _paths(v, prefix=()):
    yield prefix
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, prefix + (i,))


@st.composite
def mutations(draw):
    kind = draw(st.sampled_from(["json", "json", "attr", "dataset", "declared", "delete", "bytes", "truncate"]))
    if kind == "json":
        obj, key = draw(st.sampled_from([a for a in ATTRS if a[1] in ("config", "metrics", "options", "domain",
                                                                        "variables")]))
        return kind, (obj, key, draw(st.integers(0, 10 ** 6)), draw(json_values))
    if kind == "attr":
        return kind, (*draw(st.sampled_from(ATTRS)), draw(attr_values))
    if kind == "dataset":
        return kind, (draw(st.sampled_from(DATASETS)), draw(shapes), draw(dtypes), draw(st.integers(0, 2 ** 32)))
    if kind == "declared":             # a huge dataset whose data is never written (a compression bomb)
        return kind, (draw(st.sampled_from(DATASETS)), draw(st.integers(1, 10 ** 12)))
    if kind == "delete":
        return kind, draw(st.sampled_from(OBJECTS[1:] + DATASETS))
    size = os.path.getsize(BASE)
    if kind == "bytes":
        return kind, draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 255)), min_size=1, max_size=16))
    return kind, draw(st.integers(0, size - 1))


def apply(kind, arg):
    shutil.copyfile(BASE, CASE)
    if kind in ("bytes", "truncate"):
        with open(CASE, "r+b") as fh:
            if kind == "truncate":
                fh.truncate(arg)
            for pos, byte in (arg if kind == "bytes" else ()):
                fh.seek(pos)
                fh.write(bytes([byte]))
        return
    with h5py.File(CASE, "a") as f:
        if kind == "json":
            obj, key, pick, value = arg
            doc = json.loads(f[obj].attrs[key])
            paths = list(_paths(doc))
            path = paths[pick % len(paths)]
            if not path:
                doc = value
            else:
                target = doc
                for p in path[:-1]:
                    target = target[p]
                target[path[-1]] = value
            f[obj].attrs[key] = json.dumps(doc, default=str)
        elif kind == "attr":
            obj, key, value = arg
            f[obj].attrs[key] = np.void(value) if isinstance(value, bytes) else value
        elif kind == "dataset":
            name, shape, dt, seed = arg
            del f[name]
            data = np.random.default_rng(seed).normal(size=shape) * 10
            f.create_dataset(name, data=data.astype(np.dtype(dt)) if dt != "S3" else data.astype(str).astype("S3"))
        elif kind == "declared":
            name, n = arg
            del f[name]
            f.create_dataset(name, shape=(n,), maxshape=(None,), dtype="f8", chunks=(min(n, 4096),),
                             compression="gzip")
        elif kind == "delete":
            if arg in f:
                del f[arg]


class CaseTimeout(BaseException):
    """Not an OSError (TimeoutError is one, and load turns OSErrors into KanpinnErrors)."""


def _timeout(signum, frame):
    raise CaseTimeout(f"load took more than {CASE_SECONDS} s")


signal.signal(signal.SIGALRM, _timeout)
counts = {"loaded": 0, "KanpinnError": 0}
failures = []
slowest = 0.0


@settings(max_examples=N_EXAMPLES, deadline=None, database=None, derandomize=SEED is None,
          suppress_health_check=list(HealthCheck))
@given(mutations())
def fuzz(mutation):
    global slowest
    try:
        apply(*mutation)
    except (TypeError, ValueError, OSError):
        reject()                                        # h5py cannot write this mutation: not a case
    t0 = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        result = load(CASE)
        result.predict(np.zeros((3, 2)))               # what plot/symbolify do first
        counts["loaded"] += 1
    except KanpinnError:
        counts["KanpinnError"] += 1
    except BaseException as e:  # noqa: BLE001 - every other outcome is the failure we look for
        failures.append({"mutation": repr(mutation)[:300], "error": f"{type(e).__name__}: {str(e)[:300]}"})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, time.perf_counter() - t0)
    done = sum(counts.values()) + len(failures)
    if done % 100 == 0:                                 # progress on stderr: a hang shows where
        print(f"{done} cases: {counts}, {len(failures)} failures, slowest {slowest:.2f} s", file=sys.stderr,
              flush=True)


(fuzz if SEED is None else hypothesis_seed(SEED)(fuzz))()
print(json.dumps({"counts": counts, "failures": failures, "slowest_s": slowest,
                  "limit_bytes": _mapped + 2 ** 30, "ok_math": math.isfinite(slowest)}))
