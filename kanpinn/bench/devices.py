"""CPU against CUDA in one process: from how many collocation points the GPU pays.

For pykan's reference model (KAN [2,10,1], G=5, k=3) on pykan's Poisson 2D problem, at
growing numbers of collocation points N, on the CPU and on the first CUDA device:

- ``jet``: one PINN closure (forward with the Laplacian propagated as a jet, loss,
  backward), the per-closure cost an L-BFGS or Adam step pays;
- ``lm_step``: one Levenberg-Marquardt iteration of the solver (structured Jacobian,
  normal equations, Cholesky, trial evaluation), the median of the solver's own per-step
  training times over a few steps (the first, which checks the Jacobian against finite
  differences, is left out).

Timing synchronises the CUDA device before every clock read. ``crossover`` gives, per
task and dtype, the smallest N from which CUDA is faster at that N and every larger one.
"""
from __future__ import annotations

import math
import statistics

import numpy as np
import torch

from .micro import _DTYPES, closure_jet, time_call

__all__ = ["run_devices", "crossover", "DEVICE_COLUMNS", "QUICK_DEVICES", "FULL_DEVICES"]

DEVICE_COLUMNS = ["task", "N", "dtype", "cpu_ms", "cuda_ms", "cpu_over_cuda", "notes"]

FULL_DEVICES = {
    "jet_sizes": [1024, 2601, 4096, 16384, 65536, 262144, 1048576],
    "lm_sizes": [1024, 4096, 16384, 65536, 262144],
    "dtypes": ["float64", "float32"],
    "lm_steps": 6, "warmup": 3, "repeats": 11, "max_seconds": 10.0,
    # the CPU's LM iteration grows like N·P²: beyond this N it is not run (noted)
    "cpu_lm_max": 262144,
}
QUICK_DEVICES = {
    "jet_sizes": [1024, 16384, 262144],
    "lm_sizes": [1024, 16384],
    "dtypes": ["float64"],
    "lm_steps": 4, "warmup": 2, "repeats": 5, "max_seconds": 3.0,
    "cpu_lm_max": 16384,
}



def _model(dtype, device):
    from ..kan import KAN
    return KAN([2, 10, 1], grid=5, k=3, seed=0).to(device=device, dtype=dtype)


def _jet_ms(n, dtype, device, cfg):
    model = _model(dtype, device)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1).to(device=device, dtype=dtype)
    f = torch.sin(x.sum(1, keepdim=True))
    params = [p for p in model.parameters() if p.requires_grad]
    ms, _ = time_call(lambda: closure_jet(model, x, f, params), cfg["warmup"], cfg["repeats"],
                      cfg["max_seconds"], device=device)
    return ms


def _lm_ms(n, dtype, device, cfg):
    import kanpinn as kp

    from .targets import poisson_problem
    res = kp.solve(poisson_problem("poisson_2d"), kp.KAN([2, 10, 1], grid=5, k=3, seed=0),
                   grids=[5], steps=cfg["lm_steps"], optimizer="lm", n_interior=n,
                   n_boundary=max(204, int(4 * math.sqrt(n))), sampler="sobol", test_points=21,
                   device=str(device), dtype=dtype, progress=False)
    t = np.asarray(res.history["time"])
    steps = np.diff(t)[1:] if len(t) > 2 else np.diff(t)
    if len(steps) == 0:
        return math.nan
    return 1e3 * statistics.median(steps.tolist())


def run_devices(quick=False, config=None, log=None):
    """Rows (keys ``DEVICE_COLUMNS``) timing each task on the CPU and on CUDA.

    Without CUDA the cuda column stays empty and the note says so."""
    cfg = dict(QUICK_DEVICES if quick else FULL_DEVICES)
    if config:
        cfg.update(config)
    log = log or (lambda *a: None)
    cuda = torch.device("cuda") if torch.cuda.is_available() else None
    rows = []
    for task, sizes, timer in (("jet", cfg["jet_sizes"], _jet_ms), ("lm_step", cfg["lm_sizes"], _lm_ms)):
        for dt in cfg["dtypes"]:
            dtype = _DTYPES[dt]
            for n in sizes:
                row = {c: None for c in DEVICE_COLUMNS}
                row.update(task=task, N=n, dtype=dt)
                notes = []
                if task == "lm_step" and n > cfg["cpu_lm_max"]:
                    notes.append(f"cpu: not run above N={cfg['cpu_lm_max']}")
                else:
                    row["cpu_ms"] = _timed(timer, n, dtype, torch.device("cpu"), cfg, notes, "cpu")
                if cuda is None:
                    notes.append("no CUDA device")
                else:
                    row["cuda_ms"] = _timed(timer, n, dtype, cuda, cfg, notes, "cuda")
                    torch.cuda.empty_cache()
                a, b = row["cpu_ms"], row["cuda_ms"]
                if a is not None and b is not None and b > 0:
                    row["cpu_over_cuda"] = a / b
                row["notes"] = "; ".join(notes)
                rows.append(row)
                log(f"devices {task} N={n} {dt}: cpu {_fmt(a)}, cuda {_fmt(b)}")
    return rows


def _timed(timer, n, dtype, device, cfg, notes, label):
    try:
        return timer(n, dtype, device, cfg)
    except (RuntimeError, MemoryError) as e:   # out of memory and the like: note, go on
        notes.append(f"{label}: failed ({type(e).__name__}: {str(e)[:80]})")
        return None


def _fmt(v):
    return "-" if v is None else f"{v:.2f} ms"


def crossover(rows):
    """Per (task, dtype): the smallest N from which CUDA is faster at that N and at every
    larger N measured on both, or None when it never is. Rows of dicts."""
    out = []
    keys = sorted({(r["task"], r["dtype"]) for r in rows})
    for task, dt in keys:
        pts = sorted((r["N"], r["cpu_over_cuda"]) for r in rows
                     if r["task"] == task and r["dtype"] == dt and r["cpu_over_cuda"] is not None)
        if not pts:
            continue
        first = None
        for n, ratio in reversed(pts):
            if ratio > 1.0:
                first = n
            else:
                break
        out.append({"task": task, "dtype": dt, "gpu_faster_from_N": first,
                    "largest_N": pts[-1][0], "speedup_at_largest": pts[-1][1]})
    return out
