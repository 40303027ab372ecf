"""Mirror symmetries of a problem, found by probing it (for ``transforms.Mirror``).

A problem is invariant under reflecting the space variable x_c about the centre c of a
box, with parity s (u -> s·u(Rx)), when

- the residual is covariant: for any field u, the residual of v(x) = s·u(Rx) at x is
  ±(the residual of u at Rx), the same sign for every field;
- every condition maps to itself: Dirichlet (on the whole boundary) and initial values
  with h(x) = s·h(Rx), periodicity in any variable;
- nothing else constrains u (observations, Neumann or Robin data, unknown
  coefficients, several outputs are not probed: no symmetry is claimed for them).

Then s·u(Rx) solves the problem whenever u does, and a unique solution has parity s.
The probe evaluates the user's residual on a few random smooth fields (sums of sines with
random frequencies, derivatives by autograd) at random points and their mirror images,
and the condition values at sampled boundary and initial points. A probe that fails for
any reason counts as no symmetry.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["mirror_symmetries"]

_FIELDS = 3                 # random fields the residual is probed with
_POINTS = 64                # probe points (interior, boundary, initial)
_TOL = 1e-9                 # relative mismatch still counted as equal (rounding)


def mirror_symmetries(problem):
    """[(column, centre, sign)] for each space variable the problem is mirror symmetric in
    (sign -1: u odd, +1: even); [] when none, or when the problem is of a kind the probe
    does not cover (see the module doc)."""
    try:
        return _probe(problem)
    except Exception:                   # noqa: BLE001 - a residual the probe cannot drive: no claim
        return []


def _probe(problem):
    from ..conditions import Dirichlet, Initial, Periodic
    from ..domains import SpaceTime
    dom = problem.domain
    if not getattr(dom, "is_box", False) or problem.parameters:
        return []
    for c in problem.conditions:
        if isinstance(c, Periodic):
            continue
        if not isinstance(c, (Dirichlet, Initial)) or getattr(c, "component", None) is not None \
                or getattr(c, "on", None) is not None:
            return []
    try:
        if problem.n_outputs not in (None, 1):
            return []
    except Exception:                   # noqa: BLE001 - no exact solution: read nothing from it
        pass
    is_time = isinstance(dom, SpaceTime)
    n_space = dom.dim - 1 if is_time else dom.dim
    lo, hi = np.asarray(dom.lo, dtype=float), np.asarray(dom.hi, dtype=float)
    x = torch.as_tensor(dom.sample_interior(_POINTS, "uniform", seed=11), dtype=torch.float64)
    fields = _random_fields(dom.dim, np.random.default_rng(5))
    found = []
    for col in range(n_space):
        centre = 0.5 * (lo[col] + hi[col])
        for sign in (-1.0, 1.0):
            if _residual_covariant(problem, x, fields, col, centre, sign) and \
                    _conditions_symmetric(problem, dom, is_time, col, centre, sign):
                found.append((col, float(centre), sign))
                break
    return found


def _reflect(x, col, centre):
    cols = list(x.unbind(1))
    cols[col] = 2.0 * centre - cols[col]
    return torch.stack(cols, 1)


def _random_fields(d, rng):
    """Smooth fields x -> (N, 1) with no parity in any variable."""
    out = []
    for _ in range(_FIELDS):
        w = torch.as_tensor(rng.normal(0.0, 2.0, (4, d)))
        ph = torch.as_tensor(rng.uniform(0.0, 2 * np.pi, 4))
        a = torch.as_tensor(rng.normal(0.0, 1.0, 4))
        out.append(lambda x, w=w, ph=ph, a=a: (torch.sin(x @ w.T + ph) * a).sum(1, keepdim=True) + 0.3)
    return out


def _residual_at(problem, x, field):
    x = x.detach().clone().requires_grad_(True)
    return [t.detach().reshape(x.shape[0], -1) for t in problem.residual_terms(x, field(x))]


def _residual_covariant(problem, x, fields, col, centre, sign):
    rx = _reflect(x, col, centre)
    signs = None
    for f in fields:
        mirrored = _residual_at(problem, x, lambda y, f=f: sign * f(_reflect(y, col, centre)))
        plain = _residual_at(problem, rx, f)
        now = []
        for a, b in zip(mirrored, plain):
            scale = float(a.abs().max() + b.abs().max()) + 1e-300
            if float((a - b).abs().max()) <= _TOL * scale:
                now.append(1.0)
            elif float((a + b).abs().max()) <= _TOL * scale:
                now.append(-1.0)
            else:
                return False
        if signs is not None and now != signs:
            return False
        signs = now
    return True


def _value_symmetric(value, x, col, centre, sign):
    """h(x) = sign·h(Rx) at the points x (a number: h = sign·h)."""
    if not callable(value):
        v = float(value)
        return abs(v - sign * v) <= _TOL * max(1.0, abs(v))
    with torch.no_grad():
        a = torch.as_tensor(value(x), dtype=torch.float64).reshape(x.shape[0], -1)
        b = torch.as_tensor(value(_reflect(x, col, centre)), dtype=torch.float64).reshape(x.shape[0], -1)
    scale = float(a.abs().max() + b.abs().max()) + 1e-300
    return float((a - sign * b).abs().max()) <= _TOL * scale


def _conditions_symmetric(problem, dom, is_time, col, centre, sign):
    from ..conditions import Dirichlet, Initial
    for c in problem.conditions:
        if isinstance(c, Dirichlet):
            pts = dom.sample_boundary(_POINTS, "uniform", seed=12)
        elif isinstance(c, Initial):
            pts = dom.sample_initial(_POINTS, "uniform", seed=13)
        else:
            continue                    # periodicity maps to itself under a reflection
        x = torch.as_tensor(pts, dtype=torch.float64)
        if not _value_symmetric(c.value, x, col, centre, sign):
            return False
    return True
