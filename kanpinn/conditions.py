"""Boundary, initial and data conditions.

A condition does two things (the contract of docs/DESIGN.md):

``sample(domain, n, method="sobol", seed=None) -> dict[str, np.ndarray]``
    draws the points where it is enforced. Key ``"x"`` (M, d) is always present;
    Neumann/Robin add ``"normals"`` (M, d); Periodic adds ``"x_lo"``/``"x_hi"``
    (matched points on the two opposite faces); Data adds ``"values"`` (M, m).
``misfit(u_fn, pts) -> Tensor (M, k)``
    is zero where the condition holds. ``u_fn`` maps (M, d) -> (M, m) (the solver
    passes the model with derivatives of order ``jet_order`` attached) and ``pts`` is
    the sampled dict converted to tensors.

Each condition also has ``weight`` (its loss factor), ``name`` (the loss-term key, e.g.
``"dirichlet"``) and ``jet_order`` (the highest derivative its misfit needs).

``value`` arguments are a number or a callable ``x -> (M, 1)`` tensor (an (M,) result is
accepted and reshaped; (M, m) gives one value per output). ``on`` selects part of the
boundary: a callable ``x -> bool (M,)`` that is called on a float64 torch tensor of the
candidate points (and, should that fail, on the numpy array), returning a bool tensor or
array. ``component=`` (an int) applies a condition to one output column of a system.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Callable

import numpy as np
import torch

from .domains import Domain, SpaceTime, _seed_sequence, _unit_samples, _check_n, _check_method
from .errors import KanpinnError, KanpinnWarning
from .jet import lookup
from .operators import grad, partial

__all__ = ["Condition", "Dirichlet", "Neumann", "Robin", "Periodic", "Initial", "Data"]

# How many times ``on=`` sampling may redraw before settling for fewer points.
_MAX_DRAWS = 6
# Largest single boundary draw made while looking for a small selected region.
_MAX_DRAW_SIZE = 2**21


# --------------------------------------------------------------------------- helpers


def _check_weight(weight, owner: str) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
        raise KanpinnError(f"{owner}: weight must be a finite number >= 0, got {weight!r}")
    return float(weight)


def _check_component(component, owner: str):
    if component is None:
        return None
    if isinstance(component, bool) or not isinstance(component, numbers.Integral) or component < 0:
        raise KanpinnError(f"{owner}: component must be None or an output index >= 0, got {component!r}")
    return int(component)


def _check_coefficient(v, what: str, owner: str):
    """A number (kept as float) or a callable; anything else is an error."""
    if callable(v):
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise KanpinnError(f"{owner}: {what} must be a number or a callable x -> (N, 1) tensor, got {v!r}")
    if not math.isfinite(v):
        raise KanpinnError(f"{owner}: {what} must be finite, got {v}")
    return float(v)


def _tensor(v, like: torch.Tensor | None = None) -> torch.Tensor:
    """Tensor view of a solver-provided entry (tolerates numpy in tests and scripts)."""
    if isinstance(v, torch.Tensor):
        return v
    dtype = like.dtype if like is not None else torch.get_default_dtype()
    device = like.device if like is not None else None
    return torch.as_tensor(np.asarray(v), dtype=dtype, device=device)


def _with_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself if it already requires grad (so attached jets stay valid), else a
    grad-requiring leaf copy, so derivative conditions work on any input."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


def _columns(u: torch.Tensor, component) -> list[int]:
    if component is None:
        return list(range(u.shape[1]))
    if component >= u.shape[1]:
        raise KanpinnError(f"component={component} but the model has only {u.shape[1]} output(s)")
    return [component]


def _deriv(u: torch.Tensor, x: torch.Tensor, j: int, i: int, order: int) -> torch.Tensor:
    """d^order u[:, j] / dx_i^order as (M, 1).

    A one-column ``u`` goes straight to ``kp.partial`` (which reads the jet). For systems
    the jet's own columns are read when they hold the answer, since slicing ``u`` would
    drop the jet and force the slower autograd fallback."""
    if u.shape[1] == 1:
        return partial(u, x, i, order)
    jet = lookup(u, x)
    if jet is not None:
        if order == 1:
            return jet.du[:, j, i : i + 1]
        if order == 2 and jet.d2u is not None:
            return jet.d2u[:, j, i : i + 1]
    return partial(u[:, j : j + 1], x, i, order)


def _normal_derivative(u: torch.Tensor, x: torch.Tensor, normals: torch.Tensor, cols) -> torch.Tensor:
    """(M, len(cols)): grad u_j . n for each selected output column."""
    out = []
    for j in cols:
        if u.shape[1] == 1:
            g = grad(u, x)
        else:
            jet = lookup(u, x)
            g = jet.du[:, j, :] if jet is not None else grad(u[:, j : j + 1], x)
        out.append((g * normals).sum(dim=1, keepdim=True))
    return torch.cat(out, dim=1)


def _call_u(u_fn, x: torch.Tensor, owner: str) -> torch.Tensor:
    u = u_fn(x)
    if not isinstance(u, torch.Tensor) or u.dim() != 2 or u.shape[0] != x.shape[0]:
        shape = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
        raise KanpinnError(f"{owner}: u_fn(x) must return a (M, m) tensor with M = {x.shape[0]}, got {shape}")
    return u


class Condition:
    """Base class: stores ``weight`` and ``name``; subclasses set ``jet_order`` and
    implement ``sample`` and ``misfit``. ``check_domain(domain)`` is called by
    :class:`~kanpinn.problem.Problem` to reject impossible combinations early."""

    jet_order: int = 0

    def __init__(self, weight: float = 1.0, name: str | None = None):
        owner = type(self).__name__
        self.weight = _check_weight(weight, owner)
        if name is not None and (not isinstance(name, str) or not name):
            raise KanpinnError(f"{owner}: name must be a non-empty string, got {name!r}")
        self.name = name or self._default_name()
        self._checked = False  # values validated on the first misfit only (hot path)

    def _default_name(self) -> str:
        return type(self).__name__.lower()

    def check_domain(self, domain: Domain) -> None:
        """Raise KanpinnError if this condition cannot apply to ``domain``."""

    def sample(self, domain: Domain, n: int, method: str = "sobol", seed=None) -> dict:  # pragma: no cover
        raise NotImplementedError

    def misfit(self, u_fn: Callable, pts: dict) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    # ---- shared by the value-carrying conditions --------------------------------

    def _evaluate(self, v, x: torch.Tensor, what: str, k: int) -> torch.Tensor:
        """A number or callable evaluated at x -> tensor broadcastable to (M, k)."""
        if not callable(v):
            return torch.as_tensor(v, dtype=x.dtype, device=x.device)
        # Values are data, not part of the model: no graph needs to go through them.
        out = v(x.detach())
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(np.asarray(out, dtype=np.float64), dtype=x.dtype, device=x.device)
        else:
            out = out.to(dtype=x.dtype, device=x.device)
        m = x.shape[0]
        if out.dim() == 1 and out.shape[0] == m:
            out = out.reshape(m, 1)
        if out.dim() == 2 and out.shape[0] == m and out.shape[1] in (1, k):
            pass
        elif out.dim() == 0:
            pass
        else:
            raise KanpinnError(
                f"{type(self).__name__}: {what}(x) must return shape ({m}, 1)"
                + (f" or ({m}, {k})" if k != 1 else "")
                + f" for {m} points, got {tuple(out.shape)}"
            )
        if not self._checked and not bool(torch.isfinite(out).all()):
            raise KanpinnError(f"{type(self).__name__}: {what}(x) returned NaN or inf")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight})"


class _BoundaryCondition(Condition):
    """A condition on the spatial (lateral, for SpaceTime) boundary, optionally
    restricted to the part selected by ``on``."""

    needs_normals = False

    def __init__(self, on=None, component=None, weight=1.0, name=None):
        super().__init__(weight, name)
        owner = type(self).__name__
        if on is not None and not callable(on):
            raise KanpinnError(f"{owner}: on must be None (whole boundary) or a callable x -> bool (N,), got {on!r}")
        self.on = on
        self.component = _check_component(component, owner)

    def _mask(self, x: np.ndarray) -> np.ndarray:
        owner = type(self).__name__
        try:
            r = self.on(torch.from_numpy(x))
        except Exception as first:  # noqa: BLE001 - retry with numpy, then report the first error
            try:
                r = self.on(x)
            except Exception:  # noqa: BLE001
                raise KanpinnError(f"{owner}(on=...) failed on boundary points: {first!r}") from first
        if isinstance(r, torch.Tensor):
            r = r.detach().cpu().numpy()
        r = np.asarray(r)
        if r.ndim == 2 and r.shape[1] == 1:
            r = r[:, 0]
        if r.shape != (x.shape[0],):
            raise KanpinnError(
                f"{owner}(on=...) must return a boolean array of shape ({x.shape[0]},), got shape {r.shape}"
            )
        if r.dtype != bool:
            if np.issubdtype(r.dtype, np.integer) and np.isin(r, (0, 1)).all():
                r = r.astype(bool)
            else:
                raise KanpinnError(f"{owner}(on=...) must return booleans, got dtype {r.dtype}")
        return r

    def _boundary_points(self, domain: Domain, n: int, method: str, seed) -> np.ndarray:
        n = _check_n(n)
        method = _check_method(method)
        if self.on is None:
            return domain.sample_boundary(n, method, seed)
        if n == 0:
            return np.zeros((0, domain.dim))
        owner = type(self).__name__
        seeds = _seed_sequence(seed).spawn(_MAX_DRAWS)
        drawn, hits, size = 0, 0, n
        kept = []
        for r in range(_MAX_DRAWS):
            x = domain.sample_boundary(size, method, seeds[r])
            sel = x[self._mask(x)]
            drawn += x.shape[0]
            hits += sel.shape[0]
            if method == "grid":
                # A grid is only a grid as a whole: keep the latest selection, don't stitch.
                kept = [sel]
                have = sel.shape[0]
                if have >= 0.9 * n or size >= _MAX_DRAW_SIZE:
                    break
            else:
                kept.append(sel)
                have = sum(k.shape[0] for k in kept)
                if have >= n:
                    break
            # Size the next draw from the fraction selected so far (8x more if none yet).
            need = n if method == "grid" else n - have
            size = int(min(_MAX_DRAW_SIZE, 8 * size if hits == 0 else math.ceil(1.2 * need * drawn / hits) + 16))
        out = np.concatenate(kept, axis=0)
        if out.shape[0] == 0:
            raise KanpinnError(
                f"{owner}(on=...) selects no boundary points (tried {drawn} points of the "
                f"{type(domain).__name__} boundary); check the selector, e.g. use a tolerance "
                "instead of exact equality"
            )
        return out if method == "grid" else out[:n]

    def sample(self, domain: Domain, n: int, method: str = "sobol", seed=None) -> dict:
        """{"x": (M, d)} on the boundary (plus "normals" (M, d) where needed)."""
        x = self._boundary_points(domain, n, method, seed)
        out = {"x": x}
        if self.needs_normals:
            out["normals"] = domain.normals(x)
        return out


# --------------------------------------------------------------------------- conditions


class Dirichlet(_BoundaryCondition):
    """u = value on the boundary (or the part selected by ``on``). Misfit (M, k):
    u - value, k = number of outputs (1 with ``component=``).

    ``value``: a number or a callable x (M, d) -> (M, 1) tensor; ``on``: None (whole
    boundary) or a callable x (M, d) -> bool (M,). ``sample`` returns {"x": (M, d)}.

    Example:

    >>> square = kp.Rectangle([0, 0], [1, 1])
    >>> bc = kp.Dirichlet(0.0)
    >>> pts = bc.sample(square, 8, seed=0)
    >>> pts["x"].shape
    (8, 2)
    >>> u_fn = lambda x: x[:, 0:1] * (1 - x[:, 0:1]) * x[:, 1:2] * (1 - x[:, 1:2])
    >>> bc.misfit(u_fn, pts).abs().max() < 1e-6     # u vanishes on the boundary
    tensor(True)
    >>> top = kp.Dirichlet(lambda x: torch.sin(torch.pi * x[:, 0:1]), on=lambda x: x[:, 1] > 0.999)
    >>> top.sample(square, 5, seed=0)["x"][:, 1]
    array([1., 1., 1., 1., 1.])
    """

    jet_order = 0

    def __init__(self, value=0.0, on=None, weight: float = 1.0, *, component=None, name=None):
        super().__init__(on, component, weight, name)
        self.value = _check_coefficient(value, "value", "Dirichlet")

    def misfit(self, u_fn, pts):
        x = _tensor(pts["x"])
        u = _call_u(u_fn, x, "Dirichlet")
        cols = _columns(u, self.component)
        u = u if self.component is None else u[:, cols]
        g = self._evaluate(self.value, x, "value", u.shape[1])
        self._checked = True
        return u - g


class Neumann(_BoundaryCondition):
    """du/dn = value on the boundary, n the outward unit normal (spatial; zero t part
    on a SpaceTime). Misfit (M, k): grad u . n - value.

    ``value``/``on`` as for :class:`Dirichlet`. ``sample`` returns {"x": (M, d),
    "normals": (M, d)}.

    Example:

    >>> square = kp.Rectangle([0, 0], [1, 1])
    >>> bc = kp.Neumann(2.0, on=lambda x: x[:, 0] > 0.999)   # the face x = 1
    >>> pts = bc.sample(square, 4, seed=0)
    >>> pts["normals"]
    array([[1., 0.],
           [1., 0.],
           [1., 0.],
           [1., 0.]])
    >>> u_fn = lambda x: x[:, 0:1] ** 2 + x[:, 1:2]            # du/dx = 2 at x = 1
    >>> bc.misfit(u_fn, pts).abs().max() < 1e-6
    tensor(True)
    """

    jet_order = 1
    needs_normals = True

    def __init__(self, value=0.0, on=None, weight: float = 1.0, *, component=None, name=None):
        super().__init__(on, component, weight, name)
        self.value = _check_coefficient(value, "value", "Neumann")

    def misfit(self, u_fn, pts):
        x = _with_grad(_tensor(pts["x"]))
        normals = _tensor(pts["normals"], like=x)
        u = _call_u(u_fn, x, "Neumann")
        cols = _columns(u, self.component)
        dudn = _normal_derivative(u, x, normals, cols)
        g = self._evaluate(self.value, x, "value", len(cols))
        self._checked = True
        return dudn - g


class Robin(_BoundaryCondition):
    """a u + b du/dn = value on the boundary. ``a``, ``b`` and ``value`` are numbers or
    callables x -> (M, 1). Misfit (M, k): a u + b du/dn - value.

    ``sample`` returns {"x": (M, d), "normals": (M, d)}.

    Example (u = x on [0, 1]: u + du/dn is 0 - 1 at x = 0 and 1 + 1 at x = 1):

    >>> bc = kp.Robin(1.0, 1.0, value=0.0)
    >>> pts = bc.sample(kp.Interval(0, 1), 2)
    >>> pts["x"].tolist(), pts["normals"].tolist()
    ([[0.0], [1.0]], [[-1.0], [1.0]])
    >>> bc.misfit(lambda x: x, pts).tolist()
    [[-1.0], [2.0]]
    """

    needs_normals = True

    def __init__(self, a, b, value=0.0, on=None, weight: float = 1.0, *, component=None, name=None):
        super().__init__(on, component, weight, name)
        self.a = _check_coefficient(a, "a", "Robin")
        self.b = _check_coefficient(b, "b", "Robin")
        self.value = _check_coefficient(value, "value", "Robin")

    @property
    def jet_order(self) -> int:
        # b = 0 is a Dirichlet condition in disguise: no derivative needed.
        return 0 if (not callable(self.b) and self.b == 0.0) else 1

    def misfit(self, u_fn, pts):
        x = _with_grad(_tensor(pts["x"]))
        normals = _tensor(pts["normals"], like=x)
        u = _call_u(u_fn, x, "Robin")
        cols = _columns(u, self.component)
        k = len(cols)
        a = self._evaluate(self.a, x, "a", k)
        b = self._evaluate(self.b, x, "b", k)
        g = self._evaluate(self.value, x, "value", k)
        self._checked = True
        us = u if self.component is None else u[:, cols]
        out = a * us - g
        if self.jet_order:
            out = out + b * _normal_derivative(u, x, normals, cols)
        return out


class Periodic(Condition):
    """u (and its first ``derivatives`` derivatives along ``variable``) equal on the two
    opposite faces ``variable = lo`` and ``variable = hi`` of a box-shaped domain (a Box,
    or a SpaceTime over one; ``variable`` must then be spatial).

    ``sample`` returns matched points: ``x_lo`` (M, d) on the low face and ``x_hi`` the
    same points moved to the high face (``x`` is ``x_lo``). Misfit (M, m(1+derivatives)):
    the differences [u, d u/d var, ...](x_lo) - [...](x_hi).

    Example:

    >>> square = kp.Rectangle([0, 0], [1, 1])
    >>> bc = kp.Periodic("x")
    >>> pts = bc.sample(square, 6, seed=0)
    >>> pts["x_lo"][:, 0], pts["x_hi"][:, 0]
    (array([0., 0., 0., 0., 0., 0.]), array([1., 1., 1., 1., 1., 1.]))
    >>> u_fn = lambda x: torch.sin(2 * torch.pi * x[:, 0:1]) * x[:, 1:2]
    >>> m = bc.misfit(u_fn, pts)
    >>> m.shape                              # u and du/dx on both faces
    torch.Size([6, 2])
    >>> m.abs().max() < 1e-5
    tensor(True)
    """

    def __init__(self, variable: str, weight: float = 1.0, *, derivatives: int = 1, name=None):
        if not isinstance(variable, str) or not variable:
            raise KanpinnError(f"Periodic: variable must be a variable name such as 'x', got {variable!r}")
        self.variable = variable
        if isinstance(derivatives, bool) or not isinstance(derivatives, numbers.Integral) or not 0 <= derivatives <= 2:
            raise KanpinnError(f"Periodic: derivatives must be 0, 1 or 2, got {derivatives!r}")
        self.derivatives = int(derivatives)
        super().__init__(weight, name)

    def _default_name(self) -> str:
        return f"periodic_{self.variable}"

    @property
    def jet_order(self) -> int:
        return self.derivatives

    def check_domain(self, domain: Domain) -> None:
        if self.variable not in domain.variables:
            raise KanpinnError(
                f"Periodic({self.variable!r}): the domain's variables are {domain.variables}"
            )
        if isinstance(domain, SpaceTime) and self.variable == domain.variables[-1]:
            raise KanpinnError(
                f"Periodic({self.variable!r}): time is not a periodic direction here; "
                "use Initial for t = t0 or pick a spatial variable"
            )
        if not domain.is_box:
            raise KanpinnError(
                f"Periodic({self.variable!r}) needs opposite flat faces (a Box/Rectangle/Interval, "
                f"or SpaceTime over one), got {type(domain).__name__}"
            )

    def sample(self, domain: Domain, n: int, method: str = "sobol", seed=None) -> dict:
        self.check_domain(domain)
        n = _check_n(n)
        method = _check_method(method)
        i = domain.variables.index(self.variable)
        others = [j for j in range(domain.dim) if j != i]
        if others:
            u = _unit_samples(n, len(others), method, _seed_sequence(seed))
        else:  # an interval: the two faces are single points, one pair says it all
            u = np.zeros((1 if n > 0 else 0, 0))
        x_lo = np.empty((u.shape[0], domain.dim))
        x_lo[:, others] = domain.lo[others] + u * (domain.hi[others] - domain.lo[others])
        x_lo[:, i] = domain.lo[i]
        if isinstance(domain, SpaceTime) and others:
            # at t0 the initial condition rules: an initial value periodic in value but not
            # in its derivative (a corner at the seam, which the equation then rounds off)
            # contradicts the derivative condition there, and the solution takes the
            # initial value. Only a grid puts points exactly on t0.
            x_lo = x_lo[x_lo[:, -1] > domain.lo[-1]]
        x_hi = x_lo.copy()
        x_hi[:, i] = domain.hi[i]
        return {"x": x_lo, "x_lo": x_lo, "x_hi": x_hi}

    def _stack(self, u_fn, x, i):
        u = _call_u(u_fn, x, "Periodic")
        parts = [u]
        for order in range(1, self.derivatives + 1):
            parts += [_deriv(u, x, j, i, order) for j in range(u.shape[1])]
        return torch.cat(parts, dim=1)

    def misfit(self, u_fn, pts):
        x_lo = _tensor(pts["x_lo"])
        x_hi = _tensor(pts["x_hi"], like=x_lo)
        if self.derivatives:
            x_lo, x_hi = _with_grad(x_lo), _with_grad(x_hi)
        # Which column is the periodic variable: the one where the two faces differ.
        diff = (x_hi - x_lo).detach().abs()
        if x_lo.shape[0] == 0:
            return x_lo.new_zeros((0, 1))
        i = int(diff.sum(dim=0).argmax())
        # Two separate evaluations (not one on the concatenation) so the jets attached by
        # the solver's u_fn stay keyed to the exact tensors we differentiate against.
        return self._stack(u_fn, x_lo, i) - self._stack(u_fn, x_hi, i)


class Initial(Condition):
    """d^k u/dt^k = value at t = t0 of a SpaceTime (k = ``derivative``, default 0: u
    itself). Misfit (M, m) or (M, 1) with ``component=``.

    ``value``: a number or a callable x (M, d) -> (M, 1). ``sample`` returns
    {"x": (M, d)} with the last (t) column equal to t0.

    Example:

    >>> domain = kp.SpaceTime(kp.Interval(0, 1), t=(0, 1))
    >>> ic = kp.Initial(lambda x: torch.sin(torch.pi * x[:, 0:1]))
    >>> pts = ic.sample(domain, 5, seed=0)
    >>> pts["x"][:, 1]
    array([0., 0., 0., 0., 0.])
    >>> u_fn = lambda x: torch.sin(torch.pi * x[:, 0:1]) * torch.exp(-x[:, 1:2])
    >>> ic.misfit(u_fn, pts).abs().max() < 1e-6
    tensor(True)
    >>> kp.Initial(0.0, derivative=1).name     # du/dt = 0 at t = t0
    'initial_t'
    """

    def __init__(self, value=0.0, derivative: int = 0, weight: float = 1.0, *, component=None, name=None):
        if isinstance(derivative, bool) or not isinstance(derivative, numbers.Integral) or derivative < 0:
            raise KanpinnError(f"Initial: derivative must be an integer >= 0, got {derivative!r}")
        self.derivative = int(derivative)
        super().__init__(weight, name)
        self.value = _check_coefficient(value, "value", "Initial")
        self.component = _check_component(component, "Initial")

    def _default_name(self) -> str:
        return "initial" if self.derivative == 0 else "initial_" + "t" * self.derivative

    @property
    def jet_order(self) -> int:
        return min(self.derivative, 2)

    def check_domain(self, domain: Domain) -> None:
        if not isinstance(domain, SpaceTime):
            raise KanpinnError(
                f"Initial needs a SpaceTime domain (time as the last variable), got {type(domain).__name__}; "
                "wrap the space: kp.SpaceTime(space, t=(t0, t1))"
            )

    def sample(self, domain: Domain, n: int, method: str = "sobol", seed=None) -> dict:
        """{"x": (M, d)} with the last (t) column equal to t0."""
        self.check_domain(domain)
        return {"x": domain.sample_initial(n, method, seed)}

    def misfit(self, u_fn, pts):
        x = _tensor(pts["x"])
        if self.derivative:
            x = _with_grad(x)
        u = _call_u(u_fn, x, "Initial")
        cols = _columns(u, self.component)
        t = x.shape[1] - 1
        if self.derivative == 0:
            lhs = u if self.component is None else u[:, cols]
        else:
            lhs = torch.cat([_deriv(u, x, j, t, self.derivative) for j in cols], dim=1)
        g = self._evaluate(self.value, x, "value", len(cols))
        self._checked = True
        return lhs - g


class Data(Condition):
    """Observations: u(points) = values. ``points`` (N, d) and ``values`` (N, m) arrays
    or tensors ((N,) is read as one column). ``sample`` ignores ``n`` and returns the
    fixed points. Misfit (N, m): u(points) - values.

    Points outside the problem's domain are refused (a KAN's grid covers the domain, so
    the model extrapolates there and the loss can explode); ``outside="allow"`` keeps
    them with a :class:`~kanpinn.errors.KanpinnWarning` giving their count.

    Example:

    >>> obs = kp.Data([[0.0], [0.5], [1.0]], [0.0, 1.0, 0.0])
    >>> obs.points.shape, obs.values.shape
    ((3, 1), (3, 1))
    >>> pts = obs.sample(kp.Interval(0, 1))
    >>> obs.misfit(lambda x: 4 * x * (1 - x), pts).tolist()
    [[0.0], [0.0], [0.0]]
    """

    jet_order = 0

    OUTSIDE = ("error", "allow")

    def __init__(self, points, values, weight: float = 1.0, *, component=None, name=None, outside="error"):
        super().__init__(weight, name)
        if not isinstance(outside, str) or outside not in self.OUTSIDE:
            raise KanpinnError(f"Data: outside must be 'error' (refuse points outside the domain) or "
                               f"'allow' (keep them, with a warning), got {outside!r}")
        self.outside = outside
        self.points = self._array(points, "points")
        self.values = self._array(values, "values")
        if self.points.shape[0] != self.values.shape[0]:
            raise KanpinnError(
                f"Data: points and values must have the same number of rows, got "
                f"{self.points.shape[0]} points and {self.values.shape[0]} values"
            )
        self.component = _check_component(component, "Data")
        if self.component is not None and self.values.shape[1] != 1:
            raise KanpinnError(
                f"Data: with component={self.component} values must have one column, got {self.values.shape[1]}"
            )

    @staticmethod
    def _array(a, what: str) -> np.ndarray:
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        try:
            arr = np.array(a, dtype=np.float64)
        except (TypeError, ValueError):
            raise KanpinnError(f"Data: {what} must be a numeric array or tensor, got {type(a).__name__}") from None
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise KanpinnError(f"Data: {what} must have shape (N, {'d' if what == 'points' else 'm'}), got {arr.shape}")
        if arr.shape[0] == 0:
            raise KanpinnError(f"Data: {what} is empty")
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            raise KanpinnError(
                f"Data: {what} contain NaN or inf in {int(bad.sum())} row(s), first at row {int(np.argmax(bad))}"
            )
        return arr

    def _check_dim(self, domain: Domain) -> None:
        if self.points.shape[1] != domain.dim:
            raise KanpinnError(
                f"Data: points have {self.points.shape[1]} columns but the domain has "
                f"{domain.dim} variables {domain.variables}"
            )

    def check_domain(self, domain: Domain) -> None:
        """Right number of columns, and every point in the (closed) domain unless
        ``outside="allow"`` (then a warning with the count)."""
        self._check_dim(domain)
        out = ~np.asarray(domain.contains(self.points), dtype=bool)
        n_out = int(out.sum())
        if not n_out:
            return
        first = self.points[int(np.argmax(out))]
        at = ", ".join(f"{v}={c:.4g}" for v, c in zip(domain.variables, first))
        what = (f"Data: {n_out} of {self.points.shape[0]} point(s) lie outside the "
                f"{type(domain).__name__} domain (first: row {int(np.argmax(out))}, {at})")
        if self.outside == "error":
            raise KanpinnError(what + '; remove them, or pass outside="allow" to keep them')
        warnings.warn(what + '; kept (outside="allow")', KanpinnWarning, stacklevel=3)

    def sample(self, domain: Domain, n: int = 0, method: str = "sobol", seed=None) -> dict:
        """The fixed observation points and values (``n``, ``method``, ``seed`` ignored)."""
        self._check_dim(domain)
        return {"x": self.points.copy(), "values": self.values.copy()}

    def misfit(self, u_fn, pts):
        x = _tensor(pts["x"])
        values = _tensor(pts.get("values", self.values), like=x)
        u = _call_u(u_fn, x, "Data")
        if self.component is not None:
            u = u[:, _columns(u, self.component)]
        if u.shape[1] != values.shape[1]:
            raise KanpinnError(
                f"Data: values have {values.shape[1]} column(s) but the model has {u.shape[1]} output(s); "
                "pass component= to observe a single output"
            )
        return u - values
