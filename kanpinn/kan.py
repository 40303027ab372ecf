"""Kolmogorov-Arnold Networks (Liu et al. 2024) with KAN 2.0 multiplication nodes.

Widths are in bracket notation: ``[2, 5, 1]`` has 2 inputs, 5 hidden sum nodes and one
output. An entry ``[n_sum, n_mult]`` holds n_sum sum nodes and n_mult multiplication
nodes; each multiplication node is the product of two sub-nodes fed by the layer before
(MultKAN, arity 2), so ``KAN([2, [0, 1], 1])`` can represent sin(πx)·sin(πy) exactly.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import jet as jets
from .errors import KanpinnError, check_model_input
from .bases import BASES, make_basis
from .kan_layer import KANLayer
from .options import check_kan_arguments

__all__ = ["KAN", "parse_widths"]

# Hidden grids at initialisation (KAN._contain_hidden_inputs): the inputs a hidden layer
# sees are probed at these many Sobol points inside the first layer's box, as many again
# spread over its faces (at most 256 a face: edges steepen near the box's ends, a Chebyshev
# T_n has slope n² there, and interior points alone missed extremes by 0.25) and its
# corners in up to this many dimensions; a grid that does not hold them is widened to
# their range plus this fraction of their spread on each side (room for the points the
# probe misses). Cost: 10 ms for KAN([2, 5, 1]), 0.13 s for KAN([10, 64, 64, 1]) (load 2)
_PROBE_POINTS = 2048
_PROBE_CORNER_DIMS = 8
_PROBE_MARGIN = 0.1


def parse_widths(widths):
    """Bracket notation -> list of (n_sum, n_mult) per node layer."""
    if not isinstance(widths, (list, tuple)) or len(widths) < 2:
        raise KanpinnError(f"widths must be a list of at least two layer sizes, got {widths!r}")
    out = []
    for w in widths:
        if isinstance(w, (list, tuple)):
            if len(w) != 2:
                raise KanpinnError(f"a width entry [n_sum, n_mult] has two numbers, got {w!r}")
            n_sum, n_mult = (int(v) for v in w)
        else:
            n_sum, n_mult = int(w), 0
        if n_sum < 0 or n_mult < 0 or n_sum + n_mult < 1:
            raise KanpinnError(f"each layer needs at least one node, got {w!r} in {widths!r}")
        out.append((n_sum, n_mult))
    if out[0][1]:
        raise KanpinnError("the input layer cannot hold multiplication nodes")
    return out


def _probe_points(lo, hi):
    """(n, d) deterministic points spread over the box [lo, hi]: a Sobol sequence inside and
    on every face, and the box's corners when there are few (the extremes of a layer's
    separable sums)."""
    d = lo.shape[0]
    parts = [torch.quasirandom.SobolEngine(d, scramble=False).draw(_PROBE_POINTS, dtype=torch.float64)]
    if d > 1:
        n_face = min(256, _PROBE_POINTS // (2 * d))
        face = torch.quasirandom.SobolEngine(d - 1, scramble=False).draw(n_face, dtype=torch.float64)
        for j in range(d):
            for end in (0.0, 1.0):
                parts.append(torch.cat([face[:, :j], torch.full_like(face[:, :1], end), face[:, j:]], 1))
    if d <= _PROBE_CORNER_DIMS:
        parts.append(((torch.arange(2 ** d)[:, None] >> torch.arange(d)) & 1).to(torch.float64))
    u = torch.cat(parts)
    u = u.to(device=lo.device, dtype=lo.dtype)
    return lo + (hi - lo) * u


def _widen_to_hold(layer, x):
    """Give ``layer`` a uniform grid over its old range and the range of x (N, in) with a
    margin, in the columns where x with that margin leaves the grid (a probe that comes
    close to an end may miss points beyond it); the coefficients are kept."""
    basis = layer.basis
    margin = _PROBE_MARGIN * (x.max(0).values - x.min(0).values)
    x_lo, x_hi = x.min(0).values - margin, x.max(0).values + margin
    out = (x_lo < basis.lo) | (x_hi > basis.hi)
    if not bool(out.any()):
        return
    lo = torch.where(out, torch.minimum(basis.lo, x_lo), basis.lo)
    hi = torch.where(out, torch.maximum(basis.hi, x_hi), basis.hi)
    # eps = 1: the uniform grid on the corners' range (set_input_range places it the same way)
    new = basis.adapted(torch.stack([lo, hi]), 1.0).to(layer.coef.device)
    if "knots" in new.state_dict():
        # the columns that stay keep their knots bit for bit, not a rounding-level rebuild
        # (loading rebuilds the basis' tables)
        new.load_state_dict({"knots": torch.where(out[:, None], new.knots, basis.knots)})
    layer.basis = new


class KAN(nn.Module):
    """A KAN. Input (N, widths[0]) -> output (N, widths[-1]).

    Args:
        widths: bracket notation, e.g. ``[2, 10, 1]`` or ``[2, [0, 1], 1]``.
        grid: intervals per edge (G); k: spline order; basis: "bspline", "chebyshev",
        "rbf" or "fourier"; grid_range: initial input range of every layer;
        grid_eps: weight of the uniform grid in ``update_grid`` (0 = pure quantiles);
        seed: makes the initialisation repeatable.

    Example:

    >>> model = kp.KAN([2, 10, 1], grid=5, k=3, seed=0)
    >>> model(torch.rand(100, 2)).shape      # (N, 2) -> (N, 1)
    torch.Size([100, 1])
    >>> x = torch.rand(50, 2) * 2 - 1
    >>> model = model.extend_grid(10, x)     # finer grid (G = 10), same function
    >>> kp.KAN([2, [0, 1], 1])(torch.rand(4, 2)).shape   # one multiplication node
    torch.Size([4, 1])
    """

    def __init__(self, widths, grid=5, k=3, basis="bspline", grid_range=(-1.0, 1.0),
                 grid_eps=1.0, noise_scale=0.1, seed=None, dtype=None):
        super().__init__()
        # checked at the door: a bad argument names itself, not a failure deep in a layer
        a = check_kan_arguments(widths, grid, k, basis, grid_range, grid_eps, noise_scale, seed, dtype, BASES)
        widths, grid, k, seed, dtype = a["widths"], a["grid"], a["k"], a["seed"], a["dtype"]
        self.widths = parse_widths(widths)
        self.k, self.basis_kind, self.grid_eps = int(k), basis, float(grid_eps)
        self.noise_scale = noise_scale
        # None: kp.solve seeds the initialisation from its own seed (repeatable runs)
        self.init_seed = seed
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        layers = []
        for (s_in, m_in), (s_out, m_out) in zip(self.widths[:-1], self.widths[1:]):
            layers.append(KANLayer(s_in + m_in, s_out + 2 * m_out, grid=grid, k=k, basis=basis,
                                   grid_range=grid_range, noise_scale=noise_scale,
                                   dtype=dtype, generator=gen))
        self.layers = nn.ModuleList(layers)
        self.grid_range = tuple(grid_range)
        self._contain_hidden_inputs()

    def reset_parameters(self, seed=None):
        """Re-draw every layer's initialisation. The first layer's grid (the domain, see
        ``set_input_range``) is kept; the hidden layers' grids go back to the constructor's
        uniform grids and are placed again for the new draw, so the model is a function of
        the seed alone: ``KAN(w, seed=s)`` and ``KAN(w).reset_parameters(seed=s)`` are equal."""
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        for li, layer in enumerate(self.layers):
            layer.reset_parameters(gen)
            if li:
                b = layer.basis
                layer.basis = make_basis(self.basis_kind, layer.in_dim, b.grid, self.k, self.grid_range,
                                         layer.coef.dtype).to(layer.coef.device)
        self._contain_hidden_inputs()
        return self

    @torch.no_grad()
    def _contain_hidden_inputs(self):
        """Widen each hidden layer's grid, column by column, where the inputs it takes for
        inputs spread over the first layer's grid, with a margin, leave it.

        Why: outside its grid a B-spline edge continues its end polynomial, which with random
        coefficients grows like (distance / interval width)^k; the He-scaled base weights
        let a hidden layer's inputs (sums of the previous edges) reach 2-3x the grid range,
        so a fine grid amplifies them (KAN([2, 32, 32, 1], grid=20) gave outputs of 1e8) and
        the next layer again. Widening (a new uniform grid, the same coefficients: the edge
        is stretched, not extrapolated) keeps the draw's statistics; a column whose inputs
        stay inside with the margin keeps its grid bit for bit, so models that were fine
        start as before. Scaling the weights down instead would shrink every activation
        with depth. The probe is deterministic (Sobol points, no random numbers), so the
        grids are a function of the draw."""
        if len(self.layers) < 2:
            return                      # no hidden layer
        first = self.layers[0]
        x = _probe_points(first.basis.lo, first.basis.hi)
        for li, layer in enumerate(self.layers):
            if li:
                _widen_to_hold(layer, x)
            if li < len(self.layers) - 1:
                x = self._mult(li, layer(x))

    # ------------------------------------------------------------------ structure
    @property
    def width_in(self) -> int:
        return self.widths[0][0]

    @property
    def width_out(self) -> int:
        s, m = self.widths[-1]
        return s + m

    @property
    def grid(self) -> int:
        return self.layers[0].basis.grid

    def config(self) -> dict:
        return {"type": "KAN", "widths": [[s, m] if m else s for s, m in self.widths],
                "grid": [layer.basis.grid for layer in self.layers], "k": self.k,
                "basis": self.basis_kind, "grid_eps": self.grid_eps, "grid_range": list(self.grid_range),
                "symbolic": [{key: {"name": e.name, "expr": str(e.f_expr)} for key, e in layer.symbolic.items()}
                             for layer in self.layers]}

    def _mult(self, li, y):
        """Apply the multiplication nodes of node layer li+1 to layer li's output."""
        n_sum, n_mult = self.widths[li + 1]
        if not n_mult:
            return y
        prod = y[:, n_sum::2] * y[:, n_sum + 1::2]
        return torch.cat([y[:, :n_sum], prod], 1)

    def _mult_jet(self, li, y, g, h):
        n_sum, n_mult = self.widths[li + 1]
        if not n_mult:
            return y, g, h
        a, b = slice(n_sum, None, 2), slice(n_sum + 1, None, 2)
        p, gp, hp = jets.product(y[:, a], g[:, a], None if h is None else h[:, a],
                                 y[:, b], g[:, b], None if h is None else h[:, b])
        cat = lambda s, t: None if s is None else torch.cat([s[:, :n_sum], t], 1)
        return cat(y, p), cat(g, gp), cat(h, hp)

    def _check_input(self, x):
        check_model_input("KAN", x, self.width_in, next(self.parameters()))

    # ------------------------------------------------------------------ evaluation
    def forward(self, x):
        """x: (N, widths[0]) -> (N, width_out).

        When x requires grad (a PDE loss will differentiate the output) and grad is
        enabled, the output comes from ``forward_jet`` with its jet attached
        (``kanpinn.jet.evaluate``): ``kp.grad``/``kp.laplacian`` of it, of its columns or
        of expressions of them then read the jet, so a user's own training loop runs as
        fast as the solver's closure. Otherwise it is ``forward_values``."""
        if isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled():
            return jets.evaluate(self, x, 2)
        return self.forward_values(x)

    def forward_values(self, x):
        """The output without derivatives: (N, widths[0]) -> (N, width_out)."""
        self._check_input(x)
        if x.shape[0] == 0:
            return self._empty(x)
        y = jets.strip(x)
        for li, layer in enumerate(self.layers):
            y = self._mult(li, layer(y))
        return y

    def forward_jet(self, x, order=2):
        """Value, gradient (N, m, d) and Hessian diagonal (N, m, d) w.r.t. x; for
        ``order`` 3 or 4 also the diagonal third (and fourth) derivatives (N, m, d)
        (``kanpinn.jet``, "Orders 3 and 4"; B-splines need k >= order; a KAN with
        symbolic edges stops at order 2 and autograd serves the rest)."""
        self._check_input(x)
        if order > 2 and any(layer.symbolic for layer in self.layers):
            order = 2
        order = min(order, jets.MAX_ORDER)
        if x.shape[0] == 0:
            d = x.shape[1]
            z = x.new_zeros(0, self.width_out, d)
            return (self._empty(x), z, (None if order < 2 else z), *([z] * (order - 2)))
        if order > 2:
            g, h, hi = jets.identity_jet(x, order)
            y, ds = self.propagate(x, [g, h, *hi], identity=True)
            return (y, *ds)
        g, h = jets.identity_jet(x, order)
        y = x
        for li, layer in enumerate(self.layers):
            y, g, h = layer.forward_jet(y, g, h, identity_input=(li == 0))
            y, g, h = self._mult_jet(li, y, g, h)
        return y, g, h

    def propagate(self, z, ds, identity=False):
        """(y, [d1 .. dK]): the layers applied to an input z (N, in) whose diagonal jet
        ds = [g, h, t3, (t4)] (each (N, in, d)) is given, for K = len(ds) >= 3 (orders
        1 and 2 take ``forward_jet``'s own route). ``identity``: z is the network input
        (ds the identity's jet). Each edge is univariate, so Faà di Bruno per axis is
        exact for the diagonal derivatives."""
        y = z
        for li, layer in enumerate(self.layers):
            y, *ds = layer.forward_jet(y, ds[0], ds[1], identity_input=identity and li == 0, higher=ds[2:])
            y, ds = self._mult_jet_high(li, y, ds)
        return y, ds

    def _mult_jet_high(self, li, y, ds):
        """``_mult_jet`` for a jet of any order (Leibniz)."""
        n_sum, n_mult = self.widths[li + 1]
        if not n_mult:
            return y, ds
        a, b = slice(n_sum, None, 2), slice(n_sum + 1, None, 2)
        prods = jets.leibniz(y[:, a, None], [t[:, a] for t in ds], y[:, b, None], [t[:, b] for t in ds])
        y = torch.cat([y[:, :n_sum], y[:, a] * y[:, b]], 1)
        return y, [torch.cat([t[:, :n_sum], p], 1) for t, p in zip(ds, prods)]

    def _empty(self, x):
        """The (0, width_out) output of an empty batch, still attached to x and to the
        parameters (a loss summed over it is a differentiable 0). The layers' reshapes
        cannot infer their sizes from zero rows, so an empty batch never reaches them."""
        anchor = sum(p.reshape(-1)[:1].sum() for p in self.parameters()) * 0
        return jets.strip(x)[:, :1].expand(0, self.width_out) * 0 + anchor

    def layer_inputs(self, x):
        """Inputs of every layer for x: list of (N, in_l) tensors (detached)."""
        self._check_input(x)
        ins = []
        with torch.no_grad():
            for li, layer in enumerate(self.layers):
                ins.append(x)
                x = self._mult(li, layer(x))
        return ins

    def edge_activations(self, x):
        """Per layer, every edge's activation φ(x_i): list of (N, in_l, out_l)."""
        ins = self.layer_inputs(x)
        return [layer.edge_values(xi) for layer, xi in zip(self.layers, ins)]

    # ------------------------------------------------------------------ grids
    def update_grid(self, x):
        """Re-place every layer's grid for samples x (N, d) (quantiles mixed with a uniform
        grid by ``grid_eps``) and refit so each edge keeps its function (within fit error)."""
        self._check_input(x)
        with torch.no_grad():
            for li, layer in enumerate(self.layers):
                new = layer.basis.adapted(x, self.grid_eps)
                layer.refit(new, x)
                x = self._mult(li, layer(x))
        return self

    def extend_grid(self, new_grid, x=None):
        """Refine every layer to ``new_grid`` intervals by least squares. The coarse spline
        space nests in the fine one (each interval is split evenly when new_grid is a
        multiple of the old), so the function is kept to rounding error inside the grid."""
        new_grid = int(new_grid)
        if new_grid < 1:
            raise KanpinnError(f"new_grid must be a positive integer, got {new_grid}")
        ins = self.layer_inputs(x) if x is not None else [None] * len(self.layers)
        with torch.no_grad():
            for layer, xi in zip(self.layers, ins):
                layer.refit(layer.basis.refined(new_grid), xi)
        return self

    def set_input_range(self, lo, hi):
        """Place the first layer's grid on the box [lo, hi] (the PDE domain)."""
        layer = self.layers[0]
        lo = torch.tensor(np.array(lo, dtype=np.float64), dtype=layer.coef.dtype, device=layer.coef.device)
        hi = torch.tensor(np.array(hi, dtype=np.float64), dtype=layer.coef.dtype, device=layer.coef.device)
        corners = torch.stack([lo, hi])
        with torch.no_grad():
            new = layer.basis.adapted(corners, 1.0)
            old_lo, old_hi = layer.basis.lo, layer.basis.hi
            if bool(((lo >= old_lo) & (hi <= old_hi)).all()):
                layer.refit(new, None)          # the box lies inside the grid: keep the function
            else:
                # refitting would extrapolate the splines far outside where they were drawn
                # (loss 1e30 on t in [0, 5]); a basis on a range is affine-invariant, so the
                # new basis with the same coefficients is the old function stretched onto the
                # box, and base weights divided by the box's size keep the next layer's
                # inputs of order one
                layer.basis = new.to(layer.coef.device)
                size = float(torch.maximum(lo.abs(), hi.abs()).max())
                if size > 1.0:
                    layer.scale_base.mul_(1.0 / size)
                # SiLU is not affine-invariant: the hidden inputs move a little (up to
                # max|silu(x)/size| / max|silu| on [-1, 1] = 1.37x of the base part)
                self._contain_hidden_inputs()
        return self

    # ------------------------------------------------------------------ sparsity
    def regularization(self, x, l1=1.0, entropy=2.0, coef=0.0, coef_diff=0.0):
        """The KAN paper's sparsity loss on a batch x (differentiable):
        Σ_layers [l1 · Σ_edges mean|φ| + entropy · H(|φ| / Σ|φ|)] (+ coefficient terms)."""
        from .kan_tools import regularization
        return regularization(self, x, l1, entropy, coef, coef_diff)

    def prune(self, threshold=1e-2, x=None):
        """A smaller KAN without the hidden sum nodes whose incoming and outgoing edges are
        all weaker than ``threshold`` (mean |φ| on x); the kept edges compute the same."""
        from .kan_tools import prune
        return prune(self, threshold, x)

    def fix_symbolic(self, layer: int, i: int, o: int, name: str, a=1.0, b=0.0, c=1.0, d=0.0, expr=None):
        """Lock edge (layer, i -> o) to c·f(a·x+b)+d with f from the symbolic library (or
        ``expr``, a function of a sympy symbol)."""
        from .edge_formula import EdgeFormula
        if expr is None:
            from .symbolic.library import get_function
            expr = get_function(name).sympy_fn
        self.layers[layer].fix_symbolic(i, o, EdgeFormula(name, expr, a, b, c, d, dtype=self.layers[layer].coef.dtype))
        return self

    def plot(self, x=None, path=None, **kwargs):
        """Draw the network with every edge's activation curve (strength = line alpha)."""
        from .plotting import plot_kan
        return plot_kan(self, x, path, **kwargs)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
