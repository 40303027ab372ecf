"""symbolify's verdict: a formula verified on the PDE carries no "no closed form" warning,
whatever its edge fits said; one that is not verified keeps it."""
import math
from types import SimpleNamespace

import sympy
import torch

import kanpinn as kp
from kanpinn.symbolic.symbolify import _solves_pde

PI = math.pi


def heat():
    return kp.Problem(kp.SpaceTime(kp.Interval(0.0, 1.0), t=(0.0, 1.0)),
                      lambda x, u: kp.partial(u, x, 1) - kp.partial(u, x, 0, order=2) / PI ** 2,
                      [kp.Dirichlet(0.0), kp.Initial(lambda x: torch.sin(PI * x[:, 0:1]))])


def test_pde_decides_the_verdict():
    x, t = sympy.symbols("x t")
    result = SimpleNamespace(model=None, metrics={}, problem=heat())
    exact = SimpleNamespace(expr=sympy.exp(-t) * sympy.sin(sympy.pi * x), symbols=(x, t))
    assert _solves_pde(result, exact)
    # 1e-3 off in the decay rate: close to the network, not a solution
    near = SimpleNamespace(expr=sympy.exp(-1.001 * t) * sympy.sin(sympy.pi * x), symbols=(x, t))
    assert not _solves_pde(result, near)
    # a bare model has no PDE to decide
    assert not _solves_pde(SimpleNamespace(layers=[]), exact)
