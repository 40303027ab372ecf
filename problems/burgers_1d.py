"""Viscous Burgers: u_t + u u_x = ν u_xx on x in [-1, 1], t in [0, 1], ν = 0.01/π,
u(x, 0) = -sin(πx), u(±1, t) = 0 (Raissi et al. 2019). A shock forms at x = 0 from
t ≈ 1/π (steepest slope -152 at t = 1.6037/π). Reference: the Cole-Hopf formula with a
128-point Gauss-Hermite quadrature (converged to rounding; kanpinn.references.burgers)."""
import math

import torch

import kanpinn as kp
from kanpinn.references import burgers_cole_hopf

nu = 0.01 / math.pi


def exact(x):                             # columns: x, t
    return burgers_cole_hopf(x[:, 0], x[:, 1], nu).unsqueeze(1).to(x.dtype)


def residual(x, u):
    return kp.partial(u, x, 1) + u * kp.partial(u, x, 0) - nu * kp.partial(u, x, 0, order=2)


problem = kp.Problem(
    kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
    residual,
    conditions=[kp.Dirichlet(0.0), kp.Initial(lambda x: -torch.sin(math.pi * x[:, 0:1]))],
    exact=exact,
    name="burgers_1d",
)

suggested = {"widths": [2, 10, 1], "n_interior": 4000, "n_boundary": 400}
