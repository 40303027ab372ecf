"""Exact mirror symmetry: u(x) = (N(x) + s·N(Rx)) / 2.

R reflects one input column about a centre (x_c -> 2c - x_c), s = +1 makes u even in
that variable and s = -1 odd. When a problem is invariant under the reflection (the
residual, the domain and every condition; ``kanpinn.solver.symmetry`` tests this) and its
solution is unique, the solution has that parity, so the network only has to represent
functions that have it: a front the symmetry places on the mirror line (Burgers' shock at
x = 0) cannot drift off it, which is what a PINN's loss otherwise cannot see (a front
narrower than the point spacing fits the points equally well a little to the side).

The jet follows from the chain rule: with y = Rx, ∂/∂x_c = -∂/∂y_c and ∂²/∂x_c² =
∂²/∂y_c², the other columns unchanged. The inner network is evaluated twice, at x and at
Rx, each on the same number of points, so Levenberg-Marquardt's structured Jacobian (one
record per evaluation, summed) applies unchanged.
"""
from __future__ import annotations

import torch

from ..errors import KanpinnError
from .wrapper import ModelWrapper, values

__all__ = ["Mirror"]


class Mirror(ModelWrapper):
    """u(x) = (inner(x) + sign·inner(Rx)) / 2, R: column ``col`` reflected about ``centre``."""

    def __init__(self, inner, col, centre, sign):
        super().__init__(inner)
        if isinstance(col, bool) or not isinstance(col, int) or col < 0:
            raise KanpinnError(f"Mirror: col must be a column index >= 0, got {col!r}")
        if float(sign) not in (1.0, -1.0):
            raise KanpinnError(f"Mirror: sign must be +1 (even) or -1 (odd), got {sign!r}")
        width = getattr(inner, "width_in", None)
        if width is not None and col >= width:
            raise KanpinnError(f"Mirror: column {col} outside the model's {width} inputs")
        self.col, self.centre, self.sign = col, float(centre), float(sign)

    @property
    def width_in(self):
        return getattr(self.inner, "width_in", None)

    def config(self):
        return {"type": "Mirror", "inner": self.inner.config(), "col": self.col, "centre": self.centre,
                "sign": self.sign}

    def set_input_range(self, lo, hi):
        if hasattr(self.inner, "set_input_range"):
            self.inner.set_input_range(lo, hi)
        return self

    def inner_inputs(self, x):
        return x                        # the network sees x (and Rx, the same box)

    def reflect(self, x):
        if x.shape[1] <= self.col:
            raise KanpinnError(f"Mirror: input has {x.shape[1]} columns, column {self.col} reflected")
        cols = list(x.unbind(1))
        cols[self.col] = 2.0 * self.centre - cols[self.col]
        return torch.stack(cols, 1)

    def forward(self, x):
        f = values(self.inner)
        return 0.5 * (f(x) + self.sign * f(self.reflect(x)))

    forward_values = forward

    def forward_jet(self, x, order=2):
        """The two evaluations' jets: d^r/dx_c^r of f(Rx) is (-1)^r f^(r) along the
        reflected column c, so odd orders flip there (any order the inner model gives)."""
        y1, *d1 = self.inner.forward_jet(x, order)
        y2, *d2 = self.inner.forward_jet(self.reflect(x), order)
        flip = torch.ones(x.shape[1], dtype=x.dtype, device=x.device)
        flip[self.col] = -1.0
        out = [0.5 * (y1 + self.sign * y2)]
        for r, (a, b) in enumerate(zip(d1, d2), start=1):
            if a is None or b is None:
                out.append(None)
            else:
                out.append(0.5 * (a + self.sign * b * flip) if r % 2 else 0.5 * (a + self.sign * b))
        return tuple(out)
