"""Time-marching: an evolution problem solved window after window in time.

``kp.solve(problem, windows=n)`` (or ``windows=[t0, t1, ..., T]``) splits a SpaceTime
problem's time interval into windows. Each window is a Problem on ``space x [a, b]`` with
the same residual and boundary conditions; its Initial conditions are the previous
window's solution at t = a (u, and ∂u/∂t where the problem gives an initial velocity:
whatever derivatives the problem's own ``Initial`` conditions prescribe), handed over by
``transforms.windows.SliceOf``. Each window is trained by ``kp.solve`` itself (auto mode
inside it when no model is given, a fresh copy of the given model otherwise), on the time
budget left divided by the windows left (time one window does not use carries over).
The result holds a ``transforms.TimeWindows`` model, the metrics over the whole domain
and the windows' histories one after the other (steps and time running on).

Why: a PINN trained on the whole horizon at once must fit late times before the early
ones it depends on are right, and the errors of an unstable reaction (Allen-Cahn: 5u - 5u³
amplifies by up to e⁵ over t ∈ [0, 1]) grow with the horizon one network must cover.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from ..errors import KanpinnError
from .run import _test_set, error_metrics

__all__ = ["window_edges", "window_problem", "check_marching", "solve_windows", "MIN_WINDOW_SECONDS"]

# a window with less than this much of max_time left still gets it, so that every window
# takes a few optimiser steps and the model covers the whole horizon; the overrun (at most
# this much per window) is reported in a note
MIN_WINDOW_SECONDS = 1.0


def check_marching(problem):
    """Refuse, with the reason, problems that cannot be marched in time."""
    from ..conditions import Data, Initial
    from ..domains import SpaceTime
    if not isinstance(problem.domain, SpaceTime):
        raise KanpinnError(f"windows: time-marching needs a SpaceTime domain (time as the last variable), got "
                           f"{type(problem.domain).__name__} with variables {list(problem.domain.variables)}")
    if not any(isinstance(c, Initial) for c in problem.conditions):
        raise KanpinnError("windows: time-marching needs an Initial condition to march from")
    if problem.parameters:
        raise KanpinnError(f"windows: time-marching does not learn unknown coefficients "
                           f"({sorted(problem.parameters)}): each window would fit its own")
    if any(isinstance(c, Data) for c in problem.conditions):
        raise KanpinnError("windows: time-marching does not take Data conditions (observations belong to "
                           "the whole horizon); solve without windows")
    high = [c.derivative for c in problem.conditions if isinstance(c, Initial) and c.derivative > 1]
    if high:
        raise KanpinnError(f"windows: time-marching hands over u and ∂u/∂t only; an Initial condition on "
                           f"derivative {max(high)} is not supported")


def window_edges(problem, windows):
    """The window boundaries: ``windows`` equal windows (an int), or the given edges (a
    list from t0 to t1, strictly increasing)."""
    from ..transforms.windows import check_edges
    check_marching(problem)
    t0, t1 = float(problem.domain.t0), float(problem.domain.t1)
    if isinstance(windows, (list, tuple)):
        edges = check_edges(windows, owner="windows")
        tol = 1e-12 * max(1.0, abs(t0), abs(t1))
        if abs(edges[0] - t0) > tol or abs(edges[-1] - t1) > tol:
            raise KanpinnError(f"windows: the edges must run from t0 = {t0:g} to t1 = {t1:g}, got {edges}")
        edges[0], edges[-1] = t0, t1
        return edges
    n = int(windows)
    if n < 1:
        raise KanpinnError(f"windows: expected an integer >= 1, got {windows!r}")
    return [t0 + (t1 - t0) * k / n for k in range(n)] + [t1]


def window_problem(problem, a, b, prev=None):
    """``problem`` on the time window [a, b]; with ``prev`` (the previous window's
    model), its Initial conditions are prev's values at t = a."""
    from ..conditions import Initial
    from ..domains import SpaceTime
    from ..problem import Problem
    from ..transforms.windows import SliceOf
    dom = problem.domain
    t_col = dom.dim - 1
    conditions = []
    for c in problem.conditions:
        if isinstance(c, Initial) and prev is not None:
            c = Initial(SliceOf(prev, t_col, c.derivative, c.component), derivative=c.derivative,
                        weight=c.weight, component=c.component, name=c.name)
        conditions.append(c)
    return Problem(SpaceTime(dom.space, t=(a, b)), problem.residual, conditions, exact=problem.exact,
                   name=f"{problem.name} window t=[{a:g}, {b:g}]")


def solve_windows(problem, model, options, edges, choices, warm_start=False):
    """Train one model per window (see the module doc); returns the whole Result.

    ``model``: the model the user gave (copied for each window, untrained) or None (auto
    mode in each window); ``options``: the user's solve options; ``choices``: auto mode's
    record for the whole problem (kept in ``Result.options["auto"]``); ``warm_start``
    (auto mode only): start each window after the first from the previous window's
    trained network (``warm.warm_plan``). Off by default: measured on Allen-Cahn (5
    windows, 180 CPU s) it lost to cold starts (7.95e-5 against 7.5e-5; see
    docs/hard_problems.md, "Warm starts")."""
    from ..result import Result
    from ..transforms.windows import TimeWindows
    from .solve import solve
    from .warm import warm_plan
    check_marching(problem)
    if options.get("checkpoint"):
        raise KanpinnError("windows: checkpoints are not supported with time-marching (each window is its own "
                           "solve); drop 'checkpoint' or 'windows'")
    given = None if model is None else copy.deepcopy(model)
    if warm_start and model is not None:
        raise KanpinnError("windows: a warm start continues auto mode's network from window to window; a given "
                           "model is trained from its own initialisation in every window (drop warm_start)")
    warm = model is None and bool(warm_start)
    total = options.get("max_time")
    if total is None and model is None:
        from .auto import DEFAULT_MAX_TIME
        total = DEFAULT_MAX_TIME
    n = len(edges) - 1
    from .distributed import is_main_process
    if options.get("progress", True) and is_main_process():
        why = ((choices or {}).get("methods") or {}).get("time_marching", {}).get("why", "windows set by the user")
        print(f"kanpinn time-marching: {n} windows, edges {[round(e, 6) for e in edges]} ({why})")
    notes, models, results, floored = [], [], [], []
    start = time.perf_counter()
    prev = None
    for k in range(n):
        wopts = {key: v for key, v in options.items() if key != "windows"}
        wopts["windows"] = 1
        if total is not None:
            left = total - (time.perf_counter() - start)
            share = left / (n - k) / _overrun(results, time.perf_counter() - start)
            if share < MIN_WINDOW_SECONDS:
                floored.append(k + 1)
            wopts["max_time"] = max(share, MIN_WINDOW_SECONDS)
        wp = window_problem(problem, edges[k], edges[k + 1], prev)
        res = None
        if warm and prev is not None:
            planned = warm_plan(wp, wopts, prev)
            if isinstance(planned, str):
                notes.append(f"window {k + 1}: cold start ({planned})")
            else:
                wmodel, wo, wch = planned
                res = solve(wp, wmodel, **wo)
                res.options["auto"] = wch           # the plan (solve saw a given model)
        if res is None:
            res = solve(wp, None if given is None else copy.deepcopy(given), **wopts)
        for note in res.metrics.get("notes") or ():
            notes.append(f"window {k + 1}: {note}")
        prev = res.model
        models.append(res.model)
        results.append(res)
    spent = time.perf_counter() - start
    if floored and spent > total:
        notes.append(f"max_time ({total:g} s) overrun ({spent:.1f} s): windows {floored} of {n} had less than "
                     f"{MIN_WINDOW_SECONDS:g} s left each and got that much; fewer windows fit this max_time")
    t_col = problem.domain.dim - 1
    full = TimeWindows(models, edges, t_col)
    return _result(problem, full, results, total, choices, notes, time.perf_counter() - start, Result)


def _overrun(results, elapsed):
    """Real seconds per second of a window's own max_time so far (1 before the first
    window; at most 3). A solve counts its training time against max_time, not its setup
    nor the error it logs at each step, and the windows run on the real clock: measured,
    Allen-Cahn, 3 windows of 50 s each took 57, 54 and 46 s (load 5), so the last one got
    what the first two overran. Dividing each window's share by this ratio keeps the
    windows even."""
    own = sum(float(r.metrics.get("wall_time", 0.0)) for r in results)
    if not results or not own > 0:
        return 1.0
    return min(max(elapsed / own, 1.0), 3.0)


def _history(results):
    """The windows' histories one after the other: steps and time running on, a
    'window' column (1-based) saying which window each row belongs to."""
    keys = []
    for r in results:
        keys += [k for k in r.history if k not in keys]
    out = {k: [] for k in keys}
    out["window"] = []
    step0 = time0 = 0.0
    for w, r in enumerate(results):
        rows = len(r.history.get("step", ()))
        for k in keys:
            v = np.asarray(r.history.get(k, np.full(rows, np.nan)), dtype=np.float64)
            if k == "step":
                v = v + step0
            elif k == "time":
                v = v + time0
            out[k].append(v)
        out["window"].append(np.full(rows, w + 1.0))
        step0 += float(r.metrics.get("steps", 0))
        time0 += float(r.metrics.get("wall_time", 0.0))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def _grid(model):
    """The grid size of the network inside a window's model (None when it has none)."""
    from ..transforms.wrapper import innermost
    grid = getattr(innermost(model)[0], "grid", None)
    return None if grid is None else int(grid)


def _result(problem, model, results, total, choices, notes, wall, Result):
    first = results[0]
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    test_x, test_u = _test_set(problem, first.options.get("test_points"), dtype, device)
    windows = [{"t": [float(model.edges[k]), float(model.edges[k + 1])],
                "l2_relative": r.metrics.get("l2_relative"), "loss": r.metrics.get("loss"),
                "wall_time": r.metrics.get("wall_time"), "steps": r.metrics.get("steps"),
                "n_parameters": r.metrics.get("n_parameters"), "grid": _grid(r.model)}
               for k, r in enumerate(results)]
    metrics = {"loss": float(sum(r.metrics.get("loss", math.nan) for r in results)),
               "wall_time": float(sum(r.metrics.get("wall_time", 0.0) for r in results)),
               "elapsed": wall,
               "n_parameters": int(sum(r.metrics.get("n_parameters", 0) for r in results)),
               "steps": int(sum(r.metrics.get("steps", 0) for r in results)),
               "diverged": any(bool(r.metrics.get("diverged")) for r in results),
               "windows": windows}
    metrics.update(error_metrics(model, test_x, test_u))
    if notes:
        metrics["notes"] = notes
    opts = dict(first.options)
    opts["windows"] = list(model.edges)
    opts["max_time"] = total
    auto = dict(choices or {})
    methods = auto.setdefault("methods", {})
    methods.setdefault("time_marching", {"edges": list(model.edges), "why": "windows set by the user"})
    auto["windows"] = [r.options.get("auto") for r in results]
    opts["auto"] = auto
    return Result(model, problem, _history(results), metrics, opts,
                  test_x=test_x.detach().cpu().numpy(),
                  test_u=None if test_u is None else test_u.detach().cpu().numpy(),
                  variables=tuple(problem.variables), domain_spec=problem.domain.spec())
