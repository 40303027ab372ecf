"""Sparsity loss, pruning and FLOP counts (kanpinn.kan_tools) against hand computations."""

import copy
import math

import numpy as np
import pytest
import torch

import kanpinn as kp
from kanpinn import kan_tools
from kanpinn.edge_formula import EdgeFormula
from kanpinn.errors import KanpinnError

F64 = torch.float64


def rand(n, d, seed=0, lo=-1.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, d, generator=g, dtype=F64)


def silu(x):
    return x * torch.sigmoid(x)


def zero_node(model, l, j):
    """Zero every edge into and out of hidden sum node j of node layer l."""
    with torch.no_grad():
        for layer, idx in ((model.layers[l - 1], (slice(None), slice(None), j)),
                           (model.layers[l], (j, slice(None), slice(None)))):
            layer.coef[idx] = 0.0
        model.layers[l - 1].scale_base[:, j] = 0.0
        model.layers[l].scale_base[j, :] = 0.0


def hand_edge_values(layer, x):
    """φ_io(x_i) from the parameters, with the dense basis (independent of edge_values)."""
    from kanpinn import bsplines
    (B,) = bsplines.dense_basis(x, layer.basis.knots, layer.basis.k, 0)       # (N, in, nb)
    out = torch.zeros(x.shape[0], layer.in_dim, layer.out_dim, dtype=x.dtype)
    for i in range(layer.in_dim):
        for o in range(layer.out_dim):
            sp = B[:, i, :] @ layer.coef[i, :, o]
            out[:, i, o] = layer.mask[i, o] * (layer.scale_base[i, o] * silu(x[:, i]) + layer.scale_sp[i, o] * sp)
    return out


# ------------------------------------------------------------------ regularization


def test_regularization_matches_hand_formula_and_is_differentiable():
    model = kp.KAN([2, 3, 1], grid=5, k=3, seed=0, dtype=F64)
    x = rand(64, 2, seed=1)
    l1w, entw, cw, cdw = 0.7, 1.3, 0.2, 0.4
    reg = kan_tools.regularization(model, x, l1=l1w, entropy=entw, coef=cw, coef_diff=cdw)
    # by hand, layer by layer
    expected = 0.0
    h = x
    for layer in model.layers:
        phi = hand_edge_values(layer, h)
        A = phi.abs().mean(0)
        p = A / A.sum()
        expected += l1w * A.sum() - entw * (p * torch.log(p)).sum()
        expected += cw * layer.coef.abs().mean() + cdw * (layer.coef[:, 1:] - layer.coef[:, :-1]).abs().mean()
        h = phi.sum(1)
    torch.testing.assert_close(reg, expected.detach(), rtol=1e-9, atol=1e-12)
    assert reg.requires_grad
    reg.backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # the method on the model is the same function
    torch.testing.assert_close(model.regularization(x, l1w, entw, cw, cdw), reg.detach())


def test_regularization_gradcheck_and_terms_off():
    model = kp.KAN([2, 2, 1], grid=3, k=3, seed=2, dtype=F64)
    x = rand(8, 2, seed=3)
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in model.named_parameters()]

    class Reg(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, z):
            return kan_tools.regularization(self.m, z, 1.0, 2.0)

    reg = Reg(model)
    f = lambda *ps: torch.func.functional_call(reg, {"m." + n: p for n, p in zip(names, ps)}, (x,))
    assert torch.autograd.gradcheck(f, tuple(params), eps=1e-6, atol=1e-6, rtol=1e-5)
    zero = kan_tools.regularization(model, x, l1=0.0, entropy=0.0)
    assert float(zero.detach()) == 0.0
    # entropy of a layer with a single non-zero edge is 0; of n equal edges is log n
    m1 = kp.KAN([3, 1], grid=3, seed=0, dtype=F64)
    with torch.no_grad():
        m1.layers[0].coef.zero_()
        m1.layers[0].scale_base.fill_(1.0)
    xe = torch.full((4, 3), 0.5, dtype=F64)
    torch.testing.assert_close(kan_tools.regularization(m1, xe, l1=0.0, entropy=1.0),
                               torch.tensor(math.log(3), dtype=F64), rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        m1.layers[0].mask[1:] = 0.0
    ent = kan_tools.regularization(m1, xe, l1=0.0, entropy=1.0)
    assert abs(float(ent.detach())) < 1e-9
    # fully masked layer: finite (no 0/0)
    with torch.no_grad():
        m1.layers[0].mask.zero_()
    assert torch.isfinite(kan_tools.regularization(m1, xe))


def test_regularization_rejects_mlp():
    with pytest.raises(KanpinnError):
        kan_tools.regularization(kp.MLP([2, 4, 1]), torch.zeros(3, 2))


# ------------------------------------------------------------------ pruning


def test_prune_removes_dead_nodes_exactly():
    model = kp.KAN([2, 5, 1], grid=5, k=3, seed=4, dtype=F64)
    for j in (0, 2, 3):
        zero_node(model, 1, j)
    x = rand(200, 2, seed=5)
    small = kan_tools.prune(model, threshold=1e-2, x=x)
    assert small is not model
    assert [tuple(w) for w in small.widths] == [(2, 0), (2, 0), (1, 0)]
    assert small.layers[0].coef.shape == (2, 8, 2) and small.layers[1].coef.shape == (2, 8, 1)
    assert small.layers[0].in_dim == 2 and small.layers[0].out_dim == 2 and small.layers[1].in_dim == 2
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-14)
    # derivatives too (jets work on the pruned model)
    xg = x.clone().requires_grad_(True)
    _, _, h_small = small.forward_jet(xg, 2)
    _, _, h_big = model.forward_jet(xg, 2)
    torch.testing.assert_close(h_small, h_big, rtol=1e-12, atol=1e-12)
    # also without data (scores on each layer's grid range), and via the method
    for s2 in (kan_tools.prune(model, 1e-2), model.prune(1e-2, x)):
        assert [tuple(w) for w in s2.widths] == [(2, 0), (2, 0), (1, 0)]
        torch.testing.assert_close(s2(x), model(x), rtol=0, atol=1e-14)
    # the original is untouched
    assert model.layers[0].coef.shape == (2, 8, 5)
    # the pruned model trains: its parameters are leaves with gradients
    small(x).sum().backward()
    assert all(p.grad is not None for p in small.parameters())
    assert small.config()["widths"] == [2, 2, 1]


def test_prune_keeps_nonuniform_knots_and_masks():
    model = kp.KAN([2, 4, 2], grid=6, k=3, seed=6, dtype=F64)
    x = rand(300, 2, seed=7) ** 3
    model.update_grid(x)
    zero_node(model, 1, 1)
    with torch.no_grad():
        model.layers[1].mask[3, 0] = 0.0          # a masked edge on a kept node
    small = model.prune(1e-3, x)
    assert small.widths[1] == (3, 0)
    torch.testing.assert_close(small.layers[1].basis.knots, model.layers[1].basis.knots[[0, 2, 3]])
    assert small.layers[1].mask[2, 0] == 0.0
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-14)


def test_prune_approximate_when_weak_not_zero():
    model = kp.KAN([2, 4, 1], grid=5, k=3, seed=8, dtype=F64)
    with torch.no_grad():                         # node 2: tiny outgoing edge
        model.layers[1].coef[2] *= 1e-4
        model.layers[1].scale_base[2] *= 1e-4
    x = rand(200, 2, seed=9)
    small = model.prune(1e-2, x)
    assert small.widths[1] == (3, 0)
    scores = kan_tools.edge_scores(model, x)
    dropped = scores[1][2].sum()
    assert (small(x) - model(x)).abs().mean() <= dropped * 1.0001 + 1e-15
    assert (small(x) - model(x)).abs().max() > 0


def test_prune_keeps_multiplication_nodes_and_symbolic_edges():
    model = kp.KAN([2, [3, 2], 1], grid=4, k=3, seed=10, dtype=F64)
    assert model.layers[0].out_dim == 3 + 4 and model.layers[1].in_dim == 5
    zero_node(model, 1, 1)
    model.layers[0].fix_symbolic(0, 2, EdgeFormula("sin", lambda z: z ** 2, dtype=F64))
    # mult node 0 (input 3 of layer 1) is fed by outputs 3, 4 of layer 0; weaken it: kept anyway
    with torch.no_grad():
        model.layers[0].coef[:, :, 3] *= 1e-8
        model.layers[0].scale_base[:, 3] *= 1e-8
    x = rand(100, 2, seed=11)
    small = model.prune(1e-2, x)
    assert small.widths[1] == (2, 2)
    assert small.layers[0].out_dim == 2 + 4 and small.layers[1].in_dim == 4
    assert set(small.layers[0].symbolic.keys()) == {"0_1"}          # node 2 is now node 1
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-13)


def test_prune_never_empties_a_layer():
    model = kp.KAN([2, 3, 1], grid=3, seed=12, dtype=F64)
    small = model.prune(threshold=1e9)
    assert small.widths[1] == (1, 0)
    assert small(rand(5, 2)).shape == (5, 1)


def test_prune_edges_masks_weak_edges_in_place():
    model = kp.KAN([2, 3, 1], grid=5, seed=13, dtype=F64)
    with torch.no_grad():
        model.layers[0].coef[1, :, 2] = 0.0
        model.layers[0].scale_base[1, 2] = 0.0
        model.layers[1].coef[0, :, 0] *= 1e-6
        model.layers[1].scale_base[0, 0] *= 1e-6
    x = rand(100, 2, seed=14)
    y0 = model(x)
    out = kan_tools.prune_edges(model, 1e-3, x)
    assert out is model
    expected0 = torch.ones(2, 3, dtype=F64)
    expected0[1, 2] = 0
    torch.testing.assert_close(model.layers[0].mask, expected0)
    torch.testing.assert_close(model.layers[1].mask, torch.tensor([[0.0], [1.0], [1.0]], dtype=F64))
    assert (model(x) - y0).abs().max() < 1e-5
    scores = kan_tools.edge_scores(model, x)
    assert scores[0][1, 2] == 0 and scores[1][0, 0] == 0


# ------------------------------------------------------------------ FLOPs


def test_flops_formulas():
    kan = kp.KAN([2, 10, 1], grid=5, k=3)
    k = 3
    per_input = (k + 1) ** 2 + kan_tools.SILU_FLOPS
    per_edge = 2 * (k + 1) + 3
    expected = (2 * per_input + 2 * 10 * per_edge) + (10 * per_input + 10 * 1 * per_edge)
    assert kan_tools.flops_per_point(kan) == expected
    assert kan_tools.kan_flops_per_point(kan) == expected
    # Yu et al. style (basis per edge) costs more; the count does not depend on G for
    # local B-splines
    assert kan_tools.kan_flops_per_point(kan, per_edge_basis=True) > expected
    assert kan_tools.flops_per_point(kp.KAN([2, 10, 1], grid=20, k=3)) == expected
    # multiplication nodes add one FLOP each
    mk = kp.KAN([2, [1, 2], 1], grid=5, k=3)
    assert kan_tools.flops_per_point(mk) == (2 * per_input + 2 * 5 * per_edge) + (3 * per_input + 3 * per_edge) + 2
    # MLP: 2ab per dense layer + activation per hidden unit
    mlp = kp.MLP([2, 50, 50, 1], activation="tanh")
    act = kan_tools.ACTIVATION_FLOPS["tanh"]
    assert kan_tools.mlp_flops_per_point(mlp) == 2 * (2 * 50 + 50 * 50 + 50) + act * 100
    assert kan_tools.flops_per_point(mlp) == kan_tools.mlp_flops_per_point(mlp)
    for basis in ("chebyshev", "rbf", "fourier"):
        assert kan_tools.flops_per_point(kp.KAN([2, 3, 1], grid=6, basis=basis)) > 0
    with pytest.raises(KanpinnError):
        kan_tools.flops_per_point(torch.nn.Linear(2, 2))
