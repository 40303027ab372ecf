"""1-D Poisson: u'' = -π² sin(πx) on [-1, 1], u(±1) = 0; exact u = sin(πx)."""
import torch

import kanpinn as kp

pi = torch.pi


def residual(x, u):
    return kp.laplacian(u, x) + pi**2 * torch.sin(pi * x)


problem = kp.Problem(
    kp.Interval(-1.0, 1.0),
    residual,
    conditions=[kp.Dirichlet(0.0)],
    exact=lambda x: torch.sin(pi * x),
    name="poisson_1d",
)

suggested = {"widths": [1, 5, 1], "n_interior": 200, "n_boundary": 2}
