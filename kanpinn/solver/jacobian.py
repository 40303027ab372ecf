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
from ..local_columns import LocalColumns

__all__ = ["layer_jacobian", "stacked_jacobian", "layer_deltas", "NotPointwise"]


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


def _offsets(params):
    offsets, o = {}, 0
    for p in params:
        offsets[p] = (o, o + p.numel())
        o += p.numel()
    return offsets, o


def layer_jacobian(block: torch.Tensor, records, params, retain_graph=True):
    """Jacobian (M, P) of ``block`` (M,) w.r.t. ``params`` (list of tensors, P numbers in
    all), from the layer ``records`` made while computing it (one block, one rule call per
    record: the reference that ``stacked_jacobian`` is tested against)."""
    m = block.shape[0]
    offsets, o = _offsets(params)
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


def stacked_jacobian(blocks, records, params, extra_columns=0, out=None):
    """The Jacobian of all ``blocks`` stacked, (Σ M_b, P + extra_columns), in one tensor
    (the ``extra_columns`` are zero, left for the caller, e.g. LM's inverse-problem
    columns). One backward pass per block gives its signals at the layer outputs; then
    each record's rule runs once for all the blocks that depend on it when the layer
    takes stacked signals (``LayerRecord.stacked``): a system's residual blocks share the
    interior evaluation, so its basis values and small products are formed once, not
    once per equation (cavity, KAN [2,12,3]: three momentum/continuity blocks).

    J is stored column-major (a transposed view of a (P, M) tensor): the Gauss-Newton
    product of a system gathers its non-zero columns (``gram.gram_live``), and a column of
    a column-major J is one contiguous copy. Each (block, parameter) region is written
    once by copy (added to when a second evaluation reaches it, e.g. a periodic
    condition) and only the regions no rule writes are zeroed: J is the largest tensor
    of an LM step, and zeroing it all first cost as much as a rule's work (cavity,
    3801 x 900: ~30 ms of a ~450 ms step on the shared box). ``out``: a J of an earlier
    call to write into when it has the right shape (LM keeps its J from step to step:
    a fresh J of tens of MB costs its page faults again at every step, measured as much
    as writing it).

    A rule with a ``local`` method (a KAN layer's, ``kan_layer._Rule``) is called through
    it: its B-spline coefficient gradients come as ``LocalColumns`` and are written
    into J by a zero fill and one scatter of the k+1 non-zero basis functions per point
    and input, not through a dense (N, in·nb·out) tensor copied into J (at [2,20,m] k=5
    G=20 that tensor and its copy were ~310 ms of an ~810 ms J build)."""
    offsets, n_params = _offsets(params)
    starts, r0 = [], 0
    for b in blocks:
        starts.append(r0)
        r0 += b.shape[0]
    shape = (r0, n_params + int(extra_columns))
    if (out is not None and tuple(out.shape) == shape and out.stride() == (1, r0) and out.dtype == blocks[0].dtype
            and out.device == blocks[0].device):
        J = out
    else:
        J = blocks[0].new_empty(shape[::-1]).T
    written = set()
    deltas = [layer_deltas(b, records, retain_graph=i < len(blocks) - 1) for i, b in enumerate(blocks)]
    for ri, rec in enumerate(records):
        users = [i for i in range(len(blocks)) if deltas[i][ri] is not None]
        for i in users:
            if rec.n_points != blocks[i].shape[0]:
                raise NotPointwise(f"a residual block of {blocks[i].shape[0]} rows depends on an evaluation at "
                                   f"{rec.n_points} points")
        groups = [users] if rec.stacked and len(users) > 1 else [[i] for i in users]
        # a rule that can give its gradients as columns local to each point (a KAN layer's
        # B-spline coefficients: k+1 of nb basis functions) writes them straight into J
        rule = getattr(rec.per_point_grads, "local", rec.per_point_grads)
        with torch.no_grad():
            for group in groups:
                if len(group) == 1:
                    grads = rule(deltas[group[0]][ri])
                    single = True
                else:
                    grads = rule(_stack([deltas[i][ri] for i in group]))
                    single = False
                for p, g in grads.items():
                    if p not in offsets:
                        continue
                    a, b = offsets[p]
                    for k, i in enumerate(group):
                        m = blocks[i].shape[0]
                        region = J[starts[i]:starts[i] + m, a:b]
                        add = (i, id(p)) in written
                        written.add((i, id(p)))
                        if isinstance(g, LocalColumns):
                            g.write(region, None if single else k, add=add)
                        elif add:
                            region.add_((g if single else g[k]).reshape(m, -1))
                        else:
                            region.copy_((g if single else g[k]).reshape(m, -1))
    with torch.no_grad():
        for i, blk in enumerate(blocks):
            for p, (a, b) in offsets.items():
                if (i, id(p)) not in written:
                    J[starts[i]:starts[i] + blk.shape[0], a:b].zero_()
        J[:, n_params:].zero_()
    return J


def _stack(per_block):
    """The signals of several blocks at one record's outputs, stacked (B, ...) per output;
    a block that does not reach an output contributes zeros there."""
    out = []
    for j in range(len(per_block[0])):
        ds = [d[j] for d in per_block]
        ref = next((d for d in ds if d is not None), None)
        out.append(None if ref is None else torch.stack([d if d is not None else torch.zeros_like(ref) for d in ds]))
    return tuple(out)
