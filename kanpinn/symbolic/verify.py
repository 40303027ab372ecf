"""Verify a closed-form formula against the PDE itself, not against a network.

:func:`verify` turns the sympy formula into a torch function u(x) (float64), so that the
user's own residual code, with ``kp.grad/partial/laplacian`` falling back to autograd,
differentiates the formula exactly. The PDE residual and every condition's misfit are
evaluated on FRESH points (uniform random draws with their own seed, never the Sobol
points a solve trains on) and must vanish relative to the scale of the problem's terms:

    scale = max( |forcing|, |u|, |du/dx_i|, |d2u/dx_i^2| )   (max over the points)

where the forcing is what the residual and the conditions return for u = 0 (the source
term, the boundary and initial values). A formula is verified when every residual row
and every misfit row has ``max |r| <= tol * scale``. Relative to the largest term rather
than to the residual of a reference, so a homogeneous equation (heat: u_t = k u_xx, no
forcing) is judged against the size of u and its derivatives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import sympy
import torch

from ..errors import KanpinnError
from .clean import expr_to_torch

__all__ = ["Verification", "verify", "formula_function", "DEFAULT_TOL"]

_DT = torch.float64
DEFAULT_TOL = 1e-7  # float64 formulas with exact constants reach 1e-13; a spline ~1e-4


@dataclass
class Verification:
    """What :func:`verify` measured. ``residual`` is the largest relative misfit
    (max |r| / scale) over the PDE residual and all conditions; ``terms`` gives it per
    term (``"pde"``, ``"pde_0_1"``, condition names)."""

    verified: bool
    residual: float
    tol: float
    scale: float
    terms: dict = field(default_factory=dict)
    n_points: int = 0
    error: str | None = None  # why the formula could not be evaluated at all

    def __bool__(self):
        return self.verified

    def __repr__(self):
        state = "verified" if self.verified else "NOT verified"
        worst = max(self.terms, key=self.terms.get) if self.terms else None
        extra = f", worst term {worst}" if worst and not self.verified else ""
        why = f" ({self.error})" if self.error else ""
        return (f"Verification({state}: residual {self.residual:.2e} <= tol {self.tol:.0e}? "
                f"on {self.n_points} fresh points, scale {self.scale:.3g}{extra}{why})")


def _as_list(formula, m):
    if isinstance(formula, sympy.MatrixBase):
        exprs = list(formula)
    elif isinstance(formula, (list, tuple)):
        exprs = [sympy.sympify(e) for e in formula]
    else:
        exprs = [sympy.sympify(formula)]
    if len(exprs) != m:
        raise KanpinnError(f"verify: the formula has {len(exprs)} component(s) but the problem "
                           f"has {m} output(s)")
    return exprs


def _symbols(problem, variables):
    names = variables if variables is not None else problem.variables
    if isinstance(names, str):
        names = names.replace(",", " ").split()
    syms = tuple(v if isinstance(v, sympy.Symbol) else sympy.Symbol(str(v)) for v in names)
    if len(syms) != problem.domain.dim:
        raise KanpinnError(f"verify: {len(syms)} variables {list(map(str, syms))} for a domain "
                           f"with {problem.domain.dim} variables {list(problem.variables)}")
    return syms


def formula_function(formula, symbols, m=None):
    """u(x): (N, d) -> (N, m), the formula(s) evaluated in torch (differentiable in x).
    A constant component is broadcast and still depends on x (times 0), so that
    derivatives of it are zeros, not errors."""
    exprs = _as_list(formula, m if m is not None else
                     (len(formula) if isinstance(formula, (sympy.MatrixBase, list, tuple)) else 1))
    fns = [expr_to_torch(e, symbols) for e in exprs]
    d = len(symbols)

    def u(x):
        cols = [x[:, i] for i in range(d)]
        zero = 0 * x.sum(1)
        return torch.stack([f(*cols).reshape(-1) + zero for f in fns], 1)
    return u


def _derivative_scale(u, x):
    """max |u|, |du/dx_i|, |d2u/dx_i^2| over the points and components (autograd)."""
    top = float(u.detach().abs().max()) if u.numel() else 0.0
    for c in range(u.shape[1]):
        g, = torch.autograd.grad(u[:, c].sum(), x, create_graph=True)
        top = max(top, float(g.detach().abs().max()))
        for i in range(x.shape[1]):
            if not g[:, i].requires_grad:
                continue
            h, = torch.autograd.grad(g[:, i].sum(), x, retain_graph=True, allow_unused=True)
            if h is not None:
                top = max(top, float(h[:, i].detach().abs().max()))
    return top


def zero_function(m):
    """u = 0 (m outputs) as a function the problem accepts on its first use: the problem
    checks that every residual term shares a graph node with u other than x, which a
    model's parameters give; ``0*x`` has none (heat's residual of 0*x "does not depend on
    u"), so u = w*|x|^2 with a leaf w = 0 (|x|^2, not x: second derivatives exist)."""
    w = torch.zeros((), dtype=_DT, requires_grad=True)

    def u(z):
        return (w * (z * z).sum(1, keepdim=True)).repeat(1, m)
    return u


def _blocks(problem, u_fn, x, cond_pts, params):
    """(name, rows (M,)) of the residual and of every condition for the function u_fn."""
    out = []
    u = u_fn(x)
    terms = problem.residual_terms(x, u, params)
    for ti, t in enumerate(terms):
        for c in range(t.shape[1]):
            name = "pde" if len(terms) == 1 and t.shape[1] == 1 else f"pde_{ti}_{c}"
            out.append((name, t[:, c]))
    for cname, cond, pts in zip(problem.condition_names, problem.conditions, cond_pts):
        mis = cond.misfit(u_fn, pts)
        for c in range(mis.shape[1]):
            out.append((cname if mis.shape[1] == 1 else f"{cname}_{c}", mis[:, c]))
    return out


def verify(formula, problem, *, tol: float = DEFAULT_TOL, n_points: int = 2000,
           n_boundary: int = 400, seed: int = 20260, params: dict | None = None,
           variables=None) -> Verification:
    """Check that ``formula`` solves ``problem``: PDE residual and condition misfits of the
    formula itself, differentiated exactly, on fresh random points (see the module
    docstring for the scale). ``formula``: a sympy expression in the domain's variables
    (a Matrix or list of m expressions for a system of m outputs). ``params``: values of
    the problem's unknown parameters (default: the problem's initial values)."""
    from ..problem import Problem
    if not isinstance(problem, Problem):
        raise KanpinnError(f"verify: expected a kp.Problem, got {type(problem).__name__}")
    if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise KanpinnError(f"verify: tol must be a positive number, got {tol!r}")
    for name, v in (("n_points", n_points), ("n_boundary", n_boundary)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise KanpinnError(f"verify: {name} must be a positive integer, got {v!r}")
    symbols = _symbols(problem, variables)
    m = problem.n_outputs or (len(formula) if isinstance(formula, (sympy.MatrixBase, list, tuple)) else 1)
    u_fn = formula_function(formula, symbols, m)

    dom = problem.domain
    x = torch.as_tensor(np.asarray(dom.sample_interior(n_points, "uniform", seed=seed)),
                        dtype=_DT).requires_grad_(True)
    cond_pts = []
    for i, cond in enumerate(problem.conditions):
        pts = cond.sample(dom, n_boundary, "uniform", seed=seed + 1 + i)
        cond_pts.append({k: torch.as_tensor(np.asarray(v), dtype=_DT).requires_grad_(k.startswith("x"))
                         for k, v in pts.items()})
    p = None
    if problem.parameters:
        base = problem.default_params(x)
        for k, v in (params or {}).items():
            base[k] = torch.as_tensor(float(v), dtype=_DT)
        p = base

    try:
        with torch.enable_grad():
            blocks = _blocks(problem, u_fn, x, cond_pts, p)
            scale = _derivative_scale(u_fn(x), x)
            zero = _blocks(problem, zero_function(m), x, cond_pts, p)
    except KanpinnError:
        raise
    except Exception as exc:  # noqa: BLE001 - a formula that cannot be evaluated is not verified
        return Verification(False, math.inf, tol, math.nan, {}, n_points, f"{type(exc).__name__}: {exc}")
    for _, r in zero:
        r = r.detach()
        if bool(torch.isfinite(r).all()) and r.numel():
            scale = max(scale, float(r.abs().max()))
    if not math.isfinite(scale) or scale <= 0:
        scale = 1.0
    terms = {}
    for name, r in blocks:
        r = r.detach()
        terms[name] = float(r.abs().max() / scale) if bool(torch.isfinite(r).all()) else math.inf
    worst = max(terms.values()) if terms else math.inf
    return Verification(bool(worst <= tol), worst, tol, scale, terms, n_points)
