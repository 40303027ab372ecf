"""One KAN layer: in_dim inputs, out_dim outputs, a learnable function on every edge.

    φ_io(x) = w_b[i,o] · SiLU(x) + w_s[i,o] · Σ_b c[i,b,o] · B_b(x)
    y_o     = Σ_i mask[i,o] · φ_io(x_i)  (+ symbolic edges, see ``kanpinn.edge_formula``)

The basis is evaluated once per input column (only its non-zero functions for B-splines)
and contracted with all coefficients in one matrix product: no (N, in, out, G+k) tensor.
``forward_jet`` carries first derivatives and the Hessian diagonal through the layer as
one autograd node (``kanpinn.layer_jet``, the functional core); ``per_point_grads`` is
the layer's own rule for the structured Jacobian, recorded with each evaluation inside
``kanpinn.jet.recording()``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import jet as jets
from .bases import make_basis
from .bsplines import scatter_dense
from .errors import KanpinnError
from .layer_jet import edge_jet, edge_param_grads
from .local_columns import LocalColumns

__all__ = ["KANLayer"]


class KANLayer(nn.Module):
    """A KAN layer. Input (N, in_dim) -> output (N, out_dim).

    Initialisation (chosen so deep KANs train): w_b ~ N(0, 2/in) keeps the SiLU path's
    output variance near its input's, as He initialisation does for ReLU-like units, so
    activations neither vanish nor explode with depth; w_s = 1/sqrt(in) and
    c ~ N(0, noise²) start each spline as a small random function that the base path
    dominates, so gradients reach every coefficient from the start. The sums still reach
    2-3x a [-1, 1] grid (the extremes of a sum of in edges), so ``KAN`` widens the hidden
    layers' grids to hold them (``KAN._contain_hidden_inputs``): a layer alone keeps
    ``grid_range``.
    """

    def __init__(self, in_dim, out_dim, grid=5, k=3, basis="bspline", grid_range=(-1.0, 1.0),
                 noise_scale=0.1, base_scale=None, dtype=None, generator=None):
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise KanpinnError(f"a KAN layer needs at least one input and output, got {in_dim}->{out_dim}")
        dtype = dtype or torch.get_default_dtype()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.basis = make_basis(basis, in_dim, grid, k, grid_range, dtype)
        nb = self.basis.size
        self.noise_scale, self.base_scale = noise_scale, base_scale
        self.coef = nn.Parameter(torch.empty(in_dim, nb, out_dim, dtype=dtype))
        self.scale_base = nn.Parameter(torch.empty(in_dim, out_dim, dtype=dtype))
        self.scale_sp = nn.Parameter(torch.empty(in_dim, out_dim, dtype=dtype))
        self.register_buffer("mask", torch.ones(in_dim, out_dim, dtype=dtype))
        self.symbolic = nn.ModuleDict()     # "i_o" -> EdgeFormula, added by fix_symbolic
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator=None):
        """Draw a fresh initialisation (see the class docstring)."""
        n_in = self.in_dim
        std_b = math.sqrt(2.0 / n_in) if self.base_scale is None else self.base_scale
        dt, dev = self.coef.dtype, self.coef.device
        self.coef.copy_(torch.randn(self.coef.shape, dtype=dt, generator=generator).to(dev) * self.noise_scale)
        self.scale_base.copy_(torch.randn(self.scale_base.shape, dtype=dt, generator=generator).to(dev) * std_b)
        self.scale_sp.fill_(1.0 / math.sqrt(n_in))

    # ------------------------------------------------------------------ evaluation
    def _weights(self):
        """Effective spline coefficients (in*nb, out) and base weights (in, out)."""
        c = self.coef * (self.scale_sp * self.mask)[:, None, :]
        return c.reshape(-1, self.out_dim), self.scale_base * self.mask

    def _dense(self, first, v):
        if first is None:
            return v
        return scatter_dense(first, v, self.basis.size)

    def _contract(self, first, B, c):
        """Σ_{i,b} B[J, n, i, b] · c[i·nb + b, o] for local or dense basis values.

        B: (J, N, in, w) with w = k+1 non-zero functions starting at ``first`` (N, in), or
        w = size when ``first`` is None. Two exact ways for local values, chosen by size:
        scatter into the dense (J, N, in·nb) matrix and one matmul (best for small grids),
        or gather each point's k+1 coefficient rows and a batched product (cost
        independent of G, best for fine grids)."""
        J, n, n_in, w = B.shape
        if first is None:
            return (B.reshape(J * n, -1) @ c).reshape(J, n, self.out_dim)
        nb = self.basis.size
        o = self.out_dim
        # dense route: J·N·in·nb numbers through one BLAS product (cheap for small grids);
        # gathered route: each point's w coefficient rows, J·N·in·w·o products, whatever G
        dense_cost, gather_cost = J * nb, (J + 1) * w * o
        if dense_cost <= gather_cost:
            dense = scatter_dense(first.expand(B.shape[:-1]), B, nb)
            return (dense.reshape(J * n, -1) @ c).reshape(J, n, o)
        c3 = c.reshape(n_in, nb, o)
        idx = first[:, :, None] + torch.arange(w, device=first.device)
        cg = c3[torch.arange(n_in, device=first.device)[None, :, None], idx]   # (N, in, w, out)
        if J * n * n_in * w * o <= 2 ** 24:
            return (B[..., None] * cg[None]).sum((2, 3))
        # large batches: a batched product keeps the temporary small
        out = torch.bmm(B.permute(1, 0, 2, 3).reshape(n, J, n_in * w), cg.reshape(n, n_in * w, o))
        return out.permute(1, 0, 2)

    def forward(self, x):
        """x: (N, in_dim) -> (N, out_dim)."""
        first, (b,) = self.basis.evaluate(x, 0)
        c, wb = self._weights()
        B, S = b[None], F.silu(x)[None]
        y = (self._contract(first, B, c) + (S[0] @ wb)[None])[0]
        jets.record((y,), _Rule(self, x, None, None, False), x.shape[0], stacked=True)
        return self._add_symbolic(x, None, None, y, None, None)[0]

    def forward_jet(self, x, g, h, identity_input=False, higher=()):
        """Propagate a jet. x: (N, in); g, h: (N, in, d) (h may be None).
        ``identity_input``: x is the network input (g the identity, h zero).
        Returns y (N, out), gy (N, out, d), hy (N, out, d) or None.

        ``higher``: the input's diagonal third (and fourth) derivatives (N, in, d) for a
        jet of order 3 (4); the outputs then add d3 (and d4) (N, out, d) (see
        ``kanpinn.jet``, "Orders 3 and 4"; a B-spline basis needs k >= the order).

        One autograd node with a hand-written backward (``kanpinn.layer_jet``). Inside a
        ``kanpinn.jet.recording()`` block the layer also records its outputs with
        ``per_point_grads``, its rule for the structured Jacobian."""
        c, wb = self._weights()
        C = c.reshape(self.in_dim, self.basis.size, self.out_dim)
        if higher:
            if self.symbolic:
                raise KanpinnError("symbolic edges carry jets up to order 2; ask forward_jet for order <= 2")
            outs = edge_jet(self.basis, x, g, h, C, wb, identity_input, higher=tuple(higher))
            jets.record(outs, _Rule(self, x, g, h, identity_input, tuple(higher)), x.shape[0], stacked=True)
            return outs
        y, gy, hy = edge_jet(self.basis, x, g, h, C, wb, identity_input)
        jets.record((y, gy, hy), _Rule(self, x, g, h, identity_input), x.shape[0], stacked=True)
        return self._add_symbolic(x, g, h, y, gy, hy)

    def per_point_grads(self, x, g, h, identity, deltas, local=False, higher=()):
        """{parameter: (N, numel)}: each point's gradient of a pointwise residual with
        respect to this layer's parameters, given ``deltas``, the gradients of the summed
        residual at the outputs (y, gy, hy) of an evaluation at x (with input jet g, h).
        The layer is linear in its effective coefficients C = coef·scale_sp·mask and base
        weights Wb = scale_base·mask; ``layer_jet.edge_param_grads`` gives the per-point
        gradients for C and Wb, and the chain rule through the scales follows here.

        Deltas of B residual blocks stacked in a leading dimension ((B, N, out, ...)) give
        (B, N, numel): the blocks ride along the output axis of ``edge_param_grads``, so
        the basis values are evaluated once and each small product serves all B blocks.

        ``local``: a B-spline basis's coefficient gradients come as ``LocalColumns`` (the
        k+1 non-zero basis functions per point and input, written straight into J by
        ``jacobian.stacked_jacobian``) instead of the dense (N, in·nb·out) tensor."""
        if self.symbolic:
            raise jets.NotPointwise("symbolic edges are not covered by the structured Jacobian")
        o = self.out_dim
        i0, ref = next((i, d) for i, d in enumerate(deltas) if d is not None)
        B = ref.shape[0] if ref.dim() > (2 if i0 == 0 else 3) else None      # Gy (N, O), Ggy (N, O, D)
        if B is not None:               # (B, N, O, ...) -> (N, B·O, ...)
            deltas = tuple(None if d is None else d.movedim(0, 1).reshape(d.shape[1], B * o, *d.shape[3:])
                           for d in deltas)
        scale = self.scale_sp * self.mask                                    # (in, out)
        # Gc comes scaled (the coefficients' gradient), Gs the unscaled spline's (scale_sp's)
        first, Gc, Gb, Gs = edge_param_grads(self.basis, x, g, h, identity, deltas, coef=self.coef, scale=scale,
                                             higher=higher)
        n, n_in, w = Gc.shape[:3]
        lead = (n,) if B is None else (B, n)
        if B is not None:               # (N, ..., B·O) -> (B, N, ..., O)
            Gc = Gc.reshape(n, n_in, w, B, o).permute(3, 0, 1, 2, 4)
            Gb = Gb.reshape(n, n_in, B, o).permute(2, 0, 1, 3)
            Gs = Gs.reshape(n, n_in, B, o).permute(2, 0, 1, 3)
        if first is None:
            g_coef = Gc.reshape(*lead, -1)
        else:
            g_coef = LocalColumns(first, Gc, self.basis.size)
            if not local:
                g_coef = g_coef.dense()
        return {self.coef: g_coef,
                self.scale_sp: (Gs * self.mask).reshape(*lead, -1),
                self.scale_base: (Gb * self.mask).reshape(*lead, -1)}

    def _add_symbolic(self, x, g, h, y, gy, hy):
        """Add the symbolic edges' values (and jets when g is given) to the outputs."""
        order = 0 if g is None else (1 if h is None else 2)
        for key, edge in self.symbolic.items():
            i, o = map(int, key.split("_"))
            col = torch.tensor([o], device=x.device)
            vals = edge.jet(x[:, i], order)
            y = y.index_add(1, col, vals[0][:, None])
            if order >= 1:
                gy = gy.index_add(1, col, (vals[1][:, None] * g[:, i, :])[:, None, :])
            if order >= 2:
                hy = hy.index_add(1, col, (vals[2][:, None] * g[:, i, :] ** 2 + vals[1][:, None] * h[:, i, :])[:, None, :])
        return y, gy, hy

    def fix_symbolic(self, i: int, o: int, formula):
        """Replace edge i->o by ``formula`` (an EdgeFormula): its spline is masked off."""
        if not (0 <= i < self.in_dim and 0 <= o < self.out_dim):
            raise KanpinnError(f"edge ({i}, {o}) does not exist in a {self.in_dim}->{self.out_dim} layer")
        self.mask[i, o] = 0.0
        self.symbolic[f"{i}_{o}"] = formula.to(device=self.coef.device, dtype=self.coef.dtype)

    def unfix_symbolic(self, i: int, o: int):
        key = f"{i}_{o}"
        if key in self.symbolic:
            del self.symbolic[key]
        self.mask[i, o] = 1.0

    # ------------------------------------------------------------------ edges
    def edge_values(self, x):
        """Every edge's activation φ_io(x_i): (N, in, out) (masked; symbolic edges included)."""
        first, (b,) = self.basis.evaluate(x, 0)
        bd = self._dense(first, b)                                # (N, in, nb)
        c = self.coef * (self.scale_sp * self.mask)[:, None, :]
        phi = torch.einsum("nib,ibo->nio", bd, c) + F.silu(x)[..., None] * (self.scale_base * self.mask)
        if self.symbolic:
            extra = torch.zeros_like(phi)
            for key, edge in self.symbolic.items():
                i, o = map(int, key.split("_"))
                sel = torch.zeros_like(phi[0])
                sel[i, o] = 1.0
                extra = extra + edge(x[:, i])[:, None, None] * sel
            phi = phi + extra
        return phi

    # ------------------------------------------------------------------ grids
    @torch.no_grad()
    def refit(self, new_basis, x=None):
        """Replace the basis, refitting the spline coefficients by least squares so each
        edge's spline part is kept: exactly when the old space nests in the new one.
        x: optional (N, in) samples added to the fit points."""
        pts = new_basis.fit_points()
        if x is not None:
            x = x.detach().to(pts.dtype)
            inside = (x >= new_basis.lo[None, :]) & (x <= new_basis.hi[None, :])
            # samples inside the new range refine the fit where the data lives
            pts = torch.cat([pts, torch.where(inside, x, pts[:1].expand_as(x))], 0)
        first, (b,) = self.basis.evaluate(pts, 0)
        old = torch.einsum("nib,ibo->ino", self._dense(first, b), self.coef)   # (in, P, out)
        nfirst, (nb_vals,) = new_basis.evaluate(pts, 0)
        A = nb_vals if nfirst is None else scatter_dense(nfirst, nb_vals, new_basis.size)
        A = A.permute(1, 0, 2)                                                  # (in, P, nb)
        coef = _lstsq(A, old)                                                   # (in, nb, out)
        if not torch.isfinite(coef).all():
            raise KanpinnError("grid refit produced non-finite coefficients (the layer's inputs "
                               "contain NaN or inf?)")
        self.basis = new_basis
        self.coef = nn.Parameter(coef.contiguous())


class _Rule:
    """A layer evaluation's recorded rule for the structured Jacobian (``jet.LayerRecord``):
    called with the deltas it gives dense per-point gradients, what every caller of a
    record understands; ``local(deltas)`` gives the B-spline coefficients' as
    ``LocalColumns``, for a caller that writes them straight into J."""
    __slots__ = ("layer", "args", "higher")

    def __init__(self, layer, x, g, h, identity, higher=()):
        self.layer, self.args, self.higher = layer, (x, g, h, identity), higher

    def __call__(self, deltas):
        return self.layer.per_point_grads(*self.args, deltas, higher=self.higher)

    def local(self, deltas):
        return self.layer.per_point_grads(*self.args, deltas, local=True, higher=self.higher)


def _lstsq(A, Y):
    """Batched least squares min ||A c - Y|| for A (b, P, n), Y (b, P, m), by QR.

    QR on a full-rank, well-conditioned system (fit points cover every basis function's
    support) is exact to rounding, runs on CPU and CUDA alike and never leaves the device.
    A column scaling guards against very uneven basis magnitudes."""
    scale = A.norm(dim=1, keepdim=True).clamp_min(torch.finfo(A.dtype).tiny)
    Q, R = torch.linalg.qr(A / scale)
    diag = R.diagonal(dim1=-2, dim2=-1).abs()
    if bool((diag <= diag.amax(-1, keepdim=True) * 1e3 * torch.finfo(A.dtype).eps).any()):
        # rank-deficient (basis functions with no fit point): regularised normal equations
        AtA = R.transpose(-1, -2) @ R
        eye = torch.eye(AtA.shape[-1], dtype=A.dtype, device=A.device)
        lam = 1e-10 * AtA.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None]
        c = torch.linalg.solve(AtA + lam * eye, (A / scale).transpose(-1, -2) @ Y)
    else:
        c = torch.linalg.solve_triangular(R, Q.transpose(-1, -2) @ Y, upper=True)
    return c / scale.transpose(-1, -2)
