"""Smooth functions that vanish exactly on parts of a box's boundary, with their jets.

``box_distance`` is the product of one factor per constrained direction: for a spatial
interval [a, b] the normalised quadratic 4(x - a)(b - x)/(b - a)² (zero on both faces,
1 at the centre), and for time a power of τ = (t - t0)/(t1 - t0) (zero at t0; the power
2 also zeroes the time derivative, for second-order-in-time problems). Products of
univariate factors keep the Hessian diagonal simple: ∂²D/∂x_j² = D_j''·Π_{i≠j} D_i.
"""
from __future__ import annotations

import torch

__all__ = ["box_distance"]


def _factor(x, a, b, kind, power):
    """value, first, second derivative of one univariate factor at x (N,)."""
    L = b - a
    if kind == "both":
        f0 = 4.0 * (x - a) * (b - x) / L ** 2
        f1 = 4.0 * (a + b - 2.0 * x) / L ** 2
        f2 = torch.full_like(x, -8.0 / L ** 2)
        return f0, f1, f2
    s = (x - a) / L                                  # "low": zero at the low face
    f0 = s ** power
    f1 = power * s ** (power - 1) / L
    f2 = (power * (power - 1) * s ** (power - 2) / L ** 2) if power >= 2 else torch.zeros_like(x)
    return f0, f1, f2


def box_distance(x, factors, order=2):
    """D(x) (N, 1), its gradient (N, 1, d) and Hessian diagonal (N, 1, d) (None for
    order < 2). ``factors``: list of (column, a, b, kind, power), kind "both" (zero at
    both faces of [a, b]) or "low" (zero at a, to the given power)."""
    n, d = x.shape
    vals, d1, d2 = [], [], []
    for col, a, b, kind, power in factors:
        f0, f1, f2 = _factor(x[:, col], float(a), float(b), kind, int(power))
        vals.append(f0), d1.append(f1), d2.append(f2)
    D = x.new_ones(n)
    for v in vals:
        D = D * v
    g = x.new_zeros(n, 1, d)
    h = x.new_zeros(n, 1, d) if order >= 2 else None
    for k, (col, *_rest) in enumerate(factors):
        others = x.new_ones(n)
        for j, v in enumerate(vals):
            if j != k:
                others = others * v
        g[:, 0, col] = g[:, 0, col] + d1[k] * others
        if h is not None:
            h[:, 0, col] = h[:, 0, col] + d2[k] * others
    return D[:, None], g, h
