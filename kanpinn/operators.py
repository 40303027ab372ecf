"""Differential operators for PDE residuals: grad, partial, laplacian, div.

Each takes ``u`` computed from ``x`` (x requires grad). When ``u`` carries a jet (see
``kanpinn.jet``: a model's output, a column slice of it, or an expression of those) the
derivatives are read from it; otherwise, or for what the jet does not hold (mixed
derivatives, orders above the jet's: 2 unless the model was asked for 3 or 4), autograd
computes them with ``create_graph=True`` so the result stays differentiable for training.
"""
from __future__ import annotations

import operator

import numpy as np
import torch

from .errors import KanpinnError
from .jet import lookup, note_demand

__all__ = ["grad", "partial", "laplacian", "div"]


def _check(u: torch.Tensor, x: torch.Tensor, name: str, one_column=True):
    if not isinstance(u, torch.Tensor) or not isinstance(x, torch.Tensor):
        raise KanpinnError(f"{name}(u, x) takes tensors, got {type(u).__name__} and {type(x).__name__}")
    # each shape read of a jet-carrying tensor passes its __torch_function__: read once
    xs, us = tuple(x.shape), tuple(u.shape)
    if len(xs) != 2:
        raise KanpinnError(f"{name}: x must be (N, d), got shape {xs}")
    if len(us) != 2 or us[0] != xs[0]:
        raise KanpinnError(f"{name}: u must be (N, 1) with N = {xs[0]}, got shape {us}")
    if one_column and us[1] != 1:
        raise KanpinnError(f"{name}: u must have one column, got {us[1]}; pass u[:, i:i+1]")


def _index(i, d: int, name: str, what: str) -> int:
    """A column index of x (negative counts from the end), checked."""
    try:
        if isinstance(i, bool):
            raise TypeError
        i = operator.index(i)
    except TypeError:
        raise KanpinnError(f"{name}: {what} must be an integer column index of x, got {i!r}") from None
    if not (-d <= i < d):
        raise KanpinnError(f"{name}: {what} {i} out of range for x with {d} columns "
                           f"(allowed: {-d} .. {d - 1})")
    return i % d


def _dims(dims, d: int) -> list:
    """``laplacian``'s dims: a non-empty list of distinct column indices of x."""
    if dims is None:
        return list(range(d))
    if not hasattr(dims, "__iter__") or (isinstance(dims, torch.Tensor) and dims.dim() == 0):
        raise KanpinnError(f"laplacian: dims must be a list of column indices of x, got {dims!r}")
    cols = [_index(i, d, "laplacian", "dims entry") for i in dims]
    if not cols:
        raise KanpinnError("laplacian: dims=[] selects no column; pass None for all columns "
                           f"or indices in 0 .. {d - 1}")
    if len(set(cols)) != len(cols):
        raise KanpinnError(f"laplacian: dims={list(dims)!r} names a column twice (as {cols}); "
                           "each column counts once")
    return cols


def _autograd(y: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    if not x.requires_grad:
        raise KanpinnError(f"{name}: x does not require grad; call x.requires_grad_() before computing u")
    if not y.requires_grad:
        # y does not depend on x at all (a constant): its derivative is zero
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def grad(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gradient of a scalar field. u: (N, 1), x: (N, d) -> (N, d).

    ``x`` must require grad and ``u`` be computed from it; the result keeps its graph,
    so it can enter a loss.

    Example (u = x^2 y, grad u = (2 x y, x^2)):

    >>> x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> u = x[:, 0:1] ** 2 * x[:, 1:2]
    >>> kp.grad(u, x).tolist()
    [[4.0, 1.0], [24.0, 9.0]]
    """
    _check(u, x, "grad")
    jet = lookup(u, x)
    if jet is not None:
        return jet.du[:, 0, :]
    return _autograd(u, x, "grad")


def partial(u: torch.Tensor, x: torch.Tensor, i: int, order: int = 1) -> torch.Tensor:
    """∂^order u / ∂x_i^order. u: (N, 1), x: (N, d) -> (N, 1).

    ``i`` is the column of ``x`` (negative counts from the end, so ``-1`` is t on a
    SpaceTime); ``order`` >= 0 (0 returns ``u``).

    Example (u = x^3 y):

    >>> x = torch.tensor([[1.0, 2.0], [2.0, 3.0]], requires_grad=True)
    >>> u = x[:, 0:1] ** 3 * x[:, 1:2]
    >>> kp.partial(u, x, 0).tolist()            # 3 x^2 y
    [[6.0], [36.0]]
    >>> kp.partial(u, x, 0, order=2).tolist()   # 6 x y
    [[12.0], [36.0]]
    >>> kp.partial(u, x, -1).tolist()           # x^3
    [[1.0], [8.0]]
    """
    _check(u, x, "partial")
    i = _index(i, x.shape[1], "partial", "variable index")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise KanpinnError(f"partial: order must be an integer >= 0, got {order!r}")
    if order == 0:
        return u
    jet = lookup(u, x)
    if jet is not None:
        # the highest derivative the jet holds, the rest (if any) by autograd on top of it
        derivs = jet.derivs
        have = min(order, len(derivs))
        if have < order:
            note_demand(order)          # a solver probing its residual learns the order it needs
        out = derivs[have - 1][:, 0, i:i + 1]
    else:
        have, out = 1, grad(u, x)[:, i:i + 1]
    for _ in range(order - have):
        out = _autograd(out, x, "partial")[:, i:i + 1]
    return out


def laplacian(u: torch.Tensor, x: torch.Tensor, dims=None) -> torch.Tensor:
    """Σ_i ∂²u/∂x_i² over ``dims`` (default all columns). u: (N, 1), x: (N, d) -> (N, 1).

    ``dims`` (a non-empty list of distinct column indices, negative counting from the
    end) restricts the sum, e.g. to the space columns of a SpaceTime:
    ``kp.laplacian(u, x, dims=[0])`` for (x, t).

    Example (u = x^2 + 3 y^2, Δu = 8):

    >>> x = torch.tensor([[0.5, 1.0], [2.0, -1.0]], requires_grad=True)
    >>> u = x[:, 0:1] ** 2 + 3 * x[:, 1:2] ** 2
    >>> kp.laplacian(u, x).tolist()
    [[8.0], [8.0]]
    >>> kp.laplacian(u, x, dims=[0]).tolist()
    [[2.0], [2.0]]
    """
    _check(u, x, "laplacian")
    dims = _dims(dims, x.shape[1])
    jet = lookup(u, x)
    if jet is not None and jet.d2u is not None:
        d2 = jet.d2u[:, 0, :]
        return (d2 if len(dims) == d2.shape[1] else d2[:, dims]).sum(dim=1, keepdim=True)
    return sum(partial(u, x, i, 2) for i in dims)


def div(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Divergence of a vector field. v: (N, d), x: (N, d) -> (N, 1).

    Example (v = (x y, y^2), div v = y + 2 y = 3 y):

    >>> x = torch.tensor([[1.0, 2.0], [3.0, -1.0]], requires_grad=True)
    >>> v = torch.cat([x[:, 0:1] * x[:, 1:2], x[:, 1:2] ** 2], dim=1)
    >>> kp.div(v, x).tolist()
    [[6.0], [-3.0]]
    >>> kp.div(kp.grad(x[:, 0:1] ** 2 * x[:, 1:2], x), x).tolist()   # = laplacian
    [[4.0], [-2.0]]
    """
    if not isinstance(v, torch.Tensor) or not isinstance(x, torch.Tensor):
        raise KanpinnError(f"div(v, x) takes tensors, got {type(v).__name__} and {type(x).__name__}")
    if v.dim() != 2 or v.shape != x.shape:
        raise KanpinnError(f"div: v must have the shape of x {tuple(x.shape)}, got {tuple(v.shape)}")
    jet = lookup(v, x)
    if jet is not None:                     # Σ_i ∂v_i/∂x_i: the diagonal of the jet's du
        return jet.du.diagonal(dim1=1, dim2=2).sum(1, keepdim=True)
    return sum(_autograd(v[:, i:i + 1], x, "div")[:, i:i + 1] for i in range(x.shape[1]))
