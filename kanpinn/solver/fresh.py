"""The PDE loss on points no step trains on, and the state snapshots kept against it.

Shared by the checks that judge a run by fresh points rather than by its own collocation
points (``continuation``: does an appended grid generalise; ``guard``: did a step bend the
function between the points). Each check draws its own points (its own seed), once.
"""
from __future__ import annotations

from ..transforms.wrapper import innermost
from .run import resize_like

__all__ = ["FreshLoss", "snapshot", "restore"]


class FreshLoss:
    """() -> the run's loss (its current term weights) on ``n_points`` interior points
    (at least the run's ``n_interior``) drawn once from ``seed`` + the run's seed."""

    def __init__(self, seed, n_points=2000):
        self.seed, self.n_points = int(seed), int(n_points)
        self._loss = None

    def __call__(self, run):
        if self._loss is None:
            from .loss import Collocation, PINNLoss
            colloc = Collocation(run.problem, max(int(run.opts["n_interior"]), self.n_points),
                                 int(run.opts["n_boundary"]), run.opts["sampler"],
                                 self.seed + int(run.opts.get("seed") or 0), run.dtype, run.device, run.comm)
            self._loss = PINNLoss(run.problem, run.model, colloc, run.params, run.opts["weights"])
        self._loss.weights = dict(run.loss.weights)
        total, _ = self._loss.loss()
        return run.comm.sum_float(total.detach())


def snapshot(run, value):
    """(value, state copy, the KAN's config): what ``restore`` needs, grid sizes included."""
    kan = innermost(run.model)[0]
    return value, run.state_copy(), kan.config() if hasattr(kan, "config") else {}


def restore(run, snap):
    """Put the run back to ``snap`` (its KAN resized to the snapshot's grids first)."""
    _, state, cfg = snap
    resize_like(innermost(run.model)[0], cfg)
    run.load_state(state)
