"""A guard on the loss at points no step trained on (for runs that resample their points).

With residual-based resampling the training loss is taken on new points every few
steps, so it cannot tell a step that fits the points while bending the function between
them. On forward Burgers (auto mode's fronts rule) such a step took rel. L2 from 4e-3 to
5.6 inside grid 20 at a training loss of 7e-4, and the run went on from there (final
249; docs/hard_problems.md, "Forward Burgers: fronts"). This hook evaluates the PDE loss
on a fixed set of fresh points every ``every`` steps, keeps the state with the lowest,
stops the run and restores that state when the loss there rises ``factor``-fold above
it, and restores it at the end when the last state is worse.
"""
from __future__ import annotations

from ..errors import KanpinnError
from .fresh import FreshLoss, restore, snapshot
from .hooks import Hook

__all__ = ["FreshPointGuard"]


class FreshPointGuard(Hook):
    """Hook: keep the state with the lowest loss on fresh points; undo a blow-up there.

    Args:
        every: steps between checks.
        factor: a loss on the fresh points this many times above the best one stops the
            run and restores the best state.
        n_points: fresh interior points (at least the run's ``n_interior``).
        per_stage: measure a blow-up against the lowest loss since the stage started
            rather than the lowest of the run (the best state is still the run's). A
            stage start (grid extension and update, knots moved) refits the layers,
            which may raise the loss on fresh points 10³-10⁴-fold before a single step
            (a travelling Burgers front at grid 20: 5.2e-5 -> 0.21); LM then trains it
            down, and the run-wide rule stopped the run 5 steps in.
    """

    def __init__(self, every=5, factor=100.0, n_points=2000, per_stage=False):
        if not isinstance(every, int) or every < 1:
            raise KanpinnError(f"FreshPointGuard: every must be a positive integer, got {every!r}")
        if not float(factor) > 1.0 or not int(n_points) >= 1:
            raise KanpinnError(f"FreshPointGuard: factor must be > 1 and n_points >= 1, got {factor!r}, {n_points!r}")
        self.every, self.factor, self.n_points = every, float(factor), int(n_points)
        self._loss = FreshLoss(2_000_029, self.n_points)
        self.best = None                # snapshot (loss on fresh points, state, model config)
        self.per_stage = bool(per_stage)
        self._stage_low = None          # the lowest loss on fresh points since the stage started

    def on_solve_start(self, run):
        # LM refuses single steps that blow the fresh-point loss up, so most blow-ups never
        # reach the check below (which then only catches a slow drift)
        run.holdout = lambda: self._loss(run)

    def on_stage_start(self, run):
        self._stage_low = None

    def _restore(self, run, why):
        restore(run, self.best)
        run.opt_state = None
        run.note(f"{why}: restored the state with the lowest loss on fresh points ({self.best[0]:.3g})")

    def after_step(self, run, info):
        if run.global_step % self.every:
            return
        val = self._loss(run)
        ref = self._stage_low if self.per_stage else (None if self.best is None else self.best[0])
        if val == val and (self._stage_low is None or val < self._stage_low):
            self._stage_low = val
        if self.best is None or val < self.best[0]:
            self.best = snapshot(run, val)
        elif ref is not None and not val <= self.factor * ref:          # NaN counts as a blow-up
            run.stop = True
            run.stop_reason = (f"the loss on fresh points rose to {val:.3g}, {self.factor:g}x above its best "
                               f"{ref:.3g}: the steps fitted the points, not the PDE")
            self._restore(run, run.stop_reason)

    def on_solve_end(self, run):
        if self.best is None:
            return
        val = self._loss(run)
        if not val <= self.best[0]:
            self._restore(run, f"the final state's loss on fresh points {val:.3g} is above the best")
