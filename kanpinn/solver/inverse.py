"""Inverse problems: fit the observations first, then the unknown coefficients, then both.

Trained jointly from the start, an unknown coefficient (a viscosity started at 16x its
value) pulls the network towards the solution of the wrong PDE while the network is
still far from the data, and the pair settles in a compromise (inverse Burgers: ν off
by 73 %). The remedy (Raissi et al. 2019 train jointly, but for 50k L-BFGS steps):

1. data first: the first ``stages`` grid stages train the network on the conditions
   (the observations) with the PDE weighted down by ``pde_weight``;
2. coefficients next: with the network frozen, the coefficients alone are fitted to the
   PDE residual by Gauss-Newton (a handful of unknowns: finite-difference columns),
   in log scale for those that start positive, so a coefficient may move by decades;
3. then everything together, with the user's PDE weight.
"""
from __future__ import annotations

import math

import torch

from .. import jet
from ..errors import KanpinnError
from .hooks import Hook
from .loss import interior_jet_order

__all__ = ["DataFirst", "fit_parameters"]


def _pde_vector(run):
    """The interior residual rows (flattened) for the run's current model and params."""
    x = run.colloc.interior
    with torch.enable_grad():
        u = jet.evaluate(run.model, x, interior_jet_order(run, x))
        terms = run.problem.residual_terms(x, u, run.params)
    return torch.cat([t.detach().reshape(-1) for t in terms]).double()


def fit_parameters(run, iterations=30):
    """Gauss-Newton (Levenberg-damped) on the PDE residual over the problem's unknown
    coefficients only, the network held fixed; positive coefficients in log scale.
    Returns {name: (before, after)}."""
    names = sorted(run.params)
    if not names:
        return {}
    p = run.params
    before = {k: float(p[k].detach()) for k in names}
    logs = {k: before[k] > 0 for k in names}

    def get():
        now = {k: float(p[k].detach()) for k in names}
        return torch.tensor([math.log(now[k]) if logs[k] else now[k] for k in names],
                            dtype=torch.float64)

    def put(q):
        with torch.no_grad():
            for k, v in zip(names, q.tolist()):
                p[k].fill_(math.exp(v) if logs[k] else v)

    q = get()
    r = _pde_vector(run)
    lam = 1e-3
    for _ in range(iterations):
        cols = []
        for i in range(len(names)):
            h = 1e-6 * (1.0 + abs(float(q[i])))
            e = torch.zeros_like(q)
            e[i] = h
            put(q + e)
            plus = _pde_vector(run)
            put(q - e)
            cols.append((plus - _pde_vector(run)) / (2 * h))
        J = torch.stack(cols, 1)
        A, g = J.T @ J, J.T @ r
        improved = False
        while lam < 1e12:
            step = -torch.linalg.solve(A + lam * torch.diag(A.diagonal().clamp_min(1e-300)), g)
            put(q + step)
            r_new = _pde_vector(run)
            if bool(torch.isfinite(r_new).all()) and float(r_new @ r_new) < float(r @ r):
                q, r, lam, improved = q + step, r_new, max(lam / 3, 1e-12), True
                break
            lam *= 4
        put(q)
        if not improved or float(step.abs().max()) < 1e-10:
            break
    return {k: (before[k], float(p[k].detach())) for k in names}


class DataFirst(Hook):
    """Hook: train on the data for the first ``stages`` grid stages (the PDE weight times
    ``pde_weight``), then fit the unknown coefficients to the PDE with the network fixed
    (``fit_parameters``), then train everything with the PDE fully on."""

    def __init__(self, stages=1, pde_weight=1e-4):
        if not isinstance(stages, int) or stages < 1:
            raise KanpinnError(f"DataFirst: stages must be an integer >= 1, got {stages!r}")
        if not 0 < float(pde_weight) < 1:
            raise KanpinnError(f"DataFirst: pde_weight must lie in (0, 1), got {pde_weight!r}")
        self.stages, self.pde_weight = stages, float(pde_weight)
        self.fitted = None
        self._user = None

    def on_solve_start(self, run):
        if not run.problem.parameters:
            raise KanpinnError("DataFirst needs a problem with unknown parameters (Problem(parameters=...))")
        self._user = run.loss.weights.get("pde")

    def _set_pde(self, run, value):
        if value is None:
            run.loss.weights.pop("pde", None)
        else:
            run.loss.weights["pde"] = value

    def on_stage_start(self, run):
        base = 1.0 if self._user is None else float(self._user)
        if run.stage < self.stages:
            self._set_pde(run, base * self.pde_weight)
        elif run.stage == self.stages and not run.step_in_stage:
            self._set_pde(run, self._user)
            self.fitted = fit_parameters(run)
            run.note("data first: coefficients fitted to the PDE with the network fixed: " + ", ".join(
                f"{k} {a:.6g} -> {b:.6g}" for k, (a, b) in self.fitted.items()))
            run.opt_state = None
        else:
            self._set_pde(run, self._user)

    def on_solve_end(self, run):
        self._set_pde(run, self._user)
