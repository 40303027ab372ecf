"""Inverse Burgers (Raissi et al. 2019): learn the viscosity ν of u_t + u u_x = ν u_xx on
x in [-1, 1], t in [0, 1] from 2000 clean observations of u at random points (seeded),
without initial or boundary conditions. True ν = 0.01/π; the search starts from 0.05.
Observations and reference: the Cole-Hopf solution (kanpinn.references.burgers)."""
import math

import numpy as np

import kanpinn as kp
from kanpinn.references import burgers_cole_hopf

true_parameters = {"nu": 0.01 / math.pi}     # what the solve should recover
n_observations = 2000

_rng = np.random.default_rng(2019)
observed_x = np.column_stack([_rng.uniform(-1.0, 1.0, n_observations), _rng.uniform(0.0, 1.0, n_observations)])
observed_u = burgers_cole_hopf(observed_x[:, 0], observed_x[:, 1], true_parameters["nu"])[:, None]


def exact(x):                                 # columns: x, t
    return burgers_cole_hopf(x[:, 0], x[:, 1], true_parameters["nu"]).unsqueeze(1).to(x.dtype)


def residual(x, u, p):
    return kp.partial(u, x, 1) + u * kp.partial(u, x, 0) - p["nu"] * kp.partial(u, x, 0, order=2)


problem = kp.Problem(
    kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
    residual,
    conditions=[kp.Data(observed_x, observed_u)],
    exact=exact,
    parameters={"nu": 0.05},
    name="burgers_inverse",
)

suggested = {"widths": [2, 10, 1], "n_interior": 4000}
