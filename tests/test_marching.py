"""Time-marching: the piecewise-in-time model (transforms.windows.TimeWindows) and the
driver (solver.marching, ``kp.solve(..., windows=n)``). Checked against hand
computations and exact solutions; no timings are asserted."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import kanpinn as kp
from kanpinn.errors import KanpinnError
from kanpinn.models import model_from_config
from kanpinn.solver.marching import window_edges, window_problem
from kanpinn.transforms.windows import SliceOf, TimeWindows

pi = math.pi
DT = torch.float64


class Known(nn.Module):
    """u = a + sin(πx) cos(2πt): a model whose values and derivatives are known by hand."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a), dtype=DT))

    width_in, width_out = 2, 1

    def forward(self, x):
        return self.a + torch.sin(pi * x[:, 0:1]) * torch.cos(2 * pi * x[:, 1:2])

    def forward_jet(self, x, order=2):
        s, c = torch.sin(pi * x[:, 0:1]), torch.cos(2 * pi * x[:, 1:2])
        u = self.a + s * c
        du = torch.stack([pi * torch.cos(pi * x[:, 0:1]) * c, -2 * pi * s * torch.sin(2 * pi * x[:, 1:2])], 2)
        d2u = torch.stack([-pi**2 * s * c, -4 * pi**2 * s * c], 2)
        return u, du, d2u


def heat():
    return kp.Problem(kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
                      lambda x, u: kp.partial(u, x, 1) - kp.partial(u, x, 0, order=2) / pi**2,
                      [kp.Dirichlet(0.0), kp.Initial(lambda x: torch.sin(pi * x[:, 0:1]))],
                      exact=lambda x: torch.exp(-x[:, 1:2]) * torch.sin(pi * x[:, 0:1]), name="heat")


def _small(problem, windows, **kw):
    opts = dict(grids=[3, 6], steps=15, n_interior=300, n_boundary=60, test_points=41, progress=False)
    opts.update(kw)
    return kp.solve(problem, kp.KAN([2, 5, 1], grid=3, k=3, seed=0), windows=windows, **opts)


def _auto_small(problem, windows, **kw):
    """Auto mode (exact constraints, embeddings) on a tiny schedule."""
    opts = dict(grids=[3], steps=4, n_interior=200, n_boundary=40, test_points=21, progress=False, max_time=60)
    opts.update(kw)
    return kp.solve(problem, windows=windows, **opts)


def test_routing_matches_a_hand_computation():
    m = TimeWindows([Known(0.0), Known(10.0), Known(20.0)], edges=[0.0, 0.3, 0.6, 1.0], t_col=1)
    t = torch.tensor([-0.5, 0.0, 0.299, 0.3, 0.45, 0.6, 0.99, 1.0, 1.5], dtype=DT)
    x = torch.stack([torch.full_like(t, 0.25), t], 1)
    # window k covers [e_k, e_k+1); outside the edges: the first and the last window
    want_window = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert m.window_of(t).tolist() == want_window
    base = torch.sin(pi * x[:, 0:1]) * torch.cos(2 * pi * x[:, 1:2])
    offset = torch.tensor([10.0 * w for w in want_window], dtype=DT)[:, None]
    assert torch.allclose(m(x), base + offset, atol=1e-15)
    u, du, d2u = m.forward_jet(x, 2)
    ref = Known(0.0).forward_jet(x, 2)
    assert torch.allclose(u, ref[0] + offset) and torch.allclose(du, ref[1]) and torch.allclose(d2u, ref[2])
    # derivatives by autograd through the routing agree with the jets
    xr = x.clone().requires_grad_(True)
    g = torch.autograd.grad(m(xr).sum(), xr)[0]
    assert torch.allclose(g, du[:, 0, :])
    assert "windows=3" in repr(m) and "t_col=1" in repr(m)


def test_slice_hands_over_value_and_time_derivative():
    prev = Known(1.0)
    x = torch.tensor([[0.2, 0.4], [0.7, 0.4]], dtype=DT)        # t column already set to t0 = 0.4
    s, t = torch.sin(pi * x[:, 0:1]), x[:, 1:2]
    assert torch.allclose(SliceOf(prev, 1, 0)(x), 1.0 + s * torch.cos(2 * pi * t))
    assert torch.allclose(SliceOf(prev, 1, 1)(x), -2 * pi * s * torch.sin(2 * pi * t))
    # differentiable in x, as the exact-constraint lifting needs (d/dx of u_t)
    xr = x.clone().requires_grad_(True)
    d = torch.autograd.grad(SliceOf(prev, 1, 1)(xr).sum(), xr)[0][:, 0:1]
    assert torch.allclose(d, -2 * pi**2 * torch.cos(pi * x[:, 0:1]) * torch.sin(2 * pi * t))


class Counting(Known):
    """Known, counting its evaluations (a cache hit must not evaluate the model)."""

    calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def _derivatives(fn, x, orders=3):
    """fn(x) and its x-derivatives by autograd: gradient, d/dx of u_x (Hessian row),
    d/dx of that (third derivative)."""
    xr = x.clone().requires_grad_(True)
    u = fn(xr)
    g = torch.autograd.grad(u.sum(), xr, create_graph=True)[0]
    h = torch.autograd.grad(g[:, 0].sum(), xr, create_graph=True)[0]
    out = [u, g, h]
    if orders >= 3:
        out.append(torch.autograd.grad(h[:, 0].sum(), xr)[0])
    return out


def test_cached_slice_gives_the_hand_derivatives_and_misses_on_new_points_or_parameters():
    prev = Counting(1.0)
    sl = SliceOf(prev, 1, 0)
    x = torch.tensor([[0.2, 0.4], [0.7, 0.4], [-0.3, 0.4]], dtype=DT)
    X, T = x[:, 0:1], x[:, 1:2]
    c, s = torch.cos(2 * pi * T), torch.sin(2 * pi * T)
    want = [1.0 + torch.sin(pi * X) * c,
            torch.cat([pi * torch.cos(pi * X) * c, -2 * pi * torch.sin(pi * X) * s], 1),
            torch.cat([-pi**2 * torch.sin(pi * X) * c, -2 * pi**2 * torch.cos(pi * X) * s], 1),
            torch.cat([-pi**3 * torch.cos(pi * X) * c, 2 * pi**3 * torch.sin(pi * X) * s], 1)]
    for _ in range(2):               # the first call fills the cache, the second reads it
        got = _derivatives(sl, x)
        for a, b in zip(got, want):
            assert torch.allclose(a, b, atol=1e-12)
    calls = prev.calls
    assert torch.allclose(sl(x.clone()), want[0]) and prev.calls == calls          # a hit: no evaluation
    # new points (a resample) and a changed parameter both miss, and give the new truth
    y = x.flip(0).clone()
    assert torch.allclose(sl(y), want[0].flip(0)) and prev.calls == calls + 1
    with torch.no_grad():
        prev.a.add_(2.0)
    assert torch.allclose(sl(x), want[0] + 2.0)
    # a copy (deepcopy of a window's model) starts empty; cache=0 is the live slice
    import copy
    assert copy.deepcopy(sl)._sets == [] and sl._sets
    assert torch.allclose(SliceOf(prev, 1, 0, cache=0)(x), want[0] + 2.0)
    with pytest.raises(KanpinnError, match="cache"):
        SliceOf(prev, 1, 0, cache=-1)


def test_cached_slice_of_a_kan_equals_the_live_slice_up_to_third_derivatives():
    m = kp.KAN([2, 4, 2], grid=5, k=3, seed=0).double()
    x = torch.rand(40, 2, dtype=DT, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x[:, 1] = 0.3
    for derivative in (0, 1):
        for component in (None, 1):
            live = _derivatives(SliceOf(m, 1, derivative, component, cache=0), x)
            cached = SliceOf(m, 1, derivative, component)
            for _ in range(2):
                for a, b in zip(live, _derivatives(cached, x)):
                    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_a_later_window_reads_the_earlier_ones_from_the_cache():
    # the lifting of window 3 evaluates window 2, whose lifting evaluates window 1: once
    # per point set, then from the cache (the fingerprint covers the whole chain)
    res = _auto_small(heat(), 3, steps=3)
    w = res.model.windows
    sl = w[2].lifting.u0
    assert isinstance(sl, SliceOf) and sl._sets
    x = torch.rand(30, 2, dtype=DT, generator=torch.Generator().manual_seed(1))
    x[:, 1] = res.model.edges[2]
    live = SliceOf(w[1], 1, 0, cache=0)
    for a, b in zip(_derivatives(live, x, 2), _derivatives(sl, x, 2)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-13)
    key = sl.fingerprint()
    with torch.no_grad():
        next(w[0].parameters()).mul_(1.0)   # window 1 touched: window 3's slice of window 2 misses
    assert sl.fingerprint() != key


def test_window_problem_takes_its_initial_conditions_from_the_previous_window():
    wave = kp.Problem(kp.SpaceTime(kp.Interval(0.0, 1.0), t=(0.0, 1.0)),
                      lambda x, u: kp.partial(u, x, 1, order=2) - kp.partial(u, x, 0, order=2),
                      [kp.Dirichlet(0.0), kp.Initial(0.0), kp.Initial(0.0, derivative=1)])
    wp = window_problem(wave, 0.5, 1.0, prev=Known(0.0))
    assert tuple(wp.domain.lo) == (0.0, 0.5) and tuple(wp.domain.hi) == (1.0, 1.0)
    ics = [c for c in wp.conditions if isinstance(c, kp.Initial)]
    assert [c.derivative for c in ics] == [0, 1]
    x = torch.tensor([[0.3, 0.5]], dtype=DT)
    assert float(ics[0].value(x).detach()) == pytest.approx(math.sin(0.3 * pi) * math.cos(pi))
    assert float(ics[1].value(x).detach()) == pytest.approx(-2 * pi * math.sin(0.3 * pi) * math.sin(pi), abs=1e-12)


def test_heat_in_two_windows_reaches_the_exact_solution_and_records_each_window():
    r = _small(heat(), 2)
    assert isinstance(r.model, TimeWindows) and r.model.edges == [0.0, 0.5, 1.0]
    # 30 LM steps a window on 300 points: ~1e-4 (1.01e-4 after an LM change of
    # rounding size, so the bound leaves room for such changes)
    assert r.metrics["l2_relative"] < 3e-4
    assert [w["t"] for w in r.metrics["windows"]] == [[0.0, 0.5], [0.5, 1.0]]
    # the histories follow each other: steps and time keep growing, a window column
    h = r.history
    assert set(np.unique(h["window"])) == {1.0, 2.0}
    assert np.all(np.diff(h["step"]) >= 0) and np.all(np.diff(h["time"]) >= 0)
    assert r.metrics["steps"] == int(h["step"][-1])
    # the second window starts where the first ends (a given KAN: the initial condition
    # is in the loss, so up to its misfit)
    x = np.array([[0.3, 0.5 - 1e-12], [0.3, 0.5]])
    u = r.predict(x)
    assert abs(u[0, 0] - u[1, 0]) < 1e-4


def test_save_and_load_give_identical_predictions(tmp_path):
    r = _auto_small(heat(), [0.0, 0.4, 1.0])
    assert type(r.model.windows[1]).__name__ == "HardConstraint"
    path = r.save(tmp_path / "w.h5")
    again = kp.load(path)
    assert isinstance(again.model, TimeWindows) and again.model.edges == [0.0, 0.4, 1.0]
    x = np.stack([np.linspace(-1, 1, 9), np.linspace(0, 1, 9)], 1)
    # the first window's initial value is the problem's own function: a file cannot hold it
    with pytest.raises(KanpinnError, match="attach"):
        again.predict(x)
    again.model.attach(heat())
    assert np.array_equal(again.predict(x), r.predict(x))
    assert again.options["windows"] == [0.0, 0.4, 1.0]


def test_constant_initial_values_need_no_attach(tmp_path):
    p = kp.Problem(kp.SpaceTime(kp.Interval(0.0, 1.0), t=(0.0, 1.0)),
                   lambda x, u: kp.partial(u, x, 1) - kp.partial(u, x, 0, order=2) - 1.0,
                   [kp.Dirichlet(0.0), kp.Initial(0.0)])
    r = _auto_small(p, 2)
    again = kp.load(r.save(tmp_path / "c.h5"))
    x = np.array([[0.5, 0.1], [0.5, 0.9]])
    assert np.array_equal(again.predict(x), r.predict(x))
    # the second window starts exactly where the first ends (exact initial constraint)
    u = r.predict(np.array([[0.3, 0.5 - 1e-13], [0.3, 0.5]]))
    assert abs(u[0, 0] - u[1, 0]) < 1e-9


def test_config_round_trip_and_bad_configs():
    m = TimeWindows([kp.KAN([2, 3, 1], seed=0, dtype=DT), kp.KAN([2, 3, 1], seed=1, dtype=DT)], edges=[0, 1, 2],
                    t_col=1)
    again = model_from_config(m.config(), dtype=DT)
    again.load_state_dict(m.state_dict())
    x = torch.rand(20, 2, dtype=DT) * 2
    assert torch.equal(again(x), m(x))
    bad = m.config()
    bad["edges"] = [0, 1, 1]
    with pytest.raises(KanpinnError, match="increasing"):
        model_from_config(bad)
    bad["edges"] = [0, 1]
    with pytest.raises(KanpinnError, match="edges"):
        model_from_config(bad)


def test_bad_input_is_refused_clearly():
    poisson = kp.Problem(kp.Interval(0, 1), lambda x, u: kp.partial(u, x, 0, 2) + 1.0, [kp.Dirichlet(0.0)])
    with pytest.raises(KanpinnError, match="SpaceTime"):
        kp.solve(poisson, kp.KAN([1, 3, 1], seed=0), windows=2, progress=False)
    for bad in (0, -1, 2.5, [0.0, 0.5, 0.5, 1.0], [0.0], "2"):
        with pytest.raises(KanpinnError, match="windows"):
            kp.solve(heat(), kp.KAN([2, 3, 1], seed=0), windows=bad, progress=False)
    with pytest.raises(KanpinnError, match="from t0"):
        window_edges(heat(), [0.0, 0.5, 2.0])
    with pytest.raises(KanpinnError, match="increasing"):
        TimeWindows([Known(0), Known(1)], edges=[0.0, 0.7, 0.5], t_col=1)
    with pytest.raises(KanpinnError, match="edges"):
        TimeWindows([Known(0), Known(1)], edges=[0.0, 1.0], t_col=1)
    data = kp.Problem(kp.SpaceTime(kp.Interval(0, 1), t=(0, 1)), lambda x, u: kp.partial(u, x, 1),
                      [kp.Initial(0.0), kp.Data(np.array([[0.5, 0.5]]), np.array([[0.0]]))])
    with pytest.raises(KanpinnError, match="Data"):
        kp.solve(data, kp.KAN([2, 3, 1], seed=0), windows=2, progress=False)


def test_symbolify_refuses_a_piecewise_model():
    m = TimeWindows([kp.KAN([2, 3, 1], seed=0), kp.KAN([2, 3, 1], seed=1)], edges=[0, 1, 2], t_col=1)
    with pytest.raises(KanpinnError):
        kp.symbolify(m)


def test_auto_mode_marches_only_nonlinear_reactions_first_order_in_time():
    from kanpinn.solver.auto import plan
    dom = kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0))
    ic = kp.Initial(lambda x: x[:, 0:1] ** 2)
    reaction = kp.Problem(dom, lambda x, u: kp.partial(u, x, 1) - 1e-3 * kp.partial(u, x, 0, order=2) + u**3 - u,
                          [kp.Periodic("x"), ic])
    transport = kp.Problem(dom, lambda x, u: kp.partial(u, x, 1) + u * kp.partial(u, x, 0), [kp.Periodic("x"), ic])
    wave_like = kp.Problem(dom, lambda x, u: kp.partial(u, x, 1, order=2) - kp.partial(u, x, 0, order=2) + u**3,
                           [kp.Dirichlet(0.0), ic, kp.Initial(0.0, derivative=1)])
    _, opts, choices = plan(reaction, {})
    assert opts["windows"] > 1 and "time_marching" in choices["methods"]
    for p in (heat(), transport, wave_like):
        _, opts, choices = plan(p, {})
        assert "windows" not in opts and "time_marching" not in choices["methods"]
    _, opts, choices = plan(reaction, {"max_time": 20.0})          # too short for its windows
    assert "windows" not in opts and any("time-marching" in n for n in choices["notes"])
    # as many windows as max_time gives 30 s each, between 2 and 5
    for max_time, n in ((60.0, 2), (100.0, 3), (180.0, 5), (1000.0, 5)):
        assert plan(reaction, {"max_time": max_time})[1]["windows"] == n
    _, opts, choices = plan(reaction, {"windows": 1})
    assert opts["windows"] == 1 and choices["kept"]["windows"] == "set by the user"


def test_a_max_time_too_short_for_the_windows_still_gives_a_whole_model_and_a_note():
    r = _small(heat(), 3, max_time=0.3)
    assert isinstance(r.model, TimeWindows) and len(r.model.windows) == 3
    assert np.all(np.isfinite(r.predict(np.array([[0.1, 0.1], [0.1, 0.5], [0.1, 0.9]]))))
    assert any("max_time" in n for n in r.metrics["notes"])


def test_each_window_share_is_corrected_for_what_the_earlier_windows_overran():
    from types import SimpleNamespace

    from kanpinn.solver.marching import _overrun
    ran = [SimpleNamespace(metrics={"wall_time": 10.0}), SimpleNamespace(metrics={"wall_time": 30.0})]
    assert _overrun([], 5.0) == 1.0                       # nothing to go by yet
    assert _overrun(ran, 48.0) == pytest.approx(1.2)      # 40 s counted, 48 s on the clock
    assert _overrun(ran, 20.0) == 1.0 and _overrun(ran, 400.0) == 3.0   # bounded


def heat_periodic():
    """Heat on a periodic interval: auto mode embeds x (cos/sin, so each window's box is mapped
    onto the grid range) and makes u0 = sin(πx) exact; u = e^-t sin(πx)."""
    return kp.Problem(kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
                      lambda x, u: kp.partial(u, x, 1) - kp.partial(u, x, 0, order=2) / pi**2,
                      [kp.Periodic("x"), kp.Initial(lambda x: torch.sin(pi * x[:, 0:1]))],
                      exact=lambda x: torch.exp(-x[:, 1:2]) * torch.sin(pi * x[:, 0:1]), name="heat_periodic")


def _warm_march(problem, windows, **kw):
    """Auto mode in each window with warm starts (an option of the marching driver)."""
    from kanpinn.solver.marching import solve_windows
    opts = dict(grids=[3], steps=4, n_interior=200, n_boundary=40, test_points=21, progress=False, max_time=60)
    opts.update(kw)
    return solve_windows(problem, None, opts, window_edges(problem, windows), {}, warm_start=True)


def _two_windows_then_warm(problem, edges):
    """Auto mode on the first two windows (tiny budget), then the warm plan of the third."""
    from kanpinn.solver.marching import window_problem
    from kanpinn.solver.warm import warm_plan
    opts = dict(grids=[3, 6], steps=3, n_interior=200, n_boundary=40, test_points=21, progress=False,
                max_time=60, windows=1)
    prev = None
    for k in range(2):
        prev = kp.solve(window_problem(problem, edges[k], edges[k + 1], prev), **opts).model
    wp = window_problem(problem, edges[2], edges[3], prev)
    return prev, wp, warm_plan(wp, opts, prev)


def test_a_warm_window_starts_from_the_previous_network_on_the_same_normalised_coordinates():
    from kanpinn.solver.warm import network
    edges = [0.0, 0.3, 0.6, 0.9]
    prev, wp, planned = _two_windows_then_warm(heat_periodic(), edges)
    model, opts, choices = planned
    model = model.to(DT)
    # the same network (weights, grid and knots), on the grid the previous window ended on
    src, dst = network(prev)[0], network(model)[0]
    assert src is not dst and dst.grid == src.grid == 6 and opts["grids"] == [6]
    z = torch.rand(50, 5, dtype=DT) * 2 - 1
    assert torch.equal(src(z), dst(z))
    # u = u(a) + τ·N with τ normalised per window: the warm window's correction at
    # (x, a + sτ) is the previous window's at (x, a - τ + sτ), for every s
    s = torch.rand(40, dtype=DT) * 0.9 + 0.05
    x = torch.rand(40, dtype=DT) * 1.8 - 0.9
    a, tau = edges[2], edges[2] - edges[1]
    at = lambda m, t: m(torch.stack([x, t], 1)).detach()
    new = (at(model, a + s * tau) - at(prev, torch.full_like(s, a))) / s[:, None]
    old = (at(prev, a - tau + s * tau) - at(prev.lifting.u0.model, torch.full_like(s, a - tau))) / s[:, None]
    # the window boxes are stored in the float32 of the planned model: rounding of 1e-7
    assert torch.allclose(new, old, rtol=1e-6, atol=1e-6)
    assert choices["methods"]["warm_start"]["grid"] == 6


def test_a_marched_linear_problem_stays_accurate_with_warm_starts():
    # periodic heat with an exact initial condition in every window, so windows 2 and 3
    # start warm; the exact solution e^-t sin(πx) is the truth
    r = _warm_march(heat_periodic(), 3, grids=[4, 8], steps=12, n_interior=300, n_boundary=60, test_points=31,
                    seed=0)
    per = r.options["auto"]["windows"]
    assert "warm_start" not in per[0]["methods"]
    assert all("warm_start" in w["methods"] for w in per[1:])
    assert [w["grid"] for w in r.metrics["windows"]] == [8, 8, 8]
    assert r.metrics["l2_relative"] < 1e-4
    for w in r.metrics["windows"]:
        assert w["l2_relative"] < 1e-4


def test_models_that_cannot_start_warm_start_cold_without_error():
    from kanpinn.solver.marching import solve_windows, window_edges
    # the network sees t itself (no input map of the window's box): cold, with a note
    r = _warm_march(heat(), 2)
    assert any(n.startswith("window 2: cold start") and "unnormalised" in n for n in r.metrics["notes"])
    # off by default: auto mode's windows start cold, and say nothing about it
    r = _auto_small(heat_periodic(), 2)
    assert "warm_start" not in r.options["auto"]["windows"][1]["methods"]
    assert not any("cold start" in n for n in r.metrics.get("notes", ()))
    # a given model (here an MLP and a KAN with a multiplication node) trains from its own
    # start in every window; asking for a warm start with one is refused
    for model in (kp.MLP([2, 8, 1], seed=0), kp.KAN([2, [2, 1], 1], grid=3, k=3, seed=0)):
        r = kp.solve(heat(), model, windows=2, grids=[3], steps=3, n_interior=100, n_boundary=20,
                     test_points=11, progress=False, starts=1)
        assert len(r.model.windows) == 2 and math.isfinite(r.metrics["l2_relative"])
        assert not any("warm" in n for n in r.metrics.get("notes", ()))
    with pytest.raises(KanpinnError, match="warm start"):
        solve_windows(heat(), kp.MLP([2, 8, 1], seed=0), {"progress": False}, window_edges(heat(), 2), {},
                      warm_start=True)
    # a first window whose initial condition stays in the loss (u0' not periodic, and no
    # diffusion to carry the kink in closed form: transforms/kinks.py) draws u itself, the
    # next one the correction to u(a): that window starts cold, with a note
    soft = kp.Problem(kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
                      lambda x, u: kp.partial(u, x, 1) + u**3 - u,
                      [kp.Periodic("x"), kp.Initial(lambda x: x[:, 0:1] ** 2)])
    r = _warm_march(soft, 3)
    notes = r.metrics["notes"]
    assert any(n.startswith("window 2: cold start") for n in notes)
    assert not any(n.startswith("window 3: cold start") for n in notes)
    assert "warm_start" in r.options["auto"]["windows"][2]["methods"]
