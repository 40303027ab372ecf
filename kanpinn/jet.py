"""Jets: a model output together with its derivatives with respect to the input.

A model that implements ``forward_jet(x, order)`` returns ``u`` (N, m), its gradient
``du`` (N, m, d) and the diagonal of its Hessian ``d2u`` (N, m, d), propagated forward
through the layers analytically. A PDE loss built from them needs only one first-order
backward pass, where nested autograd needs a double backward through every layer (about
3x slower on the reference problem, see FIELD_NOTES).

``evaluate(model, x, order)`` attaches the jet to ``u``; the derivative helpers in
``kanpinn.operators`` look it up and fall back to autograd when it is absent.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["Jet", "attach", "lookup", "evaluate", "supports_jet", "recording", "record"]

# While a ``recording()`` block is active, layers append what they computed in jet mode,
# so the solver can form per-point parameter Jacobians from one backward pass
# (kanpinn.solver.jacobian). None when not recording: the hot path pays one check.
_RECORDS = None


@contextmanager
def recording():
    """Collect layer records of every jet evaluation inside the block (a list)."""
    global _RECORDS
    saved, _RECORDS = _RECORDS, []
    try:
        yield _RECORDS
    finally:
        _RECORDS = saved


def recording_active() -> bool:
    return _RECORDS is not None


def record(kind: str, module, **tensors):
    if _RECORDS is not None:
        _RECORDS.append((kind, module, tensors))

_ATTR = "_kanpinn_jet"


@dataclass
class Jet:
    x: torch.Tensor                 # (N, d) the input the derivatives are taken against
    du: torch.Tensor                # (N, m, d)
    d2u: Optional[torch.Tensor]     # (N, m, d) diagonal second derivatives, or None


def attach(u: torch.Tensor, x: torch.Tensor, du: torch.Tensor, d2u=None) -> torch.Tensor:
    """Record the derivatives of ``u`` with respect to ``x`` on ``u`` itself."""
    setattr(u, _ATTR, Jet(x, du, d2u))
    return u


def lookup(u: torch.Tensor, x: torch.Tensor) -> Optional[Jet]:
    """The jet of ``u`` with respect to exactly this ``x``, or None."""
    jet = getattr(u, _ATTR, None)
    if jet is None or jet.x is not x:
        return None
    return jet


def supports_jet(model) -> bool:
    return callable(getattr(model, "forward_jet", None))


def evaluate(model, x: torch.Tensor, order: int = 2) -> torch.Tensor:
    """``model(x)`` with derivatives up to ``order`` attached (plain forward for order 0
    or for models without ``forward_jet``; autograd then serves the derivatives)."""
    if order <= 0 or not supports_jet(model):
        return model(x)
    u, du, d2u = model.forward_jet(x, order)
    return attach(u, x, du, d2u)


def identity_jet(x: torch.Tensor, order: int):
    """Jet of the input itself: gradient the identity, second derivatives zero."""
    n, d = x.shape
    g = torch.eye(d, dtype=x.dtype, device=x.device).expand(n, d, d)
    h = torch.zeros_like(g) if order >= 2 else None
    return g, h


def compose_elementwise(f0, f1, f2, g, h):
    """Jet of z = f(y) elementwise, given f, f', f'' at y and y's jet g, h (N, w, d)."""
    gz = f1[..., None] * g
    hz = None
    if h is not None:
        hz = f2[..., None] * g * g + f1[..., None] * h
    return f0, gz, hz


def product(a, ga, ha, b, gb, hb):
    """Jet of a * b for values (N, w) and jets (N, w, d)."""
    g = a[..., None] * gb + b[..., None] * ga
    h = None
    if ha is not None:
        h = a[..., None] * hb + b[..., None] * ha + 2 * ga * gb
    return a * b, g, h
