"""Poisson on the L-shape (-1, 1)² minus the quadrant (0, 1)², a ``kp.Polygon``:
Δu = f with the manufactured solution u = sin(πx) cos(πy), so f = -2π² u, and
u = exact on the whole boundary (non-zero on y = ±1 and on the re-entrant edge y = 0)."""
import torch

import kanpinn as kp

pi = torch.pi


def exact(x):
    return torch.sin(pi * x[:, 0:1]) * torch.cos(pi * x[:, 1:2])


def residual(x, u):
    return kp.laplacian(u, x) + 2 * pi**2 * exact(x)


problem = kp.Problem(
    kp.Polygon([[-1, -1], [1, -1], [1, 0], [0, 0], [0, 1], [-1, 1]]),
    residual,
    conditions=[kp.Dirichlet(exact)],
    exact=exact,
    name="poisson_lshape",
)

suggested = {"widths": [2, 10, 1], "n_interior": 2000, "n_boundary": 400}
