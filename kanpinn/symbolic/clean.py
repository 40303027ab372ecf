"""Cleaning and evaluating fitted formulas.

* :func:`expr_to_torch` compiles a sympy expression into a torch callable. It walks the
  expression tree once and builds nested closures (``sympy.lambdify``'s torch printer
  rejects numeric arguments such as ``log(2)`` and many functions); sub-expressions free
  of symbols are folded to floats at compile time.
* :func:`relative_l2` measures a formula against reference values.
* :func:`drop_small_terms`, :func:`snap_constants` and :func:`clean` turn a formula with
  float constants into a readable one (``3.14159265*x -> pi*x``, ``0.49999999 -> 1/2``,
  ``x**2 + 1e-12*x -> x**2``), keeping the cleaned formula only where it stays within
  ``tol`` (relative L2) of the original on the given points.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np
import sympy
import torch

__all__ = [
    "expr_to_torch",
    "relative_l2",
    "drop_small_terms",
    "snap_number",
    "snap_constants",
    "clean",
]

_DT = torch.float64


# ---------------------------------------------------------------------------------------
# sympy -> torch
# ---------------------------------------------------------------------------------------
def _heaviside(v, h0=0.5):
    return torch.where(v > 0, torch.ones_like(v), torch.where(v < 0, torch.zeros_like(v),
                                                               torch.full_like(v, h0)))


_UNARY = {
    sympy.sin: torch.sin, sympy.cos: torch.cos, sympy.tan: torch.tan,
    sympy.cot: lambda v: 1 / torch.tan(v), sympy.sec: lambda v: 1 / torch.cos(v),
    sympy.csc: lambda v: 1 / torch.sin(v),
    sympy.asin: torch.asin, sympy.acos: torch.acos, sympy.atan: torch.atan,
    sympy.sinh: torch.sinh, sympy.cosh: torch.cosh, sympy.tanh: torch.tanh,
    sympy.asinh: torch.asinh, sympy.acosh: torch.acosh, sympy.atanh: torch.atanh,
    sympy.exp: torch.exp, sympy.log: torch.log, sympy.Abs: torch.abs,
    sympy.sign: torch.sign, sympy.erf: torch.erf, sympy.erfc: torch.erfc,
    sympy.floor: torch.floor, sympy.ceiling: torch.ceil,
    sympy.re: lambda v: v, sympy.im: torch.zeros_like,
}


def _compile(e: sympy.Expr, index: dict):
    """Closure ``cols -> tensor or float`` for expression ``e``."""
    if not e.free_symbols:
        val = complex(sympy.N(e, 17))
        if abs(val.imag) > 1e-12 * max(1.0, abs(val.real)):
            raise ValueError(f"constant {e} is not real")
        c = float(val.real)
        return lambda cols: c
    if isinstance(e, sympy.Symbol):
        if e not in index:
            raise ValueError(f"symbol {e} not among the given symbols {list(index)}")
        i = index[e]
        return lambda cols: cols[i]
    args = [_compile(a, index) for a in e.args]
    if isinstance(e, sympy.Add):
        def f(cols):
            out = args[0](cols)
            for a in args[1:]:
                out = out + a(cols)
            return out
        return f
    if isinstance(e, sympy.Mul):
        def f(cols):
            out = args[0](cols)
            for a in args[1:]:
                out = out * a(cols)
            return out
        return f
    if isinstance(e, sympy.Pow):
        base, ex = args
        p = e.args[1]
        if p.is_Number and not p.free_symbols:
            pv = float(p)
            if pv == 0.5:
                return lambda cols: torch.sqrt(base(cols))
            if pv == -0.5:
                return lambda cols: torch.rsqrt(base(cols))
            if pv == int(pv):
                k = int(pv)
                return lambda cols: base(cols) ** k
            return lambda cols: base(cols) ** pv
        if not e.args[0].free_symbols:  # c**f(x) = exp(log(c) f(x))
            lc = math.log(float(sympy.N(e.args[0], 17)))
            return lambda cols: torch.exp(lc * ex(cols))
        return lambda cols: torch.pow(base(cols), ex(cols))
    fn = _UNARY.get(e.func)
    if fn is not None and len(args) == 1:
        a0 = args[0]
        return lambda cols: fn(a0(cols))
    if e.func is sympy.Heaviside:
        h0 = 0.5 if len(e.args) < 2 else float(e.args[1])
        a0 = args[0]
        return lambda cols: _heaviside(a0(cols), h0)
    if e.func in (sympy.Max, sympy.Min):
        op = torch.maximum if e.func is sympy.Max else torch.minimum

        def f(cols):
            vals = [_as_tensor(a(cols), cols) for a in args]
            out = vals[0]
            for v in vals[1:]:
                out = op(out, v)
            return out
        return f
    if e.func is sympy.atan2:
        a0, a1 = args
        return lambda cols: torch.atan2(_as_tensor(a0(cols), cols), _as_tensor(a1(cols), cols))
    if isinstance(e, sympy.Piecewise):
        pieces = [(_compile(ex_, index), _compile_cond(c, index)) for ex_, c in e.args]

        def f(cols):
            out = None
            for val, cond in reversed(pieces):
                v = _as_tensor(val(cols), cols)
                if out is None:
                    out = v if cond is True else torch.where(cond(cols), v,
                                                             torch.full_like(v, math.nan))
                else:
                    out = torch.where(cond(cols), v, out) if cond is not True else v
            return out
        return f
    raise NotImplementedError(f"expr_to_torch: unsupported function {e.func}")


def _compile_cond(c, index):
    if c is sympy.true or c is True:
        return True
    if isinstance(c, sympy.core.relational.Relational):
        lhs, rhs = _compile(c.lhs, index), _compile(c.rhs, index)
        ops = {"<": torch.lt, "<=": torch.le, ">": torch.gt, ">=": torch.ge,
               "==": torch.eq, "!=": torch.ne}
        op = ops[c.rel_op]
        return lambda cols: op(_as_tensor(lhs(cols), cols), _as_tensor(rhs(cols), cols))
    if isinstance(c, (sympy.And, sympy.Or)):
        parts = [_compile_cond(a, index) for a in c.args]
        comb = torch.logical_and if isinstance(c, sympy.And) else torch.logical_or

        def f(cols):
            out = parts[0](cols)
            for p in parts[1:]:
                out = comb(out, p(cols))
            return out
        return f
    raise NotImplementedError(f"expr_to_torch: unsupported condition {c}")


def _as_tensor(v, cols):
    if isinstance(v, torch.Tensor):
        return v
    ref = cols[0]
    return torch.full_like(ref, float(v))


def expr_to_torch(expr, symbols: Sequence[sympy.Symbol]) -> Callable:
    """Compile ``expr`` into a torch function of the given symbols.

    The callable accepts either one tensor per symbol (elementwise, broadcasting; the
    result has the broadcast shape) or a single tensor ``X`` of shape ``(..., d)`` whose
    last dimension holds the ``d = len(symbols)`` variables in order; the result then has
    shape ``(..., 1)``. Numpy arrays are accepted too (converted to float64 tensors).
    Gradients flow through (autograd works on the result).
    """
    expr = sympy.sympify(expr)
    symbols = tuple(symbols)
    index = {s: i for i, s in enumerate(symbols)}
    f = _compile(expr, index)
    d = len(symbols)

    def call(*xs):
        xs = [x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, float))
              for x in xs]
        matrix = len(xs) == 1 and d >= 1 and xs[0].ndim >= 2 and xs[0].shape[-1] == d \
            and (d > 1 or xs[0].shape[-1] == 1)
        if matrix:
            X = xs[0]
            cols = [X[..., i] for i in range(d)]
        else:
            if len(xs) != d:
                raise ValueError(f"expected {d} inputs (or one (N, {d}) tensor)")
            cols = xs
        if not cols:
            raise ValueError("a formula without symbols needs a reference input")
        out = f(cols)
        if not isinstance(out, torch.Tensor) or out.shape != torch.broadcast_shapes(
                *[c.shape for c in cols]):
            shape = torch.broadcast_shapes(*[c.shape for c in cols])
            ref = cols[0]
            out = torch.as_tensor(out, dtype=ref.dtype if ref.is_floating_point() else _DT)
            out = out.expand(shape) if out.ndim else torch.full(shape, float(out),
                                                                 dtype=out.dtype)
        return out[..., None] if matrix else out

    call.expr = expr
    call.symbols = symbols
    return call


def _points_tensor(points, d):
    P = points if isinstance(points, torch.Tensor) else torch.as_tensor(
        np.asarray(points, dtype=np.float64))
    P = P.detach().to(_DT)
    if P.ndim == 1:
        P = P[:, None]
    if P.shape[-1] != d:
        raise ValueError(f"points have {P.shape[-1]} columns for {d} symbols")
    return P


def _evaluate(expr, symbols, P) -> torch.Tensor:
    with torch.no_grad():
        return expr_to_torch(expr, symbols)(*[P[:, i] for i in range(P.shape[1])])


def relative_l2(expr, symbols, x, y_true) -> float:
    """``||expr(x) - y_true|| / ||y_true||`` (float64; ``x`` is (N, d) or (N,) for d = 1).
    Returns inf when the formula is not finite on ``x``."""
    symbols = tuple(symbols)
    P = _points_tensor(x, len(symbols))
    y = torch.as_tensor(y_true.detach() if isinstance(y_true, torch.Tensor) else
                        np.asarray(y_true, dtype=np.float64)).to(_DT).reshape(-1)
    v = _evaluate(expr, symbols, P).reshape(-1)
    if v.shape != y.shape:
        raise ValueError(f"{v.shape[0]} formula values for {y.shape[0]} reference values")
    if not torch.isfinite(v).all():
        return math.inf
    num = torch.linalg.vector_norm(v - y)
    den = torch.linalg.vector_norm(y)
    return float(num / den) if den > 0 else float(num)


# ---------------------------------------------------------------------------------------
# cleaning
# ---------------------------------------------------------------------------------------
def drop_small_terms(expr, symbols, points, rel_tol: float = 1e-8) -> sympy.Expr:
    """Remove, in every sum of the expression (recursively, arguments included), the terms
    whose largest magnitude on ``points`` is below ``rel_tol`` times the sum's largest
    magnitude. Terms are compared with their own sum, so cancellations keep everything."""
    symbols = tuple(symbols)
    P = _points_tensor(points, len(symbols))

    def mag(e):
        v = _evaluate(e, symbols, P)
        v = torch.as_tensor(v)
        if not torch.isfinite(v).all():
            return math.inf
        return float(v.abs().max()) if v.numel() else 0.0

    def walk(e):
        if e.is_Atom or not e.args:
            return e
        new_args = [walk(a) for a in e.args]
        if any(n is not o for n, o in zip(new_args, e.args)):
            e = e.func(*new_args)
        if isinstance(e, sympy.Add) and len(e.args) > 1:
            total = mag(e)
            if math.isfinite(total) and total > 0:
                keep = [t for t in e.args if mag(t) > rel_tol * total]
                if len(keep) < len(e.args):
                    e = sympy.Add(*keep) if keep else sympy.Integer(0)
        return e

    return walk(sympy.sympify(expr))


def snap_number(v: float, tol: float = 1e-6, max_denominator: int = 12,
                constants: Sequence = (sympy.pi,)):
    """A simple exact number within relative ``tol`` of ``v``, or None.

    Tries integers and fractions ``p/q`` (``q <= max_denominator``) first, then the same
    multiples of each constant (``p/q * pi``). Values below ``1e-300`` snap to 0."""
    v = float(v)
    if not math.isfinite(v):
        return None
    if abs(v) < 1e-300:
        return sympy.Integer(0)
    bases = [(sympy.Integer(1), 1.0)] + [(k, float(sympy.N(k, 17))) for k in constants]
    for sym, val in bases:
        r = v / val
        fr = Fraction(r).limit_denominator(max_denominator)
        if fr == 0:
            continue
        approx = fr.numerator / fr.denominator * val
        if abs(approx - v) <= tol * abs(v):
            return sympy.Rational(fr.numerator, fr.denominator) * sym
    return None


def snap_constants(expr, tol: float = 1e-6, max_denominator: int = 12,
                   constants: Sequence = (sympy.pi,)) -> sympy.Expr:
    """Replace every float constant that :func:`snap_number` can snap."""
    expr = sympy.sympify(expr)
    rep = {}
    for f in expr.atoms(sympy.Float):
        s = snap_number(float(f), tol, max_denominator, constants)
        if s is not None:
            rep[f] = s
    return expr.xreplace(rep) if rep else expr


def _close(expr, symbols, P, ref, tol) -> bool:
    try:
        v = _evaluate(expr, symbols, P).reshape(-1)
    except Exception:
        return False
    v = torch.as_tensor(v, dtype=_DT).reshape(-1)
    if v.numel() == 1 and ref.numel() > 1:
        v = v.expand_as(ref)
    fin = torch.isfinite(ref)  # where the original is not finite, anything goes
    if not bool(torch.isfinite(v[fin]).all()):
        return False
    den = torch.linalg.vector_norm(ref[fin])
    num = torch.linalg.vector_norm(v[fin] - ref[fin])
    return bool(num <= tol * den) if den > 0 else bool(num <= tol)


def clean(expr, symbols, points, tol: float = 1e-6, *, snap_tol: float | None = None,
          drop_tol: float | None = None, max_denominator: int = 12,
          constants: Sequence = (sympy.pi,), simplify=True,
          max_simplify_ops: int = 40) -> sympy.Expr:
    """Clean ``expr`` (drop negligible terms, snap constants, simplify) and return the
    cleaned expression if it stays within relative L2 ``tol`` of ``expr`` on ``points``
    (shape (N, d), columns in the order of ``symbols``); otherwise the raw expression.

    When snapping every constant at once moves the formula too far, constants are snapped
    one at a time, each kept only if the formula stays within ``tol``.
    ``snap_tol`` (relative, per constant) and ``drop_tol`` (relative, per sum) default to
    ``tol``. ``simplify``: True for cheap rewrites (factor_terms, powsimp, expand, cancel;
    the shortest verified form wins), ``"full"`` to also try ``sympy.simplify`` on formulas
    of at most ``max_simplify_ops`` operations (slow on nested trigonometric formulas),
    False for none."""
    symbols = tuple(symbols)
    raw = sympy.sympify(expr)
    P = _points_tensor(points, len(symbols))
    try:
        ref = torch.as_tensor(_evaluate(raw, symbols, P), dtype=_DT).reshape(-1)
    except NotImplementedError:
        return raw
    if ref.numel() == 1 and P.shape[0] > 1:
        ref = ref.expand(P.shape[0])
    snap_tol = tol if snap_tol is None else snap_tol
    drop_tol = tol if drop_tol is None else drop_tol

    def ok(e):
        return _close(e, symbols, P, ref, tol)

    base = drop_small_terms(raw, symbols, P, drop_tol)
    if not ok(base):
        base = raw
    snapped = snap_constants(base, snap_tol, max_denominator, constants)
    if snapped != base and not ok(snapped):  # one constant at a time
        snapped = base
        for f in sorted(base.atoms(sympy.Float), key=lambda v: -abs(float(v))):
            s = snap_number(float(f), snap_tol, max_denominator, constants)
            if s is None:
                continue
            trial = snapped.xreplace({f: s})
            if ok(trial):
                snapped = trial
    out = snapped
    if out != base:  # snapping can create new negligible terms (e.g. cos(pi/2))
        dropped = drop_small_terms(out, symbols, P, drop_tol)
        if ok(dropped):
            out = dropped
    if simplify:
        out = _simplify(out, simplify, max_simplify_ops, ok)
    return out if ok(out) else raw


def _simplify(e, how, max_ops, ok):
    """Cheap rewrites (``factor_terms``, ``powsimp``, ``expand``, ``cancel``) keeping the
    shortest verified form; ``how="full"`` also tries ``sympy.simplify`` (which can take
    minutes on nested trigonometric formulas, hence not the default)."""
    forms = []
    def expand(v):
        return sympy.expand(v, power_exp=False, power_base=False, log=False)

    for fn in (sympy.factor_terms, sympy.powsimp, expand, sympy.cancel,
               lambda v: sympy.factor_terms(expand(v))):
        try:
            forms.append(fn(e))
        except Exception:  # noqa: BLE001 - sympy corner cases
            pass
    if how == "full" and sympy.count_ops(e) <= max_ops:
        try:
            forms.append(sympy.simplify(e))
        except Exception:  # noqa: BLE001
            pass
    best, best_ops = e, sympy.count_ops(e)
    for f in forms:
        ops = sympy.count_ops(f)
        if f != e and ops < best_ops and ok(f):
            best, best_ops = f, ops
    return best
