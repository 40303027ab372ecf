"""Diagonal third and fourth derivatives on the jets (``kanpinn.jet``, "Orders 3 and 4").

Truth everywhere: torch autograd, nested ``grad`` of the same model's plain forward at
the same points (no jet involved), and per-row autograd / finite differences for the
structured Jacobian of a third-order (KdV) residual."""
import math

import pytest
import torch

import kanpinn as kp
from kanpinn import jet
from kanpinn.errors import KanpinnError
from kanpinn.solver.lm import LevenbergMarquardt
from kanpinn.solver.loss import Collocation, PINNLoss
from kanpinn.transforms.constraint import HardConstraint, hard_constraint_for
from kanpinn.transforms.embedding import Embedded
from kanpinn.transforms.mirror import Mirror

F64 = torch.float64


def nested(model, x, order):
    """[∂^r u/∂x_i^r for r = 1..order] (each (N, m, d)) by nested autograd of the plain
    forward (``forward_values``)."""
    x = x.detach().clone().requires_grad_(True)
    u = model.forward_values(x)
    out = [torch.zeros(x.shape[0], u.shape[1], x.shape[1], dtype=x.dtype) for _ in range(order)]
    for j in range(u.shape[1]):
        for i in range(x.shape[1]):
            y = u[:, j]
            for r in range(order):
                (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
                y = g[:, i]
                out[r][:, j, i] = y.detach()
    return out


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def kdv_problem(lo=-8.0, hi=8.0):
    def exact(x):
        return 0.5 / torch.cosh(0.5 * (x[:, 0:1] - x[:, 1:2] + 2.0)) ** 2

    def residual(x, u):
        return kp.partial(u, x, 1) + 6 * u * kp.partial(u, x, 0) + kp.partial(u, x, 0, order=3)
    return kp.Problem(kp.SpaceTime(kp.Interval(lo, hi), t=(0.0, 4.0)), residual,
                      [kp.Dirichlet(exact), kp.Initial(exact)], exact=exact)


MODELS = {
    "kan_bspline_k5": lambda: kp.KAN([2, 5, 1], k=5, seed=0, dtype=F64),
    "kan_deep_k4": lambda: kp.KAN([2, 3, 3, 1], k=4, grid=7, seed=1, dtype=F64),
    "kan_chebyshev": lambda: kp.KAN([2, 4, 2], basis="chebyshev", grid=6, seed=0, dtype=F64),
    "multkan": lambda: kp.KAN([2, [3, 2], 2], k=5, seed=0, dtype=F64),
    "mlp_tanh": lambda: kp.MLP([2, 6, 5, 2], activation="tanh", seed=0, dtype=F64),
}


def points(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, generator=g, dtype=F64) * 1.6 - 0.8


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("order", [3, 4])
def test_model_jets_match_nested_autograd(name, order):
    model = MODELS[name]()
    x = points()
    y, *ds = model.forward_jet(x.clone().requires_grad_(True), order)
    assert len(ds) == order
    assert rel(y, model.forward_values(x)) < 1e-13
    for r, (a, b) in enumerate(zip(ds, nested(model, x, order)), start=1):
        assert rel(a, b) < 1e-11, (name, r)


@pytest.mark.parametrize("act", ["tanh", "sin", "silu", "softplus", "gelu"])
def test_mlp_activations_to_order_four(act):
    model = kp.MLP([2, 5, 4, 1], activation=act, seed=0, dtype=F64)
    x = points(20)
    _, *ds = model.forward_jet(x.clone().requires_grad_(True), 4)
    for a, b in zip(ds, nested(model, x, 4)):
        assert rel(a, b) < 1e-11


def test_silu_derivatives_to_order_five():
    from kanpinn.layer_jet import silu_derivatives
    x = torch.linspace(-4, 4, 17, dtype=F64, requires_grad=True)
    ref = [torch.nn.functional.silu(x)]
    for _ in range(5):
        ref.append(torch.autograd.grad(ref[-1].sum(), x, create_graph=True)[0])
    for a, b in zip(silu_derivatives(x, 5), ref):
        assert rel(a.detach(), b.detach()) < 1e-12


def transforms():
    prob = kdv_problem()
    factors, lift, _ = hard_constraint_for(prob)
    box = torch.tensor([16.0, 4.0], dtype=F64), torch.tensor([-8.0, 0.0], dtype=F64)
    unit = torch.tensor([1.0, 1.0], dtype=F64), torch.tensor([0.0, 0.0], dtype=F64)
    return {
        "embedded_affine": (Embedded(kp.KAN([2, 5, 1], k=5, seed=0, dtype=F64), lo=[-8, 0], hi=[8, 4]), box),
        "embedded_periodic": (Embedded(kp.KAN([3, 5, 1], k=5, seed=0, dtype=F64), lo=[0, 0], hi=[2, 1],
                                       periodic={0: 1}), unit),
        "mirror": (Mirror(kp.KAN([2, 5, 1], k=5, seed=0, dtype=F64), col=0, centre=0.0, sign=-1), unit),
        "hard_kan": (HardConstraint(Embedded(kp.KAN([2, 5, 1], k=5, seed=0, dtype=F64), lo=[-8, 0], hi=[8, 4]),
                                    factors, lift), box),
        "hard_mlp": (HardConstraint(kp.MLP([2, 8, 1], activation="tanh", seed=0, dtype=F64), factors, lift), box),
    }


@pytest.mark.parametrize("name", ["embedded_affine", "embedded_periodic", "mirror", "hard_kan", "hard_mlp"])
def test_transform_jets_match_nested_autograd(name):
    model, (scale, shift) = transforms()[name]
    x = torch.rand(30, 2, dtype=F64, generator=torch.Generator().manual_seed(3)) * scale + shift
    for order in (3, 4):
        _, *ds = model.forward_jet(x.clone().requires_grad_(True), order)
        assert len(ds) == order
        for a, b in zip(ds, nested(model, x, order)):
            assert rel(a, b) < 1e-11, name


def test_expression_rules_to_order_four():
    """kp.partial of expressions of jet tensors (Leibniz, quotients, Faà di Bruno for
    every elementwise function with a rule, slices, concatenation) against autograd of
    the same expressions on the plain output."""
    model = kp.KAN([2, 4, 2], k=5, seed=0, dtype=F64)
    x0 = points(25) * 0.5
    exprs = {
        "product": lambda w: w[:, 0:1] * w[:, 1:2] * 3.0,
        "quotient": lambda w: w[:, 0:1] / (2.0 + w[:, 1:2] ** 2),
        "constant_over": lambda w: 1.5 / (3.0 + w[:, 1:2]),
        "sin_cos": lambda w: torch.sin(w[:, 0:1]) - torch.cos(2 * w[:, 1:2]),
        "exp_tanh_sigmoid": lambda w: torch.exp(w[:, 0:1]) + torch.tanh(w[:, 1:2]) * torch.sigmoid(w[:, 0:1]),
        "log_sqrt": lambda w: torch.log(2.0 + w[:, 0:1]) + torch.sqrt(2.0 + w[:, 1:2]),
        "powers": lambda w: w[:, 0:1] ** 3 + (1.5 + w[:, 1:2]) ** 2.5 + 2.0 ** w[:, 0:1] + torch.square(w[:, 1:2]),
        "sinh_cosh_neg": lambda w: -torch.sinh(w[:, 0:1]) + torch.cosh(w[:, 1:2]),
        "cat_split": lambda w: torch.cat(w.split(1, dim=1)[::-1], 1)[:, 0:1] - w[:, 1:2],
    }
    for name, f in exprs.items():
        x = x0.clone().requires_grad_(True)
        e = f(jet.evaluate(model, x, 4))
        assert jet.lookup(e, x) is not None and len(jet.lookup(e, x).derivs) == 4, name
        xp = x0.clone().requires_grad_(True)
        plain = f(model.forward_values(xp))
        for i in range(2):
            ref = plain
            for r in range(1, 5):
                ref = torch.autograd.grad(ref.sum(), xp, create_graph=True)[0][:, i:i + 1]
                got = kp.partial(e, x, i, r)
                assert rel(got.detach(), ref.detach()) < 1e-10, (name, i, r)


def test_orders_mix_to_the_lowest():
    """An expression of an order-4 and an order-2 jet carries order 2; kp.partial of
    order 3 then takes the jet's second derivative and autograd (still exact)."""
    model = kp.KAN([2, 4, 1], k=5, seed=0, dtype=F64)
    x = points(10).requires_grad_(True)
    a, b = jet.evaluate(model, x, 4), jet.evaluate(model, x, 2)
    e = a * b
    assert len(jet.lookup(e, x).derivs) == 2
    xp = x.detach().clone().requires_grad_(True)
    ref = model.forward_values(xp) ** 2
    for _ in range(3):
        ref = torch.autograd.grad(ref.sum(), xp, create_graph=True)[0][:, 0:1]
    assert rel(kp.partial(e, x, 0, 3).detach(), ref.detach()) < 1e-11


@pytest.mark.parametrize("name", ["kan_bspline_k5", "kan_chebyshev", "multkan", "mlp_tanh"])
def test_parameter_gradients_through_high_order_jets(name):
    """The backward of a loss on d3u, d4u (the hand-written network-input node and the
    plain ops of the hidden layers) equals autograd of the nested-autograd loss."""
    model = MODELS[name]()
    x = points(15)
    _, *ds = model.forward_jet(x.clone().requires_grad_(True), 4)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = (ds[2] ** 2).sum() + (ds[3] * ds[1]).sum()
    got = torch.autograd.grad(loss, params, allow_unused=True)
    xp = x.clone().requires_grad_(True)
    u = model.forward_values(xp)
    d = [[] for _ in range(4)]
    for i in range(2):
        for j in range(u.shape[1]):
            y = u[:, j]
            for r in range(4):
                y = torch.autograd.grad(y.sum(), xp, create_graph=True)[0][:, i]
                d[r].append(y)
    d = [torch.stack(t) for t in d]
    ref_loss = (d[2] ** 2).sum() + (d[3] * d[1]).sum()
    ref = torch.autograd.grad(ref_loss, params, allow_unused=True)
    for a, b in zip(got, ref):
        if b is None:
            assert a is None or float(a.abs().max()) == 0.0
            continue
        assert rel(a, b) < 1e-10, name


def test_bspline_order_below_the_derivative_is_refused():
    """A cubic (k=3) B-spline's fourth derivative is zero between the knots: a jet of
    order 4 is refused with a clear error; order 3 (piecewise constant) is served."""
    x = points(5).requires_grad_(True)
    with pytest.raises(KanpinnError, match="k >= 4"):
        kp.KAN([2, 3, 1], k=3, seed=0, dtype=F64).forward_jet(x, 4)
    _, *ds = kp.KAN([2, 3, 1], k=3, seed=0, dtype=F64).forward_jet(x, 3)
    assert len(ds) == 3
    _, *ds = kp.KAN([2, 3, 1], k=4, seed=0, dtype=F64).forward_jet(x, 4)
    assert len(ds) == 4
    # the solver says so at the first evaluation (a beam's u_xxxx, cubic splines)
    beam = kp.Problem(kp.SpaceTime(kp.Interval(0.0, math.pi), t=(0.0, 1.0)),
                      lambda x, u: kp.partial(u, x, 1, order=2) + kp.partial(u, x, 0, order=4),
                      [kp.Dirichlet(0.0)])
    with pytest.raises(KanpinnError, match="order 4 of a KAN with B-splines of order k=3"):
        kp.solve(beam, kp.KAN([2, 3, 1], k=3, seed=0), grids=[5], steps=2, n_interior=50, n_boundary=10,
                 progress=False)


def test_needed_order_from_the_residual():
    model = kp.KAN([2, 3, 1], k=5, seed=0, dtype=F64)
    x = points(20).requires_grad_(True)
    kdv = lambda x, u: kp.partial(u, x, 1) + 6 * u * kp.partial(u, x, 0) + kp.partial(u, x, 0, order=3)  # noqa: E731
    beam = lambda x, u: kp.partial(u, x, 1, order=2) + kp.partial(u, x, 0, order=4)                     # noqa: E731
    heat = lambda x, u: kp.partial(u, x, 1) - kp.partial(u, x, 0, order=2)                               # noqa: E731
    with jet.recording() as recs:
        assert jet.needed_order(kdv, x, model) == 3
        assert jet.needed_order(beam, x, model) == 4
        assert jet.needed_order(heat, x, model) == 2
    assert recs == []                       # the probe's layer records stay out of the caller's


def test_a_model_that_stops_at_order_two_falls_back_to_autograd():
    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = kp.KAN([2, 3, 1], k=5, seed=0, dtype=F64)

        def forward_values(self, x):
            return self.k.forward_values(x)

        def forward_jet(self, x, order=2):
            return self.k.forward_jet(x, min(order, 2))
    m = Plain()
    x = points(10).requires_grad_(True)
    u = jet.evaluate(m, x, 4)
    with jet.demanding() as want:
        got = kp.partial(u, x, 0, 4)
    assert want.order == 4
    assert rel(got.detach(), nested(m, x, 4)[3][:, :, 0]) < 1e-11


@pytest.mark.parametrize("name", ["kan", "hard_kan", "mlp"])
def test_structured_jacobian_of_a_third_order_residual(name):
    """LM's structured J on KdV (u_t + 6 u u_x + u_xxx) equals per-row autograd of the
    residual rows, and the interior is evaluated at order 3."""
    prob = kdv_problem()
    if name == "kan":
        model = Embedded(kp.KAN([2, 4, 1], k=5, grid=5, seed=0, dtype=F64), lo=[-8, 0], hi=[8, 4])
    elif name == "mlp":
        model = kp.MLP([2, 6, 1], activation="tanh", seed=0, dtype=F64)
    else:
        factors, lift, _ = hard_constraint_for(prob)
        model = HardConstraint(Embedded(kp.KAN([2, 4, 1], k=5, grid=5, seed=0, dtype=F64), lo=[-8, 0], hi=[8, 4]),
                               factors, lift)
    col = Collocation(prob, 60, 20, "sobol", 0, F64, "cpu")
    loss = PINNLoss(prob, model, col, {})
    params = [p for p in model.parameters() if p.requires_grad]
    lm = LevenbergMarquardt(loss, params)
    J, r, _ = lm._jacobian()
    assert loss.interior_order(col.interior) == 3
    rows = torch.cat(PINNLoss.scaled(loss.blocks()))
    assert rel(rows.detach(), r) < 1e-12
    ref = torch.stack([torch.cat([g.reshape(-1) if g is not None else torch.zeros(p.numel(), dtype=F64)
                                  for g, p in zip(torch.autograd.grad(rows[m], params, retain_graph=True,
                                                                      allow_unused=True), params)])
                       for m in range(rows.shape[0])])
    assert rel(J, ref) < 1e-10


def test_hooks_evaluate_the_residual_at_its_order():
    """Causal weights, RAD resampling and the inverse fit ask the loss for the order
    (``interior_jet_order``); a stand-in run without such a loss gets 2."""
    from types import SimpleNamespace

    from kanpinn.solver.loss import interior_jet_order
    prob = kdv_problem()
    model = kp.KAN([2, 3, 1], k=5, seed=0, dtype=F64)
    col = Collocation(prob, 30, 10, "sobol", 0, F64, "cpu")
    run = SimpleNamespace(loss=PINNLoss(prob, model, col, {}))
    assert interior_jet_order(run, col.interior) == 3
    assert interior_jet_order(SimpleNamespace(loss=object()), col.interior) == 2


def test_time_windows_and_a_window_reading_its_predecessor():
    """TimeWindows routes each window's own jet (any order); a window whose exact
    initial value is the previous window's slice (cached jet up to the Hessian) stops at
    order 2, and the operators' autograd on top of it still gives the right u_xxx, u_xxxx."""
    from kanpinn.transforms.constraint import Lifting
    from kanpinn.transforms.windows import SliceOf, TimeWindows
    a, b = kp.KAN([2, 4, 1], k=5, seed=0, dtype=F64), kp.KAN([2, 4, 1], k=5, seed=1, dtype=F64)
    tw = TimeWindows([a, b], edges=[0.0, 0.5, 1.0], t_col=1)
    x = torch.rand(30, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    _, *ds = tw.forward_jet(x.clone().requires_grad_(True), 4)
    for p, q in zip(ds, nested(tw, x, 4)):
        assert rel(p, q) < 1e-11
    hc = HardConstraint(kp.KAN([2, 4, 1], k=5, seed=2, dtype=F64), [(1, 0.5, 1.0, "low", 1)],
                        Lifting(None, SliceOf(a, t_col=1), None, 1, 0.5))
    xs = x * 0.5 + torch.tensor([0.0, 0.5], dtype=F64)
    assert len(hc.forward_jet(xs.clone().requires_grad_(True), 4)) == 3
    xg = xs.clone().requires_grad_(True)
    u = jet.evaluate(hc, xg, 4)
    ref = nested(hc, xs, 4)
    for r in (3, 4):
        assert rel(kp.partial(u, xg, 0, r).detach(), ref[r - 1][:, :, 0]) < 1e-11


def test_the_order_probe_runs_on_the_loss_points():
    """A residual holding per-point data of the interior's length still works (the probe
    runs on the same points), and an order-2 residual stays at order 2."""
    model = kp.KAN([2, 3, 1], k=5, seed=0, dtype=F64)
    prob0 = kp.Problem(kp.Rectangle([0.0, 0.0], [1.0, 1.0]), lambda x, u: kp.laplacian(u, x), [kp.Dirichlet(0.0)])
    col = Collocation(prob0, 40, 10, "sobol", 0, F64, "cpu")
    f = torch.sin(col.interior.detach()[:, 0:1])                    # data at exactly these points
    prob = kp.Problem(prob0.domain, lambda x, u: kp.laplacian(u, x) - f, [kp.Dirichlet(0.0)])
    loss = PINNLoss(prob, model, col, {})
    assert loss.blocks()[0][2].shape == (40,)
    assert loss.interior_order(col.interior) == 2


@pytest.mark.parametrize("name", ["kan_bspline_k5", "kan_chebyshev"])
def test_mixed_derivative_on_top_of_a_third_order_jet(name):
    """u_xxxt by autograd of the jet's u_xxx (the network-input node's differentiable
    backward), and its parameter gradient, against nested autograd."""
    model = MODELS[name]()
    x0 = points(20)
    x = x0.clone().requires_grad_(True)
    d3 = kp.partial(jet.evaluate(model, x, 3)[:, 0:1], x, 0, 3)
    mixed = torch.autograd.grad(d3.sum(), x, create_graph=True)[0][:, 1:2]
    params = list(model.parameters())
    got = torch.autograd.grad((mixed ** 2).sum(), params, allow_unused=True)
    xp = x0.clone().requires_grad_(True)
    v = model.forward_values(xp)[:, 0:1]
    for _ in range(3):
        v = torch.autograd.grad(v.sum(), xp, create_graph=True)[0][:, 0:1]
    ref = torch.autograd.grad(v.sum(), xp, create_graph=True)[0][:, 1:2]
    assert rel(mixed.detach(), ref.detach()) < 1e-11
    for a, b in zip(got, torch.autograd.grad((ref ** 2).sum(), params, allow_unused=True)):
        if b is not None:
            assert rel(a, b) < 1e-10
