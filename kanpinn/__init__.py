"""kanpinn: physics-informed Kolmogorov-Arnold Networks that solve PDEs and read the
solution back as a closed-form formula.

Example::

    import torch, kanpinn as kp
    domain = kp.Rectangle([-1, -1], [1, 1])
    problem = kp.Problem(domain, lambda x, u: kp.laplacian(u, x) + 1.0, [kp.Dirichlet(0.0)])
    result = kp.solve(problem, kp.KAN([2, 10, 1]), grids=[5, 10], steps=50)

The public names are fixed in the API contract (shared/API.md).
"""
from .errors import KanpinnError
from .domains import Box, Disk, Interval, Rectangle, SpaceTime
from .geometry.ball import Ball
from .geometry.polygon import Polygon
from .conditions import Data, Dirichlet, Initial, Neumann, Periodic, Robin
from .operators import div, grad, laplacian, partial
from .problem import Problem
from .kan import KAN
from .mlp import MLP
from .solver import solve
from .result import Result, load


def symbolify(result_or_model, library=None, variables=None, **options):
    """Closed-form sympy expression of a trained KAN (see ``kanpinn.symbolic``).

    ``result_or_model``: a :class:`Result` (variables from its domain) or a ``KAN`` with
    d inputs (then ``variables`` names them). Returns a ``sympy.Expr`` in those symbols
    (a column ``sympy.Matrix`` of m entries for m outputs). Options: see
    ``kanpinn.symbolic.symbolify_report`` (e.g. ``allow_numeric=True`` keeps edges that
    no library function fits as polynomials).

    Example (fit a one-edge KAN to x^2, then read the formula back):

    >>> model = kp.KAN([1, 1], grid=5, seed=0)
    >>> x = torch.linspace(-1, 1, 64).reshape(-1, 1)
    >>> opt = torch.optim.LBFGS(model.parameters(), max_iter=50, line_search_fn="strong_wolfe")
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = ((model(x) - x**2) ** 2).mean()
    ...     loss.backward()
    ...     return loss
    >>> _ = opt.step(closure)
    >>> kp.symbolify(model, variables=["x"])
    x**2
    """
    from .symbolic import symbolify as _symbolify
    return _symbolify(result_or_model, library=library, variables=variables, **options)


def discover(problem, **options):
    """Search small KAN structures for the closed-form solution of ``problem`` and return
    a :class:`Discovery`: ``.formula`` (the simplest formula whose own PDE residual and
    condition misfits vanish on fresh points; None when none does), ``.verified``,
    ``.residual``, ``.candidates`` (the table of what was tried), ``.report()``.
    Options: see ``kanpinn.symbolic.discover.discover`` (``max_time``, ``tol``,
    ``structures``, ``starts``, ``stop_early``, ``solve``, ``log``).

    Example (one structure, a tiny budget; by default six structures are searched):

    >>> pi = torch.pi
    >>> problem = kp.Problem(kp.Interval(-1.0, 1.0),
    ...                      lambda x, u: kp.laplacian(u, x) + pi**2 * torch.sin(pi * x),
    ...                      [kp.Dirichlet(0.0)])
    >>> found = kp.discover(problem, structures=[[1, 1]],
    ...                     solve=dict(grids=[5], steps=10, n_interior=60, n_boundary=2))
    >>> found.verified, found.formula
    (True, sin(pi*x))
    """
    from .symbolic.discover import discover as _discover
    return _discover(problem, **options)


def from_formula(expr, variables, **options):
    """Kanpiler: a KAN computing the sympy formula ``expr`` of ``variables`` (symbolic
    edges, or splines fitted to it with ``symbolic=False``); see ``kanpinn.kanpiler``.
    Also reachable as ``kp.KAN.from_formula``."""
    from .kanpiler import from_formula as _from_formula
    return _from_formula(expr, variables, **options)


# The network module (kan.py) must not import the kanpiler, which sits above it (its
# fitted fallback trains with the solver, whose results rebuild networks): that was an
# import circle. The package, which sits above both, attaches the constructor instead.
KAN.from_formula = staticmethod(from_formula)


def __getattr__(name):
    if name == "Discovery":  # imported lazily, like symbolify (sympy loads on first use)
        from .symbolic.discover import Discovery
        return Discovery
    raise AttributeError(f"module 'kanpinn' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = ["Interval", "Rectangle", "Box", "Disk", "SpaceTime", "Polygon", "Ball", "Dirichlet", "Neumann", "Robin",
           "Periodic", "Initial", "Data", "grad", "partial", "laplacian", "div", "Problem", "KAN",
           "MLP", "solve", "Result", "load", "symbolify", "discover", "Discovery", "KanpinnError"]
