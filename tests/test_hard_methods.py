"""The methods for hard PDEs, each on a tiny budget: causal weighting (weights against a
hand computation, the solve hook), and exact constraints inside kp.solve."""
import math

import numpy as np
import pytest
import torch

import kanpinn as kp
from kanpinn.errors import KanpinnError
from kanpinn.solver.causal import CausalWeights
from kanpinn.solver.loss import Collocation

pi = math.pi


def heat(t1=1.0):
    return kp.Problem(kp.SpaceTime(kp.Interval(0, 1), t=(0, t1)),
                      lambda x, u: kp.partial(u, x, 1) - 0.1 * kp.partial(u, x, 0, 2),
                      [kp.Dirichlet(0.0), kp.Initial(lambda x: torch.sin(pi * x[:, 0:1]))],
                      exact=lambda x: torch.sin(pi * x[:, 0:1]) * torch.exp(-0.1 * pi ** 2 * x[:, 1:2]))


def test_causal_weights_match_a_hand_computation():
    hook = CausalWeights(chunks=3, levels=(0.1, 1.0))
    w = hook.weights(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert torch.allclose(w, torch.tensor([1.0, math.exp(-0.1), math.exp(-0.3)], dtype=torch.float64))


class _Run:
    """The few fields of a solver run the hook reads."""

    def __init__(self, problem, model, n=60):
        self.problem, self.model, self.params = problem, model, {}
        self.colloc = Collocation(problem, n, 4, "sobol", 0, torch.float64, torch.device("cpu"))

        class _Loss:
            interior_weights = None
        self.loss = _Loss()


def test_chunk_losses_are_per_chunk_mean_squared_residuals():
    prob = heat()
    model = kp.KAN([2, 3, 1], k=3, seed=0).double()
    run = _Run(prob, model)
    hook = CausalWeights(chunks=4)
    idx, losses = hook.chunk_losses(run)
    x = run.colloc.interior.detach().clone().requires_grad_(True)
    u = model(x)
    g = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    uxx = torch.autograd.grad(g[:, 0].sum(), x)[0][:, 0]
    r2 = (g[:, 1] - 0.1 * uxx).detach() ** 2
    chunk = np.minimum((x[:, 1].detach().numpy() * 4).astype(int), 3)
    for i in range(4):
        assert abs(float(losses[i]) - float(r2[torch.as_tensor(chunk == i)].mean())) < 1e-10
    hook.before_step(run)
    w = run.loss.interior_weights
    assert w.shape == (60,) and float(w.max()) <= 1.0 and torch.allclose(w, hook.weights(losses)[idx])


def test_causal_level_rises_once_every_chunk_is_fitted():
    hook = CausalWeights(chunks=4, levels=(0.01, 0.1, 1.0))
    run = _Run(heat(), lambda x: torch.sin(pi * x[:, 0:1]) * torch.exp(-0.1 * pi ** 2 * x[:, 1:2]))
    hook.before_step(run)               # the exact solution: residuals ~0, all weights 1
    assert hook.level == 2 and hook.last_min > 0.99


def test_causal_hook_in_a_solve_and_bad_use():
    res = kp.solve(heat(), kp.KAN([2, 4, 1], k=3, seed=0), grids=[4], steps=3, n_interior=60,
                   n_boundary=10, test_points=11, progress=False, hooks=[CausalWeights(chunks=4)])
    assert math.isfinite(res.metrics["l2_relative"]) and res.metrics["l2_relative"] < 1.0
    poisson = kp.Problem(kp.Interval(0, 1), lambda x, u: kp.partial(u, x, 0, 2), [kp.Dirichlet(0.0)])
    with pytest.raises(KanpinnError, match="SpaceTime"):
        kp.solve(poisson, kp.KAN([1, 2, 1]), grids=[3], steps=1, progress=False, hooks=[CausalWeights()])
    with pytest.raises(KanpinnError, match="chunks"):
        CausalWeights(chunks=1)


def test_exact_constraints_inside_solve_leave_no_condition_misfit():
    from kanpinn.transforms import HardConstraint, hard_constraint_for
    prob = heat()
    factors, lifting, _ = hard_constraint_for(prob)
    model = HardConstraint(kp.KAN([2, 4, 1], k=3, seed=0), factors, lifting)
    res = kp.solve(prob, model, grids=[4], steps=3, n_interior=80, n_boundary=16, test_points=11, progress=False)
    assert res.history["loss_dirichlet"].max() < 1e-28
    assert res.history["loss_initial"].max() < 1e-28
    assert res.metrics["l2_relative"] < 0.5


def test_stage_budget_gives_every_grid_its_share():
    from kanpinn.solver.budget import StageBudget
    hook = StageBudget(1e-9, [1, 2])                 # the first share is spent after one step
    res = kp.solve(heat(), kp.KAN([2, 3, 1], k=3, seed=0), grids=[3, 6], steps=4, n_interior=40,
                   n_boundary=8, test_points=11, progress=False, hooks=[hook])
    assert res.model.layers[0].basis.grid == 6     # the second grid was reached
    assert any("share of max_time" in n for n in res.metrics["notes"])
    assert res.metrics["steps"] < 8
    with pytest.raises(KanpinnError, match="shares"):
        StageBudget(10, [1, 0])


# ---------------------------------------------------------------- knots that follow the solution
from kanpinn.solver.inverse import DataFirst, fit_parameters  # noqa: E402
from kanpinn.solver.knots import VariationKnots, monitor_samples, place_first_layer  # noqa: E402


def test_monitor_samples_follow_the_weighted_density():
    z = torch.linspace(0, 1, 2001, dtype=torch.float64)[:, None]
    w = torch.where(z > 0.5, 3.0, 1.0)           # three times the density on the right half
    s = monitor_samples(z, w, 4001)
    assert abs(float((s > 0.5).double().mean()) - 0.75) < 2e-3
    assert float(s.min()) == 0.0 and float(s.max()) == 1.0
    with pytest.raises(KanpinnError, match="non-negative"):
        monitor_samples(z, -w, 10)
    with pytest.raises(KanpinnError, match="differ"):
        monitor_samples(z, w[:10], 10)


def test_knots_gather_at_a_front_and_keep_the_function():
    torch.manual_seed(0)
    model = kp.KAN([1, 1], grid=10, k=3, seed=0, dtype=torch.float64)
    x = torch.linspace(-1, 1, 801, dtype=torch.float64)[:, None]
    # give the edge a steep front at x = 0.3: fit tanh((x - 0.3)/0.05) on a fine grid
    model.extend_grid(80)
    layer = model.layers[0]
    with torch.no_grad():
        layer.scale_base.zero_()
        layer.scale_sp.fill_(1.0)
        first, (b,) = layer.basis.evaluate(x, 0)
        A = layer._dense(first, b)[:, 0, :]                                  # (N, n_basis)
        layer.coef[0, :, 0] = torch.linalg.lstsq(A, torch.tanh((x[:, 0] - 0.3) / 0.05)).solution
    before = model(x).detach()
    pts = place_first_layer(model, x, uniform=1.0)[0]
    near = int(((pts > 0.2) & (pts < 0.4)).sum())
    assert near > 0.3 * pts.numel()              # uniform: 10 % of the knots in that band
    assert float((model(x).detach() - before).abs().max()) < 1e-2
    with pytest.raises(KanpinnError, match="uniform"):
        VariationKnots(uniform=0)


def test_variation_knots_lower_the_error_of_a_steep_fit():
    """One spline edge fitted to a front of width 0.05 (residual u - exact): uniform
    knots (spacing 0.1 at G = 20) miss it (measured 4.0e-2); knots that follow the
    variation resolve it (5.5e-4)."""
    ex = lambda x: torch.tanh((x[:, 0:1] - 0.3) / 0.05)
    prob = kp.Problem(kp.Interval(-1, 1), lambda x, u: u - ex(x), exact=ex)
    err = {}
    for name, hooks in (("uniform", []), ("variation", [VariationKnots()])):
        r = kp.solve(prob, kp.KAN([1, 1], grid=5, k=3, seed=0), grids=[5, 10, 20], steps=10,
                     n_interior=400, optimizer="lm", hooks=hooks, progress=False)
        err[name] = r.metrics["l2_relative"]
    assert err["variation"] < 0.1 * err["uniform"], err


# ---------------------------------------------------------------- inverse problems: data first
def _inverse(k0=1.0):
    """u'' + k u = 0 on [0, 1] observed at 40 points of u = sin(2x): k = 4."""
    xd = np.linspace(0, 1, 40)[:, None]
    return kp.Problem(kp.Interval(0, 1), lambda x, u, p: kp.partial(u, x, 0, 2) + p["k"] * u,
                      [kp.Data(xd, np.sin(2 * xd))], exact=lambda x: torch.sin(2 * x),
                      parameters={"k": k0})


def test_data_first_recovers_the_coefficient():
    hook = DataFirst()
    r = kp.solve(_inverse(), kp.KAN([1, 3, 1], grid=5, k=3, seed=0), grids=[5, 10], steps=20,
                 n_interior=100, optimizer="lm", hooks=[hook], progress=False)
    assert abs(r.metrics["parameters"]["k"] - 4.0) < 1e-3 * 4.0
    assert set(hook.fitted) == {"k"}                 # the coefficient-only fit ran after stage 1
    assert any("data first" in n for n in r.metrics["notes"])


def test_fit_parameters_on_an_exact_network():
    """With the network equal to the solution, the coefficient-only fit lands on k = 4
    from a start two decades away (log scale)."""
    class Exact(torch.nn.Module):
        def forward(self, x):
            return torch.sin(2 * x)

    class R:
        pass
    run = R()
    run.problem, run.model = _inverse(), Exact()
    run.params = {"k": torch.tensor(0.04, dtype=torch.float64)}
    run.colloc = Collocation(run.problem, 50, 4, "sobol", 0, torch.float64, torch.device("cpu"))
    out = fit_parameters(run)
    assert abs(out["k"][1] - 4.0) < 1e-8


def test_data_first_bad_use():
    with pytest.raises(KanpinnError, match="stages"):
        DataFirst(stages=0)
    with pytest.raises(KanpinnError, match="pde_weight"):
        DataFirst(pde_weight=2.0)
    with pytest.raises(KanpinnError, match="unknown parameters"):
        kp.solve(heat(), kp.KAN([2, 3, 1], seed=0), grids=[5], steps=1, hooks=[DataFirst()], progress=False)
