"""LM on a system with the grouped Gauss-Newton product (``gram.gram_live``): the matrix
it solves with is JᵀJ of the step's own J (torch's product as the truth), its steps are
those of the dense normal equations, and the zero columns are really zero.

The system: steady Navier-Stokes on the unit square, outputs (u, v, p), wall conditions
on u and on v alone and a pinned p, so the continuity block never reads p and each wall
block reads one output; on [0, 1]² half of the first layer's B-splines (grid on [-1, 1])
meet no point, which gives zero columns too."""
import torch

import kanpinn as kp
import kanpinn.solver.lm as lm_module
from kanpinn.solver.gram import gram
from kanpinn.solver.lm import LevenbergMarquardt
from kanpinn.solver.loss import Collocation, PINNLoss

F64 = torch.float64


def residual(x, w):
    u, v, p = w[:, 0:1], w[:, 1:2], w[:, 2:3]
    gu, gv, gp = kp.grad(u, x), kp.grad(v, x), kp.grad(p, x)
    mx = u * gu[:, 0:1] + v * gu[:, 1:2] + gp[:, 0:1] - 0.05 * kp.laplacian(u, x)
    my = u * gv[:, 0:1] + v * gv[:, 1:2] + gp[:, 1:2] - 0.05 * kp.laplacian(v, x)
    return mx, my, gu[:, 0:1] + gv[:, 1:2]


def problem():
    def lid(x):
        return x[:, 1:2] * x[:, 0:1] * (1 - x[:, 0:1])
    return kp.Problem(kp.Rectangle([0.0, 0.0], [1.0, 1.0]), residual,
                      conditions=[kp.Dirichlet(lid, component=0, name="u"),
                                  kp.Dirichlet(0.0, component=1, name="v"),
                                  kp.Data([[0.0, 0.0]], [[0.0]], component=2, name="pin")])


def stepper():
    model = kp.KAN([2, 6, 3], grid=5, k=3, seed=0, dtype=F64)
    col = Collocation(problem(), 300, 120, "sobol", 0, F64, "cpu")
    return LevenbergMarquardt(PINNLoss(problem(), model, col, {}), [p for p in model.parameters() if p.requires_grad])


def test_grouped_matrix_is_jtj_of_the_step_jacobian():
    lm = stepper()
    lm.step()
    J, r, parts = lm._jacobian()
    assert list(parts) == ["pde_0_0", "pde_1_0", "pde_2_0", "u", "v", "pin"]
    (a, b) = lm.rows[2]                                       # continuity: some columns exactly zero
    cont = (J[a:b] != 0).any(0)
    assert (~cont & (J != 0).any(0)).any()
    A, live = lm_module.gram_live(J.double(), lm.rows)
    assert live is not None                                   # the grouped route is taken
    ref = J.double().T @ J.double()                           # torch's dense product of the same J
    assert float((A - ref[live][:, live]).abs().max()) <= 1e-12 * float(ref.abs().max())
    dead = torch.ones(J.shape[1], dtype=torch.bool)
    dead[live] = False
    assert dead.any() and float(ref[dead].abs().max()) == 0.0
    assert torch.equal(J[:, dead], torch.zeros_like(J[:, dead]))


def test_lm_steps_equal_the_dense_normal_equations(monkeypatch):
    """The same steps as LM with the full matrix: the first step's parameters to 1e-10,
    the losses over four steps to 1e-9. Later parameters agree less closely (~1e-8): a
    KAN's J is rank-deficient (scale_sp against its coefficients), the damping alone fixes
    the step there, and that component follows rounding; the loss does not see it."""
    def params(lm):
        return torch.cat([p.detach().reshape(-1) for p in lm.params])
    grouped, dense = stepper(), stepper()
    full = lambda J, rows=None, work=None: (gram(J), None)            # noqa: E731
    for i in range(4):
        a = grouped.step()[0]
        with monkeypatch.context() as m:
            m.setattr(lm_module, "gram_live", full)
            b = dense.step()[0]
        assert abs(a - b) <= 1e-9 * abs(b)
        if i == 0:
            assert float((params(grouped) - params(dense)).norm()) <= 1e-10 * float(params(dense).norm())
    assert float((params(grouped) - params(dense)).norm()) <= 1e-6 * float(params(dense).norm())
    assert b < 0.05 * stepper().step()[0]


def test_holdout_refuses_steps_that_blow_up_the_held_out_loss():
    # a step is taken only when the loss on points no step trains on does not rise more
    # than holdout_factor-fold: with a held-out loss that reads 10x after any move, no
    # step is accepted and the parameters stay where they are; with one that follows the
    # training loss, LM takes exactly the steps it takes without a holdout
    free = stepper()
    plain = [free.step()[0] for _ in range(3)]
    watched = stepper()
    start = [p.detach().clone() for p in watched.params]
    watched.holdout = lambda: 1.0 + 9.0 * float(sum((p - s).abs().sum() for p, s in zip(watched.params, start)) > 0)
    loss, _, accepted = watched.step()
    assert not accepted
    assert all(torch.equal(p, s) for p, s in zip(watched.params, start))
    follow = stepper()
    follow.holdout = lambda: float(torch.cat(PINNLoss.scaled(follow.loss_fn.blocks())).pow(2).sum())
    assert [follow.step()[0] for _ in range(3)] == plain
