"""The Gauss-Newton matrix of LM (``kanpinn.solver.gram``): the blocked symmetric product
equals JᵀJ, below and above the size where it splits the columns."""
import pytest
import torch

from kanpinn.solver.gram import gram, gram_live, structured_flops


@pytest.mark.parametrize("m,p", [(50, 7), (300, 200), (400, 800), (900, 1201)])
def test_gram_is_jtj_and_exactly_symmetric(m, p):
    g = torch.Generator().manual_seed(p)
    J = torch.randn(m, p, generator=g, dtype=torch.float64)
    J[:, p // 3] = 0.0                                          # a column the rows never touch
    A = gram(J)
    # independent truth: the sum of the rows' outer products, row by row
    ref = torch.einsum("mi,mj->ij", J, J)
    assert A.shape == (p, p)
    assert torch.equal(A, A.T)
    assert float((A - ref).abs().max()) <= 1e-12 * float(ref.abs().max())
    assert float(A[p // 3].abs().max()) == 0.0


def test_gram_keeps_dtype():
    J = torch.randn(30, 900, dtype=torch.float32)
    A = gram(J)
    assert A.dtype == torch.float32
    assert torch.allclose(A, J.T @ J, rtol=1e-4, atol=1e-3)


def _blocked_jacobian():
    """A stacked J of 5 residual blocks with a system's zero pattern: shared columns
    (0:60), 40 columns of each of 3 outputs (60:180, interleaved as in a KAN's last
    layer), a block that skips an output, two one-output blocks, a one-row block, and
    columns no block touches."""
    g = torch.Generator().manual_seed(3)
    rows = [(0, 300), (300, 600), (600, 700), (700, 800), (800, 801)]
    J = torch.randn(801, 200, generator=g, dtype=torch.float64)
    out = torch.arange(60, 180) % 3                             # output of each last-layer column
    uses = [(0, 1, 2), (0, 1), (0,), (1,), (2,)]                    # outputs each block reads
    for (a, b), reads in zip(rows, uses):
        for o in range(3):
            if o not in reads:
                J[a:b, 60:180][:, out == o] = 0.0
    J[:, 180:] = 0.0                                                 # never touched
    J[:, 7] = 0.0
    return J, rows


def test_grouped_gram_is_jtj_on_a_stack_of_blocks():
    J, rows = _blocked_jacobian()
    ref = torch.einsum("mi,mj->ij", J, J)                            # independent truth
    flops, dense = structured_flops(J, rows)
    assert flops < 0.85 * dense                                      # the grouped route is taken
    A = gram(J, rows)
    assert torch.equal(A, A.T)
    assert float((A - ref).abs().max()) <= 1e-12 * float(ref.abs().max())
    live_ref = (J != 0).any(0)
    A_live, order = gram_live(J, rows)
    assert order is not None and torch.equal(torch.sort(order).values, live_ref.nonzero()[:, 0])
    assert torch.equal(A_live, A[order][:, order])
    # the same on a column-major J (stacked_jacobian's layout)
    Jc = J.T.contiguous().T
    assert float((gram(Jc, rows) - ref).abs().max()) <= 1e-12 * float(ref.abs().max())


def test_grouped_gram_keeps_a_nan_column_live():
    J, rows = _blocked_jacobian()
    J[100, 7] = float("nan")                                         # a column zero but for one NaN
    _, order = gram_live(J, rows)
    assert order is not None and 7 in order.tolist()


def test_dense_jacobian_stays_on_the_plain_product():
    J = torch.randn(200, 50, dtype=torch.float64)
    A, order = gram_live(J, [(0, 150), (150, 200)])
    assert order is None and torch.equal(A, gram(J))


# ---------------------------------------------------------------- a KAN system's own J
def _system_residual(x, w):
    import kanpinn as kp
    u, v, p = w[:, 0:1], w[:, 1:2], w[:, 2:3]
    gu, gv, gp = kp.grad(u, x), kp.grad(v, x), kp.grad(p, x)
    mx = u * gu[:, 0:1] + v * gu[:, 1:2] + gp[:, 0:1] - 0.05 * kp.laplacian(u, x)
    my = u * gv[:, 0:1] + v * gv[:, 1:2] + gp[:, 1:2] - 0.05 * kp.laplacian(v, x)
    return mx, my, gu[:, 0:1] + gv[:, 1:2]


def _system_jacobian(widths, grid, k, dtype, dead):
    """The structured J of a cavity-like system (outputs u, v, p; continuity never reads
    p, each wall block reads one output, a one-row pin on p) at a fresh KAN. ``dead``:
    the grids keep their range [-1, 1] around the unit square, so B-splines no point
    reaches give zero columns; else the grids are placed on the points (none)."""
    import kanpinn as kp
    from kanpinn.solver.lm import LevenbergMarquardt
    from kanpinn.solver.loss import Collocation, PINNLoss
    prob = kp.Problem(kp.Rectangle([0.0, 0.0], [1.0, 1.0]), _system_residual,
                      conditions=[kp.Dirichlet(lambda x: x[:, 1:2] * x[:, 0:1] * (1 - x[:, 0:1]), component=0),
                                  kp.Dirichlet(0.0, component=1),
                                  kp.Data([[0.0, 0.0]], [[0.0]], component=2)])
    model = kp.KAN(widths, grid=grid, k=k, seed=0, dtype=dtype)
    col = Collocation(prob, 160, 64, "sobol", 0, dtype, "cpu")
    if not dead:
        model.update_grid(col.all_interior().detach())
    lm = LevenbergMarquardt(PINNLoss(prob, model, col, {}), [p for p in model.parameters() if p.requires_grad])
    J, _, _ = lm._jacobian()
    return J, lm.rows


@pytest.mark.parametrize("widths", [[2, 6, 3], [2, [4, 2], 3]], ids=["sum", "mult"])
@pytest.mark.parametrize("grid,k", [(5, 3), (5, 5), (20, 3), (20, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("dead", [True, False], ids=["dead", "live"])
def test_blocked_gram_is_torch_jtj_on_a_kan_system(widths, grid, k, dtype, dead):
    J, rows = _system_jacobian(widths, grid, k, dtype, dead)
    zero = ~(J != 0).any(0)
    if dead:
        assert bool(zero.any())                               # B-splines no point reaches
    ref = J.T @ J                                             # torch's product of the same J: the truth
    tol = (1e-12 if dtype == torch.float64 else 2e-5) * float(ref.abs().max())
    for A in (gram(J, rows), gram(J)):
        assert A.dtype == dtype and torch.equal(A, A.T)
        assert float((A - ref).abs().max()) <= tol
    A, order = gram_live(J, rows)
    if order is None:
        assert float((A - ref).abs().max()) <= tol
    else:
        # the grouped route: JᵀJ on the live columns, which are exactly J's non-zero ones
        assert torch.equal(torch.sort(order).values, (~zero).nonzero()[:, 0])
        assert float((A - ref[order][:, order]).abs().max()) <= tol


def test_runs_split_equally_spaced_columns_from_the_rest():
    from kanpinn.solver import gram as g
    cols = list(range(0, 40)) + [41, 45] + list(range(50, 50 + 3 * 40, 3)) + [500]
    runs, loose = g._runs(cols)
    assert runs == [(0, 1, 40), (50, 3, 40)]
    assert loose == [41, 45, 500]
