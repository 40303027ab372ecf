"""3-D Poisson: Δu = f on [-1, 1]³ with exact u = sin(πx) + sin(πy) + sin(πz), so
f = -π² u; Dirichlet u = exact on the boundary."""
import torch

import kanpinn as kp

pi = torch.pi


def exact(x):
    return torch.sin(pi * x).sum(dim=1, keepdim=True)


def residual(x, u):
    return kp.laplacian(u, x) + pi**2 * exact(x)


problem = kp.Problem(
    kp.Box([-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]),
    residual,
    conditions=[kp.Dirichlet(exact)],
    exact=exact,
    name="poisson_3d_sines",
)

suggested = {"widths": [3, 6, 1], "n_interior": 4000, "n_boundary": 1200}
