"""Knot placement that follows the solution's variation (a moving-mesh rule for KAN grids).

pykan's grid update places knots at the quantiles of the layer's *inputs*: on uniform
collocation points the first layer's grid stays uniform, and a shock of width 1e-2 falls
between two knots of a G = 20 grid. A moving mesh equidistributes a monitor instead
(de Boor 1973; Huang & Russell 2011): here the knots of each first-layer input z_i sit
at the quantiles of the density

    ρ_i(z_i) ∝ c + E[ |∂N/∂z_i| / mean|∂N/∂z_i| | z_i ],

N the KAN's output. ``c`` sets the share of knots that stay uniform (c / (1 + c)):
mixing densities (not knot positions, as ``grid_eps`` does) lets knots cluster
without bound where the solution is steep, while the rest of the domain keeps its share.
The layer is refitted by least squares, so the function is kept (within fit error)
and the optimiser continues from it.
"""
from __future__ import annotations

import torch

from ..errors import KanpinnError
from ..transforms.wrapper import innermost
from .hooks import Hook

__all__ = ["VariationKnots", "monitor_samples", "place_first_layer"]


def monitor_samples(z, weights, n):
    """Samples (n, d) whose column i has the density of z_i weighted by ``weights[:, i]``
    (the inverse of each weighted empirical CDF at n evenly spaced levels; deterministic)."""
    if z.shape != weights.shape:
        raise KanpinnError(f"monitor_samples: z {tuple(z.shape)} and weights {tuple(weights.shape)} differ")
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise KanpinnError("monitor_samples: weights must be finite and non-negative")
    order = torch.argsort(z, dim=0)
    zs = torch.gather(z, 0, order)
    ws = torch.gather(weights, 0, order)
    cdf = torch.cumsum(ws, 0)
    cdf = (cdf - cdf[:1]) / (cdf[-1:] - cdf[:1]).clamp_min(1e-300)        # 0 at min, 1 at max
    levels = torch.linspace(0, 1, n, dtype=z.dtype, device=z.device)
    cols = []
    for i in range(z.shape[1]):
        idx = torch.searchsorted(cdf[:, i].contiguous(), levels).clamp(1, z.shape[0] - 1)
        c0, c1 = cdf[idx - 1, i], cdf[idx, i]
        s = ((levels - c0) / (c1 - c0).clamp_min(1e-300)).clamp(0, 1)
        cols.append(zs[idx - 1, i] + s * (zs[idx, i] - zs[idx - 1, i]))
    return torch.stack(cols, 1)


def place_first_layer(model, x, uniform=1.0, power=1.0):
    """Re-place the first-layer knots of the KAN inside ``model`` by the monitor
    c + |∂N/∂z_i|^power (normalised to mean 1), c = ``uniform``, and refit the layer.
    Returns the new knot points (d, G + 1)."""
    if not uniform > 0:
        raise KanpinnError(f"place_first_layer: uniform must be positive, got {uniform!r}")
    kan, z = innermost(model, x)
    if not (hasattr(kan, "layers") and hasattr(kan, "forward_jet")):
        raise KanpinnError(f"knot placement needs a KAN, got {type(kan).__name__}")
    layer = kan.layers[0]
    if getattr(layer.basis, "kind", None) != "bspline":
        raise KanpinnError("knot placement needs a B-spline basis (knots to move)")
    z = z.detach()
    with torch.no_grad():
        _, g, _ = kan.forward_jet(z, 1)
        mirror = _mirror_between(model, kan)
        if mirror is not None:
            # u sees only the network's part of the mirror's parity: the monitor follows
            # that part (the other is arbitrary), and its knots come out symmetric
            zr = mirror.reflect(z)
            _, gr, _ = kan.forward_jet(zr, 1)
            flip = torch.ones(z.shape[1], dtype=z.dtype, device=z.device)
            flip[mirror.col] = -1.0
            g = 0.5 * (g + mirror.sign * gr * flip)
            z, g = torch.cat([z, zr]), torch.cat([g, g])
        speed = g.abs().sum(1) ** float(power)                         # (N, d)
        speed = speed / speed.mean(0, keepdim=True).clamp_min(1e-300)
        samples = monitor_samples(z, float(uniform) + speed, max(8 * layer.basis.grid, 1024))
        new = layer.basis.adapted(samples, 0.0)
        layer.refit(new, z)
    from .. import bsplines
    return bsplines.grid_points(new.knots, new.k)


def _mirror_between(model, kan):
    """The ``transforms.Mirror`` in the wrapper chain when the KAN sees the mirror's own
    inputs (no embedding between them), else None."""
    from ..transforms.mirror import Mirror
    m, found = model, None
    while hasattr(m, "inner") and m is not kan:
        if isinstance(m, Mirror):
            found = m
        elif found is not None:
            return None                 # an embedding between the mirror and the KAN
        m = m.inner
    return found


class VariationKnots(Hook):
    """Hook: at every grid stage after the first (the first has no solution to follow
    yet), place the first-layer knots by the solution's variation (``place_first_layer``).

    Args:
        uniform: c in the monitor c + |∂N/∂z|/mean (share of uniform knots c / (1 + c)).
        power: exponent of the speed in the monitor.
        first_stage: the first stage (0-based) at which knots move.
        damping: None, or the Levenberg-Marquardt damping λ each moved stage starts from
            (a fresh grid with gathered knots has directions its points barely see, and
            LM's default start 1e-3 stepped into them: forward Burgers in auto mode,
            180 s, fresh-point guard on, seeds 0/1: 1.9e-3 / 7.9e-2 with the default,
            1.1e-3 / 5.0e-3 starting from 1).
    """

    def __init__(self, uniform=1.0, power=1.0, first_stage=1, damping=None):
        if not float(uniform) > 0:
            raise KanpinnError(f"VariationKnots: uniform must be positive, got {uniform!r}")
        if not float(power) > 0:
            raise KanpinnError(f"VariationKnots: power must be positive, got {power!r}")
        if damping is not None and not float(damping) > 0:
            raise KanpinnError(f"VariationKnots: damping must be positive or None, got {damping!r}")
        self.uniform, self.power, self.first_stage = float(uniform), float(power), int(first_stage)
        self.damping = None if damping is None else float(damping)

    def on_stage_start(self, run):
        if run.stage < self.first_stage or run.step_in_stage:
            return                      # a resumed stage keeps the knots it was saved with
        place_first_layer(run.model, run.colloc.all_interior(), self.uniform, self.power)
        run.opt_state = None if self.damping is None else {"lm": {"lam": self.damping, "nu": 2.0}}
