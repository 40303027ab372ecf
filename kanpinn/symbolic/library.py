"""Library of candidate functions for snapping KAN edges to closed forms.

An edge activation phi is approximated as ``c * f(a * x + b) + d`` with ``f`` one of the
library's functions. Each function is a :class:`SymbolicFunction` record that carries
everything the fitter needs:

* ``torch_fn``: elementwise torch form (also differentiated by autograd for refinement);
* ``sympy_fn``: ``lambda s: <sympy expression in s>``;
* ``complexity``: a small integer used to trade accuracy against simplicity;
* ``domain``: open intervals the argument ``a*x+b`` must stay inside over the data
  (``log``/``sqrt`` need a positive argument, ``1/x`` a sign-definite one, ...);
* ``fixed``: parameters that are redundant (``"a"`` for homogeneous functions such as
  ``x**2`` since ``c*(a*x+b)**2 == c*a**2*(x+b/a)**2``, ``"b"`` for ``exp``) or forced
  (``"c"`` for the constant function ``"0"``); the fitter does not search them;
* ``parity``: ``(p, q)`` with ``f(-u) == p*f(u) + q`` when it exists (even: ``(1, 0)``,
  odd: ``(-1, 0)``); then only ``a > 0`` has to be searched;
* ``degree``: ``k`` with ``f(lam*u) == lam**k * f(u)`` for ``lam > 0`` (homogeneity);
* ``period``: ``(P, s)`` with ``f(u + P) == s*f(u)`` (``sin``: ``(pi, -1)``);
* ``vanishing_order``: the smallest ``k >= 1`` for which the k-th derivative of a fitted
  edge ``c*f(a*x+b)+d`` is identically zero (``x``: 2, ``0``: 1, ``abs``: 2 almost
  everywhere), computed with sympy when not given; ``None`` when no derivative vanishes.
  The fitter refuses such functions for PDE edges unless their fit is exact.

A :class:`Library` is an ordered collection of records. ``Library.default()`` gives the
default set; ``Library.from_spec(["sin", "x^2", ...])`` selects by name (names from the
default set or :data:`EXTRA_FUNCTIONS`); ``lib.add(name, torch_fn, sympy_fn, complexity,
**options)`` registers a user function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import sympy
import torch

__all__ = [
    "SymbolicFunction",
    "Library",
    "DEFAULT_FUNCTIONS",
    "EXTRA_FUNCTIONS",
    "get_library",
    "get_function",
]

_INF = math.inf


@dataclass(frozen=True)
class SymbolicFunction:
    """One candidate function ``f`` of the edge model ``c*f(a*x+b)+d``."""

    name: str
    torch_fn: Callable[[torch.Tensor], torch.Tensor]
    sympy_fn: Callable[[sympy.Expr], sympy.Expr]
    complexity: int
    domain: tuple[tuple[float, float], ...] | None = None
    fixed: frozenset = field(default_factory=frozenset)
    parity: tuple[float, float] | None = None
    degree: float | None = None
    period: tuple[float, float] | None = None
    vanishing_order: int | None = -1  # -1: compute from sympy_fn on first use
    canonical: Callable | None = None  # custom (a, b, c, d) -> (a, b, c, d)

    def __post_init__(self):
        bad = set(self.fixed) - {"a", "b", "c"}
        if bad:
            raise ValueError(f"{self.name}: unknown fixed parameters {sorted(bad)}")
        if {"a", "b"} <= set(self.fixed) and "c" not in self.fixed and self.degree != 1:
            raise ValueError(f"{self.name}: fixed={{'a', 'b'}} is only meaningful for the "
                             "identity (degree=1)")
        if self.vanishing_order == -1:
            object.__setattr__(self, "vanishing_order", _vanishing_order(self.sympy_fn))

    # -- evaluation helpers -------------------------------------------------------------
    def expr(self, s: sympy.Expr, a: float = 1.0, b: float = 0.0, c: float = 1.0,
             d: float = 0.0) -> sympy.Expr:
        """``c*f(a*s+b)+d`` as a sympy expression (floats kept as given)."""
        F = sympy.Float
        if "c" in self.fixed:
            return F(d)
        arg = s if ("a" in self.fixed and "b" in self.fixed and a == 1 and b == 0) \
            else F(a) * s + F(b)
        return F(c) * self.sympy_fn(arg) + F(d)

    def admits(self, lo: float, hi: float, margin: float = 0.0) -> bool:
        """Whether the argument range [lo, hi] lies inside the domain."""
        if self.domain is None:
            return math.isfinite(lo) and math.isfinite(hi)
        return any(lo >= L + margin and hi <= H - margin for L, H in self.domain)

    def canonicalize(self, a: float, b: float, c: float, d: float):
        """Map equivalent parameters to one representative (see module docstring)."""
        if "c" in self.fixed:
            return 0.0, 0.0, 0.0, d
        if self.canonical is not None:
            return self.canonical(a, b, c, d)
        if "a" in self.fixed and "b" in self.fixed:
            return 1.0, 0.0, c * a if self.degree == 1 else c, d + (c * b if self.degree == 1 else 0.0)
        if self.degree is not None and a != 0:
            lam = abs(a)
            c = c * lam ** self.degree
            b = b / lam
            a = math.copysign(1.0, a)
        if self.parity is not None and a < 0:
            p, q = self.parity
            a, b, c, d = -a, -b, c * p, d + c * q
        if self.period is not None:
            P, sgn = self.period
            k = math.floor((b + P / 2) / P)  # b - k*P in [-P/2, P/2)
            if k:
                b = b - k * P
                c = c * (sgn ** k if sgn != 1 else 1.0)
            if b <= -P / 2 + 1e-15 * P:  # prefer +P/2 over -P/2
                b += P
                c *= sgn
        return a, b, c, d


def _vanishing_order(sympy_fn, max_order: int = 8) -> int | None:
    s = sympy.Symbol("s", real=True)
    try:
        e = sympy.sympify(sympy_fn(s))
    except Exception:  # pragma: no cover - user functions that sympy cannot handle
        return None
    for k in range(1, max_order + 1):
        e = sympy.diff(e, s)
        if e == 0 or e.is_zero:
            return k
        if sympy.count_ops(e) > 60:  # growing derivatives: not a polynomial
            return None
    return None


# -- canonical forms for special functions --------------------------------------------------
def _canon_exp(a, b, c, d):  # c*exp(a*x+b) = (c*e^b)*exp(a*x)
    return a, 0.0, c * math.exp(b), d


def _canon_log(a, b, c, d):  # c*log(a*x+b) = c*log|a| + c*log(sign(a)*x + b/|a|)
    if a == 0:
        return a, b, c, d
    lam = abs(a)
    return math.copysign(1.0, a), b / lam, c, d + c * math.log(lam)


def _canon_gauss(a, b, c, d):  # even: a > 0
    if a < 0:
        a, b = -a, -b
    return a, b, c, d


# -- torch forms ------------------------------------------------------------------------------
def _zero(u):
    return torch.zeros_like(u)


def _gauss(u):
    return torch.exp(-u * u)


def _sigmoid(u):
    return torch.sigmoid(u)


def _softplus(u):
    return torch.nn.functional.softplus(u)


POS = ((0.0, _INF),)
NONZERO = ((-_INF, 0.0), (0.0, _INF))
EVEN = (1.0, 0.0)
ODD = (-1.0, 0.0)
_A = frozenset({"a"})
_B = frozenset({"b"})
_AB = frozenset({"a", "b"})

DEFAULT_FUNCTIONS: tuple[SymbolicFunction, ...] = (
    SymbolicFunction("0", _zero, lambda s: sympy.Integer(0), 0,
                     fixed=frozenset({"a", "b", "c"}), vanishing_order=1),
    SymbolicFunction("x", lambda u: u, lambda s: s, 1, fixed=_AB, parity=ODD, degree=1,
                     vanishing_order=2),
    SymbolicFunction("x^2", lambda u: u * u, lambda s: s**2, 2, fixed=_A, parity=EVEN,
                     degree=2, vanishing_order=3),
    SymbolicFunction("x^3", lambda u: u * u * u, lambda s: s**3, 3, fixed=_A, parity=ODD,
                     degree=3, vanishing_order=4),
    SymbolicFunction("x^4", lambda u: (u * u) ** 2, lambda s: s**4, 4, fixed=_A,
                     parity=EVEN, degree=4, vanishing_order=5),
    SymbolicFunction("1/x", lambda u: 1.0 / u, lambda s: 1 / s, 2, domain=NONZERO,
                     fixed=_A, parity=ODD, degree=-1, vanishing_order=None),
    SymbolicFunction("1/x^2", lambda u: 1.0 / (u * u), lambda s: s**-2, 3, domain=NONZERO,
                     fixed=_A, parity=EVEN, degree=-2, vanishing_order=None),
    SymbolicFunction("sqrt", torch.sqrt, sympy.sqrt, 2, domain=POS, fixed=_A, degree=0.5,
                     vanishing_order=None),
    SymbolicFunction("exp", torch.exp, sympy.exp, 2, fixed=_B, canonical=_canon_exp,
                     vanishing_order=None),
    SymbolicFunction("log", torch.log, sympy.log, 2, domain=POS, fixed=_A,
                     canonical=_canon_log, vanishing_order=None),
    SymbolicFunction("sin", torch.sin, sympy.sin, 2, parity=ODD, period=(math.pi, -1.0),
                     vanishing_order=None),
    SymbolicFunction("cos", torch.cos, sympy.cos, 2, parity=EVEN, period=(math.pi, -1.0),
                     vanishing_order=None),
    SymbolicFunction("tan", torch.tan, sympy.tan, 3, domain=((-math.pi / 2, math.pi / 2),),
                     parity=ODD, vanishing_order=None),
    SymbolicFunction("tanh", torch.tanh, sympy.tanh, 3, parity=ODD, vanishing_order=None),
    SymbolicFunction("arctan", torch.atan, sympy.atan, 3, parity=ODD, vanishing_order=None),
    SymbolicFunction("gaussian", _gauss, lambda s: sympy.exp(-s**2), 3,
                     canonical=_canon_gauss, parity=EVEN, vanishing_order=None),
    SymbolicFunction("abs", torch.abs, sympy.Abs, 3, fixed=_A, parity=EVEN, degree=1,
                     vanishing_order=2),
)

EXTRA_FUNCTIONS: tuple[SymbolicFunction, ...] = (
    SymbolicFunction("x^5", lambda u: u**5, lambda s: s**5, 5, fixed=_A, parity=ODD,
                     degree=5, vanishing_order=6),
    SymbolicFunction("1/sqrt", torch.rsqrt, lambda s: 1 / sympy.sqrt(s), 3, domain=POS,
                     fixed=_A, degree=-0.5, vanishing_order=None),
    SymbolicFunction("arcsin", torch.asin, sympy.asin, 4, domain=((-1.0, 1.0),),
                     parity=ODD, vanishing_order=None),
    SymbolicFunction("sigmoid", _sigmoid, lambda s: 1 / (1 + sympy.exp(-s)), 4,
                     parity=(-1.0, 1.0), vanishing_order=None),
    SymbolicFunction("sinh", torch.sinh, sympy.sinh, 3, parity=ODD, vanishing_order=None),
    SymbolicFunction("cosh", torch.cosh, sympy.cosh, 3, parity=EVEN, vanishing_order=None),
    SymbolicFunction("softplus", _softplus, lambda s: sympy.log(1 + sympy.exp(s)), 4,
                     vanishing_order=None),
)

_ALIASES = {
    "zero": "0", "const": "0", "id": "x", "linear": "x", "x2": "x^2", "x**2": "x^2",
    "x3": "x^3", "x**3": "x^3", "x4": "x^4", "x**4": "x^4", "x5": "x^5", "x**5": "x^5",
    "1/x**2": "1/x^2", "inv": "1/x", "atan": "arctan", "asin": "arcsin", "gauss": "gaussian",
    "ln": "log", "Abs": "abs",
}


class Library:
    """An ordered, name-indexed collection of :class:`SymbolicFunction` records."""

    def __init__(self, functions: Iterable[SymbolicFunction] = ()):
        self._fns: dict[str, SymbolicFunction] = {}
        for f in functions:
            self._fns[f.name] = f

    @classmethod
    def default(cls) -> "Library":
        return cls(DEFAULT_FUNCTIONS)

    @classmethod
    def from_spec(cls, spec) -> "Library":
        """Build a library from ``None`` (default), a Library, or a sequence whose items
        are names (default/extra functions, a few aliases) or SymbolicFunction records."""
        if spec is None:
            return cls.default()
        if isinstance(spec, Library):
            return spec
        if isinstance(spec, (str, SymbolicFunction)):
            spec = [spec]
        known = {f.name: f for f in DEFAULT_FUNCTIONS + EXTRA_FUNCTIONS}
        out = []
        for item in spec:
            if isinstance(item, SymbolicFunction):
                out.append(item)
                continue
            name = _ALIASES.get(str(item), str(item))
            if name not in known:
                raise KeyError(f"unknown library function {item!r}; known: {sorted(known)}")
            out.append(known[name])
        if not out:
            raise ValueError("empty symbolic library")
        return cls(out)

    def add(self, name: str, torch_fn, sympy_fn, complexity: int, **options) -> "Library":
        """Register (or replace) a function; ``options`` are SymbolicFunction fields
        (``domain``, ``fixed``, ``parity``, ``degree``, ``period``, ``vanishing_order``,
        ``canonical``). Returns ``self`` so calls chain."""
        if "fixed" in options:
            options["fixed"] = frozenset(options["fixed"])
        self._fns[name] = SymbolicFunction(name, torch_fn, sympy_fn, int(complexity), **options)
        return self

    def remove(self, name: str) -> "Library":
        del self._fns[name]
        return self

    def subset(self, names: Sequence[str]) -> "Library":
        return Library(self[_ALIASES.get(n, n)] for n in names)

    def copy(self) -> "Library":
        return Library(self._fns.values())

    @property
    def names(self) -> list[str]:
        return list(self._fns)

    def __getitem__(self, name: str) -> SymbolicFunction:
        return self._fns[_ALIASES.get(name, name)]

    def __contains__(self, name) -> bool:
        return _ALIASES.get(name, name) in self._fns

    def __iter__(self) -> Iterator[SymbolicFunction]:
        return iter(self._fns.values())

    def __len__(self) -> int:
        return len(self._fns)

    def __repr__(self) -> str:
        return f"Library({self.names})"


def get_library(spec=None) -> Library:
    """Shorthand for :meth:`Library.from_spec`."""
    return Library.from_spec(spec)


def get_function(name, library=None) -> SymbolicFunction:
    """The record named ``name`` (aliases accepted) from ``library`` (default: the default
    functions, then :data:`EXTRA_FUNCTIONS`)."""
    if isinstance(name, SymbolicFunction):
        return name
    if library is not None:
        return get_library(library)[name]
    key = _ALIASES.get(str(name), str(name))
    for f in DEFAULT_FUNCTIONS + EXTRA_FUNCTIONS:
        if f.name == key:
            return f
    raise KeyError(f"unknown library function {name!r}")
