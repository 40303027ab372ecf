"""``kp.solve``: train a KAN (or MLP) on a PDE problem, stage by stage.

For each grid size in ``grids`` the solver updates the grids from the collocation points,
optimises for ``steps`` steps, then refines to the next size (``extend_grid``: the coarse
spline nests in the fine one, so nothing learned is lost). The optimiser state is reset
at each stage: the parameter shapes change with the grid, and curvature information
(L-BFGS pairs, LM damping) gathered on the coarse space does not describe the fine one.
LM's damping is carried over, as a scale only.
"""
from __future__ import annotations

import math
import os
import time
import warnings

import numpy as np
import torch

from .. import jet
from ..errors import KanpinnError
from .checkpoint import load_checkpoint, save_checkpoint
from .jacobian import NotPointwise
from .lm import LevenbergMarquardt
from .loss import Collocation, PINNLoss

__all__ = ["solve", "DEFAULTS", "SolverWarning"]


class SolverWarning(UserWarning):
    """Something the user should know about a run (fallbacks, divergence)."""


DEFAULTS = dict(
    grids=None, steps=100, optimizer="auto", lr=None, adam_steps=None,
    n_interior=2000, n_boundary=400, sampler="sobol", resample=None,
    device="auto", dtype="float64", seed=0, checkpoint=None, checkpoint_every=50,
    progress=True, weights=None, grid_update=True, log_every=None,
    test_points=None, max_time=None, target=None, lbfgs_history=50,
    starts=1, start_steps=20, adaptive_weights=False,
)
OPTIMIZERS = ("auto", "lm", "lbfgs", "adam", "adam+lbfgs")


def _resolve(options):
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise KanpinnError(f"unknown solve option(s) {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
    opts = dict(DEFAULTS)
    opts.update(options)
    if opts["optimizer"] not in OPTIMIZERS:
        raise KanpinnError(f"unknown optimizer {opts['optimizer']!r}; choose one of {OPTIMIZERS}")
    if opts["dtype"] not in ("float32", "float64", torch.float32, torch.float64):
        raise KanpinnError(f"dtype must be 'float32' or 'float64', got {opts['dtype']!r}")
    if not isinstance(opts["steps"], (int, np.integer)) or opts["steps"] < 0:
        raise KanpinnError(f"steps must be a non-negative integer, got {opts['steps']!r}")
    return opts


def _device(name):
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KanpinnError("device='cuda' was asked for but CUDA is not available; use device='auto' or 'cpu'")
    return dev


def _test_set(problem, n_per_dim, dtype, device):
    d = problem.domain.dim
    n = n_per_dim or max(11, int(round(12000 ** (1.0 / d))))
    if d == 2 and not n_per_dim:
        n = 101                                         # the reference 101x101 grid
    x = torch.as_tensor(problem.domain.test_points(n), dtype=dtype, device=device)
    with torch.no_grad():
        u = problem.exact_values(x)
    return x, u


def _predict(model, x, chunk=65536):
    with torch.no_grad():
        return torch.cat([model(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)], 0)


def _errors(model, test_x, test_u):
    if test_u is None:
        return {}
    pred = _predict(model, test_x)
    diff = pred - test_u
    return {"l2_relative": float(diff.norm() / test_u.norm().clamp_min(1e-300)),
            "max_abs": float(diff.abs().max())}


def _is_kan(model):
    return hasattr(model, "extend_grid") and hasattr(model, "update_grid")


def _resize_like(model, cfg):
    """Give a KAN the per-layer grid sizes of ``cfg`` (values follow from load_state_dict)."""
    if not _is_kan(model):
        return
    for layer, g in zip(model.layers, cfg["grid"]):
        if layer.basis.grid != g:
            layer.refit(layer.basis.refined(int(g)))


class _Run:
    """The mutable state of one solve: everything a checkpoint must hold."""

    def __init__(self, problem, model, opts):
        self.problem, self.model, self.opts = problem, model, opts
        self.dtype = torch.float64 if opts["dtype"] in ("float64", torch.float64) else torch.float32
        self.device = _device(opts["device"])
        model.to(device=self.device, dtype=self.dtype)
        self.params = {k: torch.tensor(float(v), dtype=self.dtype, device=self.device, requires_grad=True)
                       for k, v in (problem.parameters or {}).items()}
        self.colloc = Collocation(problem, opts["n_interior"], opts["n_boundary"], opts["sampler"],
                                  opts["seed"], self.dtype, self.device)
        self.loss = PINNLoss(problem, model, self.colloc, self.params, opts["weights"])
        self.test_x, self.test_u = _test_set(problem, opts["test_points"], self.dtype, self.device)
        self.history = {}
        self.stage, self.step_in_stage, self.global_step = 0, 0, 0
        self.train_time = 0.0
        self.opt_state = None
        self.lm_lam = 1e-3
        self.diverged = False
        self.stop = False
        self.kind = None                 # the optimiser running now
        self.notes = []

    # ------------------------------------------------------------------ history
    def log(self, loss, parts):
        row = {"step": self.global_step, "loss": loss, "time": self.train_time}
        row.update({f"loss_{k}": v for k, v in parts.items()})
        row.update(_errors(self.model, self.test_x, self.test_u))
        for k, v in self.params.items():
            row[f"param_{k}"] = float(v.detach())
        if self.opts["adaptive_weights"]:
            for k, v in self.loss.weights.items():
                row[f"weight_{k}"] = float(v)
        for k, v in row.items():
            self.history.setdefault(k, []).append(float(v))
        return row

    # ------------------------------------------------------------------ checkpoint
    def snapshot(self):
        return {
            "model_config": self.model.config() if hasattr(self.model, "config") else {},
            "model_state": {k: v for k, v in self.model.state_dict().items()},
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "stage": self.stage, "step_in_stage": self.step_in_stage, "global_step": self.global_step,
            "train_time": self.train_time, "history": {k: list(v) for k, v in self.history.items()},
            "opt_state": self.opt_state, "lm_lam": self.lm_lam,
            "colloc_round": self.colloc.round, "interior": self.colloc.interior.detach().clone(),
            "weights": dict(self.loss.weights),
        }

    def restore(self, s):
        if s.get("model_config"):
            _resize_like(self.model, s["model_config"])
        state = {k: (v if isinstance(v, torch.Tensor) else torch.as_tensor(v)) for k, v in s["model_state"].items()}
        self.model.load_state_dict(state)
        self.model.to(device=self.device, dtype=self.dtype)
        with torch.no_grad():
            for k, v in s["params"].items():
                self.params[k].copy_(torch.as_tensor(v))
        self.stage, self.step_in_stage = int(s["stage"]), int(s["step_in_stage"])
        self.global_step, self.train_time = int(s["global_step"]), float(s["train_time"])
        self.history = {k: list(v) for k, v in s["history"].items()}
        self.opt_state, self.lm_lam = s["opt_state"], float(s["lm_lam"])
        self.colloc.sample(int(s["colloc_round"]), interior=torch.as_tensor(s["interior"]).cpu().numpy())
        self.loss.weights = {k: float(v) for k, v in (s.get("weights") or {}).items()}

    def save(self):
        if self.opts["checkpoint"]:
            save_checkpoint(self.opts["checkpoint"], self.snapshot())


def _trainable(run):
    return [p for p in run.model.parameters() if p.requires_grad]


def _pick_optimizer(run):
    name = run.opts["optimizer"]
    if name != "auto":
        return name
    n = sum(p.numel() for p in _trainable(run)) + len(run.params)
    return "lm" if n <= 5000 else "adam+lbfgs"


def _resample(run, step):
    """Draw new collocation points on the ``resample`` schedule (uniform or RAD)."""
    spec = run.opts["resample"]
    if not spec:
        return
    if isinstance(spec, (int, np.integer)):
        spec = {"every": int(spec)}
    every = int(spec.get("every", 100))
    if step == 0 or step % every:
        return
    rnd = run.colloc.round + 1
    if spec.get("mode", "uniform") == "rad":
        # residual-based adaptive distribution (Wu et al. 2023): p ∝ |r|^k / mean + c
        k, c = float(spec.get("k", 1.0)), float(spec.get("c", 1.0))
        cand = run.problem.domain.sample_interior(4 * run.colloc.n_interior, "uniform", seed=run.colloc._seed(10_000 + rnd))
        xc = torch.as_tensor(cand, dtype=run.dtype, device=run.device).requires_grad_(True)
        u = jet.evaluate(run.model, xc, 2)
        terms = run.problem.residual_terms(xc, u, run.params if run.problem.parameters else None)
        r = torch.cat([t.detach() for t in terms], 1).abs().sum(1).cpu().double().numpy() ** k
        prob = r / max(r.mean(), 1e-300) + c
        prob /= prob.sum()
        rng = np.random.default_rng(run.colloc._seed(20_000 + rnd))
        idx = rng.choice(len(cand), run.colloc.n_interior, replace=False, p=prob)
        run.colloc.sample(rnd, interior=cand[idx])
    else:
        run.colloc.sample(rnd)


def _adapt(run, step):
    """Update the loss weights on the ``adaptive_weights`` schedule (every k steps)."""
    spec = run.opts["adaptive_weights"]
    if not spec:
        return
    spec = {"every": 50, "alpha": 0.1} if spec is True else dict(spec)
    if step % int(spec.get("every", 50)):
        return
    run.loss.adapt_weights(_trainable(run), float(spec.get("alpha", 0.1)))


def _first_order_optimizer(run, kind, lr):
    params = _trainable(run) + list(run.params.values())
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr or 1e-3)
    return torch.optim.LBFGS(params, lr=lr or 1.0, max_iter=1, history_size=run.opts["lbfgs_history"],
                             line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)


def _stage_plan(run, stage_steps):
    """[(optimizer kind, steps)] for one stage."""
    kind = _pick_optimizer(run)
    if kind == "adam+lbfgs":
        adam = run.opts["adam_steps"] if run.opts["adam_steps"] is not None else stage_steps
        return [("adam", int(adam)), ("lbfgs", stage_steps)]
    return [(kind, stage_steps)]


def _run_stage(run, bar):
    plan = _stage_plan(run, run.opts["steps"])
    offset = 0
    for kind, n in plan:
        if run.step_in_stage >= offset + n:
            offset += n
            continue
        if kind == "lm":
            try:
                _run_lm(run, offset, n, bar)
            except NotPointwise as e:
                warnings.warn(f"Levenberg-Marquardt is not applicable ({e}); continuing with L-BFGS", SolverWarning)
                run.notes.append(f"lm fallback: {e}")
                run.opts["optimizer"] = "lbfgs"
                _run_first_order(run, "lbfgs", offset, n, bar)
        else:
            _run_first_order(run, kind, offset, n, bar)
        offset += n
        if run.stop:
            return


def _tick(run, bar, loss, parts, t0):
    run.train_time += time.perf_counter() - t0
    run.global_step += 1
    run.step_in_stage += 1
    # cheap Adam steps log every 10th (the test-error evaluation would cost as much as
    # the step); LM and L-BFGS steps log every step
    every = run.opts["log_every"] or (10 if run.kind == "adam" else 1)
    row = None
    if run.global_step % every == 0 or run.global_step == 1:
        row = run.log(loss, parts)
        if bar is not None:
            post = {"loss": f"{loss:.3e}"}
            if "l2_relative" in row:
                post["L2"] = f"{row['l2_relative']:.2e}"
            bar.set_postfix(post, refresh=False)
    if bar is not None:
        bar.update(1)
    if run.opts["checkpoint"] and run.global_step % int(run.opts["checkpoint_every"]) == 0:
        run.save()
    if run.opts["max_time"] is not None and run.train_time >= float(run.opts["max_time"]):
        run.stop = True
    target = run.opts["target"]
    if target is not None and row is not None and row.get("l2_relative", math.inf) <= float(target):
        run.stop = True


def _run_lm(run, offset, n, bar):
    run.kind = "lm"
    lm = LevenbergMarquardt(run.loss, _trainable(run), list(run.params.values()), lam=run.lm_lam)
    if run.opt_state and "lm" in run.opt_state:
        lm.load_state(run.opt_state["lm"])
    stalls = 0
    while run.step_in_stage < offset + n and not run.stop:
        _resample(run, run.step_in_stage)
        _adapt(run, run.step_in_stage)
        t0 = time.perf_counter()
        loss, parts, accepted = lm.step()
        run.lm_lam = lm.lam
        run.opt_state = {"lm": lm.state()}
        _tick(run, bar, loss, parts, t0)
        stalls = 0 if accepted else stalls + 1
        if stalls >= 3:
            run.notes.append(f"LM stalled at step {run.global_step} (loss {loss:.3e})")
            run.step_in_stage = offset + n
            break


def _state_copy(run):
    return ({k: v.detach().clone() for k, v in run.model.state_dict().items()},
            {k: v.detach().clone() for k, v in run.params.items()})


def _run_first_order(run, kind, offset, n, bar):
    run.kind = kind
    lr = run.opts["lr"]
    opt = _first_order_optimizer(run, kind, lr)
    if run.opt_state and kind in run.opt_state:
        opt.load_state_dict(run.opt_state[kind])
    good, best = _state_copy(run), math.inf
    failures = 0

    def closure():
        opt.zero_grad(set_to_none=True)
        total, parts = run.loss.loss()
        total.backward()
        closure.parts = parts
        return total

    while run.step_in_stage < offset + n and not run.stop:
        _resample(run, run.step_in_stage)
        _adapt(run, run.step_in_stage)
        t0 = time.perf_counter()
        loss = float(opt.step(closure).detach())
        parts = {k: float(v.detach()) for k, v in closure.parts.items()}
        if not math.isfinite(loss) or loss > 1e6 * max(best, 1e-12) or any(
                not bool(torch.isfinite(p).all()) for p in _trainable(run)):
            failures += 1
            run.model.load_state_dict(good[0])
            with torch.no_grad():
                for k, v in good[1].items():
                    run.params[k].copy_(v)
            lr = (lr or (1e-3 if kind == "adam" else 1.0)) * 0.5
            msg = f"{kind} diverged at step {run.global_step} (loss {loss:.3e}); rolled back, lr -> {lr:.2e}"
            run.notes.append(msg)
            warnings.warn(msg, SolverWarning)
            if failures >= 3:
                run.diverged = True
                run.stop = True
                warnings.warn("training stopped after repeated divergence; the last good state is kept", SolverWarning)
                break
            opt = _first_order_optimizer(run, kind, lr)
            run.train_time += time.perf_counter() - t0
            continue
        if loss <= best:
            best = loss
            if run.step_in_stage % 10 == 0:
                good = _state_copy(run)
        run.opt_state = {kind: opt.state_dict()}
        _tick(run, bar, loss, parts, t0)


def _multi_start(problem, model, options, opts):
    """Train ``starts`` random initialisations briefly on the first grid and keep the best
    one in ``model``: products of sub-nodes (multiplication nodes) and deep KANs have poor
    local minima that a different draw avoids. Returns the training seconds spent."""
    import copy
    if not hasattr(model, "reset_parameters"):
        raise KanpinnError("starts > 1 needs a model with reset_parameters()")
    sub_opts = dict(options, starts=1, steps=int(opts["start_steps"]), checkpoint=None, progress=False,
                    target=None, max_time=None)
    if opts["grids"]:
        sub_opts["grids"] = [list(opts["grids"])[0]]
    best, spent = None, 0.0
    for s in range(int(opts["starts"])):
        cand = copy.deepcopy(model)
        if s:
            cand.reset_parameters(seed=1000 * int(opts["seed"] or 0) + s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SolverWarning)
            res = solve(problem, cand, **sub_opts)
        spent += res.metrics["wall_time"]
        loss = res.metrics["loss"]
        if math.isfinite(loss) and (best is None or loss < best[0]):
            best = (loss, cand)
    if best is not None:
        _resize_like(model, best[1].config())
        model.load_state_dict(best[1].state_dict())
    return spent


def solve(problem, model, **options):
    """Train ``model`` on ``problem``; returns a :class:`kanpinn.Result`.

    Options (defaults in ``DEFAULTS``): ``grids`` (KAN grid sizes, one stage each),
    ``steps`` (optimiser steps per stage), ``optimizer`` ("auto" = "lm" for models up to
    5000 parameters, else "adam+lbfgs"; also "lbfgs", "adam"), ``lr``, ``adam_steps``,
    ``n_interior``, ``n_boundary``, ``sampler`` ("sobol", "uniform", "lhs", "grid"),
    ``resample`` (every k steps, or {"every": k, "mode": "rad", "k": 1, "c": 1}),
    ``device`` ("auto" = CUDA when present), ``dtype`` ("float64" default), ``seed``,
    ``checkpoint`` (path; resumes when it exists), ``progress``, ``weights`` (term ->
    weight), ``max_time`` (s), ``target`` (stop at this L2 error), ``starts`` (random
    initialisations tried for ``start_steps`` steps on the first grid; the best is kept),
    ``adaptive_weights`` (True or {"every": k, "alpha": a}: learning-rate annealing of the
    condition weights, Wang et al. 2021).

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
    if not isinstance(model, torch.nn.Module):
        raise KanpinnError(f"solve() takes a model (kp.KAN or kp.MLP), got {type(model).__name__}")
    opts = _resolve(options)
    d = problem.domain.dim
    width_in = getattr(model, "width_in", d)
    if width_in != d:
        raise KanpinnError(f"the model takes {width_in} inputs but the domain has {d} variables {problem.variables}")
    torch.manual_seed(int(opts["seed"] or 0))
    pre_time = 0.0
    resuming = bool(opts["checkpoint"]) and os.path.exists(opts["checkpoint"])
    if int(opts["starts"]) > 1 and not resuming:
        pre_time = _multi_start(problem, model, options, opts)
    run = _Run(problem, model, opts)
    run.train_time = pre_time
    is_kan = _is_kan(model)
    grids = list(opts["grids"]) if (is_kan and opts["grids"]) else [None]
    if not is_kan and opts["grids"] and len(opts["grids"]) > 1:
        warnings.warn("grids only apply to KANs; the MLP trains in one stage", SolverWarning)

    if resuming:
        run.restore(load_checkpoint(opts["checkpoint"]))
    if is_kan and not resuming:
        with torch.no_grad():
            if not pre_time:            # a multi-start winner already sits on the domain
                model.set_input_range(problem.domain.lo, problem.domain.hi)
            if grids[0] is not None and grids[0] != model.layers[0].basis.grid:
                model.extend_grid(grids[0])

    total = len(grids) * sum(n for _, n in _stage_plan(run, opts["steps"]))
    bar = None
    if opts["progress"]:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=min(run.global_step, total), desc=problem.name or "solve",
                   leave=False, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        while run.stage < len(grids) and not run.stop:
            if run.step_in_stage == 0:
                # checkpoint before preparing the stage: a resumed run repeats exactly the
                # same preparation (grid refits are not bit-idempotent)
                run.save()
                t0 = time.perf_counter()
                if is_kan and grids[run.stage] is not None and grids[run.stage] != model.layers[0].basis.grid:
                    model.extend_grid(grids[run.stage], run.colloc.interior.detach())
                if is_kan and opts["grid_update"]:
                    model.update_grid(run.colloc.interior.detach())
                run.opt_state = None
                run.train_time += time.perf_counter() - t0
                if run.global_step == 0:
                    with torch.no_grad():
                        total0, parts0 = run.loss.loss()
                    run.log(float(total0), {k: float(v) for k, v in parts0.items()})
            _run_stage(run, bar)
            if run.stop:
                break
            run.stage += 1
            run.step_in_stage = 0
    finally:
        if bar is not None:
            bar.close()
    run.save()
    wall = time.perf_counter() - start
    with torch.no_grad():
        final, parts = run.loss.loss()
    metrics = {"loss": float(final), "wall_time": run.train_time, "elapsed": wall,
               "n_parameters": int(sum(p.numel() for p in _trainable(run))),
               "steps": run.global_step, "diverged": run.diverged}
    metrics.update(_errors(model, run.test_x, run.test_u))
    if run.params:
        metrics["parameters"] = {k: float(v.detach()) for k, v in run.params.items()}
    if run.notes:
        metrics["notes"] = list(run.notes)
    history = {k: np.asarray(v, dtype=np.float64) for k, v in run.history.items()}
    clean_opts = {k: (v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else str(v))
                  for k, v in opts.items()}
    return Result(model, problem, history, metrics, clean_opts,
                  test_x=run.test_x.detach().cpu().numpy(),
                  test_u=None if run.test_u is None else run.test_u.detach().cpu().numpy(),
                  variables=tuple(problem.variables), domain_spec=problem.domain.spec())
