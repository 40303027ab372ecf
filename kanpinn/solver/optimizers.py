"""The optimiser registry: every optimiser the training loop can run, by name.

An optimiser is built for one phase of one stage by a factory ``factory(run, lr) ->
Stepper``; a stepper takes one step and says what it saw (``StepInfo``). Two families:

- loss optimisers (any ``torch.optim.Optimizer``): the step's loss is the one measured
  *before* the update, as ``torch.optim`` returns it; such steps can overshoot, so the
  loop guards them (divergence rollback, best state kept);
- residual-vector optimisers (Levenberg-Marquardt, Gauss-Newton): they work on the
  vector of scaled residuals and only accept steps that lower the loss (``monotone``).

Adding an optimiser is one ``register_optimizer`` call in the file that defines it. Users
can also pass a ``torch.optim.Optimizer`` subclass, an instance (its class and
hyperparameters are reused on the stage's parameters: KAN grid extension replaces the
coefficient tensors at each stage), or a callable ``params -> Optimizer``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import KanpinnError

__all__ = ["StepInfo", "register_optimizer", "registered_optimizers", "make_stepper",
           "TorchStepper", "ResidualStepper", "is_optimizer_spec", "optimizer_name"]


@dataclass
class StepInfo:
    """What one optimiser step saw: ``loss`` (float) and ``parts`` (term -> float) of the
    state the step started from (torch optimisers) or reached (monotone optimisers),
    whether the step was ``accepted``, and the optimiser ``kind``."""
    loss: float
    parts: dict = field(default_factory=dict)
    accepted: bool = True
    kind: str = ""


@dataclass
class _Entry:
    factory: Callable
    monotone: bool
    doc: str


_REGISTRY: dict[str, _Entry] = {}


def register_optimizer(name: str, factory: Callable, *, monotone: bool = False, doc: str = "",
                       overwrite: bool = False):
    """Make ``optimizer=name`` available to ``kp.solve``. ``factory(run, lr)`` returns a
    stepper (an object with ``step() -> StepInfo``, ``state_dict()`` and
    ``load_state_dict(d)``); ``monotone`` optimisers only accept steps that lower the
    loss (the loop then needs no divergence guard)."""
    if not isinstance(name, str) or not name or "+" in name:
        raise KanpinnError(f"an optimiser name is a non-empty string without '+', got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise KanpinnError(f"optimiser {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = _Entry(factory, bool(monotone), doc)


def registered_optimizers() -> dict:
    """name -> one-line description of every registered optimiser."""
    return {k: v.doc for k, v in _REGISTRY.items()}


def is_optimizer_spec(obj) -> bool:
    """True for what ``optimizer=`` accepts besides a name: an Optimizer subclass or
    instance, or a callable building one."""
    if isinstance(obj, torch.optim.Optimizer):
        return True
    if inspect.isclass(obj):
        return issubclass(obj, torch.optim.Optimizer)
    return callable(obj)


def optimizer_name(obj) -> str:
    """A JSON-safe name for an optimiser spec (for histories, results, checkpoints)."""
    if isinstance(obj, str):
        return obj
    cls = type(obj) if isinstance(obj, torch.optim.Optimizer) else obj
    return getattr(cls, "__name__", type(obj).__name__)


def sum_parts(comm, parts: dict) -> dict:
    """Per-term losses summed over data-parallel ranks (each holds its share)."""
    if comm.world == 1 or not parts:
        return parts
    keys = sorted(parts)
    t = comm.sum_(torch.tensor([parts[k] for k in keys], dtype=torch.float64, device=getattr(comm, "device", None)))
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def _sum_gradients(comm, opt):
    """All-reduce the gradients of every parameter the optimiser holds, flattened into one
    buffer (one collective per closure)."""
    ps = [p for g in opt.param_groups for p in g["params"]]
    for p in ps:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = comm.sum_(torch.cat([p.grad.reshape(-1) for p in ps]))
    o = 0
    for p in ps:
        p.grad.copy_(flat[o:o + p.numel()].view_as(p.grad))
        o += p.numel()


def _trainable(run):
    return [p for p in run.model.parameters() if p.requires_grad] + list(run.params.values())


class TorchStepper:
    """A ``torch.optim.Optimizer`` driven by the PINN loss closure."""
    monotone = False

    def __init__(self, opt: torch.optim.Optimizer, run, kind: str):
        self.opt, self.run, self.kind = opt, run, kind

    def step(self) -> StepInfo:
        opt, loss_fn, comm = self.opt, self.run.loss, self.run.comm
        seen = {}

        def closure():
            opt.zero_grad(set_to_none=True)
            total, parts = loss_fn.loss()
            total.backward()
            if comm.world > 1:              # every rank steps with the global loss and gradient
                _sum_gradients(comm, opt)
                total = comm.sum_(total.detach().clone())
            if "parts" not in seen:         # the state the step starts from
                seen["parts"] = sum_parts(comm, {k: float(v.detach()) for k, v in parts.items()})
            return total

        loss = float(opt.step(closure).detach())
        return StepInfo(loss, seen.get("parts", {}), True, self.kind)

    def state_dict(self):
        return self.opt.state_dict()

    def load_state_dict(self, s):
        self.opt.load_state_dict(s)


class ResidualStepper:
    """A residual-vector optimiser (``step() -> (loss, parts, accepted)``, ``lam``,
    ``state()``, ``load_state()``, as ``LevenbergMarquardt``)."""
    monotone = True

    def __init__(self, inner, run, kind: str):
        self.inner, self.run, self.kind = inner, run, kind

    def step(self) -> StepInfo:
        loss, parts, accepted = self.inner.step()
        return StepInfo(float(loss), sum_parts(self.run.comm, dict(parts)), bool(accepted), self.kind)

    @property
    def lam(self):
        return self.inner.lam

    @lam.setter
    def lam(self, v):
        self.inner.lam = float(v)

    def state_dict(self):
        return self.inner.state()

    def load_state_dict(self, s):
        self.inner.load_state(s)


def _adam(run, lr):
    return TorchStepper(torch.optim.Adam(_trainable(run), lr=lr or 1e-3), run, "adam")


def _lbfgs(run, lr):
    opt = torch.optim.LBFGS(_trainable(run), lr=lr or 1.0, max_iter=1,
                            history_size=int(run.opts["lbfgs_history"]), line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-15)
    return TorchStepper(opt, run, "lbfgs")


def _lm(run, lr):
    from .lm import LevenbergMarquardt
    params = [p for p in run.model.parameters() if p.requires_grad]
    inner = LevenbergMarquardt(run.loss, params, list(run.params.values()), lam=run.lm_lam, comm=run.comm,
                               holdout=run.holdout)
    return ResidualStepper(inner, run, "lm")


register_optimizer("adam", _adam, doc="Adam (lr default 1e-3)")
register_optimizer("lbfgs", _lbfgs, doc="L-BFGS, one strong-Wolfe iteration per step (lr default 1.0)")
register_optimizer("lm", _lm, monotone=True,
                   doc="Levenberg-Marquardt on the structured per-point Jacobian (up to ~8000 parameters)")


def _from_spec(spec, run, lr):
    params = _trainable(run)
    if isinstance(spec, torch.optim.Optimizer):
        defaults = dict(spec.defaults)
        if lr is not None:
            defaults["lr"] = lr
        opt = type(spec)(params, **defaults)
    elif inspect.isclass(spec):
        opt = spec(params, lr=lr) if lr is not None else spec(params)
    else:
        opt = spec(params)
    if not isinstance(opt, torch.optim.Optimizer):
        raise KanpinnError(f"optimizer callable returned {type(opt).__name__}, not a torch.optim.Optimizer")
    return TorchStepper(opt, run, optimizer_name(spec))


def make_stepper(kind, run, lr=None):
    """The stepper for ``kind`` (a registered name or an Optimizer spec) on ``run``."""
    if isinstance(kind, str):
        entry = _REGISTRY.get(kind)
        if entry is None:
            raise KanpinnError(f"unknown optimizer {kind!r}; registered: {', '.join(sorted(_REGISTRY))}")
        return entry.factory(run, lr)
    return _from_spec(kind, run, lr)
