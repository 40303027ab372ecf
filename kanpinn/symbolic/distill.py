"""Distillation: read small structures off an accurate solution instead of off the PDE.

A tiny structured KAN trained on the PDE itself often stops in a poor minimum (the PDE
loss of a product of sums is badly conditioned: Klein-Gordon's two-products network
stayed 7e-2 from the solution), while auto mode solves the same problems to 1e-6..1e-11
with a large network. So :func:`teacher` solves the problem once with auto mode, and
:func:`fit_structure` fits each candidate structure to the teacher's VALUES by least
squares (Levenberg-Marquardt on u(x) - teacher(x) at the collocation points and on the
boundary: a regression, far better conditioned than the PDE), with several random
starts. The structure's network is then read back with ``symbolify`` as usual; the
formula must still vanish in the PDE itself (``polish`` + ``verify`` in ``discover``).

For a system each output is fitted on its own one-output structure
(:func:`regression_problem` with ``component=j``), so u, v and p of a flow may take
different structures (a product for u and v, a sum for p).
"""
from __future__ import annotations

import math
import warnings

import torch

__all__ = ["teacher", "regression_problem", "fit_structure", "teacher_error", "separable_model"]

_DT = torch.float64


def teacher(problem, *, seed: int = 0, max_time: float = 180.0, solve_fn=None):
    """The accurate solution distilled from: ``kp.solve(problem, seed=seed,
    max_time=max_time)`` in auto mode (its network, not a formula). Returns the Result."""
    if solve_fn is None:
        from ..solver import solve as solve_fn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return solve_fn(problem, seed=seed, max_time=max_time, progress=False)


class _Values:
    """teacher(x)[:, component] as a constant target (no gradient), evaluated once per
    point set: the regression evaluates it at the same collocation points every step, so
    the last (tensor, version) is remembered (an instance, not a module-level cache)."""

    def __init__(self, model, component):
        self.model = model
        self.component = component
        self._key = None
        self._value = None
        p = next(iter(model.parameters()), None)
        self.dtype = p.dtype if p is not None else _DT

    def __call__(self, x):
        key = (id(x), getattr(x, "_version", 0), tuple(x.shape))
        if key != self._key:
            with torch.no_grad():
                out = self.model(x.detach().to(self.dtype))
            out = out[:, self.component:self.component + 1] if self.component is not None else out
            self._value, self._key = out.detach().to(x.dtype), key
            self._ref = x            # keeps id(x) from being reused while cached
        return self._value


def regression_problem(problem, model, component=None):
    """A problem whose "residual" is (the sum of the structure's outputs) - model(x)
    (one output of the teacher: ``component``, or its only one). The structure's outputs
    are SUMMED, not read through an output edge: with a free output edge phi(P1) + phi(P2)
    the regression found representations whose first-layer edges are no library
    function (Klein-Gordon, two products: loss 1.2e-9 but edges read as sqrt, tan and
    1/x tangles); a summed readout leaves a product of sums only its scale gauge.
    Interior points only: the Sobol points reach the boundary closely enough, and a
    boundary condition would compare each output column, not their sum."""
    from ..problem import Problem
    values = _Values(model, component)

    def residual(x, u):
        total = u[:, 0:1]
        for j in range(1, u.shape[1]):
            total = total + u[:, j:j + 1]
        return total - values(x)

    return Problem(problem.domain, residual, [],
                   name=f"{getattr(problem, 'name', 'problem')}_distilled"
                   + (f"_{component}" if component is not None else ""))


def fit_structure(reg_problem, model, *, solve_fn=None, **options):
    """Fit ``model`` (a one-output structure) to the regression problem with ``kp.solve``
    (LM, multi-start as given in ``options``). Returns the Result."""
    if solve_fn is None:
        from ..solver import solve as solve_fn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return solve_fn(reg_problem, model, **options)


def teacher_error(expr, symbols, points, model, component=None) -> float:
    """Relative L2 distance of a formula from the teacher's values (one output)."""
    from .clean import expr_to_torch
    P = torch.as_tensor(points, dtype=_DT)
    with torch.no_grad():
        ref = _Values(model, component)(P).reshape(-1)
        try:
            v = expr_to_torch(expr, tuple(symbols))(*[P[:, i] for i in range(P.shape[1])])
            v = torch.as_tensor(v, dtype=_DT).reshape(-1) + 0 * ref
        except Exception:  # noqa: BLE001 - a formula that cannot be evaluated is far
            return math.inf
    if not bool(torch.isfinite(v).all()):
        return math.inf
    den = float((ref * ref).sum())
    return math.sqrt(float(((v - ref) ** 2).sum()) / den) if den > 0 else math.sqrt(float(((v - ref) ** 2).sum()))


def separable_model(widths, **kan_options):
    """A KAN of ``widths`` whose product nodes multiply a function of the FIRST variable
    by a function of the others: in the first layer, variable 0 feeds only the first
    factor of each product and the other variables only the second (the sum nodes see
    all). Why: with sums inside both factors, (a(x) + b(y))(c(x) + d(y)) next to a sum
    node has a family of exact fits with an ARBITRARY function f(x) in it (a = E + f,
    b = C, c = f, d = -C for -E(x)C(y); the x-only and y-only leftovers go to the sum
    node), so a perfect regression (Kovasznay u: loss 1e-12) read back as gaussians
    plus exponentials; a separable product leaves only constant gauges."""
    from ..kan import KAN
    model = KAN(widths, **kan_options)
    d = model.width_in
    n_sum, n_mult = model.widths[1]
    if d < 2 or n_mult == 0:
        return model
    with torch.no_grad():
        mask = model.layers[0].mask
        for j in range(n_mult):
            first, second = n_sum + 2 * j, n_sum + 2 * j + 1
            mask[1:, first] = 0.0
            mask[0, second] = 0.0
    return model
