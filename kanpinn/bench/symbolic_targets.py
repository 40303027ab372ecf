"""Closed-form recovery targets: train, symbolify, and compare with the exact formula.

For each problem the recovered formula must have relative L2 error <= 1e-6 against the
exact solution and be sympy-equal to it after snapping. Times are wall seconds of the
solve and of the recovery, measured here.
"""
from __future__ import annotations

import math
import time

import sympy as sp

__all__ = ["CASES", "run_symbolic_targets", "DISCOVER_TARGETS", "run_discover_target",
           "symbolify_recovery_rate", "MEASURED"]


def _cases():
    import torch

    import kanpinn as kp
    pi = math.pi
    x, y, z, t = sp.symbols("x y z t")

    def p1():
        prob = kp.Problem(kp.Interval(-1.0, 1.0), lambda X, u: kp.laplacian(u, X) + pi ** 2 * torch.sin(pi * X),
                          [kp.Dirichlet(0.0)], exact=lambda X: torch.sin(pi * X), name="poisson_1d")
        return prob, kp.KAN([1, 1], k=5, seed=0), dict(grids=[5, 10, 20], steps=30, n_interior=200), sp.sin(sp.pi * x)

    def p2():
        def ex(X):
            return torch.sin(pi * X[:, 0:1]) * torch.sin(pi * X[:, 1:2])
        prob = kp.Problem(kp.Rectangle([-1.0, -1.0], [1.0, 1.0]), lambda X, u: kp.laplacian(u, X) + 2 * pi ** 2 * ex(X),
                          [kp.Dirichlet(0.0)], exact=ex, name="poisson_2d")
        return (prob, kp.KAN([2, [0, 1], 1], k=5, seed=0, grid_eps=0.02),
                dict(grids=[5, 10, 20], steps=40, n_interior=1000, n_boundary=200, starts=4),
                sp.sin(sp.pi * x) * sp.sin(sp.pi * y))

    def heat():
        kappa = 1 / pi ** 2
        prob = kp.Problem(kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
                          lambda X, u: kp.partial(u, X, 1) - kappa * kp.partial(u, X, 0, order=2),
                          [kp.Dirichlet(0.0), kp.Initial(lambda X: torch.sin(pi * X[:, 0:1]))],
                          exact=lambda X: torch.exp(-X[:, 1:2]) * torch.sin(pi * X[:, 0:1]), name="heat_1d")
        return (prob, kp.KAN([2, [0, 1], 1], k=5, seed=0, grid_eps=0.02),
                dict(grids=[5, 10, 20], steps=40, n_interior=1000, n_boundary=200, starts=4),
                sp.exp(-t) * sp.sin(sp.pi * x))

    def p3():
        def ex(X):
            return torch.sin(pi * X[:, 0:1]) + torch.sin(pi * X[:, 1:2]) + torch.sin(pi * X[:, 2:3])
        prob = kp.Problem(kp.Box([-1.0] * 3, [1.0] * 3), lambda X, u: kp.laplacian(u, X) + pi ** 2 * ex(X),
                          [kp.Dirichlet(ex)], exact=ex, name="poisson_3d_sines")
        return (prob, kp.KAN([3, 1], k=5, seed=0), dict(grids=[5, 10, 20], steps=30, n_interior=1500, n_boundary=600),
                sp.sin(sp.pi * x) + sp.sin(sp.pi * y) + sp.sin(sp.pi * z))

    return {"poisson_1d": p1, "poisson_2d_multkan": p2, "heat_1d_multkan": heat, "poisson_3d_sines": p3}


CASES = ("poisson_1d", "poisson_2d_multkan", "heat_1d_multkan", "poisson_3d_sines")


def run_symbolic_targets(names=CASES, log=print):
    import numpy as np

    import kanpinn as kp
    from kanpinn.symbolic.clean import relative_l2
    cases = _cases()
    rows = []
    for name in names:
        prob, model, opts, truth = cases[name]()
        t0 = time.perf_counter()
        res = kp.solve(prob, model, progress=False, optimizer="lm", **opts)
        t_solve = time.perf_counter() - t0
        t0 = time.perf_counter()
        expr = kp.symbolify(res)
        t_sym = time.perf_counter() - t0
        syms = [sp.Symbol(v) for v in prob.variables]
        err = relative_l2(expr, syms, np.asarray(res.test_x), np.asarray(res.test_u).reshape(-1))
        equal = sp.simplify(sp.expand(expr - truth)) == 0 if not isinstance(expr, sp.Matrix) else False
        rows.append(dict(problem=name, model=str(model.config()["widths"]), solve_error=res.metrics["l2_relative"],
                         formula=str(expr), formula_error=float(err), sympy_equal=bool(equal),
                         solve_s=t_solve, symbolify_s=t_sym))
        log(f"{name}: {expr}  (formula error {err:.2e}, exact={equal}, solve {t_solve:.1f}s, symbolify {t_sym:.1f}s)")
    return rows


# ---------------------------------------------------------------------------------------
# kp.discover targets (issue 14): the verified closed form, sympy-equal to the truth and at
# most a few operations longer, within 10 minutes on 2 CPU cores
# ---------------------------------------------------------------------------------------
def _truths():
    x, y, t = sp.symbols("x y t")
    Re = 20.0
    lam = Re / 2 - math.sqrt(Re ** 2 / 4 + 4 * math.pi ** 2)
    return {
        "heat_1d": sp.exp(-t) * sp.sin(sp.pi * x),                   # kappa = 1/pi^2
        "poisson_2d_product": sp.sin(sp.pi * x) * sp.sin(2 * sp.pi * y),
        "klein_gordon_1d": x * sp.cos(5 * sp.pi * t) + (x * t) ** 3,
        "kovasznay": sp.Matrix([1 - sp.exp(lam * x) * sp.cos(2 * sp.pi * y),
                                lam / (2 * sp.pi) * sp.exp(lam * x) * sp.sin(2 * sp.pi * y),
                                (1 - sp.exp(2 * lam * x)) / 2]),
    }


DISCOVER_TARGETS = ("heat_1d", "poisson_2d_product", "klein_gordon_1d", "kovasznay")
EXTRA_OPS = 3          # "at most a few operations more than the truth"


def _equal(found, truth, symbols, points):
    """Exactly equal (sympy), or, where the truth has an irrational float constant
    (Kovasznay's lambda), equal to 1e-9 on the points."""
    import numpy as np
    a = list(found) if isinstance(found, sp.MatrixBase) else [found]
    b = list(truth) if isinstance(truth, sp.MatrixBase) else [truth]
    if len(a) != len(b):
        return False
    for fa, fb in zip(a, b):
        if sp.simplify(sp.expand(fa - fb)) == 0:
            continue
        va = sp.lambdify(symbols, fa, "numpy")(*points.T)
        vb = sp.lambdify(symbols, fb, "numpy")(*points.T)
        if not np.allclose(np.broadcast_to(va, points.shape[:1]), np.broadcast_to(vb, points.shape[:1]),
                           rtol=1e-9, atol=1e-9):
            return False
    return True


def run_discover_target(name, problem_dir="problems", max_time=600.0, log=print):
    """kp.discover on problems/<name>.py; a row: formula, verified, residual, seconds,
    sympy-equal to the truth, operations (found, truth)."""
    import os

    import kanpinn as kp
    from kanpinn.problem_file import load_problem
    from kanpinn.symbolic.polish import n_ops
    problem = load_problem(os.path.join(problem_dir, f"{name}.py"))
    truth = _truths()[name]
    t0 = time.perf_counter()
    found = kp.discover(problem, max_time=max_time, log=log)
    seconds = time.perf_counter() - t0
    symbols = [sp.Symbol(v) for v in problem.variables]
    pts = problem.domain.sample_interior(200, "uniform", seed=5)
    equal = found.formula is not None and _equal(found.formula, truth, symbols, pts)
    row = dict(problem=name, formula=str(found.formula), verified=found.verified,
               residual=found.residual, seconds=seconds, sympy_equal=bool(equal),
               ops=None if found.formula is None else n_ops(found.formula), truth_ops=n_ops(truth),
               candidates=len(found.candidates))
    row["met"] = bool(found.verified and equal and row["ops"] <= row["truth_ops"] + EXTRA_OPS
                      and seconds <= max_time)
    log(found.report())
    return row


def symbolify_recovery_rate(name, seeds=range(10), problem_dir="problems", log=print):
    """How often ``kp.symbolify`` after a default MultKAN solve (issue 14's new user:
    ``kp.KAN([d, [0, 1], 1], seed=s)``, ``grids=[5, 10, 20], steps=100``, every other
    option the solver's default) gives the closed form: (hits, seeds, formulas)."""
    import os
    import warnings

    import kanpinn as kp
    from kanpinn.problem_file import load_problem
    from kanpinn.symbolic.verify import verify
    problem = load_problem(os.path.join(problem_dir, f"{name}.py"))
    truth = _truths()[name]
    symbols = [sp.Symbol(v) for v in problem.variables]
    pts = problem.domain.sample_interior(200, "uniform", seed=5)
    hits, formulas = 0, []
    for s in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the solve's seed too: with multi-start (16 starts for a MultKAN) the starts
            # are drawn from it, and the model's seed alone gave the same network
            res = kp.solve(problem, kp.KAN([problem.domain.dim, [0, 1], 1], seed=s),
                           grids=[5, 10, 20], steps=100, progress=False, seed=s)
            expr = kp.symbolify(res)
        ok = verify(expr, problem).verified and _equal(expr, truth, symbols, pts)
        hits += ok
        formulas.append(str(expr))
        log(f"{name} seed {s}: {'closed form' if ok else 'NOT the closed form'}: {expr}")
    return hits, len(list(seeds)), formulas


# Measured with the functions above (2-core x86-64, torch 2.13.0 CPU, float64). The CPU was
# shared with about seven other engineers' jobs (load average 13-19 on 2 cores), so the
# seconds are pessimistic by a large factor.
MEASURED = {
    "discover": {
        "poisson_1d": dict(formula="sin(pi*x)", verified=True, residual=1.8e-16, seconds=15.1,
                           structures_tried=1, met=True),
        # session 6, with distillation (docs/closed_forms.md), 1 thread, load 3.5-4.5; the
        # PDE-trained heat and Poisson-product rows took 35.7 s and 25.6 s at session 5
        "heat_1d": dict(formula="exp(-t)*sin(pi*x)", verified=True, residual=2.3e-17, seconds=66.9,
                        ops=4, truth_ops=4, structures_tried=2, met=True,
                        note="sum [2, 1] screened out (4.4 s), product [2, [0, 1], 1] trained on the "
                             "PDE verified (60.4 s); 35.7 s at session 5 (load 4.8)"),
        "poisson_2d_product": dict(formula="sin(pi*x)*sin(2*pi*y)", verified=True, residual=2.9e-16,
                                   seconds=45.5, ops=6, truth_ops=6, structures_tried=2, met=True),
        "klein_gordon_1d": dict(formula="t**3*x**3 + x*cos(5*pi*t)", verified=True, residual=2.3e-16,
                                seconds=220.7, ops=8, truth_ops=8, met=True,
                                note="sum screened out, PDE-trained product residual 1.0e-2 (46.9 s), "
                                     "teacher 165 s, distilled sum rejected, separable products read "
                                     "off the teacher's values verified (2.0 s); session 5: not "
                                     "verified, best 1.0e-2"),
        "kovasznay": dict(formula="[1 - exp(-1.81009812*x)*cos(2*pi*y), -0.2880860633*exp(-1.81009812*x)"
                                  "*sin(2*pi*y), 1/2 - exp(-3.62019624*x)/2]",
                          verified=True, residual=7.3e-12, seconds=226.9, ops=21, truth_ops=22, met=True,
                          note="teacher 161 s; u, v: separable products read off the teacher's values, "
                               "p: sum fitted to it; the system polished on the PDE (lambda refined by "
                               "Gauss-Newton) and verified; session 5: not verified, best 1.3e-2"),
        "wave_1d": dict(formula="sin(pi*x)*cos(2*pi*t) + sin(4*pi*x)*cos(8*pi*t)/2", verified=True,
                        residual=3.3e-16, seconds=201.0, met=None,
                        note="not a target: sum and product screened out, teacher 164 s, the grid "
                             "reader verified in 13.4 s"),
        "poisson_2d_paper": dict(formula=None, verified=False, residual=0.64, seconds=229.7, met=None,
                                 note="not a target: sin(pi*x)*sin(pi*y**2), the y side is a "
                                      "composition the grid reader cannot fit; nothing returned"),
        "allen_cahn_1d": dict(formula=None, verified=False, residual=6.7e-2, seconds=186.8, met=None,
                              note="not elementary: max_time 240, nothing verified, formula None"),
    },
    "symbolify_default_multkan": {
        # kp.solve(problem, kp.KAN([2, [0, 1], 1], seed=s), seed=s) with no other option, then
        # kp.symbolify; session 6, 1 thread, load 3.3-6.6 (docs/closed_forms.md)
        "heat_1d": dict(hits=10, seeds=10, note="16 starts and up to 2 restart rounds (auto); "
                        "rel. L2 6.9e-6..1.3e-5; seed 8 recovered by one restart round (9/10 before)"),
        "poisson_2d_product": dict(hits=10, seeds=10, note="grids 10/20/40 (MultKAN k < 5), 16 starts, "
                                   "restart rounds; rel. L2 2.2e-4..4.0e-4; seeds 3, 7, 9 restarted "
                                   "(8/10 before: seeds 3, 9 stalled at 0.10)"),
    },
}
