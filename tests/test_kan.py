"""KAN models, jets and derivative operators against independent truths.

Truths used here: a numpy/scipy re-implementation of the KAN forward pass (scipy
``BSpline`` per edge), central finite differences, nested autograd on ``forward``,
``torch.autograd.gradcheck``, closed-form functions (x·y, sin(πx)) and hand derivatives.
"""

import copy
import math

import numpy as np
import pytest
import sympy
import torch
from scipy.interpolate import BSpline

import kanpinn as kp
from kanpinn import bsplines
from kanpinn import jet as jets
from kanpinn.edge_formula import EdgeFormula
from kanpinn.errors import KanpinnError

F64 = torch.float64


def rand(n, d, seed=0, lo=-1.0, hi=1.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, d, generator=g, dtype=dtype)


def make_kan(widths=(2, 4, 1), grid=5, k=3, seed=0, dtype=F64, basis="bspline", noise=0.3):
    """A KAN with non-trivial edges (larger random coefficients than the default)."""
    m = kp.KAN(list(widths), grid=grid, k=k, seed=seed, dtype=dtype, basis=basis, noise_scale=noise)
    return m


def silu_np(x):
    return x / (1 + np.exp(-x))


def reference_forward(model, x):
    """The KAN's forward pass rebuilt from its parameters with scipy BSplines (no kanpinn
    evaluation code): y_o = Σ_i mask·(w_b silu(x_i) + w_s Σ_b c B_b(x_i))."""
    x = x.detach().numpy().astype(np.float64)
    for li, layer in enumerate(model.layers):
        knots = layer.basis.knots.detach().numpy().astype(np.float64)
        k = layer.basis.k
        coef = layer.coef.detach().numpy().astype(np.float64)
        wb = layer.scale_base.detach().numpy().astype(np.float64)
        ws = layer.scale_sp.detach().numpy().astype(np.float64)
        mask = layer.mask.detach().numpy().astype(np.float64)
        y = np.zeros((x.shape[0], layer.out_dim))
        for i in range(layer.in_dim):
            for o in range(layer.out_dim):
                spl = BSpline(knots[i], coef[i, :, o], k, extrapolate=True)
                y[:, o] += mask[i, o] * (wb[i, o] * silu_np(x[:, i]) + ws[i, o] * spl(x[:, i]))
        n_sum, n_mult = model.widths[li + 1]
        if n_mult:
            y = np.concatenate([y[:, :n_sum], y[:, n_sum::2] * y[:, n_sum + 1::2]], 1)
        x = y
    return x


def autograd_jet(model, x):
    """Gradient and Hessian diagonal of every output by nested autograd on forward."""
    x = x.detach().clone().requires_grad_(True)
    u = model(x)
    g = torch.zeros(u.shape + (x.shape[1],), dtype=x.dtype)
    h = torch.zeros_like(g)
    for o in range(u.shape[1]):
        (go,) = torch.autograd.grad(u[:, o].sum(), x, create_graph=True)
        g[:, o] = go.detach()
        for j in range(x.shape[1]):
            (hj,) = torch.autograd.grad(go[:, j].sum(), x, retain_graph=True)
            h[:, o, j] = hj[:, j]
    return u.detach(), g, h


def fd_laplacian(f, x, h=1e-4):
    """Central second differences, summed over the input columns. f: (N, d) -> (N, m)."""
    lap = 0
    f0 = f(x)
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = h
        lap = lap + (f(x + e) - 2 * f0 + f(x - e)) / h ** 2
    return lap


def greville(knots, k):
    """Greville abscissae: Σ_b ξ_b B_b(x) = x for every x (linear precision)."""
    n = knots.shape[-1] - k - 1
    return torch.stack([knots[..., b + 1:b + k + 1].mean(-1) for b in range(n)], -1)


def set_identity_edge(layer, i, o):
    """Make edge i -> o of a B-spline layer compute exactly x_i (spline = x, no SiLU)."""
    with torch.no_grad():
        layer.coef[i, :, o] = greville(layer.basis.knots[i], layer.basis.k)
        layer.scale_sp[i, o] = 1.0
        layer.scale_base[i, o] = 0.0
        layer.mask[i, o] = 1.0


# ------------------------------------------------------------------ forward


@pytest.mark.parametrize("grid", [5, 40])      # 5: dense scatter product, 40: gather path
def test_forward_matches_scipy_reference(grid):
    model = make_kan((3, 4, 2), grid=grid, seed=1)
    x = torch.cat([rand(200, 3, seed=2), rand(20, 3, seed=3, lo=-1.6, hi=1.6)])   # some out of grid
    ref = reference_forward(model, x)
    out = model(x).detach().numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    # the jet's value is the same function
    u, _, _ = model.forward_jet(x, 2)
    np.testing.assert_allclose(u.detach().numpy(), ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def test_forward_with_mask_and_nonuniform_grid_matches_reference():
    model = make_kan((2, 3, 2), grid=6, seed=4)
    model.update_grid(rand(300, 2, seed=5) ** 3)            # non-uniform knots per layer
    with torch.no_grad():
        model.layers[0].mask[1, 2] = 0.0
        model.layers[1].mask[0, 1] = 0.0
    x = rand(100, 2, seed=6)
    np.testing.assert_allclose(model(x).detach().numpy(), reference_forward(model, x), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_and_float64_run(dtype):
    model = make_kan((2, 5, 1), seed=7, dtype=dtype)
    x = rand(64, 2, seed=8, dtype=dtype).requires_grad_(True)
    u = jets.evaluate(model, x, 2)
    lap = kp.laplacian(u, x)
    assert u.dtype == dtype and lap.dtype == dtype and lap.shape == (64, 1)
    ref = reference_forward(model, x)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(u.detach().numpy(), ref, rtol=tol, atol=tol)
    lap.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # float32 Laplacian agrees with float64's
    m64 = copy.deepcopy(model).double()
    x64 = x.detach().double().requires_grad_(True)
    _, _, h64 = m64.forward_jet(x64, 2)
    np.testing.assert_allclose(lap.detach().double().numpy(), h64.sum(-1).detach().numpy(),
                               rtol=1e-3 if dtype == torch.float32 else 1e-12, atol=1e-3 if dtype == torch.float32 else 1e-12)


def test_input_shape_errors():
    model = make_kan((2, 3, 1))
    for bad in (torch.zeros(5, 3, dtype=F64), torch.zeros(5, dtype=F64), np.zeros((5, 2))):
        with pytest.raises(KanpinnError, match=r"\(N, 2\)"):
            model(bad)
        with pytest.raises(KanpinnError):
            model.forward_jet(bad, 2)
    with pytest.raises(KanpinnError):
        kp.KAN([2])
    # input on another device or in another dtype than the model: named, not a deep error
    # ("meta" stands in for a CUDA tensor on machines without a GPU)
    for m in (model, kp.MLP([2, 8, 1], dtype=F64)):
        with pytest.raises(KanpinnError, match=r"input is on meta but the model is on cpu"):
            m(torch.zeros(5, 2, dtype=F64, device="meta"))
        with pytest.raises(KanpinnError, match=r"dtype torch.float32 but the model has torch.float64"):
            m(torch.zeros(5, 2, dtype=torch.float32))
    with pytest.raises(KanpinnError):
        kp.KAN([[1, 1], 2])        # multiplication nodes in the input layer
    with pytest.raises(KanpinnError):
        kp.KAN([2, 3, 1], basis="wavelet")


@pytest.mark.parametrize("widths", [(2, 4, 1), (2, [3, 1], 2)])
@pytest.mark.parametrize("grid", [5, 40])
def test_empty_batch_gives_empty_output_with_derivatives(widths, grid):
    # an empty batch (a selector that picked no points) is a (0, m) output, differentiable
    # to a zero loss, not a reshape error deep in the layers
    model = make_kan(widths, grid=grid)
    m = model.width_out
    assert model(torch.zeros(0, 2, dtype=F64)).shape == (0, m)
    x = torch.zeros(0, 2, dtype=F64, requires_grad=True)
    u = model(x)
    assert u.shape == (0, m)
    assert kp.grad(u[:, :1], x).shape == (0, 2)
    assert kp.laplacian(u[:, :1], x).shape == (0, 1)
    loss = (u ** 2).sum() + kp.laplacian(u[:, :1], x).sum()
    loss.backward()
    assert float(loss.detach()) == 0.0
    y, g, h = model.forward_jet(torch.zeros(0, 2, dtype=F64), 2)
    assert y.shape == (0, m) and g.shape == (0, m, 2) and h.shape == (0, m, 2)


def test_config_round_trip_keeps_grid_range():
    model = kp.KAN([2, 3, 1], grid_range=(-3.0, 5.0), seed=1, dtype=F64)
    assert model.config()["grid_range"] == [-3.0, 5.0]
    from kanpinn.models import model_from_config
    copy_ = model_from_config(model.config(), F64)
    assert copy_.grid_range == (-3.0, 5.0)


# ------------------------------------------------------------------ jets


@pytest.mark.parametrize("widths", [(2, 4, 1), (3, [2, 2], 2), (2, 3, 3, 1)])
@pytest.mark.parametrize("grid", [5, 40])
def test_jet_matches_autograd_and_finite_differences(widths, grid):
    model = make_kan(widths, grid=grid, seed=9, noise=0.1)
    d = model.width_in
    x = torch.cat([rand(40, d, seed=10), rand(5, d, seed=11, lo=-1.5, hi=1.5)])
    u, g, h = model.forward_jet(x, 2)
    ua, ga, ha = autograd_jet(model, x)
    assert g.shape == (x.shape[0], model.width_out, d) and h.shape == g.shape
    torch.testing.assert_close(u.detach(), ua, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g.detach(), ga, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h.detach(), ha, rtol=1e-10, atol=1e-10)
    # finite differences, point by point (values outside the grid grow fast on fine grids:
    # the end polynomial pieces are continued); a step may straddle a knot, where the
    # third derivative jumps, and a composition of fine splines has large fourth
    # derivatives (truncation error ~ step², measured 2.9e-2 at 1e-4, 2.9e-4 at 1e-5),
    # hence the smaller step and the looser bound on the fine grid
    fd = fd_laplacian(lambda z: model(z).detach(), x, 1e-4 if grid == 5 else 1e-5)
    lap = h.detach().sum(-1)
    rel = (lap - fd).abs() / (lap.abs() + u.detach().abs() + 1)
    assert rel.max() < (1e-4 if grid == 5 else 5e-3), rel.max()
    # order 1 returns the same gradient and no curvature
    u1, g1, h1 = model.forward_jet(x, 1)
    assert h1 is None
    torch.testing.assert_close(g1.detach(), g.detach(), rtol=1e-13, atol=1e-13)


def test_derivatives_exactly_at_knots():
    """Collocation points on the knots (a uniform grid sampler puts them there): the jet,
    nested autograd and finite differences agree on the Laplacian (FIELD_NOTES trap)."""
    model = make_kan((2, 3, 1), grid=5, seed=12)
    pts = bsplines.grid_points(model.layers[0].basis.knots, 3)[0]          # -1, -0.6, ..., 1
    X, Y = torch.meshgrid(pts, pts, indexing="ij")
    x = torch.stack([X.flatten(), Y.flatten()], 1)
    _, _, h = model.forward_jet(x, 2)
    _, _, ha = autograd_jet(model, x)
    torch.testing.assert_close(h.detach(), ha, rtol=1e-10, atol=1e-10)
    # central differences straddle the knot (C² spline: second derivative continuous there)
    fd = fd_laplacian(lambda z: model(z).detach(), x)
    lap = h.detach().sum(-1)
    assert (lap - fd).abs().max() < 1e-3 * lap.abs().max().clamp_min(1.0)
    # second derivative of a single layer-0 edge at its knots equals scipy's
    layer = model.layers[0]
    xs = torch.stack([pts, pts], 1)
    g0 = torch.eye(2, dtype=F64).expand(len(pts), 2, 2)
    _, _, hy = layer.forward_jet(xs, g0, torch.zeros_like(g0))
    ref = np.zeros((len(pts), layer.out_dim))
    for i in range(2):
        for o in range(layer.out_dim):
            c = (layer.coef[i, :, o] * layer.scale_sp[i, o]).detach().numpy()
            spl2 = BSpline(layer.basis.knots[i].numpy(), c, 3).derivative(2)(pts.numpy())
            s = 1 / (1 + np.exp(-pts.numpy()))
            silu2 = s * (1 - s) * (2 + pts.numpy() * (1 - 2 * s))
            ref[:, o] += spl2 + layer.scale_base[i, o].item() * silu2
    np.testing.assert_allclose(hy.detach().sum(-1).numpy(), ref, rtol=1e-10, atol=1e-10)


class _JetLaplacian(torch.nn.Module):
    """Module whose forward is the jet Laplacian, so functional_call can swap parameters."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, x):
        return self.m.forward_jet(x, 2)[2].sum(-1)


def test_gradcheck_forward_and_laplacian():
    """gradcheck (float64) of the forward pass and of the jet Laplacian with respect to
    the inputs and to every parameter (multiplication node included)."""
    model = make_kan((2, [2, 1], 1), grid=3, seed=13)
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in model.named_parameters()]
    x = rand(6, 2, seed=14, lo=-0.95, hi=0.95).requires_grad_(True)
    lap = _JetLaplacian(model)

    def forward(x_, *ps):
        return torch.func.functional_call(model, dict(zip(names, ps)), (x_.clone(),))

    def laplacian(x_, *ps):
        return torch.func.functional_call(lap, {"m." + n: p for n, p in zip(names, ps)}, (x_.clone(),))

    # gradcheck perturbs x through .data, which the first layer's feature cache (keyed on
    # identity and version counter) does not see: each call gets a fresh tensor (x_.clone())
    for f in (forward, laplacian):
        assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_jet_attached_laplacian_is_cheap_and_right():
    model = make_kan((2, 6, 1), seed=15)
    x = rand(50, 2, seed=16).requires_grad_(True)
    u = jets.evaluate(model, x, 2)
    assert jets.lookup(u, x) is not None
    lap_jet = kp.laplacian(u, x)
    lap_ag = kp.laplacian(model(x), x)                     # no jet: nested autograd
    torch.testing.assert_close(lap_jet, lap_ag, rtol=1e-10, atol=1e-10)
    # the training gradient of a loss on the jet Laplacian equals the autograd one
    g1 = torch.autograd.grad((lap_jet ** 2).mean(), list(model.parameters()))
    g2 = torch.autograd.grad((lap_ag ** 2).mean(), list(model.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


# ------------------------------------------------------------------ multiplication nodes


def test_multiplication_node_computes_product_with_spline_identities():
    model = kp.KAN([2, [0, 1], 1], grid=4, k=3, dtype=F64, seed=0)
    assert model.layers[0].out_dim == 2 and model.layers[1].in_dim == 1
    l0, l1 = model.layers
    with torch.no_grad():
        for layer in (l0, l1):
            layer.mask.zero_()
    set_identity_edge(l0, 0, 0)        # sub-node a = x
    set_identity_edge(l0, 1, 1)        # sub-node b = y
    set_identity_edge(l1, 0, 0)        # output = a * b
    x = rand(200, 2, seed=17).requires_grad_(True)
    u = jets.evaluate(model, x, 2)
    xy = (x[:, 0] * x[:, 1])[:, None]
    torch.testing.assert_close(u, xy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kp.grad(u, x), torch.stack([x[:, 1], x[:, 0]], 1), rtol=1e-11, atol=1e-11)
    assert kp.laplacian(u, x).abs().max() < 1e-10
    # mixed derivative (autograd on top of the jet's gradient) is 1
    (dxy,) = torch.autograd.grad(kp.partial(u, x, 0).sum(), x)
    torch.testing.assert_close(dxy[:, 1], torch.ones(200, dtype=F64), rtol=1e-10, atol=1e-10)


def test_multiplication_node_with_symbolic_edges():
    model = kp.KAN([2, [0, 1], 1], grid=4, k=3, dtype=F64, seed=1)
    l0, l1 = model.layers
    with torch.no_grad():
        l0.mask.zero_()
        l1.mask.zero_()
    l0.fix_symbolic(0, 0, EdgeFormula("x", lambda z: z, dtype=F64))                      # x
    l0.fix_symbolic(1, 1, EdgeFormula("sin", sympy.sin, a=math.pi, dtype=F64))          # sin(πy)
    l1.fix_symbolic(0, 0, EdgeFormula("x", lambda z: z, dtype=F64))
    x = rand(100, 2, seed=18).requires_grad_(True)
    u = jets.evaluate(model, x, 2)
    truth = x[:, 0:1] * torch.sin(math.pi * x[:, 1:2])
    torch.testing.assert_close(u, truth, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kp.laplacian(u, x), -math.pi ** 2 * truth, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ grids


def test_extend_grid_keeps_function_nested():
    model = make_kan((2, 4, 1), grid=5, seed=19)
    x = torch.cat([rand(500, 2, seed=20), rand(50, 2, seed=21, lo=-1.3, hi=1.3)])
    y0 = model(x).detach()
    for G in (10, 20):
        model.extend_grid(G)
        assert all(layer.basis.grid == G for layer in model.layers)
        y = model(x).detach()
        assert ((y - y0).abs().max() / y0.abs().max()) < 1e-10, G
    # with samples (the solver passes its collocation points) as well
    model.extend_grid(40, x)
    assert ((model(x).detach() - y0).abs().max() / y0.abs().max()) < 1e-10


def smooth_coefficients(model):
    """Set every spline to a smooth function (its values at the Greville points) so that
    least-squares refits on other grids have a small fit error."""
    with torch.no_grad():
        for li, layer in enumerate(model.layers):
            xi = greville(layer.basis.knots, layer.basis.k)            # (in, nb)
            for o in range(layer.out_dim):
                a = 0.7 + 0.3 * o + 0.2 * li
                layer.coef[:, :, o] = torch.sin(a * math.pi * xi / 2 + o) * 0.8


def test_extend_grid_non_multiple_within_fit_error():
    """5 -> 7 intervals: the spaces do not nest, so the refit is a least-squares
    approximation; inside each layer's grid it stays within the fit error."""
    model = make_kan((2, 3, 1), grid=5, seed=22)
    smooth_coefficients(model)
    x = rand(500, 2, seed=23)
    model.update_grid(x)                 # every layer's inputs inside its grid
    ins = model.layer_inputs(x)
    edges0 = [layer.edge_values(xi).detach() for layer, xi in zip(model.layers, ins)]
    y0 = model(x).detach()
    model.extend_grid(7)
    assert [layer.basis.grid for layer in model.layers] == [7, 7]
    for layer, xi, e0 in zip(model.layers, ins, edges0):
        err = (layer.edge_values(xi).detach() - e0).abs().max() / e0.abs().max()
        assert err < 1e-3, err
    err = (model(x).detach() - y0).abs().max() / y0.abs().max()
    assert err < 1e-3, err


def test_update_grid_brings_inputs_inside_and_keeps_function():
    model = make_kan((2, 4, 1), grid=10, seed=24)
    smooth_coefficients(model)
    x = torch.cat([rand(400, 1, seed=25, lo=-1.4, hi=1.2), rand(400, 1, seed=26, lo=-0.7, hi=1.5) ** 1], 1)
    outside = [((xi < l.basis.lo) | (xi > l.basis.hi)).any().item()
               for l, xi in zip(model.layers, model.layer_inputs(x))]
    assert outside[0]
    y0 = model(x).detach()
    model.update_grid(x)
    for layer, xi in zip(model.layers, model.layer_inputs(x)):
        assert (xi >= layer.basis.lo - 1e-12).all() and (xi <= layer.basis.hi + 1e-12).all()
        assert torch.isfinite(layer.coef).all()
    err = (model(x).detach() - y0).abs().max() / y0.abs().max()
    assert err < 1e-2, err


def test_update_grid_with_repeated_samples_stays_finite():
    """Many identical samples (a column that is constant) must not break the refit."""
    model = make_kan((2, 3, 1), grid=5, seed=27)
    x = rand(200, 2, seed=28)
    x[:, 1] = 0.25
    model.update_grid(x)
    kn = model.layers[0].basis.knots
    assert torch.isfinite(model(x)).all() and (torch.diff(kn, dim=1) > 0).all()


def test_spline_least_squares_convergence_rate():
    """Least-squares fit of sin(πx) by one cubic B-spline edge: error ~ G^-(k+1)."""
    xs = torch.linspace(-1, 1, 2001, dtype=F64)[:, None]
    truth = torch.sin(math.pi * xs)
    errs, grids = [], [4, 8, 16, 32]
    for G in grids:
        model = kp.KAN([1, 1], grid=G, k=3, dtype=F64, seed=0)
        layer = model.layers[0]
        (B,) = bsplines.dense_basis(xs, layer.basis.knots, 3, 0)
        c = torch.linalg.lstsq(B[:, 0, :], truth).solution                 # (G+3, 1)
        with torch.no_grad():
            layer.coef[0, :, 0] = c[:, 0]
            layer.scale_sp.fill_(1.0)
            layer.scale_base.zero_()
        errs.append((model(xs) - truth).abs().max().item())
    slope = np.polyfit(np.log(grids), np.log(errs), 1)[0]
    assert -4.7 < slope < -3.3, (slope, errs)
    assert errs[-1] < 1e-5


# ------------------------------------------------------------------ other bases


@pytest.mark.parametrize("basis", ["chebyshev", "rbf", "fourier"])
def test_other_bases_jets_match_autograd(basis):
    model = make_kan((2, 3, 1), grid=6, seed=29, basis=basis, noise=0.2)
    x = rand(40, 2, seed=30).requires_grad_(True)
    u, g, h = model.forward_jet(x, 2)
    ua, ga, ha = autograd_jet(model, x)
    torch.testing.assert_close(u.detach(), ua, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g.detach(), ga, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h.detach(), ha, rtol=1e-10, atol=1e-10)
    fd = fd_laplacian(lambda z: model(z).detach(), x.detach())
    assert (h.detach().sum(-1) - fd).abs().max() < 1e-5 * h.abs().max().clamp_min(1.0)


def test_chebyshev_basis_is_chebyshev():
    b = kp.KAN([1, 1], grid=6, basis="chebyshev", dtype=F64).layers[0].basis
    x = torch.linspace(-1, 1, 11, dtype=F64)[:, None]
    _, (v,) = b.evaluate(x, 0)
    ref = np.polynomial.chebyshev.chebvander(x[:, 0].numpy(), 5)
    np.testing.assert_allclose(v[:, 0].numpy(), ref, atol=1e-13)


@pytest.mark.parametrize("basis,tol", [("chebyshev", 1e-10), ("fourier", 1e-10), ("rbf", 5e-2)])
def test_other_bases_refine_keeps_function(basis, tol):
    model = make_kan((2, 3, 1), grid=5, seed=31, basis=basis, noise=0.2)
    x = rand(300, 2, seed=32)
    y0 = model(x).detach()
    model.extend_grid(9)
    assert model.layers[0].basis.size == 9
    err = (model(x).detach() - y0).abs().max() / y0.abs().max()
    assert err < tol, err


# ------------------------------------------------------------------ MLP jets


@pytest.mark.parametrize("act", ["tanh", "sin", "silu", "softplus", "gelu"])
def test_mlp_jet_matches_autograd(act):
    model = kp.MLP([2, 8, 8, 1], activation=act, seed=0, dtype=F64)
    x = rand(30, 2, seed=33)
    u, g, h = model.forward_jet(x, 2)
    ua, ga, ha = autograd_jet(model, x)
    torch.testing.assert_close(u.detach(), ua, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g.detach(), ga, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h.detach(), ha, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ operators


def test_operators_autograd_fallback_vs_hand_derivatives():
    x = rand(50, 3, seed=34).requires_grad_(True)
    a, b, c = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    u = torch.sin(a) * b ** 2 + torch.exp(c) * a
    g = kp.grad(u, x)
    torch.testing.assert_close(g, torch.cat([torch.cos(a) * b ** 2 + torch.exp(c),
                                             2 * torch.sin(a) * b, torch.exp(c) * a], 1))
    torch.testing.assert_close(kp.partial(u, x, 0, 2), -torch.sin(a) * b ** 2)
    torch.testing.assert_close(kp.partial(u, x, 1, 3), torch.zeros_like(a))
    torch.testing.assert_close(kp.partial(u, x, -1, 3), torch.exp(c) * a)
    torch.testing.assert_close(kp.partial(u, x, 2, 0), u)
    torch.testing.assert_close(kp.laplacian(u, x), -torch.sin(a) * b ** 2 + 2 * torch.sin(a) + torch.exp(c) * a)
    torch.testing.assert_close(kp.laplacian(u, x, dims=[0, 1]), -torch.sin(a) * b ** 2 + 2 * torch.sin(a))
    v = torch.cat([a * b, b ** 3, torch.sin(c)], 1)
    torch.testing.assert_close(kp.div(v, x), b + 3 * b ** 2 + torch.cos(c))
    # results stay differentiable (training needs it)
    assert kp.laplacian(u, x).requires_grad
    # a constant field has zero derivatives
    const = torch.ones(50, 1, dtype=F64)
    assert (kp.grad(const, x) == 0).all() and (kp.laplacian(const, x) == 0).all()


def test_operators_on_jets_match_fallback():
    model = make_kan((3, 4, 1), seed=35)
    x = rand(30, 3, seed=36).requires_grad_(True)
    for order in (1, 2):
        u = jets.evaluate(model, x, order)
        plain = jets.strip(model(x))                     # no jet: operators use autograd
        assert jets.lookup(plain, x) is None and jets.lookup(u, x) is not None
        torch.testing.assert_close(kp.grad(u, x), kp.grad(plain, x), rtol=1e-11, atol=1e-11)
        for i in range(3):
            for o in (1, 2, 3):
                torch.testing.assert_close(kp.partial(u, x, i, o), kp.partial(plain, x, i, o),
                                           rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(kp.laplacian(u, x), kp.laplacian(plain, x), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(kp.laplacian(u, x, dims=[0, 2]), kp.laplacian(plain, x, dims=[0, 2]),
                                   rtol=1e-10, atol=1e-10)
    # a jet is only used for the x it was computed against
    u = jets.evaluate(model, x, 2)
    x2 = x.detach().clone().requires_grad_(True)
    assert jets.lookup(u, x2) is None


def test_operators_shape_errors():
    x = rand(10, 2, seed=37).requires_grad_(True)
    u = (x ** 2).sum(1, keepdim=True)
    with pytest.raises(KanpinnError, match="one column"):
        kp.grad(torch.cat([u, u], 1), x)
    with pytest.raises(KanpinnError, match=r"\(N, 1\)"):
        kp.grad(u[:, 0], x)
    with pytest.raises(KanpinnError, match=r"\(N, 1\)"):
        kp.laplacian(u[:5], x)
    with pytest.raises(KanpinnError, match=r"\(N, d\)"):
        kp.grad(u, x[:, 0])
    with pytest.raises(KanpinnError, match="out of range"):
        kp.partial(u, x, 2)
    with pytest.raises(KanpinnError, match="order"):
        kp.partial(u, x, 0, -1)
    with pytest.raises(KanpinnError, match="shape of x"):
        kp.div(u, x)
    with pytest.raises(KanpinnError, match="tensors"):
        kp.grad(np.zeros((10, 1)), x)
    xd = x.detach()
    with pytest.raises(KanpinnError, match="requires_grad"):
        kp.grad((xd ** 2).sum(1, keepdim=True) * torch.ones(10, 1, requires_grad=True), xd)


def test_laplacian_of_multi_column_jet_output_raises():
    model = make_kan((2, 3, 2), seed=38)
    x = rand(10, 2, seed=39).requires_grad_(True)
    u = jets.evaluate(model, x, 2)
    with pytest.raises(KanpinnError):
        kp.laplacian(u, x)


def test_unfix_symbolic_restores_spline_edge():
    model = make_kan((2, 1), seed=40)
    x = rand(20, 2, seed=41)
    y0 = model(x).detach()
    layer = model.layers[0]
    layer.fix_symbolic(0, 0, EdgeFormula("x", lambda z: z, dtype=F64))
    assert (model(x).detach() - y0).abs().max() > 1e-6
    layer.unfix_symbolic(0, 0)
    assert len(layer.symbolic) == 0 and layer.mask[0, 0] == 1.0
    torch.testing.assert_close(model(x).detach(), y0)


def test_set_input_range_and_dtype_moves():
    model = make_kan((2, 3, 1), seed=42)
    model.set_input_range([0.0, -2.0], [2.0, 3.0])
    b = model.layers[0].basis
    torch.testing.assert_close(b.lo, torch.tensor([0.0, -2.0], dtype=F64))
    torch.testing.assert_close(b.hi, torch.tensor([2.0, 3.0], dtype=F64))
    x = torch.stack([rand(50, 1, seed=43, lo=0, hi=2)[:, 0], rand(50, 1, seed=44, lo=-2, hi=3)[:, 0]], 1)
    np.testing.assert_allclose(model(x).detach().numpy(), reference_forward(model, x), rtol=1e-11, atol=1e-12)
    # float64 -> float32 -> float64 keeps the power tables consistent with the knots
    m32 = copy.deepcopy(model).float()
    assert m32.layers[0].basis._poly.dtype == torch.float32
    np.testing.assert_allclose(m32(x.float()).detach().numpy(), reference_forward(model, x), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ initialisation


def corners_and_random(d, n=2000, seed=45, lo=-1.0, hi=1.0):
    """Points over the box (independent of the model's Sobol probe): uniform random ones
    and, in low dimension, every corner (where separable sums take their extremes)."""
    x = rand(n, d, seed=seed, lo=lo, hi=hi)
    if d <= 4:
        bits = ((torch.arange(2 ** d)[:, None] >> torch.arange(d)) & 1).to(F64)
        x = torch.cat([x, lo + (hi - lo) * bits])
    return x


def assert_inputs_inside(model, x, tol=0.0):
    for li, (layer, xi) in enumerate(zip(model.layers, model.layer_inputs(x))):
        assert (xi >= layer.basis.lo - tol).all() and (xi <= layer.basis.hi + tol).all(), \
            (li, xi.min(0).values, layer.basis.lo, xi.max(0).values, layer.basis.hi)


DEEP = [((2, 32, 32, 1), 20, 3, "bspline"), ((3, 16, 16, 16, 1), 10, 3, "bspline"),
        ((2, [4, 2], [4, 2], 1), 5, 3, "bspline"), ((2, 10, 1), 20, 5, "bspline"),
        ((2, 16, 16, 1), 10, 3, "chebyshev")]


@pytest.mark.parametrize("widths,grid,k,basis", DEEP)
def test_deep_and_fine_kans_start_of_order_one_inside_their_grids(widths, grid, k, basis):
    """Before the fix KAN([2, 32, 32, 1], grid=20) gave outputs of 1e8 on [-1, 1]² (and the
    Chebyshev [2, 16, 16, 1] 1e27-1e45): hidden inputs left the grids and the end
    polynomials were continued (grown like (d/h)^k)."""
    for seed in range(3):
        model = kp.KAN(list(widths), grid=grid, k=k, seed=seed, dtype=F64, basis=basis)
        x = corners_and_random(model.width_in, seed=46 + seed)
        assert_inputs_inside(model, x)
        y = model(x).detach()
        assert torch.isfinite(y).all() and y.abs().max() < 10, (seed, y.abs().max())
        if basis == "bspline":      # the (widened) grids are the model's: scipy from its knots agrees
            np.testing.assert_allclose(y.numpy(), reference_forward(model, x), rtol=1e-11, atol=1e-11)


def test_hidden_grid_untouched_where_its_inputs_stay_inside():
    """A hidden column whose inputs stay in the constructor's grid with a margin (a tenth
    of their spread) keeps that grid exactly (so models that were fine are initialised as
    before); a column whose inputs leave it is widened."""
    seen = set()
    for seed in range(8):
        model = kp.KAN([2, 5, 1], grid=5, k=3, seed=seed, dtype=F64)
        uniform = bsplines.uniform_knots(-torch.ones(5, dtype=F64), torch.ones(5, dtype=F64), 5, 3)
        xi = model.layer_inputs(corners_and_random(2, n=4000, seed=47))[1]
        lo, hi = xi.min(0).values, xi.max(0).values
        well_inside = (lo - 0.1 * (hi - lo) > -1) & (hi + 0.1 * (hi - lo) < 1)
        leaves = (lo < -1) | (hi > 1)
        same = (model.layers[1].basis.knots == uniform).all(1)
        widened = model.layers[1].basis.hi - model.layers[1].basis.lo > 2
        for c in range(5):
            if well_inside[c]:
                assert same[c], (seed, c)
            if leaves[c]:
                assert widened[c], (seed, c)
            seen.add((bool(well_inside[c]), bool(leaves[c])))
    assert {(True, False), (False, True)} <= seen        # both cases occurred


def test_reset_parameters_is_a_function_of_the_seed():
    """solve re-draws an unseeded model with reset_parameters(seed=s): the grids placed for
    a previous draw must not survive, or solve(seed=s) would not be repeatable."""
    widths = [2, 16, 16, 1]
    a = kp.KAN(widths, grid=10, dtype=F64)              # two different unseeded draws
    b = kp.KAN(widths, grid=10, dtype=F64)
    ref = kp.KAN(widths, grid=10, seed=3, dtype=F64)
    assert any(not torch.equal(a.state_dict()[n], b.state_dict()[n]) for n in a.state_dict())
    for m in (a, b):
        m.reset_parameters(seed=3)
        for name, t in ref.state_dict().items():
            assert torch.equal(m.state_dict()[name], t), name
    # on a domain box: the first layer's grid (the domain) is kept, the rest re-placed
    for m in (a, b):
        m.set_input_range([0.0, -3.0], [5.0, 3.0])
        m.reset_parameters(seed=4)
    for name, t in a.state_dict().items():
        assert torch.equal(b.state_dict()[name], t), name
    torch.testing.assert_close(a.layers[0].basis.hi, torch.tensor([5.0, 3.0], dtype=F64))


def test_set_input_range_outside_the_grid_keeps_hidden_inputs_inside():
    model = kp.KAN([2, 16, 16, 1], grid=20, seed=5, dtype=F64)
    model.set_input_range([0.0, 0.0], [5.0, 2.0])
    x = corners_and_random(2, seed=48) * torch.tensor([2.5, 1.0], dtype=F64) + torch.tensor([2.5, 1.0], dtype=F64)
    assert_inputs_inside(model, x)
    assert model(x).detach().abs().max() < 10


def test_widened_grids_survive_save_load_and_grid_extension():
    from kanpinn.models import model_from_config
    model = kp.KAN([2, 8, 8, 1], grid=10, seed=6, dtype=F64)
    assert (model.layers[1].basis.hi - model.layers[1].basis.lo > 2).any()      # widened
    x = corners_and_random(2, seed=49)
    y0 = model(x).detach()
    other = model_from_config(model.config(), dtype=F64)
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other(x).detach(), y0, rtol=0, atol=0)
    model.extend_grid(20)                       # nested knots: the same function
    torch.testing.assert_close(model(x).detach(), y0, rtol=1e-10, atol=1e-10)
    assert_inputs_inside(model, x)
    model.update_grid(x)
    assert_inputs_inside(model, x, tol=1e-12)     # update_grid's ends are the samples' to rounding


def test_deep_kan_trains_on_poisson():
    """A two-hidden-layer KAN solves Δu = -2π² sin(πx) sin(πy), u = 0 on the boundary, to a
    loose tolerance (seeds 0-2: 0.9-1.2e-2)."""
    def residual(x, u):
        return kp.laplacian(u, x) + 2 * math.pi ** 2 * torch.sin(math.pi * x[:, 0:1]) * torch.sin(math.pi * x[:, 1:2])
    prob = kp.Problem(kp.Rectangle([-1.0, -1.0], [1.0, 1.0]), residual, conditions=[kp.Dirichlet(0.0)],
                      exact=lambda x: torch.sin(math.pi * x[:, 0:1]) * torch.sin(math.pi * x[:, 1:2]))
    model = kp.KAN([2, 5, 5, 1], grid=5, seed=0)
    res = kp.solve(prob, model, grids=[5, 10], steps=20, n_interior=300, n_boundary=80, progress=False,
                   optimizer="lm")
    assert res.metrics["l2_relative"] < 5e-2, res.metrics["l2_relative"]


def test_uniform_grid_moved_to_float64_stays_uniform():
    # KAN(...).double() of a float32 model: the knots carry float32 rounding, which the
    # float64 tables would see as unequal intervals (the slower non-uniform path)
    m = kp.KAN([2, 5, 1], grid=7, seed=0, dtype=torch.float32).double()
    ref = kp.KAN([2, 5, 1], grid=7, seed=0, dtype=F64)
    for layer in m.layers:
        assert layer.basis._uniform and layer.basis._equal
    assert torch.equal(m.layers[0].basis.knots, ref.layers[0].basis.knots)   # [-1, 1] is exact in float32
    # a non-uniform grid is left as it is
    q = kp.KAN([2, 5, 1], grid=7, seed=0, dtype=F64, grid_eps=0.02)
    q.update_grid(torch.rand(200, 2, dtype=F64, generator=torch.Generator().manual_seed(0)) ** 2)
    before = q.layers[0].basis.knots.clone()
    q.float().double()
    assert not q.layers[0].basis._uniform
    assert torch.allclose(q.layers[0].basis.knots, before, rtol=0, atol=1e-6)
