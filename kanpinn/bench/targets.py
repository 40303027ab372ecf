"""The accuracy/time targets of the reference problems, measured in this process.

- pykan's Poisson 2D (sin(πx) sin(πy) on [-1,1]², 51x51 interior grid, 51 points per
  side): seconds of training until the relative L2 error on the 101x101 test grid reaches
  2.8e-4 (DeepXDE's MLP-PINN final figure, 357 s) and 1e-5, with a [2,10,1] KAN.
- the KAN paper's Poisson problem (sin(πx) sin(πy²)): the MSE reached by a [2,10,1] KAN.

Training time excludes the evaluation of the test error after each step (``history["time"]``).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["run_targets", "poisson_problem"]


def _first_time(history, level):
    err, t = history.get("l2_relative"), history.get("time")
    if err is None:
        return math.nan
    hit = np.nonzero(err <= level)[0]
    return float(t[hit[0]]) if len(hit) else math.nan


def poisson_problem(problem_name):
    """pykan's Poisson 2D problem ("poisson_2d") or the KAN paper's ("poisson_2d_paper")."""
    import torch

    import kanpinn as kp
    pi = math.pi
    if problem_name == "poisson_2d":
        def exact(x):
            return torch.sin(pi * x[:, 0:1]) * torch.sin(pi * x[:, 1:2])

        def residual(x, u):
            return kp.laplacian(u, x) + 2 * pi ** 2 * exact(x)
        return kp.Problem(kp.Rectangle([-1.0, -1.0], [1.0, 1.0]), residual, [kp.Dirichlet(0.0)],
                          exact=exact, name=problem_name)

    def exact(x):
        return torch.sin(pi * x[:, 0:1]) * torch.sin(pi * x[:, 1:2] ** 2)

    def residual(x, u):
        X, Y = x[:, 0:1], x[:, 1:2]
        sx = torch.sin(pi * X)
        f = -pi ** 2 * sx * torch.sin(pi * Y ** 2) + sx * (2 * pi * torch.cos(pi * Y ** 2)
                                                          - 4 * pi ** 2 * Y ** 2 * torch.sin(pi * Y ** 2))
        return kp.laplacian(u, x) - f
    return kp.Problem(kp.Rectangle([-1.0, -1.0], [1.0, 1.0]), residual, [kp.Dirichlet(exact)],
                      exact=exact, name=problem_name)


def run_targets(quick=False, log=print, device="cpu"):
    """Rows: dict(target, setup, measured, reference, device)."""
    import kanpinn as kp
    steps = 10 if quick else 60
    rows = []
    opts = dict(n_interior=2601, n_boundary=204, sampler="grid", progress=False, optimizer="lm",
                device=device)

    log("targets: Poisson 2D (pykan setup), KAN [2,10,1] k=5, grids 5/10/20")
    res = kp.solve(poisson_problem("poisson_2d"), kp.KAN([2, 10, 1], k=5, seed=0),
                   grids=[5, 10, 20], steps=steps, target=1e-5, **opts)
    h = res.history
    rows.append(dict(target="Poisson 2D: seconds to rel. L2 2.8e-4", setup="KAN [2,10,1] k=5, LM",
                     measured=_first_time(h, 2.8e-4), reference="DeepXDE MLP 357 s; goal < 20 s"))
    rows.append(dict(target="Poisson 2D: seconds to rel. L2 1e-5", setup="KAN [2,10,1] k=5, LM",
                     measured=_first_time(h, 1e-5), reference="goal < 120 s"))
    rows.append(dict(target="Poisson 2D: final rel. L2", setup=f"{res.metrics['steps']} LM steps",
                     measured=res.metrics["l2_relative"], reference="pykan [2,10,1]: 1.5e-3 in 485 s"))

    log("targets: KAN paper Poisson, KAN [2,10,1] k=5, grids 5/10/20")
    res = kp.solve(poisson_problem("poisson_2d_paper"), kp.KAN([2, 10, 1], k=5, seed=0),
                   grids=[5, 10, 20], steps=steps, **opts)
    x = res.test_x if getattr(res, "test_x", None) is not None else None
    mse = math.nan
    if x is not None and getattr(res, "test_u", None) is not None:
        mse = float(np.mean((res.predict(x) - res.test_u) ** 2))
    rows.append(dict(target="KAN paper Poisson: test MSE", setup="KAN [2,10,1] k=5, LM",
                     measured=mse, reference="goal <= 1e-7 (paper: ~1e-7)"))
    rows.append(dict(target="KAN paper Poisson: wall time (s)", setup="",
                     measured=res.metrics["wall_time"], reference=""))
    for r in rows:
        r["device"] = str(device)
    return rows


def targets_markdown(rows):
    lines = ["| target | device | setup | measured | reference |", "|---|---|---|---|---|"]
    for r in rows:
        m = r["measured"]
        ms = "not reached" if isinstance(m, float) and math.isnan(m) else (f"{m:.3g}" if isinstance(m, float) else str(m))
        lines.append(f"| {r['target']} | {r.get('device', 'cpu')} | {r['setup']} | {ms} | {r['reference']} |")
    return "\n".join(lines)
