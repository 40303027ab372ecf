"""The reference solvers (kanpinn.references) checked against themselves and against
independent facts: quadrature refinement and a published value for Cole-Hopf Burgers;
temporal order, time interpolation, and halving dt with doubled modes for Allen-Cahn."""
import math

import numpy as np
import pytest
import torch

from kanpinn.errors import KanpinnError
from kanpinn.references import allen_cahn_reference, burgers_cole_hopf, solve_allen_cahn

NU = 0.01 / math.pi


# ------------------------------------------------------------------ Burgers (Cole-Hopf)

def _burgers_grid():
    x, t = np.meshgrid(np.linspace(-1, 1, 101), np.linspace(0, 1, 26))
    return x, t


def test_burgers_quadrature_refinement_converges():
    x, t = _burgers_grid()
    u128, u256 = burgers_cole_hopf(x, t, NU, nodes=128), burgers_cole_hopf(x, t, NU, nodes=256)
    assert np.abs(u128 - u256).max() < 1e-12
    # too few nodes are visibly wrong: the check can fail
    assert np.abs(burgers_cole_hopf(x, t, NU, nodes=32) - u256).max() > 1e-4


def test_burgers_quadrature_at_the_shock():
    # the steepest part of the front at t = 1, where quadrature is hardest (measured:
    # 64 against 128 nodes differ by up to 2e-10 there, 128 against 256 by rounding)
    x = np.array([-1e-2, -2e-3, -1e-3, 0.0, 1e-3, 2e-3, 1e-2])
    t = np.ones_like(x)
    u128, u256 = burgers_cole_hopf(x, t, NU, nodes=128), burgers_cole_hopf(x, t, NU, nodes=256)
    assert np.abs(u128 - u256).max() < 1e-12
    assert abs(u256[3]) < 1e-14                         # odd in x: zero at the shock
    assert np.all(np.diff(u256) < 0)                    # a decreasing front from +u to -u
    assert u256[0] > 0.5 and u256[-1] < -0.5


def test_burgers_initial_condition_and_walls():
    x = np.linspace(-1, 1, 101)
    np.testing.assert_allclose(burgers_cole_hopf(x, np.zeros_like(x), NU), -np.sin(np.pi * x), atol=1e-15)
    # u - u0 = O(t): |u_t| <= |u u_x| + ν |u_xx| ~ π at t = 0
    np.testing.assert_allclose(burgers_cole_hopf(x, np.full_like(x, 1e-7), NU), -np.sin(np.pi * x), atol=1e-6)
    t = np.linspace(0, 1, 11)
    for wall in (-1.0, 1.0):
        assert np.abs(burgers_cole_hopf(np.full_like(t, wall), t, NU)).max() < 1e-13


def test_burgers_steepest_slope_matches_basdevant():
    # Basdevant et al. (1986), Computers & Fluids 14: max |u_x| = 152.00516 at x = 0,
    # t = 1.6037/π, computed there by other methods (a spectral solver among them)
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    u = burgers_cole_hopf(x, torch.tensor([1.6037 / math.pi], dtype=torch.float64), NU)
    (ux,) = torch.autograd.grad(u.sum(), x)
    assert abs(ux.item() + 152.00516) < 1e-5


def test_burgers_satisfies_the_pde():
    gen = torch.Generator().manual_seed(0)
    xt = torch.rand(200, 2, generator=gen, dtype=torch.float64)
    xt[:, 0] = 2 * xt[:, 0] - 1
    xt[:, 1] = 0.01 + 0.99 * xt[:, 1]
    xt.requires_grad_()
    u = burgers_cole_hopf(xt[:, 0], xt[:, 1], NU)
    (du,) = torch.autograd.grad(u.sum(), xt, create_graph=True)
    (d2u,) = torch.autograd.grad(du[:, 0].sum(), xt)
    r = du[:, 1] + u * du[:, 0] - NU * d2u[:, 0]
    assert r.abs().max().item() < 1e-10
    assert du[:, 0].abs().max().item() > 10.0           # the sample reaches the steep front


def test_burgers_bad_input():
    with pytest.raises(KanpinnError, match="nu"):
        burgers_cole_hopf(0.0, 0.5, nu=0.0)
    with pytest.raises(KanpinnError, match="t must be >= 0"):
        burgers_cole_hopf(0.0, -0.1)
    with pytest.raises(KanpinnError, match="nodes"):
        burgers_cole_hopf(0.0, 0.5, nodes=1)


# ------------------------------------------------------------------ Allen-Cahn (ETDRK4)

def _test_grid(t_end=1.0):
    return np.meshgrid(np.linspace(-1, 1, 101), np.linspace(0, t_end, int(round(100 * t_end)) + 1))


def test_etdrk4_is_fourth_order():
    # 64 modes (a smooth, resolved problem in space): the error at t = 0.5 against a
    # much smaller step falls by ~16 per halving of dt
    fine = solve_allen_cahn(64, 1e-3, 0.5, save_every=500).grid()[2][-1]
    errs = [np.abs(solve_allen_cahn(64, dt, 0.5, save_every=int(round(0.5 / dt))).grid()[2][-1] - fine).max()
            for dt in (0.1, 0.05, 0.025)]
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(rates > 3.5), (errs, rates)


def test_allen_cahn_time_interpolation_between_stored_steps():
    every2 = solve_allen_cahn(256, 1e-3, 0.2, save_every=2)
    every1 = solve_allen_cahn(256, 1e-3, 0.2, save_every=1)
    t, x, u = every1.grid()
    X, T = np.meshgrid(x[::3], t[1::2])                 # times half-way between stored ones
    assert np.abs(every2(X, T) - u[1::2, ::3]).max() < 1e-9
    X, T = np.meshgrid(x[::3], t[::2])                  # at stored times: the grid values
    assert np.abs(every2(X, T) - u[::2, ::3]).max() < 1e-12


def test_allen_cahn_refinement_early_window():
    # the kink of u0 at x = ±1 makes the first instants the hardest: halving dt and
    # doubling the modes there (measured: rel. L2 3.0e-6 on t <= 0.05, 4.4e-7 on the
    # whole 101x101 grid, see the slow test)
    X, T = _test_grid(0.05)
    ref = allen_cahn_reference()
    fine = solve_allen_cahn(2 * ref.modes, ref.dt / 2, 0.05, save_every=20)
    a, b = ref(X, T), fine(X, T)
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 5e-6


@pytest.mark.slow
def test_allen_cahn_refinement_whole_run():
    X, T = _test_grid()
    ref = allen_cahn_reference()
    fine = solve_allen_cahn(2 * ref.modes, ref.dt / 2, 1.0, save_every=20)
    a, b = ref(X, T), fine(X, T)
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-6
    late = T >= 0.25
    assert np.abs(a - b)[late].max() < 1e-6             # measured 2.5e-7


def test_allen_cahn_reference_satisfies_pde_and_conditions():
    ref = allen_cahn_reference()
    gen = torch.Generator().manual_seed(1)
    xt = torch.rand(150, 2, generator=gen, dtype=torch.float64)
    xt[:, 0] = 2 * xt[:, 0] - 1
    xt.requires_grad_()
    u = ref(xt[:, 0], xt[:, 1])
    (du,) = torch.autograd.grad(u.sum(), xt, create_graph=True)
    (d2u,) = torch.autograd.grad(du[:, 0].sum(), xt)
    r = du[:, 1] - 1e-4 * d2u[:, 0] + 5 * u**3 - 5 * u
    assert r.abs().max().item() < 1e-6                  # measured 8e-8
    t, x, grid = ref.grid()
    np.testing.assert_allclose(grid[0], x**2 * np.cos(np.pi * x), atol=1e-14)
    ts = np.linspace(0, 1, 21)
    assert np.abs(ref(np.full_like(ts, -1.0), ts) - ref(np.full_like(ts, 1.0), ts)).max() < 1e-12
    X, T = _test_grid()
    U = ref(X, T)
    assert np.abs(U[0] - X[0]**2 * np.cos(np.pi * X[0])).max() < 1e-6   # off the grid, at the kink
    # the metastable phases: |u| -> 1 away from the interfaces by t = 1
    assert np.abs(U[-1]).max() < 1.01 and np.mean(np.abs(U[-1]) > 0.99) > 0.5


def test_allen_cahn_grid_and_point_paths_agree():
    ref = allen_cahn_reference()
    X, T = np.meshgrid(np.linspace(-1, 1, 7), np.linspace(0.003, 0.997, 5))
    on_grid = ref(X, T)                                 # tensor-grid path
    pts = ref(torch.tensor(X.ravel(), requires_grad=True), torch.tensor(T.ravel()))  # point path
    np.testing.assert_allclose(pts.detach().numpy().reshape(X.shape), on_grid, atol=1e-13)


def test_allen_cahn_bad_input():
    with pytest.raises(KanpinnError, match="modes"):
        solve_allen_cahn(modes=4)
    with pytest.raises(KanpinnError, match="whole number"):
        solve_allen_cahn(64, dt=0.3, t_end=1.0)
    sol = solve_allen_cahn(32, 0.05, 0.1, save_every=1)
    with pytest.raises(KanpinnError, match="t must lie in"):
        sol(np.zeros(2), np.array([0.05, 0.5]))
    with pytest.raises(KanpinnError, match="same shape"):
        sol(np.zeros(2), np.zeros(3))
