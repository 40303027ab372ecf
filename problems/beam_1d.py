"""Euler-Bernoulli beam: u_tt + u_xxxx = 0 on x in [0, π], t in [0, 1], with the exact
vibration mode u = sin(x) cos(t). A fourth order in space needs two conditions at each
end: u and du/dn are given there (du/dn = -cos t at both ends), u and u_t at t = 0.
The jets carry u_xxxx (``kanpinn.jet``, orders 3 and 4; B-splines need k >= 4 for it),
so Levenberg-Marquardt's structured Jacobian covers the residual."""
import math

import torch

import kanpinn as kp


def exact(x):                             # columns: x, t
    return torch.sin(x[:, 0:1]) * torch.cos(x[:, 1:2])


def residual(x, u):
    return kp.partial(u, x, 1, order=2) + kp.partial(u, x, 0, order=4)


problem = kp.Problem(
    kp.SpaceTime(kp.Interval(0.0, math.pi), t=(0.0, 1.0)),
    residual,
    conditions=[kp.Dirichlet(exact), kp.Neumann(lambda x: -torch.cos(x[:, 1:2])),
                kp.Initial(exact), kp.Initial(0.0, derivative=1)],
    exact=exact,
    name="beam_1d",
)

suggested = {"widths": [2, 8, 1], "n_interior": 2000, "n_boundary": 400}
