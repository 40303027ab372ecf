"""Geometric domains and their collocation samplers.

A domain knows its variable names, its bounding box, how to draw points inside it and
on its (spatial) boundary, the outward unit normal at a boundary point, and how to
serialise itself to JSON. Every array crossing this module's API is a float64 numpy
array of shape ``(n, dim)``; conversion to torch happens in the solver.

Sampling methods (``method=``):

``"uniform"``
    i.i.d. uniform points (numpy ``default_rng``).
``"sobol"``
    scrambled Sobol' points (``scipy.stats.qmc.Sobol``). When ``n`` is not a power of
    two the next power of two is drawn and the first ``n`` points kept, which keeps the
    sequence's balance properties for the prefix and avoids scipy's warning.
``"lhs"``
    Latin hypercube (``scipy.stats.qmc.LatinHypercube``).
``"grid"``
    a tensor-product grid of *about* ``n`` points: ``m = round(n ** (1/k))`` points per
    parameter direction, endpoints included. For the interior of a box this is the full
    mesh *including* the edges (so ``Rectangle.sample_interior(2601, "grid")`` is the
    51 x 51 mesh of the closed rectangle, the convention of pykan's PDE tutorial); the
    boundary grid uses ``linspace`` on each face (so ``sample_boundary(204, "grid")`` of
    a rectangle gives 51 points per side, corners included on both adjoining sides).

``seed`` makes every method reproducible; it may be ``None`` (fresh entropy), a
non-negative int, a ``numpy.random.SeedSequence`` or a ``numpy.random.Generator``.

Boundaries made of several pieces (the faces of a box, the two sides of a space-time
cylinder over an interval) receive points in proportion to each piece's measure (face
area), with the rounding remainder handed out by the largest-remainder rule so that
equal faces get equal counts.

Domains that no map of the unit cube covers evenly (polygons, balls in d >= 3, the set
operations ``a - b``, ``a | b``, ``a & b`` of ``kanpinn.geometry``) draw interior points
by rejection: points of the chosen method in the bounding box, kept when ``contains``
says so, in order (so a Sobol prefix stays a Sobol prefix); boundary pieces cut by a set
operation are sampled the same way on their parametrisation.

Every domain also has ``distance(x)``: a smooth approximate distance (torch, (N, 1)),
zero on the boundary, positive inside, |∇| = 1 on the boundary, built from R-functions
(``kanpinn.geometry.rfunctions``) for hard constraints.
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Callable, Sequence

import numpy as np
import torch

from .errors import KanpinnError
from .geometry import rfunctions

__all__ = [
    "METHODS",
    "Domain",
    "Box",
    "Rectangle",
    "Interval",
    "Disk",
    "SpaceTime",
    "domain_from_spec",
]

METHODS = ("uniform", "sobol", "lhs", "grid")

# Relative tolerance used to decide "on the boundary" / "inside". Sampled boundary points
# are placed exactly on planar faces, so this only has to absorb round-off (circle points,
# user-supplied points, float32 round trips).
_TOL = 1e-9

# Rejection sampling gives up after this many rounds (each sized from the accepted
# fraction so far), so a domain that is (numerically) empty fails instead of looping.
_MAX_ROUNDS = 12


# --------------------------------------------------------------------------- helpers


def _check_n(n, what: str = "n") -> int:
    """Return ``n`` as a Python int, or raise if it is not a non-negative integer."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        if isinstance(n, float) and n.is_integer() and n >= 0:
            return int(n)
        raise KanpinnError(f"{what} must be a non-negative integer, got {n!r}")
    if n < 0:
        raise KanpinnError(f"{what} must be a non-negative integer, got {n}")
    return int(n)


def _check_method(method) -> str:
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise KanpinnError(
            f"unknown sampling method {method!r}; choose one of {', '.join(METHODS)}"
        )
    return method.lower()


def _seed_sequence(seed) -> np.random.SeedSequence:
    """Normalise every accepted seed form to a SeedSequence (so it can be spawned)."""
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        # Draw from the generator so repeated calls with the same generator differ,
        # exactly as a user handing in a generator would expect.
        return np.random.SeedSequence(int(seed.integers(0, 2**63 - 1)))
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise KanpinnError(
        f"seed must be None, a non-negative int, a SeedSequence or a Generator, got {seed!r}"
    )


def _qmc_engine(cls, k: int, ss: np.random.SeedSequence, **kw):
    """Build a scipy QMC engine seeded from ``ss`` (scipy >= 1.15 says ``rng=``)."""
    gen = np.random.default_rng(ss)
    try:
        return cls(k, rng=gen, **kw)
    except TypeError:  # older scipy only knows ``seed=``
        return cls(k, seed=gen, **kw)


def _grid_side(n: int, k: int) -> int:
    """Points per direction so that ``side ** k`` is as close as possible to ``n``."""
    if n <= 1:
        return 1
    guess = max(1, int(round(n ** (1.0 / k))))
    # ``n ** (1/k)`` can land just below an integer (1000 ** (1/3) = 9.999...), so settle
    # the choice with exact integer arithmetic among the neighbours.
    return min((c for c in (guess - 1, guess, guess + 1) if c >= 1), key=lambda c: abs(c**k - n))


def _grid_axis(m: int, periodic: bool) -> np.ndarray:
    """``m`` points of [0, 1]: endpoints included, or [0, 1) for a periodic direction
    (whose endpoints are the same point, e.g. the angle of a circle)."""
    if periodic:
        return np.arange(m, dtype=np.float64) / m
    if m == 1:
        return np.array([0.5])
    return np.linspace(0.0, 1.0, m)


def _tensor_grid(axes: Sequence[np.ndarray]) -> np.ndarray:
    """Cartesian product of 1-D arrays -> (prod(len), len(axes)), first axis slowest."""
    if not axes:
        return np.zeros((1, 0))
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def _unit_samples(n: int, k: int, method: str, ss: np.random.SeedSequence,
                  periodic: Sequence[bool] | None = None) -> np.ndarray:
    """Points of the unit cube [0, 1]^k: exactly ``n`` rows, except for ``"grid"``
    which returns ``_grid_side(n, k) ** k`` rows (about ``n``)."""
    if k == 0:
        return np.zeros((1 if (method == "grid" and n > 0) else n, 0))
    if n == 0:
        return np.zeros((0, k))
    if method == "grid":
        periodic = tuple(periodic) if periodic is not None else (False,) * k
        m = _grid_side(n, k)
        return _tensor_grid([_grid_axis(m, p) for p in periodic])
    if method == "uniform":
        return np.random.default_rng(ss).random((n, k))
    if method == "sobol":
        from scipy.stats import qmc

        engine = _qmc_engine(qmc.Sobol, k, ss, scramble=True)
        return np.asarray(engine.random_base2(max(0, math.ceil(math.log2(n)))))[:n]
    if method == "lhs":
        from scipy.stats import qmc

        return np.asarray(_qmc_engine(qmc.LatinHypercube, k, ss).random(n))
    raise AssertionError(method)  # _check_method guards this


def _allocate(n: int, weights: Sequence[float]) -> list[int]:
    """Split ``n`` into integer counts proportional to ``weights`` (largest remainder,
    ties to the earlier piece), so equal weights get counts differing by at most one."""
    w = np.asarray(weights, dtype=np.float64)
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    short = n - int(counts.sum())
    if short > 0:
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:short]] += 1
    return counts.tolist()


def _as_vector(v, name: str, owner: str) -> np.ndarray:
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise KanpinnError(f"{owner}: {name} must be a sequence of numbers, got {v!r}") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise KanpinnError(f"{owner}: {name} must be a 1-D sequence of numbers, got {v!r}")
    if not np.all(np.isfinite(arr)):
        raise KanpinnError(f"{owner}: {name} must be finite, got {arr.tolist()}")
    return arr


def _as_scalar(v, name: str, owner: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        try:  # accept 0-d arrays / tensors
            v = float(np.asarray(v, dtype=np.float64).reshape(()))
        except (TypeError, ValueError):
            raise KanpinnError(f"{owner}: {name} must be a real number, got {v!r}") from None
    v = float(v)
    if not math.isfinite(v):
        raise KanpinnError(f"{owner}: {name} must be finite, got {v}")
    return v


def _check_variables(variables, dim: int, owner: str) -> tuple[str, ...]:
    variables = tuple(variables)
    if len(variables) != dim:
        raise KanpinnError(f"{owner}: {dim} variable names needed, got {variables!r}")
    if not all(isinstance(v, str) and v for v in variables):
        raise KanpinnError(f"{owner}: variable names must be non-empty strings, got {variables!r}")
    if len(set(variables)) != dim:
        raise KanpinnError(f"{owner}: variable names must be distinct, got {variables!r}")
    return variables


class _Piece:
    """A smooth part of a boundary, parametrised by the unit cube [0, 1]^k.

    ``map(u)`` sends (n, k) parameters to (n, dim) points; ``measure`` (length / area)
    decides the share of boundary points the piece receives; ``periodic[j]`` says that
    parameter j wraps around (the angle of a circle), so its grid omits the endpoint.

    A piece cut by a set operation has ``keep(x) -> bool (n,)`` (which mapped points
    survive) and ``fraction`` (the surviving share of the parametrisation, which sizes the
    draws); its ``measure`` is then the surviving measure.
    """

    def __init__(self, k: int, measure: float, map_: Callable[[np.ndarray], np.ndarray],
                 periodic: Sequence[bool] | None = None,
                 keep: Callable[[np.ndarray], np.ndarray] | None = None, fraction: float = 1.0):
        self.k = k
        self.measure = float(measure)
        self.map = map_
        self.periodic = tuple(periodic) if periodic is not None else (False,) * k
        self.keep = keep
        self.fraction = float(fraction)

    def sample(self, n: int, method: str, ss: np.random.SeedSequence) -> np.ndarray:
        if n == 0:
            return self.map(np.zeros((0, self.k)))
        if self.keep is None:
            return self.map(_unit_samples(n, self.k, method, ss, self.periodic))
        if method == "grid":
            # A grid is a grid only as a whole: one grid sized so that about n survive.
            u = _unit_samples(max(1, round(n / self.fraction)), self.k, method, ss, self.periodic)
            x = self.map(u)
            return x[self.keep(x)]
        return _rejection(n, self.fraction, ss, method,
                          lambda m, s: self.map(_unit_samples(m, self.k, method, s, self.periodic)),
                          self.keep, "boundary piece")


def _rejection(n: int, fraction: float, ss: np.random.SeedSequence, method: str,
               draw: Callable[[int, np.random.SeedSequence], np.ndarray],
               keep: Callable[[np.ndarray], np.ndarray], what: str) -> np.ndarray:
    """The first ``n`` points of successive draws that ``keep`` accepts. Round r draws
    ``draw(m, seed_r)`` with m sized from the accepted fraction (the expected ``fraction``
    at first), so the result depends only on the seed."""
    seeds = ss.spawn(_MAX_ROUNDS)
    kept, have, drawn, hits = [], 0, 0, 0
    for r in range(_MAX_ROUNDS):
        rate = hits / drawn if hits else (fraction if r == 0 else fraction / 8 ** r)
        size = int(min(1 << 24, math.ceil(1.1 * (n - have) / max(rate, 1e-12)) + 16))
        x = draw(size, seeds[r])
        sel = x[keep(x)]
        drawn += x.shape[0]
        hits += sel.shape[0]
        kept.append(sel)
        have += sel.shape[0]
        if have >= n:
            return np.concatenate(kept, axis=0)[:n]
    raise KanpinnError(
        f"rejection sampling of a {what} accepted {hits} of {drawn} points, fewer than the "
        f"{n} asked for; the region is empty or too thin to sample"
    )


# --------------------------------------------------------------------------- base


class Domain:
    """Interface shared by all domains (see docs/DESIGN.md).

    Attributes: ``variables`` (tuple of names, one per column), ``dim``, and the
    bounding box ``lo``, ``hi`` (float64 arrays of shape (dim,)).
    Subclasses implement ``_boundary_pieces``, ``normals``, ``contains``,
    ``boundary_distance``, ``distance``, ``volume`` and ``spec``; those whose interior is
    the image of the unit cube under an even map set ``_maps_unit_cube`` and implement
    ``_map_interior`` (the others are sampled by rejection from the bounding box, and
    ``_interior_grid`` / ``test_points`` default to the bounding-box grid kept inside).

    Set operations: ``a - b`` (difference), ``a | b`` (union), ``a & b`` (intersection)
    of two spatial domains of the same dimension (see ``kanpinn.geometry.csg``).
    """

    _maps_unit_cube = False

    variables: tuple[str, ...]
    lo: np.ndarray
    hi: np.ndarray

    @property
    def dim(self) -> int:
        """Number of coordinates (columns of every point array)."""
        return len(self.variables)

    @property
    def is_box(self) -> bool:
        """True when the domain is exactly its bounding box (axis-aligned faces)."""
        return False

    # ---- sampling ---------------------------------------------------------------

    def sample_interior(self, n: int, method: str = "sobol", seed=None) -> np.ndarray:
        """Collocation points in the closed domain.

        Returns (n, dim) float64; ``"grid"`` returns about ``n`` points (see module doc).
        """
        n = _check_n(n)
        method = _check_method(method)
        if n == 0:
            return np.zeros((0, self.dim))
        if method == "grid":
            return np.ascontiguousarray(self._interior_grid(n), dtype=np.float64)
        ss = _seed_sequence(seed)
        if not self._maps_unit_cube:
            x = _rejection(n, self._fill, ss, method, self._bbox_draw(method), self.contains,
                           f"{type(self).__name__} interior")
            return np.ascontiguousarray(x, dtype=np.float64)
        u = _unit_samples(n, self.dim, method, ss)
        return np.ascontiguousarray(self._map_interior(u), dtype=np.float64)

    def sample_boundary(self, n: int, method: str = "sobol", seed=None) -> np.ndarray:
        """Points on the (spatial) boundary, shared among its pieces by measure.

        Returns (n, dim) float64, about ``n`` rows for ``"grid"``; rows are grouped by
        piece (faces in the order x-low, x-high, y-low, y-high, ... for boxes).
        """
        n = _check_n(n)
        method = _check_method(method)
        pieces = self._boundary_pieces()
        counts = _allocate(n, [p.measure for p in pieces])
        seeds = _seed_sequence(seed).spawn(len(pieces))
        parts = [p.sample(c, method, s) for p, c, s in zip(pieces, counts, seeds)]
        return np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float64)

    # ---- geometry (implemented by subclasses) -------------------------------------

    def normals(self, x) -> np.ndarray:  # pragma: no cover - abstract
        """Outward unit normals (n, dim) at boundary points ``x`` (n, dim)."""
        raise NotImplementedError

    def contains(self, x) -> np.ndarray:  # pragma: no cover - abstract
        """Boolean (n,): which rows of ``x`` lie in the closed domain (round-off tolerant)."""
        raise NotImplementedError

    def boundary_distance(self, x) -> np.ndarray:  # pragma: no cover - abstract
        """(n,) distance to the (spatial) boundary: >= 0 inside, 0 on it, < 0 outside."""
        raise NotImplementedError

    def distance(self, x) -> torch.Tensor:  # pragma: no cover - abstract
        """Smooth approximate distance to the (spatial) boundary for hard constraints:
        ``x`` (N, dim) tensor -> (N, 1) tensor of its dtype, zero on the boundary,
        positive inside, negative outside, twice differentiable inside, |∇| = 1 on the
        boundary (to first order). Differentiable with respect to ``x``."""
        raise NotImplementedError

    def test_points(self, n_per_dim: int) -> np.ndarray:
        """Dense evaluation grid (M, dim): ``n_per_dim`` points per direction over the
        bounding box, edges included, keeping only points inside the domain."""
        m = _check_n(n_per_dim, "n_per_dim")
        if m < 2:
            raise KanpinnError(f"test_points needs n_per_dim >= 2, got {m}")
        g = self.lo + _tensor_grid([np.linspace(0.0, 1.0, m)] * self.dim) * (self.hi - self.lo)
        return g[self.contains(g)]

    def spec(self) -> dict:  # pragma: no cover - abstract
        """JSON-safe description; ``domain_from_spec(d.spec())`` rebuilds ``d``."""
        raise NotImplementedError

    def _map_interior(self, u: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _interior_grid(self, n: int) -> np.ndarray:
        """The bounding-box grid kept inside, sized so that about ``n`` points remain."""
        m = _grid_side(max(1, round(n / self._fill)), self.dim)
        if m == 1:
            return self.sample_interior(1, "sobol", seed=0)
        g = self.lo + _tensor_grid([_grid_axis(m, False)] * self.dim) * (self.hi - self.lo)
        return g[self.contains(g)]

    @property
    def _fill(self) -> float:
        """Share of the bounding box that the domain covers (sizes rejection draws)."""
        return min(1.0, self.volume / float(np.prod(self.hi - self.lo)))

    def _bbox_draw(self, method: str):
        """``draw(m, seed) -> (m, dim)`` points of ``method`` in the bounding box."""
        return lambda m, ss: self.lo + _unit_samples(m, self.dim, method, ss) * (self.hi - self.lo)

    def _distance_input(self, x) -> torch.Tensor:
        """``x`` as a floating tensor of shape (N, dim) (numpy accepted: float64)."""
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        if x.ndim == 1 and self.dim == 1:
            x = x.reshape(-1, 1)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise KanpinnError(
                f"{type(self).__name__}.distance: x must have shape (N, {self.dim}) "
                f"(columns {', '.join(self.variables)}), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        return x

    def _const(self, values, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(np.array(values, dtype=np.float64), dtype=like.dtype, device=like.device)

    # ---- set operations (kanpinn.geometry.csg imports this module: import it lazily) --

    def __sub__(self, other):
        from .geometry.csg import Difference
        return Difference(self, other)

    def __or__(self, other):
        from .geometry.csg import Union
        return Union(self, other)

    def __and__(self, other):
        from .geometry.csg import Intersection
        return Intersection(self, other)

    def _boundary_pieces(self) -> list[_Piece]:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- shared utilities ---------------------------------------------------------

    def _points(self, x, what: str = "x") -> np.ndarray:
        """Validate and convert user points (numpy or torch) to a float64 (n, dim) array."""
        if hasattr(x, "detach"):  # torch tensor: no torch import needed here
            x = x.detach().cpu().numpy()
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 1 and self.dim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise KanpinnError(
                f"{type(self).__name__}: {what} must have shape (n, {self.dim}) "
                f"(columns {', '.join(self.variables)}), got {tuple(arr.shape)}"
            )
        return arr

    @property
    def volume(self) -> float:  # pragma: no cover - abstract
        """Measure of the domain (length, area, volume, or space volume x duration)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "type")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Domain) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(json.dumps(self.spec(), sort_keys=True))


# --------------------------------------------------------------------------- boxes


class Box(Domain):
    """Axis-aligned box ``[lo_1, hi_1] x ... x [lo_d, hi_d]`` in any dimension d.

    Variables are ``x, y, z`` (the first d of them) for d <= 3 and ``x1 ... xd`` above,
    unless ``variables=`` names them.

    ``lo``, ``hi``: sequences of d numbers with ``lo < hi`` in every direction. Sampling
    returns float64 arrays of shape (n, d), one column per variable.

    Example:

    >>> box = kp.Box([0, 0, 0, 0], [1, 1, 1, 2])
    >>> box.variables, box.dim
    (('x1', 'x2', 'x3', 'x4'), 4)
    >>> box.sample_interior(16, "sobol", seed=0).shape
    (16, 4)
    >>> kp.Box([0, 0, 0], [1, 1, 1]).variables
    ('x', 'y', 'z')
    >>> box.volume
    2.0
    """

    def __init__(self, lo, hi, variables: Sequence[str] | None = None):
        owner = type(self).__name__
        lo = _as_vector(lo, "lo", owner)
        hi = _as_vector(hi, "hi", owner)
        if lo.shape != hi.shape:
            raise KanpinnError(
                f"{owner}: lo and hi must have the same length, got {lo.size} and {hi.size}"
            )
        bad = np.nonzero(~(lo < hi))[0]
        if bad.size:
            i = int(bad[0])
            raise KanpinnError(
                f"{owner}: need lo < hi in every direction, but lo[{i}] = {lo[i]} >= hi[{i}] = {hi[i]}"
            )
        d = lo.size
        if variables is None:
            variables = ("x", "y", "z")[:d] if d <= 3 else tuple(f"x{i + 1}" for i in range(d))
        self.variables = _check_variables(variables, d, owner)
        self.lo, self.hi = lo, hi
        self.lo.setflags(write=False)
        self.hi.setflags(write=False)

    _maps_unit_cube = True

    @property
    def is_box(self) -> bool:
        return True

    @property
    def volume(self) -> float:
        return float(np.prod(self.hi - self.lo))

    def distance(self, x) -> torch.Tensor:
        """R-conjunction of the slabs (x_i - lo_i)(hi_i - x_i)/(hi_i - lo_i), each of slope
        1 on its two faces (exact on an interval)."""
        x = self._distance_input(x)
        slabs = rfunctions.slab(x, self._const(self.lo, x), self._const(self.hi, x))
        phi = slabs[:, 0:1]
        for i in range(1, self.dim):
            phi = rfunctions.conjunction(phi, slabs[:, i:i + 1])
        return phi

    def _map_interior(self, u):
        return self.lo + u * (self.hi - self.lo)

    def _interior_grid(self, n):
        m = _grid_side(n, self.dim)
        return self._map_interior(_tensor_grid([_grid_axis(m, False)] * self.dim))

    def _boundary_pieces(self):
        ext = self.hi - self.lo
        pieces = []
        for i in range(self.dim):
            others = [j for j in range(self.dim) if j != i]
            area = float(np.prod(ext[others])) if others else 1.0
            for value in (self.lo[i], self.hi[i]):
                def face(u, i=i, others=others, value=value):
                    x = np.empty((u.shape[0], self.dim))
                    x[:, others] = self.lo[others] + u * ext[others]
                    x[:, i] = value  # exactly on the face, so ``x[:, i] == lo_i`` works
                    return x

                pieces.append(_Piece(len(others), area, face))
        return pieces

    def sample_boundary(self, n: int, method: str = "sobol", seed=None) -> np.ndarray:
        if self.dim == 1:
            # The boundary of an interval is its two end points: alternate a, b, a, b ...
            n = _check_n(n)
            _check_method(method)
            x = np.where(np.arange(n) % 2 == 0, self.lo[0], self.hi[0])
            return x.reshape(-1, 1).astype(np.float64)
        return super().sample_boundary(n, method, seed)

    def _face_distances(self, x):
        """Relative distances (n, d) to the low and high faces (scaled by the extents,
        so the tolerance means the same thing in every direction)."""
        ext = self.hi - self.lo
        return np.abs(x - self.lo) / ext, np.abs(self.hi - x) / ext

    def normals(self, x) -> np.ndarray:
        """Outward normal of the nearest face. At an edge or corner (several faces within
        round-off) the normalised sum of those faces' normals is returned."""
        x = self._points(x)
        d_lo, d_hi = self._face_distances(x)
        dmin = np.minimum(d_lo.min(axis=1), d_hi.min(axis=1))[:, None]
        on_lo = d_lo <= dmin + _TOL
        on_hi = d_hi <= dmin + _TOL
        n = on_hi.astype(np.float64) - on_lo.astype(np.float64)
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        # A degenerate tie (point at the centre of a 1-D interval) has n = 0: fall back to
        # the high face of the first direction rather than dividing by zero.
        zero = norm[:, 0] == 0
        n[zero, 0] = 1.0
        norm[zero] = 1.0
        return n / norm

    def contains(self, x) -> np.ndarray:
        x = self._points(x)
        tol = _TOL * (self.hi - self.lo)
        return np.all((x >= self.lo - tol) & (x <= self.hi + tol), axis=1)

    def boundary_distance(self, x) -> np.ndarray:
        """Exact distance to the boundary inside; outside, minus the largest violation."""
        x = self._points(x)
        return np.minimum(x - self.lo, self.hi - x).min(axis=1)

    def test_points(self, n_per_dim: int) -> np.ndarray:
        m = _check_n(n_per_dim, "n_per_dim")
        if m < 2:
            raise KanpinnError(f"test_points needs n_per_dim >= 2, got {m}")
        return self._map_interior(_tensor_grid([np.linspace(0.0, 1.0, m)] * self.dim))

    def _default_variables(self):
        d = self.dim
        return ("x", "y", "z")[:d] if d <= 3 else tuple(f"x{i + 1}" for i in range(d))

    def spec(self) -> dict:
        out = {"type": "Box", "lo": self.lo.tolist(), "hi": self.hi.tolist()}
        if self.variables != self._default_variables():
            out["variables"] = list(self.variables)
        return out


class Rectangle(Box):
    """``[lo[0], hi[0]] x [lo[1], hi[1]]`` with variables ``x, y``.

    ``lo``, ``hi``: two numbers each. Points are float64 arrays of shape (n, 2) with
    columns (x, y); boundary points come face by face (x-low, x-high, y-low, y-high).

    Example:

    >>> rect = kp.Rectangle([0, 0], [1, 1])
    >>> rect.variables
    ('x', 'y')
    >>> rect.sample_interior(100, "sobol", seed=0).shape
    (100, 2)
    >>> rect.sample_interior(9, "grid")       # 3 x 3 mesh, edges included
    array([[0. , 0. ],
           [0. , 0.5],
           [0. , 1. ],
           [0.5, 0. ],
           [0.5, 0.5],
           [0.5, 1. ],
           [1. , 0. ],
           [1. , 0.5],
           [1. , 1. ]])
    >>> rect.sample_boundary(40, "uniform", seed=0).shape
    (40, 2)
    """

    def __init__(self, lo, hi, variables: Sequence[str] | None = None):
        for name, v in (("lo", lo), ("hi", hi)):
            if np.size(v) != 2:
                raise KanpinnError(
                    f"Rectangle: {name} must have 2 entries ([x, y]), got {np.size(v)}; "
                    "use Box for other dimensions"
                )
        super().__init__(lo, hi, variables)

    def spec(self) -> dict:
        out = super().spec()
        out["type"] = "Rectangle"
        return out


class Interval(Box):
    """``[a, b]`` with variable ``x``. Its boundary is the two end points.

    Points are float64 arrays of shape (n, 1).

    Example:

    >>> line = kp.Interval(0, 1)
    >>> line.variables, line.dim
    (('x',), 1)
    >>> line.sample_interior(5, "grid")[:, 0]
    array([0.  , 0.25, 0.5 , 0.75, 1.  ])
    >>> line.sample_boundary(4)[:, 0]           # the end points, alternating
    array([0., 1., 0., 1.])
    """

    def __init__(self, a, b, variables: Sequence[str] | None = None):
        a = _as_scalar(a, "a", "Interval")
        b = _as_scalar(b, "b", "Interval")
        if not a < b:
            raise KanpinnError(f"Interval: need a < b, got a = {a}, b = {b}")
        super().__init__([a], [b], variables)

    @property
    def a(self) -> float:
        return float(self.lo[0])

    @property
    def b(self) -> float:
        return float(self.hi[0])

    def spec(self) -> dict:
        out = {"type": "Interval", "a": self.a, "b": self.b}
        if self.variables != ("x",):
            out["variables"] = list(self.variables)
        return out


# --------------------------------------------------------------------------- disk


class Disk(Domain):
    """Closed disk ``|x - center| <= radius`` with variables ``x, y``.

    ``center``: two numbers; ``radius`` > 0. Points are float64 arrays of shape (n, 2);
    ``normals(x)`` (n, 2) are the outward radial unit vectors.

    Example:

    >>> disk = kp.Disk([0, 0], 1.0)
    >>> disk.variables
    ('x', 'y')
    >>> pts = disk.sample_boundary(8, "uniform", seed=0)
    >>> pts.shape
    (8, 2)
    >>> bool(np.allclose(np.hypot(pts[:, 0], pts[:, 1]), 1.0))
    True
    >>> disk.contains([[0.5, 0.5], [1.0, 1.0]])
    array([ True, False])
    """

    def __init__(self, center, radius, variables: Sequence[str] | None = None):
        center = _as_vector(center, "center", "Disk")
        if center.size != 2:
            raise KanpinnError(f"Disk: center must have 2 entries ([x, y]), got {center.size}")
        radius = _as_scalar(radius, "radius", "Disk")
        if radius <= 0:
            raise KanpinnError(f"Disk: radius must be positive, got {radius}")
        self.center = center
        self.center.setflags(write=False)
        self.radius = radius
        self.variables = _check_variables(variables or ("x", "y"), 2, "Disk")
        self.lo = center - radius
        self.hi = center + radius

    _maps_unit_cube = True

    @property
    def volume(self) -> float:
        return math.pi * self.radius**2

    def distance(self, x) -> torch.Tensor:
        """(r² - |x - c|²) / (2r): a polynomial, slope 1 on the circle."""
        x = self._distance_input(x)
        return rfunctions.ball(x, self._const(self.center, x), self.radius)

    def _map_interior(self, u):
        # r = R sqrt(u0) makes the map area-preserving, so uniform/low-discrepancy points
        # of the square stay uniform/low-discrepancy on the disk.
        r = self.radius * np.sqrt(u[:, 0])
        theta = 2 * np.pi * u[:, 1]
        return self.center + np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)

    def _interior_grid(self, n):
        # A square grid over the bounding box, clipped to the disk: the disk covers pi/4
        # of the square, so enlarge the square's count accordingly to land near n.
        m = _grid_side(max(1, round(n * 4 / math.pi)), 2)
        if m == 1:
            return self.center.reshape(1, 2).copy()
        g = self.lo + _tensor_grid([np.linspace(0.0, 1.0, m)] * 2) * (self.hi - self.lo)
        return g[self.contains(g)]

    def _boundary_pieces(self):
        def circle(u):
            theta = 2 * np.pi * u[:, 0]
            return self.center + self.radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)

        return [_Piece(1, 2 * math.pi * self.radius, circle, periodic=(True,))]

    def normals(self, x) -> np.ndarray:
        """(x - c) / |x - c| (radial direction; exact on the circle)."""
        x = self._points(x)
        v = x - self.center
        r = np.linalg.norm(v, axis=1, keepdims=True)
        out = np.zeros_like(v)
        ok = r[:, 0] > 0
        out[ok] = v[ok] / r[ok]
        out[~ok, 0] = 1.0  # the centre has no direction; any unit vector will do
        return out

    def contains(self, x) -> np.ndarray:
        x = self._points(x)
        return np.linalg.norm(x - self.center, axis=1) <= self.radius * (1 + _TOL)

    def boundary_distance(self, x) -> np.ndarray:
        x = self._points(x)
        return self.radius - np.linalg.norm(x - self.center, axis=1)

    def test_points(self, n_per_dim: int) -> np.ndarray:
        m = _check_n(n_per_dim, "n_per_dim")
        if m < 2:
            raise KanpinnError(f"test_points needs n_per_dim >= 2, got {m}")
        g = self.lo + _tensor_grid([np.linspace(0.0, 1.0, m)] * 2) * (self.hi - self.lo)
        return g[self.contains(g)]

    def spec(self) -> dict:
        out = {"type": "Disk", "center": self.center.tolist(), "radius": self.radius}
        if self.variables != ("x", "y"):
            out["variables"] = list(self.variables)
        return out


# --------------------------------------------------------------------------- space-time


class SpaceTime(Domain):
    """Space-time cylinder ``space x [t0, t1]``; variables are ``space.variables + ("t",)``
    and time is the last column.

    ``sample_boundary`` gives the *lateral* boundary (space boundary x [t0, t1]) where
    boundary conditions live; ``sample_initial`` gives the slice t = t0 for
    :class:`~kanpinn.conditions.Initial`. Interior sobol/lhs points are drawn jointly in
    dim + 1 dimensions, so they are low-discrepancy in space-time, not a product.

    Points are float64 arrays of shape (n, space.dim + 1), the last column being t.

    Example:

    >>> st = kp.SpaceTime(kp.Interval(0, 1), t=(0, 2))
    >>> st.variables, st.dim
    (('x', 't'), 2)
    >>> st.sample_interior(32, seed=0).shape
    (32, 2)
    >>> st.sample_initial(3, "grid")          # the slice t = t0
    array([[0. , 0. ],
           [0.5, 0. ],
           [1. , 0. ]])
    """

    def __init__(self, space: Domain, t=(0.0, 1.0)):
        if not isinstance(space, Domain):
            raise KanpinnError(
                f"SpaceTime: space must be a kanpinn domain (Interval, Rectangle, Box, Disk, Polygon, "
                f"Ball, or a set operation such as Rectangle - Disk), "
                f"got {type(space).__name__}"
            )
        if isinstance(space, SpaceTime):
            raise KanpinnError("SpaceTime: space is already a SpaceTime; nest only spatial domains")
        if "t" in space.variables:
            raise KanpinnError(
                f"SpaceTime: the space variables {space.variables} already use the name 't'"
            )
        try:
            t0, t1 = t
        except (TypeError, ValueError):
            raise KanpinnError(f"SpaceTime: t must be a pair (t0, t1), got {t!r}") from None
        t0 = _as_scalar(t0, "t0", "SpaceTime")
        t1 = _as_scalar(t1, "t1", "SpaceTime")
        if not t0 < t1:
            raise KanpinnError(f"SpaceTime: need t0 < t1, got t = ({t0}, {t1})")
        self.space = space
        self.t0, self.t1 = t0, t1
        self.variables = tuple(space.variables) + ("t",)
        self.lo = np.append(space.lo, t0)
        self.hi = np.append(space.hi, t1)

    @property
    def is_box(self) -> bool:
        return self.space.is_box

    @property
    def _maps_unit_cube(self) -> bool:
        return self.space._maps_unit_cube

    @property
    def volume(self) -> float:
        return self.space.volume * (self.t1 - self.t0)

    def distance(self, x) -> torch.Tensor:
        """The space's distance of the space columns (the lateral boundary); time is
        not a boundary here."""
        x = self._distance_input(x)
        return self.space.distance(x[:, :-1])

    def _t_col(self, u):
        return (self.t0 + u * (self.t1 - self.t0)).reshape(-1, 1)

    def _map_interior(self, u):
        ds = self.space.dim
        return np.hstack([self.space._map_interior(u[:, :ds]), self._t_col(u[:, ds])])

    def _interior_grid(self, n):
        # Same number of points per direction as a box of dimension dim + 1 would get.
        m_t = _grid_side(n, self.dim)
        xs = self.space._interior_grid(max(1, round(n / m_t)))
        ts = _grid_axis(m_t, False)
        return np.hstack([np.tile(xs, (m_t, 1)), self._t_col(np.repeat(ts, xs.shape[0]))])

    def _boundary_pieces(self):
        span = self.t1 - self.t0
        pieces = []
        for p in self.space._boundary_pieces():
            def lateral(u, p=p):
                return np.hstack([p.map(u[:, : p.k]), self._t_col(u[:, p.k])])

            keep = None if p.keep is None else (lambda x, p=p: p.keep(x[:, :-1]))
            pieces.append(_Piece(p.k + 1, p.measure * span, lateral, p.periodic + (False,),
                                 keep=keep, fraction=p.fraction))
        return pieces

    def sample_initial(self, n: int, method: str = "sobol", seed=None) -> np.ndarray:
        """Points of the initial slice: (n, dim) with the space part drawn like
        ``space.sample_interior`` and the last column equal to t0."""
        xs = self.space.sample_interior(n, method, seed)
        return np.hstack([xs, np.full((xs.shape[0], 1), self.t0)])

    def normals(self, x) -> np.ndarray:
        """Spatial outward normals with 0 in the t column."""
        x = self._points(x)
        ns = self.space.normals(x[:, :-1])
        return np.hstack([ns, np.zeros((x.shape[0], 1))])

    def contains(self, x) -> np.ndarray:
        x = self._points(x)
        tol = _TOL * (self.t1 - self.t0)
        t = x[:, -1]
        return self.space.contains(x[:, :-1]) & (t >= self.t0 - tol) & (t <= self.t1 + tol)

    def boundary_distance(self, x) -> np.ndarray:
        """Distance to the lateral (spatial) boundary; time is not a boundary here."""
        x = self._points(x)
        return self.space.boundary_distance(x[:, :-1])

    def test_points(self, n_per_dim: int) -> np.ndarray:
        xs = self.space.test_points(n_per_dim)
        ts = np.linspace(self.t0, self.t1, _check_n(n_per_dim, "n_per_dim"))
        return np.hstack([np.tile(xs, (ts.size, 1)), np.repeat(ts, xs.shape[0]).reshape(-1, 1)])

    def spec(self) -> dict:
        return {"type": "SpaceTime", "space": self.space.spec(), "t": [self.t0, self.t1]}


# --------------------------------------------------------------------------- specs


def domain_from_spec(d: dict) -> Domain:
    """Rebuild a domain from ``Domain.spec()`` output (also accepts a JSON string)."""
    if isinstance(d, (str, bytes)):
        try:
            d = json.loads(d)
        except json.JSONDecodeError as e:
            raise KanpinnError(f"domain spec is not valid JSON: {e}") from None
    if not isinstance(d, dict) or "type" not in d:
        raise KanpinnError(f"domain spec must be a dict with a 'type' key, got {d!r}")
    kind = d["type"]
    try:
        variables = d.get("variables")
        if kind == "Box":
            return Box(d["lo"], d["hi"], variables)
        if kind == "Rectangle":
            return Rectangle(d["lo"], d["hi"], variables)
        if kind == "Interval":
            return Interval(d["a"], d["b"], variables)
        if kind == "Disk":
            return Disk(d["center"], d["radius"], variables)
        if kind == "SpaceTime":
            return SpaceTime(domain_from_spec(d["space"]), tuple(d["t"]))
        # kanpinn.geometry builds on this module, so it is imported only when needed.
        from .geometry.ball import Ball
        from .geometry.csg import OPERATIONS
        from .geometry.polygon import Polygon
        if kind == "Polygon":
            return Polygon(d["vertices"], variables)
        if kind == "Ball":
            return Ball(d["center"], d["radius"], variables)
        if kind in OPERATIONS:
            return OPERATIONS[kind](domain_from_spec(d["a"]), domain_from_spec(d["b"]))
    except KeyError as e:
        raise KanpinnError(f"domain spec of type {kind!r} lacks the key {e.args[0]!r}: {d!r}") from None
    raise KanpinnError(
        f"unknown domain type {kind!r} in spec; known: Box, Rectangle, Interval, Disk, "
        "SpaceTime, Polygon, Ball, Difference, Union, Intersection"
    )
