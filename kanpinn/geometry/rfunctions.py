"""Smooth approximate distance functions built from R-functions (torch).

Hard constraints (u = g + φ·N with φ = 0 on the boundary) need a distance-like φ that is
zero on the boundary, positive inside, twice differentiable in the interior (the PDE
residual differentiates it) and normalised to first order (|∇φ| = 1 on the boundary, so
that φ behaves like the true distance near it). Following Sukumar & Srivastava (2022,
"Exact imposition of boundary conditions with distance functions in PINNs"), every
primitive provides such a φ and the set operations compose them with R-functions:

* conjunction (intersection) ``a ∧ b = a + b - sqrt(a² + b²)``: positive exactly where
  both are; on the part of a's boundary inside b it equals a - a²/(2b) + ..., so the
  first-order normalisation survives;
* disjunction (union) ``a ∨ b = a + b + sqrt(a² + b²)``;
* difference ``a ∧ (-b)``;
* R-equivalence (order m = 1) ``1/φ = Σ 1/φ_i`` joins the unsigned distances of the
  edges of a polygon: it vanishes on every edge and equals φ_i to first order near edge i.

The square roots are smooth wherever their arguments are not both zero, i.e. away from
the corners where two boundary pieces meet (which lie on the boundary, never in the
interior); the one exception is a union of two domains that touch along a shared piece of
boundary, whose interior then contains points where both vanish.
"""
from __future__ import annotations

import torch


def safe_sqrt(s: torch.Tensor) -> torch.Tensor:
    """sqrt with a finite (zero) derivative at 0, so that a point exactly on a corner or
    a segment (a grid sampler puts some there) yields finite gradients instead of NaN."""
    pos = s > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, s, torch.ones_like(s))), torch.zeros_like(s))


def conjunction(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """R₀ conjunction: positive where a > 0 and b > 0 (intersection)."""
    return a + b - safe_sqrt(a * a + b * b)


def disjunction(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """R₀ disjunction: positive where a > 0 or b > 0 (union)."""
    return a + b + safe_sqrt(a * a + b * b)


def equivalence(phis: torch.Tensor) -> torch.Tensor:
    """R-equivalence of order 1 of non-negative columns ``phis`` (N, k) -> (N, 1):
    ``1/φ = Σ 1/φ_i``, written as ``φ_min / Σ (φ_min / φ_i)`` so that it stays finite
    (and differentiable twice) when one φ_i is zero. The formula is symmetric in the
    φ_i, so which column is the minimum does not change the function."""
    lo = phis.min(dim=1, keepdim=True).values
    is_lo = phis <= lo
    safe = torch.where(is_lo, torch.ones_like(phis), phis)
    ratio = torch.where(is_lo, torch.ones_like(phis), lo / safe)
    return lo / ratio.sum(dim=1, keepdim=True)


def segment_distance(x: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Unsigned smooth distance (N, k) of 2-D points ``x`` (N, 2) to the segments p_i q_i
    (``p``, ``q``: (k, 2)), Sukumar & Srivastava's trimmed line function: zero exactly on
    the segment, equal to the distance to its line to first order there, smooth elsewhere
    except at the segment's end points."""
    e = q - p                                                   # (k, 2)
    length = torch.linalg.norm(e, dim=1)                        # (k,)
    rel = x[:, None, :] - p[None, :, :]                         # (N, k, 2)
    f = (rel[..., 0] * e[:, 1] - rel[..., 1] * e[:, 0]) / length  # signed line distance
    mid = 0.5 * (p + q)
    t = ((0.5 * length) ** 2 - ((x[:, None, :] - mid[None]) ** 2).sum(-1)) / length
    f4 = f ** 4
    varphi = safe_sqrt(t * t + f4)
    # varphi - t cancels catastrophically over the segment (t > 0, f small): use the
    # rationalised f⁴ / (varphi + t) there, the plain difference elsewhere.
    over = t > 0
    gap = torch.where(over, f4 / torch.where(over, varphi + t, torch.ones_like(t)), varphi - t)
    return safe_sqrt(f * f + 0.25 * gap * gap)


def ball(x: torch.Tensor, center: torch.Tensor, radius: float) -> torch.Tensor:
    """(r² - |x - c|²) / (2r): positive inside the ball, |∇| = |x - c| / r = 1 on the
    sphere, a polynomial (so smooth) everywhere. Returns (N, 1)."""
    return (radius * radius - ((x - center) ** 2).sum(dim=1, keepdim=True)) / (2 * radius)


def slab(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """(x - lo)(hi - x)/(hi - lo) per column (N, d): positive strictly between the two
    faces, slope 1 on each face."""
    return (x - lo) * (hi - x) / (hi - lo)
