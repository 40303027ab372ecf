"""Families of univariate functions that a KAN edge is a combination of.

Every basis is an ``nn.Module`` whose buffers describe where its functions live (knots, a
range), with one interface:

- ``size``: functions per input column;
- ``evaluate(x, order) -> (first, values)``: ``values`` is a list of ``order + 1`` tensors
  (value, first and second derivative). Local bases (B-splines) return ``first`` (N, in)
  and values (N, in, w) for the ``w`` non-zero functions starting at ``first``; dense bases
  return ``first=None`` and values (N, in, size);
- ``refined(size)``: the same family at another resolution over the same range (grid
  extension); for B-splines on nested knots and for polynomials the old space is inside the
  new one, so a least-squares refit keeps the function exactly;
- ``adapted(x, eps)``: a basis placed for samples x (N, in) (grid update);
- ``fit_points(n)``: (n, in) points covering the range, for least-squares refits;
- ``config()``: JSON description, ``basis_from_config`` rebuilds an empty one.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import bsplines
from .errors import KanpinnError

__all__ = ["BSplineBasis", "ChebyshevBasis", "RBFBasis", "FourierBasis", "make_basis", "BASES"]


def _range_tensor(lo, hi, n_in, dtype):
    lo = torch.as_tensor(lo, dtype=dtype).expand(n_in).clone()
    hi = torch.as_tensor(hi, dtype=dtype).expand(n_in).clone()
    if not bool((hi > lo).all()):
        raise KanpinnError(f"grid range must have lo < hi, got lo={lo.tolist()}, hi={hi.tolist()}")
    return lo, hi


def _sample_range(x: torch.Tensor, eps: float):
    """Range per column covering the samples, with a floor on its width."""
    lo = x.min(dim=0).values
    hi = x.max(dim=0).values
    width = (hi - lo).clamp_min(1e-3)
    mid = (hi + lo) / 2
    return mid - width / 2, mid + width / 2


class BSplineBasis(nn.Module):
    """B-splines of order k on G intervals per input (the KAN paper's basis)."""

    kind = "bspline"

    def __init__(self, n_in: int, grid: int = 5, k: int = 3, grid_range=(-1.0, 1.0), dtype=None):
        super().__init__()
        if grid < 1 or k < 0:
            raise KanpinnError(f"bspline basis needs grid >= 1 and k >= 0, got grid={grid}, k={k}")
        dtype = dtype or torch.get_default_dtype()
        lo, hi = _range_tensor(grid_range[0], grid_range[1], n_in, dtype)
        self.k = k
        self.register_buffer("knots", bsplines.uniform_knots(lo, hi, grid, k))
        self._rebuild()
        # the tables are derived from the knots: rebuild them whenever knots are loaded
        self.register_load_state_dict_post_hook(lambda module, _: module._rebuild())

    def _rebuild(self):
        left, inv_h, M = bsplines.piece_polynomials(self.knots, self.k)
        self.register_buffer("_left", left, persistent=False)
        self.register_buffer("_inv_h", inv_h, persistent=False)
        self.register_buffer("_poly", M, persistent=False)
        self._uniform = bsplines.is_uniform(M)       # every interval has the same local table
        # equal interval widths (k = 1 tables are shared even on unequal grids): points
        # can then be located by a floor instead of a search
        # (to rounding in the table's dtype: a float32 copy of a uniform grid is uniform)
        tol = max(1e-9, 64 * torch.finfo(inv_h.dtype).eps)
        self._equal = bool(((inv_h - inv_h[:, :1]).abs() <= tol * inv_h.abs()).all())

    def _apply(self, fn, *args, **kwargs):
        # dtype/device moves: recompute the tables from the moved knots (in float64 inside)
        eps = torch.finfo(self.knots.dtype).eps if self.knots.is_floating_point() else 0.0
        h = self.knots.diff(dim=1)
        uniform = bool(((h - h[:, :1]).abs() <= 64 * eps * h[:, :1].abs()).all())
        out = super()._apply(fn, *args, **kwargs)
        if uniform and self.knots.is_floating_point() and torch.finfo(self.knots.dtype).eps < eps:
            # a uniform grid moved to a finer dtype (KAN(...).double()) carries the coarse
            # dtype's rounding, which the finer tables see as unequal intervals (the slower
            # non-uniform path: cavity J build at auto size 0.43 s built in float64, 0.58 s
            # after .double()); placed again exactly from its ends, it is uniform again
            with torch.no_grad():
                self.knots.copy_(bsplines.uniform_knots(self.lo.clone(), self.hi.clone(), self.grid, self.k))
        self._rebuild()
        return out

    @property
    def grid(self) -> int:
        return self.knots.shape[1] - 2 * self.k - 1

    @property
    def size(self) -> int:
        return self.grid + self.k

    @property
    def lo(self):
        return self.knots[:, self.k]

    @property
    def hi(self):
        return self.knots[:, -self.k - 1]

    def evaluate(self, x, order=0):
        pts = self.knots[:, self.k: self.knots.shape[1] - self.k]
        return bsplines.local_basis_poly(x, pts, self._left, self._inv_h, self._poly, order, self._uniform)

    # piecewise-polynomial view (used by kanpinn.layer_jet): on interval j a spline is a
    # polynomial of degree k in the local coordinate u
    def locate(self, x):
        """Interval ``j`` (N, in), local coordinate ``u`` and ``1/h_j`` (N, in) of x."""
        pts = self.knots[:, self.k: self.knots.shape[1] - self.k]
        return bsplines.locate(x, pts, self._left, self._inv_h, self._equal)

    def piece_derivatives(self, C, top):
        """(rows, in·G, out) power coefficients of the derivatives 0..top of the splines
        with coefficients C on every interval (``bsplines.derivative_pieces``)."""
        return bsplines.derivative_pieces(C, self._poly, self._inv_h, top, self._uniform)

    def _with_points(self, points):
        new = BSplineBasis(points.shape[0], points.shape[1] - 1, self.k, dtype=points.dtype)
        new.knots = bsplines.extend_knots(points, self.k).to(self.knots.device)
        new._rebuild()
        return new

    def refined(self, size: int):
        """New grid of ``size`` intervals; each old interval split evenly when ``size`` is a
        multiple of the old grid (the knots then nest), else placed along the old grid."""
        pts = bsplines.grid_points(self.knots, self.k)
        G = self.grid
        s = torch.linspace(0, G, size + 1, dtype=pts.dtype, device=pts.device)
        i0 = s.floor().long().clamp(max=G - 1)
        frac = s - i0
        new_pts = pts[:, i0] * (1 - frac) + pts[:, i0 + 1] * frac
        return self._with_points(new_pts)

    def adapted(self, x, eps=0.02):
        """Grid points from the samples' quantiles mixed with a uniform grid (weight eps)."""
        G = self.grid
        xs = torch.sort(x.detach(), dim=0).values
        lo, hi = _sample_range(xs, eps)
        q = torch.linspace(0, 1, G + 1, dtype=x.dtype, device=x.device)
        adaptive = torch.quantile(xs, q, dim=0).T                      # (in, G+1)
        adaptive[:, 0], adaptive[:, -1] = lo, hi
        uniform = lo[:, None] + (hi - lo)[:, None] * q[None, :]
        pts = eps * uniform + (1 - eps) * adaptive
        # keep knots strictly increasing even where samples repeat
        min_gap = (hi - lo)[:, None] * 1e-3 / G
        pts = torch.maximum(pts, torch.cat([pts[:, :1], pts[:, :-1] + min_gap], 1))
        pts = torch.cummax(pts, dim=1).values
        return self._with_points(pts)

    def fit_points(self, per_interval: int = 4):
        pts = bsplines.grid_points(self.knots, self.k)
        G = self.grid
        s = torch.linspace(0, 1, per_interval + 1, dtype=pts.dtype, device=pts.device)[:-1]
        inner = (pts[:, :-1, None] + (pts[:, 1:] - pts[:, :-1])[:, :, None] * s).reshape(pts.shape[0], -1)
        return torch.cat([inner, pts[:, -1:]], 1).T                   # (G*per+1, in)

    def config(self):
        return {"kind": self.kind, "grid": self.grid, "k": self.k}


class _DenseRangeBasis(nn.Module):
    """Dense bases defined on a range [lo, hi] per input (Chebyshev, RBF, Fourier)."""

    def __init__(self, n_in, size, grid_range=(-1.0, 1.0), dtype=None):
        super().__init__()
        if size < 1:
            raise KanpinnError(f"{self.kind} basis needs at least one function, got {size}")
        dtype = dtype or torch.get_default_dtype()
        lo, hi = _range_tensor(grid_range[0], grid_range[1], n_in, dtype)
        self._size = size
        self.register_buffer("lo", lo)
        self.register_buffer("hi", hi)

    @property
    def size(self):
        return self._size

    grid = size

    def _scaled(self, x):
        """Map x to s in [-1, 1] over the range; ds/dx per input."""
        scale = 2.0 / (self.hi - self.lo)
        return (x - self.lo) * scale - 1.0, scale

    def _new(self, size, lo, hi):
        new = type(self)(lo.shape[0], size, dtype=lo.dtype)
        new.lo, new.hi = lo.clone(), hi.clone()
        return new.to(lo.device)

    def refined(self, size):
        return self._new(size, self.lo, self.hi)

    def adapted(self, x, eps=0.02):
        lo, hi = _sample_range(x.detach(), eps)
        return self._new(self.size, lo, hi)

    def fit_points(self, per_interval: int = 4):
        n = per_interval * (self.size + 1) + 1
        s = torch.linspace(0, 1, n, dtype=self.lo.dtype, device=self.lo.device)
        return self.lo[None, :] + (self.hi - self.lo)[None, :] * s[:, None]

    def config(self):
        return {"kind": self.kind, "grid": self.size}


class ChebyshevBasis(_DenseRangeBasis):
    """Chebyshev polynomials T_0..T_{n-1} of the input mapped affinely from the range to
    [-1, 1]. Refining raises the degree (the old polynomial space nests exactly)."""

    kind = "chebyshev"

    def evaluate(self, x, order=0):
        s, ds = self._scaled(x)
        n = self.size
        # derivative r of T_m = 2 s T_{m-1} - T_{m-2}: T^(r)_m = 2 r T^(r-1)_{m-1}
        # + 2 s T^(r)_{m-1} - T^(r)_{m-2}, started from T_0 = 1, T_1 = s
        one, zero = torch.ones_like(s), torch.zeros_like(s)
        rows = [[one, s]] + [[zero, one if r == 1 else zero] for r in range(1, order + 1)]
        for _ in range(2, n):
            for r in range(order, -1, -1):
                prev = 2 * r * rows[r - 1][-1] if r else 0
                rows[r].append(prev + 2 * s * rows[r][-1] - rows[r][-2])
        out, scale = [], torch.ones_like(ds)
        for r in range(order + 1):
            out.append(torch.stack(rows[r][:n], -1) * scale[:, None])
            scale = scale * ds
        return None, out


class RBFBasis(_DenseRangeBasis):
    """Gaussian bumps exp(-((x - c_i)/h)^2) on ``size`` evenly spaced centres over the
    range (FastKAN-style); refining places more, narrower bumps (refit by least squares)."""

    kind = "rbf"

    def evaluate(self, x, order=0):
        s, ds = self._scaled(x)
        n = self.size
        centres = torch.linspace(-1, 1, n, dtype=x.dtype, device=x.device)
        h = 2.0 / max(n - 1, 1)
        z = (s[..., None] - centres) / h
        e = torch.exp(-z * z)
        # d^r/dz^r exp(-z²) = (-1)^r H_r(z) exp(-z²), Hermite H_{r+1} = 2z H_r - 2r H_{r-1}
        out, dz = [], (ds / h)[:, None]
        H_prev, H = torch.zeros_like(z), torch.ones_like(z)
        scale = torch.ones_like(dz)
        for r in range(order + 1):
            out.append((-1) ** r * H * e * scale)
            H_prev, H = H, 2 * z * H - 2 * r * H_prev
            scale = scale * dz
        return None, out


class FourierBasis(_DenseRangeBasis):
    """1, cos(πns), sin(πns) for n = 1..: periodic over twice the range, so a function on
    the range need not be periodic. ``size`` counts all functions; refining adds harmonics
    (the old space nests)."""

    kind = "fourier"

    def evaluate(self, x, order=0):
        s, ds = self._scaled(x)
        n = self.size
        m = torch.arange(1, (n + 1) // 2 + 1, dtype=x.dtype, device=x.device) * (math.pi / 2)
        arg = (s[..., None] + 1) * m
        c, sn = torch.cos(arg), torch.sin(arg)
        one = torch.ones_like(s)[..., None]
        vals = [torch.cat([one, c, sn], -1)[..., :n]]
        w = m * ds[:, None]
        zero = torch.zeros_like(one)
        # each derivative turns (cos, sin) into (-sin, cos) times the frequency
        cr, sr = c, sn
        for _ in range(order):
            cr, sr = -sr * w, cr * w
            vals.append(torch.cat([zero, cr, sr], -1)[..., :n])
        return None, vals


BASES = {"bspline": BSplineBasis, "chebyshev": ChebyshevBasis, "rbf": RBFBasis, "fourier": FourierBasis}


def make_basis(kind: str, n_in: int, grid: int, k: int, grid_range, dtype=None):
    if kind not in BASES:
        raise KanpinnError(f"unknown basis {kind!r}; choose one of {sorted(BASES)}")
    if kind == "bspline":
        return BSplineBasis(n_in, grid, k, grid_range, dtype)
    return BASES[kind](n_in, grid, grid_range, dtype)


def basis_from_config(cfg: dict, n_in: int, dtype=None):
    return make_basis(cfg["kind"], n_in, int(cfg["grid"]), int(cfg.get("k", 3)), (-1.0, 1.0), dtype)
