"""The fused layer jet (kanpinn.layer_jet) against independent references: the dense
basis contraction with einsum for values, finite differences for first and second
derivatives (torch.autograd.gradcheck / gradgradcheck, float64)."""
import pytest
import torch

from kanpinn.bases import make_basis
from kanpinn.bsplines import locate, scatter_dense
from kanpinn.layer_jet import edge_jet, silu_derivatives

F64 = torch.float64
CASES = [("bspline", 5, 3, False), ("bspline", 40, 3, False), ("bspline", 5, 3, True), ("bspline", 6, 1, True),
         ("bspline", 4, 5, False), ("chebyshev", 6, 3, False), ("rbf", 5, 3, False), ("fourier", 5, 3, False)]


def reference(b, x, g, h, C, Wb, identity, order):
    """y, gy, hy from the dense basis and einsum (no shared code with the fused path)."""
    first, vals = b.evaluate(x, order)
    if first is not None:
        vals = [scatter_dense(first, v, C.shape[1]) for v in vals]
    sil = silu_derivatives(x, order)
    a = [torch.einsum("nib,ibo->nio", v, C) + s[..., None] * Wb for v, s in zip(vals, sil)]
    y = a[0].sum(1)
    if identity:
        return y, a[1].transpose(1, 2), a[2].transpose(1, 2) if order == 2 else None
    gy = torch.einsum("nio,nid->nod", a[1], g)
    hy = None
    if order == 2:
        hy = torch.einsum("nio,nid->nod", a[2], g * g) + torch.einsum("nio,nid->nod", a[1], h)
    return y, gy, hy


def setup(kind, G, k, adapted, identity, order, O=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    I, D, N = 3, 2, 7
    b = make_basis(kind, I, G, k, (-1.0, 1.0), F64)
    if adapted:
        b = b.adapted(torch.rand(200, I, generator=gen, dtype=F64) ** 1.5 * 2 - 1, 0.3)
    x = (torch.rand(N, I, generator=gen, dtype=F64) * 2.4 - 1.2).requires_grad_()   # some outside the grid
    g = None if identity else torch.randn(N, I, D, generator=gen, dtype=F64).requires_grad_()
    h = torch.randn(N, I, D, generator=gen, dtype=F64).requires_grad_() if not identity and order == 2 else None
    C = torch.randn(I, b.size, O, generator=gen, dtype=F64).requires_grad_()
    Wb = torch.randn(I, O, generator=gen, dtype=F64).requires_grad_()
    return b, x, g, h, C, Wb


def as_function(b, g, h, identity, order):
    """The fused jet as a function of its tensor inputs only (for gradcheck)."""
    flag = None if order == 1 else torch.zeros(1, dtype=F64)     # identity: h only says "2nd order"

    def fn(*ins):
        it = iter(ins)
        x = next(it)
        if identity:
            # gradcheck perturbs x through .data, unseen by the first layer's feature
            # cache (identity + version counter): a fresh tensor per call
            x = x.clone()
        gg = next(it) if g is not None else None
        hh = next(it) if h is not None else None
        C, Wb = next(it), next(it)
        out = edge_jet(b, x, gg, flag if identity else hh, C, Wb, identity)
        return tuple(o for o in out if o is not None)
    return fn


@pytest.mark.parametrize("kind,G,k,adapted", CASES)
@pytest.mark.parametrize("identity", [True, False])
@pytest.mark.parametrize("order", [1, 2])
def test_fused_jet_values_and_gradients(kind, G, k, adapted, identity, order):
    b, x, g, h, C, Wb = setup(kind, G, k, adapted, identity, order)
    fn = as_function(b, g, h, identity, order)
    inputs = tuple(t for t in (x, g, h, C, Wb) if t is not None)
    out = fn(*inputs)
    ref = [r for r in reference(b, x, g, h, C, Wb, identity, order) if r is not None]
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("kind,G,k,adapted", CASES)
@pytest.mark.parametrize("order", [1, 2])
def test_network_input_layer_without_cached_features(kind, G, k, adapted, order, monkeypatch):
    """The first layer's general route (taken when its features would be too large)."""
    from kanpinn import layer_jet
    monkeypatch.setattr(layer_jet, "_FEATURES_MAX_COLUMNS", 0)
    test_fused_jet_values_and_gradients(kind, G, k, adapted, True, order)


@pytest.mark.parametrize("kind,G,k,adapted", [CASES[0], CASES[2], CASES[5]])
def test_fused_jet_second_derivatives(kind, G, k, adapted):
    """create_graph=True (a derivative of the jet taken by autograd) stays exact."""
    b, x, g, h, C, Wb = setup(kind, G, k, adapted, False, 2, O=2)
    fn = as_function(b, g, h, False, 2)
    assert torch.autograd.gradgradcheck(fn, (x, g, h, C, Wb))


@pytest.mark.parametrize("kind,G,k,adapted", [CASES[0], CASES[5]])
def test_network_input_layer_second_derivatives(kind, G, k, adapted):
    """create_graph=True through the cached-features route of the first layer."""
    b, x, _, _, C, Wb = setup(kind, G, k, adapted, True, 2, O=2)
    fn = as_function(b, None, None, True, 2)
    assert torch.autograd.gradgradcheck(fn, (x, C, Wb))


def test_single_output_layer_gradient_layout():
    """One output (the last layer of a PINN) takes the transposed scatter-add route."""
    b, x, g, h, C, Wb = setup("bspline", 7, 3, False, False, 2, O=1)
    fn = as_function(b, g, h, False, 2)
    assert torch.autograd.gradcheck(fn, (x, g, h, C, Wb))


def test_locate_equal_widths_matches_search():
    """The floor-based interval search on equal grids agrees with searchsorted away from
    the knots and outside the grid; a point within rounding of a knot may take either
    neighbouring piece, where the spline and its first k-1 derivatives agree."""
    b = make_basis("bspline", 2, 10, 3, (-1.0, 1.0), F64)
    assert b._equal
    pts = b.knots[:, 3:-3]
    x = torch.cat([torch.rand(500, 2, dtype=F64) * 3 - 1.5, pts.T + 1e-9, pts.T - 1e-9])
    j_fast, u_fast, _ = b.locate(x)
    j_ref, u_ref, _ = locate(x, pts, b._left, b._inv_h, equal=False)
    assert torch.equal(j_fast, j_ref)
    torch.testing.assert_close(u_fast, u_ref, rtol=0, atol=1e-12)
    on = pts.T.clone()
    j_on, u_on, _ = b.locate(on)
    left, _, _ = locate(on, pts, b._left, b._inv_h, equal=False)
    assert bool(((j_on == left) | (j_on == left - 1)).all())
    C = torch.randn(2, b.size, 1, dtype=F64)
    Q = b.piece_derivatives(C, 2)[..., 0].T.reshape(2, -1, 9)         # rows r = 0, 1, 2
    for jj in (j_on, left.clamp(max=9)):
        uu = (on - b._left.T.gather(0, jj)) * b._inv_h.T.gather(0, jj)
        rows = Q[torch.arange(2), jj]                                  # (G+1, 2, 9)
        vals = [sum(rows[..., at + q] * uu ** q for q in range(4 - r)) for r, at in enumerate((0, 4, 7))]
        if jj is j_on:
            first = vals
    for a, c in zip(first, vals):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-9)


def test_float32_uniform_grid_counts_as_equal():
    """A float32 copy of a uniform grid still takes the floor search."""
    b = make_basis("bspline", 3, 7, 3, (-1.0, 1.0), torch.float32)
    assert b._equal


@pytest.mark.parametrize("narrow", [True, False])
def test_interval_sums_sorted_route_agrees(narrow):
    """The sorted (CUDA, reproducible) and index_add_ (CPU) interval sums agree with a
    plain loop."""
    from kanpinn.layer_jet import _sum_by_interval
    gen = torch.Generator().manual_seed(3)
    I, G, rows, used, n = 3, 6, 9, 7, 50
    O = 1 if narrow else 5
    idx = (torch.randint(0, G, (n, I), generator=gen) + torch.arange(I) * G).reshape(-1)
    per_point = torch.randn(n * I, used, O, generator=gen, dtype=F64)
    dQg = per_point[..., 0].T.contiguous() if narrow else per_point.reshape(n * I, used * O)
    a = _sum_by_interval(dQg, idx, (rows, I * G, O), narrow, sort_first=False)
    b = _sum_by_interval(dQg, idx, (rows, I * G, O), narrow, sort_first=True)
    ref = torch.zeros(rows, I * G, O, dtype=F64)
    for m, i in enumerate(idx.tolist()):
        ref[:used, i] += per_point[m]
    torch.testing.assert_close(a, ref, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(b, ref, rtol=1e-13, atol=1e-13)


def test_input_features_cache_follows_input_and_grid():
    """The first layer's cached features give the same jet as the uncached route; they
    live on the input tensor (no module-level store), are recomputed when the input is
    changed in place (version counter) or the grid is replaced, and a hit compares no
    values."""
    import gc
    import weakref
    from kanpinn import layer_jet
    from kanpinn.kan import KAN
    gen = torch.Generator().manual_seed(5)
    model = KAN([2, 3, 1], grid=5, seed=0, dtype=F64)
    x = torch.rand(40, 2, generator=gen, dtype=F64) * 2 - 1

    def jet():
        return [t.detach().clone() for t in model.forward_jet(x, 2)]

    def uncached():
        old, layer_jet._FEATURES_MAX_COLUMNS = layer_jet._FEATURES_MAX_COLUMNS, 0
        try:
            return jet()
        finally:
            layer_jet._FEATURES_MAX_COLUMNS = old

    first = jet()
    store = getattr(x, layer_jet._FEATURES_ATTR)
    assert len(store) == 1
    D = next(iter(store.values()))[3]
    for a, b in zip(jet(), uncached()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert next(iter(store.values()))[3] is D                 # a hit: the same features
    with torch.no_grad():
        x.mul_(0.5)                                         # bumps x._version
    moved = jet()
    assert not torch.allclose(moved[0], first[0])
    for a, b in zip(moved, uncached()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    model.update_grid(x)
    for a, b in zip(jet(), uncached()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert len(store) == 1                                  # the stale entry went
    D_ref = weakref.ref(next(iter(store.values()))[3])
    del x, store
    gc.collect()
    assert D_ref() is None                                  # the features die with the input
