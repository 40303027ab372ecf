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

How the spline part is evaluated:

- the network-input layer (``_InputJet``): its input is the same collocation tensor in
  closure after closure, so its basis matrix and SiLU, with their derivatives, are
  computed once per input and kept on the input tensor (``input_features``; valid while
  the input's version counter and the basis buffers are unchanged). A closure is then
  one batched matrix product forward and one backward, whatever the basis.
- B-splines elsewhere (``basis.piece_derivatives``): on grid interval j each derivative
  of the spline is a polynomial in the local coordinate u. The small table of their
  coefficients (rows (r, q), in·G, out), with the factorial factors and interval widths
  folded in, is formed from the coefficients by ordinary autograd ops; each point
  gathers its interval's column of every row and φ, φ', φ'', φ''' follow by Horner's
  rule on contiguous (N, in, out) tensors. No basis values are materialised, and the
  cost does not depend on G.
- dense bases (Chebyshev, RBF, Fourier) elsewhere: the basis matrix (N, in, nb) and its
  derivatives, contracted with the coefficients in one batched matrix product.

The function is exact: the same numbers as the composite ops (tests check it, and the
gradients by finite differences). When a derivative of the gradient is asked for
(``create_graph=True``, e.g. a mixed derivative taken by autograd on top of the jet), the
backward re-runs the forward's ops under autograd, so higher derivatives stay exact.
"""
from __future__ import annotations

import weakref

import torch

from .bsplines import scatter_dense
from .errors import KanpinnError
from .jet import bell, chain_polynomials, horner

__all__ = ["edge_jet", "silu_derivatives", "edge_derivatives", "input_features", "edge_param_grads"]


def silu_derivatives(x, order):
    """SiLU and its derivatives up to ``order`` (<= 3), elementwise.

    With s = σ(x), σ' = s(1-s) and t = 1-2s: SiLU' = s + x σ', SiLU'' = σ'(2 + x t),
    SiLU''' = σ'(3t + x(1 - 6σ')); beyond, SiLU^(n) = x σ^(n) + n σ^(n-1) with σ^(n) a
    polynomial in s (``jet.chain_polynomials``); ``order`` <= 5 (a 4th-order jet's
    backward needs the 5th)."""
    s = torch.sigmoid(x)
    out = [x * s]
    if order >= 1:
        ds = s - s * s
        out.append(torch.addcmul(s, x, ds))
    if order >= 2:
        t = torch.rsub(s, 1, alpha=2)
        out.append((x * t + 2) * ds)
    if order >= 3:
        out.append(torch.add(x * torch.rsub(ds, 1, alpha=6), t, alpha=3) * ds)
    if order >= 4:
        if order > 5:
            raise KanpinnError(f"SiLU derivatives are implemented up to order 5, got {order}")
        P = chain_polynomials([0.0, 1.0, -1.0], order)                 # σ^(n) = P[n-1](s)
        for n in range(4, order + 1):
            out.append(torch.addcmul(n * horner(P[n - 2], s), x, horner(P[n - 1], s)))
    return out


# --------------------------------------------------------------------------- B-splines

def _row_starts(k1, top):
    """First row of each derivative r = 0..min(top, k) in a ``derivative_pieces`` table."""
    starts, at = [], 0
    for r in range(min(top, k1 - 1) + 1):
        starts.append(at)
        at += k1 - r
    return starts


def _piece_values(basis, x, Q, top):
    """Spline derivatives 0..top (list of (N, I, O)) from the derivative table Q
    (rows, I·G, O) of ``basis.piece_derivatives``, and what the backward needs (gather
    index, local coordinate): each point gathers its interval's column of the table and
    each derivative follows by Horner's rule."""
    n, I = x.shape
    k1 = basis.k + 1
    rows, IG, O = Q.shape
    j, u, _ = basis.locate(x)
    idx = (j + torch.arange(I, device=x.device) * (IG // I)).reshape(-1)
    starts = _row_starts(k1, top)
    used = starts[-1] + k1 - (len(starts) - 1)
    # one gather per table row, each contiguous: Horner's elementwise ops then run on
    # contiguous memory (on strided slices of a single gather they are ~5x slower); a
    # one-output table is gathered as 1-D rows (a 2-D gather of width 1 is slow)
    table = (Q[:used, :, 0] if O == 1 else Q[:used]).unbind(0)
    Qg = [row.index_select(0, idx).view(n, I, O) for row in table]
    u3 = u[..., None]
    out = []
    for r, at in enumerate(starts):
        acc = Qg[at + k1 - 1 - r]
        for q in range(k1 - 2 - r, -1, -1):
            acc = torch.addcmul(Qg[at + q], acc, u3)
        out.append(acc)
    out += [torch.zeros_like(out[0])] * (top + 1 - len(out))           # degree k: higher vanish
    return out, (idx, u3)


def _piece_coef_grad(saved, A, Q, k1):
    """∂L/∂Q (rows, I·G, O) from A_r = ∂L/∂a_r (list of (N, I, O)): row (r, q) of the
    gathered table gets A_r u^q, summed into the point's interval."""
    idx, u3 = saved
    n, I, O = A[0].shape
    # laid out so the scatter-add by interval runs along long rows: (used, N·I) for one
    # output (CPU index_add_ along the first axis loops over short rows), else
    # (N·I, used·O)
    narrow = O == 1
    if narrow:
        u3, A = u3[..., 0], [a[..., 0] for a in A]
    upow = [None, u3]
    for _ in range(2, k1):
        upow.append(upow[-1] * u3)
    starts = _row_starts(k1, len(A) - 1)
    used = starts[-1] + k1 - (len(starts) - 1)                        # rows of r <= order
    dQg = Q.new_empty(used, n, I) if narrow else Q.new_empty(n, I, used, O)
    dst = dQg.unbind(0) if narrow else dQg.unbind(2)
    for r, at in enumerate(starts):
        dst[at].copy_(A[r])
        for q in range(1, k1 - r):
            torch.mul(A[r], upow[q], out=dst[at + q])
    return _sum_by_interval(dQg.reshape(used, n * I) if narrow else dQg.reshape(n * I, used * O),
                            idx, Q.shape, narrow,
                            sort_first=Q.is_cuda and torch.are_deterministic_algorithms_enabled())


def _sum_by_interval(dQg, idx, shape, narrow, sort_first=False):
    """Σ of the per-point rows of dQg into their intervals ``idx``: a table of ``shape``
    (rows, I·G, O), zero in the rows beyond those given. dQg: (used, N·I) when ``narrow``
    (O = 1), else (N·I, used·O).

    ``sort_first``: index_put_ with accumulate, which sorts before summing. CUDA's
    index_add_ sums with atomics in varying order (results differ in the last bit from
    run to run); under ``torch.use_deterministic_algorithms(True)`` the sorted sums make
    a run, and a resumed run, bit-reproducible there, at several times the cost for
    large N. On the CPU index_add_ is deterministic and fastest."""
    rows, IG, O = shape
    per_point = dQg.T if narrow else dQg                               # (N·I, used·O)
    used = per_point.shape[1] // O
    if narrow and not sort_first:
        dQ = dQg.new_zeros(rows, IG)
        dQ[:used].index_add_(1, idx, dQg)
        return dQ[..., None]
    dQ = dQg.new_zeros(IG, rows, O)
    first_rows = dQ.view(IG, rows * O)[:, :used * O]                  # (I·G, used·O) view
    if sort_first:
        first_rows.index_put_((idx,), per_point, accumulate=True)
    else:
        first_rows.index_add_(0, idx, per_point)
    return dQ.transpose(0, 1)


# --------------------------------------------------------------------------- dense bases

def _basis_matrices(basis, x, top):
    """Every basis function and its derivatives 0..top at x: list of (N, I, nb)."""
    first, vals = basis.evaluate(x, top)
    if first is not None:
        vals = [scatter_dense(first, v, basis.size) for v in vals]
    return vals


def _dense_values(basis, x, C, top):
    vals = _basis_matrices(basis, x, top)
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

    ``pieces``: ``coef`` is the derivative table Q (rows, I·G, O) of a B-spline basis
    (``basis.piece_derivatives``, rows for derivatives up to at least ``top`` or k), else
    the dense coefficient tensor C (I, nb, O)."""
    a, saved = (_piece_values if pieces else _dense_values)(basis, x, coef, top)
    sil = silu_derivatives(x, top)
    return [torch.addcmul(ar, s[..., None], Wb) for ar, s in zip(a, sil)], saved, sil


def _bmm(a, b):
    """Batched (N, m, K) @ (N, K, n); with K = 1 an outer product (a K=1 matrix product
    is several times slower than the broadcast multiply)."""
    return a * b if a.shape[2] == 1 else torch.bmm(a, b)


def _combine(a, g, h, identity, order, keep=None):
    """y, gy, hy from the edge derivatives a (list of (N, I, O)). The sums over inputs
    are batched matrix products (per point (O, I) @ (I, D)): much faster than broadcast
    products reduced over a small axis. ``keep``: a dict that receives [g | h] and g²
    for the backward."""
    y = a[0].sum(1)
    if identity:
        return y, a[1].transpose(1, 2), (a[2].transpose(1, 2) if order > 1 else None)
    a1T = a[1].transpose(1, 2)                                            # (N, O, I)
    if order == 1:
        return y, torch.bmm(a1T, g), None
    D = g.shape[2]
    gh, gg = torch.cat([g, h], 2), g * g
    if keep is not None:
        keep.update(gh=gh, gg=gg)
    both = torch.bmm(a1T, gh)                                             # [Σ a1 g | Σ a1 h]
    hy = torch.baddbmm(both[:, :, D:], a[2].transpose(1, 2), gg)
    return y, both[:, :, :D], hy


class _EdgeJet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g, h, coef, Wb, basis, identity, order, pieces, top):
        # top = order + 1 when x needs a gradient (∂/∂x of a_r is a_(r+1))
        need_x = top > order
        a, saved, sil = edge_derivatives(basis, x, coef, Wb, top, pieces)
        ctx.kept = {}
        y, gy, hy = _combine(a, g, h, identity, order, ctx.kept)
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
            A.append(torch.bmm(ctx.kept["gh"], GG.transpose(1, 2)))       # Σ_d g Ggy + h Ghy
            A.append(torch.bmm(ctx.kept["gg"], Ghy.transpose(1, 2)))
            if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
                a1G = _bmm(a[1], GG)                                       # [Σ_o a1 Ggy | Σ_o a1 Ghy]
                dg = torch.addcmul(a1G[:, :, :D], g, _bmm(a[2], Ghy), value=2.0)
                dh = a1G[:, :, D:]
        dx = dcoef = dWb = None
        if need_x:
            dx = _dot_sum(A, a[1:R + 1]).sum(-1)
        if ctx.needs_input_grad[3]:
            dcoef = (_piece_coef_grad(ctx.saved, A, coef, basis.k + 1) if pieces
                     else _dense_coef_grad(ctx.saved, A, coef))
        if ctx.needs_input_grad[4]:
            dWb = _dot_sum(A, [s[..., None] for s in sil]).sum(0)
        return dx, dg, dh, dcoef, dWb, None, None, None, None, None


def _dot_sum(A, B):
    """Σ_r A_r B_r, accumulated in place (one reduction afterwards, not one per term)."""
    acc = A[0] * B[0]
    for Ar, Br in zip(A[1:], B[1:]):
        acc.addcmul_(Ar, Br)
    return acc


def _backward_differentiable(ctx, x, g, h, coef, Wb, Gy, Ggy, Ghy):
    """The backward through the forward's ops under autograd, so it can be differentiated
    again (``create_graph=True``)."""
    basis, identity, order, pieces, _ = ctx.args

    def outputs(x, g, h, coef, Wb):
        a, _, _ = edge_derivatives(basis, x, coef, Wb, order, pieces)
        return _combine(a, g, h, identity, order)
    return (*_regrad(ctx, (x, g, h, coef, Wb), outputs, (Gy, Ggy, Ghy)), None, None, None, None, None)


def _regrad(ctx, inputs, outputs, grads_out):
    """Gradients of ``outputs(*inputs)`` against ``grads_out`` for the inputs the node
    needs, recomputed under autograd with ``create_graph=True``."""
    wanted = [i for i, t in enumerate(inputs) if t is not None and ctx.needs_input_grad[i]]
    with torch.enable_grad():
        outs = outputs(*inputs)
        pairs = [(o, go) for o, go in zip(outs, grads_out) if o is not None and go is not None]
        grads = torch.autograd.grad([o for o, _ in pairs], [inputs[i] for i in wanted],
                                    [go for _, go in pairs], create_graph=True, allow_unused=True)
    out = [None] * len(inputs)
    for i, gr in zip(wanted, grads):
        out[i] = gr
    return out


# --------------------------------------------------------------------------- network input

# The first layer sees the network input, and a PINN optimiser evaluates the same
# collocation points in closure after closure while only the coefficients change. Its
# basis matrix (with the SiLU as one more column) is then computed once per input and
# every closure is one batched product forward and one backward. The features are kept
# on the input tensor itself, so they live exactly as long as whoever holds the
# collocation points (a solve's points die with the solve; a user's loop keeps its own x):
# no module-level store. An entry is used for the same input while its version counter
# is unchanged (an in-place write bumps it; a write through ``.data`` does not, so do
# not change points that way) and while the basis and its buffers are the same objects
# at the same versions (a grid update, a refit or a loaded state is a miss). No values
# are compared, so a hit costs no device synchronisation.
_FEATURES_ATTR = "_kanpinn_input_features"
_FEATURES_MAX_BYTES = 2 ** 29
_FEATURES_MAX_COLUMNS = 128


def _stamp(basis):
    return [(b, b._version) for b in basis.buffers()]


def _valid(entry, basis, x):
    ref, stamp, version, _ = entry
    if ref() is not basis or version != x._version:
        return False
    bufs = list(basis.buffers())
    return len(stamp) == len(bufs) and all(b is c and v == c._version for (b, v), c in zip(stamp, bufs))


def input_features(basis, x, top):
    """(in, (top+1)·N, nb+1): row r·N + n of slice i holds the r-th derivatives of
    [every basis function | SiLU] at x[n, i]; kept on ``x`` per (basis, top) while valid."""
    store = getattr(x, _FEATURES_ATTR, None)
    if store is None:
        store = {}
        setattr(x, _FEATURES_ATTR, store)
    key = (id(basis), top)
    entry = store.get(key)
    if entry is not None and _valid(entry, basis, x):
        return entry[3]
    # stale entries (changed points, another grid, a dead basis) go
    for k, e in list(store.items()):
        b = e[0]()
        if b is None or not _valid(e, b, x):
            del store[k]
    D = _features(basis, x, top)
    store[key] = (weakref.ref(basis), _stamp(basis), x._version, D)
    return D


def _features(basis, x, top):
    with torch.no_grad():
        vals = _basis_matrices(basis, x, top)
        sil = silu_derivatives(x, top)
        D = torch.cat([torch.stack(vals, 0), torch.stack(sil, 0)[..., None]], -1)  # (R, N, I, nb+1)
        R, n, I, nb1 = D.shape
        return D.permute(2, 0, 1, 3).reshape(I, R * n, nb1).contiguous()


def _use_features(basis, x, top):
    """Whether to use the first layer's cached features. Their products cost ~(nb+1)
    multiply-adds per point and output, in BLAS; the piecewise route ~(k+1) in many
    small elementwise ops. Measured on 2 CPU cores ([2,10,1], float64) the cached route
    wins at every grid up to G=100 (2601 points: 4.7 vs 7.3 ms at G=20, 6.0 vs 8.2 ms at
    G=100; 65536 points: 87 vs 216 ms at G=5), so it is taken up to 128 columns while the
    features fit in 512 MB."""
    if x.is_inference() or torch.is_inference_mode_enabled():
        return False
    n, I = x.shape
    nb1 = basis.size + 1
    return nb1 <= _FEATURES_MAX_COLUMNS and (top + 1) * n * I * nb1 * x.element_size() <= _FEATURES_MAX_BYTES


class _InputJet(torch.autograd.Function):
    """y, gy, hy of a network-input layer (g the identity, h zero) from its features Dp
    (``input_features``) and the stacked coefficients Cp = [C | Wb] (in, nb+1, out)."""

    @staticmethod
    def forward(ctx, x, Cp, Dp, basis, order):
        I, n = Dp.shape[0], x.shape[0]
        a = torch.bmm(Dp, Cp).reshape(I, -1, n, Cp.shape[2])             # (I, top+1, N, O)
        ctx.args = (basis, order)
        ctx.save_for_backward(x, Cp, Dp, a)
        y = a[:, 0].sum(0)
        gy = a[:, 1].permute(1, 2, 0)
        hy = a[:, 2].permute(1, 2, 0) if order > 1 else None
        # orders 3 and 4 (diagonal): the identity input's r-th derivative is a_r itself
        return (y, gy, hy, *(a[:, r].permute(1, 2, 0) for r in range(3, order + 1)))

    @staticmethod
    def backward(ctx, Gy, *Gd):
        x, Cp, Dp, a = ctx.saved_tensors
        basis, order = ctx.args
        if torch.is_grad_enabled():
            return (*_regrad(ctx, (x, Cp), lambda x, Cp: _input_jet_by_pieces(basis, x, Cp, order),
                             (Gy, *Gd)), None, None, None)
        I, _, n, O = a.shape
        R = order + 1
        zero = a.new_zeros(())
        A = [Gy.expand(I, n, O) if Gy is not None else zero.expand(I, n, O)]
        for G in Gd[:order]:
            A.append(G.permute(2, 0, 1) if G is not None else zero.expand(I, n, O))
        A = torch.stack(A, 1)                                                # (I, R, N, O)
        dx = dCp = None
        if ctx.needs_input_grad[1]:
            dCp = torch.bmm(Dp[:, :R * n].transpose(1, 2), A.reshape(I, R * n, O))
        if ctx.needs_input_grad[0]:
            dx = (A * a[:, 1:R + 1]).sum((1, 3)).T
        return dx, dCp, None, None, None


def _input_jet_by_pieces(basis, x, Cp, order):
    """The same outputs as ``_InputJet`` by the general route, under autograd."""
    C, Wb = Cp[:, :-1], Cp[:, -1]
    pieces = callable(getattr(basis, "piece_derivatives", None))
    coef = basis.piece_derivatives(C, order) if pieces else C
    a, _, _ = edge_derivatives(basis, x, coef, Wb, order, pieces)
    if order > 2:
        return _combine_high(a, None, order)
    return _combine(a, None, None, True, order)


def _combine_high(a, ds, order):
    """(y, d1, d2, .., d_order) from the edge derivatives a (list of (N, I, O)) and the
    input's diagonal jet ds = [g, h, t3, (t4)] (each (N, I, D); None: the network input,
    g the identity and the rest zero). Faà di Bruno along each axis,
    d_k = Σ_i Σ_r a_r B_(k,r)(ds), as one batched product per k over (r, i)."""
    y = a[0].sum(1)
    if ds is None:
        return (y, *(a[r].transpose(1, 2) for r in range(1, order + 1)))
    B = bell(ds[:order])
    out = [y]
    for k in range(1, order + 1):
        lhs = torch.cat([a[r].transpose(1, 2) for r in range(1, k + 1)], 2)   # (N, O, k·I)
        rhs = torch.cat([B[k][r] for r in range(1, k + 1)], 1)                # (N, k·I, D)
        out.append(torch.bmm(lhs, rhs))
    return tuple(out)


def _check_order(basis, order):
    """A B-spline of degree k has k - 1 continuous derivatives; its k-th is piecewise
    constant and every higher one zero between the knots. A jet of order > k would
    give a residual that cannot see the splines at all (u_xxxx of a cubic KAN is the
    SiLU path's alone): refused, not a silent zero."""
    k = getattr(basis, "k", None)
    if order > 2 and k is not None and order > k:
        raise KanpinnError(f"a derivative of order {order} of a KAN with B-splines of order k={k} "
                           f"is zero between the knots, so the residual could not train the splines; "
                           f"use k >= {order} (k >= {order + 1} keeps that derivative continuous, "
                           f"e.g. KAN(..., k={max(order + 1, 5)})) for a residual with {order}th derivatives")


def edge_jet(basis, x, g, h, C, Wb, identity=False, higher=()):
    """(y (N, O), gy (N, O, D), hy (N, O, D) or None) of a KAN layer's edges; see the
    module docstring. C: (I, nb, O) spline coefficients (scales and mask folded in);
    Wb: (I, O) base weights; ``h`` None: first-order jet; ``identity``: x is the network
    input (g, h are then not used).

    ``higher``: the input's diagonal third (and fourth) derivatives [t3, (t4)] (N, I, D)
    for a jet of order 3 (4) (for the network input only their count matters); the
    outputs then add d3 (and d4) (N, O, D). Orders 3 and 4 run as plain autograd ops
    (differentiable to any order; Faà di Bruno, ``_combine_high``), except the network
    input's cached-feature product, which serves every order."""
    if higher:
        order = 2 + len(higher)
        _check_order(basis, order)
        top = order + int(x.requires_grad and torch.is_grad_enabled())
        if identity and _use_features(basis, x, top):
            Cp = torch.cat([C, Wb[:, None, :]], 1)
            return _InputJet.apply(x, Cp, input_features(basis, x, top), basis, order)
        pieces = callable(getattr(basis, "piece_derivatives", None))
        coef = basis.piece_derivatives(C, order) if pieces else C
        a, _, _ = edge_derivatives(basis, x, coef, Wb, order, pieces)
        return _combine_high(a, None if identity else [g, h, *higher], order)
    order = 1 if h is None else 2
    top = order + int(x.requires_grad and torch.is_grad_enabled())
    if identity:
        if _use_features(basis, x, top):
            Cp = torch.cat([C, Wb[:, None, :]], 1)
            return _InputJet.apply(x, Cp, input_features(basis, x, top), basis, order)
        g = h = None
    pieces = callable(getattr(basis, "piece_derivatives", None))
    coef = basis.piece_derivatives(C, top) if pieces else C
    return _EdgeJet.apply(x, g, h, coef, Wb, basis, identity, order, pieces, top)


# --------------------------------------------------------------------------- per-point parameter gradients

def _sum_d(u, G, acc=None):
    """Σ_d u[n, i, d] G[n, o, d] -> (N, I, O), added to ``acc`` when given."""
    for d in range(u.shape[2]):
        term = u[:, :, d, None] * G[:, None, :, d]
        acc = term if acc is None else acc.add_(term)
    return acc


def edge_param_grads(basis, x, g, h, identity, deltas, coef=None, scale=None, higher=()):
    """Per-point gradients of a KAN layer's edge functions, for the structured Jacobian.

    ``deltas`` = (Gy (N, O), Ggy (N, O, D), Ghy (N, O, D)), the gradients of a sum of
    pointwise residuals at the layer's outputs (y, gy, hy); None where zero or absent.
    With A_r = ∂r/∂a_r as in the backward above (A_0 = Gy, A_1 = Σ_d Ggy·g + Ghy·h,
    A_2 = Σ_d Ghy·g²), point n's gradient with respect to the spline coefficient
    C[i, b, o] is Σ_r B_b^(r)(x_ni) A_r[n, i, o], and with respect to the base weight
    Wb[i, o] it is Σ_r SiLU^(r)(x_ni) A_r[n, i, o].

    Returns (first, Gc, Gb, Gs): ``first`` (N, I) the first non-zero basis function of
    each point (None for dense bases), Gc (N, I, w, O) for the w basis functions from
    ``first`` (all of them when dense), Gb (N, I, O), and Gs (N, I, O) or None.

    ``scale`` (I, O'), O a multiple of O' (blocks stacked along the outputs): Gc comes
    multiplied by it, the factor applied to the (N, I, O) signals A_r, not to the w
    times larger Gc. ``coef`` (I, nb, O'): Gs[n, i, o] = Σ_b Gc[n, i, b, o] coef[i, b, o]
    (Gc unscaled), the gradient for a factor on the whole spline (a layer's scale_sp),
    formed as Σ_r A_r · S_r with S_r = Σ_b B_b^(r) coef the unscaled spline's r-th
    derivative: (N, I, O') sums over the w basis functions, not products over the
    (N, I, w, O) tensor (at [2,20,m] k=5 G=20, three blocks: ~110 ms of a ~590 ms J
    build by the product route, with its scaling)."""
    Gy, Ggy, Ghy = (tuple(deltas) + (None, None, None))[:3]
    n, I = x.shape
    O = next(d.shape[1] for d in deltas if d is not None)
    A = [Gy[:, None, :].expand(n, I, O) if Gy is not None else None]
    if Ggy is not None or Ghy is not None:
        if identity:                    # g the identity (D = I), h zero
            A.append(Ggy.transpose(1, 2) if Ggy is not None else None)
            A.append(Ghy.transpose(1, 2) if Ghy is not None else None)
        else:
            # Σ_d over the few input dimensions as broadcast products (N·I tiny matrix
            # products ran ~10x slower: cavity [2,12,3], ~9 of the rules' ~60 ms)
            a1 = _sum_d(g, Ggy) if Ggy is not None else None
            if Ghy is not None and h is not None:
                a1 = _sum_d(h, Ghy, a1)
            A.append(a1)
            A.append(_sum_d(g * g, Ghy) if Ghy is not None else None)
    hi = tuple(deltas)[3:]
    if any(d is not None for d in hi):
        # orders 3, 4 (``higher`` = the input's t3, t4): A_r += Σ_k Σ_d G_k B_(k,r), the
        # Faà di Bruno weights of the forward (``jet.bell``)
        A += [None] * (3 + len(hi) - len(A))
        if identity:
            for k, Gk in enumerate(hi, start=3):
                A[k] = Gk.transpose(1, 2) if Gk is not None else None
        else:
            B = bell([g, h, *higher][:2 + len(hi)])
            for k, Gk in enumerate(hi, start=3):
                if Gk is not None:
                    for r in range(1, k + 1):
                        A[r] = _sum_d(B[k][r], Gk, A[r])
    while A and A[-1] is None:
        A.pop()
    R = len(A)
    first, vals = basis.evaluate(x, R - 1)
    sil = silu_derivatives(x, R - 1)
    Gs = None
    if coef is not None:
        S = _spline_derivatives(first, vals, coef, [r for r, a in enumerate(A) if a is not None])
        o1 = coef.shape[2]
        for r, a in enumerate(A):
            if a is None:
                continue
            term = a.reshape(n, I, O // o1, o1) * S[r][:, :, None, :]
            Gs = term if Gs is None else Gs.add_(term)
        Gs = Gs.reshape(n, I, O)
    As = A
    if scale is not None:
        rep = scale.repeat(1, O // scale.shape[1])                       # (I, O)
        As = [None if a is None else a * rep for a in A]
    # Σ_r as broadcast products over the few r (at most 3), skipping absent signals: a
    # batched matrix product of N·I tiny (w, R) @ (R, O) matrices ran several times slower
    # (cavity, [2,12,3]: ~7 ms of the rules' ~60 ms)
    Gc = Gb = None
    for r, (a, a_s) in enumerate(zip(A, As)):
        if a is None:
            continue
        a4 = a_s[:, :, None, :]
        Gc = vals[r][..., None] * a4 if Gc is None else Gc.addcmul_(vals[r][..., None], a4)
        Gb = sil[r][..., None] * a if Gb is None else Gb.addcmul_(sil[r][..., None], a)
    return first, Gc, Gb, Gs


def _spline_derivatives(first, vals, coef, orders):
    """{r: (N, I, O)}: Σ_b B_b^(r)(x) coef[i, b, o] for r in ``orders``. Local values
    (``first`` given): one row gather of the coefficients per basis function j < w, then
    multiply-adds over (N, I, O); dense values: one batched product per r."""
    I, nb, O = coef.shape
    if first is None:
        return {r: torch.bmm(vals[r].transpose(0, 1), coef).transpose(0, 1) for r in orders}
    n, w = first.shape[0], vals[0].shape[2]
    rows = coef.reshape(I * nb, O)
    at = (first + torch.arange(I, device=first.device) * nb).reshape(-1)
    S = {}
    for j in range(w):
        cj = rows.index_select(0, at + j).view(n, I, O)
        for r in orders:
            v = vals[r][:, :, j, None]
            S[r] = v * cj if j == 0 else S[r].addcmul_(v, cj)
    return S
