"""``kp.solve``: train a KAN (or MLP) on a PDE problem, stage by stage.

For each grid size in ``grids`` the solver updates the grids from the collocation points,
optimises for ``steps`` steps, then refines to the next size (``extend_grid``: the coarse
spline nests in the fine one, so nothing learned is lost). The optimiser state is reset
at each stage: the parameter shapes change with the grid, and curvature information
(L-BFGS pairs, LM damping) gathered on the coarse space does not describe the fine one.
LM's damping is carried over, as a scale only.

This module is the entry point only: options are checked here, auto mode
(``kanpinn.solver.auto``) fills what the user left unset, the training loop
(``kanpinn.solver.loop``) runs the stages with the optimisers of
``kanpinn.solver.optimizers`` and the hooks of ``kanpinn.solver.hooks``, and the state
lives in ``kanpinn.solver.run.Run``.
"""
from __future__ import annotations

import copy
import math
import os
import time
import warnings

import numpy as np
import torch

from ..errors import KanpinnError
from . import auto
from ..options import solve_defaults, validate_solve_options
from .checkpoint import load_checkpoint, run_fingerprint
from .hooks import HookList, builtin_hooks
from .loop import SolverWarning, run_stage, stage_plan
from .optimizers import is_optimizer_spec, optimizer_name, registered_optimizers, sum_parts
from .run import Run, error_metrics, is_kan, resize_like, trainable

__all__ = ["solve", "DEFAULTS", "SolverWarning", "format_choices"]


# the defaults of every option, from the one schema (kanpinn.options.SOLVE_OPTIONS)
DEFAULTS = solve_defaults()


def _resolve(options):
    """Every option checked (names, types, ranges) and the defaults filled in."""
    return validate_solve_options(options, optimizers=tuple(registered_optimizers()))


def _multi_start(problem, model, options, opts):
    """Train ``starts`` random initialisations briefly on the first grid and keep the best
    one in ``model``: products of sub-nodes (multiplication nodes) and deep KANs have poor
    local minima that a different draw avoids. Returns the training seconds spent and the
    other starts, best first (``restarts`` may train them later)."""
    if not hasattr(model, "reset_parameters"):
        raise KanpinnError("starts > 1 needs a model with reset_parameters()")
    pool, spent = _draw_starts(problem, model, options, opts, range(int(opts["starts"])))
    if pool:
        resize_like(model, pool[0][1].config())
        model.load_state_dict(pool[0][1].state_dict())
    return spent, pool[1:]


def _draw_starts(problem, model, options, opts, indices):
    """([(loss, candidate)] best first, seconds): each start index trained for
    ``start_steps`` steps on the first grid. Index 0 is ``model``'s own initialisation,
    index i > 0 a redraw seeded by the solve's seed and i (restart rounds use new i)."""
    sub_opts = dict(options, starts=1, restarts=0, steps=int(opts["start_steps"]), checkpoint=None,
                    progress=False, target=None, max_time=None)
    if opts["grids"]:
        sub_opts["grids"] = [list(opts["grids"])[0]]
    pool, spent = [], 0.0
    for s in indices:
        cand = copy.deepcopy(model)
        if s:
            cand.reset_parameters(seed=1000 * int(opts["seed"] or 0) + s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SolverWarning)
            res = solve(problem, cand, **sub_opts)
        spent += res.metrics["wall_time"]
        loss = res.metrics["loss"]
        if math.isfinite(loss):
            pool.append((loss, cand))
    pool.sort(key=lambda p: p[0])
    return pool, spent


# a loss this far below the first grid's is at the float64 floor: a small drop there is
# not a stalled refinement
_FLOOR = 1e-10


def refinement_stalled(stage_losses, grids):
    """The drop of the loss at the last grid refinement, and whether it is too small to
    be a resolution limit: a grid r times finer must lower the loss at least r**2 times
    (cubic splines, second-order PDE: r**4 when the network has the solution's
    structure). Measured, default KAN([2, [0, 1], 1]), grids 10/20/40: the separable
    solution drops 13.6-27x at grid 40 (16x typical), a mixed minimum 1.0-2.0x (Poisson-
    product, heat). ``(None, False)`` when the schedule had no refinement to judge."""
    grids = list(grids or ())
    if len(grids) < 2 or len(stage_losses) != len(grids) or grids[-1] <= grids[-2]:
        return None, False
    prev, last = stage_losses[-2], stage_losses[-1]
    if not (math.isfinite(prev) and math.isfinite(last)) or last <= 0:
        return None, False
    drop = prev / last
    floor = last <= _FLOOR * stage_losses[0]
    return drop, (drop < (grids[-1] / grids[-2]) ** 2) and not floor


# a restart whose result stalls within this factor of the best loss found the same limit
_SAME_LIMIT = 0.5


def _restart(problem, template, options, opts, result, pool):
    """``restarts`` rounds, while the result's last grid refinement stalled: ``starts``
    new draws join the unused starts, the best of them trains on the whole schedule, and
    the lower final loss wins. A stalled refinement means the network sits in a minimum
    of the wrong structure, which more steps or finer grids do not leave; a new start that
    stalls at the same loss ends the rounds (the model cannot do better)."""
    spent = result.metrics["wall_time"]
    notes = []
    n = int(opts["starts"])
    for r in range(1, int(opts["restarts"]) + 1):
        drop, stalled = refinement_stalled(result.metrics.get("stage_losses", ()), opts["grids"])
        if not stalled:
            break
        new, t = _draw_starts(problem, template, options, opts, range(r * n, (r + 1) * n))
        pool = sorted(pool + new, key=lambda p: p[0])
        spent += t
        if not pool:
            break
        _, cand = pool.pop(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SolverWarning)
            sub = solve(problem, cand, **dict(options, starts=1, restarts=0, progress=False))
        spent += sub.metrics["wall_time"]
        notes.append(f"restart {r}: the loss fell only {drop:.1f}x at grid {opts['grids'][-1]} (a stalled "
                     f"refinement); {n} new starts, the best trained: final loss {result.metrics['loss']:.3e} -> "
                     f"{sub.metrics['loss']:.3e}")
        same_limit = refinement_stalled(sub.metrics["stage_losses"], opts["grids"])[1] and \
            sub.metrics["loss"] > _SAME_LIMIT * result.metrics["loss"]
        if sub.metrics["loss"] < result.metrics["loss"]:
            sub.options = result.options
            result = sub
        if same_limit:
            # a second draw stalled at the same loss: the structure's limit, not the start
            # (wave_1d on KAN([2, [0, 1], 1]), not one product: 1.18e-1 in every round,
            # 114 s with two rounds against 32 s with none)
            notes.append("restarts stopped: the new start stalled at the same loss (the model's "
                         "structure, not the start, limits it)")
            break
    if notes:
        result.metrics["wall_time"] = spent
        result.metrics["notes"] = list(result.metrics.get("notes", ())) + notes
        if opts["progress"]:
            print("\n".join(notes))
    return result


def solve(problem, model=None, **options):
    """Train ``model`` on ``problem``; returns a :class:`kanpinn.Result`.

    With ``model=None`` auto mode (``kanpinn.solver.auto.plan``) picks the model and the
    schedule from the problem; with a model, the options left unset get the best known
    defaults for it (``auto.complete``). What auto mode chose, and why, is in
    ``result.options["auto"]`` (and printed when ``progress`` is on).

    Options (defaults in ``DEFAULTS``): ``grids`` (KAN grid sizes, one stage each),
    ``steps`` (optimiser steps per stage), ``optimizer`` ("auto" = "lm" for models up to
    5000 parameters, else "adam+lbfgs"; also "lbfgs", "adam"), ``lr``, ``adam_steps``,
    ``n_interior``, ``n_boundary``, ``sampler`` ("sobol", "uniform", "lhs", "grid"),
    ``resample`` (every k steps, or {"every": k, "mode": "rad", "k": 1, "c": 1}),
    ``device`` ("auto" = CUDA when present), ``dtype`` ("float64" default), ``seed``,
    ``checkpoint`` (path; resumes when it exists), ``progress``, ``weights`` (term ->
    weight), ``max_time`` (s), ``target`` (stop at this L2 error), ``starts`` (random
    initialisations tried for ``start_steps`` steps on the first grid; the best is kept),
    ``restarts`` (with ``starts`` > 1: rounds of new starts while the loss stops falling at
    the last grid refinement, ``refinement_stalled``; the lowest final loss is kept; auto
    mode gives MultKANs 2; ``metrics["stage_losses"]`` holds the loss at each grid's end),
    ``adaptive_weights`` (True or {"every": k, "alpha": a}: learning-rate annealing of the
    condition weights, Wang et al. 2021), ``hooks`` (objects called around each step, see
    ``kanpinn.solver.hooks``), ``windows`` (time-marching: n time windows, or their edges,
    solved one after another, see ``kanpinn.solver.marching``). ``optimizer`` also takes any registered name
    (``kanpinn.solver.optimizers.register_optimizer``), two joined by "+", or a
    ``torch.optim.Optimizer`` class, instance or factory.

    Example (tiny and fast; real runs use e.g. ``grids=[5, 10, 20], steps=100``):

    >>> pi = torch.pi
    >>> problem = kp.Problem(kp.Interval(0, 1),
    ...                      lambda x, u: kp.partial(u, x, 0, 2) + pi**2 * torch.sin(pi * x),
    ...                      [kp.Dirichlet(0.0)], exact=lambda x: torch.sin(pi * x))
    >>> result = kp.solve(problem, kp.KAN([1, 3, 1], grid=3, seed=0), grids=[3], steps=2,
    ...                   n_interior=20, n_boundary=2, progress=False)
    >>> type(result).__name__, isinstance(result.metrics["l2_relative"], float)
    ('Result', True)
    >>> result.predict(np.array([[0.25], [0.5]])).shape
    (2, 1)
    """
    from ..problem import Problem
    from ..result import Result

    if not isinstance(problem, Problem):
        raise KanpinnError(f"solve() takes a kp.Problem first, got {type(problem).__name__}")
    if model is not None and not isinstance(model, torch.nn.Module):
        raise KanpinnError(f"solve() takes a model (kp.KAN or kp.MLP) or None, got {type(model).__name__}")
    _resolve(options)                   # names and values checked before auto mode reads them
    given, asked = model, dict(options)
    if model is None:
        model, options, choices = auto.plan(problem, dict(options))
    else:
        model, options, choices = auto.complete(problem, model, dict(options))
    opts = _resolve(options)
    windows = opts["windows"]
    if (isinstance(windows, int) and windows > 1) or (isinstance(windows, list) and len(windows) > 2):
        from .marching import solve_windows, window_edges     # time-marching: one solve per window
        return solve_windows(problem, given, asked, window_edges(problem, windows), choices)
    problem.check_model(int(getattr(model, "width_out", 1)))
    d = problem.domain.dim
    width_in = getattr(model, "width_in", d)
    if width_in != d:
        raise KanpinnError(f"the model takes {width_in} inputs but the domain has {d} variables {problem.variables}")
    torch.manual_seed(int(opts["seed"] or 0))
    _seed_fresh_model(model, opts["seed"])
    # which run a checkpoint belongs to: taken before anything changes the model
    fingerprint = run_fingerprint(problem, model, opts)
    pre_time, pool, template = 0.0, None, None
    resuming = bool(opts["checkpoint"]) and os.path.exists(opts["checkpoint"])
    if int(opts["starts"]) > 1 and not resuming:
        if _restarts_apply(opts):
            template = copy.deepcopy(model)
        pre_time, pool = _multi_start(problem, model, options, opts)
    run = Run(problem, model, opts)
    run.fingerprint = fingerprint
    run.train_time = pre_time
    if run.comm.is_main and opts["progress"] and choices.get("options"):
        _print_choices(choices)
    kan = is_kan(model)
    grids = list(opts["grids"]) if (kan and opts["grids"]) else [None]
    if not kan and opts["grids"] and len(opts["grids"]) > 1:
        warnings.warn("grids only apply to KANs; the MLP trains in one stage", SolverWarning)
    total = len(grids) * sum(n for _, n in stage_plan(run))
    run.hooks = HookList(builtin_hooks(opts, total, problem.name or "solve", opts["hooks"] or (),
                                       main=run.comm.is_main))
    if run.comm.world > 1:
        run.comm.check_same("problem, model and options", {
            "problem": problem.name, "variables": list(problem.variables), "domain": problem.domain.spec(),
            "model": model.config() if hasattr(model, "config") else type(model).__name__,
            "options": _jsonable_options(opts), "resuming": resuming})

    if resuming:
        run.restore(load_checkpoint(opts["checkpoint"], fingerprint=fingerprint))
    if kan and not resuming:
        with torch.no_grad():
            # a multi-start winner, or a model a solve trained, already sits on the domain
            if not pre_time and not getattr(getattr(model, "inner", model), "_kanpinn_trained", False):
                model.set_input_range(problem.domain.lo, problem.domain.hi)
            if grids[0] is not None and grids[0] != model.layers[0].basis.grid:
                model.extend_grid(grids[0])
    if run.comm.world > 1:              # every rank starts from rank 0's model
        with torch.no_grad():
            for t in list(model.state_dict().values()) + list(run.params.values()):
                run.comm.broadcast_(t)

    start = time.perf_counter()
    stage_losses = []                   # the loss at each stage's end (restarts judge them)
    run.hooks.on_solve_start(run)
    try:
        while run.stage < len(grids) and not run.stop:
            if run.step_in_stage == 0:
                # checkpoint before preparing the stage: a resumed run repeats exactly the
                # same preparation (grid refits are not bit-idempotent)
                run.save()
                _prepare_stage(run, grids[run.stage])
            run.hooks.on_stage_start(run)
            run_stage(run)
            run.hooks.on_stage_end(run)
            if run.stop:
                break
            with torch.no_grad():
                stage_losses.append(run.comm.sum_float(run.loss.loss()[0]))
            run.stage += 1
            run.step_in_stage = 0
    finally:
        run.hooks.on_solve_end(run)
    if run.stop_reason and run.stage < len(grids):
        run.note(f"stopped in stage {run.stage + 1} of {len(grids)} at step {run.global_step}: {run.stop_reason}")
    run.save()
    getattr(model, "inner", model)._kanpinn_trained = True
    result = _result(run, choices, time.perf_counter() - start, Result)
    result.metrics["stage_losses"] = stage_losses
    if template is not None:
        result = _restart(problem, template, options, opts, result, pool)
    return result


def _restarts_apply(opts):
    """Restart rounds need a whole schedule to judge and time to repeat it: not with a
    time budget, a target or a checkpoint."""
    return bool(int(opts["restarts"]) and opts["grids"] and len(opts["grids"]) > 1 and not opts["max_time"]
                and opts["target"] is None and not opts["checkpoint"])


def _seed_fresh_model(model, seed):
    """A model built without a seed and never trained takes its initialisation from the
    solve's seed, so ``solve(seed=s)`` is repeatable; a model built with a seed, or one a
    solve already trained, keeps its weights (training continues from them)."""
    inner = getattr(model, "inner", model)          # wrappers (input embeddings) hold the KAN
    if getattr(inner, "init_seed", 0) is None and not getattr(inner, "_kanpinn_trained", False) \
            and hasattr(inner, "reset_parameters"):
        inner.reset_parameters(seed=int(seed or 0))
        inner.init_seed = int(seed or 0)


def _prepare_stage(run, grid):
    """Grid extension and update for the stage, and the first history row."""
    model = run.model
    t0 = time.perf_counter()
    if is_kan(model):
        x = run.colloc.all_interior()     # every rank's points: the grids stay identical
        if grid is not None and grid != model.layers[0].basis.grid:
            model.extend_grid(grid, x)
        if run.opts["grid_update"]:
            model.update_grid(x)
    run.opt_state = None
    run.train_time += time.perf_counter() - t0
    if run.global_step == 0:
        with torch.no_grad():
            total0, parts0 = run.loss.loss()
        run.log(run.comm.sum_float(total0), sum_parts(run.comm, {k: float(v) for k, v in parts0.items()}))


def _print_choices(choices):
    print(format_choices(choices))


def format_choices(choices) -> str:
    """What auto mode chose (the user did not set these), as lines of text."""
    lines = ["kanpinn auto mode:"]
    m = choices.get("model") or {}
    if m and not m.get("given"):
        lines.append(f"  model: {m.get('type')} {m.get('widths', '')} (k={m.get('k', '')})")
    for key, c in (choices.get("options") or {}).items():
        lines.append(f"  {key} = {c['value']!r}")
    for note in choices.get("notes") or ():
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _jsonable_options(opts):
    out = {}
    for k, v in opts.items():
        if k == "hooks":
            v = [type(h).__name__ for h in (v or ())]
        elif k == "optimizer":
            v = optimizer_name(v)
        out[k] = v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else str(v)
    return out


def _result(run, choices, wall, Result):
    model, problem = run.model, run.problem
    with torch.no_grad():
        final, parts = run.loss.loss()
    metrics = {"loss": run.comm.sum_float(final), "wall_time": run.train_time, "elapsed": wall,
               "n_parameters": int(sum(p.numel() for p in trainable(model))),
               "steps": run.global_step, "diverged": run.diverged}
    metrics.update(error_metrics(model, run.test_x, run.test_u))
    if run.params:
        metrics["parameters"] = {k: float(v.detach()) for k, v in run.params.items()}
    if run.notes:
        metrics["notes"] = list(run.notes)
    history = {k: np.asarray(v, dtype=np.float64) for k, v in run.history.items()}
    options = _jsonable_options(run.opts)
    options["auto"] = choices
    return Result(model, problem, history, metrics, options,
                  test_x=run.test_x.detach().cpu().numpy(),
                  test_u=None if run.test_u is None else run.test_u.detach().cpu().numpy(),
                  variables=tuple(problem.variables), domain_spec=problem.domain.spec())
