"""1-D heat equation: u_t = κ u_xx on x in [-1, 1], t in [0, 1] with κ = 1/π²,
u(x, 0) = sin(πx), u(±1, t) = 0; exact u = exp(-t) sin(πx)."""
import torch

import kanpinn as kp

pi = torch.pi
kappa = 1.0 / pi**2


def residual(x, u):                       # columns: x, t
    return kp.partial(u, x, 1) - kappa * kp.partial(u, x, 0, order=2)


problem = kp.Problem(
    kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
    residual,
    conditions=[kp.Dirichlet(0.0), kp.Initial(lambda x: torch.sin(pi * x[:, 0:1]))],
    exact=lambda x: torch.exp(-x[:, 1:2]) * torch.sin(pi * x[:, 0:1]),
    name="heat_1d",
)

suggested = {"widths": [2, 10, 1], "n_interior": 2000, "n_boundary": 200}
