"""Fronts: the mirror wrapper (exact parity, its jet, LM through it, saving), the probe
that finds a problem's mirror symmetries, the steepening rule and what auto mode
switches on for it."""
import math

import pytest
import torch

import kanpinn as kp
from kanpinn.errors import KanpinnError
from kanpinn.models import model_from_config
from kanpinn.solver.auto import classify, plan
from kanpinn.solver.fronts import steepening
from kanpinn.solver.hooks import Hook
from kanpinn.solver.knots import VariationKnots
from kanpinn.solver.symmetry import mirror_symmetries
from kanpinn.transforms import HardConstraint
from kanpinn.transforms.mirror import Mirror

pi = math.pi
nu = 0.01 / pi


def burgers():
    return kp.Problem(kp.SpaceTime(kp.Interval(-1, 1), t=(0, 1)),
                      lambda x, u: kp.partial(u, x, 1) + u * kp.partial(u, x, 0) - nu * kp.partial(u, x, 0, 2),
                      [kp.Dirichlet(0.0), kp.Initial(lambda x: -torch.sin(pi * x[:, 0:1]))])


def heat(u0=lambda x: torch.sin(pi * x[:, 0:1])):
    return kp.Problem(kp.SpaceTime(kp.Interval(0, 1), t=(0, 1)),
                      lambda x, u: kp.partial(u, x, 1) - 0.1 * kp.partial(u, x, 0, 2),
                      [kp.Dirichlet(0.0), kp.Initial(u0)])


def mirrored(sign, col=0, centre=0.25):
    return Mirror(kp.KAN([2, 3, 1], grid=4, k=3, seed=1), col, centre, sign)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_mirror_has_the_parity_and_its_jet_is_autograd_s(sign):
    m = mirrored(sign).double()
    x = torch.rand(40, 2, dtype=torch.float64) * 0.5
    rx = x.clone()
    rx[:, 0] = 0.5 - x[:, 0]                            # reflected about 0.25
    with torch.no_grad():
        assert torch.allclose(m(rx), sign * m(x), atol=1e-13)
    u, du, d2u = m.forward_jet(x, 2)
    xr = x.clone().requires_grad_(True)
    v = m(xr)
    g = torch.autograd.grad(v.sum(), xr, create_graph=True)[0]
    h = torch.stack([torch.autograd.grad(g[:, j].sum(), xr, retain_graph=True)[0][:, j] for j in range(2)], 1)
    assert torch.allclose(u, v, atol=1e-13)
    assert torch.allclose(du[:, 0, :], g, atol=1e-10)
    assert torch.allclose(d2u[:, 0, :], h, atol=1e-8)


def test_mirror_rebuilds_from_its_config_and_refuses_bad_arguments():
    m = mirrored(-1.0).double()
    back = model_from_config(m.config(), torch.float64)
    back.load_state_dict(m.state_dict())
    x = torch.rand(7, 2, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(back(x), m(x))
    inner = kp.KAN([2, 3, 1], grid=4, seed=0)
    for col, sign in [(2, 1.0), (-1, 1.0), (0, 0.5), (True, 1.0)]:
        with pytest.raises(KanpinnError):
            Mirror(inner, col, 0.0, sign)


def test_lm_trains_through_the_mirror():
    # u'' = -π² sin(πx) on [-1, 1], u(±1) = 0: the odd solution sin(πx), through Mirror
    problem = kp.Problem(kp.Interval(-1, 1), lambda x, u: kp.partial(u, x, 0, 2) + pi ** 2 * torch.sin(pi * x),
                         [kp.Dirichlet(0.0)], exact=lambda x: torch.sin(pi * x))
    model = Mirror(kp.KAN([1, 4, 1], grid=5, k=3, seed=0), 0, 0.0, -1.0)
    res = kp.solve(problem, model, optimizer="lm", grids=[5, 10], steps=15, n_interior=200, n_boundary=2,
                   progress=False)
    assert res.metrics["l2_relative"] < 1e-3


def test_the_probe_finds_the_symmetries_a_problem_has():
    assert mirror_symmetries(burgers()) == [(0, 0.0, -1.0)]                 # odd in x
    assert mirror_symmetries(heat()) == [(0, 0.5, 1.0)]                     # sin(πx) even about 1/2
    assert mirror_symmetries(heat(lambda x: torch.sin(2 * pi * x[:, 0:1]))) == [(0, 0.5, -1.0)]
    # sin(πx) sin(πy²) on [-1, 1]²: odd in x, even in y
    sq = kp.Problem(kp.Rectangle([-1, -1], [1, 1]),
                    lambda x, u: kp.laplacian(u, x) - torch.sin(pi * x[:, 0:1]) * torch.cos(pi * x[:, 1:2]),
                    [kp.Dirichlet(0.0)])
    assert mirror_symmetries(sq) == [(0, 0.0, -1.0), (1, 0.0, 1.0)]


def test_the_probe_claims_nothing_for_asymmetric_or_unprobed_problems():
    # an initial value without parity, a forcing without parity, a Neumann condition
    assert mirror_symmetries(heat(lambda x: torch.sin(pi * x[:, 0:1]) + x[:, 0:1] * (1 - x[:, 0:1]) ** 2)) == []
    forced = kp.Problem(kp.SpaceTime(kp.Interval(-1, 1), t=(0, 1)),
                        lambda x, u: kp.partial(u, x, 1) - kp.partial(u, x, 0, 2) - x[:, 0:1] ** 2 * (1 + x[:, 0:1]),
                        [kp.Dirichlet(0.0), kp.Initial(0.0)])
    assert mirror_symmetries(forced) == []
    # transport u_t + u_x: the reflection maps it to u_t - u_x
    adv = kp.Problem(kp.SpaceTime(kp.Interval(-1, 1), t=(0, 1)),
                     lambda x, u: kp.partial(u, x, 1) + kp.partial(u, x, 0),
                     [kp.Dirichlet(0.0), kp.Initial(lambda x: torch.sin(pi * x[:, 0:1]))])
    assert mirror_symmetries(adv) == []
    neu = kp.Problem(kp.Interval(-1, 1), lambda x, u: kp.partial(u, x, 0, 2) - 1.0, [kp.Neumann(0.0)])
    assert mirror_symmetries(neu) == []


def test_steepening_is_nonlinear_transport_not_reaction_nor_linear():
    b = burgers()
    assert steepening(b, classify(b), reaction=False)
    assert not steepening(b, classify(b), reaction=True)        # a reaction: auto mode marches instead
    h = heat()
    assert not steepening(h, classify(h), reaction=False)


def test_auto_mode_switches_the_front_methods_on_for_burgers_only():
    model, opts, choices = plan(burgers(), {"max_time": 60})
    assert isinstance(model, HardConstraint) and isinstance(model.inner, Mirror)
    assert model.inner.sign == -1.0 and model.inner.col == 0
    assert opts["resample"] == {"every": 5, "mode": "rad"}
    assert sum(isinstance(h, VariationKnots) for h in opts["hooks"]) == 1
    from kanpinn.solver.guard import FreshPointGuard
    assert sum(isinstance(h, FreshPointGuard) for h in opts["hooks"]) == 1
    assert [h.damping for h in opts["hooks"] if isinstance(h, VariationKnots)] == [1.0]
    with pytest.raises(KanpinnError):
        VariationKnots(damping=0.0)
    assert {"mirror_symmetry", "front_knots"} <= set(choices["methods"])
    model, opts, choices = plan(heat(), {"max_time": 60})
    assert not isinstance(model.inner, Mirror) and "resample" not in opts
    assert not any(isinstance(h, VariationKnots) for h in opts["hooks"])
    # the user's settings win
    _, opts, choices = plan(burgers(), {"max_time": 60, "resample": None, "hooks": [VariationKnots(uniform=2.0)]})
    assert opts["resample"] is None and choices["kept"]["resample"]
    assert [h.uniform for h in opts["hooks"] if isinstance(h, VariationKnots)] == [2.0]


def test_knots_under_a_mirror_follow_the_part_u_sees_and_are_symmetric():
    # a KAN whose odd part has a front at x = 0 and whose even part (which the odd mirror
    # removes) has one at x = 0.5: the knots must gather at 0, symmetrically, not at ±0.5
    from kanpinn.solver.knots import place_first_layer
    kan = kp.KAN([1, 1], grid=10, k=3, seed=0, dtype=torch.float64)
    x = torch.linspace(-1, 1, 801, dtype=torch.float64)[:, None]
    target = torch.tanh(x / 0.05) + torch.tanh((x - 0.5) / 0.05) + torch.tanh((-x - 0.5) / 0.05)
    kan.extend_grid(40, x)
    _fit(kan, x, target)
    model = Mirror(kan, 0, 0.0, -1.0)
    pts = place_first_layer(model, x, uniform=0.25)[0]
    assert torch.allclose(pts, -pts.flip(0), atol=0.02)                     # symmetric about 0
    near0 = int((pts.abs() < 0.1).sum())
    near_half = int(((pts.abs() - 0.5).abs() < 0.1).sum())
    assert near0 > 2 * max(near_half, 1)


def _fit(kan, x, y, steps=200):
    """Least squares fit of a one-edge KAN to y by Adam (a small, deterministic fit)."""
    opt = torch.optim.Adam(kan.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((kan(x) - y) ** 2).mean()
        loss.backward()
        opt.step()


class _Sabotage(Hook):
    """Scales the network's parameters at one step: a step that wrecks the function."""

    def __init__(self, at):
        self.at = at

    def after_step(self, run, info):
        if run.global_step == self.at:
            with torch.no_grad():
                for p in run.model.parameters():
                    p.mul_(50.0).add_(1.0)


def _poisson():
    return kp.Problem(kp.Interval(-1, 1), lambda x, u: kp.partial(u, x, 0, 2) + pi ** 2 * torch.sin(pi * x),
                      [kp.Dirichlet(0.0)], exact=lambda x: torch.sin(pi * x))


def test_fresh_point_guard_undoes_a_step_that_wrecks_the_function():
    from kanpinn.solver.guard import FreshPointGuard
    opts = dict(optimizer="lm", grids=[5], steps=20, n_interior=100, n_boundary=2, progress=False)
    ok = kp.solve(_poisson(), kp.KAN([1, 4, 1], grid=5, k=3, seed=0), hooks=[FreshPointGuard(every=5)], **opts)
    assert ok.metrics["l2_relative"] < 1e-2
    bad = kp.solve(_poisson(), kp.KAN([1, 4, 1], grid=5, k=3, seed=0), hooks=[_Sabotage(10)], **opts)
    guarded = kp.solve(_poisson(), kp.KAN([1, 4, 1], grid=5, k=3, seed=0),
                       hooks=[_Sabotage(10), FreshPointGuard(every=5)], **opts)
    assert guarded.metrics["steps"] == 10                               # stopped at the blow-up
    assert guarded.metrics["l2_relative"] < 0.1 * bad.metrics["l2_relative"]
    for every, factor in [(0, 10.0), (5, 1.0)]:
        with pytest.raises(KanpinnError):
            FreshPointGuard(every=every, factor=factor)


class _StageStartKick(Hook):
    """Perturbs the parameters when stage ``stage`` starts: a stage-start refit that
    raises the loss on fresh points far above the run's best before any step."""

    def __init__(self, stage, scale):
        self.stage, self.scale = stage, scale

    def on_stage_start(self, run):
        if run.stage == self.stage:
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for p in run.model.parameters():
                    p.add_(self.scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_a_per_stage_guard_lets_lm_train_down_a_stage_start_but_still_stops_a_blow_up():
    from kanpinn.solver.guard import FreshPointGuard
    opts = dict(optimizer="lm", grids=[5, 10], steps=20, n_interior=100, n_boundary=2, progress=False)

    def solve(*hooks):
        return kp.solve(_poisson(), kp.KAN([1, 4, 1], grid=5, k=3, seed=0), hooks=list(hooks), **opts)
    # the kick raises the loss on fresh points ~200x (6.7e-4 -> 0.13); LM trains it down
    run_wide = solve(_StageStartKick(1, 0.1), FreshPointGuard(every=5))
    per_stage = solve(_StageStartKick(1, 0.1), FreshPointGuard(every=5, per_stage=True))
    assert run_wide.metrics["steps"] == 25                              # stopped 5 steps into grid 10
    assert per_stage.metrics["steps"] == 40                             # grid 10 trained to its end
    assert per_stage.metrics["l2_relative"] < 0.5 * run_wide.metrics["l2_relative"]   # 2.5e-4 vs 1.8e-3
    blown = solve(_Sabotage(30), FreshPointGuard(every=5, per_stage=True))
    assert blown.metrics["steps"] == 30                                 # a blow-up inside a stage
    assert blown.metrics["l2_relative"] < 1e-2                          # the best state restored


def test_the_moving_shock_problem_is_exact_asymmetric_and_gets_the_front_rule_without_a_mirror():
    from kanpinn.problem_file import load_problem
    from pathlib import Path
    p = load_problem(Path(__file__).resolve().parents[1] / "problems" / "burgers_moving_shock.py")
    x = torch.rand(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = (x * torch.tensor([2.0, 1.0], dtype=torch.float64) - torch.tensor([1.0, 0.0], dtype=torch.float64))
    x.requires_grad_(True)
    u = p.exact(x)
    g = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    uxx = torch.autograd.grad(g[:, 0].sum(), x)[0][:, 0]
    res = (g[:, 1] + u[:, 0] * g[:, 0] - 0.02 * uxx).detach()          # by autograd, not the file's residual
    assert float(res.abs().max()) < 1e-12 and float(g[:, 0].detach().abs().max()) > 10.0   # steep, and exact
    edge = torch.tensor([[-1.0, 0.3], [1.0, 0.3]], dtype=torch.float64)
    assert torch.allclose(p.exact(edge)[:, 0], torch.tensor([1.0, -0.5], dtype=torch.float64), atol=1e-9)
    assert mirror_symmetries(p) == []
    _, opts, choices = plan(p, {"max_time": 60})
    assert "mirror_symmetry" not in choices["methods"] and "front_knots" in choices["methods"]
    guard = [h for h in opts["hooks"] if type(h).__name__ == "FreshPointGuard"]
    assert len(guard) == 1 and guard[0].per_stage

