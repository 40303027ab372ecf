"""Problem: residual evaluation and the validation errors users will meet."""

import math

import numpy as np
import pytest
import torch

from kanpinn.conditions import Dirichlet, Initial, Neumann
from kanpinn.domains import Interval, Rectangle, SpaceTime
from kanpinn.errors import KanpinnError
from kanpinn.jet import attach
from kanpinn.operators import laplacian, partial
from kanpinn.problem import Problem

D = torch.float64
RECT = Rectangle([-1, -1], [1, 1])


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(D)


def poisson(x, u):
    f = -2 * math.pi**2 * torch.sin(math.pi * x[:, 0:1]) * torch.sin(math.pi * x[:, 1:2])
    return laplacian(u, x) - f


def exact(x):
    return torch.sin(math.pi * x[:, 0:1]) * torch.sin(math.pi * x[:, 1:2])


def points(n=16, seed=0):
    return torch.tensor(RECT.sample_interior(n, "sobol", seed=seed), dtype=D, requires_grad=True)


def test_residual_of_exact_solution_vanishes():
    p = Problem(RECT, poisson, [Dirichlet(0.0)], exact=exact, name="poisson")
    x = points()
    terms = p.residual_terms(x, exact(x))
    assert len(terms) == 1 and terms[0].shape == (16, 1)
    np.testing.assert_allclose(terms[0].detach().numpy(), 0.0, atol=1e-10)
    np.testing.assert_allclose(p.exact_values(x).detach().numpy(), exact(x).detach().numpy())
    assert p.n_outputs == 1 and p.variables == ("x", "y")


def test_residual_with_model_and_autograd_laplacian_passes_dependence_check():
    # kp.laplacian by autograd builds its graph from the model's hidden values, not from u;
    # the dependence check must still see that the residual comes from u
    m = net()
    x = points()
    terms = Problem(RECT, poisson).residual_terms(x, m(x))
    assert terms[0].shape == (16, 1)
    m.requires_grad_(False)  # frozen parameters: dependence only through the network
    assert Problem(RECT, poisson).residual_terms(x, m(x))[0].shape == (16, 1)


def test_residual_with_jet_passes_dependence_check():
    # u = x^2 + y^2 carried with an analytic jet: laplacian reads d2u and never touches u
    a = torch.tensor(1.0, dtype=D, requires_grad=True)
    x = points()
    u = a * (x**2).sum(dim=1, keepdim=True)
    u = attach(u, x, (2 * a * x).unsqueeze(1), (2 * a * torch.ones_like(x)).unsqueeze(1))
    r = Problem(RECT, lambda x, u: laplacian(u, x) - 4.0).residual_terms(x, u)[0]
    np.testing.assert_allclose(r.detach().numpy(), 0.0, atol=1e-12)


def test_tuple_residual_and_parameters():
    seen = {}

    def res(x, u, p):
        seen.update(p)
        return p["k"] * partial(u, x, 0) - 1.0, u - x[:, 1:2] ** 2

    p = Problem(RECT, res, parameters={"k": 2})
    assert p.parameters == {"k": 2.0} and isinstance(p.parameters["k"], float)
    x = points(8)
    u = x[:, 0:1] * 0.5 + x[:, 1:2] ** 2  # k * du/dx = 2 * 0.5 = 1
    terms = p.residual_terms(x, u)
    assert len(terms) == 2 and torch.is_tensor(seen["k"]) and float(seen["k"]) == 2.0
    np.testing.assert_allclose(terms[0].detach().numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(terms[1].detach().numpy(), 0.5 * x[:, 0:1].detach().numpy())
    k = torch.tensor(3.0, dtype=D, requires_grad=True)
    terms = p.residual_terms(x, u, {"k": k})
    np.testing.assert_allclose(terms[0].detach().numpy(), 0.5, atol=1e-12)


def test_validation_happens_once():
    p = Problem(RECT, poisson)
    m = net()
    x = points()
    p.residual_terms(x, m(x))
    assert p._residual_checked

    def boom(*a):
        raise AssertionError("checks re-run on the hot path")

    p._check_terms = boom
    p.residual_terms(x, m(x))


def test_n_outputs_describe_and_names():
    st = SpaceTime(Interval(0, 1), t=(0, 1))
    p = Problem(
        st, lambda x, u: partial(u, x, 1) - partial(u, x, 0, 2),
        [Dirichlet(0.0), Dirichlet(1.0, on=lambda x: x[:, 0] == 0), Initial(0.0)],
        exact=lambda x: torch.cat([x[:, 0:1], x[:, 1:2]], dim=1), name="heat",
    )
    assert p.n_outputs == 2
    assert p.condition_names == ["dirichlet", "dirichlet_2", "initial"]
    text = p.describe()
    assert "heat" in text and "SpaceTime" in text and "(x, t)" in text and "initial" in text
    assert Problem(RECT, poisson).n_outputs is None
    assert Problem(RECT, poisson).exact_values(points()) is None


# ------------------------------------------------------------------ errors at construction


@pytest.mark.parametrize("make, words", [
    (lambda: Problem([[-1, 1], [-1, 1]], poisson), "domain must be"),
    (lambda: Problem(RECT, "laplace"), "residual must be a function"),
    (lambda: Problem(RECT, poisson, conditions=[0.0]), r"conditions\[0\] is a float"),
    (lambda: Problem(RECT, poisson, conditions=5), "list of conditions"),
    (lambda: Problem(RECT, poisson, exact=3.0), "exact must be a function"),
    (lambda: Problem(RECT, poisson, parameters=[("k", 1.0)]), "dict"),
    (lambda: Problem(RECT, poisson, parameters={"k": "one"}), "parameter 'k'"),
    (lambda: Problem(RECT, poisson, parameters={"k": float("nan")}), "parameter 'k'"),
    (lambda: Problem(RECT, poisson, parameters={"k": 1.0}), "residual must take them"),
    (lambda: Problem(RECT, lambda x, u, p: u), "pass parameters"),
    (lambda: Problem(RECT, poisson, [Initial(0.0)]), "SpaceTime"),
    (lambda: Problem(RECT, poisson, [Neumann(0.0), Dirichlet(0.0, weight=-2)]), "weight"),
])
def test_construction_errors(make, words):
    with pytest.raises(KanpinnError, match=words):
        make()


# ------------------------------------------------------------------ errors at first evaluation


@pytest.mark.parametrize("res, words", [
    (lambda x, u: (u - x[:, 0:1])[:, 0], r"shape \(16,\) but must be \(16, k\).*x\[:, 0:1\]"),
    (lambda x, u: u[:8], r"shape \(8, 1\) but must be \(16, k\)"),
    (lambda x, u: torch.sin(x[:, 0:1]), "does not depend on u"),
    (lambda x, u: torch.ones(16, 1, dtype=D), "does not depend on u"),
    (lambda x, u: (u, torch.sin(x[:, 0:1])), "residual term 1 does not depend on u"),
    (lambda x, u: u / (x[:, 0:1] - x[:, 0:1]), "NaN or inf"),
    (lambda x, u: [u, "zero"], "residual term 1 is a str"),
    (lambda x, u: 0.0, "must return a tensor"),
])
def test_first_evaluation_errors(res, words):
    m = net()
    x = points()
    with pytest.raises(KanpinnError, match=words):
        Problem(RECT, res).residual_terms(x, m(x))


@pytest.mark.parametrize("ex, words", [
    (lambda x: torch.sin(x[:, 0]), r"shape \(4,\) but must be \(4, m\)"),
    (lambda x: torch.zeros(2, 1), r"shape \(2, 1\)"),
    (lambda x: torch.log(x[:, 0:1] - 5), "NaN or inf"),
])
def test_exact_errors(ex, words):
    p = Problem(RECT, poisson, exact=ex)
    with pytest.raises(KanpinnError, match=words):
        p.n_outputs
