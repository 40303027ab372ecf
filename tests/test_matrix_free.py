"""Matrix-free Levenberg-Marquardt (kanpinn/solver/matrix_free.py): its products against
the dense structured Jacobian and finite differences, CG against a dense solve, the
Hutchinson diagonal, the step, and the size of what a step allocates."""
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import kanpinn as kp
from kanpinn.errors import KanpinnError
from kanpinn.solver.lm import LevenbergMarquardt
from kanpinn.solver.loss import Collocation, PINNLoss
from kanpinn.solver.jacobian import NotPointwise
from kanpinn.solver.matrix_free import (MatrixFreeLM, ResidualProducts, conjugate_gradient,
                                        hutchinson_diagonal)

pi = torch.pi


def _poisson():
    def exact(x):
        return torch.sin(pi * x[:, 0:1]) * torch.sin(pi * x[:, 1:2])

    def residual(x, u):
        return kp.laplacian(u, x) + 2 * pi**2 * exact(x)

    return kp.Problem(kp.Rectangle([-1.0, -1.0], [1.0, 1.0]), residual,
                      conditions=[kp.Dirichlet(0.0)], exact=exact)


def _setup(widths=(2, 3, 1), grid=4, n=40, nb=16):
    problem = _poisson()
    model = kp.KAN(list(widths), grid=grid, k=3, seed=1).double()
    colloc = Collocation(problem, n, nb, "sobol", 0, torch.float64, "cpu")
    loss = PINNLoss(problem, model, colloc, {})
    params = [p for p in model.parameters() if p.requires_grad]
    return loss, params


def _dense(loss, params):
    """J (M, P) and r (M,) from the structured Jacobian of the dense optimiser."""
    J, r, _ = LevenbergMarquardt(loss, params)._jacobian()
    return J.double(), r.double()


def test_products_match_the_dense_structured_jacobian_and_finite_differences():
    loss, params = _setup()
    J, r = _dense(loss, params)
    opt = MatrixFreeLM(loss, params)
    views, n = opt._views()
    rows, _ = opt._rows(views[0], n)
    assert torch.allclose(rows.detach(), r, rtol=0, atol=1e-13)   # same rows, same order
    prod = ResidualProducts(rows, params)
    g = torch.Generator().manual_seed(3)
    v = torch.randn(J.shape[1], generator=g, dtype=torch.float64)
    u = torch.randn(J.shape[0], generator=g, dtype=torch.float64)
    jv, jtu = prod.matvec(v), prod.rmatvec(u)
    assert float((jv - J @ v).norm() / (J @ v).norm()) < 1e-10
    assert float((jtu - J.T @ u).norm() / (J.T @ u).norm()) < 1e-10
    # J·v against a central difference of the residual along v (independent of both)
    eps = 1e-6
    opt._apply(v * eps)
    plus = opt._residual()
    opt._apply(v * eps, -2.0)
    minus = opt._residual()
    opt._apply(v * eps)
    fd = (plus - minus) / (2 * eps)
    assert float((jv - fd).norm() / fd.norm()) < 1e-6


def test_cg_step_matches_the_dense_lm_step_with_the_same_damping():
    loss, params = _setup()
    J, r = _dense(loss, params)
    opt = MatrixFreeLM(loss, params, cg_tol=1e-13, cg_iters=2000)
    grad, diag, loss0, _, kept, views, n = opt._gather()
    assert abs(loss0 - float(r @ r)) < 1e-12 * float(r @ r)
    assert float((grad - J.T @ r).norm() / (J.T @ r).norm()) < 1e-10
    D = opt.damping(diag)
    lam = 1e-3
    delta, its = opt.direction(lam, grad, D, lambda v: opt._normal_product(v, kept, views, n), diag)
    dense = torch.linalg.solve(J.T @ J + lam * torch.diag(D), -(J.T @ r))
    assert its > 1
    assert float((delta - dense).norm() / dense.norm()) < 1e-6


def test_conjugate_gradient_solves_an_spd_system_with_and_without_preconditioner():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(30, 30))
    A = A @ A.T + 0.1 * np.diag(rng.uniform(1, 100, 30))      # SPD, badly scaled diagonal
    b = rng.normal(size=30)
    exact = np.linalg.solve(A, b)
    At, bt = torch.tensor(A), torch.tensor(b)
    plain, its_plain = conjugate_gradient(lambda v: At @ v, bt, None, 1e-12, 500)
    pre, its_pre = conjugate_gradient(lambda v: At @ v, bt, At.diagonal(), 1e-12, 500)
    for x in (plain, pre):
        assert np.abs(x.numpy() - exact).max() < 1e-8 * np.abs(exact).max()
    x, its = conjugate_gradient(lambda v: At @ v, bt, None, 1e-12, 3)   # truncated
    assert its == 3
    assert conjugate_gradient(lambda v: At @ v, torch.zeros(30, dtype=torch.float64))[1] == 0


def test_hutchinson_diagonal_is_exact_for_disjoint_columns_and_unbiased_otherwise():
    g = torch.Generator().manual_seed(0)
    # one non-zero per column: (Jᵀz)_p² = J_mp² z_m² = Σ_m J_mp² for every Rademacher z
    J = torch.zeros(6, 3, dtype=torch.float64)
    J[1, 0], J[4, 1], J[4, 2] = -2.0, 0.5, 4.0
    d = hutchinson_diagonal(lambda u: J.T @ u, 6, 1, g, torch.float64, "cpu")
    assert torch.allclose(d, (J * J).sum(0), rtol=0, atol=1e-14)
    J = torch.randn(40, 5, generator=g, dtype=torch.float64)
    d = hutchinson_diagonal(lambda u: J.T @ u, 40, 4000, g, torch.float64, "cpu")
    assert torch.allclose(d, (J * J).sum(0), rtol=0.08)


def test_steps_lower_the_loss_and_chunks_give_the_same_products():
    loss, params = _setup(n=60)
    whole = MatrixFreeLM(loss, params, jacobian="autograd")
    chunked = MatrixFreeLM(loss, params, chunk=17, jacobian="autograd")   # chunks of 17, 17, 17, 9
    gw, _, lw, pw, kept, vw, n = whole._gather()
    gc, _, lc, pc, none, vc, _ = chunked._gather()
    assert len(vc) == 4 and not none
    assert abs(lw - lc) < 1e-12 * lw and float((gw - gc).norm()) < 1e-10 * float(gw.norm())
    assert pw.keys() == pc.keys() and all(abs(pw[k] - pc[k]) < 1e-12 * (1 + pw[k]) for k in pw)
    v = torch.randn(gw.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    aw = whole._normal_product(v, kept, vw, n)
    ac = chunked._normal_product(v, none, vc, n)
    assert float((aw - ac).norm()) < 1e-10 * float(aw.norm())
    losses = [lw]
    chunked.cg_iters, chunked.probes = 10, 2                # a short, cheap run
    for _ in range(3):
        value, parts, accepted = chunked.step()
        assert accepted and set(parts) == set(pw) and chunked.mode == "autograd"
        losses.append(value)
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.5 * losses[0]
    state = chunked.state()
    again = MatrixFreeLM(loss, params)
    again.load_state(state)
    assert again.state() == state


class _LargestTensor(TorchDispatchMode):
    """Largest number of elements of any tensor an operation returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _largest_in_step(opt):
    with _LargestTensor() as mode:
        opt.step()
    return mode.largest


def test_memory_does_not_scale_with_points_times_parameters():
    """By structure: an autograd-mode step creates no tensor larger than a plain gradient
    evaluation of the loss does (the network's own per-point, per-edge values), whatever
    the parameter count; the dense optimiser's Jacobian alone holds M × P numbers."""
    seen = {}
    for grid in (8, 32):
        loss, params = _setup(widths=(2, 6, 6, 1), grid=grid, n=200, nb=40)
        with _LargestTensor() as gradient:
            loss.loss()[0].backward()
        step = _largest_in_step(MatrixFreeLM(loss, params, cg_iters=3, probes=1, jacobian="autograd"))
        assert step <= 2 * gradient.largest
        seen[grid] = (step, sum(p.numel() for p in params))
    (small, p_small), (large, p_large) = seen[8], seen[32]
    assert p_large > 2.5 * p_small and large <= 1.2 * small     # P grew, the largest did not
    assert large < (200 + 40) * p_large / 5


@pytest.mark.parametrize("build, store_bytes, store_dtype, tol", [
    (None, 1 << 30, torch.float64, 1e-12),      # whole J kept for the step, in float64
    (None, 1 << 30, torch.float32, 1e-6),       # kept in float32 (the default)
    (17, 0, None, 1e-12),                       # rebuilt chunk by chunk for every product
])
def test_structured_rows_give_the_dense_gradient_exact_diagonal_and_products(build, store_bytes, store_dtype, tol):
    loss, params = _setup(n=60)
    J, r = _dense(loss, params)
    opt = MatrixFreeLM(loss, params, build=build, store_bytes=store_bytes, store_dtype=store_dtype)
    grad, diag, value, parts, normal, kept = opt._prepare()
    assert opt.mode == "structured" and kept == (store_bytes > 0)
    assert abs(value - float(r @ r)) < 1e-12 * float(r @ r)
    # Jᵀr and diag(JᵀJ) come from the model-precision rows whatever the stored precision
    assert float((grad - J.T @ r).norm() / (J.T @ r).norm()) < 1e-12
    assert float((diag - (J * J).sum(0)).norm() / (J * J).sum(0).norm()) < 1e-12
    v = torch.randn(J.shape[1], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact = J.T @ (J @ v)
    assert float((normal(v) - exact).norm() / exact.norm()) < tol
    assert set(parts) == {"pde", "dirichlet"} or len(parts) == 2


def test_structured_steps_lower_the_loss_and_match_autograd_steps():
    """Three steps from the same state in both modes. The autograd mode gets the exact
    diagonal too (its own is a Hutchinson estimate), so with tight CG solves the two
    differ only by rounding."""
    loss, params = _setup(n=60)
    start = [p.detach().clone() for p in params]

    class ExactDiagonal(MatrixFreeLM):
        def _prepare_autograd(self):
            grad, _, value, parts, normal, kept = super()._prepare_autograd()
            J, _ = _dense(self.loss_fn, self.params)
            return grad, (J * J).sum(0), value, parts, normal, kept

    values = {}
    for cls, mode in ((MatrixFreeLM, "structured"), (ExactDiagonal, "autograd")):
        with torch.no_grad():
            for p, s in zip(params, start):
                p.copy_(s)
        opt = cls(loss, params, jacobian=mode, store_dtype=torch.float64, probes=1, cg_iters=120,
                  cg_tol=1e-12, forcing=1e-12)
        values[mode] = [opt.step()[0] for _ in range(3)]
        assert opt.mode == mode
    s, a = values["structured"], values["autograd"]
    assert all(y < x for x, y in zip(s, s[1:])) and s[-1] < 0.5 * s[0]
    np.testing.assert_allclose(s, a, rtol=1e-6)


def test_residuals_the_structured_rows_miss_fall_back_to_autograd():
    # u minus its mean couples every point: the layers' per-point rule cannot see it,
    # the one-time check against autograd's Jᵀu does, and the products go through autograd
    problem = _poisson()
    coupled = kp.Problem(problem.domain, lambda x, u: kp.laplacian(u, x) + 0.5 * (u - u.mean()),
                         conditions=[kp.Dirichlet(0.0)])
    model = kp.KAN([2, 3, 1], grid=4, k=3, seed=1).double()
    loss = PINNLoss(coupled, model, Collocation(coupled, 40, 16, "sobol", 0, torch.float64, "cpu"), {})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = MatrixFreeLM(loss, params)
    grad, _, value, _, _, _ = opt._prepare()
    assert opt.mode == "autograd"
    total, _ = loss.loss()
    exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(total, params)])
    assert float((2 * grad - exact).norm() / exact.norm()) < 1e-10      # ∇‖r‖² = 2Jᵀr
    with pytest.raises(NotPointwise):
        MatrixFreeLM(loss, params, jacobian="structured")._prepare()


def test_structured_memory_is_bounded_by_the_build_chunk():
    """With J rebuilt for every product (store_bytes=0) and trial losses in chunks, no
    tensor a step creates is larger than the build chunk's rows × parameters (or the
    network's own values on a chunk): the number of points does not enter."""
    seen = []
    for n in (200, 800):
        loss, params = _setup(widths=(2, 6, 6, 1), grid=8, n=n, nb=40)
        P = sum(p.numel() for p in params)
        with _LargestTensor() as gradient:
            loss.loss()[0].backward()
        opt = MatrixFreeLM(loss, params, build=16, store_bytes=0, cg_iters_rebuild=2, chunk=100)
        step = _largest_in_step(opt)
        assert opt.mode == "structured"
        assert step <= max(2 * gradient.largest, (16 + 4 * 40) * P)    # first chunk holds the boundary rows
        seen.append(step)
    assert seen[1] <= 1.05 * seen[0]


def test_bad_options_are_refused_clearly():
    loss, params = _setup()
    for kw, word in (({"lam": -1.0}, "lam"), ({"cg_iters": 0}, "cg_iters"), ({"cg_tol": 2.0}, "cg_tol"),
                     ({"probes": 1.5}, "probes"), ({"chunk": 0}, "chunk"), ({"chunk": True}, "chunk"),
                     ({"jacobian": "dense"}, "jacobian"), ({"build": 0}, "build"), ({"forcing": 1.0}, "forcing"),
                     ({"store_dtype": torch.int32}, "store_dtype"), ({"store_bytes": -1}, "store_bytes"),
                     ({"cg_iters_rebuild": 0}, "cg_iters_rebuild"), ({"lam_min": 0.0}, "lam_min")):
        with pytest.raises(KanpinnError, match=word):
            MatrixFreeLM(loss, params, **kw)


def test_registered_as_lm_cg_and_solves_through_kp_solve():
    problem = _poisson()
    model = kp.KAN([2, 3, 1], grid=4, k=3, seed=0)
    result = kp.solve(problem, model, optimizer="lm-cg", steps=4, n_interior=60, n_boundary=24,
                      progress=False, seed=0, test_points=11)
    loss = result.history["loss"]
    assert loss[-1] < 0.2 * loss[0]
    assert np.all(np.diff(loss) <= 0)
