"""The "hard problems" table of ``kanpinn bench``: the PDEs that make PINNs fail (a shock,
a stiff reaction with sharp interfaces, waves, an unknown coefficient), kanpinn against
an MLP-PINN given the same training time, next to the published figures.

Per problem, two runs in this process, one after the other:

1. kanpinn: ``kp.solve(problem, seed=0, max_time=T)`` with no model (auto mode). While
   auto mode is not available (``solve`` has no default model), the KAN preset
   (``kanpinn.presets``, "kan") with ``max_time=T`` runs instead, and the row says so.
2. the MLP preset ("mlp", DeepXDE's usual 4x50 tanh with Adam then L-BFGS) with
   ``max_time`` = the kanpinn run's training time: its Adam steps as the preset has
   them, then L-BFGS steps raised so that the time, not the steps, ends it.

Every figure of a row comes from these two runs: relative L2 on the solver's dense test
grid, training seconds (``metrics["wall_time"]``), and for inverse problems the error of
the learned coefficients in % (against the problem file's ``true_parameters``).

    from kanpinn.bench.hard import run_hard, hard_table
    rows, columns = run_hard(quick=True, max_time=5.0, problems=["wave_1d"])
"""
from __future__ import annotations

import inspect
import math
import numbers
import os
import time
import traceback
import warnings

from ..errors import KanpinnError

__all__ = ["HARD_PROBLEMS", "HARD_COLUMNS", "run_hard", "hard_table"]

# name -> (target of issue 10, published anchor and its source)
HARD_PROBLEMS = {
    "burgers_1d": ("rel. L2 <= 1e-4",
                   "Raissi et al. 2019 MLP-PINN 6.7e-4; PINNacle vanilla PINN 1.45e-2; "
                   "jaxKAN adaptive PIKAN (Rigas et al. 2024) 2.43e-2 in 1411 s"),
    "allen_cahn_1d": ("rel. L2 <= 5e-5",
                      "Wang et al. 2023 (expert's guide) 5.37e-5; PirateNets (Wang et al. 2024) 2.24e-5; "
                      "both 300k Adam steps on a GPU"),
    "wave_1d": ("rel. L2 <= 1e-4", "PINNacle Wave1d-C best (PINN-NTK) 9.8e-2"),
    "helmholtz_2d": ("rel. L2 <= 1e-5",
                     "jaxKAN adaptive PIKAN (Rigas et al. 2024) 1.02e-3 in 1828 s; cPIKAN (Shukla et al. 2024) 3.8e-3"),
    "burgers_inverse": ("nu error <= 0.1 %", "Raissi et al. 2019: nu error 0.12 %"),
    "klein_gordon_1d": ("-", "none recorded here (Wang, Teng & Perdikaris 2021 define the problem)"),
}

HARD_COLUMNS = ["problem", "kanpinn", "kanpinn_l2", "kanpinn_param_err_pct", "kanpinn_s",
                "mlp_l2", "mlp_param_err_pct", "mlp_s", "target", "anchor", "error"]
HARD_KINDS = {"kanpinn_s": "s", "mlp_s": "s"}

# quick: small point sets and short stages, so that max_time (a few seconds) ends each run
QUICK_OPTIONS = {"KAN": {"steps": 10, "n_interior": 500, "n_boundary": 100},
                 "MLP": {"adam_steps": 300, "steps": 20, "n_interior": 500, "n_boundary": 100}}


def _problem_path(name_or_path):
    from .suite import _repo_dirs
    p = os.fspath(name_or_path)
    if p.endswith(".py"):
        if not os.path.isfile(p):
            raise KanpinnError(f"run_hard: problem file {p} does not exist")
        return p
    for d in _repo_dirs("problems"):
        cand = os.path.join(d, p + ".py")
        if os.path.isfile(cand):
            return cand
    raise KanpinnError(f"run_hard: no problem file {p}.py in a problems/ folder (run from the repository "
                       f"root); the hard problems are {', '.join(HARD_PROBLEMS)}")


def auto_available() -> bool:
    """Whether ``kp.solve`` can pick the model itself (``model`` defaults to None)."""
    from ..solver import solve
    param = inspect.signature(solve).parameters.get("model")
    return param is not None and param.default is None


def _param_error_pct(result, true_parameters):
    """Largest relative error of the learned coefficients, in %, or None."""
    learned = (result.metrics or {}).get("parameters") or {}
    if not true_parameters or not learned:
        return None
    errs = [100.0 * abs(float(learned[k]) - float(v)) / abs(float(v))
            for k, v in true_parameters.items() if k in learned and float(v) != 0.0]
    return max(errs) if errs else None


def _kanpinn_run(problem, max_time, quick, device, preset=None):
    """(result, label): auto mode when available (and no ``preset`` is named), else the
    KAN preset (or the named one) with its own schedule, stopped at ``max_time``."""
    from ..presets import load_solver
    from ..solver import solve
    from .suite import _run_one
    common = {"seed": 0, "max_time": float(max_time), "progress": False}
    if device is not None:
        common["device"] = device
    if preset is None and auto_available():
        opts = dict(common)
        if quick:
            opts.update(n_interior=QUICK_OPTIONS["KAN"]["n_interior"], n_boundary=QUICK_OPTIONS["KAN"]["n_boundary"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return solve(problem, **opts), "auto"
    factory, options = load_solver(preset or "kan")
    opts = dict(options, **common)
    if quick:
        opts.update(QUICK_OPTIONS["KAN"])
    result, _ = _run_one(problem, factory, opts)
    return result, f"{preset} preset" if preset else "KAN preset (auto mode not available)"


def _mlp_run(problem, max_time, quick, device):
    """The MLP preset for ``max_time`` seconds of training: its Adam phase as the preset
    has it, then L-BFGS until the time is up (the finisher gets the rest of the budget)."""
    from ..presets import load_solver
    from .suite import _run_one
    factory, options = load_solver("mlp")
    opts = dict(options, seed=0, max_time=float(max_time))
    if quick:
        opts.update(QUICK_OPTIONS["MLP"])
    if device is not None:
        opts["device"] = device
    opts["steps"] = 20 * int(opts.get("steps", 1000))
    result, _ = _run_one(problem, factory, opts)
    return result


def _check(quick, max_time):
    if not isinstance(quick, bool):
        raise KanpinnError(f"run_hard: quick must be True or False, got {quick!r}")
    if isinstance(max_time, bool) or not isinstance(max_time, numbers.Real) or not max_time > 0 \
            or not math.isfinite(max_time):
        raise KanpinnError(f"run_hard: max_time must be a positive number of seconds, got {max_time!r}")


def run_hard(quick: bool = False, max_time: float = 180.0, problems=None, log=None, device=None,
             kanpinn_preset=None):
    """Run the hard-problems comparison. Returns (rows, columns): one dict per problem
    with ``HARD_COLUMNS``.

    quick: small point sets and short stages (a structure check; use a max_time of a few
    seconds). max_time: the kanpinn run's training budget in seconds (issue 10's targets
    are for 180 s on a 2-core CPU); the MLP gets the time kanpinn actually used.
    problems: names of problem files (``"burgers_1d"``) or paths; default
    ``HARD_PROBLEMS``. device: where both runs train (default: the solver's default).
    kanpinn_preset: a preset name ("kan") to run instead of auto mode (a baseline)."""
    from ..problem_file import load_problem_module
    _check(quick, max_time)
    log = log or (lambda *a: None)
    names = list(HARD_PROBLEMS) if problems is None else list(problems)
    rows = []
    for name in names:
        row = {c: None for c in HARD_COLUMNS}
        stem = os.path.splitext(os.path.basename(os.fspath(name)))[0]
        target, anchor = HARD_PROBLEMS.get(stem, ("-", "-"))
        row.update(problem=stem, target=target, anchor=anchor)
        rows.append(row)
        try:
            module = load_problem_module(_problem_path(name))
        except Exception as e:  # noqa: BLE001 - a missing or broken problem: note it, go on
            row["error"] = f"{type(e).__name__}: {e}"
            log(f"hard {stem}: cannot load ({e})")
            continue
        problem, truth = module.problem, getattr(module, "true_parameters", None)
        try:
            t0 = time.perf_counter()
            res, label = _kanpinn_run(problem, max_time, quick, device, kanpinn_preset)
            row.update(kanpinn=label, kanpinn_l2=res.metrics.get("l2_relative"),
                       kanpinn_s=res.metrics.get("wall_time"),
                       kanpinn_param_err_pct=_param_error_pct(res, truth))
            log(f"hard {stem} / {label}: L2 {row['kanpinn_l2']}, train {row['kanpinn_s']} s "
                f"({time.perf_counter() - t0:.1f} s)")
            budget = row["kanpinn_s"] or max_time
            t0 = time.perf_counter()
            mres = _mlp_run(problem, budget, quick, device)
            row.update(mlp_l2=mres.metrics.get("l2_relative"), mlp_s=mres.metrics.get("wall_time"),
                       mlp_param_err_pct=_param_error_pct(mres, truth))
            log(f"hard {stem} / mlp: L2 {row['mlp_l2']}, train {row['mlp_s']} s "
                f"({time.perf_counter() - t0:.1f} s)")
        except Exception as e:  # noqa: BLE001 - one failing run must not lose the others
            log(traceback.format_exc(limit=3))
            row["error"] = f"{type(e).__name__}: {e}"
    return rows, list(HARD_COLUMNS)


def hard_table(quick: bool = False, max_time: float = 180.0, problems=None, log=None, device=None,
               kanpinn_preset=None):
    """The hard-problems comparison as an ``ExtraTable`` for ``kanpinn.bench.run``'s report."""
    from . import ExtraTable
    rows, columns = run_hard(quick, max_time, problems, log, device, kanpinn_preset)
    text = ("kanpinn: `kp.solve(problem, seed=0, max_time=T)` (auto mode; the KAN preset where the "
            f"row says so), T = {max_time:g} s. MLP: the mlp preset for the training time kanpinn used. "
            "Both runs of a row in this process, one after the other; rel. L2 on the dense test grid; "
            "coeff. err: the learned coefficient against the true one (inverse problems).")
    return ExtraTable("hard", "Hard problems", text, rows, columns, dict(HARD_KINDS))
