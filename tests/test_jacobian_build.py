"""LM's J as ``stacked_jacobian`` builds it, with a KAN layer's B-spline coefficient
gradients written straight into J (``LocalColumns``), against the truth of plain torch
autograd: each residual row's gradient with respect to every parameter, one backward
pass per row. The model has a multiplication node; the residuals are a 3-field system
with second derivatives, a boundary block at other points, and a block that depends on
two evaluations (a periodic-like difference: its regions are written, then added to).
J is written into an ``out`` full of NaN, so a region that is not fully written shows."""
import pytest
import torch

import kanpinn as kp
from kanpinn import jet as jets
from kanpinn.errors import KanpinnError
from kanpinn.local_columns import LocalColumns
from kanpinn.solver.jacobian import stacked_jacobian


def points(n, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 2, generator=g, dtype=torch.float64) * 1.8 - 0.9).to(dtype).requires_grad_(True)


def residual_blocks(model, x, xa, xb):
    w = jets.evaluate(model, x, 2)
    u, v, p = w[:, 0:1], w[:, 1:2], w[:, 2:3]
    gu, gv, gp = kp.grad(u, x), kp.grad(v, x), kp.grad(p, x)
    r1 = u * gu[:, 0:1] + v * gu[:, 1:2] + gp[:, 0:1] - 0.05 * kp.laplacian(u, x)
    r2 = u * gv[:, 0:1] + v * gv[:, 1:2] + gp[:, 1:2] - 0.05 * kp.laplacian(v, x)
    r3 = kp.div(torch.cat([u, v], 1), x)
    wall = jets.strip(model(xa))[:, 1] - 0.5
    pair = jets.strip(model(xa))[:, 2] - jets.strip(model(xb))[:, 2]
    return [r1[:, 0], wall, r2[:, 0], r3[:, 0], pair]


def autograd_rows(blocks, params):
    rows = torch.cat(blocks)
    J = rows.new_empty(rows.shape[0], sum(p.numel() for p in params))
    for m in range(rows.shape[0]):
        grads = torch.autograd.grad(rows[m], params, retain_graph=True, allow_unused=True)
        J[m] = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
    return J


@pytest.mark.parametrize("k, grid", [(3, 5), (5, 40)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_stacked_jacobian_equals_autograd_rows(k, grid, dtype):
    model = kp.KAN([2, [2, 1], 3], grid=grid, k=k, seed=4, dtype=dtype)
    params = list(model.parameters())
    x, xa, xb = points(20, 0, dtype), points(8, 1, dtype), points(8, 2, dtype)
    with jets.recording() as records:
        blocks = residual_blocks(model, x, xa, xb)
    truth = autograd_rows(blocks, params)
    rows = truth.shape[0]
    out = truth.new_full((truth.shape[1] + 2, rows), float("nan")).T      # column-major, as LM keeps it
    J = stacked_jacobian(blocks, records, params, extra_columns=2, out=out)
    assert J.data_ptr() == out.data_ptr()
    tol = (1e-13 if dtype == torch.float64 else 2e-5) * float(truth.abs().max())
    torch.testing.assert_close(J[:, :-2], truth, rtol=0, atol=tol)
    assert float(J[:, -2:].abs().max()) == 0.0
    # a B-spline layer reaches only k+1 of its G+k basis functions per point and input
    # (the last block's rows see two points)
    coef = model.layers[0].coef
    n_in, nb, n_out = coef.shape
    assert nb == grid + k
    assert int((J[:-8, :coef.numel()] != 0).sum(1).max()) <= n_in * (k + 1) * n_out


def test_local_columns_dense_and_write_agree():
    g = torch.Generator().manual_seed(0)
    n, n_in, nb, w, o = 7, 3, 9, 4, 2
    first = torch.randint(0, nb - w + 1, (n, n_in), generator=g)
    values = torch.randn(2, n, n_in, w, o, generator=g, dtype=torch.float64)
    local = LocalColumns(first, values, nb)
    dense = local.dense()
    assert dense.shape == (2, n, n_in * nb * o)
    # by hand: entry [i, first + j, o] of each point's gradient
    by_hand = torch.zeros(2, n, n_in, nb, o, dtype=torch.float64)
    for b in range(2):
        for p in range(n):
            for i in range(n_in):
                by_hand[b, p, i, first[p, i]:first[p, i] + w] = values[b, p, i]
    assert torch.equal(dense, by_hand.reshape(2, n, -1))
    J = torch.full((n_in * nb * o + 1, 3 * n), float("nan"), dtype=torch.float64).T
    local.write(J[n:2 * n, :-1], block=1)
    assert torch.equal(J[n:2 * n, :-1], dense[1])
    local.write(J[n:2 * n, :-1], block=0, add=True)
    assert torch.equal(J[n:2 * n, :-1], dense[1] + dense[0])
    assert bool(J[:n].isnan().all()) and bool(J[:, -1].isnan().all())   # nothing outside the region
    with pytest.raises(KanpinnError):
        local.write(J[:n - 1, :-1], block=0)


@pytest.mark.parametrize("basis", ["chebyshev", "rbf", "fourier"])
def test_dense_bases_jacobian_equals_autograd_rows(basis):
    """Dense bases (every basis function non-zero) go through the rule's dense route."""
    model = kp.KAN([2, [2, 1], 3], grid=5, k=3, seed=4, dtype=torch.float64, basis=basis)
    params = list(model.parameters())
    x, xa, xb = points(20, 0, torch.float64), points(8, 1, torch.float64), points(8, 2, torch.float64)
    with jets.recording() as records:
        blocks = residual_blocks(model, x, xa, xb)
    truth = autograd_rows(blocks, params)
    J = stacked_jacobian(blocks, records, params)
    torch.testing.assert_close(J, truth, rtol=0, atol=1e-13 * float(truth.abs().max()))
