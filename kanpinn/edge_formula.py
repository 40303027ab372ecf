"""A symbolic KAN edge: c·f(a·x + b) + d with trainable a, b, c, d.

``f`` is given by its sympy form in one symbol; torch callables for f, f' and f'' are
derived from it with sympy, so a symbolic edge carries jets like a spline edge and the
constants can be refined by training on the PDE residual.
"""
from __future__ import annotations

import sympy as sp
import torch
from torch import nn

__all__ = ["EdgeFormula", "torch_function"]

_Z = sp.Symbol("z")

# sympy function names -> torch; everything else (pi, E, rationals) is plain Python
_TORCH_MODULE = {
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "exp": torch.exp, "log": torch.log,
    "sqrt": torch.sqrt, "tanh": torch.tanh, "sinh": torch.sinh, "cosh": torch.cosh,
    "atan": torch.atan, "asin": torch.asin, "acos": torch.acos, "Abs": torch.abs,
    "sign": torch.sign, "pi": torch.pi, "E": torch.e, "erf": torch.erf,
    "sec": lambda x: 1 / torch.cos(x), "csc": lambda x: 1 / torch.sin(x), "cot": lambda x: 1 / torch.tan(x),
    "Heaviside": lambda x: (x > 0).to(x.dtype),
}


def torch_function(expr, symbols):
    """A torch callable for a sympy expression in ``symbols`` (broadcasting constants)."""
    f = sp.lambdify(symbols, expr, modules=[_TORCH_MODULE, "math"])

    def call(*xs):
        out = f(*xs)
        if not isinstance(out, torch.Tensor):
            out = torch.full_like(xs[0], float(out))
        return out + torch.zeros_like(xs[0])
    return call


class EdgeFormula(nn.Module):
    """Edge activation c·f(a·x + b) + d. x: (N,) -> (N,)."""

    def __init__(self, name: str, expr_of_z, a=1.0, b=0.0, c=1.0, d=0.0, dtype=None):
        super().__init__()
        dtype = dtype or torch.get_default_dtype()
        self.name = name
        f = expr_of_z(_Z) if callable(expr_of_z) else sp.sympify(expr_of_z)
        self.f_expr = f
        self._fns = [torch_function(f, _Z), torch_function(sp.diff(f, _Z), _Z),
                     torch_function(sp.diff(f, _Z, 2), _Z)]
        self.params = nn.Parameter(torch.tensor([a, b, c, d], dtype=dtype))

    def forward(self, x):
        a, b, c, d = self.params
        return c * self._fns[0](a * x + b) + d

    def jet(self, x, order):
        """[value, d/dx, d²/dx²] up to ``order``, each (N,)."""
        a, b, c, d = self.params
        z = a * x + b
        out = [c * self._fns[0](z) + d]
        if order >= 1:
            out.append(c * a * self._fns[1](z))
        if order >= 2:
            out.append(c * a * a * self._fns[2](z))
        return out

    def sympy(self, x_expr, constants=None):
        """The edge as a sympy expression of an input expression."""
        a, b, c, d = (float(v) for v in self.params.detach().cpu()) if constants is None else constants
        return c * self.f_expr.subs(_Z, a * x_expr + b) + d
