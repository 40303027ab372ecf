"""Poisson on a plate with three holes: the square (-1, 1)² minus three disks
(a constructive-geometry difference). Δu = f with the manufactured solution
u = exp(x) sin(πy), so f = (1 - π²) u, and u = exact on the outer edges and on the rims
of the holes."""
import torch

import kanpinn as kp

pi = torch.pi


def exact(x):
    return torch.exp(x[:, 0:1]) * torch.sin(pi * x[:, 1:2])


def residual(x, u):
    return kp.laplacian(u, x) - (1 - pi**2) * exact(x)


plate = (kp.Rectangle([-1.0, -1.0], [1.0, 1.0])
         - kp.Disk([-0.5, -0.4], 0.25)
         - kp.Disk([0.45, -0.35], 0.2)
         - kp.Disk([0.0, 0.5], 0.3))

problem = kp.Problem(
    plate,
    residual,
    conditions=[kp.Dirichlet(exact)],
    exact=exact,
    name="poisson_plate_with_holes",
)

suggested = {"widths": [2, 10, 1], "n_interior": 2000, "n_boundary": 600}
