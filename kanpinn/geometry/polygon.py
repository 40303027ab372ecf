"""Simple polygons: validation, membership, normals, exact and smooth distances."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..domains import _TOL, Domain, _check_variables, _Piece
from ..errors import KanpinnError
from . import rfunctions


def _segments_cross(p1, p2, q1, q2, tol):
    """Whether segments p1p2 and q1q2 (arrays (m, 2) each) meet, touching included."""
    def orient(a, b, c):
        v = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        return np.where(np.abs(v) <= tol, 0.0, np.sign(v))

    def within(a, b, c):  # c collinear with ab: is it on the segment?
        return (np.minimum(a, b) - tol <= c).all(1) & (c <= np.maximum(a, b) + tol).all(1)

    o1, o2 = orient(p1, p2, q1), orient(p1, p2, q2)
    o3, o4 = orient(q1, q2, p1), orient(q1, q2, p2)
    proper = (o1 * o2 < 0) & (o3 * o4 < 0)
    touch = ((o1 == 0) & within(p1, p2, q1)) | ((o2 == 0) & within(p1, p2, q2)) | \
            ((o3 == 0) & within(q1, q2, p1)) | ((o4 == 0) & within(q1, q2, p2))
    return proper | touch


class Polygon(Domain):
    """A simple polygon (closed, boundary included) with variables ``x, y``.

    ``vertices``: (n, 2) corners in order around the boundary, clockwise or
    counter-clockwise, n >= 3 (a last vertex repeating the first is dropped). A polygon
    whose edges cross or touch, with repeated vertices, or of zero area (all vertices on
    one line) is refused with a ``KanpinnError``. Boundary points are shared among the
    edges by length; ``normals`` are the outward edge normals; ``distance`` joins the
    edges' smooth distances by R-equivalence (Sukumar & Srivastava 2022).

    Example (the L-shape: the square (-1, 1)² minus its upper-right quadrant):

    >>> L = kp.Polygon([[-1, -1], [1, -1], [1, 0], [0, 0], [0, 1], [-1, 1]])
    >>> L.variables, L.volume
    (('x', 'y'), 3.0)
    >>> L.contains([[-0.5, 0.5], [0.5, 0.5], [0.0, 0.5]])
    array([ True, False,  True])
    >>> L.normals([[0.5, 0.0], [0.0, 0.5]])
    array([[0., 1.],
           [1., 0.]])
    >>> L.sample_interior(100, "sobol", seed=0).shape
    (100, 2)
    """

    def __init__(self, vertices, variables: Sequence[str] | None = None):
        v = self._check_vertices(vertices)
        self.vertices = v
        self.vertices.setflags(write=False)
        self.variables = _check_variables(variables or ("x", "y"), 2, "Polygon")
        self.lo, self.hi = v.min(axis=0), v.max(axis=0)
        x, y = v[:, 0], v[:, 1]
        area = 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
        # Work counter-clockwise inside, so that (e_y, -e_x) is the outward normal.
        ccw = v if area > 0 else v[::-1].copy()
        self._p, self._q = ccw, np.roll(ccw, -1, axis=0)
        e = self._q - self._p
        self._len = np.linalg.norm(e, axis=1)
        self._normal = np.stack([e[:, 1], -e[:, 0]], axis=1) / self._len[:, None]
        self._area = abs(area)
        self._scale = float(np.max(self.hi - self.lo))

    @staticmethod
    def _check_vertices(vertices) -> np.ndarray:
        try:
            v = np.array(vertices, dtype=np.float64)
        except (TypeError, ValueError):
            raise KanpinnError(f"Polygon: vertices must be an (n, 2) array of numbers, got {vertices!r}") from None
        if v.ndim != 2 or v.shape[1] != 2:
            raise KanpinnError(f"Polygon: vertices must have shape (n, 2), got {tuple(v.shape)}")
        if not np.all(np.isfinite(v)):
            raise KanpinnError("Polygon: vertices must be finite numbers")
        if v.shape[0] >= 2 and np.array_equal(v[0], v[-1]):
            v = v[:-1]                       # a closed list: the repeat is no new vertex
        n = v.shape[0]
        if n < 3:
            raise KanpinnError(f"Polygon: needs at least 3 distinct vertices, got {n}")
        scale = float(np.max(v.max(0) - v.min(0)))
        tol = _TOL * max(scale, np.finfo(float).tiny)
        gap = np.linalg.norm(v[:, None, :] - v[None, :, :], axis=2)
        np.fill_diagonal(gap, np.inf)
        i, j = np.unravel_index(np.argmin(gap), gap.shape)
        if gap[i, j] <= tol:
            raise KanpinnError(
                f"Polygon: vertices {min(i, j)} and {max(i, j)} are the same point "
                f"{v[i].tolist()}; a simple polygon visits each corner once"
            )
        r = v - v[0]
        k = int(np.argmax(np.linalg.norm(r, axis=1)))
        if np.all(np.abs(r[:, 0] * r[k, 1] - r[:, 1] * r[k, 0]) <= tol * scale):
            raise KanpinnError(f"Polygon: all vertices lie on one line (zero area): {v.tolist()}")
        p, q = v, np.roll(v, -1, axis=0)
        a, b = np.triu_indices(n, k=1)
        # Edges a and b share a vertex when b = a + 1 or (a, b) = (0, n - 1): those may
        # only meet there, i.e. must not fold back onto each other.
        adjacent = (b == a + 1) | ((a == 0) & (b == n - 1))
        far = ~adjacent
        hit = _segments_cross(p[a[far]], q[a[far]], p[b[far]], q[b[far]], tol * scale)
        if hit.any():
            k = int(np.nonzero(hit)[0][0])
            ea, eb = int(a[far][k]), int(b[far][k])
            raise KanpinnError(
                f"Polygon: edges {ea} ({p[ea].tolist()} -> {q[ea].tolist()}) and {eb} "
                f"({p[eb].tolist()} -> {q[eb].tolist()}) intersect; the polygon must be simple "
                "(vertices in order around the boundary, no crossing edges)"
            )
        e = q - p
        e_next = np.roll(e, -1, axis=0)
        cross = e[:, 0] * e_next[:, 1] - e[:, 1] * e_next[:, 0]
        dot = np.sum(e * e_next, axis=1)
        fold = (np.abs(cross) <= tol * scale) & (dot < 0)
        if fold.any():
            k = int(np.nonzero(fold)[0][0])
            raise KanpinnError(
                f"Polygon: the boundary folds back on itself at vertex {(k + 1) % n} "
                f"{v[(k + 1) % n].tolist()} (edges {k} and {(k + 1) % n} overlap)"
            )
        x, y = v[:, 0], v[:, 1]
        area = 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
        if abs(area) <= _TOL * scale * scale:
            raise KanpinnError(f"Polygon: the vertices enclose zero area: {v.tolist()}")
        return v

    @property
    def volume(self) -> float:
        return self._area

    def _segment_distances(self, x: np.ndarray) -> np.ndarray:
        """(n, edges) exact distances of points to the edges (per component: 2-D arrays
        only, which is several times faster than norms over a third axis)."""
        ex, ey = (self._q - self._p).T
        rx = x[:, 0:1] - self._p[:, 0]
        ry = x[:, 1:2] - self._p[:, 1]
        s = np.clip((rx * ex + ry * ey) / self._len**2, 0.0, 1.0)
        return np.hypot(rx - s * ex, ry - s * ey)

    def _inside(self, x: np.ndarray) -> np.ndarray:
        """Even-odd rule (strict interior; boundary points may go either way)."""
        px, py = self._p[:, 0], self._p[:, 1]
        qx, qy = self._q[:, 0], self._q[:, 1]
        X, Y = x[:, 0:1], x[:, 1:2]
        straddle = (py > Y) != (qy > Y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = px + (Y - py) * (qx - px) / (qy - py)
        return (np.count_nonzero(straddle & (X < xc), axis=1) % 2) == 1

    def contains(self, x) -> np.ndarray:
        x = self._points(x)
        on_edge = self._segment_distances(x).min(axis=1) <= _TOL * self._scale
        return on_edge | self._inside(x)

    def boundary_distance(self, x) -> np.ndarray:
        """Exact signed distance: to the nearest edge, negative outside."""
        x = self._points(x)
        d = self._segment_distances(x).min(axis=1)
        return np.where(self._inside(x), d, -d)

    def normals(self, x) -> np.ndarray:
        """Outward normal of the nearest edge; at a corner (two edges within round-off)
        the normalised sum of both."""
        x = self._points(x)
        d = self._segment_distances(x)
        near = d <= d.min(axis=1, keepdims=True) + _TOL * self._scale
        n = near.astype(np.float64) @ self._normal
        return n / np.linalg.norm(n, axis=1, keepdims=True)

    def distance(self, x) -> torch.Tensor:
        """R-equivalence of the edges' trimmed-segment distances, signed by the even-odd
        rule (positive inside): smooth inside, slope 1 across every edge."""
        x = self._distance_input(x)
        p, q = self._const(self._p, x), self._const(self._q, x)
        phi = rfunctions.equivalence(rfunctions.segment_distance(x, p, q))
        with torch.no_grad():
            X, Y = x[:, 0:1], x[:, 1:2]
            straddle = (p[:, 1] > Y) != (q[:, 1] > Y)
            dy = torch.where(straddle, q[:, 1] - p[:, 1], torch.ones_like(q[:, 1] - Y))
            xc = p[:, 0] + (Y - p[:, 1]) * (q[:, 0] - p[:, 0]) / dy
            inside = (torch.count_nonzero(straddle & (X < xc), dim=1) % 2 == 1).unsqueeze(1)
        return torch.where(inside, phi, -phi)

    def _boundary_pieces(self):
        pieces = []
        for p, q, length in zip(self._p, self._q, self._len):
            def edge(u, p=p, q=q):
                return p + u[:, 0:1] * (q - p)

            pieces.append(_Piece(1, float(length), edge))
        return pieces

    def spec(self) -> dict:
        out = {"type": "Polygon", "vertices": self.vertices.tolist()}
        if self.variables != ("x", "y"):
            out["variables"] = list(self.variables)
        return out
