"""Viscous Burgers with a moving shock: u_t + u u_x = ν u_xx on x in [-1, 1], t in [0, 1],
ν = 0.02, the exact travelling wave from u = 1 on the left to u = -1/2 on the right,

    u = s - (uL - uR)/2 · tanh((uL - uR)(x - x0 - s t) / (4ν)),   s = (uL + uR)/2 = 1/4,

a shock of width ~4ν/(uL - uR) = 0.053 moving from x0 = -0.4 to -0.15 (Whitham 1974,
§4.4). Unlike burgers_1d it has no mirror symmetry (uL ≠ -uR): nothing pins the shock,
which the solution has to carry. The conditions are the exact values: the initial
profile and u at x = ±1 (functions of t only)."""
import torch

import kanpinn as kp

nu = 0.02
u_left, u_right, x0 = 1.0, -0.5, -0.4
speed = 0.5 * (u_left + u_right)


def exact(x):                             # columns: x, t
    return _wave(x[:, 0:1], x[:, 1:2])


def _wave(x, t):
    return speed - 0.5 * (u_left - u_right) * torch.tanh((u_left - u_right) * (x - x0 - speed * t) / (4 * nu))


def residual(x, u):
    return kp.partial(u, x, 1) + u * kp.partial(u, x, 0) - nu * kp.partial(u, x, 0, order=2)


def _walls(x):                            # u(±1, t): the wave at the wall the point is on
    return _wave(torch.where(x[:, 0:1] < 0, -1.0, 1.0).to(x.dtype), x[:, 1:2])


problem = kp.Problem(
    kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
    residual,
    conditions=[kp.Dirichlet(_walls), kp.Initial(lambda x: _wave(x[:, 0:1], 0.0 * x[:, 0:1]))],
    exact=exact,
    name="burgers_moving_shock",
)

suggested = {"widths": [2, 10, 1], "n_interior": 4000, "n_boundary": 400}
