"""1-D wave (PINNacle Wave1d-C): u_tt = 4 u_xx on x in [0, 1], t in [0, 1], u(0, t) =
u(1, t) = 0, u(x, 0) = sin(πx) + ½ sin(4πx), u_t(x, 0) = 0; exact
u = sin(πx) cos(2πt) + ½ sin(4πx) cos(8πt)."""
import math

import torch

import kanpinn as kp

pi = math.pi
c2 = 4.0                                  # squared wave speed


def exact(x):                             # columns: x, t
    X, T = x[:, 0:1], x[:, 1:2]
    return torch.sin(pi * X) * torch.cos(2 * pi * T) + 0.5 * torch.sin(4 * pi * X) * torch.cos(8 * pi * T)


def residual(x, u):
    return kp.partial(u, x, 1, order=2) - c2 * kp.partial(u, x, 0, order=2)


problem = kp.Problem(
    kp.SpaceTime(kp.Interval(0.0, 1.0), t=(0.0, 1.0)),
    residual,
    conditions=[kp.Dirichlet(0.0), kp.Initial(exact), kp.Initial(0.0, derivative=1)],
    exact=exact,
    name="wave_1d",
)

suggested = {"widths": [2, 10, 1], "n_interior": 4000, "n_boundary": 400}
