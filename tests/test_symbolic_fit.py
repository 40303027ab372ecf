"""Edge-level symbolic machinery: library, fitter, cleaning (fast, no KAN needed)."""

import math
import resource
import warnings

import numpy as np
import pytest
import sympy
import torch

from kanpinn.symbolic.clean import (clean, drop_small_terms, expr_to_torch, relative_l2,
                                    snap_constants, snap_number)
from kanpinn.symbolic.fit import chunk_rows, fit_edge, fit_edges
from kanpinn.symbolic.library import Library, SymbolicFunction, get_library

X = np.linspace(-1.0, 1.0, 1000)


def _close(params, truth, tol=1e-6):
    return np.allclose(params, truth, rtol=0, atol=tol)


# -- fitter: recovery ---------------------------------------------------------------------
def test_sin_recovered_with_exact_parameters():
    fit = fit_edge(X, 2 * np.sin(np.pi * X + 0.3) - 1)
    best = fit.best
    assert best.name == "sin"
    assert fit.recovered
    assert _close(best.params, (np.pi, 0.3, 2.0, -1.0)), best.params
    assert best.r2 > 1 - 1e-12
    # the fitted edge evaluates like the data
    assert torch.allclose(best(torch.tensor(X)), torch.tensor(2 * np.sin(np.pi * X + 0.3) - 1),
                          atol=1e-9)


def test_exp_and_units_of_x():
    x = np.linspace(0.0, 3.0, 700)
    best = fit_edge(x, np.exp(-2 * x)).best
    assert best.name == "exp"
    assert _close(best.params, (-2.0, 0.0, 1.0, 0.0)), best.params


def test_x2_versus_x4():
    f2 = fit_edge(X, (X - 0.3) ** 2)
    f4 = fit_edge(X, 0.5 * X**4 + 1)
    assert f2.best.name == "x^2"
    assert _close(f2.best.params, (1.0, -0.3, 1.0, 0.0))
    assert f4.best.name == "x^4"
    assert _close(f4.best.params, (1.0, 0.0, 0.5, 1.0))
    assert f4["x^2"].r2 < 0.99  # x^2 is clearly worse on x^4 data


def test_gaussian():
    best = fit_edge(X, 3 * np.exp(-((X - 0.2) ** 2) / 0.5)).best
    assert best.name == "gaussian"
    a, b, c, d = best.params
    assert abs(a - math.sqrt(2)) < 1e-6 and abs(b + 0.2 * math.sqrt(2)) < 1e-6
    assert abs(c - 3) < 1e-6 and abs(d) < 1e-6


def test_tie_break_prefers_cos_over_shifted_sin():
    best = fit_edge(X, np.cos(2 * X)).best
    assert best.name == "cos" and abs(best.b) < 1e-8


def test_log_needs_shift_and_stays_in_domain():
    x = np.linspace(0.1, 3.0, 500)
    best = fit_edge(x, 1.5 * np.log(2 * x + 0.5) - 0.2).best
    assert best.name == "log"
    # canonical form: a = 1, the scale of the argument is folded into d
    assert _close(best.params, (1.0, 0.25, 1.5, -0.2 + 1.5 * math.log(2)))


def test_outside_library_is_flagged():
    x = np.linspace(0.05, 1.0, 800)
    fit = fit_edge(x, x * np.sin(1 / x))
    assert not fit.recovered
    assert fit.best_r2 < 0.999
    rng = np.random.default_rng(3)
    from scipy.interpolate import make_interp_spline
    knots = np.linspace(-1, 1, 12)
    spline = make_interp_spline(knots, rng.normal(size=12), k=3)
    assert not fit_edge(X, spline(X)).recovered


def test_noisy_data_still_recovered():
    rng = np.random.default_rng(0)
    fit = fit_edge(X, np.tanh(1.7 * X - 0.4) + rng.normal(0, 1e-4, X.size))
    assert fit.best.name == "tanh" and fit.recovered
    assert abs(fit.best.a - 1.7) < 1e-2


def test_batch_shared_and_distinct_inputs():
    rng = np.random.default_rng(1)
    Y = np.stack([np.sin(3 * X), X**3, np.exp(X)])
    fits = fit_edges(X, Y)
    assert [f.best.name for f in fits] == ["sin", "x^3", "exp"]
    Xd = np.sort(rng.uniform(-2, 2, (3, 400)), axis=1)
    Xd[2] = Xd[0]  # two rows share their inputs
    Yd = np.stack([np.sin(3 * Xd[0]), Xd[1] ** 3, np.exp(Xd[2])])
    fits = fit_edges(Xd, Yd)
    assert [f.best.name for f in fits] == ["sin", "x^3", "exp"]


def test_constant_edge_is_zero_function():
    fit = fit_edge(X, np.full_like(X, 0.7))
    assert fit.best.name == "0" and abs(fit.best.d - 0.7) < 1e-12


# -- fitter: PDE-aware ranking, invalid candidates -------------------------------------
def test_required_derivative_order_rejects_crude_linear_fit():
    y = 0.8 * X + 2e-3 * np.sin(3 * X) ** 2  # almost linear
    plain = fit_edge(X, y)
    assert plain.best.name == "x"
    pde = fit_edge(X, y, required_derivative_order=2)
    assert pde.best.name not in ("x", "abs", "0")
    lin = pde["x"]
    assert lin.degenerate and not lin.admissible
    # ranking: all admissible candidates come first
    flags = [c.admissible for c in pde.candidates]
    assert flags == sorted(flags, reverse=True)
    # an exactly linear edge stays admissible
    exact = fit_edge(X, 2 * X + 1, required_derivative_order=2)
    assert exact.best.name == "x" and exact.best.admissible


def test_no_nan_and_no_warnings_for_invalid_candidates():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_edge(X, np.sin(4 * X), library=["log", "sqrt", "1/x", "tan", "sin", "x"])
    for c in fit.candidates:
        assert not math.isnan(c.r2)
        assert c.r2 == -math.inf or -1e-9 <= c.r2 <= 1 + 1e-12
    with pytest.raises(ValueError):
        fit_edge(X, np.where(X > 0, np.nan, 1.0))


# -- memory bound -------------------------------------------------------------------------
def test_chunk_rows():
    assert chunk_rows(1000, 2**20) == 1048
    assert chunk_rows(10**9, 2**20) == 1  # never zero
    assert chunk_rows(1000, 2**20, factor=4) == 262


def test_large_n_is_chunked():
    seen = []

    def recording_sin(u):
        seen.append(u.numel())
        return torch.sin(u)

    lib = Library.from_spec(["x", "x^2"]).add("rsin", recording_sin, sympy.sin, 2,
                                              parity=(-1.0, 0.0), period=(math.pi, -1.0))
    n = 200_000
    x = np.linspace(-1, 1, n)
    budget = 2**16
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fit = fit_edge(x, np.sin(2 * x + 0.1), library=lib, max_elements=budget)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024
    assert fit.best.name == "rsin" and _close(fit.best.params, (2, 0.1, 1, 0))
    assert max(seen) <= budget  # no working tensor above the budget
    assert grown_mb < 200


# -- library ------------------------------------------------------------------------------
def test_library_spec_and_extension():
    lib = get_library(["sin", "x^2", "gauss"])
    assert lib.names == ["sin", "x^2", "gaussian"]
    with pytest.raises(KeyError):
        get_library(["no_such_function"])
    assert "arcsin" not in Library.default() and "arcsin" in get_library(["arcsin"])
    lib = Library.default().add("cube_root", lambda u: torch.sign(u) * u.abs() ** (1 / 3),
                                lambda s: sympy.sign(s) * sympy.Abs(s) ** sympy.Rational(1, 3),
                                4)
    assert "cube_root" in lib
    sq = SymbolicFunction("sq", lambda u: u * u, lambda s: s**2, 2)
    assert sq.vanishing_order == 3  # computed by sympy
    assert Library.default()["x"].vanishing_order == 2
    assert Library.default()["sin"].vanishing_order is None
    s = sympy.Symbol("s")
    e = Library.default()["sin"].expr(s, 2.0, 0.5, 3.0, -1.0)
    assert abs(float(e.subs(s, 0.3)) - (3 * math.sin(1.1) - 1)) < 1e-12


# -- cleaning and evaluation -----------------------------------------------------------
x_, y_ = sympy.symbols("x y")
PTS = np.random.default_rng(0).uniform(-1, 1, (200, 2))


def test_clean_snaps_and_drops():
    assert clean(3.14159265 * x_, (x_, y_), PTS) == sympy.pi * x_
    assert clean(x_ + 0.49999999, (x_, y_), PTS) == x_ + sympy.Rational(1, 2)
    assert clean(x_**2 + 1e-12 * x_, (x_, y_), PTS) == x_**2
    e = 1.00000001 * sympy.sin(3.14159265 * x_ + 1e-13) * sympy.sin(3.1415926 * y_)
    assert clean(e, (x_, y_), PTS) == sympy.sin(sympy.pi * x_) * sympy.sin(sympy.pi * y_)


def test_clean_keeps_raw_when_outside_tolerance():
    e = 3.1416 * x_
    assert clean(e, (x_, y_), PTS, tol=1e-9) == e
    assert snap_number(3.1416, 1e-9) is None
    assert snap_number(0.75) == sympy.Rational(3, 4)
    assert snap_number(-1.5707963267) == -sympy.pi / 2
    assert snap_constants(0.2500000001 * x_) == x_ / 4
    assert drop_small_terms(x_ + 1e-9 * y_, (x_, y_), PTS, 1e-6) == x_


def test_expr_to_torch_and_relative_l2():
    f = expr_to_torch(sympy.sin(sympy.pi * x_) * sympy.exp(y_) + sympy.sqrt(2), (x_, y_))
    Xt = torch.tensor(PTS, requires_grad=True)
    v = f(Xt)
    assert v.shape == (200, 1)
    ref = torch.sin(torch.pi * Xt[:, 0]) * torch.exp(Xt[:, 1]) + math.sqrt(2)
    assert torch.allclose(v[:, 0], ref)
    v.sum().backward()
    assert torch.isfinite(Xt.grad).all()
    assert f(Xt[:, 0], Xt[:, 1]).shape == (200,)
    assert torch.equal(expr_to_torch(sympy.Integer(3), (x_,))(torch.zeros(4)),
                       torch.full((4,), 3.0, dtype=torch.float64))
    g = expr_to_torch(sympy.Max(x_, 0) + sympy.log(2) + sympy.Abs(y_), (x_, y_))
    assert torch.allclose(g(torch.tensor([-1.0, 2.0]), torch.tensor([-3.0, 0.0])),
                          torch.tensor([3 + math.log(2), 2 + math.log(2)]))
    xs = np.linspace(0, 1, 50)
    assert relative_l2(sympy.sin(x_), (x_,), xs, np.sin(xs)) < 1e-15
    assert abs(relative_l2(sympy.sin(x_), (x_,), xs, 2 * np.sin(xs)) - 0.5) < 1e-12


# -- symbolify on hand-made KANs (no training) ---------------------------------------
def _set_edges(layer, funcs, lo=-1.0, hi=1.0):
    """Give edge i->o of a KAN layer the spline interpolant of funcs[i][o] (None: 0),
    using only edge_values' linearity in the coefficients."""
    with torch.no_grad():
        layer.scale_base.zero_()
        layer.scale_sp.fill_(1.0)
        t = torch.linspace(lo, hi, 801, dtype=layer.coef.dtype)
        X = t[:, None].expand(-1, layer.in_dim).contiguous()
        nb = layer.coef.shape[1]
        cols = []
        for b in range(nb):
            layer.coef.zero_()
            layer.coef[:, b, :] = 1.0
            cols.append(layer.edge_values(X)[:, :, 0])  # (N, in): B_ib(x)
        A = torch.stack(cols, -1)  # (N, in, nb)
        layer.coef.zero_()
        for i in range(layer.in_dim):
            for o in range(layer.out_dim):
                f = funcs[i][o]
                if f is None:
                    continue
                sol = torch.linalg.lstsq(A[:, i, :], f(t)[:, None]).solution[:, 0]
                layer.coef[i, :, o] = sol


def _kan(widths, grid=20):
    from kanpinn.kan import KAN
    return KAN(widths, grid=grid, k=3, seed=0, dtype=torch.float64)


def test_symbolify_single_layer():
    from kanpinn.symbolic.symbolify import symbolify_report
    m = _kan([2, 1])
    _set_edges(m.layers[0], [[lambda x: torch.sin(math.pi * x)], [lambda y: y**2 - 0.5]])
    rep = symbolify_report(m, n_samples=512)
    assert sympy.simplify(rep.expr - (sympy.sin(sympy.pi * x_) + y_**2 - sympy.Rational(1, 2))) == 0
    assert {e.name for e in rep.edges} == {"sin", "x^2"}
    assert rep.errors["raw_vs_model"] < 1e-4


def test_symbolify_multiplication_node():
    from kanpinn.symbolic.symbolify import symbolify
    m = _kan([2, [0, 1], 1])
    s = lambda v: torch.sin(math.pi * v)  # noqa: E731
    _set_edges(m.layers[0], [[s, None], [None, s]])
    _set_edges(m.layers[1], [[lambda v: 2 * v]])
    e = symbolify(m, n_samples=512, variables=["x", "y"])
    assert sympy.simplify(e - 2 * sympy.sin(sympy.pi * x_) * sympy.sin(sympy.pi * y_)) == 0


def test_symbolify_refines_on_the_pde():
    import kanpinn as kp
    from kanpinn.result import Result
    from kanpinn.symbolic.symbolify import symbolify_report

    def residual(x, u):
        return kp.laplacian(u, x) + math.pi**2 * torch.sin(math.pi * x)

    problem = kp.Problem(kp.Interval(-1.0, 1.0), residual, [kp.Dirichlet(0.0)],
                         exact=lambda x: torch.sin(math.pi * x))
    m = _kan([1, 1], grid=10)
    _set_edges(m.layers[0], [[lambda x: 0.97 * torch.sin(3.1 * x) + 0.01]])  # a rough solution
    rep = symbolify_report(Result(m, problem, {}, {}, {}), n_samples=256, refine_steps=60)
    assert rep.expr == sympy.sin(sympy.pi * x_)
    assert rep.errors["raw_vs_exact"] < 1e-6


def test_symbolify_numeric_edges_only_when_allowed():
    from kanpinn.symbolic.symbolify import symbolify_report
    m = _kan([1, 1], grid=8)
    rng = np.random.default_rng(5)
    vals = torch.tensor(rng.normal(size=9))
    knots = torch.linspace(-1, 1, 9, dtype=torch.float64)

    def wiggly(t):  # piecewise linear through random values
        idx = torch.clamp(torch.searchsorted(knots, t) - 1, 0, 7)
        w = (t - knots[idx]) / (knots[1] - knots[0])
        return vals[idx] * (1 - w) + vals[idx + 1] * w

    _set_edges(m.layers[0], [[wiggly]])
    with pytest.warns(UserWarning, match="not explained"):
        rep = symbolify_report(m, n_samples=256, refine=None)
    assert rep.edges[0].kind == "library" and not rep.edges[0].recovered
    rep = symbolify_report(m, n_samples=256, refine=None, allow_numeric=True, numeric_degree=10)
    assert rep.edges[0].kind == "numeric"
    assert rep.errors["raw_vs_model"] < 0.2
