"""B-spline bases against scipy.interpolate.BSpline (the independent truth).

Both evaluation paths are checked: the Cox-de Boor triangle (``bsplines.local_basis``,
``dense_basis``) and the power-basis tables used by ``BSplineBasis.evaluate``, on uniform
and non-uniform knots, at random points, at points exactly on the knots and outside the
grid (both sides continue the end polynomial pieces, like scipy's ``extrapolate=True``).
"""

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kanpinn import bsplines
from kanpinn.bases import BSplineBasis

F64 = torch.float64


def scipy_dense(x, knots, k, nu=0):
    """All basis functions (or their nu-th derivatives) of one knot vector: (N, n_basis)."""
    t = np.asarray(knots, dtype=np.float64)
    n = len(t) - k - 1
    spl = BSpline(t, np.eye(n), k, extrapolate=True)
    if nu:
        spl = spl.derivative(nu)
    return spl(np.asarray(x, dtype=np.float64))


def nonuniform_knots(n_in, G, k, seed):
    """Strictly increasing, clearly non-uniform knot vectors (gaps vary by ~10x)."""
    rng = np.random.default_rng(seed)
    gaps = rng.uniform(0.1, 1.0, size=(n_in, G + 2 * k))
    t = np.cumsum(np.concatenate([np.zeros((n_in, 1)), gaps], 1), 1)
    t = t - t[:, k:k + 1] - 1.0            # grid starts at -1 (arbitrary)
    return torch.tensor(t, dtype=F64)


def sample_points(knots, k, n=60, seed=0):
    """Per column: random points inside, every knot of the grid exactly, and (the last 4
    rows) points outside the grid on both sides. (M, in)."""
    rng = np.random.default_rng(seed)
    kn = knots.numpy()
    cols = []
    for t in kn:
        lo, hi = t[k], t[len(t) - k - 1]
        inside = rng.uniform(lo, hi, n)
        on_knots = t[k:len(t) - k]
        outside = np.array([lo - 0.3 * (hi - lo), lo - 1e-3, hi + 1e-3, hi + 0.25 * (hi - lo)])
        cols.append(np.concatenate([inside, on_knots, outside]))
    return torch.tensor(np.stack(cols, 1), dtype=F64)


def knot_sets():
    out = []
    for k in (1, 2, 3, 5):
        out.append(("uniform", k, bsplines.uniform_knots(torch.tensor([-1.0, 0.0], dtype=F64),
                                                        torch.tensor([1.0, 3.0], dtype=F64), 7, k)))
        out.append(("nonuniform", k, nonuniform_knots(2, 6, k, seed=k)))
    return out


KNOTS = knot_sets()
IDS = [f"{name}-k{k}" for name, k, _ in KNOTS]


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1.0)


N_OUT = 4   # rows of sample_points outside the grid


def check_close(got, ref, nu, where):
    """Inside the grid: 1e-12 (values) / 1e-9 (derivatives) relative to the largest value.
    Outside (extrapolated end pieces, where |B| grows like |u|^k): the power-basis tables
    lose a few digits to cancellation, so 1e-9 relative there."""
    tol = 1e-12 if nu == 0 else 1e-9
    inside = _rel(got[:-N_OUT], ref[:-N_OUT])
    outside = _rel(got[-N_OUT:], ref[-N_OUT:])
    assert inside < tol, (where, nu, "inside", inside)
    assert outside < 1e-9, (where, nu, "outside", outside)


@pytest.mark.parametrize("name,k,knots", KNOTS, ids=IDS)
def test_local_and_dense_basis_match_scipy(name, k, knots):
    x = sample_points(knots, k)
    dense = bsplines.dense_basis(x, knots, k, order=2)
    first, local = bsplines.local_basis(x, knots, k, order=2)
    nb = bsplines.n_basis(knots, k)
    for i in range(knots.shape[0]):
        for nu in range(3):
            if nu > k:      # derivatives beyond the degree are zero; scipy refuses them
                assert np.abs(dense[nu][:, i].numpy()).max() < 1e-9
                continue
            ref = scipy_dense(x[:, i].numpy(), knots[i].numpy(), k, nu)
            got = dense[nu][:, i].numpy()
            tol = 1e-12 if nu == 0 else 1e-9
            assert _rel(got, ref) < tol, (name, k, i, nu, _rel(got, ref))   # Cox-de Boor: everywhere
            # the local values are exactly the dense ones at first .. first + k
            idx = first[:, i, None].numpy() + np.arange(k + 1)
            assert (idx >= 0).all() and (idx < nb).all()
            np.testing.assert_array_equal(np.take_along_axis(got, idx, 1), local[nu][:, i].numpy())
            # ... and the functions outside that window vanish there (scipy agrees)
            window = np.zeros_like(ref, dtype=bool)
            np.put_along_axis(window, idx, True, 1)
            assert np.abs(ref[~window]).max(initial=0.0) < 1e-12


@pytest.mark.parametrize("name,k,knots", KNOTS, ids=IDS)
def test_power_table_path_matches_scipy(name, k, knots):
    basis = BSplineBasis(knots.shape[0], grid=knots.shape[1] - 2 * k - 1, k=k, dtype=F64)
    basis.knots = knots.clone()
    basis._rebuild()            # tables follow the knots (as after load_state_dict)
    # the same through the public route: load_state_dict rebuilds the tables
    basis2 = BSplineBasis(knots.shape[0], grid=knots.shape[1] - 2 * k - 1, k=k, dtype=F64)
    basis2.load_state_dict({"knots": knots.clone()})
    x = sample_points(knots, k, seed=1)
    for b in (basis, basis2):
        first, vals = b.evaluate(x, order=2)
        assert len(vals) == 3
        for nu in range(min(k, 2) + 1):
            dense = bsplines.scatter_dense(first, vals[nu], b.size)
            for i in range(knots.shape[0]):
                ref = scipy_dense(x[:, i].numpy(), knots[i].numpy(), k, nu)
                check_close(dense[:, i].numpy(), ref, nu, (name, k, i))


def test_adapted_nonuniform_grid_matches_scipy():
    """Knots placed by ``adapted`` (quantiles of skewed samples) differ per column."""
    g = torch.Generator().manual_seed(3)
    xs = torch.rand(500, 3, generator=g, dtype=F64) ** torch.tensor([1.0, 3.0, 0.5], dtype=F64) * 4 - 1
    basis = BSplineBasis(3, grid=8, k=3, dtype=F64).adapted(xs)
    gaps = torch.diff(bsplines.grid_points(basis.knots, 3), dim=1)
    assert (gaps > 0).all() and (gaps.max(1).values / gaps.min(1).values)[1:].min() > 1.5
    x = sample_points(basis.knots, 3, seed=2)
    first, vals = basis.evaluate(x, order=2)
    for nu in range(3):
        dense = bsplines.scatter_dense(first, vals[nu], basis.size)
        for i in range(3):
            ref = scipy_dense(x[:, i].numpy(), basis.knots[i].numpy(), 3, nu)
            check_close(dense[:, i].numpy(), ref, nu, ("adapted", i))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_partition_of_unity_inside_grid(k):
    knots = nonuniform_knots(2, 9, k, seed=10 + k)
    lo, hi = knots[:, k], knots[:, -k - 1]
    s = torch.linspace(0, 1, 301, dtype=F64)[:, None]
    x = lo + (hi - lo) * s
    x = torch.cat([x, bsplines.grid_points(knots, k).T], 0)         # knots exactly too
    (b0, b1, b2) = bsplines.dense_basis(x, knots, k, order=2)
    assert torch.allclose(b0.sum(-1), torch.ones_like(x), atol=1e-13, rtol=0)
    assert b1.sum(-1).abs().max() < 1e-10
    assert b2.sum(-1).abs().max() < 1e-8
    assert (b0 >= -1e-15).all()
    basis = BSplineBasis(2, grid=9, k=k, dtype=F64)
    basis.load_state_dict({"knots": knots})
    _, (v,) = basis.evaluate(x, 0)
    assert torch.allclose(v.sum(-1), torch.ones_like(x), atol=1e-13, rtol=0)


def test_float32_close_to_float64():
    knots = bsplines.uniform_knots(torch.tensor([-1.0]), torch.tensor([1.0]), 5, 3)
    assert knots.dtype == torch.float32
    x = torch.linspace(-1.2, 1.2, 97)[:, None]
    b32 = BSplineBasis(1, 5, 3, dtype=torch.float32)
    first, (v32, d32) = b32.evaluate(x, 1)
    assert v32.dtype == torch.float32
    ref = scipy_dense(x[:, 0].double().numpy(), knots[0].double().numpy(), 3)
    dense = bsplines.scatter_dense(first, v32, b32.size)[:, 0].double().numpy()
    assert _rel(dense, ref) < 1e-6


def test_derivatives_at_knots_by_autograd():
    """Autograd through the basis (first and second derivatives) at points exactly on
    the knots equals the analytic derivatives: no abs()/where trap (FIELD_NOTES)."""
    k = 3
    knots = nonuniform_knots(1, 6, k, seed=5)
    x = bsplines.grid_points(knots, k).T.clone().requires_grad_(True)     # (G+1, 1)
    basis = BSplineBasis(1, 6, k, dtype=F64)
    basis.load_state_dict({"knots": knots})
    c = torch.randn(basis.size, dtype=F64, generator=torch.Generator().manual_seed(0))
    for evaluate in (lambda z: basis.evaluate(z, 0), lambda z: bsplines.local_basis(z, knots, k, 0)):
        first, (v,) = evaluate(x)
        f = (bsplines.scatter_dense(first, v, basis.size)[:, 0] @ c)
        (d1,) = torch.autograd.grad(f.sum(), x, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), x)
        spl = BSpline(knots[0].numpy(), c.numpy(), k)
        xn = x.detach()[:, 0].numpy()
        np.testing.assert_allclose(d1[:, 0].detach().numpy(), spl.derivative(1)(xn), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(d2[:, 0].numpy(), spl.derivative(2)(xn), rtol=1e-9, atol=1e-9)
