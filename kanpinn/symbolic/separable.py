"""Read a 2-D solution that is a short sum of products, u = h0(t) + sum_k f_k(x) h_k(t),
off its values on a tensor grid (the teacher of :mod:`kanpinn.symbolic.distill`).

Why not off a KAN's edges: a sum of r separable products is unique only up to an
invertible r x r mixing (x cos(5 pi t) + x^3 t^3 = (x + m x^3) cos(5 pi t) +
x^3 (t^3 - m cos(5 pi t)) for any m), so a network of two product nodes, fitted to 1e-11,
still read back with edges that are mixtures of x and x^3 (Klein-Gordon: teacher misfit
2.9e-2, residual 0.13). Here the mixing is removed by the library itself:

1. the values on an n x n grid, their SVD: the rank r (singular values above
   ``rank_tol`` of the largest) and the span S of the x-side (with the constants);
2. every library function on its coarse (a, b) grid, scored by the distance of
   f(a*x + b) from S (projection residual): the functions that LIE in the span;
3. greedily the r' best that are independent (r' = dim S - 1: the constant is free),
   their (a, b) refined by Gauss-Newton on the same distance;
4. h_k(t) by least squares on each t column, then each h_k fitted with the library
   (:func:`kanpinn.symbolic.fit.fit_edges`); the formula is h0 + sum_k f_k h_k.

Both variable orders are tried; the caller keeps the one closest to the values.
"""
from __future__ import annotations

import math

import numpy as np
import sympy
import torch

from .fit import _domain_ok, _grid, fit_edges
from .library import get_library

__all__ = ["read_separable"]

_DT = torch.float64
_MAX_RANK = 3
_REFINE = 40     # coarse candidates refined before choosing


def _orth(cols, tol=1e-9):
    """Orthonormal basis of the span of the columns (N, k), numerically rank-revealing."""
    U, S, _ = torch.linalg.svd(cols, full_matrices=False)
    keep = S > tol * S[0]
    return U[:, keep]


def _distance(Q, G):
    """Relative distance of each column of G (N, m) from span(Q) (constants included in Q)."""
    Gc = G - G.mean(0, keepdim=True)
    R = G - Q @ (Q.T @ G)
    den = Gc.norm(dim=0).clamp_min(1e-300)
    return R.norm(dim=0) / den


def _candidates(lib, t):
    """(name, fn, alpha, beta, columns) for every library function on its coarse grid, in
    normalised coordinates t in [-1, 1]."""
    out = []
    for fn in lib:
        if "c" in fn.fixed:
            continue
        alpha, beta = _grid(fn)
        if alpha.numel() == 0:
            continue
        with torch.no_grad():
            G = fn.torch_fn(t[:, None] * alpha[None, :] + beta[None, :])
        ok = torch.isfinite(G).all(0) & (G.std(0) > 1e-12)
        if bool(ok.any()):
            out.append((fn, alpha[ok], beta[ok], G[:, ok]))
    return out


def _refine(fn, Q, t, a, b, iters=30):
    """(a, b) minimising the distance of fn(a*t + b) from span(Q): Gauss-Newton with
    central differences (two parameters), steps that leave fn's domain rejected."""
    theta = torch.tensor([a, b], dtype=_DT)
    free = [i for i, k in enumerate("ab") if k not in fn.fixed]
    if not free:
        return a, b, float(_distance(Q, fn.torch_fn(a * t + b)[:, None])[0])

    def rows(th):
        g = fn.torch_fn(th[0] * t + th[1])
        gc = g - g.mean()
        return (g - Q @ (Q.T @ g)) / gc.norm().clamp_min(1e-300)

    def ok(th):
        return bool(_domain_ok(fn, th[0:1], th[1:2])[0])

    r = rows(theta)
    cur = float((r * r).sum())
    lam = 1e-6
    for _ in range(iters):
        J = []
        for i in free:
            h = 1e-7 * max(1.0, abs(float(theta[i])))
            tp, tm = theta.clone(), theta.clone()
            tp[i] += h
            tm[i] -= h
            J.append((rows(tp) - rows(tm)) / (2 * h))
        J = torch.stack(J, 1)
        A, g = J.T @ J, J.T @ r
        done = True
        for _ in range(8):
            step = torch.linalg.solve(A + lam * torch.diag(torch.diag(A).clamp_min(1e-30)), g)
            trial = theta.clone()
            trial[free] -= step
            if ok(trial):
                rn = rows(trial)
                new = float((rn * rn).sum())
                if math.isfinite(new) and new < cur:
                    theta, r, cur, lam, done = trial, rn, new, max(lam / 10, 1e-12), False
                    break
            lam *= 10
        if done or cur < 1e-30:
            break
    return float(theta[0]), float(theta[1]), math.sqrt(cur)


def _pick(cands, Q, t, r, span_tol):
    """Up to r independent library functions lying in span(Q): greedy, smallest distance
    first (ties: lower complexity). Returns [(fn, a, b, column)] in normalised t."""
    scored = []
    for fn, alpha, beta, G in cands:
        dist = _distance(Q, G)
        # the best few per function: one family may hold two basis functions (x, x^3)
        order = torch.argsort(dist)[:4]
        for k in order.tolist():
            scored.append((float(dist[k]), fn.complexity, fn, float(alpha[k]), float(beta[k])))
    scored.sort(key=lambda s: (s[0], s[1]))
    refined = []
    for _, cx, fn, a, b in scored[:_REFINE]:
        a, b, dist = _refine(fn, Q, t, a, b)
        if dist <= span_tol:
            refined.append((cx, dist, fn, a, b))
    # among the functions that lie in the span, the simplest first: |2x - 97| is a line
    # on [0, 1] as exactly as x is (Klein-Gordon read x as abs before this order)
    refined.sort(key=lambda s: (s[0], s[1]))
    chosen, cols = [], [torch.ones_like(t)]
    for _, dist, fn, a, b in refined:
        if len(chosen) >= r:
            break
        g = fn.torch_fn(a * t + b)
        basis = _orth(torch.stack(cols, 1))
        resid = g - basis @ (basis.T @ g)
        if float(resid.norm()) <= 1e-3 * float((g - g.mean()).norm()):
            continue                      # not independent of the functions already chosen
        chosen.append((fn, a, b, g))
        cols.append(g)
    return chosen


def read_separable(values_fn, lo, hi, symbols, *, n: int = 64, library=None,
                   rank_tol: float = 1e-4, span_tol: float = 1e-4):
    """A formula h0(t) + sum_k f_k(x) h_k(t) for the function ``values_fn`` ((N, 2) -> (N,))
    on the box [lo, hi], or None when the values are not a short sum of products of
    library functions (see the module docstring). ``symbols``: (x, t) in the box's order.
    Tries both variable orders; returns (formula, relative misfit on the grid) of the
    better, or None."""
    lib = get_library(library)
    best = None
    for side in (0, 1):
        out = _read(values_fn, lo, hi, symbols, side, n, lib, rank_tol, span_tol)
        if out is not None and (best is None or out[1] < best[1]):
            best = out
    return best


def _rank(S, rank_tol):
    """The rank the values hold, at most _MAX_RANK: the first k whose singular value is
    below ``rank_tol`` of the largest AND a gap of 100 below the previous one (a teacher
    accurate to 1e-6 leaves a floor of singular values near 1e-6, not zeros), or None."""
    if not float(S[0]) > 0:
        return None
    rel = S / S[0]
    for k in range(1, min(_MAX_RANK, len(S) - 1) + 1):
        if float(rel[k]) <= rank_tol and float(rel[k]) * 100 <= float(rel[k - 1]):
            return k
    return None


def _nodes(a, b, n):
    """Chebyshev-Lobatto nodes on [a, b] (dense near the ends, where a misfit shows)."""
    k = np.arange(n)
    return torch.tensor(a + (b - a) * (1 - np.cos(np.pi * k / (n - 1))) / 2, dtype=_DT)


def _read(values_fn, lo, hi, symbols, side, n, lib, rank_tol, span_tol):
    other = 1 - side
    xs, ts = _nodes(lo[side], hi[side], n), _nodes(lo[other], hi[other], n)
    X, T = torch.meshgrid(xs, ts, indexing="ij")
    pts = torch.zeros(n * n, 2, dtype=_DT)
    pts[:, side], pts[:, other] = X.reshape(-1), T.reshape(-1)
    with torch.no_grad():
        V = torch.as_tensor(values_fn(pts), dtype=_DT).reshape(n, n)   # rows: x, columns: t
    if not bool(torch.isfinite(V).all()):
        return None
    r = _rank(torch.linalg.svdvals(V), rank_tol)
    if r is None:
        return None
    U = torch.linalg.svd(V, full_matrices=False)[0][:, :r]
    # the constants are free: when the values already hold them (Kovasznay's u = 1 - E cos)
    # the stacked basis is redundant up to the teacher's noise, hence rank_tol, not 1e-9
    Q = _orth(torch.cat([torch.ones(n, 1, dtype=_DT) / math.sqrt(n), U], 1), rank_tol)
    n_funcs = Q.shape[1] - 1
    if n_funcs == 0:
        return None
    m, s = (lo[side] + hi[side]) / 2, (hi[side] - lo[side]) / 2
    tn = (xs - m) / s                                     # normalised x in [-1, 1]
    chosen = _pick(_candidates(lib, tn), Q, tn, n_funcs, span_tol)
    if len(chosen) < n_funcs:
        return None
    F = torch.stack([torch.ones(n, dtype=_DT)] + [g for *_, g in chosen], 1)   # (n, 1 + r')
    C = torch.linalg.lstsq(F, V).solution                                     # (1 + r', n): h_k(t_j)
    fit = V - F @ C
    misfit = float(fit.norm() / V.norm().clamp_min(1e-300))
    xsym, tsym = symbols[side], symbols[other]
    xn = (xsym - sympy.Float(m)) / sympy.Float(s)
    scale = float(V.abs().max())
    fits = fit_edges(ts[None, :].expand(C.shape[0], n).contiguous(), C.contiguous(), lib,
                     required_derivative_order=None)
    expr = sympy.Integer(0)
    for k in range(C.shape[0]):
        hk = C[k]
        if float(hk.abs().max()) * (1.0 if k == 0 else float(F[:, k].abs().max())) <= 1e-9 * scale:
            continue                                    # a term the values do not hold
        if float(hk.std()) <= 1e-9 * float(hk.abs().max()):
            h = sympy.Float(float(hk.mean()))
        else:
            bestfit = fits[k].best
            if bestfit is None:
                return None
            h = bestfit.expr(tsym)
        if k == 0:
            expr += h
        else:
            fn, a, b, _ = chosen[k - 1]
            expr += fn.sympy_fn(sympy.Float(a) * xn + sympy.Float(b)) * h
    return expr, misfit
