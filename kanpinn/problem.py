"""The PDE problem: a domain, a residual, conditions, and optionally a reference solution.

:class:`Problem` validates what it can at construction (types, parameters, the
residual's signature, condition/domain compatibility) and what needs numbers at the
*first* evaluation of the residual and of ``exact`` (shapes, finiteness, dependence on
u). Later evaluations skip the checks so the training loop pays nothing for them.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Callable

import numpy as np
import torch

from .conditions import Condition
from .domains import Domain
from .errors import KanpinnError

__all__ = ["Problem"]

# Boundary points drawn per ``on=`` selector at construction (more are drawn when none hit).
_PROBE_POINTS = 64


def _shape(t) -> str:
    return str(tuple(t.shape)) if hasattr(t, "shape") else type(t).__name__


def _accepts(fn: Callable, n_args: int):
    """True / False whether ``fn`` can be called with ``n_args`` positional arguments,
    None when Python cannot tell (builtins, some C extensions)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*([None] * n_args))
    except TypeError:
        return False
    return True


def _graph(t: torch.Tensor) -> set:
    """All autograd nodes ``t`` was computed through (empty for a leaf)."""
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(nxt for nxt, _ in node.next_functions)
    return seen


def _depends_on(t: torch.Tensor, u: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether residual term ``t`` was computed from the model output ``u``.

    ``torch.autograd.grad(t, u)`` is not the test: a derivative of u taken by autograd
    (or read from a jet) is computed from the model's intermediate values, not from the
    tensor u, so ``kp.laplacian(u, x)`` would look independent of u. Instead we ask
    whether ``t``'s graph shares a node with u's graph other than x and x's history.
    """
    if not t.requires_grad:
        return False
    u_nodes = _graph(u)
    x_nodes = _graph(x)
    for node in _graph(t):
        var = getattr(node, "variable", None)  # AccumulateGrad: the leaf it feeds
        if var is not None:
            if var is u:
                return True
            if var is x:
                continue
        if node in u_nodes and node not in x_nodes:
            return True
    return False


class Problem:
    """A PDE problem (see API.md).

    Parameters
    ----------
    domain : Domain
        Where the PDE holds; its ``variables`` name the columns of ``x``.
    residual : callable
        ``residual(x, u)`` -> (N, k) tensor or a tuple/list of them, each zero at the
        solution; ``residual(x, u, p)`` when ``parameters`` is given (``p[name]`` a 0-d
        tensor). ``x``: (N, d) requires grad; ``u``: (N, m).
    conditions : Condition or sequence of Condition
        Boundary / initial / data conditions.
    exact : callable, optional
        ``exact(x)`` -> (N, m) reference solution, used for metrics.
    parameters : dict[str, float], optional
        Unknown coefficients to learn (inverse problems), name -> initial value.
    name : str, optional
        Label used in results and reports (default ``"problem"``).

    Example (-u'' = pi^2 sin(pi x) on [0, 1], u(0) = u(1) = 0):

    >>> pi = torch.pi
    >>> def residual(x, u):                   # x: (N, 1), u: (N, 1) -> (N, 1)
    ...     return kp.partial(u, x, 0, order=2) + pi**2 * torch.sin(pi * x)
    >>> problem = kp.Problem(kp.Interval(0, 1), residual, [kp.Dirichlet(0.0)],
    ...                      exact=lambda x: torch.sin(pi * x), name="poisson1d")
    >>> problem.variables, problem.condition_names, problem.n_outputs
    (('x',), ['dirichlet'], 1)
    >>> x = torch.linspace(0, 1, 5).reshape(-1, 1).requires_grad_()
    >>> terms = problem.residual_terms(x, torch.sin(pi * x))   # the exact solution
    >>> [tuple(t.shape) for t in terms], bool(terms[0].abs().max() < 1e-4)
    ([(5, 1)], True)

    An inverse problem: the residual receives the learned coefficients ``p``.

    >>> inverse = kp.Problem(kp.Interval(0, 1),
    ...                      lambda x, u, p: p["k"] * kp.partial(u, x, 0, 2) + 1.0,
    ...                      [kp.Data([[0.5]], [[0.125]])], parameters={"k": 0.5})
    >>> inverse.parameters
    {'k': 0.5}
    """

    def __init__(self, domain, residual, conditions=(), exact=None, parameters=None, name=None):
        if not isinstance(domain, Domain):
            raise KanpinnError(
                "Problem: domain must be a kanpinn domain (Interval, Rectangle, Box, Disk, SpaceTime), "
                f"got {type(domain).__name__}"
            )
        if not callable(residual):
            raise KanpinnError(f"Problem: residual must be a function residual(x, u), got {type(residual).__name__}")
        self.domain = domain
        self.residual = residual

        if isinstance(conditions, Condition):
            conditions = (conditions,)
        if conditions is None:
            conditions = ()
        try:
            conditions = tuple(conditions)
        except TypeError:
            raise KanpinnError(
                f"Problem: conditions must be a list of conditions (kp.Dirichlet, ...), got {type(conditions).__name__}"
            ) from None
        for i, c in enumerate(conditions):
            if not isinstance(c, Condition):
                raise KanpinnError(
                    f"Problem: conditions[{i}] is a {type(c).__name__}, not a condition "
                    "(kp.Dirichlet, kp.Neumann, kp.Robin, kp.Periodic, kp.Initial, kp.Data)"
                )
            c.check_domain(domain)
        self.conditions = conditions
        self._probe_selectors()

        if exact is not None and not callable(exact):
            raise KanpinnError(f"Problem: exact must be a function exact(x) -> (N, m) or None, got {type(exact).__name__}")
        self.exact = exact

        self.parameters = self._check_parameters(parameters)
        self._check_signature()

        if name is not None and not isinstance(name, str):
            raise KanpinnError(f"Problem: name must be a string, got {type(name).__name__}")
        self.name = name or "problem"

        self._residual_checked = False
        self._exact_checked = False
        self._n_outputs = None

    # ---- construction checks ---------------------------------------------------

    def _label(self, i: int) -> str:
        c = self.conditions[i]
        return f"conditions[{i}] ({type(c).__name__} {self.condition_names[i]!r})"

    def _probe_selectors(self):
        """Draw a few points of every condition with an ``on=`` selector: one that picks
        nothing on this domain's boundary (or fails) is refused now, naming the
        condition, not when the solver samples."""
        for i, c in enumerate(self.conditions):
            if getattr(c, "on", None) is None:
                continue
            try:
                c.sample(self.domain, _PROBE_POINTS, "sobol", seed=0)
            except KanpinnError as e:
                raise KanpinnError(f"Problem: {self._label(i)}: {e}") from None

    @staticmethod
    def _check_parameters(parameters) -> dict:
        if parameters is None:
            return {}
        if not isinstance(parameters, dict):
            raise KanpinnError(
                f"Problem: parameters must be a dict name -> initial float, got {type(parameters).__name__}"
            )
        out = {}
        for k, v in parameters.items():
            if not isinstance(k, str) or not k:
                raise KanpinnError(f"Problem: parameter names must be non-empty strings, got {k!r}")
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.item()
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise KanpinnError(f"Problem: parameter {k!r} must have a finite float initial value, got {v!r}")
            out[k] = float(v)
        return out

    def _check_signature(self):
        if self.parameters:
            if _accepts(self.residual, 3) is False:
                raise KanpinnError(
                    "Problem: parameters were given, so the residual must take them: "
                    f"def residual(x, u, p) with p[{next(iter(self.parameters))!r}] a tensor"
                )
        elif _accepts(self.residual, 2) is False:
            hint = " (it wants p: pass parameters={...} to Problem)" if _accepts(self.residual, 3) else ""
            raise KanpinnError(f"Problem: the residual must be callable as residual(x, u){hint}")

    # ---- public ------------------------------------------------------------------

    @property
    def variables(self) -> tuple[str, ...]:
        return self.domain.variables

    @property
    def condition_names(self) -> list[str]:
        """Loss-term names of the conditions, made unique (``dirichlet``, ``dirichlet_2``)."""
        seen: dict[str, int] = {}
        names = []
        for c in self.conditions:
            seen[c.name] = seen.get(c.name, 0) + 1
            names.append(c.name if seen[c.name] == 1 else f"{c.name}_{seen[c.name]}")
        return names

    def default_params(self, like: torch.Tensor | None = None) -> dict:
        """The initial parameter values as 0-d tensors (dtype/device of ``like``)."""
        kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
        return {k: torch.tensor(v, **kw) for k, v in self.parameters.items()}

    def residual_terms(self, x: torch.Tensor, u: torch.Tensor, params: dict | None = None) -> list:
        """Evaluate the residual: a list of (N, k_i) tensors, each zero at the solution.

        ``params`` (name -> tensor) is passed as the third argument when the problem has
        parameters (their initial values if omitted). The first call also validates the
        output's shapes, finiteness and dependence on u.
        """
        if self.parameters:
            if params is None:
                params = self.default_params(x)
            args = (x, u, params)
        else:
            args = (x, u)
        if self._residual_checked:
            out = self.residual(*args)
        else:
            out = self._first_call(self.residual, args, "the residual", x, u)
        if isinstance(out, torch.Tensor):
            terms = [out]
        elif isinstance(out, (tuple, list)):
            terms = list(out)
        else:
            raise KanpinnError(
                f"Problem {self.name!r}: the residual must return a tensor or a tuple of tensors, got {type(out).__name__}"
            )
        if not self._residual_checked:
            self._check_terms(x, u, terms)
        return terms

    def _first_call(self, fn, args, what, x, u=None):
        """``fn(*args)``, with a user code error (a builtin exception: IndexError,
        RuntimeError for shapes, ...) turned into a KanpinnError that says which function
        failed and with what shapes. kanpinn's own exceptions pass through unchanged (some
        are signals, e.g. jet.NotPointwise)."""
        try:
            return fn(*args)
        except KanpinnError:
            raise
        except Exception as e:  # noqa: BLE001 - only builtin exception types are rewritten
            if type(e).__module__ != "builtins":
                raise
            shapes = f"x: {_shape(x)} with columns {', '.join(self.variables)}"
            if u is not None:
                shapes += f", u: {_shape(u)}"
            raise KanpinnError(f"Problem {self.name!r}: {what} failed at its first evaluation "
                               f"({shapes}): {type(e).__name__}: {e}") from e

    def check_model(self, model_outputs: int) -> None:
        """Refuse, before training, a model whose number of outputs does not fit this
        problem: ``exact`` returning another number of columns, a condition's
        ``component=`` out of range, ``Data`` values with another number of columns.

        >>> pi = torch.pi
        >>> p = kp.Problem(kp.Interval(0, 1), lambda x, u: kp.partial(u, x, 0, 2) + pi**2 * torch.sin(pi * x),
        ...                [kp.Dirichlet(0.0, component=1)], exact=lambda x: torch.sin(pi * x))
        >>> p.check_model(1)
        Traceback (most recent call last):
        ...
        kanpinn.errors.KanpinnError: Problem 'problem': conditions[0] (Dirichlet 'dirichlet') has component=1 but the model has 1 output(s) (components 0 to 0)
        """
        if isinstance(model_outputs, bool) or not isinstance(model_outputs, numbers.Integral) or model_outputs < 1:
            raise KanpinnError(f"Problem.check_model: model_outputs must be an integer >= 1, got {model_outputs!r}")
        m = int(model_outputs)
        for i, c in enumerate(self.conditions):
            comp = getattr(c, "component", None)
            if comp is not None and comp >= m:
                raise KanpinnError(f"Problem {self.name!r}: {self._label(i)} has component={comp} but the model "
                                   f"has {m} output(s) (components 0 to {m - 1})")
            values = getattr(c, "values", None)
            if comp is None and isinstance(values, np.ndarray) and values.ndim == 2 and values.shape[1] != m:
                raise KanpinnError(f"Problem {self.name!r}: {self._label(i)} has values with {values.shape[1]} "
                                   f"column(s) but the model has {m} output(s); pass component= to observe one")
        n = self.n_outputs
        if n is not None and n != m:
            raise KanpinnError(f"Problem {self.name!r}: exact(x) returns {n} column(s) but the model has {m} "
                               f"output(s); they must match (one column per solution component)")

    def _check_terms(self, x, u, terms):
        n = x.shape[0]
        if not terms:
            raise KanpinnError(f"Problem {self.name!r}: the residual returned no terms")
        for i, t in enumerate(terms):
            label = "the residual" if len(terms) == 1 else f"residual term {i}"
            if not isinstance(t, torch.Tensor):
                raise KanpinnError(f"Problem {self.name!r}: {label} is a {type(t).__name__}, not a tensor")
            self._require_2d(t, n, label, "k", ", or return r.reshape(-1, 1)")
            finite = torch.isfinite(t)
            if not bool(finite.all()):
                row = int((~finite).any(dim=1).nonzero()[0, 0])
                at = ", ".join(f"{v}={float(c):.4g}" for v, c in zip(self.variables, x[row].detach().cpu()))
                raise KanpinnError(f"Problem {self.name!r}: {label} is NaN or inf at the first evaluation, e.g. at {at}")
        if u.requires_grad:
            for i, t in enumerate(terms):
                if not _depends_on(t, u, x):
                    label = "the residual" if len(terms) == 1 else f"residual term {i}"
                    raise KanpinnError(
                        f"Problem {self.name!r}: {label} does not depend on u; build it from u and its "
                        "derivatives (kp.grad, kp.partial, kp.laplacian), not from x alone"
                    )
            # Only a check made with u in the graph is complete; under no_grad keep checking.
            self._residual_checked = True

    def _require_2d(self, t, n, label, letter, hint):
        """A clear error unless ``t`` is (n, something)."""
        if t.dim() == 1 and t.shape[0] == n:
            raise KanpinnError(
                f"Problem {self.name!r}: {label} has shape ({n},) but must be ({n}, {letter}); "
                f"slice with x[:, 0:1] instead of x[:, 0]{hint}"
            )
        if t.dim() != 2 or t.shape[0] != n:
            raise KanpinnError(
                f"Problem {self.name!r}: {label} has shape {_shape(t)} but must be ({n}, {letter}) for {n} points"
            )
        if t.shape[1] == 0:             # e.g. x[:, 2:3] on 2-D x: an empty slice, not an error in torch
            raise KanpinnError(
                f"Problem {self.name!r}: {label} has no columns (shape {_shape(t)}); a slice past the last "
                f"column of x (the variables are {', '.join(self.variables)})?"
            )

    def exact_values(self, x: torch.Tensor):
        """``exact(x)`` as an (N, m) tensor, or None without a reference solution."""
        if self.exact is None:
            return None
        out = self.exact(x) if self._exact_checked else self._first_call(self.exact, (x,), "exact(x)", x)
        if not isinstance(out, torch.Tensor):
            if self._exact_checked:
                return torch.as_tensor(np.asarray(out), dtype=x.dtype, device=x.device)
            try:
                out = torch.as_tensor(np.asarray(out, dtype=np.float64), dtype=x.dtype, device=x.device)
            except (TypeError, ValueError):
                raise KanpinnError(
                    f"Problem {self.name!r}: exact(x) must return an (N, m) tensor, got {type(out).__name__}"
                ) from None
        if not self._exact_checked:
            n = x.shape[0]
            self._require_2d(out, n, "exact(x)", "m", "")
            if not bool(torch.isfinite(out).all()):
                raise KanpinnError(f"Problem {self.name!r}: exact(x) contains NaN or inf")
            self._exact_checked = True
            self._n_outputs = int(out.shape[1])
        return out

    @property
    def n_outputs(self):
        """Number of solution components m, read from ``exact`` (None without it)."""
        if self._n_outputs is None and self.exact is not None:
            x = torch.as_tensor(self.domain.sample_interior(4, "uniform", seed=0), dtype=torch.get_default_dtype())
            with torch.no_grad():
                self.exact_values(x)
        return self._n_outputs

    def describe(self) -> str:
        """One-paragraph summary: domain, conditions, reference, parameters."""
        d = self.domain
        box = " x ".join(f"[{a:g}, {b:g}]" for a, b in zip(d.lo, d.hi))
        conds = ", ".join(f"{n} (w={c.weight:g})" for n, c in zip(self.condition_names, self.conditions)) or "none"
        params = ", ".join(f"{k}={v:g}" for k, v in self.parameters.items()) or "none"
        return (
            f"{self.name}: {type(d).__name__} in ({', '.join(d.variables)}), bounding box {box}; "
            f"conditions: {conds}; exact solution: {'yes' if self.exact is not None else 'no'}; "
            f"parameters: {params}"
        )

    def __repr__(self) -> str:
        return f"Problem(name={self.name!r}, domain={self.domain!r}, conditions={len(self.conditions)})"
