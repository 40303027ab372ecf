"""2-D Helmholtz: Δu + k²u = f on [-1, 1]², k = 1, u = 0 on the boundary; exact
u = sin(πx) sin(4πy), so f = (k² - 17π²) u."""
import torch

import kanpinn as kp

pi = torch.pi
k = 1.0


def exact(x):
    return torch.sin(pi * x[:, 0:1]) * torch.sin(4 * pi * x[:, 1:2])


def residual(x, u):
    return kp.laplacian(u, x) + k**2 * u - (k**2 - 17 * pi**2) * exact(x)


problem = kp.Problem(
    kp.Rectangle([-1.0, -1.0], [1.0, 1.0]),
    residual,
    conditions=[kp.Dirichlet(0.0)],
    exact=exact,
    name="helmholtz_2d",
)

suggested = {"widths": [2, 10, 1], "n_interior": 4000, "n_boundary": 800}
