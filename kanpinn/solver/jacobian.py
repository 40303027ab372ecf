"""Per-point parameter Jacobians of PINN residuals from one backward pass.

A residual row r_m depends on the network evaluated at one point (or, for a periodic
condition, on one point per evaluation). Back-propagating Σ_m r_m to each layer's output
therefore yields, at every point, exactly ∂r_m/∂(that layer's output at the point): the
points do not interact. Each layer is linear in its own parameters given its (jet) input
rows, so its per-point parameter gradients are small outer products of these signals with
the inputs the layer recorded (``kanpinn.jet.recording``). This gives the full Jacobian
for Levenberg-Marquardt at the cost of about one extra backward pass, where a generic
``torch.func.jacrev`` needs one pass per row (FIELD_NOTES: ~60 s for a small KAN).
"""
from __future__ import annotations

import torch

__all__ = ["layer_jacobian", "NotPointwise"]


class NotPointwise(RuntimeError):
    """The residual couples points (or uses derivatives the jets do not carry)."""


def _kan_jacobian(layer, t, delta):
    """Per-point gradients of a KAN layer's parameters. delta: (J, N, out)."""
    first, B, S = t["first"], t["B"], t["S"]
    n, n_in, w = B.shape[1], B.shape[2], B.shape[3]
    out_dim = layer.out_dim
    nb = layer.basis.size
    # Σ_J over the few jet rows as broadcast products: tiny per-point matrices make a
    # batched matmul slow here
    gl = sum(B[j][..., None] * delta[j][:, None, None, :] for j in range(B.shape[0]))  # (N, in, w, out)
    scale = layer.scale_sp * layer.mask                               # (in, out)
    grads = {}
    if first is None:
        g_coef = gl * scale[None, :, None, :]
        coef_vals = layer.coef[None]                                   # (1, in, nb, out)
    else:
        idx = first[:, :, None] + torch.arange(w, device=first.device)  # (N, in, w)
        g_coef = B.new_zeros(n, n_in, nb, out_dim)
        g_coef.scatter_(2, idx[..., None].expand(n, n_in, w, out_dim), gl * scale[None, :, None, :])
        coef_vals = layer.coef[torch.arange(n_in, device=first.device)[None, :, None], idx]  # (N, in, w, out)
    grads[layer.coef] = g_coef.reshape(n, -1)
    grads[layer.scale_sp] = ((gl * coef_vals).sum(2) * layer.mask).reshape(n, -1)
    gs = sum(S[j][..., None] * delta[j][:, None, :] for j in range(S.shape[0]))
    grads[layer.scale_base] = (gs * layer.mask).reshape(n, -1)
    return grads


def _linear_jacobian(lin, t, delta):
    inp = t["inp"]
    if isinstance(inp, (list, tuple)):
        inp = torch.cat(list(inp), 0)                                 # (J, N, in)
    gw = torch.einsum("jno,jni->noi", delta, inp)
    return {lin.weight: gw.reshape(gw.shape[0], -1), lin.bias: delta[0]}


_RULES = {"kan": _kan_jacobian, "linear": _linear_jacobian}


def layer_jacobian(block: torch.Tensor, records, params, retain_graph=True):
    """Jacobian (M, P) of ``block`` (M,) w.r.t. ``params`` (list of tensors, P numbers in
    all), from the layer ``records`` made while computing it."""
    # a record's "out" (and "inp") may be a list of row groups, each (J_k, N, o)
    parts = [t["out"] if isinstance(t["out"], (list, tuple)) else [t["out"]] for _, _, t in records]
    flat = torch.autograd.grad(block.sum(), [o for group in parts for o in group],
                               retain_graph=retain_graph, allow_unused=True)
    deltas, i = [], 0
    for group in parts:
        ds = flat[i:i + len(group)]
        i += len(group)
        if all(dd is None for dd in ds):
            deltas.append(None)
        else:
            deltas.append(torch.cat([dd if dd is not None else torch.zeros_like(o)
                                     for dd, o in zip(ds, group)], 0))
    m = block.shape[0]
    offsets, o = {}, 0
    for p in params:
        offsets[p] = (o, o + p.numel())
        o += p.numel()
    J = block.new_zeros(m, o)
    for (kind, module, t), delta in zip(records, deltas):
        if delta is None:
            continue
        if delta.shape[1] != m:
            raise NotPointwise(f"a residual block of {m} rows depends on an evaluation at "
                               f"{delta.shape[1]} points")
        if getattr(module, "symbolic", None):
            raise NotPointwise("symbolic edges are not covered by the structured Jacobian")
        with torch.no_grad():
            grads = _RULES[kind](module, t, delta)
            for p, g in grads.items():
                if p in offsets:
                    a, b = offsets[p]
                    J[:, a:b] += g
    return J
