"""Per-point parameter Jacobians of PINN residuals from one backward pass.

A residual row r_m depends on the network evaluated at one point (or, for a periodic
condition, on one point per evaluation). Back-propagating Σ_m r_m to each layer's output
therefore yields, at every point, exactly ∂r_m/∂(that layer's output at the point): the
points do not interact. Each layer turns these per-point signals into per-point gradients
of its own parameters by its own rule (``kanpinn.jet.LayerRecord``, recorded inside
``kanpinn.jet.recording()``), so a new layer type gets the structured Jacobian by
recording a rule, without changes here. This gives the full Jacobian for
Levenberg-Marquardt at the cost of about one extra backward pass, where a generic
``torch.func.jacrev`` needs one pass per row (FIELD_NOTES: ~60 s for a small KAN).
"""
from __future__ import annotations

import torch

from ..jet import NotPointwise

__all__ = ["layer_jacobian", "layer_deltas", "NotPointwise"]


def layer_deltas(block: torch.Tensor, records, retain_graph=True):
    """Per record, the gradients of ``block.sum()`` at its outputs (a tuple aligned with
    ``record.outputs``, None where the block does not depend on an output), or None when
    the block depends on none of them."""
    outs = [(ri, oi, o) for ri, rec in enumerate(records) for oi, o in enumerate(rec.outputs)
            if o is not None and o.requires_grad]
    flat = torch.autograd.grad(block.sum(), [o for _, _, o in outs], retain_graph=retain_graph,
                               allow_unused=True) if outs else []
    deltas = [[None] * len(rec.outputs) for rec in records]
    for (ri, oi, _), g in zip(outs, flat):
        deltas[ri][oi] = g
    return [tuple(d) if any(t is not None for t in d) else None for d in deltas]


def layer_jacobian(block: torch.Tensor, records, params, retain_graph=True):
    """Jacobian (M, P) of ``block`` (M,) w.r.t. ``params`` (list of tensors, P numbers in
    all), from the layer ``records`` made while computing it."""
    m = block.shape[0]
    offsets, o = {}, 0
    for p in params:
        offsets[p] = (o, o + p.numel())
        o += p.numel()
    J = block.new_zeros(m, o)
    for rec, deltas in zip(records, layer_deltas(block, records, retain_graph)):
        if deltas is None:
            continue
        if rec.n_points != m:
            raise NotPointwise(f"a residual block of {m} rows depends on an evaluation at "
                               f"{rec.n_points} points")
        with torch.no_grad():
            for p, g in rec.per_point_grads(deltas).items():
                if p in offsets:
                    a, b = offsets[p]
                    J[:, a:b] += g.reshape(m, -1)
    return J
