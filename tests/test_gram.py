"""The Gauss-Newton matrix of LM (``kanpinn.solver.gram``): the blocked symmetric product
equals JᵀJ, below and above the size where it splits the columns."""
import pytest
import torch

from kanpinn.solver.gram import gram


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
