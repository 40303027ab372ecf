"""Systems keep their jets: slices and expressions of model outputs, the structured
Jacobian for a 3-field residual, a user's own loop on the jet path, operator validation.

Truths: nested autograd on the same model with the jet stripped (``jet.strip``), and
central finite differences of the residual vector for the Jacobian."""
import pytest
import torch

import kanpinn as kp
from kanpinn import jet as jets
from kanpinn.errors import KanpinnError
from kanpinn.solver.jacobian import NotPointwise, layer_jacobian, stacked_jacobian

F64 = torch.float64


def points(n=40, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g, dtype=F64) * 1.8 - 0.9).requires_grad_(True)


def navier_stokes(x, w, nu=0.05):
    """Kovasznay-like steady Navier-Stokes residuals of w = (u, v, p), plus an expression
    of the fields whose Laplacian is taken (jets through products, quotients, sin)."""
    u, v, p = w[:, 0:1], w[:, 1:2], w[:, 2:3]
    gu, gv, gp = kp.grad(u, x), kp.grad(v, x), kp.grad(p, x)
    r1 = u * gu[:, 0:1] + v * gu[:, 1:2] + gp[:, 0:1] - nu * kp.laplacian(u, x)
    r2 = u * gv[:, 0:1] + v * gv[:, 1:2] + gp[:, 1:2] - nu * kp.laplacian(v, x)
    r3 = kp.div(torch.cat([u, v], 1), x)
    r4 = kp.laplacian(u * v + torch.sin(p) - v / (2 + u ** 2), x) + kp.partial(p.exp() * 3.0, x, 1, 2)
    return [r1, r2, r3, r4]


def models():
    return [kp.KAN([2, 5, 3], grid=5, seed=1, dtype=F64), kp.MLP([2, 8, 3], seed=0, dtype=F64)]


@pytest.mark.parametrize("model", models(), ids=["KAN", "MLP"])
def test_system_operators_read_jets_and_match_autograd(model):
    x = points()
    w = jets.evaluate(model, x, 2)
    u = w[:, 0:1]
    assert jets.lookup(u, x) is not None                   # a slice keeps its jet
    assert jets.lookup(u * w[:, 1:2] - 2.0, x) is not None  # so does an expression
    fast = navier_stokes(x, w)
    slow = navier_stokes(x, jets.strip(model(x)))          # nested autograd
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # split / chunk / negative column indices / list indices
    a, b, c = w.split(1, dim=1)
    torch.testing.assert_close(kp.laplacian(c, x), kp.laplacian(w[:, -1:], x), rtol=0, atol=0)
    pair = w[:, [0, 2]]
    assert jets.lookup(pair, x).du.shape == (40, 2, 2)
    torch.testing.assert_close(kp.grad(a ** 3, x), kp.grad(jets.strip(a) ** 3, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("model", models(), ids=["KAN", "MLP"])
def test_system_structured_jacobian_matches_finite_differences(model):
    """Every residual of the 3-field system is covered by the layer records: J·v equals
    the central difference of the residual vector along a random parameter direction."""
    x = points()
    params = list(model.parameters())
    with jets.recording() as records:
        blocks = [r[:, 0] for r in navier_stokes(x, jets.evaluate(model, x, 2))]
    J = torch.cat([layer_jacobian(b, records, params) for b in blocks], 0)
    assert J.shape == (4 * 40, sum(p.numel() for p in params))

    def vector():
        return torch.cat([r[:, 0] for r in navier_stokes(x, jets.evaluate(model, x, 2))]).detach()

    def shift(v, s):
        with torch.no_grad():
            o = 0
            for p in params:
                p.add_(s * v[o:o + p.numel()].view_as(p))
                o += p.numel()

    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        v = torch.randn(J.shape[1], generator=gen, dtype=F64)
        v /= v.norm()
        eps = 1e-6
        shift(v, eps)
        plus = vector()
        shift(v, -2 * eps)
        minus = vector()
        shift(v, eps)
        fd = (plus - minus) / (2 * eps)
        assert float((J @ v - fd).norm() / fd.norm()) < 1e-6


@pytest.mark.parametrize("model", models() + [kp.KAN([2, [2, 1], 3], grid=4, seed=4, dtype=F64)],
                         ids=["KAN", "MLP", "MultKAN"])
def test_stacked_jacobian_equals_block_by_block(model):
    """LM's J: all blocks at once, the layers' rule called once for the blocks that share
    an evaluation (stacked signals), equals each block's Jacobian on its own, stacked;
    a block at other points (a boundary set) and a block that reaches only some outputs
    of a layer (continuity: no p) are in the mix."""
    x, xb = points(), points(15, seed=1)
    params = list(model.parameters())
    with jets.recording() as records:
        blocks = [r[:, 0] for r in navier_stokes(x, jets.evaluate(model, x, 2))]
        blocks.insert(1, jets.strip(model(xb))[:, 1] - 0.5)
    ref = torch.cat([layer_jacobian(b, records, params) for b in blocks], 0)
    J = stacked_jacobian(blocks, records, params, extra_columns=2)
    assert J.shape == (ref.shape[0], ref.shape[1] + 2)
    torch.testing.assert_close(J[:, :-2], ref, rtol=0, atol=1e-13 * float(ref.abs().max()))
    assert float(J[:, -2:].abs().max()) == 0.0


def test_lm_step_keeps_parameters_trainable_and_refuses_coupled_points():
    """LM evaluates its Jacobian with the parameters frozen (the rule, not autograd, gives
    their columns): they are trainable again after every step, and the finite-difference
    check still catches a residual the records do not cover."""
    from kanpinn.solver.lm import LevenbergMarquardt
    from kanpinn.solver.loss import Collocation, PINNLoss
    prob = kp.Problem(kp.Rectangle([0, 0], [1, 1]), lambda x, u: kp.laplacian(u, x) + 1.0,
                      conditions=[kp.Dirichlet(0.0)])
    model = kp.KAN([2, 4, 1], grid=4, seed=0, dtype=F64)
    col = Collocation(prob, 60, 20, "sobol", 0, F64, "cpu")
    params = list(model.parameters())
    lm = LevenbergMarquardt(PINNLoss(prob, model, col, {}), params)
    l0 = float(PINNLoss(prob, model, col, {}).loss()[0].detach())
    loss, _, accepted = lm.step()
    assert accepted and loss < l0
    assert all(p.requires_grad for p in params)
    coupled = kp.Problem(kp.Rectangle([0, 0], [1, 1]), lambda x, u: kp.laplacian(u, x) + u.mean(),
                         conditions=[kp.Dirichlet(0.0)])
    lm = LevenbergMarquardt(PINNLoss(coupled, model, Collocation(coupled, 60, 20, "sobol", 0, F64, "cpu"), {}),
                            params)
    with pytest.raises(NotPointwise):
        lm.step()
    assert all(p.requires_grad for p in params)


def test_recording_is_context_local_and_closes():
    model = kp.KAN([2, 3, 1], grid=5, seed=0, dtype=F64)
    x = points(10)
    assert jets._RECORDER.get() is None
    with jets.recording() as outer:
        jets.evaluate(model, x, 2)
        with jets.recording() as inner:
            model(x)
        assert len(inner) == 2                              # two layers, plain forward
    assert len(outer) == 2 and jets._RECORDER.get() is None
    jets.evaluate(model, x, 2)                              # nothing records outside
    assert len(outer) == 2


def test_jacobian_refuses_coupled_points():
    model = kp.KAN([2, 3, 1], grid=5, seed=0, dtype=F64)
    x = points(12)
    with jets.recording() as records:
        u = jets.evaluate(model, x, 2)
    block = kp.laplacian(u, x)[:6, 0] - u[6:, 0]            # rows mix two halves: still 6 of 12
    with pytest.raises(NotPointwise, match="12 points"):
        layer_jacobian(block, records, list(model.parameters()))


@pytest.mark.parametrize("model", [kp.KAN([2, 6, 1], grid=5, seed=2, dtype=F64),
                                   kp.KAN([2, [1, 1], 1], grid=4, seed=4, dtype=F64),
                                   kp.MLP([2, 10, 1], seed=0, dtype=F64)], ids=["KAN", "MultKAN", "MLP"])
def test_user_loop_takes_the_jet_path_and_matches_nested_autograd(model):
    """``u = model(x)`` in a user's own loop: u itself, its Laplacian, a first derivative
    and a mixed derivative in one loss; gradients equal nested autograd to 1e-10."""
    x = points(30)

    def loss(u):
        return (((kp.laplacian(u, x) - 1.0) ** 2).mean() + (u ** 2).mean()
                + (kp.partial(kp.partial(u, x, 0), x, 1) ** 2).mean() + (kp.partial(u, x, 1) ** 2).mean())

    u = model(x)
    assert isinstance(u, jets.JetTensor) and jets.lookup(u, x) is not None
    params = list(model.parameters())
    fast = torch.autograd.grad(loss(model(x)), params)
    slow = torch.autograd.grad(loss(jets.strip(model(x))), params)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    with torch.no_grad():                                   # no grad wanted: a plain tensor
        assert type(model(x)) is torch.Tensor
    assert type(model(x.detach())) is torch.Tensor


def test_model_call_computes_the_jet_once_and_plain_values_without_grad():
    """model(x) with x requiring grad runs forward_jet once (its value is the output);
    derivatives of the output and of expressions of it reuse that jet; without grad the
    plain forward runs, with the same values."""
    model = kp.KAN([2, 4, 1], grid=5, seed=0, dtype=F64)
    calls = []
    inner = model.forward_jet

    def counting(x, order=2):
        calls.append(order)
        return inner(x, order)
    model.forward_jet = counting
    x = points(20)
    u = model(x)
    r = (u - 1.0) ** 2
    kp.grad(u, x), kp.laplacian(u, x), kp.laplacian(r, x)
    assert calls == [2]
    with torch.no_grad():
        torch.testing.assert_close(model(x), u.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(jets.evaluate(model, x, 0), u, rtol=1e-12, atol=1e-12)
    assert calls == [2] and type(jets.evaluate(model, x, 0)) is torch.Tensor
    # an expression's jet is formed only when an operator asks for it
    w = kp.KAN([2, 4, 2], grid=5, seed=0, dtype=F64)(x)
    e = w[:, 0:1] * w[:, 1:2]
    assert isinstance(e._jet_src, type(lambda: 0))        # not yet formed
    kp.laplacian(e, x)
    assert isinstance(e._jet_src, jets.Jet)


def test_in_place_change_and_foreign_input_drop_the_jet():
    model = kp.KAN([2, 4, 2], grid=5, seed=0, dtype=F64)
    x = points(20)
    w = model(x)
    u = w[:, 0:1] * 1.0
    u.add_(1.0)                                             # its jet would be stale
    assert jets.lookup(u, x) is None
    torch.testing.assert_close(kp.laplacian(u, x), kp.laplacian(jets.strip(w)[:, 0:1], x))
    # an operand that depends on x through autograd: no jet, autograd is exact
    v = w[:, 1:2] * torch.sin(x[:, 0:1])
    assert jets.lookup(v, x) is None
    ref = kp.laplacian(jets.strip(w)[:, 1:2] * torch.sin(x[:, 0:1]), x)
    torch.testing.assert_close(kp.laplacian(v, x), ref)
    # a parameter (a leaf other than x) is a constant
    k = torch.tensor(0.7, dtype=F64, requires_grad=True)
    assert jets.lookup(k * w[:, 1:2], x) is not None
    torch.testing.assert_close(kp.laplacian(k * w[:, 1:2], x), k * kp.laplacian(w[:, 1:2], x))


def test_laplacian_dims_and_partial_index_are_validated():
    x = points(5, d=2)
    u = (x ** 3).sum(1, keepdim=True)
    with pytest.raises(KanpinnError, match=r"dims entry 3 out of range .*2 columns"):
        kp.laplacian(u, x, dims=[3])
    with pytest.raises(KanpinnError, match=r"names a column twice"):
        kp.laplacian(u, x, dims=[0, 0])
    with pytest.raises(KanpinnError, match=r"names a column twice"):
        kp.laplacian(u, x, dims=[1, -1])
    with pytest.raises(KanpinnError, match=r"dims=\[\] selects no column"):
        kp.laplacian(u, x, dims=[])
    with pytest.raises(KanpinnError, match="list of column indices"):
        kp.laplacian(u, x, dims=1)
    with pytest.raises(KanpinnError, match="integer column index"):
        kp.laplacian(u, x, dims=[0.5])
    with pytest.raises(KanpinnError, match="integer column index"):
        kp.partial(u, x, 1.0)
    with pytest.raises(KanpinnError, match="integer column index"):
        kp.partial(u, x, True)
    with pytest.raises(KanpinnError, match=r"variable index -3 out of range"):
        kp.partial(u, x, -3)
    with pytest.raises(KanpinnError, match="order must be an integer"):
        kp.partial(u, x, 0, 1.5)
    # valid spellings keep working: 6 x0 + 6 x1 and 6 x1
    torch.testing.assert_close(kp.laplacian(u, x, dims=[-1]), 6 * x[:, 1:2])
    torch.testing.assert_close(kp.laplacian(u, x, dims=(0, 1)), 6 * x.sum(1, keepdim=True))
