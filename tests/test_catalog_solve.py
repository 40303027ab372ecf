"""Every problem in problems/ is solved to a stated tolerance within a small budget
(relative L2 against the problem's exact solution, on the solver's dense test grid)."""
from pathlib import Path

import pytest

import kanpinn as kp
from kanpinn.problem_file import load_problem

ROOT = Path(__file__).resolve().parents[1]

# problem -> (widths, grids, steps, n_interior, n_boundary, tolerance)
BUDGETS = {
    "poisson_1d": ([1, 3, 1], [5, 10], 20, 100, 2, 5e-5),
    "poisson_2d": ([2, 5, 1], [5, 10], 15, 400, 80, 5e-3),
    "poisson_2d_paper": ([2, 5, 1], [5, 10], 15, 400, 80, 2e-2),
    # width 8: at width 6 the result hangs on the draw (seeds 0-5: 0.07-0.69, or 0.07-0.32
    # with hidden grids placed at initialisation); at 8, 0.03-0.08 either way, same cost
    "helmholtz_2d": ([2, 8, 1], [5, 10], 20, 800, 160, 1.5e-1),
    "heat_1d": ([2, 5, 1], [5, 10], 15, 400, 80, 2e-3),
    "diffusion_1d": ([2, 5, 1], [5, 10], 15, 400, 80, 2e-3),
    "poisson_3d_sines": ([3, 3, 1], [5], 15, 600, 300, 2e-2),
    "poisson_2d_product": ([2, 5, 1], [5, 10], 15, 400, 80, 1e-2),  # measured 2.7e-3 (seed 0, session-6 init)
    # hard PDEs (issue 10): loose, but below the frozen initial condition (Burgers 0.59,
    # Allen-Cahn 0.66) or zero (1.0); measured 0.33, 0.11, 0.026, 0.31, 0.41
    "burgers_1d": ([2, 6, 1], [5, 10], 15, 600, 120, 0.45),
    "burgers_inverse": ([2, 6, 1], [5, 10], 15, 600, 120, 0.3),
    # exact travelling shock (no mirror symmetry): measured 4.3e-2 (seed 1: 1.8e-2)
    "burgers_moving_shock": ([2, 6, 1], [5, 10], 15, 600, 120, 0.1),
    "klein_gordon_1d": ([2, 6, 1], [5, 10], 15, 600, 120, 0.1),
    "wave_1d": ([2, 10, 1], [5, 10, 20], 20, 1500, 200, 0.45),
    "allen_cahn_1d": ([2, 10, 1], [5, 10, 20], 20, 1500, 200, 0.55),
    "poisson_lshape": ([2, 5, 1], [5, 10], 15, 400, 120, 1e-2),  # measured 1.0e-3 (seed 0, session-6 init)
    "poisson_plate_with_holes": ([2, 5, 1], [5, 10], 15, 400, 160, 5e-3),  # measured 3.1e-4 (seed 0, session-6 init)
    # 30 steps: at 15, seeds 0-5 end at 0.004-0.12 (seed 0's 5.5e-3 was the lucky one);
    # at 30, 5e-5-3.9e-3 (seed 0: 3.9e-3)
    "poisson_ball_3d": ([3, 4, 1], [5], 30, 600, 300, 2e-2),
    # third and fourth derivatives on the jets (LM's structured Jacobian): measured 2.5e-2
    # and 2.8e-4 (seed 0); before the jets carried them, LM was refused and L-BFGS gave
    # 0.35 and 0.82 at the same budget
    "kdv_1d": ([2, 6, 1], [5, 10], 20, 600, 120, 0.1),
    "beam_1d": ([2, 5, 1], [5, 10], 15, 400, 80, 5e-3),
    # systems: u, v, p together (measured 5.3e-2: u 3e-3, v 1.4e-2, p 0.10)
    "kovasznay": ([2, 8, 3], [5, 10], 10, 300, 60, 0.2),
}
# problems without a closed form, compared with their published reference elsewhere
ELSEWHERE = {"lid_driven_cavity": "tests/test_navier_stokes.py (Ghia, Ghia & Shin 1982 centrelines)"}


def test_every_problem_file_has_a_budget():
    assert sorted(p.stem for p in (ROOT / "problems").glob("*.py")) == sorted(set(BUDGETS) | set(ELSEWHERE))


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_problem_solves_to_tolerance(name):
    widths, grids, steps, n_int, n_bnd, tol = BUDGETS[name]
    problem = load_problem(ROOT / "problems" / f"{name}.py")
    res = kp.solve(problem, kp.KAN(widths, k=5, seed=0), grids=grids, steps=steps, n_interior=n_int,
                   n_boundary=n_bnd, progress=False, optimizer="lm")
    assert res.metrics["l2_relative"] < tol, (name, res.metrics["l2_relative"])
