"""Korteweg-de Vries soliton: u_t + 6 u u_x + u_xxx = 0 on x in [-8, 8], t in [0, 4],
u = (c/2) sech²(√c/2 (x - c t - x0)) with c = 1, x0 = -2 (the solitary wave moves from
x = -2 to x = 2 keeping its shape; Drazin & Johnson, "Solitons", 1989, §2.1). Dirichlet
values and u(x, 0) from the exact solution. A third-order residual: the jets carry
u_xxx (``kanpinn.jet``, orders 3 and 4), so Levenberg-Marquardt's structured Jacobian
covers it."""
import math

import torch

import kanpinn as kp

c, x0 = 1.0, -2.0


def exact(x):                             # columns: x, t
    z = math.sqrt(c) / 2 * (x[:, 0:1] - c * x[:, 1:2] - x0)
    return (c / 2) / torch.cosh(z) ** 2


def residual(x, u):
    return kp.partial(u, x, 1) + 6 * u * kp.partial(u, x, 0) + kp.partial(u, x, 0, order=3)


problem = kp.Problem(
    kp.SpaceTime(kp.Interval(-8.0, 8.0), t=(0.0, 4.0)),
    residual,
    conditions=[kp.Dirichlet(exact), kp.Initial(exact)],
    exact=exact,
    name="kdv_1d",
)

suggested = {"widths": [2, 10, 1], "n_interior": 2000, "n_boundary": 400}
