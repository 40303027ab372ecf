"""Nonlinear Klein-Gordon (Wang, Teng & Perdikaris 2021, "Understanding and mitigating
gradient pathologies"): u_tt - u_xx + u³ = f on x in [0, 1], t in [0, 1], with the
manufactured solution u = x cos(5πt) + (xt)³ (f computed from it exactly), u given on
x = 0 and x = 1, u(x, 0) = x and u_t(x, 0) = 0."""
import math

import torch

import kanpinn as kp

pi = math.pi


def exact(x):                             # columns: x, t
    X, T = x[:, 0:1], x[:, 1:2]
    return X * torch.cos(5 * pi * T) + (X * T) ** 3


def forcing(x):
    X, T = x[:, 0:1], x[:, 1:2]
    u_tt = -25 * pi**2 * X * torch.cos(5 * pi * T) + 6 * X**3 * T
    u_xx = 6 * X * T**3
    return u_tt - u_xx + exact(x) ** 3


def residual(x, u):
    return kp.partial(u, x, 1, order=2) - kp.partial(u, x, 0, order=2) + u**3 - forcing(x)


problem = kp.Problem(
    kp.SpaceTime(kp.Interval(0.0, 1.0), t=(0.0, 1.0)),
    residual,
    conditions=[kp.Dirichlet(exact), kp.Initial(lambda x: x[:, 0:1]), kp.Initial(0.0, derivative=1)],
    exact=exact,
    name="klein_gordon_1d",
)

suggested = {"widths": [2, 10, 1], "n_interior": 4000, "n_boundary": 400}
