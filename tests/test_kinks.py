"""A kink of the initial value at a periodic seam carried in closed form
(``kanpinn.transforms.kinks``): the closed form against a Fourier-series solution of the
same linear equation, the residual probe against the coefficients written in the
residual, the lifting periodic after t0 and exact at t0, save/load, and a solve against
an exact heat solution."""
import math

import numpy as np
import pytest
import torch

import kanpinn as kp
from kanpinn.transforms import Embedded, HardConstraint, hard_constraint_for
from kanpinn.transforms.kinks import InteriorKink, SeamKink, interior_kinks_for, kinks_from_spec, seam_kinks_for

pi = math.pi
D64 = torch.float64


def kinked(residual, u0=lambda x: 1 - x[:, 0:1] ** 2, t1=0.5):
    """A periodic problem on x in [-1, 1] whose initial value has a corner at x = ±1."""
    return kp.Problem(kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, t1)), residual,
                      [kp.Periodic("x"), kp.Initial(u0)])


def heat_exact(x, t, eps):
    """u_t = eps u_xx, u0 = 1 - x² periodic on [-1, 1]: 2/3 - Σ 4(-1)^n/(nπ)² e^{-eps(nπ)²t} cos(nπx)."""
    n = np.arange(1, 4001)[:, None]
    terms = 4 * (-1.0) ** n / (n * pi) ** 2 * np.exp(-eps * (n * pi) ** 2 * t[None, :]) * np.cos(n * pi * x[None, :])
    return 2.0 / 3.0 - terms.sum(0)


def test_closed_form_matches_the_fourier_solution_of_the_linear_equation():
    """u_t = ε u_xx - λ u with u0 = A (L/π)|sin(π(x - lo)/L)| (= A·w at t0) has the Fourier
    solution A e^{-λt}(L/π)[2/π - (4/π) Σ cos(2nθ) e^{-ε(2nπ/L)²t}/(4n² - 1)]. Near the seam
    the closed form must follow its rounded corner; away from it, it differs only by the
    diffusion of the smooth sine, O(ε t)."""
    A, eps, lam, L = 2.0, 1e-3, 3.0, 2.0
    kink = SeamKink(0, -1.0, 1.0, 1, 0.0, A, eps, decay=lam)
    t = 0.01
    x = np.concatenate([np.linspace(0.95, 1.0, 26), np.linspace(-1.0, -0.95, 26)])
    th = pi * (x + 1) / L
    n = np.arange(1, 3001)[:, None]
    series = 2 / pi - 4 / pi * (np.cos(2 * n * th[None, :]) * np.exp(-eps * (2 * n * pi / L) ** 2 * t)
                                / (4 * n ** 2 - 1)).sum(0)
    fourier = A * math.exp(-lam * t) * (L / pi) * series
    xt = torch.tensor(np.stack([x, np.full_like(x, t)], 1), dtype=D64)
    e = kink(xt).detach().numpy().ravel()
    corner = A * math.exp(-lam * t) * (L / pi) * np.abs(np.sin(th))
    assert np.abs(fourier - corner).max() > 5e-3          # the layer is there to be resolved
    assert np.abs(e - fourier).max() < 1e-4                # and the closed form resolves it
    # at t0 it is A·w exactly, and it decays as e^{-λτ}
    x0 = torch.tensor([[0.3, 0.0], [0.3, 0.2]], dtype=D64)
    w = (L / pi) * math.sin(pi * 1.3 / L)
    assert abs(float(kink(x0)[0]) - A * w) < 1e-15
    assert abs(float(kink(x0)[1]) - A * w * math.exp(-lam * 0.2)) < 1e-9


def test_closed_form_is_periodic_and_smooth_after_t0():
    kink = SeamKink(0, -1.0, 1.0, 1, 0.0, 1.5, 1e-4, decay=10.0, speed=0.3)
    t = torch.tensor([[1e-4], [0.01], [0.3]], dtype=D64)
    lo = torch.cat([torch.full_like(t, -1.0), t], 1).requires_grad_(True)
    hi = torch.cat([torch.full_like(t, 1.0), t], 1).requires_grad_(True)
    for x in (lo, hi):
        assert torch.isfinite(kink(x)).all()
    (gl,) = torch.autograd.grad(kink(lo).sum(), lo, create_graph=True)
    (gh,) = torch.autograd.grad(kink(hi).sum(), hi, create_graph=True)
    assert torch.allclose(kink(lo), kink(hi), atol=1e-12, rtol=0)
    assert torch.allclose(gl, gh, atol=1e-9, rtol=0)
    hl = torch.autograd.grad(gl[:, 0].sum(), lo)[0][:, 0]
    hh = torch.autograd.grad(gh[:, 0].sum(), hi)[0][:, 0]
    assert torch.allclose(hl, hh, rtol=1e-9, atol=1e-6)
    # autograd stays finite at t0 itself (the σ = 0 branch)
    x0 = torch.tensor([[-1.0, 0.0], [0.2, 0.0]], dtype=D64, requires_grad=True)
    (g0,) = torch.autograd.grad(kink(x0).sum(), x0)
    assert torch.isfinite(g0).all()
    again = kinks_from_spec([kink.spec()])[0]
    assert torch.equal(again(hi), kink(hi))


def test_probe_reads_the_coefficients_written_in_the_residual():
    """R = u_t + c u_x - ν u_xx + k u: the probe must return ν, c, k; the amplitude is half
    the jump of u0' across the seam (1 - x²: u0' = ±2 -> A = 2)."""
    nu, c, k = 0.02, 0.7, -1.3
    prob = kinked(lambda x, u: kp.partial(u, x, 1) + c * kp.partial(u, x, 0) - nu * kp.partial(u, x, 0, 2) + k * u)
    (kink,), note = seam_kinks_for(prob, prob.conditions[1].value, [0], 1, 0.0)
    assert kink.amplitude == pytest.approx(2.0, abs=1e-12)
    assert kink.diffusion == pytest.approx(nu, rel=1e-12)
    assert kink.speed == pytest.approx(c, rel=1e-12)
    assert kink.decay == pytest.approx(k, rel=1e-12)
    assert "kink" in note
    # a nonlinear equation is linearised about u0 at the seam: Allen-Cahn's 5u³ - 5u at
    # u = -1 decays at 15u² - 5 = 10; Burgers' u u_x transports at u = u0(seam)
    ac = kinked(lambda x, u: kp.partial(u, x, 1) - 1e-4 * kp.partial(u, x, 0, 2) + 5 * u ** 3 - 5 * u,
                u0=lambda x: x[:, 0:1] ** 2 * torch.cos(pi * x[:, 0:1]))
    (kink,), _ = seam_kinks_for(ac, ac.conditions[1].value, [0], 1, 0.0)
    assert (kink.amplitude, kink.decay, kink.speed) == pytest.approx((2.0, 10.0, 0.0), abs=1e-10)
    assert kink.diffusion == pytest.approx(1e-4, rel=1e-12)
    bu = kinked(lambda x, u: kp.partial(u, x, 1) + u * kp.partial(u, x, 0) - 0.01 * kp.partial(u, x, 0, 2),
                u0=lambda x: 3 - x[:, 0:1] ** 2)
    (kink,), _ = seam_kinks_for(bu, bu.conditions[1].value, [0], 1, 0.0)
    assert kink.speed == pytest.approx(2.0, rel=1e-12)          # u0(±1) = 2


def test_no_kink_is_built_where_the_equation_does_not_smooth_it():
    transport = kinked(lambda x, u: kp.partial(u, x, 1) + kp.partial(u, x, 0))
    kinks, why = seam_kinks_for(transport, transport.conditions[1].value, [0], 1, 0.0)
    assert kinks == [] and "diffuse" in why
    assert hard_constraint_for(transport) is None           # the initial condition stays in the loss
    smooth = kinked(lambda x, u: kp.partial(u, x, 1) - 0.01 * kp.partial(u, x, 0, 2),
                    u0=lambda x: torch.cos(pi * x[:, 0:1]))
    factors, lifting, notes = hard_constraint_for(smooth)
    assert lifting.singular == [] and notes == ["exact: initial"]
    jump = kinked(lambda x, u: kp.partial(u, x, 1) - 0.01 * kp.partial(u, x, 0, 2), u0=lambda x: x[:, 0:1])
    kinks, why = seam_kinks_for(jump, jump.conditions[1].value, [0], 1, 0.0)
    assert kinks == [] and "jumps" in why


def test_lifting_with_a_seam_kink_is_exact_at_t0_and_periodic_after(tmp_path):
    eps = 0.01
    prob = kinked(lambda x, u: kp.partial(u, x, 1) - eps * kp.partial(u, x, 0, 2))
    factors, lifting, notes = hard_constraint_for(prob)
    assert len(lifting.singular) == 1 and "kink" in notes[1]
    model = HardConstraint(Embedded(kp.KAN([3, 4, 1], k=3, seed=0, dtype=D64), [-1, 0], [1, 0.5], {0: 1}),
                           factors, lifting)
    s = torch.linspace(-1, 1, 9, dtype=D64)[:, None]
    x0 = torch.cat([s, torch.zeros_like(s)], 1)
    assert torch.allclose(model(x0), 1 - s ** 2, atol=1e-14, rtol=0)      # u = u0 at t0, corner and all
    t = torch.tensor([[0.01], [0.3]], dtype=D64)
    lo = torch.cat([-torch.ones_like(t), t], 1).requires_grad_(True)
    hi = torch.cat([torch.ones_like(t), t], 1).requires_grad_(True)
    ul, gl, _ = model.forward_jet(lo, 2)
    uh, gh, _ = model.forward_jet(hi, 2)
    assert torch.allclose(ul, uh, atol=1e-12, rtol=0)
    assert torch.allclose(gl, gh, atol=1e-8, rtol=0)
    # save, load, attach: the closed form comes back from the file's JSON
    res = kp.solve(prob, model, grids=[3], steps=1, n_interior=30, n_boundary=8, progress=False)
    res.save(tmp_path / "k.h5")
    loaded = kp.load(tmp_path / "k.h5")
    loaded.model.attach(prob)
    xs = torch.tensor([[0.999, 0.02], [-0.5, 0.4]], dtype=D64)
    assert np.allclose(loaded.predict(xs), res.predict(xs), atol=1e-13, rtol=0)
    assert loaded.model.lifting.spec()["singular"] == [lifting.singular[0].spec()]


def test_auto_mode_solves_heat_with_a_kinked_initial_value():
    """Heat on the circle from u0 = 1 - x² (corner at x = ±1): against the Fourier series."""
    eps = 0.01
    prob = kinked(lambda x, u: kp.partial(u, x, 1) - eps * kp.partial(u, x, 0, 2))
    res = kp.solve(prob, grids=[5, 10], steps=25, max_time=None, seed=0, progress=False)
    assert "kink" in " ".join(res.options["auto"]["methods"]["hard_constraints"]["notes"])
    xs = np.linspace(-1, 1, 41)
    ts = np.array([0.0, 0.002, 0.01, 0.1, 0.5])
    X, T = np.meshgrid(xs, ts)
    exact = heat_exact(X.ravel(), T.ravel(), eps)
    pred = res.predict(np.stack([X.ravel(), T.ravel()], 1)).ravel()
    err = np.linalg.norm(pred - exact) / np.linalg.norm(exact)
    assert err < 1e-4, err


def test_periodic_condition_leaves_the_initial_time_to_the_initial_condition():
    """A grid puts points on t0, where a kinked u0 contradicts the derivative condition
    (its jump, 4 here, would be a loss no step can lower): the Periodic points skip t0."""
    dom = kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0))
    pts = kp.Periodic("x").sample(dom, 16, "grid")
    assert pts["x_lo"].shape[0] >= 10 and (pts["x_lo"][:, 1] > 0).all()
    prob = kinked(lambda x, u: kp.partial(u, x, 1) - 0.01 * kp.partial(u, x, 0, 2))
    res = kp.solve(prob, grids=[5], steps=5, max_time=None, sampler="grid", n_interior=200, n_boundary=40,
                   seed=0, progress=False)
    assert res.history["loss_periodic_x_1"][-1] < 1e-20
    assert res.history["loss"][-1] < 1e-3


# ------------------------------------------------------------------ corners inside the interval

def hat_problem(u0=lambda x: 1 - x[:, 0:1].abs(), eps=0.01):
    """Heat on [-1, 1] with u(±1) = 0 from a hat: exact Σ 8/((2m+1)π)² cos((2m+1)πx/2) e^{-ε((2m+1)π/2)² t}."""
    return kp.Problem(kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
                      lambda x, u: kp.partial(u, x, 1) - eps * kp.partial(u, x, 0, 2), [kp.Dirichlet(0.0), kp.Initial(u0)])


def hat_exact(x, t, eps=0.01):
    m = np.arange(0, 4000)[:, None]
    k = (2 * m + 1) * pi / 2
    return (8 / ((2 * m + 1) * pi) ** 2 * np.cos(k * x[None, :]) * np.exp(-eps * k ** 2 * t[None, :])).sum(0)


def test_corners_inside_the_interval_are_found_and_located():
    prob = hat_problem()
    (kink,), note = interior_kinks_for(prob, prob.conditions[1].value, 0, 1, 0.0)
    assert abs(kink.centre) < 1e-12 and kink.amplitude == pytest.approx(-1.0, abs=1e-9)
    assert kink.diffusion == pytest.approx(0.01, rel=1e-12) and "corner" in note
    tent = hat_problem(lambda x: torch.clamp(1 - 2 * (x[:, 0:1] - 0.1).abs(), min=0))
    kinks, _ = interior_kinks_for(tent, tent.conditions[1].value, 0, 1, 0.0)
    assert [round(k.centre, 12) for k in kinks] == [-0.4, 0.1, 0.6]
    assert [round(k.amplitude, 9) for k in kinks] == [1.0, -2.0, 1.0]
    for u0, why in ((lambda x: torch.sin(20 * x[:, 0:1]), "no corner"),
                    (lambda x: torch.sign(x[:, 0:1]), "jumps")):
        p = hat_problem(u0)
        kinks, note = interior_kinks_for(p, p.conditions[1].value, 0, 1, 0.0)
        assert kinks == [] and why in note


def test_interior_kink_keeps_dirichlet_exact_and_removes_the_corner():
    prob = hat_problem()
    factors, lifting, notes = hard_constraint_for(prob)
    (kink,) = lifting.singular
    t = torch.tensor([[0.0], [1e-3], [0.5]], dtype=D64)
    for face in (-1.0, 1.0):
        xb = torch.cat([torch.full_like(t, face), t], 1)
        assert float((kink(xb) - kink(xb * torch.tensor([1.0, 0.0], dtype=D64))).abs().max()) < 1e-15
    # u0 - E(·, t0) has no corner: equal one-sided slopes at the centre
    eta = 1e-6
    x = torch.tensor([[-eta, 0.0], [eta, 0.0]], dtype=D64, requires_grad=True)
    rest = prob.conditions[1].value(x) - kink(x)
    (g,) = torch.autograd.grad(rest.sum(), x)
    assert abs(float(g[0, 0] - g[1, 0])) < 1e-5
    again = kinks_from_spec([kink.spec()])[0]
    assert isinstance(again, InteriorKink) and torch.equal(again(x), kink(x))


def test_auto_mode_solves_heat_from_a_hat():
    """Heat from u0 = 1 - |x| with u(±1) = 0, against the exact series (an exact u = u0 + τ·N
    without the closed form keeps the corner for all t: 2.8e-2 after 60 s)."""
    res = kp.solve(hat_problem(), grids=[5, 10], steps=25, max_time=None, seed=0, progress=False)
    xs, ts = np.linspace(-1, 1, 41), np.array([0.0, 0.002, 0.01, 0.1, 1.0])
    X, T = np.meshgrid(xs, ts)
    exact = hat_exact(X.ravel(), T.ravel())
    pred = res.predict(np.stack([X.ravel(), T.ravel()], 1)).ravel()
    err = np.linalg.norm(pred - exact) / np.linalg.norm(exact)
    assert err < 1e-4, err


# ------------------------------------------------------------------ corners under the wave equation

def odd_extension(u0, x):
    """u0 on [-1, 1] extended oddly about both walls (period 4): d'Alembert's images."""
    s = np.mod(x + 1, 4)
    back = s > 2
    z = -1 + np.where(back, 4 - s, s)
    return np.where(back, -u0(z), u0(z))


def test_wave_kink_is_dalemberts_solution_with_the_walls_images():
    """For a tent whose ends sit on the walls, E is the whole solution: compare it with
    d'Alembert's formula on the odd extension, after the corners reflect (t up to 3)."""
    tent = lambda z: np.clip(1 - 2 * np.abs(z - 0.1), 0, None)
    prob = kp.Problem(kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 3.0)),
                      lambda x, u: kp.partial(u, x, 1, 2) - 4.0 * kp.partial(u, x, 0, 2),
                      [kp.Dirichlet(0.0), kp.Initial(lambda x: torch.clamp(1 - 2 * (x[:, 0:1] - 0.1).abs(), min=0)),
                       kp.Initial(0.0, derivative=1)])
    factors, lifting, notes = hard_constraint_for(prob)
    assert "travels" in notes[1] and len(lifting.singular) == 3
    assert {round(k.speed, 12) for k in lifting.singular} == {2.0}
    X, T = np.meshgrid(np.linspace(-1, 1, 57), np.linspace(0, 3, 31))
    x, t = X.ravel(), T.ravel()
    exact = 0.5 * (odd_extension(tent, x - 2 * t) + odd_extension(tent, x + 2 * t))
    pts = torch.tensor(np.stack([x, t], 1), dtype=D64)
    E = sum(k(pts) for k in lifting.singular).numpy().ravel()
    # the tent's three corners carry all of it (the line ℓ of each cancels in the sum)
    assert np.abs(E - exact).max() < 1e-12
    model = HardConstraint(kp.KAN([2, 3, 1], k=3, seed=0, dtype=D64), factors, lifting)
    walls = torch.tensor([[-1.0, 0.7], [1.0, 2.2]], dtype=D64)
    assert float(model(walls).abs().max()) < 1e-14                    # Dirichlet still exact


def test_auto_mode_solves_a_plucked_string():
    """u_tt = u_xx from a tent plus a sine, at rest, u(±1) = 0: against d'Alembert (without
    the closed form the frozen corners leave 0.999 after 60 s)."""
    u0 = lambda z: np.clip(1 - 2 * np.abs(z - 0.1), 0, None) + 0.3 * np.sin(pi * z)
    prob = kp.Problem(kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
                      lambda x, u: kp.partial(u, x, 1, 2) - kp.partial(u, x, 0, 2),
                      [kp.Dirichlet(0.0), kp.Initial(lambda x: torch.clamp(1 - 2 * (x[:, 0:1] - 0.1).abs(), min=0)
                                                     + 0.3 * torch.sin(pi * x[:, 0:1])),
                       kp.Initial(0.0, derivative=1)])
    res = kp.solve(prob, grids=[5, 10], steps=25, max_time=None, seed=0, progress=False)
    X, T = np.meshgrid(np.linspace(-1, 1, 41), np.linspace(0, 1, 11))
    x, t = X.ravel(), T.ravel()
    exact = 0.5 * (odd_extension(u0, x - t) + odd_extension(u0, x + t))
    err = np.linalg.norm(res.predict(np.stack([x, t], 1)).ravel() - exact) / np.linalg.norm(exact)
    assert err < 1e-5, err                  # measured 6.9e-7
