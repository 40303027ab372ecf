"""2-D Poisson on the unit square with a product solution of two frequencies:
Δu = -5π² sin(πx) sin(2πy) on [0, 1]², u = 0 on the boundary; exact u = sin(πx) sin(2πy).
A closed-form recovery target: one multiplication node of two univariate sines."""
import torch

import kanpinn as kp

pi = torch.pi


def exact(x):
    return torch.sin(pi * x[:, 0:1]) * torch.sin(2 * pi * x[:, 1:2])


def residual(x, u):
    return kp.laplacian(u, x) + 5 * pi**2 * exact(x)


problem = kp.Problem(
    kp.Rectangle([0.0, 0.0], [1.0, 1.0]),
    residual,
    conditions=[kp.Dirichlet(0.0)],
    exact=exact,
    name="poisson_2d_product",
)

suggested = {"widths": [2, [0, 1], 1], "n_interior": 1000, "n_boundary": 200}
