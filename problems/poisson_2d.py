"""2-D Poisson (pykan's PDE example): Δu = -2π² sin(πx) sin(πy) on [-1, 1]², u = 0 on
the boundary; exact u = sin(πx) sin(πy)."""
import torch

import kanpinn as kp

pi = torch.pi


def exact(x):
    return torch.sin(pi * x[:, 0:1]) * torch.sin(pi * x[:, 1:2])


def residual(x, u):
    return kp.laplacian(u, x) + 2 * pi**2 * exact(x)


problem = kp.Problem(
    kp.Rectangle([-1.0, -1.0], [1.0, 1.0]),
    residual,
    conditions=[kp.Dirichlet(0.0)],
    exact=exact,
    name="poisson_2d",
)

suggested = {"widths": [2, 10, 1], "n_interior": 2000, "n_boundary": 400}
