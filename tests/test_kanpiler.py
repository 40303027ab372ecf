"""Kanpiler: KAN.from_formula builds a KAN that computes the formula."""
import numpy as np
import pytest
import sympy as sp
import torch

import kanpinn as kp

x, y = sp.symbols("x y")
X = torch.rand(400, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _ref(expr):
    f = sp.lambdify((x, y), expr, "numpy")
    return torch.as_tensor(np.broadcast_to(f(X[:, 0].numpy(), X[:, 1].numpy()), (400,)).astype(np.float64)).reshape(-1, 1)


@pytest.mark.parametrize("expr, widths", [
    (sp.sin(sp.pi * x) * sp.sin(sp.pi * y), [2, [0, 1], 1]),
    (sp.exp(-x) * sp.sin(sp.pi * y) + x ** 2 + 3, [2, [1, 1], 1]),
    ((x + y) ** 2, [2, [2, 1], 1]),
    (sp.Integer(2), [2, 1, 1]),
])
@pytest.mark.parametrize("symbolic, tol", [(True, 1e-12), (False, 1e-6)])
def test_structured_formulas_compile_exactly(expr, widths, symbolic, tol):
    model = kp.KAN.from_formula(expr, ["x", "y"], symbolic=symbolic, grid=20, k=5)
    assert model.config()["widths"] == widths
    ref = _ref(expr)
    with torch.no_grad():
        out = model(X)
    assert float((out - ref).norm() / ref.norm()) < tol


def test_unstructured_formula_is_fitted():
    model = kp.KAN.from_formula(sp.sin(x + y), ["x", "y"], grid=10)
    with torch.no_grad():
        err = float((model(X) - _ref(sp.sin(x + y))).norm() / _ref(sp.sin(x + y)).norm())
    assert err < 1e-3


def test_unknown_symbol_is_rejected():
    z = sp.Symbol("z")
    with pytest.raises(kp.KanpinnError, match="not among the variables"):
        kp.KAN.from_formula(x * z, ["x", "y"])


def test_compiled_hypothesis_fine_tunes_on_pde():
    # start from a slightly wrong hypothesis 0.9 sin(pi x) sin(pi y); LM on the PDE fixes it
    pi = np.pi
    def residual(xx, u):
        f = -2 * pi ** 2 * torch.sin(pi * xx[:, 0:1]) * torch.sin(pi * xx[:, 1:2])
        return kp.laplacian(u, xx) - f
    prob = kp.Problem(kp.Rectangle([-1.0, -1.0], [1.0, 1.0]), residual, [kp.Dirichlet(0.0)],
                      exact=lambda xx: torch.sin(pi * xx[:, 0:1]) * torch.sin(pi * xx[:, 1:2]))
    model = kp.KAN.from_formula(0.9 * sp.sin(sp.pi * x) * sp.sin(sp.pi * y), ["x", "y"], symbolic=False, grid=10, k=5)
    res = kp.solve(prob, model, grids=[10], steps=20, n_interior=400, n_boundary=80, progress=False,
                   grid_update=False)
    assert res.metrics["l2_relative"] < 3e-3          # from 1e-1
