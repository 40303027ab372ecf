"""The training loop: stages of optimiser phases, each a run of ``step() -> info``.

A solve is a list of stages (one per KAN grid size); a stage is a plan of phases
(``[("adam", 500), ("lbfgs", 100)]``); a phase builds its optimiser from the registry
(``kanpinn.solver.optimizers``) and steps it, calling the hooks around each step
(``kanpinn.solver.hooks``). The loop itself only counts, logs and guards:

- Loss optimisers (Adam, L-BFGS, any ``torch.optim``) can overshoot. Each step reports
  the loss of the state it started from, so the guard copies that state *before* the
  step and keeps the best (loss, state) pair of the phase. A non-finite loss, non-finite
  parameters, an exception raised while the parameters are non-finite (a NaN reaching a
  grid lookup), or a loss far above the best one is a divergence: the best state is
  restored and the learning rate halved; after three the run stops. At the end of a phase
  the best state is restored if the last one is worse, so neither an overshoot nor a
  ``max_time`` cut returns a half-updated model.
- Residual optimisers (LM) accept only steps that lower the loss. One bad trial (a NaN)
  must not leave the damping at 1e16 for the rest of the run: a rejected step raises it
  at most tenfold. Three rejections in a row end the phase.
"""
from __future__ import annotations

import math
import time
import warnings

import torch

from .jacobian import NotPointwise
from .optimizers import make_stepper, optimizer_name

__all__ = ["SolverWarning", "stage_plan", "run_stage", "tick", "DIVERGENCE_FACTOR"]

# a loss this many times above the phase's best is a divergence, not noise
DIVERGENCE_FACTOR = 1e3


class SolverWarning(UserWarning):
    """Something the user should know about a run (fallbacks, divergence, time limits)."""


def _warn(run, msg):
    run.note(msg)
    if run.comm.is_main:            # data parallel: one process speaks for all
        warnings.warn(msg, SolverWarning, stacklevel=3)


def pick_optimizer(run):
    """The optimiser name for ``optimizer="auto"``: LM while the structured Jacobian is
    small enough, Adam then L-BFGS above."""
    name = run.opts["optimizer"]
    if not (isinstance(name, str) and name == "auto"):
        return name
    n = sum(p.numel() for p in run.model.parameters() if p.requires_grad) + len(run.params)
    return "lm" if n <= 5000 else "adam+lbfgs"


def stage_plan(run, stage_steps=None):
    """[(optimiser, steps)] for one stage."""
    stage_steps = run.opts["steps"] if stage_steps is None else stage_steps
    kind = pick_optimizer(run)
    if isinstance(kind, str) and "+" in kind:
        first, second = kind.split("+", 1)
        n_first = run.opts["adam_steps"] if run.opts["adam_steps"] is not None else stage_steps
        return [(first, int(n_first)), (second, int(stage_steps))]
    return [(kind, int(stage_steps))]


def tick(run, info, t0):
    """Count one step: training time, counters, the history row when due, then the
    hooks' ``after_step``."""
    run.train_time += time.perf_counter() - t0
    run.global_step += 1
    run.step_in_stage += 1
    # cheap Adam steps log every 10th (the test-error evaluation would cost as much as
    # the step); LM and L-BFGS steps log every step
    every = run.opts["log_every"] or (10 if run.kind == "adam" else 1)
    if run.global_step % every == 0 or run.global_step == 1:
        run.log(info.loss, info.parts)
    run.hooks.after_step(run, info)
    if run.comm.world > 1:
        # a stop rule read on one rank (its clock) must stop them all at the same step
        run.stop = run.comm.any(run.stop)


def run_stage(run):
    """Run the stage's phases from where the run stands (a resumed run may start inside
    one)."""
    offset = 0
    for kind, n in stage_plan(run):
        if run.step_in_stage >= offset + n:
            offset += n
            continue
        _run_phase(run, kind, offset, n)
        offset += n
        if run.stop:
            return


def _build(run, kind, lr):
    """(spec, stepper) for ``kind``, following an earlier fallback (LM refused)."""
    kind = run.fallbacks.get(optimizer_name(kind), kind)
    try:
        return kind, make_stepper(kind, run, lr)
    except NotPointwise as e:
        return _fallback(run, kind, e, lr)


def _fallback(run, kind, err, lr):
    name = optimizer_name(kind)
    _warn(run, f"{name} is not applicable ({err}); continuing with L-BFGS")
    run.fallbacks[name] = "lbfgs"
    return "lbfgs", make_stepper("lbfgs", run, lr)


def _run_phase(run, kind, offset, n):
    lr = run.opts["lr"]
    spec, stepper = _build(run, kind, lr)
    run.kind = stepper.kind
    if run.opt_state and run.kind in run.opt_state:
        stepper.load_state_dict(run.opt_state[run.kind])
    if run.step_in_stage == offset:
        run.best = None                 # a fresh phase (a resumed one keeps its best)
    if stepper.monotone:
        _monotone_phase(run, stepper, offset, n)
    else:
        _guarded_phase(run, spec, stepper, offset, n, lr)


def _monotone_phase(run, stepper, offset, n):
    stalls = 0
    while run.step_in_stage < offset + n and not run.stop:
        run.hooks.before_step(run)
        t0 = time.perf_counter()
        lam0 = getattr(stepper, "lam", None)
        try:
            info = stepper.step()
        except NotPointwise as e:       # found on the first step (finite-difference check)
            spec, stepper = _fallback(run, stepper.kind, e, run.opts["lr"])
            run.kind = stepper.kind
            return _guarded_phase(run, spec, stepper, offset, n, run.opts["lr"])
        if lam0 is not None:
            if not info.accepted:
                stepper.lam = min(stepper.lam, 10.0 * lam0)
            run.lm_lam = stepper.lam
        run.opt_state = {run.kind: stepper.state_dict()}
        tick(run, info, t0)
        stalls = 0 if info.accepted else stalls + 1
        if stalls >= 3:
            run.note(f"{run.kind} stalled at step {run.global_step} (loss {info.loss:.3e})")
            run.step_in_stage = offset + n
            break


def _finite_params(run):
    return all(bool(torch.isfinite(p).all()) for p in list(run.model.parameters()) + list(run.params.values()))


def _current_loss(run):
    with torch.no_grad():
        total, _ = run.loss.loss()
    return run.comm.sum_float(total)


def _guarded_phase(run, spec, stepper, offset, n, lr):
    failures = 0
    while run.step_in_stage < offset + n and not run.stop:
        run.hooks.before_step(run)
        t0 = time.perf_counter()
        before = run.state_copy()
        try:
            info = stepper.step()
            bad = (not math.isfinite(info.loss) or not _finite_params(run)
                   or (run.best is not None and info.loss > DIVERGENCE_FACTOR * max(run.best[0], 1e-300)))
            why = f"loss {info.loss:.3e}"
        except (RuntimeError, IndexError, ValueError) as e:
            if _finite_params(run):
                raise
            bad, info, why = True, None, f"non-finite parameters ({type(e).__name__})"
        if bad:
            failures += 1
            run.load_state(run.best[1] if run.best is not None else before)
            lr = (lr or (1e-3 if run.kind == "adam" else 1.0)) * 0.5
            _warn(run, f"{run.kind} diverged at step {run.global_step} ({why}); rolled back to the best "
                       f"state, lr -> {lr:.2e}")
            run.train_time += time.perf_counter() - t0
            if failures >= 3:
                run.diverged = True
                run.stop = True
                run.stop_reason = "repeated divergence"
                _warn(run, "training stopped after repeated divergence; the best state reached is kept")
                break
            stepper = make_stepper(spec, run, lr)
            continue
        if run.best is None or info.loss < run.best[0]:
            run.best = (info.loss, before)
        run.opt_state = {run.kind: stepper.state_dict()}
        tick(run, info, t0)
    _keep_best(run)


def _keep_best(run):
    """End of a guarded phase: the state the model is left in is the best one seen."""
    if run.best is None:
        return
    best_loss, best_state = run.best
    now = _current_loss(run)
    if not math.isfinite(now) or now > best_loss:
        run.load_state(best_state)
        if not math.isfinite(now) or now > 10.0 * best_loss:
            _warn(run, f"{run.kind} ended at loss {now:.3e}, {now / best_loss if math.isfinite(now) else math.inf:.3g}x "
                       f"its best {best_loss:.3e}; the best state is restored")
    run.best = None
