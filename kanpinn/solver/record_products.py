"""J·v and Jᵀ·u of a PINN residual from the KAN layers' records, J never formed.

Why: the matrix-free step (``matrix_free.py``) needs one J·v and one Jᵀu per CG
iteration. Through autograd J·v is a double backward, and the KAN layer's fused jet node
(``layer_jet``) answers a differentiable backward by re-running its forward under autograd:
the dearest product, and the dearer the more outputs (session 9, docs/navier_stokes.md:
3.6-3.8x a scalar's at equal width). Here both products reuse what the step computes
once:

- the signals ``δ_ℓ`` of every residual block at every layer evaluation's outputs
  (``jacobian.layer_deltas``: one backward per block, as for the structured J). A residual
  row depends on a layer's parameters θ_ℓ only through that layer's outputs at its own
  point, so row m of J·v is Σ_ℓ ⟨δ_ℓ[m], T_ℓ[m]⟩ with T_ℓ = ∂(outputs_ℓ)/∂θ_ℓ · v_ℓ.
- T_ℓ itself: a KAN layer's jet is linear in its effective weights (spline coefficients
  and base weights, ``layer._weights()``), so T_ℓ is the layer's jet at its recorded
  inputs with the weights' tangent in their place (one ``edge_jet`` call, no graph); the
  weights' tangent along v comes from the small, parameter-sized graph of ``_weights``
  (its double backward costs microseconds).
- Jᵀu: Σ_ℓ the backward of the recorded outputs alone with the signals Σ_b u_b·δ_ℓ,b,
  to the layer's own parameters (the fast, non-differentiable backward of the node).

What it relies on: the records of ``kan_layer._Rule`` (its layer and the jet it was
given). Any other record (an MLP layer, a KAN layer with symbolic edges or a jet of order
3-4) raises ``NotPointwise`` and the caller uses autograd's products instead; the caller
also checks the first Jᵀu against autograd's.
"""
from __future__ import annotations

import torch

from ..layer_jet import edge_jet
from .jacobian import NotPointwise, layer_deltas

__all__ = ["RecordProducts"]


class _Layer:
    """One KAN layer's parameters in the parameter vector, and the tangent of its effective
    weights along a direction (shared by all its evaluations)."""
    __slots__ = ("layer", "params", "_wgraph")

    def __init__(self, layer, offsets):
        self.layer = layer
        self.params = [(p, offsets[p]) for p in layer.parameters() if p in offsets]
        self._wgraph = None

    def weight_tangent(self, v):
        """(dc, dwb): the tangent of ``layer._weights()`` along v (double backward on its
        parameter-sized graph, built on first use and kept for the step)."""
        if self._wgraph is None:
            with torch.enable_grad():
                c, wb = self.layer._weights()
                wc = torch.zeros_like(c, requires_grad=True)
                ww = torch.zeros_like(wb, requires_grad=True)
                gs = torch.autograd.grad((c, wb), [p for p, _ in self.params], (wc, ww), create_graph=True,
                                         allow_unused=True)
            self._wgraph = (wc, ww, [(gr, p, span) for gr, (p, span) in zip(gs, self.params)
                                     if gr is not None and gr.requires_grad])
        wc, ww, gs = self._wgraph
        if not gs:
            return torch.zeros_like(wc), torch.zeros_like(ww)
        dc, dwb = torch.autograd.grad([gr for gr, _, _ in gs], [wc, ww],
                                      [v[a:b].view_as(p).to(gr.dtype) for gr, p, (a, b) in gs],
                                      retain_graph=True, allow_unused=True)
        return (torch.zeros_like(wc) if dc is None else dc), (torch.zeros_like(ww) if dwb is None else dwb)


class _Group:
    """The evaluations of one layer with the same kind of jet (interior, a condition's),
    their inputs stacked by points: one tangent evaluation for all of them."""
    __slots__ = ("layer", "identity", "x", "g", "h", "spans")

    def __init__(self, layer, identity, parts):
        self.layer, self.identity = layer, identity
        xs, gs, hs, self.spans, a = [], [], [], [], 0
        for x, g, h in parts:
            xs.append(x)
            gs.append(g)
            hs.append(h)
            self.spans.append((a, a + x.shape[0]))
            a += x.shape[0]
        self.x = torch.cat(xs)
        self.g = None if gs[0] is None else torch.cat(gs)
        self.h = None if hs[0] is None else torch.cat(hs)

    def tangent(self, dc, dwb):
        L = self.layer.layer
        with torch.no_grad():
            return edge_jet(L.basis, self.x, self.g, self.h, dc.reshape(L.in_dim, L.basis.size, L.out_dim),
                            dwb, self.identity)


class RecordProducts:
    """J·v and Jᵀu for residual ``rows`` (a list of blocks, still holding their graph)
    computed inside ``jet.recording()`` (``records``). ``offsets``: parameter ->
    (start, stop) in the parameter vector of length ``n_params``. The blocks' graph is
    not needed afterwards (only the layers' own nodes are kept)."""

    def __init__(self, rows, records, offsets, n_params):
        self.n_params = int(n_params)
        self.starts = [0]
        for b in rows:
            self.starts.append(self.starts[-1] + b.shape[0])
        deltas = [layer_deltas(b, records, retain_graph=True) for b in rows]
        layers, groups = {}, {}
        # per record: (group, index in the group, outputs, [(block, signals)])
        self.items = []
        for ri, rec in enumerate(records):
            users = [(bi, deltas[bi][ri]) for bi in range(len(rows)) if deltas[bi][ri] is not None]
            if not users:
                continue
            for bi, _ in users:
                if rec.n_points != rows[bi].shape[0]:
                    raise NotPointwise(f"a residual block of {rows[bi].shape[0]} rows depends on an evaluation "
                                       f"at {rec.n_points} points")
            layer, x, g, h, identity = _unpack(rec)
            lay = layers.get(id(layer))
            if lay is None:
                lay = layers[id(layer)] = _Layer(layer, offsets)
            key = (id(layer), identity, None if g is None else g.shape[2], h is None)
            parts = groups.setdefault(key, (lay, identity, []))[2]
            parts.append((x, g, h))
            self.items.append((key, len(parts) - 1, rec.outputs, users))
        self.layers = list(layers.values())
        self.groups = {key: _Group(lay, identity, parts) for key, (lay, identity, parts) in groups.items()}
        ref = rows[0]
        self.dtype, self.device = ref.dtype, ref.device

    @property
    def n_rows(self):
        return self.starts[-1]

    def matvec(self, v):
        """J v (rows,)."""
        out = torch.zeros(self.n_rows, dtype=self.dtype, device=self.device)
        v = v.to(self.dtype)
        weights = {id(lay.layer): lay.weight_tangent(v) for lay in self.layers}
        tangents = {key: grp.tangent(*weights[id(grp.layer.layer)]) for key, grp in self.groups.items()}
        for key, i, _, users in self.items:
            a, b = self.groups[key].spans[i]
            T = tangents[key]
            for bi, d in users:
                acc = out[self.starts[bi]:self.starts[bi + 1]]
                for dt, t in zip(d, T):
                    if dt is not None and t is not None:
                        acc += (dt * t[a:b]).reshape(dt.shape[0], -1).sum(1)
        return out

    def rmatvec(self, u):
        """Jᵀ u (n_params,): per layer, one backward from its recorded outputs to its own
        parameters only (each layer's node, not the network below it: one call for all
        layers would also carry the upper layers' signals into the lower layers)."""
        res = torch.zeros(self.n_params, dtype=self.dtype, device=self.device)
        u = u.to(self.dtype)
        per_layer = {}
        for key, _, outputs, users in self.items:
            G = [None] * len(outputs)
            for bi, d in users:
                ub = u[self.starts[bi]:self.starts[bi + 1]]
                for j, dt in enumerate(d):
                    if dt is not None:
                        term = dt * ub.view(-1, *([1] * (dt.dim() - 1)))
                        G[j] = term if G[j] is None else G[j] + term
            outs, gouts = per_layer.setdefault(key[0], ([], []))
            for o, gj in zip(outputs, G):
                if gj is not None:
                    outs.append(o)
                    gouts.append(gj)
        for lay in self.layers:
            outs, gouts = per_layer.get(id(lay.layer), ((), ()))
            if not outs or not lay.params:
                continue
            grads = torch.autograd.grad(outs, [p for p, _ in lay.params], gouts, retain_graph=True,
                                        allow_unused=True)
            for (p, (a, b)), gr in zip(lay.params, grads):
                if gr is not None:
                    res[a:b] += gr.reshape(-1)
        return res


def _unpack(rec):
    """(layer, x, g, h, identity) of a KAN layer's record, detached; a value-only
    evaluation gets a first-order jet of zeros (the same values). NotPointwise for any
    other record."""
    rule = rec.per_point_grads
    layer = getattr(rule, "layer", None)
    args = getattr(rule, "args", None)
    if layer is None or args is None or not hasattr(layer, "_weights"):
        raise NotPointwise("record products: a layer record without a KAN layer's rule")
    if getattr(rule, "higher", ()) or len(getattr(layer, "symbolic", ())):
        raise NotPointwise("record products: symbolic edges or a jet of order 3-4")
    x, g, h, identity = args
    if g is None and not identity:
        g = x.new_zeros(x.shape[0], x.shape[1], 1)
    return (layer, x.detach(), None if g is None else g.detach(), None if h is None else h.detach(),
            bool(identity))
