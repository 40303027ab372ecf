"""Differential operators for PDE residuals: grad, partial, laplacian, div.

Each takes ``u`` computed from ``x`` (x requires grad). When ``u`` carries a jet (see
``kanpinn.jet``) the derivatives are read from it; otherwise, or for what the jet does not
hold (mixed or third derivatives), autograd computes them with ``create_graph=True`` so
the result stays differentiable for training.
"""
from __future__ import annotations

import torch

from .errors import KanpinnError
from .jet import lookup

__all__ = ["grad", "partial", "laplacian", "div"]


def _check(u: torch.Tensor, x: torch.Tensor, name: str, one_column=True):
    if not isinstance(u, torch.Tensor) or not isinstance(x, torch.Tensor):
        raise KanpinnError(f"{name}(u, x) takes tensors, got {type(u).__name__} and {type(x).__name__}")
    if x.dim() != 2:
        raise KanpinnError(f"{name}: x must be (N, d), got shape {tuple(x.shape)}")
    if u.dim() != 2 or u.shape[0] != x.shape[0]:
        raise KanpinnError(f"{name}: u must be (N, 1) with N = {x.shape[0]}, got shape {tuple(u.shape)}")
    if one_column and u.shape[1] != 1:
        raise KanpinnError(f"{name}: u must have one column, got {u.shape[1]}; pass u[:, i:i+1]")


def _autograd(y: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    if not x.requires_grad:
        raise KanpinnError(f"{name}: x does not require grad; call x.requires_grad_() before computing u")
    if not y.requires_grad:
        # y does not depend on x at all (a constant): its derivative is zero
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def grad(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gradient of a scalar field. u: (N, 1), x: (N, d) -> (N, d)."""
    _check(u, x, "grad")
    jet = lookup(u, x)
    if jet is not None:
        return jet.du[:, 0, :]
    return _autograd(u, x, "grad")


def partial(u: torch.Tensor, x: torch.Tensor, i: int, order: int = 1) -> torch.Tensor:
    """∂^order u / ∂x_i^order. u: (N, 1), x: (N, d) -> (N, 1)."""
    _check(u, x, "partial")
    d = x.shape[1]
    if not (-d <= i < d):
        raise KanpinnError(f"partial: variable index {i} out of range for x with {d} columns")
    i = i % d
    if order < 0:
        raise KanpinnError(f"partial: order must be >= 0, got {order}")
    if order == 0:
        return u
    jet = lookup(u, x)
    if jet is not None:
        if order == 1:
            return jet.du[:, 0, i:i + 1]
        if jet.d2u is not None:
            d2 = jet.d2u[:, 0, i:i + 1]
            for _ in range(order - 2):
                d2 = _autograd(d2, x, "partial")[:, i:i + 1]
            return d2
        first = jet.du[:, 0, i:i + 1]
    else:
        first = grad(u, x)[:, i:i + 1]
    for _ in range(order - 1):
        first = _autograd(first, x, "partial")[:, i:i + 1]
    return first


def laplacian(u: torch.Tensor, x: torch.Tensor, dims=None) -> torch.Tensor:
    """Σ_i ∂²u/∂x_i² over ``dims`` (default all columns). u: (N, 1), x: (N, d) -> (N, 1)."""
    _check(u, x, "laplacian")
    d = x.shape[1]
    dims = list(range(d)) if dims is None else [int(i) % d for i in dims]
    jet = lookup(u, x)
    if jet is not None and jet.d2u is not None:
        return jet.d2u[:, 0, dims].sum(dim=1, keepdim=True)
    return sum(partial(u, x, i, 2) for i in dims)


def div(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Divergence of a vector field. v: (N, d), x: (N, d) -> (N, 1)."""
    if v.dim() != 2 or v.shape != x.shape:
        raise KanpinnError(f"div: v must have the shape of x {tuple(x.shape)}, got {tuple(v.shape)}")
    return sum(_autograd(v[:, i:i + 1], x, "div")[:, i:i + 1] for i in range(x.shape[1]))
