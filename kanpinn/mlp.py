"""The MLP baseline: dense layers and a smooth activation, with the same jet interface as
the KAN so both models get the same fast derivative path in the solver."""
from __future__ import annotations

import torch
from torch import nn

from . import jet as jets
from .errors import check_model_input
from .options import check_mlp_arguments

__all__ = ["MLP", "ACTIVATIONS"]


# Each activation returns its value and derivatives up to ``order`` (<= 4, jet.MAX_ORDER;
# orders 3 and 4 only for a jet of that order: the order-2 path is unchanged).

def _tanh(x, order):
    t = torch.tanh(x)
    out = [t]
    if order >= 1:
        out.append(1 - t * t)
    if order >= 2:
        out.append(-2 * t * (1 - t * t))
    if order >= 3:                      # tanh^(r) a polynomial in t (tanh' = 1 - t²)
        P = jets.chain_polynomials([1.0, 0.0, -1.0], order)
        out += [jets.horner(P[r - 1], t) for r in range(3, order + 1)]
    return out


def _sin(x, order):
    s, c = torch.sin(x), torch.cos(x)
    return [s, c, -s, -c, s][: order + 1]


def _silu(x, order):
    from .layer_jet import silu_derivatives
    return silu_derivatives(x, order)


def _softplus(x, order):
    s = torch.sigmoid(x)
    out = [nn.functional.softplus(x), s, s * (1 - s)][: order + 1]
    if order >= 3:                      # softplus^(r) = σ^(r-1), a polynomial in s
        P = jets.chain_polynomials([0.0, 1.0, -1.0], order - 1)
        out += [jets.horner(P[r - 2], s) for r in range(3, order + 1)]
    return out


def _gelu(x, order):
    # exact GELU: x Φ(x); Φ' = φ
    cdf = 0.5 * (1 + torch.erf(x / 2 ** 0.5))
    pdf = torch.exp(-0.5 * x * x) / (2 * torch.pi) ** 0.5
    out = [x * cdf, cdf + x * pdf, (2 - x * x) * pdf][: order + 1]
    # GELU^(n) = x Φ^(n) + n Φ^(n-1), Φ^(n) = (-1)^(n-1) He_(n-1)(x) φ (probabilists' Hermite)
    if order >= 3:
        out.append((x * x - 4) * x * pdf)
    if order >= 4:
        x2 = x * x
        out.append(((7 - x2) * x2 - 4) * pdf)
    return out


def _linear_rule(lin, rows):
    """The structured-Jacobian rule of a linear layer evaluated on input rows (value row
    (1, N, in), then the jet's gradient and curvature rows (d, N, in) or None): point n's
    gradient is Σ_rows δ[n]·row[n]ᵀ for the weight and δ of the value row for the bias,
    where δ are the gradients at the layer's outputs (one per row group)."""
    def per_point_grads(deltas):
        gw, gb = None, None
        for row, delta in zip(rows, deltas):
            if row is None or delta is None:
                continue
            delta = delta if delta.dim() == 3 else delta[None]                # (J, N, out)
            t = torch.einsum("jno,jni->noi", delta, row.expand(delta.shape[0], *row.shape[1:]))
            gw = t if gw is None else gw + t
            if row is rows[0]:
                gb = delta[0]
        n = next(d for d in deltas if d is not None).shape[-2]
        out = {lin.weight: gw.reshape(n, -1)}
        out[lin.bias] = gb if gb is not None else gw.new_zeros(n, lin.bias.numel())
        return out
    return per_point_grads


ACTIVATIONS = {"tanh": _tanh, "sin": _sin, "silu": _silu, "softplus": _softplus, "gelu": _gelu}


class MLP(nn.Module):
    """Fully connected network. Input (N, widths[0]) -> output (N, widths[-1]).

    Xavier-normal weights and zero biases (the usual PINN setup, as in DeepXDE).

    Example:

    >>> model = kp.MLP([2, 50, 50, 50, 50, 1], activation="tanh", seed=0)
    >>> model(torch.rand(100, 2)).shape      # (N, 2) -> (N, 1)
    torch.Size([100, 1])
    """

    def __init__(self, widths, activation="tanh", seed=None, dtype=None):
        super().__init__()
        a = check_mlp_arguments(widths, activation, seed, dtype, ACTIVATIONS)   # checked at the door
        self.widths = a["widths"]
        self.activation = activation
        seed = a["seed"]
        dtype = a["dtype"] or torch.get_default_dtype()
        self.linears = nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in zip(self.widths[:-1], self.widths[1:]))
        self.init_seed = seed       # None: kp.solve seeds the initialisation (repeatable runs)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed=None):
        """Xavier-normal weights, zero biases."""
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        for lin in self.linears:
            b, a = lin.weight.shape
            std = (2.0 / (a + b)) ** 0.5
            lin.weight.copy_(torch.randn(b, a, generator=gen, dtype=lin.weight.dtype).to(lin.weight.device) * std)
            lin.bias.zero_()
        return self

    @property
    def width_in(self):
        return self.widths[0]

    @property
    def width_out(self):
        return self.widths[-1]

    def config(self):
        return {"type": "MLP", "widths": self.widths, "activation": self.activation}

    def _check_input(self, x):
        check_model_input("MLP", x, self.width_in, next(self.parameters()))

    def forward(self, x):
        """x: (N, widths[0]) -> (N, widths[-1]); with x requiring grad the output carries
        its jet, as a KAN's does (``KAN.forward``)."""
        if isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled():
            return jets.evaluate(self, x, 2)
        return self.forward_values(x)

    def forward_values(self, x):
        """The output without derivatives."""
        self._check_input(x)
        y = jets.strip(x)
        act = ACTIVATIONS[self.activation]
        for li, lin in enumerate(self.linears):
            out = lin(y)
            jets.record((out,), _linear_rule(lin, [y[None]]), y.shape[0])
            y = out if li == len(self.linears) - 1 else act(out, 0)[0]
        return y

    def forward_jet(self, x, order=2):
        """Value, gradient (N, m, d) and Hessian diagonal (N, m, d) w.r.t. x; for
        ``order`` 3 or 4 also the diagonal third (and fourth) derivatives (N, m, d)."""
        self._check_input(x)
        if order > 2:
            return self._forward_jet_high(x, min(order, jets.MAX_ORDER))
        act = ACTIVATIONS[self.activation]
        d = x.shape[1]
        # value (N, w), gradient rows G (d, N, w) and curvature rows H (d, N, w) are kept
        # apart: stacking them would make every backward pass zero-fill and copy slices
        y = x
        G = torch.eye(d, dtype=x.dtype, device=x.device)[:, None, :].expand(d, x.shape[0], d)
        H = torch.zeros_like(G) if order >= 2 else None
        for li, lin in enumerate(self.linears):
            W = lin.weight.T
            zy, zG = torch.addmm(lin.bias, y, W), torch.matmul(G, W)
            zH = torch.matmul(H, W) if H is not None else None
            jets.record((zy, zG, zH), _linear_rule(lin, [y[None], G, H]), y.shape[0])
            if li == len(self.linears) - 1:
                y, G, H = zy, zG, zH
                break
            f = act(zy, max(order, 1))
            y, G = f[0], f[1] * zG
            if H is not None:
                H = f[2] * zG * zG + f[1] * zH
        g = G.permute(1, 2, 0)
        h = H.permute(1, 2, 0) if H is not None else None
        return y, g, h

    def _forward_jet_high(self, x, order):
        """``forward_jet`` for order 3, 4: derivative rows D_k (d, N, w) per order, each
        linear layer maps them all (z_k = D_k W) and each activation composes by Faà di
        Bruno (``jet.faa_di_bruno``). The linear rule takes any number of row groups."""
        act = ACTIVATIONS[self.activation]
        d = x.shape[1]
        y = x
        G = torch.eye(d, dtype=x.dtype, device=x.device)[:, None, :].expand(d, x.shape[0], d)
        D = [G] + [torch.zeros_like(G)] * (order - 1)
        for li, lin in enumerate(self.linears):
            W = lin.weight.T
            zy, zD = torch.addmm(lin.bias, y, W), [torch.matmul(t, W) for t in D]
            jets.record((zy, *zD), _linear_rule(lin, [y[None], *D]), y.shape[0])
            if li == len(self.linears) - 1:
                y, D = zy, zD
                break
            f = act(zy, order)
            y, D = f[0], jets.faa_di_bruno(f[1:], zD)
        return (y, *(t.permute(1, 2, 0) for t in D))

    @property
    def n_parameters(self):
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
