"""2-D Poisson of the KAN paper: exact u = sin(πx) sin(πy²) on [-1, 1]², Dirichlet u = exact
on the boundary (zero there, since sin(±π) = 0), right-hand side f = Δu:

    u_xx = -π² sin(πx) sin(πy²)
    u_yy = sin(πx) (2π cos(πy²) - 4π² y² sin(πy²))
"""
import torch

import kanpinn as kp

pi = torch.pi


def exact(x):
    return torch.sin(pi * x[:, 0:1]) * torch.sin(pi * x[:, 1:2] ** 2)


def source(x):
    X, Y = x[:, 0:1], x[:, 1:2]
    sx = torch.sin(pi * X)
    return -pi**2 * sx * torch.sin(pi * Y**2) + sx * (2 * pi * torch.cos(pi * Y**2) - 4 * pi**2 * Y**2 * torch.sin(pi * Y**2))


def residual(x, u):
    return kp.laplacian(u, x) - source(x)


problem = kp.Problem(
    kp.Rectangle([-1.0, -1.0], [1.0, 1.0]),
    residual,
    conditions=[kp.Dirichlet(exact)],
    exact=exact,
    name="poisson_2d_paper",
)

suggested = {"widths": [2, 10, 1], "n_interior": 3000, "n_boundary": 400}
