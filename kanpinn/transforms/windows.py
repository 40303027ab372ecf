"""A piecewise-in-time model: one sub-model per time window (time-marching).

``TimeWindows(models, edges, t_col)`` routes every point to the model of the window its
time lies in: window k covers [edges[k], edges[k + 1]), the last one also its right end;
times before the first edge go to the first window and times after the last edge to the
last (each sub-model extrapolates as any model does).

The sub-models are trained one after another by ``kanpinn.solver.marching``: window k
starts from window k - 1's solution at t = edges[k], given to it as its initial
condition through :class:`SliceOf` (a callable, differentiable in x, so exact initial
constraints (``HardConstraint``) can take their derivatives by autograd; cached per
point set, since window k - 1 is frozen while window k trains). A file cannot
hold a callable; the link between windows is part of this model, though, so
``model_from_config`` rebuilds it (:meth:`TimeWindows.relink`). What the first window
took from the problem's own functions needs ``attach(problem)``, as for a one-window model.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .. import jet as jets
from ..errors import KanpinnError
from .wrapper import values

__all__ = ["TimeWindows", "SliceOf", "check_edges"]


def check_edges(edges, n_models=None, owner="TimeWindows"):
    """``edges`` as a list of floats: finite and strictly increasing, one more than the
    windows (``n_models``) when that is given."""
    try:
        out = [float(e) for e in edges]
    except (TypeError, ValueError):
        raise KanpinnError(f"{owner}: edges must be a list of numbers (window boundaries in time), "
                           f"got {str(edges)[:80]}") from None
    if len(out) < 2:
        raise KanpinnError(f"{owner}: edges needs at least two times (one window), got {out}")
    if not all(math.isfinite(e) for e in out):
        raise KanpinnError(f"{owner}: edges must be finite, got {out}")
    bad = [i for i in range(1, len(out)) if not out[i] > out[i - 1]]
    if bad:
        i = bad[0]
        raise KanpinnError(f"{owner}: edges must be strictly increasing; edge {i} ({out[i]:g}) does not "
                           f"follow {out[i - 1]:g}")
    if n_models is not None and len(out) != n_models + 1:
        raise KanpinnError(f"{owner}: {n_models} window model(s) need {n_models + 1} edges, got {len(out)}")
    return out


class SliceOf:
    """x -> ∂^j u/∂t^j of ``model`` at (x_space, t0): the state a window hands to the next.

    ``x`` is a full point (N, d) whose time column the caller has already set to t0 (as
    ``Initial`` and the hard-constraint lifting do); it is used as given, so the result
    stays differentiable in every column (the lifting differentiates it by autograd).
    ``component``: one output column (None: all).

    The previous window is fixed while the next one trains, so its slice at a point set is
    a fixed tensor: the value, gradient and Hessian (every column) at the last few point
    sets seen are kept (``cache`` sets; 0 turns it off) and handed back on a hit, with
    their derivatives through small autograd functions; third derivatives are taken
    live from the model, when something asks for them. A hit needs the same points
    (compared by value: the solver's points are new tensors at every evaluation and
    get resampled) and the same parameter versions of the model and of the windows it
    starts from (a trained-on model misses). Why: without it a later window
    re-evaluated every earlier window, through autograd, at every evaluation (measured,
    Allen-Cahn 3 windows at G = 5, 15 LM steps each: window 3 at 1.08 s a step, window 1
    at 0.45 s)."""

    def __init__(self, model, t_col, derivative=0, component=None, cache=8):
        if derivative not in (0, 1):
            raise KanpinnError(f"SliceOf: derivative must be 0 or 1, got {derivative!r}")
        if isinstance(cache, bool) or not isinstance(cache, int) or cache < 0:
            raise KanpinnError(f"SliceOf: cache must be a number of point sets >= 0, got {cache!r}")
        self.model, self.t_col, self.derivative, self.component = model, int(t_col), int(derivative), component
        self.cache = cache
        self._sets = []                 # _Entry per point set, most recent first

    def __call__(self, x):
        if not self.cache:
            return self._live(x)
        live = x.requires_grad and torch.is_grad_enabled()
        entry = self._entry(x, self.fingerprint(), live)
        if live:
            return _Cached.apply(x, entry, 0)
        return entry.u.clone()

    def __deepcopy__(self, memo):
        # a copy starts with no cached sets (they belong to this model's parameters)
        out = SliceOf.__new__(SliceOf)
        memo[id(self)] = out
        out.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items() if k != "_sets"})
        out._sets = []
        return out

    def fingerprint(self):
        """The identities and versions of every parameter the slice depends on: the
        model's own and those of the slices its exact initial condition reads."""
        out = []
        for m in self.model.modules():
            out += [(id(p), p._version) for p in m.parameters(recurse=False)]
            out += [(id(b), b._version) for b in m.buffers(recurse=False)]
            lift = getattr(m, "lifting", None)
            for v in (getattr(lift, "u0", None), getattr(lift, "v0", None), getattr(lift, "h", None)):
                if isinstance(v, SliceOf):
                    out.append(v.fingerprint())
        return tuple(out)

    def _entry(self, x, key, derivatives):
        xd = x.detach()
        for i, e in enumerate(self._sets):
            if e.key == key and e.x.shape == xd.shape and e.x.dtype == xd.dtype and e.x.device == xd.device \
                    and torch.equal(e.x, xd):
                if i:
                    self._sets.insert(0, self._sets.pop(i))
                if derivatives and e.hess is None:
                    _, e.grad, e.hess = self._jets(e.x)
                return e
        e = _Entry(self, xd.clone(), key)
        if derivatives:
            e.u, e.grad, e.hess = self._jets(e.x)
        else:
            with torch.no_grad():
                e.u = self._live(e.x).detach()
        self._sets = [e] + self._sets[:self.cache - 1]
        return e

    def _live(self, x):
        # the previous window is fixed while this one trains: its layers must not add
        # records to the solver's Jacobian (a throwaway recording block keeps them out;
        # measured, Allen-Cahn 3 windows at G = 5: the third window's LM steps cost 3.4x the first's)
        with jets.recording():
            return self._slice(x)

    def _slice(self, x):
        if self.derivative == 0:
            u = self._model_at(x)
        else:
            # u_t by autograd; create_graph keeps it differentiable (the lifting's jet)
            with torch.enable_grad():
                xr = x if x.requires_grad else x.detach().requires_grad_(True)
                u = self._model_at(xr)
                cols = [torch.autograd.grad(u[:, c].sum(), xr, create_graph=True)[0][:, self.t_col:self.t_col + 1]
                        for c in range(u.shape[1])]
                u = torch.cat(cols, 1)
            if not x.requires_grad and not torch.is_grad_enabled():
                u = u.detach()
        if self.component is not None:
            u = u[:, self.component:self.component + 1]
        return u

    def _model_at(self, x):
        """The previous window's model at x, on x's device: callers such as the exact
        constraint's periodicity check sample their points on the CPU while the model
        trained on CUDA (the moves are differentiable, so the jets still flow)."""
        like = next(self.model.parameters(), None)
        if like is None or like.device == x.device:
            return values(self.model)(x)
        return values(self.model)(x.to(like.device)).to(x.device)

    def _jets(self, x):
        """The live slice at x, its gradient (N, c, d) and Hessian (N, c, d, d) in every
        column, by autograd, detached."""
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            u = self._live(xr)
            grads, hess = [], []
            for c in range(u.shape[1]):
                g = _grad(u[:, c].sum(), xr, create_graph=True, retain_graph=True)
                grads.append(g.detach())
                hess.append(torch.stack([_grad(g[:, j].sum(), xr, retain_graph=True).detach()
                                         for j in range(xr.shape[1])], 1))
        return u.detach(), torch.stack(grads, 1), torch.stack(hess, 1)

    def _third(self, x, gH):
        """sum over (c, j, k) of gH[n, c, j, k] ∂³u_c/∂x_j∂x_k∂x_i, by autograd on the
        live model (what a residual with third derivatives needs; not cached)."""
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            u = self._live(xr)
            total = xr.new_zeros(())
            for c in range(u.shape[1]):
                g = _grad(u[:, c].sum(), xr, create_graph=True)
                for j in range(xr.shape[1]):
                    h = _grad(g[:, j].sum(), xr, create_graph=True)
                    total = total + (h * gH[:, c, j, :].detach()).sum()
            return _grad(total, xr)


def _grad(y, x, create_graph=False, retain_graph=None):
    if not y.requires_grad:
        return x.new_zeros(x.shape)
    g = torch.autograd.grad(y, x, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True)[0]
    return x.new_zeros(x.shape) if g is None else g


class _Entry:
    """One cached point set of a :class:`SliceOf` (its ``owner``): the points, the
    parameter fingerprint they were computed with, the value and (on first need) the
    gradient and Hessian."""

    def __init__(self, owner, x, key):
        self.owner, self.x, self.key = owner, x, key
        self.u = self.grad = self.hess = None


class _Cached(torch.autograd.Function):
    """Level 0, 1, 2 of the cached jet: u (N, c), ∇u (N, c, d), the Hessian (N, c, d, d).
    The backward of a level is the next level contracted with the incoming gradient
    (itself differentiable, so the lifting's second derivatives come from the cache too);
    the Hessian's backward (third derivatives) is taken live from the model and is not
    differentiable further."""

    @staticmethod
    def forward(ctx, x, entry, level):
        ctx.save_for_backward(x)
        ctx.entry, ctx.level = entry, level
        return (entry.u, entry.grad, entry.hess)[level].clone()

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        if ctx.level == 2:
            return ctx.entry.owner._third(x, g), None, None
        nxt = _Cached.apply(x, ctx.entry, ctx.level + 1)
        return (g[..., None] * nxt).sum(tuple(range(1, g.dim()))), None, None


class TimeWindows(nn.Module):
    """Sub-models on consecutive time windows; see the module doc.

    Args:
        models: one model per window (all with the same inputs and outputs).
        edges: the window boundaries in time, strictly increasing, ``len(models) + 1``.
        t_col: the time column of the input (a SpaceTime's last variable).

    Example:

    >>> a, b = kp.KAN([2, 3, 1], seed=0), kp.KAN([2, 3, 1], seed=1)
    >>> m = TimeWindows([a, b], edges=[0.0, 0.5, 1.0], t_col=1)
    >>> x = torch.tensor([[0.3, 0.2], [0.3, 0.7]], dtype=torch.float64)
    >>> bool(torch.allclose(m(x)[1], b(x[1:])[0]))
    True
    """

    def __init__(self, models, edges, t_col):
        super().__init__()
        models = list(models) if isinstance(models, (list, tuple, nn.ModuleList)) else None
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise KanpinnError("TimeWindows: models must be a non-empty list of kanpinn models (one per window)")
        self.edges = check_edges(edges, len(models))
        if isinstance(t_col, bool) or not isinstance(t_col, int) or t_col < 0:
            raise KanpinnError(f"TimeWindows: t_col must be a column index >= 0, got {t_col!r}")
        ins = {getattr(m, "width_in", None) for m in models}
        outs = {getattr(m, "width_out", 1) for m in models}
        if len(ins) != 1 or len(outs) != 1:
            raise KanpinnError(f"TimeWindows: every window's model must take the same inputs and give the same "
                               f"outputs, got inputs {sorted(map(str, ins))} and outputs {sorted(map(str, outs))}")
        w_in = ins.pop()
        if w_in is not None and not t_col < w_in:
            raise KanpinnError(f"TimeWindows: t_col {t_col} is not a column of the models' {w_in} inputs")
        self.t_col = t_col
        self.windows = nn.ModuleList(models)
        # interior edges: what bucketize compares times with (a buffer moves with .to())
        self.register_buffer("_inner_edges", torch.tensor(self.edges[1:-1], dtype=torch.float64), persistent=False)

    # ------------------------------------------------------------------ interface
    @property
    def width_in(self):
        return getattr(self.windows[0], "width_in", None)

    @property
    def width_out(self):
        return getattr(self.windows[0], "width_out", 1)

    @property
    def n_parameters(self):
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def extra_repr(self):
        return f"windows={len(self.windows)}, edges={[round(e, 12) for e in self.edges]}, t_col={self.t_col}"

    def config(self):
        return {"type": "TimeWindows", "t_col": self.t_col, "edges": list(self.edges),
                "windows": [m.config() for m in self.windows]}

    def window_of(self, t):
        """Window index (long tensor) of each time in ``t`` (N,)."""
        e = self._inner_edges.to(dtype=t.dtype, device=t.device)
        return torch.bucketize(t.detach().contiguous(), e, right=True)

    # ------------------------------------------------------------------ evaluation
    def _check(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or (self.width_in is not None and x.shape[1] != self.width_in):
            raise KanpinnError(f"TimeWindows: expected input of shape (N, {self.width_in}), "
                               f"got {tuple(getattr(x, 'shape', ()))}")

    def _route(self, x, evaluate):
        """``evaluate(model, x_rows)`` -> tuple of (rows, ...) tensors (or None) for each
        window's points, assembled in x's row order."""
        self._check(x)
        idx = self.window_of(x[:, self.t_col])
        parts = None
        for k, m in enumerate(self.windows):
            rows = torch.nonzero(idx == k).squeeze(1)
            if rows.numel() == 0:
                continue
            got = evaluate(m, x[rows])
            if parts is None:
                parts = [None if j is None else j.new_zeros((x.shape[0],) + tuple(j.shape[1:])) for j in got]
            parts = [None if p is None else p.index_copy(0, rows, j) for p, j in zip(parts, got)]
        if parts is None:                   # no points at all: the first window's empty output
            return tuple(evaluate(self.windows[0], x))
        return tuple(parts)

    def forward(self, x):
        """Each point evaluated by its window's model (differentiable in x by autograd)."""
        return self._route(x, lambda m, xr: (values(m)(xr),))[0]

    forward_values = forward

    def forward_jet(self, x, order=2):
        """Value, gradient and Hessian diagonal, each window's own jet at its points."""
        return self._route(x, lambda m, xr: m.forward_jet(xr, order))

    # ------------------------------------------------------------------ links
    def relink(self):
        """Give every window k >= 1 whose exact initial condition came from window k - 1
        (a hard-constraint lifting saved as 'callable') that window's slice again: after
        loading, the link is rebuilt from the model itself. Returns self."""
        from .constraint import HardConstraint, Lifting
        for k in range(1, len(self.windows)):
            m = self.windows[k]
            if not isinstance(m, HardConstraint) or m.lifting is not None:
                continue
            spec = m._spec
            if spec.get("h") == "callable":
                continue                # the problem's Dirichlet function: attach(problem) gives it
            prev = self.windows[k - 1]
            u0 = SliceOf(prev, self.t_col, 0) if spec.get("u0") == "callable" else spec.get("u0")
            v0 = SliceOf(prev, self.t_col, 1) if spec.get("v0") == "callable" else spec.get("v0")
            m.lifting = Lifting.from_spec(spec, spec.get("h"), u0, v0)
        return self

    def attach(self, problem):
        """The problem's value functions given back after loading (see
        ``HardConstraint.attach``): the first window takes the problem's initial values,
        the others their previous window's slice. Returns self."""
        from .constraint import HardConstraint, Lifting, hard_constraint_for
        if not any(isinstance(m, HardConstraint) for m in self.windows):
            return self
        built = None
        for k, m in enumerate(self.windows):
            if not isinstance(m, HardConstraint):
                continue
            if built is None:
                built = hard_constraint_for(problem, exact_velocity=any(f[4] == 2 for f in m.factors))
                if built is None:
                    raise KanpinnError("attach: this problem has no exact conditions; the model was trained with some")
                space = [list(f) for f in built[0] if f[0] != self.t_col]
            if [list(f) for f in m.factors if f[0] != self.t_col] != space:
                raise KanpinnError("attach: this problem's boundary conditions do not give the constraint the "
                                   f"model's window {k} was trained with")
            full, spec = built[1], m._spec
            if k == 0:
                u0 = full.u0 if spec.get("u0") is not None else None
                v0 = full.v0 if spec.get("v0") is not None else None
            else:
                prev = self.windows[k - 1]
                u0 = SliceOf(prev, self.t_col, 0) if spec.get("u0") == "callable" else spec.get("u0")
                v0 = SliceOf(prev, self.t_col, 1) if spec.get("v0") == "callable" else spec.get("v0")
            h = full.h if spec.get("h") is not None else None
            m.lifting = Lifting.from_spec(spec, h, u0, v0)
            m._spec = m.lifting.spec()
        return self
