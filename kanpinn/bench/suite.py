"""The benchmark suite: every problem file in ``problems/`` × solver presets.

Each (problem, solver) pair runs twice, as Yu et al. (2024) ask of KAN-vs-MLP comparisons:

1. ``preset``: the solver's own budget (its steps / grids / optimiser, "equal steps" as
   the presets define them);
2. ``equal_time``: every solver gets the same training time T, the wall time of the
   reference solver's (the KAN's) preset run, through ``max_time``; a solver that would
   finish early has its step counts raised so that the time, not the steps, ends it. The
   reference solver's equal-time run is its preset run (it already took T).

All runs happen in one process, one after the other, so their ratios share the machine's
state. Recorded per run: relative L2 and max abs error on the solver's test grid, training
wall time (``metrics["wall_time"]``, the time ``max_time`` counts), parameters, forward
FLOPs per point (``kanpinn.kan_tools.flops_per_point``), steps, and the error history.
"""
from __future__ import annotations

import glob
import math
import os
import time
import traceback
import warnings

import numpy as np
import torch
from ..kan_tools import flops_or_none as _flops

__all__ = ["find_problems", "find_solvers", "run_suite", "ratios", "SUITE_COLUMNS", "QUICK_OVERRIDES"]

SUITE_COLUMNS = ["problem", "solver", "mode", "l2_relative", "max_abs", "wall_time", "max_time",
                 "n_parameters", "flops_per_point", "steps", "diverged", "error"]

# --quick: a small budget per run. Grids shortened to the first two, few steps, and a cap
# of a few seconds of training per run.
QUICK_OVERRIDES = {
    "KAN": {"steps": 10, "max_time": 3.0, "n_interior": 500, "n_boundary": 200},
    "MLP": {"adam_steps": 300, "steps": 20, "max_time": 3.0, "n_interior": 500, "n_boundary": 200},
}
QUICK_SOLVERS = ("kan", "mlp")


def _repo_dirs(name):
    """Candidate folders called ``name``: in the current directory, then next to the
    installed package (a source checkout)."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    out = []
    for base in (os.getcwd(), root):
        p = os.path.join(base, name)
        if os.path.isdir(p) and os.path.abspath(p) not in out:
            out.append(os.path.abspath(p))
    return out


def find_problems(folder=None):
    """Sorted problem files (``*.py``) of ``folder``, else of ``problems/`` in the current
    directory or the source checkout; [] when there is none."""
    dirs = [folder] if folder else _repo_dirs("problems")[:1]
    files = []
    for d in dirs:
        if d and os.path.isdir(d):
            files += sorted(f for f in glob.glob(os.path.join(d, "*.py"))
                            if not os.path.basename(f).startswith("_"))
    return files


def find_solvers(folder=None, names=None):
    """Solver TOML files: of ``folder`` or the checkout's ``solvers/``, else the presets
    shipped in the package. ``names`` keeps only those stems, in that order."""
    from ..presets import PRESET_DIR
    dirs = [folder] if folder else _repo_dirs("solvers")[:1] + [PRESET_DIR]
    for d in dirs:
        files = sorted(glob.glob(os.path.join(d, "*.toml")))
        if files:
            break
    else:
        return []
    if names is not None:
        by_stem = {os.path.splitext(os.path.basename(f))[0]: f for f in files}
        files = [by_stem[n] for n in names if n in by_stem]
    return files


def _model_type(factory):
    return str(getattr(factory, "config", {}).get("type", "KAN")).upper()


def _quick_options(options, kind, quick_overrides, quick=True):
    opts = dict(options)
    over = dict(quick_overrides.get(kind, {}))
    if quick and kind == "KAN" and opts.get("grids"):
        opts["grids"] = list(opts["grids"])[:2]
    opts.update(over)
    if "adam_steps" in over and opts.get("optimizer") not in ("adam+lbfgs", "auto"):
        opts.pop("adam_steps")
    return opts


def _stretch(options, factor):
    """Options with the step counts raised by ``factor`` (time, not steps, ends the run)."""
    opts = dict(options)
    for key, default in (("steps", 100), ("adam_steps", None)):
        v = opts.get(key, default)
        if v is not None:
            opts[key] = int(math.ceil(int(v) * factor))
    return opts



def _run_recorded(problem, pname, name, mode, factory, options, log):
    """One solver run as a (row, history) record; a failure becomes a row with its error."""
    try:
        result, used = _run_one(problem, factory, options)
        return _record(pname, name, mode, result, used)
    except Exception as e:  # noqa: BLE001 - one failing run must not lose the others
        log(traceback.format_exc(limit=3))
        return _record(pname, name, mode, error=f"{type(e).__name__}: {e}")


def _run_one(problem, factory, options, seed=0):
    from ..solver import solve
    n_out = problem.n_outputs or 1
    torch.manual_seed(seed)
    model = factory(problem.domain.dim, n_out)
    opts = dict(options)
    opts["progress"] = False
    if "log_every" not in opts:
        total = int(opts.get("steps", 100)) * max(1, len(opts.get("grids") or [1]))
        total += int(opts.get("adam_steps") or 0)
        opts["log_every"] = max(1, total // 200)       # ~200 error evaluations per run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = solve(problem, model, **opts)
    return result, opts


def _record(problem_name, solver_name, mode, result=None, opts=None, error=None):
    row = {c: None for c in SUITE_COLUMNS}
    row.update(problem=problem_name, solver=solver_name, mode=mode, error=error)
    hist = {}
    if result is not None:
        m = result.metrics
        row.update(l2_relative=m.get("l2_relative"), max_abs=m.get("max_abs"),
                   wall_time=m.get("wall_time"), n_parameters=m.get("n_parameters"),
                   flops_per_point=_flops(result.model), steps=m.get("steps"),
                   diverged=bool(m.get("diverged", False)), max_time=(opts or {}).get("max_time"))
        h = result.history
        for key in ("step", "time", "loss", "l2_relative"):
            if key in h:
                hist[key] = np.asarray(h[key], dtype=np.float64)
    return row, hist


def run_suite(quick=False, problems=None, solvers=None, overrides=None, reference=None,
              log=None, equal_time=True, device=None):
    """Run problems × solvers. Returns (rows, histories): rows are dicts with
    ``SUITE_COLUMNS``; histories map (problem, solver, mode) to dicts of arrays.

    problems: problem files (default: ``find_problems()``); solvers: solver files or preset
    names (default: all of ``solvers/``, or kan and mlp with ``quick``); overrides: extra
    solve options per model type, {"KAN": {...}, "MLP": {...}} (quick mode default:
    ``QUICK_OVERRIDES``); reference: the solver name whose preset wall time sets the
    equal-time budget (default: the first KAN solver); device: where every run trains
    (default: each solver file's own setting)."""
    from ..presets import load_solver, preset_path
    from ..problem_file import load_problem
    log = log or (lambda *a: None)
    if problems is None:
        problems = find_problems()
        if not problems:
            log("suite: no problems/ folder found (run from the repository root); suite skipped")
            return [], {}
    if solvers is None:
        solvers = find_solvers(names=list(QUICK_SOLVERS) if quick else None)
    solver_specs = []
    for s in solvers:
        path = preset_path(s)
        factory, options = load_solver(path)
        name = getattr(factory, "name", None) or os.path.splitext(os.path.basename(path))[0]
        kind = _model_type(factory)
        over = overrides if overrides is not None else (QUICK_OVERRIDES if quick else {})
        if over:
            options = _quick_options(options, kind, over, quick)
        if device is not None:
            options = dict(options, device=device)
        solver_specs.append((name, kind, factory, options))
    if reference is None:
        reference = next((n for n, k, _, _ in solver_specs if k == "KAN"), solver_specs[0][0] if solver_specs else None)

    rows, histories = [], {}
    for pfile in problems:
        try:
            problem = load_problem(pfile)
        except Exception as e:  # noqa: BLE001 - a broken problem file: note it, go on
            pname = os.path.splitext(os.path.basename(pfile))[0]
            rows.append(_record(pname, "-", "load", error=f"{type(e).__name__}: {e}")[0])
            log(f"suite {pname}: cannot load ({e})")
            continue
        pname = problem.name or os.path.splitext(os.path.basename(pfile))[0]
        preset_rows = {}
        for name, kind, factory, options in solver_specs:
            t0 = time.perf_counter()
            row, hist = _run_recorded(problem, pname, name, "preset", factory, options, log)
            rows.append(row)
            histories[(pname, name, "preset")] = hist
            preset_rows[name] = row
            log(f"suite {pname} / {name} (preset): L2 {_fmt(row['l2_relative'])}, "
                f"train {_fmt(row['wall_time'], '.1f')} s, {row['steps']} steps "
                f"({time.perf_counter() - t0:.1f} s)")
        if not equal_time:
            continue
        ref = preset_rows.get(reference)
        T = ref["wall_time"] if ref else None
        if not T or ref.get("error"):
            continue
        for name, kind, factory, options in solver_specs:
            prow = preset_rows[name]
            if name == reference:
                row = dict(prow, mode="equal_time", max_time=T)
                rows.append(row)
                histories[(pname, name, "equal_time")] = histories[(pname, name, "preset")]
                continue
            t_own = prow.get("wall_time")
            opts = dict(options)
            opts["max_time"] = float(T)
            if t_own and t_own < 0.95 * T:
                opts = _stretch(opts, 1.2 * T / t_own + 1)
            elif not t_own:
                opts = _stretch(opts, 10)
            t0 = time.perf_counter()
            row, hist = _run_recorded(problem, pname, name, "equal_time", factory, opts, log)
            rows.append(row)
            histories[(pname, name, "equal_time")] = hist
            log(f"suite {pname} / {name} (equal time {T:.1f} s): L2 {_fmt(row['l2_relative'])}, "
                f"train {_fmt(row['wall_time'], '.1f')} s, {row['steps']} steps "
                f"({time.perf_counter() - t0:.1f} s)")
    return rows, histories


def _fmt(v, spec=".3e"):
    return "-" if v is None else format(v, spec)


def ratios(rows, baseline="mlp"):
    """KAN-type solver / baseline ratios of error and time, per problem and mode."""
    out = []
    index = {(r["problem"], r["solver"], r["mode"]): r for r in rows}
    for r in rows:
        if r["solver"] == baseline or r["mode"] not in ("preset", "equal_time"):
            continue
        b = index.get((r["problem"], baseline, r["mode"]))
        if b is None:
            continue

        def div(a, c):
            if a is None or c is None or not c > 0:
                return None
            return a / c
        out.append({"problem": r["problem"], "solver": r["solver"], "baseline": baseline, "mode": r["mode"],
                    "l2_ratio": div(r["l2_relative"], b["l2_relative"]),
                    "max_abs_ratio": div(r["max_abs"], b["max_abs"]),
                    "time_ratio": div(r["wall_time"], b["wall_time"]),
                    "params_ratio": div(r["n_parameters"], b["n_parameters"]),
                    "flops_ratio": div(r["flops_per_point"], b["flops_per_point"])})
    return out
