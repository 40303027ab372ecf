"""Orders 3 and 4 of a :class:`~kanpinn.transforms.constraint.HardConstraint`'s jet.

u = g(x) + D(x)·N(x): the diagonal derivatives follow by Leibniz (``jet.leibniz``)
from the inner model's jet, the distance factor's and the lifting's. D is a product of
univariate factors (``distance.box_distance``), so ∂^r D/∂x_j^r is the r-th derivative
of the factors on column j times the others: exact, closed form. The lifting g is built
from the problem's own value functions, so its derivatives come by autograd, one
diagonal derivative after another (``Lifting.derivatives``).

When the inner model stops at order 2 (``evaluate``'s contract) the constraint does too:
the operators take the rest by autograd, exactly, outside the structured Jacobian.
"""
from __future__ import annotations

import math

import torch

from ..jet import leibniz

__all__ = ["constraint_jet"]


def _factor_derivatives(x, a, b, kind, power, order):
    """[f, f', .., f^(order)] of one univariate factor at x (N,) (``distance._factor``)."""
    L = b - a
    if kind == "both":                               # 4 (x - a)(b - x) / L², a quadratic
        out = [4.0 * (x - a) * (b - x) / L ** 2, 4.0 * (a + b - 2.0 * x) / L ** 2,
               torch.full_like(x, -8.0 / L ** 2)]
        return (out + [torch.zeros_like(x)] * order)[:order + 1]
    s = (x - a) / L                                  # s^p: p!/(p-r)! s^(p-r) / L^r
    return [math.perm(power, r) * s ** (power - r) / L ** r if r <= power else torch.zeros_like(x)
            for r in range(order + 1)]


def _distance_jet(x, factors, order):
    """D (N, 1) and [∂^r D/∂x_j^r] r = 1..order, each (N, 1, d)."""
    n, d = x.shape
    by_col = {}                                      # column -> [F, F', ..] of its factors' product
    for col, a, b, kind, power in factors:
        f = _factor_derivatives(x[:, col], float(a), float(b), kind, int(power), order)
        if col in by_col:
            F = by_col[col]
            by_col[col] = [F[0] * f[0]] + leibniz(F[0], F[1:], f[0], f[1:])
        else:
            by_col[col] = f
    D = x.new_ones(n)
    for F in by_col.values():
        D = D * F[0]
    out = [x.new_zeros(n, 1, d) for _ in range(order)]
    for col, F in by_col.items():
        others = x.new_ones(n)
        for c2, F2 in by_col.items():
            if c2 != col:
                others = others * F2[0]
        for r in range(1, order + 1):
            out[r - 1][:, 0, col] = F[r] * others
    return D[:, None], out


def constraint_jet(hc, x, order):
    """(u, du, d2u, d3u[, d4u]) of ``hc`` (a HardConstraint) at x for order 3 or 4, or
    fewer derivatives when the inner model gives fewer."""
    lift = hc._lift()
    if _reads_a_slice(lift):
        # a marching window's initial value is the previous window's slice, whose cached
        # jet stops at the Hessian (third derivatives live, not differentiable further):
        # stay at order 2 rather than give a wrong fourth derivative
        return hc.forward_jet(x, 2)
    N, *dN = hc.inner.forward_jet(x, order)
    K = next((i for i, t in enumerate(dN) if t is None), len(dN))        # what the inner model gave
    dN = dN[:K]
    D, dD = _distance_jet(x, hc.factors, K)
    g, dg = lift.derivatives(x, K)
    prod = leibniz(D[..., None], dD, N[..., None], dN)
    return (g + D * N, *(a + b for a, b in zip(dg, prod)))


def _reads_a_slice(lift):
    from .windows import SliceOf
    return any(isinstance(getattr(lift, k, None), SliceOf) for k in ("h", "u0", "v0"))
