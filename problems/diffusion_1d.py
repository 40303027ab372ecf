"""1-D diffusion with a source (DeepXDE's diffusion example):
u_t = u_xx - e^{-t} (sin(πx) - π² sin(πx)) on x in [-1, 1], t in [0, 1],
u(x, 0) = sin(πx), u(±1, t) = 0; exact u = sin(πx) e^{-t}."""
import torch

import kanpinn as kp

pi = torch.pi


def residual(x, u):                       # columns: x, t
    X, T = x[:, 0:1], x[:, 1:2]
    source = -torch.exp(-T) * (torch.sin(pi * X) - pi**2 * torch.sin(pi * X))
    return kp.partial(u, x, 1) - kp.partial(u, x, 0, order=2) - source


problem = kp.Problem(
    kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
    residual,
    conditions=[kp.Dirichlet(0.0), kp.Initial(lambda x: torch.sin(pi * x[:, 0:1]))],
    exact=lambda x: torch.sin(pi * x[:, 0:1]) * torch.exp(-x[:, 1:2]),
    name="diffusion_1d",
)

suggested = {"widths": [2, 10, 1], "n_interior": 2000, "n_boundary": 200}
