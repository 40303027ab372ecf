"""The matrix-free step is a real Levenberg-Marquardt (Gauss-Newton) step: with a tight CG
tolerance its solution equals the dense LM step of ``lm.py`` (Cholesky on JᵀJ + λD), for
both product routes (stored structured J, autograd J·v / Jᵀu), on a scalar problem and on
a 3-field system (the lid-driven cavity). Small networks: fast."""
import os
import runpy

import pytest
import torch

import kanpinn as kp
from kanpinn.errors import KanpinnError
from kanpinn.solver.lm import LevenbergMarquardt
from kanpinn.solver.loss import Collocation, PINNLoss
from kanpinn.solver.matrix_free import MatrixFreeLM

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pi = torch.pi
# initial damping at which lm.py accepts its first try on both problems (from 1e-3 the
# Poisson step is rejected a few times: λ then differs between the two optimisers)
LAM = 10.0


def _poisson():
    def exact(x):
        return torch.sin(pi * x[:, 0:1]) * torch.sin(pi * x[:, 1:2])

    return kp.Problem(kp.Rectangle([-1.0, -1.0], [1.0, 1.0]),
                      lambda x, u: kp.laplacian(u, x) + 2 * pi**2 * exact(x),
                      conditions=[kp.Dirichlet(0.0)], exact=exact)


def _cavity():
    return runpy.run_path(os.path.join(REPO, "problems", "lid_driven_cavity.py"))["problem"]


def _loss(problem, outputs, seed=1):
    model = kp.KAN([2, 3, outputs], grid=4, k=3, seed=seed).double()
    colloc = Collocation(problem, 40, 12, "sobol", 0, torch.float64, "cpu")
    model.update_grid(colloc.all_interior().detach())     # as kp.solve places the grids
    return PINNLoss(problem, model, colloc, {}), [p for p in model.parameters() if p.requires_grad]


def _flat(params):
    return torch.cat([p.detach().reshape(-1) for p in params])


def _dense_lm_step(problem, outputs):
    """(δ, λ, J, r) of one dense LM step of lm.py from the initial parameters."""
    loss, params = _loss(problem, outputs)
    lm = LevenbergMarquardt(loss, params, lam=LAM)
    J, r, _ = lm._jacobian()
    J, r = J.double(), r.double()
    before = _flat(params)
    lam = lm.lam
    _, _, accepted = lm.step()
    assert accepted and lm.lam < lam               # accepted at the first try: one solve at λ
    return _flat(params) - before, lam, J, r


@pytest.mark.parametrize("problem, outputs", [(_poisson, 1), (_cavity, 3)], ids=["poisson", "cavity"])
def test_structured_step_is_the_dense_lm_step(problem, outputs):
    """A whole ``step()`` (exact diagonal, stored J in float64, CG to 1e-13) moves the
    parameters as lm.py's Cholesky step does."""
    dense, lam, _, _ = _dense_lm_step(problem(), outputs)
    loss, params = _loss(problem(), outputs)
    before = _flat(params)
    opt = MatrixFreeLM(loss, params, lam=lam, jacobian="structured", store_dtype=torch.float64,
                       cg_tol=1e-14, forcing=1e-14, cg_iters=5000)
    _, _, accepted = opt.step()
    assert accepted and opt.mode == "structured"
    delta = _flat(params) - before
    assert float((delta - dense).norm() / dense.norm()) < 1e-8


@pytest.mark.parametrize("route", ["autograd", "records"])
@pytest.mark.parametrize("problem, outputs", [(_poisson, 1), (_cavity, 3)], ids=["poisson", "cavity"])
def test_matrix_free_products_solve_the_dense_lm_system(problem, outputs, route):
    """The matrix-free routes' gradient and CG solution (J never formed), given lm.py's
    damping (their own diagonal is a Hutchinson estimate), equal the dense LM step."""
    dense, lam, J, r = _dense_lm_step(problem(), outputs)
    loss, params = _loss(problem(), outputs)
    opt = MatrixFreeLM(loss, params, lam=lam, jacobian=route)
    grad, _, loss0, _, normal, kept = opt._prepare()
    assert opt.mode == route and kept
    assert abs(loss0 - float(r @ r)) <= 1e-12 * float(r @ r)
    assert float((grad - J.T @ r).norm() / (J.T @ r).norm()) < 1e-12
    exact = (J * J).sum(0)
    root = exact.sqrt()
    D = (root * root.mean()).clamp_min(1e-12 * float(root.max()) ** 2)
    delta, its = opt.direction(lam, grad, D, normal, exact, tol=1e-14, maxiter=5000)
    assert its > 1
    assert float((delta - dense).norm() / dense.norm()) < 1e-8


def test_record_products_match_the_dense_jacobian_and_survive_rejected_steps():
    loss, params = _loss(_cavity(), 3)
    J, r, _ = LevenbergMarquardt(loss, params)._jacobian()
    J = J.double()
    opt = MatrixFreeLM(loss, params, jacobian="records")
    _, _, _, _, normal, _ = opt._prepare()
    v = torch.randn(J.shape[1], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert float((normal(v) - J.T @ (J @ v)).norm() / (J.T @ (J @ v)).norm()) < 1e-12
    normal.kept.clear()                 # as after a rejected trial: rebuilt, same products
    assert float((normal(v) - J.T @ (J @ v)).norm() / (J.T @ (J @ v)).norm()) < 1e-12
    # the first step's trial and its quarter step are made to fail: the second solve runs
    # on products rebuilt after the parameters were written in place and restored
    real, calls = opt._residual, []

    def failing(views=None):
        calls.append(1)
        out = real(views)
        return torch.full_like(out, 1e10) if len(calls) <= 2 else out
    opt._residual = failing
    losses = [float(r.double() @ r.double())]
    for _ in range(4):
        value, _, accepted = opt.step()
        losses.append(value)
        assert accepted
    assert len(calls) > 4 and opt.mode == "records" and losses[-1] < 0.5 * losses[0]
    assert all(b <= a for a, b in zip(losses, losses[1:]))


def test_records_the_layers_do_not_cover_fall_back_to_autograd():
    problem = _poisson()
    model = kp.MLP([2, 5, 1], seed=0).double()      # no KAN layer rule: autograd products
    colloc = Collocation(problem, 30, 12, "sobol", 0, torch.float64, "cpu")
    opt = MatrixFreeLM(PINNLoss(problem, model, colloc, {}), list(model.parameters()), jacobian="records")
    opt.step()
    assert opt.mode == "autograd"


def test_the_product_route_is_a_solve_option_of_lm_cg():
    problem = _poisson()
    for route in ("structured", "autograd", "records"):
        result = kp.solve(problem, kp.KAN([2, 3, 1], grid=4, k=3, seed=0), optimizer="lm-cg", steps=3,
                          n_interior=40, n_boundary=12, progress=False, seed=0, test_points=6,
                          lm_cg_products=route)
        loss = result.history["loss"]
        assert loss[-1] < loss[0]
    with pytest.raises(KanpinnError, match="lm_cg_products"):
        kp.solve(problem, kp.KAN([2, 3, 1], grid=4, k=3, seed=0), optimizer="lm-cg", steps=1,
                 n_interior=40, n_boundary=12, progress=False, lm_cg_products="forward")


@pytest.mark.parametrize("route", ["structured", "autograd"])
def test_fixed_work_runs_exactly_the_asked_iterations_and_leaves_the_parameters(route):
    loss, params = _loss(_cavity(), 3)
    before = _flat(params)
    opt = MatrixFreeLM(loss, params, jacobian=route)
    assert opt.fixed_work(7) == 7            # no early stop, even far from convergence
    assert torch.equal(_flat(params), before)


def test_step_ratio_refuses_bad_arguments(monkeypatch):
    from kanpinn.bench.systems import step_ratio
    monkeypatch.chdir(REPO)
    for kw, word in (({"method": "cg"}, "method"), ({"method": "lm-cg", "products": "forward"}, "products"),
                     ({"method": "lm-cg", "cg_iters": 0}, "cg_iters")):
        with pytest.raises(KanpinnError, match=word):
            step_ratio(**kw)


def test_record_products_in_chunks_equal_the_whole():
    loss, params = _loss(_cavity(), 3)
    whole = MatrixFreeLM(loss, params, jacobian="records")
    chunked = MatrixFreeLM(loss, params, jacobian="records", chunk=15)      # 40 points: 3 chunks
    g1, _, l1, _, n1, _ = whole._prepare()
    g2, _, l2, _, n2, _ = chunked._prepare()
    assert chunked.mode == "records" and len(n2.kept) == 3
    v = torch.randn(g1.shape[0], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert abs(l1 - l2) <= 1e-12 * l1
    assert float((g1 - g2).norm() / g1.norm()) < 1e-12
    assert float((n1(v) - n2(v)).norm() / n1(v).norm()) < 1e-12


def test_record_products_in_float32_stay_on_the_records():
    problem = _cavity()
    model = kp.KAN([2, 3, 3], grid=4, k=3, seed=1).float()
    colloc = Collocation(problem, 40, 12, "sobol", 0, torch.float32, "cpu")
    model.update_grid(colloc.all_interior().detach())
    opt = MatrixFreeLM(PINNLoss(problem, model, colloc, {}), list(model.parameters()), jacobian="records")
    before = opt._prepare()[2]
    value, _, accepted = opt.step()
    assert opt.mode == "records" and accepted and value < before
