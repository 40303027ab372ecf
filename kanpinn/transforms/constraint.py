"""Exact Dirichlet and initial conditions: u = g(x) + D(x)·N(x) (Sukumar & Srivastava 2022).

D vanishes on the constrained parts (``distance.box_distance``: the spatial faces, and
t = t0 to the power 1, or 2 when u_t(t0) is prescribed too), and the lifting g satisfies
the conditions there, so u does whatever the network N is: the optimiser spends nothing
on boundary misfit and the PDE residual alone shapes N.

The lifting is built from the problem's own value functions, which users write for any
x: with h the Dirichlet value, u0 and v0 the initial value and velocity,

    g(x, t) = h(x, t) + [u0 - h](x, t0) + (t - t0)·[v0 - ∂h/∂t](x, t0)

gives g = u0 and g_t = v0 at t0, and g = h on the lateral boundary where the data agree
there (compatibility, checked numerically before the constraint is used). Its jet comes
from autograd on those functions (no parameters involved).

A file cannot hold a user's Python function (loading never executes code), so a model
whose lifting uses callables is saved with its network and distance only; after loading
it refuses to evaluate until ``attach(problem)`` gives the functions back. Constant
values are stored and need nothing.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import KanpinnError
from .distance import box_distance
from .wrapper import ModelWrapper, values

__all__ = ["HardConstraint", "Lifting", "hard_constraint_for"]


def _call(fn, x, what):
    out = fn(x)
    if not isinstance(out, torch.Tensor):
        out = torch.as_tensor(np.asarray(out, dtype=np.float64), dtype=x.dtype, device=x.device)
    if out.dim() == 1 and out.shape[0] == x.shape[0]:
        out = out[:, None]
    if out.dim() == 0:
        out = out.expand(x.shape[0], 1)
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise KanpinnError(f"hard constraint: the {what} function must return ({x.shape[0]}, 1) or "
                           f"({x.shape[0]}, m), got {tuple(out.shape)}")
    return out.to(x.dtype)


class Lifting:
    """g(x, t) from the values h (Dirichlet), u0, v0 (Initial): each None, a float or a
    callable x -> (N, 1). ``t_col``/``t0``: the time column and start (None: no time).
    ``singular``: closed-form parts E (``kinks``: a corner of u0 and its smoothing)
    added as g + E(x, t) - E(x, t0), so u0 - E(·, t0) is what the rest must match."""

    def __init__(self, h=None, u0=None, v0=None, t_col=None, t0=None, singular=()):
        self.h, self.u0, self.v0, self.t_col, self.t0 = h, u0, v0, t_col, t0
        self.singular = list(singular or ())

    @classmethod
    def from_spec(cls, spec, h=None, u0=None, v0=None):
        """The lifting a spec describes, with the value functions given (the spec keeps
        constants itself; its singular parts are closed forms and always rebuilt)."""
        from .kinks import kinks_from_spec
        return cls(h, u0, v0, spec.get("t_col"), spec.get("t0"), kinks_from_spec(spec.get("singular")))

    @property
    def serialisable(self):
        return not any(callable(v) for v in (self.h, self.u0, self.v0))

    def spec(self):
        enc = lambda v: None if v is None else ("callable" if callable(v) else float(v))
        out = {"h": enc(self.h), "u0": enc(self.u0), "v0": enc(self.v0), "t_col": self.t_col, "t0": self.t0}
        if self.singular:
            out["singular"] = [part.spec() for part in self.singular]
        return out

    def _value(self, v, x, what):
        if v is None:
            return x.new_zeros(x.shape[0], 1)
        if callable(v):
            return _call(v, x, what)
        return x.new_full((x.shape[0], 1), float(v))

    def _at_t0(self, x):
        cols = [x[:, i:i + 1] for i in range(x.shape[1])]
        cols[self.t_col] = torch.full_like(cols[self.t_col], float(self.t0))
        return torch.cat(cols, 1)

    def value(self, x):
        """g at x (differentiable in x)."""
        g = self._value(self.h, x, "Dirichlet value")
        if self.t_col is None:
            return g
        x0 = self._at_t0(x)
        if self.u0 is not None:
            g = g + self._value(self.u0, x0, "initial value") - self._value(self.h, x0, "Dirichlet value")
        if self.v0 is not None:
            vel = self._value(self.v0, x0, "initial velocity")
            if callable(self.h):
                # ∂h/∂t at t0 by autograd, also when the caller runs under no_grad (a
                # loss evaluated for logging): the derivative is part of g's value
                outer = torch.is_grad_enabled()
                with torch.enable_grad():
                    x0 = x0.detach().requires_grad_(True) if not x0.requires_grad else x0
                    hv = self._value(self.h, x0, "Dirichlet value")
                    ht = None
                    if hv.requires_grad:
                        ht = torch.autograd.grad(hv.sum(), x0, create_graph=outer,
                                                 allow_unused=True)[0]
                if ht is not None:
                    vel = vel - ht[:, self.t_col:self.t_col + 1]
            g = g + (x[:, self.t_col:self.t_col + 1] - float(self.t0)) * vel
        for part in self.singular:
            g = g + part(x) - part(x0)
        return g

    def jet(self, x, order):
        """g (N, k), gradient (N, k, d), Hessian diagonal (N, k, d) or None (order < 2)."""
        g, ds = self.derivatives(x, order)
        return g, ds[0], (ds[1] if order >= 2 else None)

    def derivatives(self, x, order):
        """g (N, k) and [∂^r g/∂x_j^r for each column j] r = 1..max(order, 1), each
        (N, k, d), by autograd on the value functions: the gradient once per output, then
        one diagonal derivative after another along each axis. When x requires grad they
        stay differentiable in x (autograd fallbacks on the model's output, e.g. mixed
        derivatives, then see every term)."""
        live = x.requires_grad and torch.is_grad_enabled()
        top = max(order, 1)
        with torch.enable_grad():
            xr = x if live else x.detach().requires_grad_(True)
            g = self.value(xr)
            n, d = xr.shape
            k = g.shape[1]
            out = [xr.new_zeros(n, k, d) for _ in range(top)]
            for c in range(k):
                if not g.requires_grad:
                    break                                    # constant in x: all zero
                first = torch.autograd.grad(g[:, c].sum(), xr, create_graph=live or top >= 2,
                                            allow_unused=True)[0]
                if first is None:
                    continue
                out[0][:, c] = first
                for j in range(d):
                    y = first[:, j]
                    for r in range(1, top):
                        if not y.requires_grad:
                            break                            # a constant from here on: zero
                        nxt = torch.autograd.grad(y.sum(), xr, create_graph=live or r < top - 1,
                                                  retain_graph=True, allow_unused=True)[0]
                        if nxt is None:
                            break
                        y = nxt[:, j]
                        out[r][:, c, j] = y
        if not live:
            g, out = g.detach(), [t.detach() for t in out]
        return g, out


class HardConstraint(ModelWrapper):
    """u = g(x) + D(x)·inner(x). ``factors``: ``box_distance``'s factor list (JSON-safe);
    ``lifting``: a :class:`Lifting` (None after loading a model whose lifting needs the
    problem's functions: ``attach(problem)`` restores it)."""

    def __init__(self, inner, factors, lifting=None, lifting_spec=None):
        super().__init__(inner)
        self.factors = [(int(c), float(a), float(b), str(kind), int(p)) for c, a, b, kind, p in factors]
        self.lifting = lifting
        self._spec = lifting.spec() if lifting is not None else dict(lifting_spec or {})

    @property
    def width_in(self):
        return getattr(self.inner, "width_in", None)

    def config(self):
        return {"type": "HardConstraint", "inner": self.inner.config(),
                "factors": [list(f) for f in self.factors], "lifting": self._spec}

    def attach(self, problem):
        """Give back the problem's value functions after loading (see the module doc)."""
        built = hard_constraint_for(problem, exact_velocity=any(f[4] == 2 for f in self.factors))
        if built is None or [list(f) for f in built[0]] != [list(f) for f in self.factors]:
            raise KanpinnError("attach: this problem's conditions do not give the constraint the model was trained with")
        self.lifting = built[1]
        self._spec = self.lifting.spec()
        return self

    def _lift(self):
        if self.lifting is None:
            spec = self._spec
            if any(spec.get(k) == "callable" for k in ("h", "u0", "v0")):
                raise KanpinnError("this model enforces its conditions exactly through the problem's own value "
                                   "functions, which a file cannot hold; call model.attach(problem) (or "
                                   "result.model.attach(problem)) before predicting")
            self.lifting = Lifting.from_spec(spec, spec.get("h"), spec.get("u0"), spec.get("v0"))
        return self.lifting

    def set_input_range(self, lo, hi):
        if hasattr(self.inner, "set_input_range"):
            self.inner.set_input_range(lo, hi)
        return self

    def inner_inputs(self, x):
        return x                        # the network takes x itself (it may embed it further)

    def forward(self, x):
        lift = self._lift()
        D = box_distance(x, self.factors, 0)[0]
        return lift.value(x) + D * values(self.inner)(x)

    forward_values = forward

    def forward_jet(self, x, order=2):
        if order > 2:                   # diagonal orders 3, 4 (Leibniz): constraint_jet.py
            from .constraint_jet import constraint_jet
            return constraint_jet(self, x, order)
        lift = self._lift()
        N, gN, hN = self.inner.forward_jet(x, order)
        D, gD, hD = box_distance(x, self.factors, order)
        g, gg, hg = lift.jet(x, order)
        u = g + D * N
        du = gg + gD * N[..., None] + D[..., None] * gN
        d2u = None
        if order >= 2:
            d2u = hg + hD * N[..., None] + 2 * gD * gN + D[..., None] * hN
        return u, du, d2u


def _periodic_lifting(lift, dom, periodic, n_check, dtype, at_start):
    """Whether g and its gradient agree on the two faces of every periodic column, at t0
    (``at_start``) or at the sampled times (a lifting with a seam kink: periodic for t > t0,
    u0 itself at t0)."""
    x = torch.as_tensor(dom.sample_interior(n_check, "uniform", seed=2), dtype=dtype)
    if at_start:
        x[:, -1] = float(dom.lo[-1])
    for j in periodic:
        lo_, hi_ = x.clone(), x.clone()
        lo_[:, j], hi_[:, j] = float(dom.lo[j]), float(dom.hi[j])
        jl, jh = lift.jet(lo_, 1)[:2], lift.jet(hi_, 1)[:2]
        if float((jl[0] - jh[0]).abs().max()) > 1e-8 or float((jl[1] - jh[1]).abs().max()) > 1e-6:
            return False
    return True


def hard_constraint_for(problem, n_check=64, exact_velocity=False):
    """(factors, Lifting, notes) enforcing what can be enforced exactly in ``problem``, or
    None when nothing can: a Dirichlet condition on the whole boundary of a box (or a
    SpaceTime over one) and the initial value u(t0). Conditions with ``on=``/
    ``component=``, and other kinds, stay in the loss.

    A prescribed u_t(t0) always enters the lifting (g_t = v0 at t0); it is made exact
    (factor τ², ``exact_velocity=True``) only on request: the network then has to
    represent (u - g)/τ², about u_tt/2 near t0, which for fast oscillations in time is
    large (wave 1-D, 8π in t: ~160) and was measured to train worse (rel. L2 1.2 vs 0.44
    for the soft condition after 30 LM steps); with τ the quotient stays of order u_t."""
    from ..conditions import Dirichlet, Initial, Periodic
    from ..domains import SpaceTime
    dom = problem.domain
    if not getattr(dom, "is_box", False):
        return None
    notes = []
    is_time = isinstance(dom, SpaceTime)
    d = dom.dim
    periodic = [dom.variables.index(c.variable) for c in problem.conditions if isinstance(c, Periodic)]
    dirichlet = [c for c in problem.conditions if isinstance(c, Dirichlet) and c.on is None and c.component is None]
    initial = {c.derivative: c for c in problem.conditions if isinstance(c, Initial) and c.component is None
               and c.derivative in (0, 1)}
    if 1 in initial and 0 not in initial:
        initial = {}
    h = dirichlet[0].value if len(dirichlet) == 1 and not periodic else None
    use_dir = len(dirichlet) == 1 and not periodic
    u0 = initial[0].value if is_time and 0 in initial else None
    v0 = initial[1].value if is_time and 1 in initial else None
    space = list(range(d - 1 if is_time else d))
    lift = Lifting(h if use_dir else None, u0, v0, d - 1 if is_time else None, float(dom.lo[-1]) if is_time else None)
    rng = np.random.default_rng(0)
    dtype = torch.get_default_dtype() if torch.get_default_dtype() == torch.float64 else torch.float64
    if use_dir and u0 is not None:
        # compatibility: the lifting matches h on the lateral boundary only if u0 = h there at t0
        xb = torch.as_tensor(dom.sample_boundary(n_check, "uniform", seed=1), dtype=dtype)
        xb[:, -1] = float(dom.lo[-1])
        with torch.no_grad():
            a, b = lift._value(u0, xb, "initial value"), lift._value(h, xb, "Dirichlet value")
        scale = max(1.0, float(a.abs().max()))
        if float((a - b).abs().max()) > 1e-8 * scale:
            notes.append("initial and boundary values disagree at t0: the Dirichlet condition stays in the loss")
            use_dir = False
            lift.h = None
    if periodic and u0 is not None and not _periodic_lifting(lift, dom, periodic, n_check, dtype, at_start=True):
        # a kink at the seam (u0 periodic, u0' not) is carried in closed form when the
        # equation is parabolic there (kinks.py); the lifting is then periodic after t0
        from .kinks import seam_kinks_for
        # (u0 is only set with time, and Periodic refuses the time variable)
        kinks, why = seam_kinks_for(problem, u0, periodic, d - 1, float(dom.lo[-1]))
        lift.singular = kinks
        if kinks and _periodic_lifting(lift, dom, periodic, n_check, dtype, at_start=False):
            notes.append(why)
        else:
            lift.singular = []
            notes.append(f"the initial value is not periodic with its derivative ({why}): the initial "
                         "condition stays in the loss")
            lift.u0 = lift.v0 = None
            u0 = v0 = None
    if u0 is not None and d == 2 and 0 not in periodic:
        # a corner of u0 inside the interval: an exact u = u0 + τ·N would keep it for all t
        # (measured: heat from a hat 2.8e-2, a plucked string 0.999); its smoothing (or,
        # under the wave equation, its travel) is carried in closed form
        from .kinks import interior_kinks_for
        kinks, why = interior_kinks_for(problem, u0, 0, 1, float(dom.lo[-1]), second_order=v0 is not None,
                                        walls=use_dir)
        if kinks:
            lift.singular = lift.singular + kinks
            notes.append(why)
    factors = []
    if use_dir:
        factors += [(j, float(dom.lo[j]), float(dom.hi[j]), "both", 1) for j in space]
    if u0 is not None:
        factors.append((d - 1, float(dom.lo[-1]), float(dom.hi[-1]), "low",
                        2 if (v0 is not None and exact_velocity) else 1))
    if not factors:
        return None
    enforced = (["dirichlet"] if use_dir else []) + (["initial"] if u0 is not None else []) + \
               (["initial_t"] if (v0 is not None and exact_velocity) else [])
    notes.insert(0, "exact: " + ", ".join(enforced))
    return factors, lift, notes
