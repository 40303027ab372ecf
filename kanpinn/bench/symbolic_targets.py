"""Closed-form recovery targets: train, symbolify, and compare with the exact formula.

For each problem the recovered formula must have relative L2 error <= 1e-6 against the
exact solution and be sympy-equal to it after snapping. Times are wall seconds of the
solve and of the recovery, measured here.
"""
from __future__ import annotations

import math
import time

import sympy as sp

__all__ = ["CASES", "run_symbolic_targets"]


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
