"""Conditions: sampled points and misfits against values computed by hand.

The model is replaced by closed-form torch functions of x (u = x^2 + y^2 and friends),
so every expected misfit below is plain calculus.
"""

import math

import numpy as np
import pytest
import torch

from kanpinn.conditions import Data, Dirichlet, Initial, Neumann, Periodic, Robin
from kanpinn.domains import Disk, Interval, Rectangle, SpaceTime
from kanpinn.errors import KanpinnError
from kanpinn.jet import attach

D = torch.float64


def quad(x):
    """u = x^2 + y^2 (N, 1)."""
    return (x[:, 0:1] ** 2 + x[:, 1:2] ** 2)


def tensors(pts):
    return {k: torch.tensor(v, dtype=D) for k, v in pts.items()}


def leaf(a):
    return torch.tensor(a, dtype=D, requires_grad=True)


# ------------------------------------------------------------------ Dirichlet


def test_dirichlet_misfit_by_hand():
    c = Dirichlet(lambda x: x[:, 0:1] * 3.0)
    x = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=D)
    out = c.misfit(quad, {"x": x})
    # u - 3x: 5 - 3 = 2 ; 1.25 - 1.5 = -0.25
    np.testing.assert_allclose(out.detach().numpy(), [[2.0], [-0.25]])
    assert c.name == "dirichlet" and c.jet_order == 0 and c.weight == 1.0


def test_dirichlet_sample_whole_boundary():
    d = Rectangle([0, 0], [2, 1])
    pts = Dirichlet(0.0).sample(d, 60, "sobol", seed=0)
    x = pts["x"]
    assert set(pts) == {"x"} and x.shape == (60, 2)
    dist = np.minimum(np.abs(x - [0, 0]), np.abs([2, 1] - x)).min(axis=1)
    assert dist.max() == 0.0


def test_dirichlet_on_selects_part_with_exact_count():
    d = Rectangle([-1, -1], [1, 1])
    c = Dirichlet(1.0, on=lambda x: x[:, 0] == -1.0)  # the left side only: 1/4 of the boundary
    x = c.sample(d, 100, "sobol", seed=1)["x"]
    assert x.shape == (100, 2) and np.all(x[:, 0] == -1.0)
    assert len(np.unique(x[:, 1])) == 100  # distinct points, not repeats
    np.testing.assert_array_equal(x, c.sample(d, 100, "sobol", seed=1)["x"])


def test_on_returning_numpy_and_grid():
    d = Rectangle([-1, -1], [1, 1])
    c = Dirichlet(0.0, on=lambda x: np.asarray(x)[:, 1] > 0.5)  # numpy result, small part
    x = c.sample(d, 40, "uniform", seed=0)["x"]
    assert x.shape == (40, 2) and np.all(x[:, 1] > 0.5)
    g = Dirichlet(0.0, on=lambda x: x[:, 0] == 1.0).sample(d, 51, "grid")["x"]
    assert np.all(g[:, 0] == 1.0) and 45 <= len(g) <= 60


def test_on_selecting_nothing_is_a_clear_error():
    d = Rectangle([-1, -1], [1, 1])
    with pytest.raises(KanpinnError, match=r"Dirichlet\(on=\.\.\.\) selects no boundary points"):
        Dirichlet(0.0, on=lambda x: x[:, 0] > 5).sample(d, 10, "sobol", seed=0)
    with pytest.raises(KanpinnError, match="shape"):
        Dirichlet(0.0, on=lambda x: x > 0).sample(d, 10, "sobol", seed=0)


def test_dirichlet_component_and_bad_value_shape():
    def two(x):
        return torch.cat([quad(x), x[:, 0:1] * x[:, 1:2]], dim=1)

    x = torch.tensor([[1.0, 2.0]], dtype=D)
    np.testing.assert_allclose(Dirichlet(1.0, component=1).misfit(two, {"x": x}).numpy(), [[1.0]])
    np.testing.assert_allclose(Dirichlet(1.0).misfit(two, {"x": x}).numpy(), [[4.0, 1.0]])
    with pytest.raises(KanpinnError, match="value"):
        Dirichlet(lambda x: torch.zeros(1, 3, dtype=D)).misfit(quad, {"x": x})


# ------------------------------------------------------------------ Neumann / Robin

# Rectangle [0, 2] x [-1, 3], u = x^2 + y^2, grad u = (2x, 2y):
#   (2, 0.5): n = (1, 0)  -> du/dn =  4
#   (0, 1):   n = (-1, 0) -> du/dn = -0 = 0
#   (1, -1):  n = (0, -1) -> du/dn = -2 * -1 = 2
#   (1.5, 3): n = (0, 1)  -> du/dn = 6
RECT = Rectangle([0, -1], [2, 3])
PTS = np.array([[2.0, 0.5], [0.0, 1.0], [1.0, -1.0], [1.5, 3.0]])
DUDN = np.array([[4.0], [0.0], [2.0], [6.0]])
U = (PTS ** 2).sum(axis=1, keepdims=True)


def test_neumann_misfit_by_hand():
    c = Neumann(1.0)
    pts = {"x": leaf(PTS), "normals": torch.tensor(RECT.normals(PTS), dtype=D)}
    out = c.misfit(quad, pts)
    np.testing.assert_allclose(out.detach().numpy(), DUDN - 1.0, atol=1e-12)
    assert c.jet_order == 1


def test_neumann_on_disk_sampled():
    # On the circle of radius 2, du/dn = d(r^2)/dr = 2r = 4 everywhere
    d = Disk([0, 0], 2.0)
    c = Neumann(4.0)
    pts = c.sample(d, 32, "sobol", seed=0)
    assert set(pts) == {"x", "normals"}
    out = c.misfit(quad, tensors(pts))  # x without requires_grad: the condition copes
    np.testing.assert_allclose(out.detach().numpy(), 0.0, atol=1e-12)


def test_robin_misfit_by_hand():
    c = Robin(2.0, 3.0, lambda x: x[:, 1:2])
    pts = {"x": leaf(PTS), "normals": torch.tensor(RECT.normals(PTS), dtype=D)}
    out = c.misfit(quad, pts)
    expect = 2 * U + 3 * DUDN - PTS[:, 1:2]
    np.testing.assert_allclose(out.detach().numpy(), expect, atol=1e-12)
    assert Robin(1.0, 0.0, 0.0).jet_order == 0 and c.jet_order == 1


def test_neumann_reads_the_jet_of_a_system():
    # u = (x^2 + y^2, x y) with an analytic jet attached; the misfit must match autograd
    def plain(x):
        return torch.cat([quad(x), x[:, 0:1] * x[:, 1:2]], dim=1)

    def with_jet(x):
        u = plain(x)
        du = torch.stack([2 * x, torch.stack([x[:, 1], x[:, 0]], dim=1)], dim=1)  # (N, 2, 2)
        return attach(u, x, du, None)

    pts = {"x": leaf(PTS), "normals": torch.tensor(RECT.normals(PTS), dtype=D)}
    a = Neumann(0.0).misfit(plain, pts)
    b = Neumann(0.0).misfit(with_jet, pts)
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-12)
    # column 0 is the hand value above; column 1: grad(xy) . n = (y, x) . n
    np.testing.assert_allclose(a[:, 0:1].detach().numpy(), DUDN, atol=1e-12)
    np.testing.assert_allclose(a[:, 1].detach().numpy(), [0.5, -1.0, -1.0, 1.5], atol=1e-12)


# ------------------------------------------------------------------ Periodic


def test_periodic_zero_for_periodic_function_and_not_otherwise():
    d = Rectangle([0.0, 0.0], [2 * math.pi, 1.0])
    c = Periodic("x")
    pts = c.sample(d, 20, "sobol", seed=0)
    assert np.all(pts["x_lo"][:, 0] == 0) and np.all(pts["x_hi"][:, 0] == 2 * math.pi)
    np.testing.assert_array_equal(pts["x_lo"][:, 1], pts["x_hi"][:, 1])
    t = tensors(pts)
    good = c.misfit(lambda x: torch.sin(x[:, 0:1]) + x[:, 1:2] ** 2, t)
    assert good.shape == (20, 2)
    np.testing.assert_allclose(good.detach().numpy(), 0.0, atol=1e-12)
    bad = c.misfit(lambda x: x[:, 0:1] + x[:, 1:2], t)
    # u(0, y) - u(2 pi, y) = -2 pi; the x-derivatives are both 1
    np.testing.assert_allclose(bad[:, 0].detach().numpy(), -2 * math.pi)
    np.testing.assert_allclose(bad[:, 1].detach().numpy(), 0.0)
    # value matches but the slope does not: u = (x - pi)^2 is symmetric, u' = -2pi vs 2pi
    slope = c.misfit(lambda x: (x[:, 0:1] - math.pi) ** 2, t)
    np.testing.assert_allclose(slope.detach().numpy()[:, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(slope.detach().numpy()[:, 1], -4 * math.pi)
    assert c.name == "periodic_x" and c.jet_order == 1


def test_periodic_on_spacetime_and_bad_domains():
    st = SpaceTime(Interval(-1, 1), t=(0, 1))
    c = Periodic("x")
    pts = c.sample(st, 16, "lhs", seed=0)
    assert np.all(pts["x_lo"][:, 0] == -1) and np.all(pts["x_hi"][:, 0] == 1)
    assert np.all((pts["x_lo"][:, 1] >= 0) & (pts["x_lo"][:, 1] <= 1))
    out = c.misfit(lambda x: torch.cos(math.pi * x[:, 0:1]) * x[:, 1:2], tensors(pts))
    np.testing.assert_allclose(out.detach().numpy(), 0.0, atol=1e-12)
    with pytest.raises(KanpinnError, match="time"):
        Periodic("t").check_domain(st)
    with pytest.raises(KanpinnError, match="flat faces"):
        Periodic("x").check_domain(Disk([0, 0], 1))
    with pytest.raises(KanpinnError, match="variables"):
        Periodic("z").check_domain(Rectangle([0, 0], [1, 1]))


# ------------------------------------------------------------------ Initial


def test_initial_value_and_derivative():
    st = SpaceTime(Interval(0, 1), t=(0.5, 2.0))
    u = lambda x: torch.sin(math.pi * x[:, 0:1]) * torch.exp(x[:, 1:2])  # noqa: E731
    g = lambda x: torch.sin(math.pi * x[:, 0:1]) * math.exp(0.5)  # noqa: E731
    c0, c1 = Initial(g), Initial(g, derivative=1)
    pts = c0.sample(st, 25, "sobol", seed=0)
    assert np.all(pts["x"][:, 1] == 0.5)
    np.testing.assert_allclose(c0.misfit(u, tensors(pts)).detach().numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(c1.misfit(u, tensors(pts)).detach().numpy(), 0.0, atol=1e-12)
    # with value 0 the misfit of du/dt is u itself: sin(pi x) e^0.5
    x = pts["x"]
    expect = np.sin(np.pi * x[:, 0:1]) * np.exp(0.5)
    np.testing.assert_allclose(Initial(0.0, derivative=1).misfit(u, tensors(pts)).detach().numpy(), expect)
    assert c0.name == "initial" and c1.name == "initial_t" and c1.jet_order == 1


def test_initial_needs_spacetime():
    with pytest.raises(KanpinnError, match="SpaceTime"):
        Initial(0.0).sample(Rectangle([0, 0], [1, 1]), 10)
    with pytest.raises(KanpinnError, match="derivative"):
        Initial(0.0, derivative=-1)


# ------------------------------------------------------------------ Data


def test_data_misfit_and_validation():
    pts = np.array([[0.0, 1.0], [2.0, 3.0], [1.0, 1.0]])
    vals = torch.tensor([1.0, 10.0, 0.0])  # (N,) tensor is one column
    c = Data(pts, vals, weight=2.0)
    s = c.sample(Rectangle([0, 0], [3, 3]), 999)
    assert s["x"].shape == (3, 2) and s["values"].shape == (3, 1)
    out = c.misfit(quad, tensors(s))
    np.testing.assert_allclose(out.numpy(), [[0.0], [3.0], [2.0]])
    assert c.weight == 2.0 and c.name == "data"
    with pytest.raises(KanpinnError, match="same number of rows"):
        Data(pts, np.zeros((2, 1)))
    with pytest.raises(KanpinnError, match="NaN"):
        Data(pts, np.array([[1.0], [np.nan], [0.0]]))
    with pytest.raises(KanpinnError, match="NaN"):
        Data(np.array([[0.0, np.inf]]), [1.0])
    with pytest.raises(KanpinnError, match="3 variables"):
        c.check_domain(SpaceTime(Rectangle([0, 0], [1, 1])))
    two = Data(pts, np.zeros((3, 2)))
    with pytest.raises(KanpinnError, match="output"):
        two.misfit(quad, tensors(two.sample(Rectangle([0, 0], [3, 3]), 0)))


# ------------------------------------------------------------------ construction errors


@pytest.mark.parametrize("make, words", [
    (lambda: Dirichlet(0.0, weight=-1.0), "weight"),
    (lambda: Dirichlet("zero"), "value"),
    (lambda: Neumann(0.0, on="left"), "on must be"),
    (lambda: Robin(float("nan"), 1.0, 0.0), "finite"),
    (lambda: Periodic(3), "variable"),
    (lambda: Dirichlet(0.0, component=-1), "component"),
    (lambda: Data(np.zeros((0, 2)), np.zeros((0, 1))), "empty"),
])
def test_bad_condition_inputs(make, words):
    with pytest.raises(KanpinnError, match=words):
        make()
