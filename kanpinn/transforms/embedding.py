"""Input embedding: the problem's box onto the network's grid range, periodic variables
onto circles.

A KAN's grids start on [-1, 1]. Feeding it a box such as t ∈ [0, 5] or x ∈ [0, 100]
directly forces the solver to re-place the grids by refitting the random initial spline
far outside where it was drawn (extrapolated: loss 1e30 at the start, measured). Mapping
every variable affinely onto [-1, 1] keeps the initial network as drawn, whatever the
box. A periodic variable of period L becomes cos(2πk(x - lo)/L), sin(2πk(x - lo)/L) for
k = 1..K: every function of these is periodic with all its derivatives, exactly. A periodic
variable listed in ``even`` keeps the cosines only: every function of them is, besides,
even about the period's centre (and its ends), exactly as every function of both is
periodic. A problem with that mirror symmetry has a solution with it (see
``kanpinn.solver.symmetry``), and the network then spends nothing on the other half.

The jets follow by the chain rule: for the affine map a diagonal scaling of the inner
model's jet; for the harmonics the inner KAN runs on the embedded input's own jet
(``wrapper.run_layers``; ``KAN.propagate`` for the diagonal orders 3 and 4).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import KanpinnError
from .wrapper import ModelWrapper, run_layers, values as _values

__all__ = ["Embedded", "embedded_width"]


def embedded_width(d, periodic, even=()):
    """Inputs of the inner model: one per plain variable, 2K per periodic one (K for one
    listed in ``even``: cosines only)."""
    return d + sum((int(k) if j in even else 2 * int(k)) - 1 for j, k in periodic.items())


class Embedded(ModelWrapper):
    """``inner`` evaluated on the embedded input.

    Args:
        inner: a KAN (or an MLP when nothing is periodic) taking
            ``embedded_width(d, periodic)`` inputs.
        lo, hi: the box (d,) of the problem's variables.
        periodic: {column index: harmonics K} of the periodic variables (period hi - lo).
        even: periodic columns embedded by their cosines alone (u even about the centre
            of [lo, hi] in that variable).

    Example:

    >>> m = Embedded(kp.KAN([2, 5, 1], seed=0), lo=[0, 0], hi=[100, 5])
    >>> m(torch.tensor([[50.0, 2.5]], dtype=torch.float64)).shape
    torch.Size([1, 1])
    """

    def __init__(self, inner, lo, hi, periodic=None, even=()):
        super().__init__(inner)
        lo = np.asarray(lo, dtype=np.float64).reshape(-1)
        hi = np.asarray(hi, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape or not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)) or np.any(hi <= lo):
            raise KanpinnError(f"Embedded: need finite lo < hi of the same length, got lo={lo.tolist()}, hi={hi.tolist()}")
        d = lo.size
        periodic = {int(k): int(v) for k, v in (periodic or {}).items()}
        for j, K in periodic.items():
            if not 0 <= j < d or K < 1:
                raise KanpinnError(f"Embedded: periodic maps a column in 0..{d - 1} to harmonics >= 1, got {j}: {K}")
        self.periodic = dict(sorted(periodic.items()))
        even = sorted({int(j) for j in (even or ())})
        if any(j not in self.periodic for j in even):
            raise KanpinnError(f"Embedded: even lists columns {even}, but only periodic columns "
                               f"{sorted(self.periodic)} can be embedded by cosines alone")
        self.even = tuple(even)
        self.d = d
        want = embedded_width(d, self.periodic, self.even)
        got = getattr(inner, "width_in", want)
        if got != want:
            raise KanpinnError(f"Embedded: the inner model takes {got} inputs but the embedding gives {want} "
                               f"({d} variables, periodic {self.periodic}, even {list(self.even)})")
        if self.periodic and not hasattr(inner, "layers"):
            raise KanpinnError("Embedded: a periodic embedding needs a KAN inside (its jets take the input's jet)")
        dtype = next(inner.parameters()).dtype
        self.register_buffer("lo", torch.tensor(lo, dtype=dtype))
        self.register_buffer("hi", torch.tensor(hi, dtype=dtype))

    @property
    def width_in(self):
        return self.d

    def config(self):
        cfg = {"type": "Embedded", "inner": self.inner.config(),
               "lo": self.lo.tolist(), "hi": self.hi.tolist(),
               "periodic": {str(k): v for k, v in self.periodic.items()}}
        if self.even:
            cfg["even"] = list(self.even)
        return cfg

    def set_input_range(self, lo, hi):
        """Move the box (the solver calls this with the domain's box); the inner model
        keeps seeing [-1, 1]."""
        with torch.no_grad():
            self.lo.copy_(torch.as_tensor(np.array(lo, dtype=np.float64), dtype=self.lo.dtype))
            self.hi.copy_(torch.as_tensor(np.array(hi, dtype=np.float64), dtype=self.hi.dtype))
        return self

    # ------------------------------------------------------------------ the map
    def _map(self, x, order):
        """z (N, dz), gz (N, dz, d), hz (N, dz, d) or None (order < 2)."""
        z, ds = self._map_jet(x, min(max(order, 0), 2))
        if order < 1:
            return z, None, None
        return z, ds[0], (ds[1] if order >= 2 else None)

    def _map_jet(self, x, order):
        """z (N, dz) and its diagonal jet [d1 .. d_order] (each (N, dz, d)): an affine
        column has d1 = 2/L and no higher derivative; cos θ, sin θ of a harmonic
        (θ = w(x - lo)) have r-th derivatives w^r cos(θ + rπ/2), w^r sin(θ + rπ/2)."""
        n = x.shape[0]
        L = self.hi - self.lo
        zs, cols = [], []               # cols: per column of z, (variable, [its r-th derivatives])
        for j in range(self.d):
            xj = x[:, j]
            if j in self.periodic:
                for k in range(1, self.periodic[j] + 1):
                    w = 2 * math.pi * k / L[j]
                    th = w * (xj - self.lo[j])
                    c, s = torch.cos(th), torch.sin(th)
                    # the four-step cycle of d/dθ: cos -> -sin -> -cos -> sin; the r-th
                    # derivatives of cos θ and sin θ are w^r times these
                    cycles = [(c, (-s, -c, s, c))] + ([] if j in self.even else [(s, (c, -s, -c, s))])
                    for z, cycle in cycles:
                        ds_, wr = [], w
                        for r in range(1, order + 1):
                            ds_.append(wr * cycle[(r - 1) % 4])
                            wr = wr * w
                        zs.append(z)
                        cols.append((j, ds_))
            else:
                a = 2.0 / L[j]
                zs.append(a * (xj - self.lo[j]) - 1.0)
                cols.append((j, [a.expand(n)] + [None] * (order - 1)))
        z = torch.stack(zs, 1)
        out = []
        for r in range(order):
            t = x.new_zeros(n, z.shape[1], self.d)
            for row, (j, vs) in enumerate(cols):
                if vs[r] is not None:
                    t[:, row, j] = vs[r]
            out.append(t)
        return z, out

    def inner_inputs(self, x):
        with torch.no_grad():
            return self._map(torch.as_tensor(x, dtype=self.lo.dtype, device=self.lo.device), 0)[0]

    def forward(self, x):
        if x.dim() != 2 or x.shape[1] != self.d:
            raise KanpinnError(f"Embedded: expected input of shape (N, {self.d}), got {tuple(x.shape)}")
        return _values(self.inner)(self._map(x, 0)[0])

    forward_values = forward            # the plain forward (no jet), as KAN/MLP name it

    def forward_jet(self, x, order=2):
        if x.dim() != 2 or x.shape[1] != self.d:
            raise KanpinnError(f"Embedded: expected input of shape (N, {self.d}), got {tuple(x.shape)}")
        if not self.periodic:
            # affine per column: the inner jet (fast first-layer route) scaled by the chain
            # rule, the r-th derivative by a^r (orders 3, 4 when the inner model has them)
            z = self._map(x, 0)[0]
            u, *ds = self.inner.forward_jet(z, order)
            a = 2.0 / (self.hi - self.lo)
            out = [u]
            for r, t in enumerate(ds, start=1):
                for _ in range(r if t is not None else 0):
                    t = t * a               # t·a·a.. as order 2 always did (same rounding)
                out.append(t)
            return tuple(out)
        if order > 2 and callable(getattr(self.inner, "propagate", None)) \
                and not any(layer.symbolic for layer in self.inner.layers):
            # orders 3, 4: the harmonics' own jet through the KAN (Faà di Bruno per axis)
            z, ds = self._map_jet(x, min(order, 4))
            y, ds = self.inner.propagate(z, ds)
            return (y, *ds)
        # order <= 2 (or an inner model that stops there: the operators use autograd beyond)
        z, gz, hz = self._map(x, order)
        return run_layers(self.inner, z, gz, hz if order >= 2 else None)
