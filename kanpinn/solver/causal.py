"""Causal weighting for evolution equations (Wang, Sankaran & Perdikaris 2022).

A PINN trained on the whole space-time box at once can fit late times before early
ones, and then converges to a solution of the PDE that ignores the initial condition
(the usual failure on Allen-Cahn and long horizons). Causal weighting splits [t0, t1]
into M chunks and weighs chunk i's residuals by

    w_i = exp(-ε · Σ_{k<i} L_k),        L_k = mean squared residual in chunk k,

so a chunk counts only once every earlier one is fitted. ε rises through ``levels``
whenever min_i w_i > ``tol`` (all chunks fitted at this strictness), and the final
metrics are taken with the weights off.

The weights reach the loss as ``PINNLoss.interior_weights`` (each point's squared
residual times its chunk's weight; LM's residual rows times the square root), set
before every step from the current residuals.
"""
from __future__ import annotations

import torch

from .. import jet
from ..errors import KanpinnError
from .hooks import Hook
from .loss import interior_jet_order

__all__ = ["CausalWeights"]


class CausalWeights(Hook):
    """Hook: per-point causal weights on the interior residuals of a SpaceTime problem.

    Args:
        chunks: number M of time chunks.
        levels: the ε schedule (increasing).
        tol: move to the next ε when every chunk's weight exceeds this.
    """

    def __init__(self, chunks=32, levels=(1e-2, 1e-1, 1.0, 10.0, 100.0), tol=0.99):
        if not isinstance(chunks, int) or chunks < 2:
            raise KanpinnError(f"CausalWeights: chunks must be an integer >= 2, got {chunks!r}")
        levels = tuple(float(v) for v in levels)
        if not levels or any(v <= 0 for v in levels) or list(levels) != sorted(levels):
            raise KanpinnError(f"CausalWeights: levels must be positive and increasing, got {levels!r}")
        if not 0 < float(tol) < 1:
            raise KanpinnError(f"CausalWeights: tol must lie in (0, 1), got {tol!r}")
        self.chunks, self.levels, self.tol = int(chunks), levels, float(tol)
        self.level = 0
        self.last_min = None

    @property
    def eps(self):
        return self.levels[self.level]

    def state_dict(self):
        return {"level": self.level}

    def load_state_dict(self, d):
        self.level = min(int(d.get("level", 0)), len(self.levels) - 1)

    def on_solve_start(self, run):
        from ..domains import SpaceTime
        if not isinstance(run.problem.domain, SpaceTime):
            raise KanpinnError("CausalWeights needs a time-dependent problem (a kp.SpaceTime domain), "
                               f"got {type(run.problem.domain).__name__}")

    def chunk_losses(self, run):
        """(chunk index of each interior point (N,), mean squared residual per chunk (M,))."""
        dom = run.problem.domain
        x = run.colloc.interior
        with torch.enable_grad():
            u = jet.evaluate(run.model, x, interior_jet_order(run, x))
            terms = run.problem.residual_terms(x, u, run.params if run.problem.parameters else None)
        r2 = sum((t.detach() ** 2).sum(1) for t in terms)
        tau = (x.detach()[:, -1] - dom.t0) / (dom.t1 - dom.t0)
        idx = (tau * self.chunks).floor().clamp(0, self.chunks - 1).long()
        sums = r2.new_zeros(self.chunks).index_add_(0, idx, r2)
        counts = r2.new_zeros(self.chunks).index_add_(0, idx, torch.ones_like(r2))
        return idx, sums / counts.clamp_min(1)

    def weights(self, losses):
        """w_i = exp(-ε Σ_{k<i} L_k) (M,)."""
        before = torch.cumsum(losses, 0) - losses
        return torch.exp(-self.eps * before)

    def before_step(self, run):
        idx, losses = self.chunk_losses(run)
        w = self.weights(losses)
        while float(w.min()) > self.tol and self.level < len(self.levels) - 1:
            self.level += 1
            w = self.weights(losses)
        self.last_min = float(w.min())
        run.loss.interior_weights = w[idx].detach()

    def on_solve_end(self, run):
        run.loss.interior_weights = None
