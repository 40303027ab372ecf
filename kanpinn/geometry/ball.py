"""Balls in any dimension d >= 2."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy.special import ndtri

from ..domains import Disk, Domain, _as_scalar, _as_vector, _check_variables, _Piece
from ..errors import KanpinnError
from . import rfunctions


def _default_variables(d: int) -> tuple[str, ...]:
    return ("x", "y", "z")[:d] if d <= 3 else tuple(f"x{i + 1}" for i in range(d))


class Ball(Domain):
    """Closed ball ``|x - center| <= radius`` in dimension d = len(center) >= 2.

    Variables are ``x, y`` (d = 2), ``x, y, z`` (d = 3) or ``x1 ... xd``, unless
    ``variables=`` names them. Interior points: an area-preserving polar map in 2-D,
    rejection from the bounding cube above. Boundary points: the sphere, through an
    equal-area map in 3-D (z uniform, angle uniform) and normalised Gaussian quantiles
    above (d parameters per point). ``normals`` are radial; ``distance`` is
    (r² - |x - c|²)/(2r).

    Example:

    >>> ball = kp.Ball([0, 0, 0], 1.0)
    >>> ball.variables, ball.dim
    (('x', 'y', 'z'), 3)
    >>> pts = ball.sample_boundary(64, "sobol", seed=0)
    >>> bool(np.allclose(np.linalg.norm(pts, axis=1), 1.0))
    True
    >>> round(ball.volume, 6)
    4.18879
    >>> kp.Ball([0, 0, 0, 0], 2.0).sample_interior(10, seed=0).shape
    (10, 4)
    """

    def __init__(self, center, radius, variables: Sequence[str] | None = None):
        center = _as_vector(center, "center", "Ball")
        if center.size < 2:
            raise KanpinnError(
                f"Ball: center must have at least 2 entries (dimension >= 2), got {center.size}; "
                "use Interval in 1-D"
            )
        radius = _as_scalar(radius, "radius", "Ball")
        if radius <= 0:
            raise KanpinnError(f"Ball: radius must be positive, got {radius}")
        d = center.size
        self.center = center
        self.center.setflags(write=False)
        self.radius = radius
        self.variables = _check_variables(variables or _default_variables(d), d, "Ball")
        self.lo = center - radius
        self.hi = center + radius

    @property
    def _maps_unit_cube(self) -> bool:
        return self.dim == 2

    @property
    def volume(self) -> float:
        d = self.dim
        return math.pi ** (d / 2) / math.gamma(d / 2 + 1) * self.radius**d

    def _map_interior(self, u):
        # 2-D only: r = R sqrt(u0) keeps the map area-preserving.
        r = self.radius * np.sqrt(u[:, 0])
        theta = 2 * np.pi * u[:, 1]
        return self.center + np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)

    def _directions(self, u: np.ndarray) -> np.ndarray:
        """Unit vectors from the sphere's parameters (see the class doc)."""
        if self.dim == 2:
            theta = 2 * np.pi * u[:, 0]
            return np.stack([np.cos(theta), np.sin(theta)], axis=1)
        if self.dim == 3:
            z = 1.0 - 2.0 * u[:, 0]
            rho = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
            phi = 2 * np.pi * u[:, 1]
            return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
        g = ndtri(np.clip(u, 1e-12, 1 - 1e-12))
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    def _boundary_pieces(self):
        d = self.dim
        k, periodic = {2: (1, (True,)), 3: (2, (False, True))}.get(d, (d, None))
        area = d * self.volume / self.radius

        def sphere(u):
            return self.center + self.radius * self._directions(u)

        return [_Piece(k, area, sphere, periodic=periodic)]

    # a ball is a disk in any dimension: radial normals, containment, signed distance
    normals = Disk.normals
    contains = Disk.contains
    boundary_distance = Disk.boundary_distance

    def distance(self, x) -> torch.Tensor:
        """(r² - |x - c|²) / (2r): a polynomial, slope 1 on the sphere."""
        x = self._distance_input(x)
        return rfunctions.ball(x, self._const(self.center, x), self.radius)

    def spec(self) -> dict:
        out = {"type": "Ball", "center": self.center.tolist(), "radius": self.radius}
        if self.variables != _default_variables(self.dim):
            out["variables"] = list(self.variables)
        return out
