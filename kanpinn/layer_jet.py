"""The jet of a KAN layer's edges as one autograd node with a hand-written backward.

A layer maps its input jet (x, g, h) to its output jet (y, gy, hy):

    a_r[n,i,o] = φ_io^(r)(x[n,i])                              r = 0, 1, 2
    y[n,o]     = Σ_i a_0[n,i,o]
    gy[n,o,d]  = Σ_i a_1[n,i,o] g[n,i,d]
    hy[n,o,d]  = Σ_i a_2[n,i,o] g[n,i,d]² + a_1[n,i,o] h[n,i,d]

with φ = Wb·SiLU + spline. Built from tensor ops, autograd records some thirty nodes per
layer and a PINN closure spends its time in their bookkeeping and in broadcast
temporaries (FIELD_NOTES: the many small ops dominate, not the FLOPs). Here the backward
is written out: with A_r = ∂L/∂a_r,

    A_0 = Gy,  A_1 = Σ_d Ggy·g + Ghy·h,  A_2 = Σ_d Ghy·g²
    ∂L/∂x[n,i] = Σ_{r,o} A_r a_{r+1}       (so a 2nd-order jet needs φ''')
    ∂L/∂g      = Σ_o a_1 Ggy + 2 a_2 g Ghy,   ∂L/∂h = Σ_o a_1 Ghy
    ∂L/∂Wb     = Σ_{n,r} SiLU^(r) A_r,        ∂L/∂(spline coefficients): see below.

How the spline part is evaluated depends on the basis:

- B-splines (``basis.piece_coefficients``): on grid interval j the spline is a polynomial
  Σ_p P[i,j,p,o] u^p in the local coordinate u. The small table P (in, G, k+1, out) is
  formed from the coefficients by ordinary autograd ops; per point, one row of P is
  gathered and φ, φ', φ'', φ''' follow by Horner's rule on (N, in, out) tensors. No basis
  values are materialised, and the cost does not depend on G.
- dense bases (Chebyshev, RBF, Fourier): the basis matrix (N, in, nb) and its
  derivatives, contracted with the coefficients in one batched matrix product.

The function is exact: the same numbers as the composite ops (tests check it, and the
gradients by finite differences). When a derivative of the gradient is asked for
(``create_graph=True``, e.g. a mixed derivative taken by autograd on top of the jet), the
backward re-runs the forward's ops under autograd, so higher derivatives stay exact.
"""
from __future__ import annotations

import math

import torch

__all__ = ["edge_jet", "silu_derivatives", "edge_derivatives"]


def silu_derivatives(x, order):
    """SiLU and its derivatives up to ``order`` (<= 3), elementwise."""
    s = torch.sigmoid(x)
    out = [x * s]
    if order >= 1:
        out.append(s * (1 + x * (1 - s)))
    if order >= 2:
        ds = s * (1 - s)                                # σ'
        out.append(ds * (2 + x * (1 - 2 * s)))
    if order >= 3:
        d2s = ds * (1 - 2 * s)                          # σ''
        d3s = ds * (1 - 6 * ds)                         # σ''' = σ'(1 - 6σ')
        out.append(3 * d2s + x * d3s)
    return out


def _falling(p, r):
    """p (p-1) ... (p-r+1): the factor of d^r/du^r u^p."""
    return math.perm(p, r)


# --------------------------------------------------------------------------- B-splines

def _piece_values(basis, x, P, top):
    """Spline derivatives 0..top (list of (N, I, O)) from the interval tables P, and what
    the backward needs (gather index, local coordinate, inverse width)."""
    I, G, k1, O = P.shape
    j, u, ih = basis.locate(x)
    idx = (j + torch.arange(I, device=x.device) * G).reshape(-1)
    Pg = P.reshape(I * G, k1 * O).index_select(0, idx).reshape(x.shape[0], I, k1, O)
    u3, ih3 = u[..., None], ih[..., None]
    out, scale = [], None
    for r in range(top + 1):
        if r >= k1:                                     # degree k: higher derivatives vanish
            out.append(torch.zeros_like(out[0]))
            continue
        acc = Pg[:, :, k1 - 1] * float(_falling(k1 - 1, r)) if r else Pg[:, :, k1 - 1]
        for p in range(k1 - 2, r - 1, -1):
            c = _falling(p, r)
            acc = torch.addcmul(Pg[:, :, p] * float(c) if c != 1 else Pg[:, :, p], acc, u3)
        if r:
            scale = ih3 if scale is None else scale * ih3
            acc = acc * scale
        out.append(acc)
    return out, (idx, u3, ih3)


def _piece_coef_grad(saved, A, P):
    """∂L/∂P (I, G, k+1, O) from A_r = ∂L/∂a_r (list of (N, I, O))."""
    idx, u3, ih3 = saved
    I, G, k1, O = P.shape
    n = u3.shape[0]
    # B_r = A_r / h^r; ∂L/∂Pg_p = Σ_r falling(p, r) u^(p-r) B_r
    B, scale = [], None
    for r, a in enumerate(A):
        if r:
            scale = ih3 if scale is None else scale * ih3
            a = a * scale
        B.append(a)
    upow = [None, u3]
    for _ in range(2, k1):
        upow.append(upow[-1] * u3)
    # rows of ∂L/∂Pg, laid out so the scatter-add by interval runs along long rows:
    # (k+1, N·I) for one output (a scatter of 4-number rows is slow), else (N·I, (k+1)·O)
    narrow = O == 1
    dPg = P.new_empty(k1, n * I) if narrow else P.new_empty(n, I, k1, O)
    for p in range(k1):
        acc = None
        for r in range(min(p, len(B) - 1) + 1):
            c, q = _falling(p, r), p - r
            term = B[r] if q == 0 else B[r] * upow[q]
            if c != 1:
                term = term * float(c)
            acc = term if acc is None else acc + term
        if narrow:
            dPg[p] = acc.reshape(-1)
        else:
            dPg[:, :, p] = acc
    return _sum_by_interval(dPg, idx, P.shape, narrow,
                            sort_first=P.is_cuda and torch.are_deterministic_algorithms_enabled())


def _sum_by_interval(dPg, idx, shape, narrow, sort_first=False):
    """Σ of the per-point rows dPg into their intervals ``idx``: (I, G, k+1, O).

    ``sort_first``: index_put_ with accumulate, which sorts before summing. CUDA's
    index_add_ sums with atomics in varying order (results differ in the last bit from
    run to run); under ``torch.use_deterministic_algorithms(True)`` the sorted sums make
    a run, and a resumed run, bit-reproducible there, at several times the cost for
    large N. On the CPU index_add_ is deterministic and fastest."""
    I, G, k1, O = shape
    if sort_first:
        rows = dPg.T if narrow else dPg.reshape(-1, k1 * O)
        dP = dPg.new_zeros(I * G, k1 * O).index_put_((idx,), rows, accumulate=True)
        return dP.reshape(I, G, k1, O)
    if narrow:
        dP = dPg.new_zeros(k1, I * G).index_add_(1, idx, dPg)
        return dP.T.reshape(I, G, k1, O)
    dP = dPg.new_zeros(I * G, k1 * O).index_add_(0, idx, dPg.reshape(-1, k1 * O))
    return dP.reshape(I, G, k1, O)


# --------------------------------------------------------------------------- dense bases

def _dense_values(basis, x, C, top):
    first, vals = basis.evaluate(x, top)
    if first is not None:
        from .bsplines import scatter_dense
        vals = [scatter_dense(first, v, C.shape[1]) for v in vals]
    R, (n, I) = len(vals), x.shape
    Dp = torch.stack(vals, 1).permute(2, 1, 0, 3).reshape(I, R * n, -1)   # (I, R·N, nb)
    a = torch.bmm(Dp, C).reshape(I, R, n, C.shape[2]).permute(1, 2, 0, 3)
    return list(a.unbind(0)), Dp


def _dense_coef_grad(Dp, A, C):
    I = C.shape[0]
    R, n = len(A), A[0].shape[0]
    Ap = torch.stack(A, 0).permute(2, 0, 1, 3).reshape(I, R * n, -1)
    # the forward kept one more basis row (for ∂/∂x) than A has
    rows = Dp.reshape(I, -1, n, Dp.shape[-1])[:, :R].reshape(I, R * n, -1)
    return torch.bmm(rows.transpose(1, 2), Ap)


# --------------------------------------------------------------------------- both

def edge_derivatives(basis, x, coef, Wb, top, pieces):
    """φ_io^(r)(x_i) for r = 0..top: list of (N, I, O), with plain autograd ops.

    ``pieces``: ``coef`` is the interval table P of a B-spline basis, else the dense
    coefficient tensor C (I, nb, O)."""
    a, saved = (_piece_values if pieces else _dense_values)(basis, x, coef, top)
    sil = silu_derivatives(x, top)
    return [ar + s[..., None] * Wb for ar, s in zip(a, sil)], saved, sil


def _bmm(a, b):
    """Batched (N, m, K) @ (N, K, n); with K = 1 an outer product (a K=1 matrix product
    is several times slower than the broadcast multiply)."""
    return a * b if a.shape[2] == 1 else torch.bmm(a, b)


def _combine(a, g, h, identity, order):
    """y, gy, hy from the edge derivatives a (list of (N, I, O)). The sums over inputs
    are batched matrix products (per point (O, I) @ (I, D)): much faster than broadcast
    products reduced over a small axis."""
    y = a[0].sum(1)
    if identity:
        return y, a[1].transpose(1, 2), (a[2].transpose(1, 2) if order > 1 else None)
    a1T = a[1].transpose(1, 2)                                            # (N, O, I)
    if order == 1:
        return y, torch.bmm(a1T, g), None
    D = g.shape[2]
    both = torch.bmm(a1T, torch.cat([g, h], 2))                           # [Σ a1 g | Σ a1 h]
    hy = torch.baddbmm(both[:, :, D:], a[2].transpose(1, 2), g * g)
    return y, both[:, :, :D], hy


class _EdgeJet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g, h, coef, Wb, basis, identity, order, pieces):
        need_x = ctx.needs_input_grad[0]
        top = order + (1 if need_x else 0)
        a, saved, sil = edge_derivatives(basis, x, coef, Wb, top, pieces)
        y, gy, hy = _combine(a, g, h, identity, order)
        ctx.args = (basis, identity, order, pieces, need_x)
        ctx.saved = saved
        ctx.save_for_backward(x, g, h, coef, Wb, *a, *sil)
        return y, gy, hy

    @staticmethod
    def backward(ctx, Gy, Ggy, Ghy):
        basis, identity, order, pieces, need_x = ctx.args
        x, g, h, coef, Wb, *rest = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _backward_differentiable(ctx, x, g, h, coef, Wb, Gy, Ggy, Ghy)
        m = len(rest) // 2
        a, sil = rest[:m], rest[m:]
        R = order + 1
        n, I, O = a[0].shape
        D = I if identity else g.shape[2]
        zero = a[0].new_zeros(())
        Gy = Gy if Gy is not None else zero.expand(n, O)
        Ggy = Ggy if Ggy is not None else zero.expand(n, O, D)
        Ghy = Ghy if Ghy is not None else zero.expand(n, O, D)
        A = [Gy[:, None, :].expand(n, I, O)]
        dg = dh = None
        if identity:
            A.append(Ggy.transpose(1, 2))
            if R > 2:
                A.append(Ghy.transpose(1, 2))
        elif R == 2:
            A.append(torch.bmm(g, Ggy.transpose(1, 2)))                    # (N, I, O)
            if ctx.needs_input_grad[1]:
                dg = _bmm(a[1], Ggy)                                       # (N, I, D)
        else:
            D = g.shape[2]
            GG = torch.cat([Ggy, Ghy], 2)                                  # (N, O, 2D)
            A.append(torch.bmm(torch.cat([g, h], 2), GG.transpose(1, 2)))  # Σ_d g Ggy + h Ghy
            A.append(torch.bmm(g * g, Ghy.transpose(1, 2)))
            if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
                a1G = _bmm(a[1], GG)                                       # [Σ_o a1 Ggy | Σ_o a1 Ghy]
                dg = torch.addcmul(a1G[:, :, :D], g, _bmm(a[2], Ghy), value=2.0)
                dh = a1G[:, :, D:]
        dx = dcoef = dWb = None
        if need_x:
            dx = sum((Ar * ar).sum(-1) for Ar, ar in zip(A, a[1:R + 1]))
        if ctx.needs_input_grad[3]:
            dcoef = (_piece_coef_grad if pieces else _dense_coef_grad)(ctx.saved, A, coef)
        if ctx.needs_input_grad[4]:
            dWb = sum((s[..., None] * Ar).sum(0) for s, Ar in zip(sil, A))
        return dx, dg, dh, dcoef, dWb, None, None, None, None


def _backward_differentiable(ctx, x, g, h, coef, Wb, Gy, Ggy, Ghy):
    """The backward through the forward's ops under autograd, so it can be differentiated
    again (``create_graph=True``)."""
    basis, identity, order, pieces, _ = ctx.args
    inputs = (x, g, h, coef, Wb)
    wanted = [i for i, t in enumerate(inputs) if t is not None and ctx.needs_input_grad[i]]
    with torch.enable_grad():
        a, _, _ = edge_derivatives(basis, x, coef, Wb, order, pieces)
        outs = _combine(a, g, h, identity, order)
        pairs = [(o, go) for o, go in zip(outs, (Gy, Ggy, Ghy)) if o is not None and go is not None]
        grads = torch.autograd.grad([o for o, _ in pairs], [inputs[i] for i in wanted],
                                    [go for _, go in pairs], create_graph=True, allow_unused=True)
    out = [None] * 5
    for i, gr in zip(wanted, grads):
        out[i] = gr
    return (*out, None, None, None, None)


def edge_jet(basis, x, g, h, C, Wb, identity=False):
    """(y (N, O), gy (N, O, D), hy (N, O, D) or None) of a KAN layer's edges; see the
    module docstring. C: (I, nb, O) spline coefficients (scales and mask folded in);
    Wb: (I, O) base weights; ``h`` None: first-order jet; ``identity``: x is the network
    input (g, h are then not used)."""
    order = 1 if h is None else 2
    if identity:
        g = h = None
    pieces = callable(getattr(basis, "piece_coefficients", None))
    coef = basis.piece_coefficients(C) if pieces else C
    return _EdgeJet.apply(x, g, h, coef, Wb, basis, identity, order, pieces)
