"""3-D Poisson on the unit ball (``kp.Ball``): Δu = f with the manufactured solution
u = exp(x) sin(y) + z², so f = 2 (the first term is harmonic), and u = exact on the
sphere."""
import torch

import kanpinn as kp


def exact(x):
    return torch.exp(x[:, 0:1]) * torch.sin(x[:, 1:2]) + x[:, 2:3] ** 2


def residual(x, u):
    return kp.laplacian(u, x) - 2.0


problem = kp.Problem(
    kp.Ball([0.0, 0.0, 0.0], 1.0),
    residual,
    conditions=[kp.Dirichlet(exact)],
    exact=exact,
    name="poisson_ball_3d",
)

suggested = {"widths": [3, 10, 1], "n_interior": 3000, "n_boundary": 800}
