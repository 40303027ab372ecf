"""kp.discover and the verification of formulas on the PDE itself.

The truths here are exact solutions written by hand (sympy), independent of any network:
verification must accept them to round-off and reject formulas that are only numerically
close; discovery must return the exact formula or say that it found none."""
import math

import numpy as np
import pytest
import sympy as sp
import torch

import kanpinn as kp
from kanpinn.symbolic.discover import Discovery, default_structures, system_model
from kanpinn.symbolic.polish import linearize_small_arguments, polish, refine_constants
from kanpinn.symbolic.verify import verify

pi = math.pi
x, y, t = sp.symbols("x y t")


def poisson_1d(amplitude=1.0):
    return kp.Problem(kp.Interval(-1.0, 1.0),
                      lambda X, u: kp.laplacian(u, X) + amplitude * pi**2 * torch.sin(pi * X),
                      [kp.Dirichlet(0.0)], exact=lambda X: amplitude * torch.sin(pi * X), name="poisson_1d")


def poisson_2d():
    def ex(X):
        return torch.sin(pi * X[:, 0:1]) * torch.sin(pi * X[:, 1:2])
    return kp.Problem(kp.Rectangle([-1.0, -1.0], [1.0, 1.0]),
                      lambda X, u: kp.laplacian(u, X) + 2 * pi**2 * ex(X), [kp.Dirichlet(0.0)], exact=ex)


def heat():
    return kp.Problem(kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
                      lambda X, u: kp.partial(u, X, 1) - kp.partial(u, X, 0, order=2) / pi**2,
                      [kp.Dirichlet(0.0), kp.Initial(lambda X: torch.sin(pi * X[:, 0:1]))])


# ---------------------------------------------------------------- verification
def test_verify_accepts_the_exact_formula_to_round_off():
    v = verify(sp.sin(sp.pi * x) * sp.sin(sp.pi * y), poisson_2d())
    assert v.verified and v.residual < 1e-13
    v = verify(sp.exp(-t) * sp.sin(sp.pi * x), heat())       # homogeneous PDE: no forcing
    assert v.verified and v.residual < 1e-13
    assert 0.95 * pi**2 < v.scale <= pi**2                    # max |u_xx| on the points


@pytest.mark.parametrize("wrong", [
    sp.Rational(127, 4) * sp.sin(0.0315 * sp.sin(sp.pi * x) * sp.sin(sp.pi * y)),  # issue 14's formula
    sp.sin(sp.pi * x) * sp.sin(sp.pi * y) + 1e-3 * (1 - x**2) * (1 - y**2),         # off by 1e-3 inside
    sp.sin(3.1416 * x) * sp.sin(sp.pi * y),                                           # pi to 5 digits
])
def test_verify_rejects_numerically_close_formulas(wrong):
    v = verify(wrong, poisson_2d())
    assert not v.verified and v.residual > 1e-6, v


def test_verify_rejects_a_wrong_condition_only():
    # solves the PDE exactly (harmonic term added) but breaks the boundary condition
    v = verify(sp.sin(sp.pi * x) * sp.sin(sp.pi * y) + 1e-4 * x * y, poisson_2d())
    assert not v.verified and v.terms["pde"] < 1e-13 and v.terms["dirichlet"] > 1e-7


def test_verify_a_system_kovasznay():
    Re = 20.0
    lam = Re / 2 - math.sqrt(Re**2 / 4 + 4 * pi**2)
    nu = 1 / Re

    def exact(X):
        ex = torch.exp(lam * X[:, 0:1])
        return torch.cat([1 - ex * torch.cos(2 * pi * X[:, 1:2]),
                          lam / (2 * pi) * ex * torch.sin(2 * pi * X[:, 1:2]), 0.5 * (1 - ex * ex)], 1)

    def residual(X, w):
        u, v, p = w[:, 0:1], w[:, 1:2], w[:, 2:3]
        gu, gv, gp = kp.grad(u, X), kp.grad(v, X), kp.grad(p, X)
        return (u * gu[:, 0:1] + v * gu[:, 1:2] + gp[:, 0:1] - nu * kp.laplacian(u, X),
                u * gv[:, 0:1] + v * gv[:, 1:2] + gp[:, 1:2] - nu * kp.laplacian(v, X),
                gu[:, 0:1] + gv[:, 1:2])
    prob = kp.Problem(kp.Rectangle([-0.5, -0.5], [1.0, 1.5]), residual,
                      [kp.Dirichlet(lambda X: exact(X)[:, 0:1], component=0),
                       kp.Dirichlet(lambda X: exact(X)[:, 1:2], component=1)], exact=exact)
    L = sp.Float(lam, 17)
    truth = sp.Matrix([1 - sp.exp(L * x) * sp.cos(2 * sp.pi * y),
                       L / (2 * sp.pi) * sp.exp(L * x) * sp.sin(2 * sp.pi * y),
                       (1 - sp.exp(2 * L * x)) / 2])
    v = verify(truth, prob)
    assert v.verified and v.residual < 1e-12, v
    wrong = truth.copy()
    wrong[2] = truth[2] + 1e-3 * x                      # a pressure gradient off by 1e-3
    assert not verify(wrong, prob).verified
    with pytest.raises(kp.KanpinnError, match="2 component"):
        verify(truth[:2, :], prob)


def test_verify_bad_input_is_a_clear_error():
    with pytest.raises(kp.KanpinnError, match="tol"):
        verify(sp.sin(sp.pi * x), poisson_1d(), tol=-1)
    with pytest.raises(kp.KanpinnError, match="kp.Problem"):
        verify(sp.sin(sp.pi * x), "poisson")
    v = verify(sp.log(x - 5), poisson_1d())             # NaN on the domain: not verified
    assert not v.verified and not math.isfinite(v.residual)


# ---------------------------------------------------------------- clean formulas
def test_small_argument_sine_becomes_linear_and_verifies():
    prob = poisson_2d()
    f = sp.Rational(127, 4) * sp.sin(0.0315 * sp.sin(sp.pi * x) * sp.sin(sp.pi * y))
    pts = prob.domain.sample_interior(256, "sobol", seed=0)
    lin = linearize_small_arguments(f, (x, y), pts)
    assert sp.simplify(lin - 127 * 0.0315 / 4 * sp.sin(sp.pi * x) * sp.sin(sp.pi * y)) == 0
    out, v = polish(f, prob, symbols=(x, y), points=pts)
    assert v.verified and sp.simplify(out - sp.sin(sp.pi * x) * sp.sin(sp.pi * y)) == 0, out


def test_constants_snap_to_sqrt_and_pi_only_when_the_pde_agrees():
    prob = poisson_1d(amplitude=math.sqrt(2))
    pts = prob.domain.sample_interior(128, "sobol", seed=0)
    out, v = polish(1.41421356 * sp.sin(3.14159265 * x), prob, symbols=(x,), points=pts)
    assert v.verified and out == sp.sqrt(2) * sp.sin(sp.pi * x), out
    assert not out.atoms(sp.Float)
    # a constant that is not simple stays a float (no p/q, p/q*pi, sqrt within 1e-3 of it)
    prob = poisson_1d(amplitude=1.2345678)
    out, v = polish(1.2345678 * sp.sin(3.14159265 * x), prob, symbols=(x,), points=pts)
    assert v.verified and out.has(sp.pi), out
    (c,) = out.atoms(sp.Float)
    assert float(c) == pytest.approx(1.2345678, rel=1e-9) and len(str(c)) <= 10, out  # no 17-digit tail


@pytest.mark.parametrize("read", [
    # what kp.symbolify read from default MultKAN heat solves (issue 14's new user, seeds
    # 0, 1, 3, 5): the -1.6e-5 term alone is above a 1e-5 drop threshold, and snapping
    # 1.0000158 to 1 without dropping it raises the PDE loss, so neither move pays alone;
    # pi*0.3183187 is 1 once multiplied out; 0.0028 - 0.0029*exp(-0.02*t) are two
    # near-cancelling leftovers; a gauge between the factors of the product
    "(-1.62540285259493e-5 + 1.0000158253463*exp(-0.999972470180241*t))*sin(pi*x)",
    "pi*(-1.09444141123127e-5 + 0.31831871541453*exp(-0.999944753007094*t))*sin(pi*x)",
    "0.00283537269304419 + exp(-t)*sin(pi*x) + 9.20193304201712e-5*exp(-t)"
    " - 0.00292666673780238*exp(-0.0217312863590101*t)",
    "2.28760840206686*(3.0788790086056e-6 + 0.00826655407240883*exp(-1.00059941276914*t))"
    "*(0.11681363002415*exp(0.970970684028725*t) + 52.8607238261254*sin(pi*x) - 0.00546283144532542)"
    " - 0.00210965402184789",
    "0.00254937223050504 + exp(-t)*sin(pi*x - 4.80013410693848e-6) - 0.00254206370789337*exp(-0.00516018422153441*t)",
])
def test_symbolify_snaps_what_a_network_leaves_when_the_pde_agrees(read):
    from kanpinn.symbolic.symbolify import _polish

    class Run:                        # what _polish reads of a result: no options, no parameters
        options, metrics = {}, {}
    prob = heat()                     # kappa = 1/pi^2 on [-1, 1] x [0, 1], like problems/heat_1d.py
    X = np.asarray(prob.domain.sample_interior(256, "sobol", seed=0))
    out = _polish(sp.sympify(read), (x, t), prob, Run(), 0, X, torch.as_tensor(X), None, 1e-6)
    assert out == sp.exp(-t) * sp.sin(sp.pi * x), out


def test_symbolify_keeps_a_wrong_formula_when_snapping_does_not_solve_the_pde():
    from kanpinn.symbolic.symbolify import _polish

    class Run:
        options, metrics = {}, {}
    prob = heat()
    read = sp.sympify("0.05 + 0.98*exp(-0.9*t)*sin(3.0*x)")   # a wrong shape: nothing to snap to
    X = np.asarray(prob.domain.sample_interior(256, "sobol", seed=0))
    out = _polish(read, (x, t), prob, Run(), 0, X, torch.as_tensor(X), None, 1e-6)
    assert not verify(out, prob).verified


def test_edge_alternatives_swaps_the_edge_the_pde_rejects():
    # a read-back whose one edge took the wrong function (x^2, its fit's first choice)
    # while the fitter's second choice (sin) is the solution: the swap is polished and
    # verified on the PDE; the first choice alone is not
    from kanpinn.symbolic.alternatives import edge_alternatives
    from kanpinn.symbolic.fit import Candidate, EdgeFit
    from kanpinn.symbolic.library import get_function
    from kanpinn.symbolic.symbolify import EdgeChoice, SymbolicReport

    def cand(name, a, b, c, d, r2, score):
        return Candidate(name, r2, a, b, c, d, 1, score, function=get_function(name))
    wrong = cand("x^2", 1.0, 0.0, -0.8, 0.6, 0.95, -1.0)
    right = cand("sin", 3.1415, 0.0, 1.0001, 0.0, 0.9999, -0.5)
    model = kp.KAN([1, 1], k=3, seed=0, dtype=torch.float64)
    model.fix_symbolic(0, 0, 0, wrong.name, *wrong.params)
    edge = EdgeChoice(0, 0, 0, "library", "x^2", wrong.r2, False, wrong.params, EdgeFit([wrong, right]))
    report = SymbolicReport(None, None, (x,), [edge], model, {})
    prob = poisson_1d()
    pts = prob.domain.sample_interior(128, "sobol", seed=0)
    assert not verify(-0.8 * x**2 + 0.6, prob).verified
    formula, ver, tried = edge_alternatives(report, prob, symbols=(x,), points=pts, tol=1e-7)
    assert tried == 1 and ver.verified and formula == sp.sin(sp.pi * x), (formula, ver)


def test_refine_constants_fits_the_formula_to_the_pde():
    prob = heat()
    rough = 0.999 * sp.exp(-0.98 * t) * sp.sin(sp.pi * x)
    fine = refine_constants(rough, prob, (x, t))
    vals = sorted(float(c) for c in fine.atoms(sp.Float))
    assert vals == pytest.approx([-1.0, 1.0], abs=1e-7) or vals == pytest.approx([1.0], abs=1e-7), fine
    assert verify(fine, prob).verified


# ---------------------------------------------------------------- discovery
def test_structures_cheapest_first_and_system_blocks_are_independent():
    names = [n for n, _ in default_structures(2)]
    assert names[:3] == ["sum", "product", "function of a sum"]
    model = system_model([2, [0, 1], 1], 3, k=3, seed=0)
    assert model.widths[-1] == (3, 0) or list(model.widths[-1]) == [3, 0]
    mask = model.layers[1].mask
    assert torch.equal(mask, torch.eye(3, dtype=mask.dtype))
    X = torch.rand(16, 2, dtype=mask.dtype)
    before = model(X).detach()
    with torch.no_grad():                        # perturb only block 1's first-layer edges
        model.layers[0].coef[:, :, 2:4] += 0.3
    after = model(X).detach()
    assert torch.equal(before[:, [0, 2]], after[:, [0, 2]]) and not torch.equal(before[:, 1], after[:, 1])


def test_screen_scale_is_known_on_a_fresh_problem():
    # the screen compares a structure's loss with the loss of u = 0; on a problem never
    # used before, u = 0*x failed the problem's first-use check (the residual must depend
    # on u) and the screen was silently off. Heat: only the initial condition sin(pi*x)
    # misses for u = 0, its mean square over x in [-1, 1] is 1/2
    from kanpinn.symbolic.discover import _zero_loss
    assert _zero_loss(heat(), 0) == pytest.approx(0.5, rel=0.05)
    p2 = poisson_2d()                  # residual of u = 0: the forcing 2 pi^2 sin sin
    assert _zero_loss(p2, 0) == pytest.approx((2 * pi**2) ** 2 / 4, rel=0.1)


def test_discover_poisson_1d_returns_the_verified_closed_form():
    found = kp.discover(poisson_1d(), structures=[[1, 1]], max_time=120,
                        solve=dict(grids=[5], steps=10, n_interior=60, n_boundary=2))
    assert isinstance(found, kp.Discovery) and isinstance(found, Discovery)
    assert found.verified and found.formula == sp.sin(sp.pi * x), found.report()
    assert found.residual < 1e-12
    assert found.candidates[0].verified and found.candidates[0].seconds > 0
    assert "verified" in repr(found) and "sin(pi*x)" in found.report()


def test_discover_non_elementary_reports_not_verified_with_candidates():
    # u'' = cos(x^2): u is a Fresnel-type integral, not in the library
    prob = kp.Problem(kp.Interval(-1.0, 1.0), lambda X, u: kp.laplacian(u, X) - torch.cos(X**2),
                      [kp.Dirichlet(0.0)])
    found = kp.discover(prob, structures=[("sum", [1, 1])], max_time=60, distill=False,
                        solve=dict(grids=[5], steps=5, n_interior=60, n_boundary=2))
    assert not found.verified and found.formula is None
    (row,) = found.candidates
    assert row.formula is not None and 1e-7 < row.residual < math.inf and "residual" in row.why
    assert "NOT verified" in found.report() and "NOT verified" in repr(found)


def test_discover_bad_options_are_clear_errors():
    with pytest.raises(kp.KanpinnError, match="max_time"):
        kp.discover(poisson_1d(), max_time=-1)
    with pytest.raises(kp.KanpinnError, match="structure"):
        kp.discover(poisson_1d(), structures=[[2, 1]])
    with pytest.raises(kp.KanpinnError, match="kp.Problem"):
        kp.discover("poisson_1d.py")
    with pytest.raises(kp.KanpinnError, match="swaps"):
        kp.discover(poisson_1d(), swaps=-1)
    with pytest.raises(kp.KanpinnError, match="distill"):
        kp.discover(poisson_1d(), distill="yes")
    with pytest.raises(kp.KanpinnError, match="teacher_time"):
        kp.discover(poisson_1d(), teacher_time=0)
    with pytest.raises(kp.KanpinnError, match="teacher"):
        kp.discover(poisson_1d(), teacher="run.h5")


def test_discover_max_time_is_respected():
    found = kp.discover(poisson_1d(), max_time=1e-9)
    assert not found.verified and all("max_time" in c.why for c in found.candidates)


def test_symbolify_and_discover_read_a_kan_behind_an_input_embedding():
    # on [0, 2] the solver maps the box onto the grid range (kanpinn.transforms.Embedded);
    # the formula must come back in x, not in the inner coordinate
    from kanpinn.symbolic import symbolify_report
    from kanpinn.transforms import Embedded
    prob = kp.Problem(kp.Interval(0.0, 2.0), lambda X, u: kp.laplacian(u, X) + pi**2 * torch.sin(pi * X),
                      [kp.Dirichlet(0.0)], exact=lambda X: torch.sin(pi * X))
    model = Embedded(kp.KAN([1, 1], k=5, seed=0, dtype=torch.float64), lo=[0.0], hi=[2.0])
    res = kp.solve(prob, model, grids=[5], steps=10, n_interior=60, n_boundary=2, progress=False)
    rep = symbolify_report(res)
    assert rep.expr.free_symbols == {x} and rep.errors["clean_vs_exact"] < 1e-3, rep.expr
    found = kp.discover(prob, structures=[[1, 1]], solve=dict(grids=[5], steps=10, n_interior=60, n_boundary=2))
    assert found.verified and found.formula == sp.sin(sp.pi * x), found.report()


# ---------------------------------------------------------------- distillation
class _Teacher:
    """What discover reads of a teacher Result: its model (and metrics). Here the model is
    the exact solution plus a 1e-8 perturbation (a teacher accurate to 1e-8, as auto mode
    is on these problems), so the test measures the reading, not a solve."""

    def __init__(self, fn):
        class Model(torch.nn.Module):
            def forward(self, X):
                return fn(X) + 1e-8 * torch.sin(7 * X[:, 0:1] + 3 * X[:, 1:2])
        self.model, self.metrics = Model(), {}


def rank_two():
    """Poisson on [0, 1]^2 with u = x cos(pi y) + x^3 y: a sum of two products whose
    product-node reading mixes x and x^3 (the Klein-Gordon shape, cheap)."""
    def ex(X):
        return X[:, 0:1] * torch.cos(pi * X[:, 1:2]) + X[:, 0:1] ** 3 * X[:, 1:2]

    def forcing(X):
        return -pi**2 * X[:, 0:1] * torch.cos(pi * X[:, 1:2]) + 6 * X[:, 0:1] * X[:, 1:2]
    return kp.Problem(kp.Rectangle([0.0, 0.0], [1.0, 1.0]), lambda X, u: kp.laplacian(u, X) - forcing(X),
                      [kp.Dirichlet(ex)], exact=ex), ex


def test_distillation_reads_a_sum_of_products_off_a_teacher():
    prob, ex = rank_two()
    found = kp.discover(prob, distill=True, teacher=_Teacher(ex), max_time=120)
    truth = x * sp.cos(sp.pi * y) + x**3 * y
    assert found.verified and sp.simplify(found.formula - truth) == 0, found.report()
    assert found.residual < 1e-12
    assert [c.structure for c in found.candidates][:2] == ["teacher (given)", "distilled sum"]


def test_distillation_fits_a_kan_structure_to_the_teacher_by_regression():
    # u = 1 - exp(-x) cos(pi y) (Kovasznay's shape): the separable sum + product KAN fitted
    # to the teacher's values reads back exp and cos, within 1e-4 of the teacher
    from kanpinn.symbolic.distill import fit_structure, regression_problem, separable_model, teacher_error
    from kanpinn.symbolic.symbolify import symbolify_report

    def ex(X):
        return 1 - torch.exp(-X[:, 0:1]) * torch.cos(pi * X[:, 1:2])
    prob = kp.Problem(kp.Rectangle([0.0, 0.0], [1.0, 1.0]), lambda X, u: kp.laplacian(u, X), [kp.Dirichlet(ex)])
    teacher = _Teacher(ex).model
    model = separable_model([2, [1, 1]], k=5, seed=0, grid_eps=0.02)
    assert model.layers[0].mask.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]]
    res = fit_structure(regression_problem(prob, teacher), model, grids=[5, 10], steps=30, n_interior=600,
                        optimizer="lm", progress=False, seed=0, starts=2)
    # the network read column by column (no problem: each column is not the solution)
    rep = symbolify_report(res.model, variables=(x, y), x=prob.domain.sample_interior(2048, "sobol", seed=0),
                           required_derivative_order=2, refine="fit")
    expr = sum(rep.expr)
    pts = prob.domain.sample_interior(512, "sobol", seed=3)
    assert teacher_error(expr, (x, y), pts, teacher) < 1e-4, expr
    assert expr.has(sp.exp) and expr.has(sp.cos), expr


def test_distillation_on_a_non_elementary_solution_reports_not_verified():
    # u'' = cos(x^2) (Fresnel-type): the teacher is a quick solve; no structure verifies
    prob = kp.Problem(kp.Interval(-1.0, 1.0), lambda X, u: kp.laplacian(u, X) - torch.cos(X**2),
                      [kp.Dirichlet(0.0)])
    teacher = kp.solve(prob, kp.KAN([1, 5, 1], k=3, seed=0), grids=[5], steps=20, n_interior=100,
                       n_boundary=2, progress=False)
    found = kp.discover(prob, distill=True, teacher=teacher, max_time=8,
                        solve=dict(grids=[5], steps=5, n_interior=100))
    assert not found.verified and found.formula is None
    tried = [c for c in found.candidates if c.formula is not None]
    assert tried and all(1e-7 < c.residual for c in tried), found.report()
    assert "NOT verified" in found.report()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["heat_1d", "poisson_2d_product", "klein_gordon_1d", "kovasznay"])
def test_discover_targets(name):
    """Issue 14's targets: the verified closed form, sympy-equal to the truth, at most a few
    operations longer, within 10 minutes (minutes each on 2 idle cores)."""
    import os

    from kanpinn.bench.symbolic_targets import run_discover_target
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    row = run_discover_target(name, problem_dir=os.path.join(root, "problems"), log=lambda *_: None)
    assert row["met"], row


def test_cli_discover_writes_its_table_and_refuses_bad_input(tmp_path, capsys):
    import json

    from kanpinn.cli import main
    prob = tmp_path / "p1.py"
    prob.write_text("import torch\nimport kanpinn as kp\n"
                    "problem = kp.Problem(kp.Interval(-1.0, 1.0), lambda x, u: kp.laplacian(u, x) + 1.0,"
                    " [kp.Dirichlet(0.0)], name='p1')\n")
    out = tmp_path / "out"
    # no time at all: nothing is tried, nothing verified (exit 1), the table is still written
    assert main(["discover", str(prob), "--out", str(out), "--max-time", "1e-9"]) == 1
    data = json.loads((out / "p1-discovery.json").read_text())
    assert data["verified"] is False and data["formula"] is None
    assert data["candidates"] and all("max_time" in c["why"] for c in data["candidates"])
    assert main(["discover", str(tmp_path / "missing.py")]) == 2
    assert "missing.py" in capsys.readouterr().err
