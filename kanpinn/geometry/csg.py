"""Set operations on domains: ``a - b`` (Difference), ``a | b`` (Union), ``a & b``
(Intersection), for any two spatial domains of the same dimension, nested freely.

How each part of the Domain interface is built:

* ``contains``: the closed result. A difference keeps the points of ``a`` that are not
  strictly inside ``b`` (``b.boundary_distance > tolerance``), so the rim of a hole
  belongs to the plate.
* interior points: rejection from the bounding box (``kanpinn.domains``).
* boundary: the pieces of the operands' boundaries (down to the primitive domains, the
  "leaves") that survive. A point x of a leaf's boundary, with the leaf's outward normal
  n turned round for a subtracted leaf, lies on the result's boundary when x - h·n is in
  the result and x + h·n is not (h a millionth of the bounding box). This drops the
  lower-dimensional "hairs" of the plain set operation, e.g. the edge that a square and
  a subtracted square share (``contains`` still counts such an edge in, being exact and
  cheap; it has no area, so no interior sample lands there except by a grid). Each piece's surviving
  share of its parametrisation is measured once (4096 scrambled Sobol' points, fixed
  seed), so pieces get boundary points by surviving measure.
* ``normals``: those of the leaf whose boundary is nearest, turned round when the leaf
  is subtracted (an odd number of times), so a hole's normals point into the hole.
* ``volume``: a quasi-Monte Carlo estimate (2^16 scrambled Sobol' points of the bounding
  box, fixed seed; relative error about 1e-3 or better), which also detects an empty result.
* ``distance``: R-function composition of the operands' smooth distances.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from ..domains import _TOL, Domain, SpaceTime, _Piece, _unit_samples
from ..errors import KanpinnError
from . import rfunctions

_VOLUME_POINTS_LOG2 = 16
_PIECE_POINTS = 4096
_STEP = 1e-6        # probe step off the boundary, relative to the bounding box


def _leaves(domain: Domain, sign: int = 1):
    """(primitive domain, +1 or -1) pairs; -1 for a leaf subtracted an odd number of times."""
    if isinstance(domain, _SetOperation):
        flip = -1 if isinstance(domain, Difference) else 1
        return _leaves(domain.a, sign) + _leaves(domain.b, sign * flip)
    return [(domain, sign)]


class _SetOperation(Domain):
    """Shared machinery of Difference, Union and Intersection (see the module doc)."""

    symbol = "?"
    word = "?"

    def __init__(self, a, b):
        name = type(self).__name__
        for side, d in (("left", a), ("right", b)):
            if not isinstance(d, Domain):
                raise KanpinnError(
                    f"{name}: the {side} operand must be a kanpinn domain, got {type(d).__name__} "
                    f"({d!r}); write e.g. kp.Rectangle(...) {self.symbol} kp.Disk(...)"
                )
            if isinstance(d, SpaceTime):
                raise KanpinnError(
                    f"{name}: set operations combine spatial domains; build the spatial "
                    f"domain first, then kp.SpaceTime(a {self.symbol} b, t=...)"
                )
        if a.dim != b.dim:
            raise KanpinnError(
                f"{name}: both domains must have the same dimension, got {type(a).__name__} "
                f"of dimension {a.dim} {a.variables} and {type(b).__name__} of dimension "
                f"{b.dim} {b.variables}"
            )
        if tuple(a.variables) != tuple(b.variables):
            raise KanpinnError(
                f"{name}: both domains must name their variables alike, got {a.variables} "
                f"and {b.variables}"
            )
        self.a, self.b = a, b
        self.variables = tuple(a.variables)
        self.lo, self.hi = self._bounding_box()
        if not np.all(self.lo < self.hi):
            raise KanpinnError(
                f"{name}: the {self.word} of {a!r} and {b!r} is empty (their bounding boxes "
                "do not overlap)"
            )
        self._scale = float(np.max(self.hi - self.lo))
        self._volume = self._estimate_volume()

    # ---- construction ---------------------------------------------------------------

    def _bounding_box(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _estimate_volume(self) -> float:
        m = 1 << _VOLUME_POINTS_LOG2
        u = _unit_samples(m, self.dim, "sobol", np.random.SeedSequence(0))
        inside = int(np.count_nonzero(self.contains(self.lo + u * (self.hi - self.lo))))
        if inside == 0:
            raise KanpinnError(
                f"{type(self).__name__}: the {self.word} of {self.a!r} and {self.b!r} is empty "
                f"(none of {m} quasi-random points of its bounding box lies in it)"
            )
        return inside / m * float(np.prod(self.hi - self.lo))

    def _surviving_pieces(self) -> list[_Piece]:
        pieces = []
        for leaf, sign in _leaves(self):
            for p in leaf._boundary_pieces():
                keep = self._keeper(leaf, sign)
                u = _unit_samples(_PIECE_POINTS, p.k, "sobol", np.random.SeedSequence(1), p.periodic)
                fraction = float(np.mean(keep(p.map(u))))
                if fraction > 0:
                    pieces.append(_Piece(p.k, p.measure * fraction, p.map, p.periodic,
                                         keep=keep, fraction=fraction))
        return pieces

    def _keeper(self, leaf: Domain, sign: int):
        h = _STEP * self._scale

        def keep(x: np.ndarray) -> np.ndarray:
            if x.shape[0] == 0:
                return np.zeros(0, bool)
            out = sign * leaf.normals(x)
            # In the result on the inner side and not on the outer side: a piece of
            # boundary with the result on one side only. (Pieces with the result on both
            # sides or on neither, such as the shared edge of a cut, are dropped: the
            # regularised set operation.)
            return self.contains(x - h * out) & ~self.contains(x + h * out)

        return keep

    # ---- interface ------------------------------------------------------------------

    @property
    def volume(self) -> float:
        """Quasi-Monte Carlo estimate (see the module doc)."""
        return self._volume

    @functools.cached_property
    def _pieces(self) -> list[_Piece]:
        # Measured on first use: the inner nodes of a nested expression never need theirs.
        return self._surviving_pieces()

    def _boundary_pieces(self):
        return list(self._pieces)

    def _strictly_inside(self, d: Domain, x: np.ndarray) -> np.ndarray:
        return d.boundary_distance(x) > _TOL * float(np.max(d.hi - d.lo))

    def normals(self, x) -> np.ndarray:
        """Outward unit normals: the nearest leaf's, turned round for a subtracted leaf."""
        x = self._points(x)
        leaves = _leaves(self)
        dist = np.stack([np.abs(leaf.boundary_distance(x)) for leaf, _ in leaves], axis=1)
        which = np.argmin(dist, axis=1)
        out = np.empty_like(x)
        for j, (leaf, sign) in enumerate(leaves):
            rows = which == j
            if rows.any():
                out[rows] = sign * leaf.normals(x[rows])
        return out + 0.0    # no -0.0 from the sign flip

    def spec(self) -> dict:
        return {"type": type(self).__name__, "a": self.a.spec(), "b": self.b.spec()}

    def __repr__(self) -> str:
        return f"({self.a!r} {self.symbol} {self.b!r})"


class Difference(_SetOperation):
    """``a - b``: the points of ``a`` not strictly inside ``b`` (closed; holes keep their
    rim). Boundary: a's boundary outside b, and b's boundary inside a with normals
    pointing into b (out of the difference).

    Example (a plate with a hole):

    >>> plate = kp.Rectangle([0, 0], [2, 1]) - kp.Disk([1, 0.5], 0.25)
    >>> plate.contains([[1.0, 0.5], [1.25, 0.5], [0.1, 0.1]])
    array([False,  True,  True])
    >>> plate.normals([[1.25, 0.5]])
    array([[-1.,  0.]])
    >>> abs(plate.volume - (2 - np.pi / 16)) < 1e-3
    True
    """

    symbol, word = "-", "difference"

    def _bounding_box(self):
        return self.a.lo.copy(), self.a.hi.copy()

    def contains(self, x) -> np.ndarray:
        x = self._points(x)
        return self.a.contains(x) & ~self._strictly_inside(self.b, x)

    def boundary_distance(self, x) -> np.ndarray:
        x = self._points(x)
        return np.minimum(self.a.boundary_distance(x), -self.b.boundary_distance(x))

    def distance(self, x) -> torch.Tensor:
        """R-conjunction of a's distance and minus b's."""
        x = self._distance_input(x)
        return rfunctions.conjunction(self.a.distance(x), -self.b.distance(x))


class Union(_SetOperation):
    """``a | b``: points in ``a`` or in ``b``. Boundary: the parts of each boundary not
    inside the other. (Two domains that share a piece of boundary: their distance is zero
    along it, inside the union.)

    Example:

    >>> two = kp.Disk([0, 0], 1.0) | kp.Disk([1.5, 0], 1.0)
    >>> two.contains([[0.75, 0.0], [2.4, 0.0], [0.75, 0.9]])
    array([ True,  True, False])
    """

    symbol, word = "|", "union"

    def _bounding_box(self):
        return np.minimum(self.a.lo, self.b.lo), np.maximum(self.a.hi, self.b.hi)

    def contains(self, x) -> np.ndarray:
        x = self._points(x)
        return self.a.contains(x) | self.b.contains(x)

    def boundary_distance(self, x) -> np.ndarray:
        x = self._points(x)
        return np.maximum(self.a.boundary_distance(x), self.b.boundary_distance(x))

    def distance(self, x) -> torch.Tensor:
        """R-disjunction of the two distances."""
        x = self._distance_input(x)
        return rfunctions.disjunction(self.a.distance(x), self.b.distance(x))


class Intersection(_SetOperation):
    """``a & b``: points in both. Boundary: the part of each boundary inside the other.

    Example (a lens):

    >>> lens = kp.Disk([0, 0], 1.0) & kp.Disk([1, 0], 1.0)
    >>> lens.contains([[0.5, 0.0], [-0.5, 0.0]])
    array([ True, False])
    """

    symbol, word = "&", "intersection"

    def _bounding_box(self):
        return np.maximum(self.a.lo, self.b.lo), np.minimum(self.a.hi, self.b.hi)

    def contains(self, x) -> np.ndarray:
        x = self._points(x)
        return self.a.contains(x) & self.b.contains(x)

    def boundary_distance(self, x) -> np.ndarray:
        x = self._points(x)
        return np.minimum(self.a.boundary_distance(x), self.b.boundary_distance(x))

    def distance(self, x) -> torch.Tensor:
        """R-conjunction of the two distances."""
        x = self._distance_input(x)
        return rfunctions.conjunction(self.a.distance(x), self.b.distance(x))


OPERATIONS = {"Difference": Difference, "Union": Union, "Intersection": Intersection}
