"""Auto mode: the model and the training schedule chosen from the problem itself.

``plan(problem, options)`` (``kp.solve(problem)`` with no model) and
``complete(problem, model, options)`` (a model given, options partly set) both return
``(model, options, choices)``. ``choices`` is a JSON-safe dict saying what was chosen and
why; the solver stores it in ``Result.options["auto"]`` and prints it. Options the user
set always win: auto mode only fills the ones left unset.

What is chosen follows from a classification of the problem (``classify``): dimension,
outputs, time dependence and its order (``Initial(derivative=1)`` means second order in
time), periodic variables, unknown coefficients, and the size of the bounding box. The
measured reasons for each method are in the comments next to the rule that switches it on.
"""
from __future__ import annotations

import numpy as np

from ..errors import KanpinnError

__all__ = ["plan", "complete", "classify", "DEFAULT_MAX_TIME"]

# seconds of training auto mode plans for when the user gives no max_time
DEFAULT_MAX_TIME = 180.0
# the README's KAN preset: quintic B-splines, grid extension 5 -> 10 -> 20, LM
_PRESET = dict(width=10, k=5, grids=[5, 10, 20], steps=60, n_interior=2000, n_boundary=400)


def classify(problem) -> dict:
    """What auto mode knows of ``problem``: a JSON-safe dict."""
    from ..conditions import Data, Dirichlet, Initial, Periodic
    from ..domains import SpaceTime
    dom = problem.domain
    lo, hi = np.asarray(dom.lo, dtype=float), np.asarray(dom.hi, dtype=float)
    is_time = isinstance(dom, SpaceTime)
    initial = [c for c in problem.conditions if isinstance(c, Initial)]
    order = (max(c.derivative for c in initial) + 1) if initial else (1 if is_time else 0)
    try:
        n_out = problem.n_outputs
    except Exception:               # noqa: BLE001 - exact() failing must not stop a solve
        n_out = None
    outputs = n_out or _outputs_from_conditions(problem) or 1
    return {
        "dimension": int(dom.dim),
        "variables": list(dom.variables),
        "outputs": int(outputs),
        "outputs_known": n_out is not None,
        "time_dependent": bool(is_time),
        "time_order": int(order),
        "periodic": [c.variable for c in problem.conditions if isinstance(c, Periodic)],
        "dirichlet": sum(isinstance(c, Dirichlet) for c in problem.conditions),
        "data": sum(isinstance(c, Data) for c in problem.conditions),
        "inverse": sorted(problem.parameters or {}),
        "box": [[float(a), float(b)] for a, b in zip(lo, hi)],
        "box_is_unit": bool(np.all(lo >= -1.0 - 1e-12) and np.all(hi <= 1.0 + 1e-12)),
        "is_box": bool(getattr(dom, "is_box", False)),
        "domain": type(dom).__name__,
    }


def _outputs_from_conditions(problem):
    comps = [getattr(c, "component", None) for c in problem.conditions]
    comps = [c for c in comps if c is not None]
    return (max(comps) + 1) if comps else None


def _set(options, choices, key, value, why):
    """Fill ``key`` unless the user set it; record the choice and its reason."""
    if key in options:
        choices["kept"][key] = "set by the user"
        return
    options[key] = value
    choices["options"][key] = {"value": value, "why": why}


def _schedule(info, options, choices, grid0):
    """Grids, steps and the time budget (the user's settings win)."""
    _set(options, choices, "grids", [grid0, 2 * grid0, 4 * grid0],
         "grid extension (coarse to fine) is what makes KANs accurate: each stage starts "
         "from the previous grid's solution")
    n_stages = len(options["grids"]) if options.get("grids") else 1
    steps = _PRESET["steps"] if n_stages >= 3 else 120
    _set(options, choices, "steps", steps, "Levenberg-Marquardt converges within tens of steps per grid")
    _set(options, choices, "n_interior", _PRESET["n_interior"] if info["dimension"] <= 2 else 3000,
         "collocation points: enough to resolve the finest grid in every direction")
    _set(options, choices, "n_boundary", _PRESET["n_boundary"], "points per condition")


def plan(problem, options: dict):
    """(model, options, choices) for ``kp.solve(problem)`` without a model."""
    from ..kan import KAN
    _check_options(options)
    options = dict(options or {})
    info = classify(problem)
    choices = {"mode": "plan", "problem": info, "model": {}, "options": {}, "kept": {}, "notes": []}
    if not info["outputs_known"]:
        choices["notes"].append(f"no exact solution to read the number of outputs from; "
                                f"assumed {info['outputs']} from the conditions")
    seed = options.get("seed", 0)
    width = _PRESET["width"] * (2 if info["outputs"] > 1 else 1)
    widths = [info["dimension"], width, info["outputs"]]
    model = KAN(widths, grid=_PRESET["grids"][0], k=_PRESET["k"], seed=int(seed or 0))
    choices["model"] = {"type": "KAN", "widths": widths, "k": _PRESET["k"],
                        "why": "a one-hidden-layer KAN with quintic B-splines is the measured "
                               "best on smooth problems; LM trains it in seconds"}
    _set(options, choices, "optimizer", "lm", "Levenberg-Marquardt with the structured Jacobian")
    _set(options, choices, "max_time", DEFAULT_MAX_TIME,
         f"auto mode's default training budget ({DEFAULT_MAX_TIME:g} s); the best state "
         "reached is returned when it runs out")
    _schedule(info, options, choices, _PRESET["grids"][0])
    return model, options, choices


def complete(problem, model, options: dict):
    """(model, options, choices) for ``kp.solve(problem, model)``: the options left unset
    get the best known defaults for this model."""
    _check_options(options)
    options = dict(options or {})
    info = classify(problem)
    choices = {"mode": "complete", "problem": info, "model": {"type": type(model).__name__, "given": True},
               "options": {}, "kept": {}, "notes": []}
    is_kan = hasattr(model, "extend_grid") and hasattr(model, "update_grid")
    if is_kan:
        grid0 = int(getattr(model, "grid", 5))
        _schedule(info, options, choices, grid0)
    return model, options, choices


def _check_options(options):
    if not isinstance(options, dict):
        raise KanpinnError(f"auto mode takes the solve options as a dict, got {type(options).__name__}")
