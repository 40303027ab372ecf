"""Kanpiler (KAN 2.0): build a KAN that computes a given formula, as a hypothesis to
fine-tune on a PDE.

The formula is expanded into terms c · Π_v h_v(x_v) (factors grouped by variable). A term
in one variable becomes an edge into a sum node; a term in two variables becomes a
multiplication node fed by one edge per factor; the next layer adds the nodes with
identity edges. The result is a ``KAN([d, [n_sum, n_mult], 1])`` whose active edges are
symbolic (``symbolic=True``) or B-splines fitted to those functions by least squares
(``symbolic=False``: ready for grid extension and the Levenberg-Marquardt solver). A
formula outside these shapes (a term coupling three variables, or sin(x + y)) is fitted
by a spline KAN [d, 2d+1, 1] trained on samples, through the same solver.
"""
from __future__ import annotations

import numpy as np
import sympy as sp
import torch

from .edge_formula import EdgeFormula, torch_function
from .errors import KanpinnError

__all__ = ["from_formula", "decompose"]

_Z = sp.Symbol("z")


def _symbols(variables):
    if variables is None:
        raise KanpinnError("from_formula needs the variables, e.g. ['x', 'y'] or a domain's .variables")
    return [v if isinstance(v, sp.Symbol) else sp.Symbol(str(v)) for v in variables]


class Unstructured(ValueError):
    """The formula is not a sum of one- and two-variable separable terms."""


def decompose(expr, symbols):
    """Split ``expr`` into (constant, [(coef, {var_index: factor})]) or raise ValueError
    when a factor couples variables or a term spans more than two of them."""
    expr = sp.expand(sp.sympify(expr))
    const, terms = 0.0, []
    index = {s: i for i, s in enumerate(symbols)}
    unknown = expr.free_symbols - set(symbols)
    if unknown:
        raise KanpinnError(f"from_formula: the formula uses {sorted(map(str, unknown))}, "
                           f"which are not among the variables {[str(s) for s in symbols]}")
    for term in sp.Add.make_args(expr):
        coef, factors = term.as_coeff_mul()
        if not factors:
            const += float(coef)
            continue
        groups = {}
        for f in factors:
            syms = f.free_symbols
            if len(syms) != 1:
                raise Unstructured(f"factor {f} couples variables")
            v = index[next(iter(syms))]
            groups[v] = groups.get(v, sp.Integer(1)) * f
        if len(groups) > 2:
            raise Unstructured(f"term {term} spans more than two variables")
        terms.append((float(coef), groups))
    return const, terms


def from_formula(expr, variables, *, symbolic=True, lo=None, hi=None, grid=10, k=3, seed=0):
    """A KAN computing ``expr`` (a sympy expression or string) of ``variables``.

    lo, hi: the input box (default [-1, 1] per variable), used to place grids and fit
    splines. Returns a ``kp.KAN``.

    Example::

        x, y = sympy.symbols("x y")
        model = kp.KAN.from_formula(sympy.sin(sympy.pi * x) * sympy.sin(sympy.pi * y), ["x", "y"])
    """
    from .kan import KAN

    symbols = _symbols(variables)
    d = len(symbols)
    lo = np.full(d, -1.0) if lo is None else np.asarray(lo, dtype=np.float64).reshape(d)
    hi = np.full(d, 1.0) if hi is None else np.asarray(hi, dtype=np.float64).reshape(d)
    if isinstance(expr, str):
        expr = sp.sympify(expr, locals={str(s): s for s in symbols})   # the caller's own formula
    try:
        const, terms = decompose(expr, symbols)
    except Unstructured:
        return _fitted(expr, symbols, lo, hi, grid, k, seed)

    singles = [(c, g) for c, g in terms if len(g) == 1]
    pairs = [(c, g) for c, g in terms if len(g) == 2]
    n_mult = len(pairs)
    n_sum = len(singles) if (singles or n_mult) else 1      # a constant still needs a node
    widths = [d, [n_sum, n_mult] if n_mult else n_sum, 1]
    model = KAN(widths, grid=grid, k=k, seed=seed, dtype=torch.float64)
    l0, l1 = model.layers
    with torch.no_grad():
        for layer in model.layers:
            layer.mask.zero_()
    edges0 = []                                   # (input, output, factor expr, coef)
    for o, (c, g) in enumerate(singles):
        (v, f), = g.items()
        edges0.append((v, o, f, c))
    if n_sum > len(singles):                       # the constant-only node
        edges0.append((0, 0, sp.Integer(0), 0.0))
    for m, (c, g) in enumerate(pairs):
        (v1, f1), (v2, f2) = sorted(g.items())
        edges0.append((v1, n_sum + 2 * m, f1, c))
        edges0.append((v2, n_sum + 2 * m + 1, f2, 1.0))
    edges1 = [(i, 0, _Z, 1.0) for i in range(n_sum + n_mult)]

    # the second layer's inputs: where the first layer's nodes range over the box
    pts = torch.as_tensor(lo + (hi - lo) * np.random.default_rng(seed).random((4000, d)))
    corners = torch.as_tensor(np.stack([lo, hi]))
    model.set_input_range(lo, hi)
    _set_edges(l0, edges0, symbols, symbolic, torch.cat([corners, pts]))
    hidden = model._mult(0, l0(torch.cat([corners, pts])))
    h_lo, h_hi = hidden.min(0).values, hidden.max(0).values
    span = (h_hi - h_lo).clamp_min(1e-3)
    l1.refit(l1.basis.adapted(torch.stack([h_lo - 0.05 * span, h_hi + 0.05 * span]), 1.0))
    _set_edges(l1, edges1, [_Z] * (n_sum + n_mult), symbolic, hidden, const=const)
    return model


def _set_edges(layer, edges, symbols, symbolic, x, const=0.0):
    """Make each listed edge compute coef · f(input); the constant goes on the first edge."""
    for n, (i, o, f, coef) in enumerate(edges):
        fz = sp.sympify(f).subs(symbols[i], _Z) if symbols[i] is not _Z else sp.sympify(f)
        shift = const if n == 0 else 0.0
        if symbolic:
            layer.fix_symbolic(i, o, EdgeFormula(str(fz), fz, 1.0, 0.0, coef, shift, dtype=layer.coef.dtype))
        else:
            _fit_spline_edge(layer, i, o, fz, coef, shift, x[:, i])


@torch.no_grad()
def _fit_spline_edge(layer, i, o, fz, coef, shift, xi):
    """Least-squares spline coefficients of edge i -> o for coef·f(z) + shift (base off)."""
    g = torch_function(fz, _Z)
    pts = torch.cat([layer.basis.fit_points()[:, i], xi.detach().to(layer.coef.dtype)])
    target = coef * g(pts) + shift
    x_all = pts[:, None].expand(-1, layer.in_dim).contiguous()
    first, (b,) = layer.basis.evaluate(x_all, 0)
    from .bsplines import scatter_dense
    A = scatter_dense(first, b, layer.basis.size)[:, i, :] if first is not None else b[:, i, :]
    sol = torch.linalg.lstsq(A, target[:, None]).solution[:, 0]
    layer.mask[i, o] = 1.0
    layer.scale_base[i, o] = 0.0
    layer.scale_sp[i, o] = 1.0
    layer.coef[i, :, o] = sol


def _fitted(expr, symbols, lo, hi, grid, k, seed):
    """Fallback: a spline KAN trained on the formula by the solver (supervised residual)."""
    from .domains import Box
    from .kan import KAN
    from .problem import Problem
    from .solver import solve

    d = len(symbols)
    f = torch_function(sp.sympify(expr), symbols)

    def residual(x, u):
        return u - f(*[x[:, i:i + 1] for i in range(d)])

    problem = Problem(Box(lo, hi), residual, name="from_formula")
    model = KAN([d, 2 * d + 1, 1], grid=5, k=k, seed=seed, dtype=torch.float64)
    grids = sorted({5, grid}) if grid > 5 else [grid]
    # on the CPU: a constructor returns a CPU model, as torch.nn modules do, and a fit on a
    # few hundred points is not faster on a GPU (see kanpinn.bench.devices)
    solve(problem, model, grids=grids, steps=60, n_interior=max(400, 200 * d), n_boundary=4,
          progress=False, optimizer="lm", device="cpu")
    return model
