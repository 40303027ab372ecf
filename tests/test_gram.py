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
