"""A symbolic KAN edge: c·f(a·x + b) + d with trainable a, b, c, d, and the safe reading of
f from its text.

``f`` is given by its sympy form in one symbol; torch callables for f, f' and f'' are
derived from it with sympy, so a symbolic edge carries jets like a spline edge and the
constants can be refined by training on the PDE residual.

``parse_formula(text)`` reads f back from a file without evaluating anything first: the
text is parsed by Python's ``ast`` (parsing runs nothing), every node is checked against
a whitelist (numbers, ``z``, ``pi``, ``E``, ``+ - * / **``, calls of known functions), the
size is capped, every sub-expression free of ``z`` is evaluated in float64 by this module
(so ``9**9**9`` or ``exp(exp(1e3))`` overflow here, instantly, instead of inside sympy's
exact arithmetic), and powers may not be stacked in an exponent. Only then is the sympy
expression built, node by node, from the checked tree.
"""
from __future__ import annotations

import ast
import math

import sympy as sp
import torch
from torch import nn

from .errors import KanpinnError

__all__ = ["EdgeFormula", "torch_function", "parse_formula", "FORMULA_FUNCTIONS"]

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

# the names a formula may call: sympy function, and its float64 value for constant arguments
FORMULA_FUNCTIONS = {
    "sin": (sp.sin, math.sin), "cos": (sp.cos, math.cos), "tan": (sp.tan, math.tan),
    "exp": (sp.exp, math.exp), "log": (sp.log, math.log), "sqrt": (sp.sqrt, math.sqrt),
    "tanh": (sp.tanh, math.tanh), "sinh": (sp.sinh, math.sinh), "cosh": (sp.cosh, math.cosh),
    "atan": (sp.atan, math.atan), "asin": (sp.asin, math.asin), "acos": (sp.acos, math.acos),
    "Abs": (sp.Abs, abs), "sign": (sp.sign, lambda v: float((v > 0) - (v < 0))), "erf": (sp.erf, math.erf),
    "sec": (sp.sec, lambda v: 1 / math.cos(v)), "csc": (sp.csc, lambda v: 1 / math.sin(v)),
    "cot": (sp.cot, lambda v: 1 / math.tan(v)), "Heaviside": (sp.Heaviside, lambda v: float(v > 0)),
}
_CONSTANTS = {"pi": (sp.pi, math.pi), "E": (sp.E, math.e)}
_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
MAX_FORMULA_CHARS = 1000
MAX_FORMULA_NODES = 40        # the second derivative of a product of n factors grows like n³
MAX_EXPONENT = 100.0          # |constant exponent| of a power of z


def torch_function(expr, symbols):
    """A torch callable for a sympy expression in ``symbols`` (broadcasting constants)."""
    f = sp.lambdify(symbols, expr, modules=[_TORCH_MODULE, "math"])

    def call(*xs):
        out = f(*xs)
        if not isinstance(out, torch.Tensor):
            out = torch.full_like(xs[0], float(out))
        return out + torch.zeros_like(xs[0])
    return call


def _bad(text, why):
    return KanpinnError(f"symbolic edge formula {text!r} {why}")


def _float(fn, *args):
    """fn(*args) in float64, or None when it overflows or leaves the real numbers."""
    try:
        v = float(fn(*args))
    except (OverflowError, ValueError, ZeroDivisionError):
        return None
    return v if math.isfinite(v) else None


class _Checker:
    """Walks the ``ast`` tree: checks each node, and returns (sympy expression, float value
    or None when the node depends on z, whether it holds a power)."""

    def __init__(self, text):
        self.text, self.nodes = text, 0

    def visit(self, node, depth=0):
        self.nodes += 1
        if self.nodes > MAX_FORMULA_NODES or depth > 30:
            raise _bad(self.text, f"is too large (more than {MAX_FORMULA_NODES} terms, or nested "
                                  "deeper than 30)")
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _bad(self.text, f"holds the constant {v!r}; only real numbers are allowed")
            f = _float(float, v)
            if f is None:
                raise _bad(self.text, f"holds the number {str(v)[:20]}..., beyond float64")
            return (sp.Integer(v) if isinstance(v, int) else sp.Float(v)), f, False
        if isinstance(node, ast.Name):
            if node.id == "z":
                return _Z, None, False
            if node.id in _CONSTANTS:
                return (*_CONSTANTS[node.id], False)
            raise _bad(self.text, f"uses the unknown name {node.id!r}; allowed: z, "
                                  f"{', '.join(sorted(_CONSTANTS))}, {', '.join(sorted(FORMULA_FUNCTIONS))}")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            e, v, p = self.visit(node.operand, depth + 1)
            neg = isinstance(node.op, ast.USub)
            return (-e if neg else e), (None if v is None else (-v if neg else v)), p
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self._binary(node, depth)
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name not in FORMULA_FUNCTIONS:
                raise _bad(self.text, f"calls the unknown name {ast.unparse(node.func)[:40]!r}; allowed: "
                                      f"{', '.join(sorted(FORMULA_FUNCTIONS))}")
            if node.keywords or len(node.args) != 1:
                raise _bad(self.text, f"calls {name} with {len(node.args) + len(node.keywords)} arguments; "
                                      "it takes one")
            e, v, p = self.visit(node.args[0], depth + 1)
            sym, num = FORMULA_FUNCTIONS[name]
            value = None
            if v is not None:
                value = _float(num, v)
                if value is None:
                    raise _bad(self.text, f"has {name}({v:.6g}), which is not a finite real number")
            return sym(e), value, p
        raise _bad(self.text, f"holds {type(node).__name__} ({ast.unparse(node)[:40]!r}); only numbers, z, "
                              "pi, E, + - * / ** and function calls are allowed")

    def _binary(self, node, depth):
        (a, va, pa), (b, vb, pb) = self.visit(node.left, depth + 1), self.visit(node.right, depth + 1)
        op = type(node.op)
        if op is ast.Pow:
            if pb:
                raise _bad(self.text, f"stacks powers ({ast.unparse(node)[:40]!r}); an exponent may not "
                                      "hold another power")
            if vb is not None and va is None and abs(vb) > MAX_EXPONENT:
                raise _bad(self.text, f"raises z to the power {vb:.6g}; at most {MAX_EXPONENT:g} in size")
        fns = {ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y, ast.Mult: lambda x, y: x * y,
               ast.Div: lambda x, y: x / y, ast.Pow: lambda x, y: x ** y}
        value = None
        if va is not None and vb is not None:
            value = _float(fns[op], va, vb)
            if value is None or isinstance(value, complex):
                raise _bad(self.text, f"has the constant {ast.unparse(node)[:40]!r}, which is not a finite "
                                      "real float64 number")
        if op is ast.Div and vb == 0.0:
            raise _bad(self.text, "divides by zero")
        expr = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                ast.Div: lambda: a / b, ast.Pow: lambda: a ** b}[op]()
        return expr, value, pa or pb or op is ast.Pow


def parse_formula(text: str) -> sp.Expr:
    """A sympy expression in ``z`` from its text (as ``str(expr)`` writes it; ``^`` is read
    as ``**``), checked before anything is evaluated (see the module docstring). Raises
    :class:`KanpinnError` naming the formula and what is wrong.

    >>> parse_formula("2.5*sin(pi*z)**2 + exp(-z^2)")
    2.5*sin(pi*z)**2 + exp(-z**2)
    >>> parse_formula("9**9**9*z")
    Traceback (most recent call last):
    ...
    kanpinn.errors.KanpinnError: symbolic edge formula '9**9**9*z' stacks powers ('9 ** 9 ** 9'); an exponent may not hold another power
    """
    if not isinstance(text, str) or not text.strip():
        raise KanpinnError(f"symbolic edge formula must be a non-empty string, got {str(text)[:80]!r}")
    if len(text) > MAX_FORMULA_CHARS:
        raise KanpinnError(f"symbolic edge formula is too long ({len(text)} characters, at most "
                           f"{MAX_FORMULA_CHARS}): {text[:40]!r}...")
    try:
        tree = ast.parse(text.replace("^", "**").strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise _bad(text, f"cannot be parsed ({type(e).__name__}: {getattr(e, 'msg', e)})") from None
    try:
        expr, _, _ = _Checker(text).visit(tree.body)
    except RecursionError:
        raise _bad(text, "is nested too deeply") from None
    if not isinstance(expr, sp.Expr) or not expr.free_symbols <= {_Z}:
        raise _bad(text, "is not an expression of z")
    return expr


class EdgeFormula(nn.Module):
    """Edge activation c·f(a·x + b) + d. x: (N,) -> (N,)."""

    def __init__(self, name: str, expr_of_z, a=1.0, b=0.0, c=1.0, d=0.0, dtype=None):
        super().__init__()
        dtype = dtype or torch.get_default_dtype()
        self.name = name
        # text goes through parse_formula: sympify would evaluate whatever it is given
        f = parse_formula(expr_of_z) if isinstance(expr_of_z, str) else (
            expr_of_z(_Z) if callable(expr_of_z) else sp.sympify(expr_of_z))
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
