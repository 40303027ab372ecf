"""Sparsity, pruning and cost accounting for KANs (KAN paper / KAN 2.0 style).

- ``regularization(model, x, ...)``: the KAN paper's sparsity loss (differentiable).
- ``edge_scores(model, x)``: mean |φ| of every edge, per layer.
- ``prune(model, threshold, x)``: a new, smaller KAN without unimportant hidden nodes.
- ``prune_edges(model, threshold, x)``: mask weak edges in place.
- ``flops_per_point(model)``: forward FLOPs per collocation point, for KAN and MLP
  (``kan_flops_per_point`` / ``mlp_flops_per_point``), to report next to parameter counts
  (Yu et al. 2024, "KAN or MLP: a fairer comparison").
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .errors import KanpinnError

__all__ = ["regularization", "edge_scores", "prune", "prune_edges", "flops_per_point",
           "kan_flops_per_point", "mlp_flops_per_point", "node_scores"]


def _require_kan(model, name):
    layers = getattr(model, "layers", None)
    if layers is None or not hasattr(model, "widths") or not all(hasattr(l, "edge_values") for l in layers):
        raise KanpinnError(f"{name} needs a KAN model, got {type(model).__name__}")


def _edge_values_with_inputs(model, x):
    """Per layer: (layer input, edge activations (N, in, out)), keeping the autograd graph.

    The next layer's input is Σ_i φ_io(x_i) (what ``KANLayer.forward`` computes, masks
    and symbolic edges included) followed by the multiplication nodes."""
    model._check_input(x)
    out = []
    for li, layer in enumerate(model.layers):
        phi = layer.edge_values(x)
        out.append((x, phi))
        x = model._mult(li, phi.sum(dim=1))
    return out


# ---------------------------------------------------------------------------- sparsity
def regularization(model, x, l1=1.0, entropy=2.0, coef=0.0, coef_diff=0.0):
    """The KAN paper's sparsity penalty on a batch ``x`` (N, d); a differentiable scalar.

    For every layer, with A_io = mean over the batch of |φ_io(x_i)| (the edge's L1 norm)
    and p_io = A_io / Σ A (its share of the layer's total):

        l1 · Σ_io A_io  +  entropy · (−Σ_io p_io log p_io)

    plus, when asked, ``coef`` · mean |c| and ``coef_diff`` · mean |c_{b+1} − c_b| over the
    spline coefficients of the layer (the latter favours smooth edges). Terms are summed
    over layers. Unlike ``KAN.layer_inputs`` (no grad), the forward pass here keeps the
    graph so the penalty can be added to a training loss.
    """
    _require_kan(model, "regularization")
    total = None
    tiny = torch.finfo(model.layers[0].coef.dtype).tiny
    for layer, (xi, phi) in zip(model.layers, _edge_values_with_inputs(model, x)):
        A = phi.abs().mean(dim=0)                                     # (in, out)
        term = A.new_zeros(())
        if l1:
            term = term + l1 * A.sum()
        if entropy:
            p = A / A.sum().clamp_min(tiny)
            # p log p -> 0 as p -> 0; the epsilon keeps the gradient finite at p = 0
            term = term - entropy * (p * torch.log(p + 1e-12)).sum()
        c = layer.coef
        if coef:
            term = term + coef * c.abs().mean()
        if coef_diff and c.shape[1] > 1:
            term = term + coef_diff * (c[:, 1:, :] - c[:, :-1, :]).abs().mean()
        total = term if total is None else total + term
    return total


# ---------------------------------------------------------------------------- scores
def _grid_samples(layer, n=101):
    """Points spread over each input's basis range: (n, in)."""
    b = layer.basis
    lo, hi = b.lo, b.hi
    s = torch.linspace(0, 1, n, dtype=lo.dtype, device=lo.device)
    return lo[None, :] + (hi - lo)[None, :] * s[:, None]


@torch.no_grad()
def edge_scores(model, x=None):
    """Mean |φ_io| of every edge: list over layers of (in, out) tensors.

    With ``x`` (N, d) the edges are evaluated on the layer inputs that x produces; with
    ``x=None`` each layer's edges are evaluated on points spread evenly over that layer's
    own grid range (no data needed, but then a weak input range counts like a strong one).
    """
    _require_kan(model, "edge_scores")
    if x is not None:
        return [phi.abs().mean(0) for _, phi in _edge_values_with_inputs(model, x)]
    return [layer.edge_values(_grid_samples(layer)).abs().mean(0) for layer in model.layers]


def node_scores(model, x=None):
    """For every hidden node layer l (1..L-1): (incoming, outgoing) scores of its nodes,
    the largest incoming and largest outgoing edge score (multiplication nodes get
    +inf: they are always kept)."""
    scores = edge_scores(model, x)
    out = []
    for l in range(1, len(model.widths) - 1):
        n_sum, n_mult = model.widths[l]
        inc = scores[l - 1][:, :n_sum].amax(dim=0) if n_sum else scores[l - 1].new_zeros(0)
        outg = scores[l][:n_sum, :].amax(dim=1) if n_sum else scores[l].new_zeros(0)
        inf = torch.full((n_mult,), float("inf"), dtype=inc.dtype, device=inc.device)
        out.append((torch.cat([inc, inf]), torch.cat([outg, inf])))
    return out


# ---------------------------------------------------------------------------- pruning
def _select_basis_inputs(basis, idx):
    """A copy of ``basis`` restricted to the input columns ``idx``."""
    new = copy.deepcopy(basis)
    if hasattr(new, "knots"):                       # B-splines: per-input knot vectors
        new.knots = new.knots[idx].clone()
        if hasattr(new, "_rebuild"):
            new._rebuild()
        return new
    for name, buf in list(new.named_buffers(recurse=False)):
        if buf is not None and buf.dim() >= 1 and buf.shape[0] == basis_in_dim(basis):
            setattr(new, name, buf[idx].clone())
    return new


def basis_in_dim(basis):
    if hasattr(basis, "knots"):
        return basis.knots.shape[0]
    return basis.lo.shape[0]


def _slice_layer(layer, in_idx, out_idx):
    """Restrict a KANLayer in place to inputs ``in_idx`` and outputs ``out_idx``."""
    in_list, out_list = in_idx.tolist(), out_idx.tolist()
    with torch.no_grad():
        layer.basis = _select_basis_inputs(layer.basis, in_idx)
        layer.coef = nn.Parameter(layer.coef[in_idx][:, :, out_idx].clone(),
                                  requires_grad=layer.coef.requires_grad)
        layer.scale_base = nn.Parameter(layer.scale_base[in_idx][:, out_idx].clone(),
                                        requires_grad=layer.scale_base.requires_grad)
        layer.scale_sp = nn.Parameter(layer.scale_sp[in_idx][:, out_idx].clone(),
                                      requires_grad=layer.scale_sp.requires_grad)
        layer.mask = layer.mask[in_idx][:, out_idx].clone()
    symbolic = nn.ModuleDict()
    for key, edge in layer.symbolic.items():
        i, o = map(int, key.split("_"))
        if i in in_list and o in out_list:
            symbolic[f"{in_list.index(i)}_{out_list.index(o)}"] = edge
    layer.symbolic = symbolic
    layer.in_dim, layer.out_dim = len(in_list), len(out_list)


def prune(model, threshold=1e-2, x=None):
    """A NEW, smaller KAN without the unimportant hidden sum nodes (the KAN paper's rule).

    A hidden sum node is kept when its largest incoming edge score AND its largest
    outgoing edge score are both above ``threshold``; an edge's score is mean |φ| over the
    layer inputs produced by ``x`` (N, d), or over points spread on each layer's grid
    range when ``x`` is None (see ``edge_scores``). Input and output nodes are never
    removed, and **multiplication nodes are always kept** (with the two sub-nodes that
    feed them): removing one would change the arity of the product. When every node of a
    hidden layer falls below the threshold, the single node with the largest
    min(incoming, outgoing) score is kept so the network stays connected.

    The new model copies the knots, coefficients, scales, masks and symbolic edges of the
    kept edges, so it computes exactly the same outputs when the removed nodes' edges
    were zero, and approximately the same otherwise (each removed node contributes at
    most its outgoing edges' values, below ``threshold`` on average). The original model
    is left untouched.
    """
    _require_kan(model, "prune")
    nodes = node_scores(model, x)
    keep = []                                             # kept node indices per node layer
    for (inc, outg), (n_sum, n_mult) in zip(nodes, model.widths[1:-1]):
        strength = torch.minimum(inc[:n_sum], outg[:n_sum])
        kept = [j for j in range(n_sum) if inc[j] > threshold and outg[j] > threshold]
        if not kept and not n_mult:
            kept = [int(strength.argmax())]
        keep.append(kept)

    new = copy.deepcopy(model)
    widths = list(model.widths)
    for l in range(1, len(widths) - 1):
        n_sum, n_mult = widths[l]
        kept = keep[l - 1]
        # outputs of layer l-1 that feed node layer l: kept sum nodes, then all sub-nodes
        out_idx = kept + list(range(n_sum, n_sum + 2 * n_mult))
        # inputs of layer l: kept sum nodes, then all multiplication nodes
        in_idx = kept + list(range(n_sum, n_sum + n_mult))
        dev = new.layers[l].coef.device
        _slice_layer(new.layers[l - 1], torch.arange(new.layers[l - 1].in_dim, device=dev),
                     torch.tensor(out_idx, dtype=torch.long, device=dev))
        _slice_layer(new.layers[l], torch.tensor(in_idx, dtype=torch.long, device=dev),
                     torch.arange(new.layers[l].out_dim, device=dev))
        widths[l] = (len(kept), n_mult)
    new.widths = widths
    return new


@torch.no_grad()
def prune_edges(model, threshold=1e-2, x=None):
    """Mask, in place, every edge whose score (mean |φ| on x, see ``edge_scores``) is not
    above ``threshold``: its spline and base parts are switched off through ``layer.mask``
    and a symbolic formula on it is removed. Returns the model."""
    _require_kan(model, "prune_edges")
    for layer, score in zip(model.layers, edge_scores(model, x)):
        weak = score <= threshold
        layer.mask[weak] = 0.0
        for i, o in weak.nonzero().tolist():
            if f"{i}_{o}" in layer.symbolic:
                del layer.symbolic[f"{i}_{o}"]
    return model


# ---------------------------------------------------------------------------- FLOPs
# Cost of elementwise functions, in FLOPs, by convention (an exp or a sigmoid counts as a
# few FLOPs, as in Yu et al. 2024); change them here to use another convention.
SILU_FLOPS = 5          # x * sigmoid(x): exp, add, divide, multiply (+1)
TRANSCENDENTAL_FLOPS = 4  # one exp / cos / sin
ACTIVATION_FLOPS = {"tanh": 5, "sin": 5, "silu": 5, "softplus": 5, "gelu": 8}


def _basis_flops(basis):
    """(FLOPs to evaluate the basis for one input value, number of non-zero functions)."""
    kind = getattr(basis, "kind", "bspline")
    n = basis.size
    if kind == "bspline":
        k = basis.k
        # local Cox-de Boor triangle: Σ_{p=1..k} (p+1) values, each ~2 subtractions, a
        # product pair and a sum, rounded to (k+1)^2, plus ~log2(G) to find the interval
        return (k + 1) ** 2, k + 1
    if kind == "chebyshev":
        return 2 + 3 * max(n - 2, 0), n            # affine map + three-term recurrence
    if kind == "rbf":
        return 2 + n * (3 + TRANSCENDENTAL_FLOPS), n   # (s - c)/h, square, exp
    if kind == "fourier":
        return 2 + n * (1 + TRANSCENDENTAL_FLOPS), n   # scaled argument, cos/sin
    return n, n


def kan_flops_per_point(model, per_edge_basis=False):
    """Forward FLOPs per collocation point of a KAN.

    Per layer with ``n_in`` inputs and ``n_out`` outputs, basis with ``w`` non-zero
    functions per input (w = k+1 for B-splines, the basis size for dense bases):

        n_in · (basis + SiLU)  +  n_in · n_out · (2w + 3)

    - basis: (k+1)² for order-k B-splines evaluated locally (only the k+1 non-zero ones),
      the recurrence/exponential cost for Chebyshev/RBF/Fourier (see ``_basis_flops``);
    - SiLU: ``SILU_FLOPS`` per input;
    - per edge: w multiply-adds to combine the coefficients (2w), one multiply-add for the
      base weight (2) and one add into the output node (1).
    Multiplication nodes add one FLOP each. ``per_edge_basis=True`` counts the basis and
    SiLU once per *edge*, as Yu et al. (2024) do for implementations that do not share
    them across an input's outgoing edges; kanpinn evaluates them once per input.
    """
    _require_kan(model, "kan_flops_per_point")
    total = 0
    for li, layer in enumerate(model.layers):
        n_in, n_out = layer.in_dim, layer.out_dim
        basis, w = _basis_flops(layer.basis)
        per_input = basis + SILU_FLOPS
        total += (n_in * n_out if per_edge_basis else n_in) * per_input
        total += n_in * n_out * (2 * w + 3)
        total += model.widths[li + 1][1]
    return int(total)


def mlp_flops_per_point(model):
    """Forward FLOPs per point of an MLP: Σ_layers 2·a·b (matrix product with bias) plus
    ``ACTIVATION_FLOPS[activation]`` per hidden unit."""
    widths = getattr(model, "widths", None)
    if widths is None or not hasattr(model, "linears"):
        raise KanpinnError(f"mlp_flops_per_point needs an MLP model, got {type(model).__name__}")
    act = ACTIVATION_FLOPS.get(getattr(model, "activation", "tanh"), 5)
    total = sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))
    total += act * sum(widths[1:-1])
    return int(total)


def flops_per_point(model, **kwargs):
    """Forward FLOPs per collocation point for a KAN or an MLP (see
    ``kan_flops_per_point`` and ``mlp_flops_per_point`` for the counting)."""
    if hasattr(model, "linears"):
        return mlp_flops_per_point(model)
    if hasattr(model, "layers") and hasattr(model, "widths"):
        return kan_flops_per_point(model, **kwargs)
    raise KanpinnError(f"flops_per_point supports KAN and MLP models, got {type(model).__name__}")


def flops_or_none(model):
    """Forward FLOPs per point: the model's own ``flops_per_point()``, else the KAN/MLP
    count, else None (a model that cannot be counted is shown as "-" in tables)."""
    try:
        method = getattr(model, "flops_per_point", None)
        if callable(method):
            return int(method())
        return int(flops_per_point(model))
    except Exception:  # noqa: BLE001 - counting is informative only
        return None
