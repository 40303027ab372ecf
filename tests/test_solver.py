"""The solver: accuracy against exact solutions, resume, inverse problems, bad input."""
import math
import warnings

import numpy as np
import pytest
import torch

import kanpinn as kp
from kanpinn.solver import SolverWarning
from kanpinn.solver.lm import LevenbergMarquardt

pi = math.pi


def poisson_1d():
    return kp.Problem(kp.Interval(-1.0, 1.0), lambda x, u: kp.laplacian(u, x) + pi ** 2 * torch.sin(pi * x),
                      conditions=[kp.Dirichlet(0.0)], exact=lambda x: torch.sin(pi * x), name="p1")


def poisson_2d():
    def residual(x, u):
        f = -2 * pi ** 2 * torch.sin(pi * x[:, 0:1]) * torch.sin(pi * x[:, 1:2])
        return kp.laplacian(u, x) - f
    return kp.Problem(kp.Rectangle([-1.0, -1.0], [1.0, 1.0]), residual, conditions=[kp.Dirichlet(0.0)],
                      exact=lambda x: torch.sin(pi * x[:, 0:1]) * torch.sin(pi * x[:, 1:2]), name="p2")


FAST = dict(n_interior=100, n_boundary=2, progress=False, sampler="sobol")


def test_poisson_1d_reaches_small_error():
    res = kp.solve(poisson_1d(), kp.KAN([1, 3, 1], seed=0), grids=[5, 10], steps=30, **FAST)
    assert res.metrics["l2_relative"] < 1e-3
    # the metric is the honest relative L2 against the exact solution on the test grid
    x = np.linspace(-1, 1, 301)[:, None]
    err = np.linalg.norm(res.predict(x) - np.sin(pi * x)) / np.linalg.norm(np.sin(pi * x))
    assert err < 2e-3
    h = res.history
    assert len(h["step"]) == len(h["loss"]) == len(h["time"]) == len(h["l2_relative"])
    assert np.all(np.diff(h["time"]) >= 0)


def test_poisson_2d_kan_lm_small_budget():
    res = kp.solve(poisson_2d(), kp.KAN([2, 5, 1], k=5, seed=0), grids=[5, 10], steps=15,
                   n_interior=400, n_boundary=80, progress=False)
    assert res.metrics["l2_relative"] < 5e-2
    assert res.metrics["n_parameters"] == sum(p.numel() for p in res.model.parameters())


def test_mlp_through_same_solve_and_lbfgs():
    res = kp.solve(poisson_1d(), kp.MLP([1, 16, 16, 1], seed=0), optimizer="adam+lbfgs",
                   adam_steps=100, steps=100, lr=1e-2, **FAST)
    assert res.metrics["l2_relative"] < 5e-2


def test_lm_jacobian_matches_finite_differences_with_mult_nodes_and_neumann():
    from kanpinn.solver.loss import Collocation, PINNLoss
    prob = kp.Problem(kp.Rectangle([0.0, 0.0], [1.0, 1.0]), lambda x, u: kp.laplacian(u, x) - 1.0,
                      conditions=[kp.Dirichlet(0.0, on=lambda x: x[:, 0] < 0.5), kp.Neumann(1.0, on=lambda x: x[:, 0] > 0.5)])
    for model in (kp.KAN([2, [2, 2], 1], seed=1, dtype=torch.float64), kp.MLP([2, 5, 1], seed=1, dtype=torch.float64)):
        col = Collocation(prob, 40, 20, "sobol", 0, torch.float64, "cpu")
        lm = LevenbergMarquardt(PINNLoss(prob, model, col, {}), list(model.parameters()))
        J, r, _ = lm._jacobian()
        lm._check(J, r)                           # raises when J·v differs from finite differences
        assert lm.checked and J.shape == (r.shape[0], sum(p.numel() for p in model.parameters()))


def test_seed_makes_cpu_runs_repeatable_bit_for_bit():
    a = kp.solve(poisson_1d(), kp.KAN([1, 3, 1], seed=0), grids=[5], steps=5, seed=3, **FAST)
    b = kp.solve(poisson_1d(), kp.KAN([1, 3, 1], seed=0), grids=[5], steps=5, seed=3, **FAST)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])


@pytest.mark.parametrize("optimizer, kill_at", [("lm", 12), ("adam", 12), ("lm", 9)])
def test_checkpoint_resume_equals_unbroken_run(tmp_path, monkeypatch, optimizer, kill_at):
    # bit-identical on the CPU always; on CUDA (device="auto" picks it) atomics sum in
    # varying order unless deterministic algorithms are asked for, as PyTorch documents
    if torch.cuda.is_available():
        monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    opts = dict(grids=[4, 8], steps=8, optimizer=optimizer, checkpoint_every=3, **FAST)
    unbroken = kp.solve(poisson_1d(), kp.KAN([1, 3, 1], seed=0), **opts)
    ck = tmp_path / "run.ckpt.h5"
    # kill the run part-way through the second stage
    import importlib
    S = importlib.import_module("kanpinn.solver.loop")
    calls = {"n": 0}
    orig = S.tick

    def dying_tick(*args, **kw):
        calls["n"] += 1
        if calls["n"] == kill_at:           # 9: just after the stage-2 start checkpoint
            raise KeyboardInterrupt("simulated kill")
        return orig(*args, **kw)

    monkeypatch.setattr(S, "tick", dying_tick)
    with pytest.raises(KeyboardInterrupt):
        kp.solve(poisson_1d(), kp.KAN([1, 3, 1], seed=0), checkpoint=str(ck), **opts)
    monkeypatch.setattr(S, "tick", orig)
    assert ck.exists()
    resumed = kp.solve(poisson_1d(), kp.KAN([1, 3, 1], seed=0), checkpoint=str(ck), **opts)
    x = np.linspace(-1, 1, 50)[:, None]
    np.testing.assert_array_equal(resumed.predict(x), unbroken.predict(x))
    np.testing.assert_array_equal(resumed.history["loss"], unbroken.history["loss"])


def test_inverse_problem_learns_coefficient():
    # u'' = -kappa π² sin(πx), true kappa = 2 and u = 2 sin(πx)/... observed through data
    xd = np.linspace(-0.9, 0.9, 15)[:, None]
    ud = np.sin(pi * xd)
    prob = kp.Problem(kp.Interval(-1.0, 1.0),
                      lambda x, u, p: kp.laplacian(u, x) + p["kappa"] * pi ** 2 * torch.sin(pi * x) * 0.5,
                      conditions=[kp.Dirichlet(0.0), kp.Data(xd, ud)],
                      exact=lambda x: torch.sin(pi * x), parameters={"kappa": 0.5})
    res = kp.solve(prob, kp.KAN([1, 3, 1], seed=0), grids=[5, 10], steps=40, **FAST)
    assert abs(res.metrics["parameters"]["kappa"] - 2.0) < 1e-3
    assert "param_kappa" in res.history


def test_divergence_is_caught_and_rolled_back():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = kp.solve(poisson_1d(), kp.MLP([1, 8, 1], seed=0), optimizer="adam", lr=1e8, steps=30, **FAST)
    assert any(issubclass(x.category, SolverWarning) and "diverged" in str(x.message) for x in w)
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    assert math.isfinite(res.metrics["loss"])


def test_bad_options_and_inputs_have_clear_errors(tmp_path):
    p = poisson_1d()
    with pytest.raises(kp.KanpinnError, match="unknown solve option"):
        kp.solve(p, kp.KAN([1, 2, 1]), stpes=3)
    with pytest.raises(kp.KanpinnError, match="optimizer"):
        kp.solve(p, kp.KAN([1, 2, 1]), optimizer="sgd")
    with pytest.raises(kp.KanpinnError, match="inputs"):
        kp.solve(p, kp.KAN([2, 2, 1]), steps=1, **FAST)
    with pytest.raises(kp.KanpinnError, match="Problem"):
        kp.solve("poisson", kp.KAN([1, 2, 1]))
    with pytest.raises(kp.KanpinnError, match="n_interior"):
        kp.solve(p, kp.KAN([1, 2, 1]), n_interior=0, progress=False)
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(kp.KanpinnError, match="checkpoint"):
        kp.solve(p, kp.KAN([1, 2, 1]), steps=1, checkpoint=str(bad), **FAST)
    assert bad.read_bytes() == b"not an hdf5 file at all"          # never overwritten


def test_residual_without_u_is_rejected():
    prob = kp.Problem(kp.Interval(0.0, 1.0), lambda x, u: torch.sin(x) + 0 * x, conditions=[kp.Dirichlet(0.0)])
    with pytest.raises(kp.KanpinnError, match="does not depend on u"):
        kp.solve(prob, kp.KAN([1, 2, 1]), steps=1, **FAST)


def test_adaptive_weights_move_towards_gradient_balance():
    res = kp.solve(poisson_1d(), kp.MLP([1, 8, 1], seed=0), optimizer="adam", steps=20, lr=1e-2,
                   adaptive_weights={"every": 5, "alpha": 0.5}, **FAST)
    w = res.history["weight_dirichlet"]
    assert w[0] != w[-1] and np.all(np.isfinite(w)) and np.all(w > 0)


def test_weights_for_unknown_terms_are_rejected():
    with pytest.raises(kp.KanpinnError, match="unknown terms"):
        kp.solve(poisson_1d(), kp.KAN([1, 2, 1]), weights={"dirichlett": 2.0}, steps=1, **FAST)


def test_residual_based_resampling_changes_points_and_still_converges():
    import importlib
    S = importlib.import_module("kanpinn.solver.loss")
    seen = []
    orig = S.Collocation.sample

    def spy(self, rnd, interior=None):
        orig(self, rnd, interior)
        seen.append(self.interior.detach().clone())
    S.Collocation.sample = spy
    try:
        res = kp.solve(poisson_1d(), kp.KAN([1, 3, 1], seed=0), grids=[5, 10], steps=20,
                       resample={"every": 5, "mode": "rad"}, **FAST)
    finally:
        S.Collocation.sample = orig
    assert len(seen) >= 4 and not torch.equal(seen[0], seen[-1])       # points were redrawn
    assert res.metrics["l2_relative"] < 1e-2                             # from ~1 at the start


def test_high_dimensional_test_set_is_quasi_random_not_a_huge_grid():
    # 11 points per axis in 5-D would be 161 051 test points evaluated at every step
    box = kp.Box([0.0] * 5, [1.0] * 5)
    exact = lambda x: torch.sin(math.pi * x).sum(1, keepdim=True)
    problem = kp.Problem(box, lambda x, u: kp.laplacian(u, x) + math.pi ** 2 * torch.sin(math.pi * x).sum(1, keepdim=True),
                         [kp.Dirichlet(exact)], exact=exact)
    r = kp.solve(problem, kp.KAN([5, 2, 1], seed=0), grids=[3], steps=1, n_interior=64, n_boundary=64,
                 progress=False, seed=0)
    x = np.asarray(r.test_x)
    assert x.shape == (2 ** 14, 5)
    assert (x > 0).all() and (x < 1).all()
    # spread over the box: every axis' quartiles near 1/4, 1/2, 3/4
    assert np.allclose(np.quantile(x, [0.25, 0.5, 0.75], axis=0), [[0.25], [0.5], [0.75]], atol=0.01)
    # the metrics compare against the exact solution at those points
    u = np.asarray(r.predict(x)).reshape(-1)
    ref = np.sin(np.pi * x).sum(1)
    assert abs(r.metrics["l2_relative"] - np.linalg.norm(u - ref) / np.linalg.norm(ref)) < 1e-6
