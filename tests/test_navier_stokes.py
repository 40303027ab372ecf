"""Navier-Stokes problem files: Kovasznay flow (exact solution) and the lid-driven cavity
at Re = 100 against the centreline tables of Ghia, Ghia & Shin (1982)."""
import os
import runpy

import numpy as np
import pytest
import torch

import kanpinn as kp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KOVASZNAY = runpy.run_path(os.path.join(REPO, "problems", "kovasznay.py"))
CAVITY = runpy.run_path(os.path.join(REPO, "problems", "lid_driven_cavity.py"))

# Ghia, U., Ghia, K. N. & Shin, C. T. (1982). High-Re solutions for incompressible flow
# using the Navier-Stokes equations and a multigrid method. J. Comput. Phys. 48, 387-411.
# Table I: u along the vertical centreline x = 0.5, Re = 100 column (y, u).
GHIA_TABLE_I = [
    (1.0000, 1.00000), (0.9766, 0.84123), (0.9688, 0.78871), (0.9609, 0.73722),
    (0.9531, 0.68717), (0.8516, 0.23151), (0.7344, 0.00332), (0.6172, -0.13641),
    (0.5000, -0.20581), (0.4531, -0.21090), (0.2813, -0.15662), (0.1719, -0.10150),
    (0.1016, -0.06434), (0.0703, -0.04775), (0.0625, -0.04192), (0.0547, -0.03717),
    (0.0000, 0.00000)]
# Table II: v along the horizontal centreline y = 0.5, Re = 100 column (x, v).
GHIA_TABLE_II = [
    (1.0000, 0.00000), (0.9688, -0.05906), (0.9609, -0.07391), (0.9531, -0.08864),
    (0.9453, -0.10313), (0.9063, -0.16914), (0.8594, -0.22445), (0.8047, -0.24533),
    (0.5000, 0.05454), (0.2344, 0.17527), (0.2266, 0.17507), (0.1563, 0.16077),
    (0.0938, 0.12317), (0.0781, 0.10890), (0.0703, 0.10091), (0.0625, 0.09233),
    (0.0000, 0.00000)]


def _points(domain, n, seed=0):
    return torch.as_tensor(domain.sample_interior(n, "sobol", seed=seed)).requires_grad_(True)


# ---------------------------------------------------------------------------- Kovasznay
def test_kovasznay_exact_solution_satisfies_the_equations_and_conditions():
    problem, exact = KOVASZNAY["problem"], KOVASZNAY["exact"]
    x = _points(problem.domain, 256)
    for term in problem.residual_terms(x, exact(x), None):
        assert term.shape == (256, 1) and float(term.detach().abs().max()) < 1e-12
    # conditions: u, v on the walls, p at the pinned centre, all zero misfit on the exact field
    colloc = kp.solver.loss.Collocation(problem, 16, 64, "sobol", 0, torch.float64, "cpu")
    for cond, pts in zip(problem.conditions, colloc.conditions):
        assert float(cond.misfit(exact, pts).detach().abs().max()) < 1e-14


def test_kovasznay_is_divergence_free_by_finite_differences():
    """Independent of autograd and of the residual code: central differences of the
    exact u and v, and the momentum equation's x component at one point."""
    exact, Re, lam = KOVASZNAY["exact"], KOVASZNAY["Re"], KOVASZNAY["lam"]
    assert abs(lam - (Re / 2 - np.sqrt(Re**2 / 4 + 4 * np.pi**2))) < 1e-15
    h = 1e-4
    x0 = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    e = torch.eye(2, dtype=torch.float64) * h

    def f(x):
        return exact(x)[0]

    d = [(f(x0 + e[i]) - f(x0 - e[i])) / (2 * h) for i in range(2)]          # ∂/∂x, ∂/∂y
    dd = [(f(x0 + e[i]) - 2 * f(x0) + f(x0 - e[i])) / h**2 for i in range(2)]
    w = f(x0)
    assert abs(float(d[0][0] + d[1][1])) < 1e-7                              # u_x + v_y
    mx = w[0] * d[0][0] + w[1] * d[1][0] + d[0][2] - (dd[0][0] + dd[1][0]) / Re
    assert abs(float(mx)) < 1e-5


@pytest.mark.slow          # ~20-25 s on an idle 2-core box: the cavity solve below keeps the default run's check
def test_kovasznay_solve_small_budget():
    """A short LM solve on the fast path: each field's relative L2 error falls well below
    that of the starting network (loose: the issue's 1e-5 target is a bench figure)."""
    problem = KOVASZNAY["problem"]
    # measured (seed 0, pressure pinned at the centre): relative L2 4.0e-3, 1.7e-2, 8.4e-3 for u, v, p
    result = kp.solve(problem, kp.KAN([2, 12, 3], grid=5, k=3, seed=0), optimizer="lm", grids=[5], steps=20,
                      n_interior=300, n_boundary=100, progress=False, seed=0, test_points=31)
    x = torch.as_tensor(problem.domain.test_points(101))
    ref = KOVASZNAY["exact"](x).numpy()
    pred = result.predict(x)
    rel = np.linalg.norm(pred - ref, axis=0) / np.linalg.norm(ref, axis=0)
    assert np.all(rel < 0.1), rel


# ------------------------------------------------------------------------------ cavity
def test_ghia_tables_in_the_problem_file_are_the_published_values():
    yu, u = np.array(GHIA_TABLE_I).T
    xv, v = np.array(GHIA_TABLE_II).T
    assert np.array_equal(CAVITY["GHIA_Y"], yu) and np.array_equal(CAVITY["GHIA_U"], u)
    assert np.array_equal(CAVITY["GHIA_X"], xv) and np.array_equal(CAVITY["GHIA_V"], v)
    # the extremes the paper's tables show for Re = 100
    assert (u.min(), yu[u.argmin()]) == (-0.21090, 0.4531)
    assert (v.max(), xv[v.argmax()]) == (0.17527, 0.2344)
    assert (v.min(), xv[v.argmin()]) == (-0.24533, 0.8047)


def test_cavity_lid_is_regularised_and_walls_are_no_slip():
    lid, wall_u = CAVITY["lid"], CAVITY["wall_u"]
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.5, 1.0], [0.13, 1.0], [0.87, 1.0],
                      [0.0, 0.3], [1.0, 0.6], [0.4, 0.0]], dtype=torch.float64)
    u = wall_u(x)[:, 0]
    assert float(u[0].abs()) < 1e-15 and float(u[1].abs()) < 1e-15             # corners
    assert float(u[2]) == 1.0 and float(u[3:5].min()) > 0.99                    # the lid
    assert float(u[5:].abs().max()) == 0.0                                      # other walls
    assert torch.allclose(lid(x[:5]), wall_u(x[:5]))
    problem = CAVITY["problem"]
    assert problem.conditions[2].component == 2                                 # p pinned


def test_centreline_deviation_reads_both_tables():
    deviation = CAVITY["centreline_deviation"]

    def ghia(x):                       # the tables themselves, looked up at their points
        out = np.zeros((len(x), 3))
        for i, (a, b) in enumerate(x):
            if a == 0.5:
                out[i, 0] = dict(GHIA_TABLE_I)[b]
            if b == 0.5:
                out[i, 1] = dict(GHIA_TABLE_II)[a]
        return out

    du, dv = deviation(ghia)
    assert du.shape == (15,) and dv.shape == (15,)
    assert np.abs(du).max() == 0.0 and np.abs(dv).max() == 0.0
    du, dv = deviation(lambda x: np.zeros((len(x), 3)))
    assert np.abs(du).max() == 0.84123 and np.abs(dv).max() == 0.24533


def _cavity_deviation(widths, grids, steps, n_interior, n_boundary):
    result = kp.solve(CAVITY["problem"], kp.KAN(widths, grid=grids[0], k=3, seed=0), optimizer="lm",
                      grids=grids, steps=steps, n_interior=n_interior, n_boundary=n_boundary,
                      progress=False, seed=0, test_points=11)
    du, dv = CAVITY["centreline_deviation"](result.predict)
    return max(np.abs(du).max(), np.abs(dv).max())


def test_cavity_solve_small_budget_against_ghia():
    """A short LM solve: the centreline values come within a loose 0.15 of the lid speed
    of Ghia's (measured, seed 0: 0.068 on u, 0.10 on v). The issue's 1e-2 is the slow
    test below."""
    assert _cavity_deviation([2, 12, 3], [5], 20, 300, 400) < 0.15


@pytest.mark.slow
def test_cavity_meets_the_ghia_target():
    """Issue target: every interior table value within 1e-2 of the lid speed (measured,
    seed 0: 7.2e-3 on u, 5.6e-3 on v; 560 s of training on a heavily shared 2-core box)."""
    assert _cavity_deviation([2, 12, 3], [5, 10], 20, 1000, 400) <= 1e-2


# ------------------------------------------------------------------------------ FD reference
def test_cavity_reference_converges_at_second_order_and_is_mirror_symmetric_in_stokes_flow():
    """The finite-difference reference of the cavity (``kanpinn.references.cavity``).
    Truths: the order of its scheme (centreline values at n = 16, 32, 64, Re = 10: each
    refinement shrinks the change by ~4) and, in Stokes flow under the symmetric lid, the
    mirror symmetry v(x, 0.5) = -v(1 - x, 0.5) (measured: 5e-6 at Re = 0.01)."""
    from kanpinn.errors import KanpinnError
    from kanpinn.references.cavity import solve_cavity
    at = np.array([0.25, 0.5, 0.75])
    vals = [np.concatenate(solve_cavity(n, re=10.0).centrelines(at, at)) for n in (16, 32, 64)]
    coarse, fine = np.abs(vals[1] - vals[0]).max(), np.abs(vals[2] - vals[1]).max()
    assert 3.0 < coarse / fine < 5.0
    _, v = solve_cavity(16, re=0.01).centrelines(at, at)
    assert abs(v[0] + v[2]) < 1e-4 and abs(v[1]) < 1e-4 and v[0] > 0.1
    with pytest.raises(KanpinnError, match="at least 8"):
        solve_cavity(4)


@pytest.mark.slow          # two 129 x 129 solves, ~30 s each on a quiet box
def test_cavity_reference_plain_lid_near_ghia_and_regularised_lid_near_plain():
    """With Ghia's plain lid the reference comes within 1e-2 of the published tables
    (measured at n = 128: 4.3e-3 on u, 8.4e-3 on v; the n = 64 -> 128 change is 2.9e-3, so
    most of the v gap is the table's own error), and the problem file's regularised lid
    moves the centrelines by ~1e-3 (measured: 1.1e-3 on u, 6.7e-4 on v)."""
    from kanpinn.references.cavity import solve_cavity
    y, gu = np.array(GHIA_TABLE_I[1:-1]).T
    x, gv = np.array(GHIA_TABLE_II[1:-1]).T
    plain = solve_cavity(128, lid=np.ones_like).centrelines(y, x)
    regular = solve_cavity(128).centrelines(y, x)
    assert np.abs(plain[0] - gu).max() <= 1e-2 and np.abs(plain[1] - gv).max() <= 1e-2
    assert max(np.abs(a - b).max() for a, b in zip(plain, regular)) <= 1.5e-3


# ----------------------------------------------------------------------- auto mode
def test_auto_mode_plans_one_wider_kan_for_a_system():
    """Kovasznay in auto mode: one KAN for (u, v, p), twice the scalar width, on the
    embedded box (it reaches outside [-1, 1]); the choice says why."""
    from kanpinn.solver import auto
    from kanpinn.transforms import Embedded
    problem = KOVASZNAY["problem"]
    model, options, choices = auto.plan(problem, {})
    assert isinstance(model, Embedded)
    assert choices["model"]["widths"] == [2, 20, 3] and choices["problem"]["outputs"] == 3
    assert "Kovasznay" in choices["model"]["why_width"]
    scalar = kp.Problem(kp.Rectangle([0.0, 0.0], [1.0, 1.0]), lambda x, u: kp.laplacian(u, x),
                        [kp.Dirichlet(0.0)])
    _, _, c1 = auto.plan(scalar, {})
    assert c1["model"]["widths"][1] == 10 and "why_width" not in c1["model"]
    x = torch.as_tensor(problem.domain.sample_interior(8, "sobol", seed=0))
    assert model.double()(x).shape == (8, 3)


def test_auto_mode_grows_a_systems_points_by_its_rows():
    """Continuation grows the points with the parameters; a system of three fields has
    three residual rows per point, so it gets a third of the scalar points per parameter."""
    from kanpinn.solver import auto
    from kanpinn.solver.continuation import Continuation
    _, options, choices = auto.plan(KOVASZNAY["problem"], {"max_time": 60.0})
    cont = [h for h in options["hooks"] if isinstance(h, Continuation)]
    assert len(cont) == 1 and choices["methods"]["continuation"]["points_per_param"] == pytest.approx(4 / 3)
    assert cont[0].points_per_param == pytest.approx(4 / 3)
    scalar = kp.Problem(kp.Rectangle([0.0, 0.0], [1.0, 1.0]), lambda x, u: kp.laplacian(u, x),
                        [kp.Dirichlet(0.0)])
    _, options, _ = auto.plan(scalar, {"max_time": 60.0})
    assert [h.points_per_param for h in options["hooks"] if isinstance(h, Continuation)] == [4.0]
