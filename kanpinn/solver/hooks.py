"""Hooks: what the training loop calls around its steps.

A hook is any object with some of these methods (the others are skipped):

- ``on_solve_start(run)``, ``on_solve_end(run)``
- ``on_stage_start(run)`` (after the stage's grid is prepared), ``on_stage_end(run)``
- ``before_step(run)``, ``after_step(run, info)`` (``info``: a ``StepInfo``)
- ``state_dict()`` / ``load_state_dict(d)``: JSON-like state a checkpoint must keep

``run`` (``kanpinn.solver.run.Run``) holds the model, problem, loss, collocation points,
options, step counters, history and ``stop``; a hook may set ``run.stop = True``.
Resampling, loss-weight adaptation, progress bars, checkpoints and stopping rules are
hooks like any a user writes (``kp.solve(..., hooks=[...])``).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import jet
from .loss import interior_jet_order

__all__ = ["Hook", "HookList", "Resample", "AdaptiveWeights", "Progress", "Checkpointing",
           "StopRules", "builtin_hooks"]

_EVENTS = ("on_solve_start", "on_stage_start", "before_step", "after_step", "on_stage_end", "on_solve_end")


class Hook:
    """Base class with every event a no-op; subclass and override what you need."""

    def on_solve_start(self, run):
        pass

    def on_stage_start(self, run):
        pass

    def before_step(self, run):
        pass

    def after_step(self, run, info):
        pass

    def on_stage_end(self, run):
        pass

    def on_solve_end(self, run):
        pass


class HookList:
    """Calls each event on every hook that has it, in order."""

    def __init__(self, hooks):
        self.hooks = list(hooks)

    def __getattr__(self, event):
        if event not in _EVENTS:
            raise AttributeError(event)

        def call(*args):
            for h in self.hooks:
                fn = getattr(h, event, None)
                if fn is not None:
                    fn(*args)
        return call

    def state_dict(self) -> dict:
        return {_key(i, h): h.state_dict() for i, h in enumerate(self.hooks) if hasattr(h, "state_dict")}

    def load_state_dict(self, states: dict):
        for i, h in enumerate(self.hooks):
            if hasattr(h, "load_state_dict") and _key(i, h) in (states or {}):
                h.load_state_dict(states[_key(i, h)])


def _key(i, hook):
    return f"{i}_{type(hook).__name__}"


class Resample(Hook):
    """Draw new interior points every ``every`` steps of a stage: uniformly, or by the
    residual-based adaptive distribution (RAD, Wu et al. 2023: p ∝ |r|^k / mean + c over
    a candidate pool four times the point count)."""

    def __init__(self, every=100, mode="uniform", k=1.0, c=1.0):
        self.every, self.mode, self.k, self.c = int(every), mode, float(k), float(c)

    @classmethod
    def from_option(cls, spec):
        if isinstance(spec, (int, np.integer)):
            spec = {"every": int(spec)}
        return cls(**dict(spec))

    def before_step(self, run):
        step = run.step_in_stage
        if step == 0 or step % self.every:
            return
        colloc = run.colloc
        rnd = colloc.round + 1
        if self.mode != "rad":
            colloc.sample(rnd)
            return
        cand = run.problem.domain.sample_interior(4 * colloc.n_interior, "uniform", seed=colloc._seed(10_000 + rnd))
        xc = torch.as_tensor(cand, dtype=run.dtype, device=run.device).requires_grad_(True)
        u = jet.evaluate(run.model, xc, interior_jet_order(run, xc))
        terms = run.problem.residual_terms(xc, u, run.params if run.problem.parameters else None)
        r = torch.cat([t.detach() for t in terms], 1).abs().sum(1).cpu().double().numpy() ** self.k
        prob = r / max(r.mean(), 1e-300) + self.c
        prob /= prob.sum()
        rng = np.random.default_rng(colloc._seed(20_000 + rnd))
        idx = rng.choice(len(cand), colloc.n_interior, replace=False, p=prob)
        colloc.sample(rnd, interior=cand[idx])


class AdaptiveWeights(Hook):
    """Learning-rate annealing of the condition weights (Wang, Teng & Perdikaris 2021)
    every ``every`` steps of a stage (``PINNLoss.adapt_weights``)."""

    def __init__(self, every=50, alpha=0.1):
        self.every, self.alpha = int(every), float(alpha)

    @classmethod
    def from_option(cls, spec):
        return cls() if spec is True else cls(**dict(spec))

    def before_step(self, run):
        if run.step_in_stage % self.every:
            return
        params = [p for p in run.model.parameters() if p.requires_grad]
        run.loss.adapt_weights(params, self.alpha)


class Progress(Hook):
    """A tqdm progress bar over all steps of the solve, with the loss and test error."""

    def __init__(self, total, desc):
        self.total, self.desc, self.bar = int(total), desc, None

    def on_solve_start(self, run):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=self.total, initial=min(run.global_step, self.total), desc=self.desc,
                        leave=False, dynamic_ncols=True)

    def after_step(self, run, info):
        row = run.last_row
        if row is not None and row.get("step") == run.global_step:
            post = {"loss": f"{info.loss:.3e}"}
            if "l2_relative" in row:
                post["L2"] = f"{row['l2_relative']:.2e}"
            self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def on_solve_end(self, run):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Checkpointing(Hook):
    """Write the run's checkpoint every ``every`` steps (and, through the loop, at each
    stage start and at the end). Under data parallel every rank takes part (the snapshot
    gathers every rank's points) and rank 0 writes."""

    def __init__(self, every):
        self.every = int(every)

    def after_step(self, run, info):
        if run.global_step % self.every == 0:
            run.save()


class StopRules(Hook):
    """Stop at ``max_time`` seconds of training or when the test error reaches
    ``target``."""

    def __init__(self, max_time=None, target=None):
        self.max_time = None if max_time is None else float(max_time)
        self.target = None if target is None else float(target)

    def after_step(self, run, info):
        if self.max_time is not None and run.train_time >= self.max_time:
            run.stop = True
            run.stop_reason = f"max_time {self.max_time:g} s reached"
        row = run.last_row
        if (self.target is not None and row is not None and row.get("step") == run.global_step
                and row.get("l2_relative", math.inf) <= self.target):
            run.stop = True
            run.stop_reason = f"target rel. L2 {self.target:g} reached"


def builtin_hooks(opts, total_steps, desc, user_hooks=(), main=True):
    """The hooks that the solve options ask for, with the user's, in the order they run:
    point and weight updates first, then the user's hooks (which see the new points),
    then progress, checkpoints and stopping rules (which see everything the step did)."""
    hooks = []
    if opts["resample"]:
        hooks.append(Resample.from_option(opts["resample"]))
    if opts["adaptive_weights"]:
        hooks.append(AdaptiveWeights.from_option(opts["adaptive_weights"]))
    hooks.extend(user_hooks)
    if opts["progress"] and main:       # data parallel: rank 0 shows progress
        hooks.append(Progress(total_steps, desc))
    if opts["checkpoint"]:
        hooks.append(Checkpointing(opts["checkpoint_every"]))
    hooks.append(StopRules(opts["max_time"], opts["target"]))
    return hooks
