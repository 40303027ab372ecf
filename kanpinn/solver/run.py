"""The state of one solve: everything the loop mutates and a checkpoint must hold."""
from __future__ import annotations

import torch

import os

from .. import metrics
from .checkpoint import save_checkpoint
from .distributed import setup as setup_comm
from .loss import Collocation, PINNLoss

__all__ = ["Run", "resolve_device", "is_kan", "resize_like", "trainable", "predict", "error_metrics"]


def resolve_device(name):
    from ..errors import KanpinnError
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None and "LOCAL_RANK" in os.environ:
        # one GPU per process under torchrun
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KanpinnError("device='cuda' was asked for but CUDA is not available; use device='auto' or 'cpu'")
    return dev


def is_kan(model):
    return hasattr(model, "extend_grid") and hasattr(model, "update_grid")


def resize_like(model, cfg):
    """Give a KAN the per-layer grid sizes of ``cfg`` (values follow from load_state_dict)."""
    if not is_kan(model) or not cfg.get("grid"):
        return
    for layer, g in zip(model.layers, cfg["grid"]):
        if layer.basis.grid != g:
            layer.refit(layer.basis.refined(int(g)))


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def predict(model, x, chunk=65536):
    with torch.no_grad():
        return torch.cat([model(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)], 0)


def error_metrics(model, test_x, test_u):
    """The test-set error metrics of ``model`` (``kanpinn.metrics``; empty without an
    exact solution)."""
    if test_u is None:
        return {}
    return metrics.error_metrics(predict(model, test_x), test_u)


def _test_set(problem, n_per_dim, dtype, device):
    d = problem.domain.dim
    if d >= 5 and not n_per_dim:
        # a tensor grid of >= 11 points per axis would be 11^5 = 161 051 points in 5-D, and
        # the test error is evaluated at every LM step (measured, Poisson 5-D auto mode: 65 %
        # of the run spent there); 2^14 quasi-random points measure the error as well
        pts = problem.domain.sample_interior(2 ** 14, "sobol", seed=20261130)
    else:
        n = n_per_dim or max(11, int(round(12000 ** (1.0 / d))))
        if d == 2 and not n_per_dim:
            n = 101                                     # the reference 101x101 grid
        pts = problem.domain.test_points(n)
    x = torch.as_tensor(pts, dtype=dtype, device=device)
    with torch.no_grad():
        u = problem.exact_values(x)
    return x, u


def _state_copy(model, params):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {k: v.detach().clone() for k, v in params.items()})


class Run:
    """The mutable state of one solve."""

    def __init__(self, problem, model, opts):
        self.problem, self.model, self.opts = problem, model, opts
        self.dtype = torch.float64 if opts["dtype"] in ("float64", torch.float64) else torch.float32
        self.device = resolve_device(opts["device"])
        if self.device.type == "cuda" and self.device.index is not None:
            torch.cuda.set_device(self.device)
        self.comm = setup_comm(self.device)
        model.to(device=self.device, dtype=self.dtype)
        self.params = {k: torch.tensor(float(v), dtype=self.dtype, device=self.device, requires_grad=True)
                       for k, v in (problem.parameters or {}).items()}
        self.colloc = Collocation(problem, opts["n_interior"], opts["n_boundary"], opts["sampler"],
                                  opts["seed"], self.dtype, self.device, self.comm)
        self.loss = PINNLoss(problem, model, self.colloc, self.params, opts["weights"])
        self.test_x, self.test_u = _test_set(problem, opts["test_points"], self.dtype, self.device)
        self.history = {}
        self.last_row = None
        self.stage, self.step_in_stage, self.global_step = 0, 0, 0
        self.train_time = 0.0
        self.opt_state = None
        self.lm_lam = 1e-3
        self.fallbacks = {}              # optimiser -> the one used instead (e.g. lm -> lbfgs)
        # () -> the PDE loss on points no step trains on (set by a hook, e.g. FreshPointGuard);
        # LM then refuses a step that multiplies it (see lm.LevenbergMarquardt's ``holdout``)
        self.holdout = None
        self.best = None                 # (loss, state copy) of the phase's best state
        self.diverged = False
        self.stop = False
        self.stop_reason = None
        self.kind = None                 # the optimiser running now
        self.notes = []
        self.hooks = None                # the HookList, set by the loop
        self.fingerprint = None          # which run a checkpoint belongs to (set by solve)

    # ------------------------------------------------------------------ states
    def state_copy(self):
        return _state_copy(self.model, self.params)

    def load_state(self, state):
        model_state, params = state
        self.model.load_state_dict(model_state)
        with torch.no_grad():
            for k, v in params.items():
                self.params[k].copy_(v)

    def note(self, msg):
        self.notes.append(msg)

    # ------------------------------------------------------------------ history
    def log(self, loss, parts):
        row = {"step": self.global_step, "loss": loss, "time": self.train_time}
        row.update({f"loss_{k}": v for k, v in parts.items()})
        errs = error_metrics(self.model, self.test_x, self.test_u)
        row.update({k: errs[k] for k in metrics.SCALAR_KEYS if k in errs})
        for k, v in self.params.items():
            row[f"param_{k}"] = float(v.detach())
        if self.opts["adaptive_weights"]:
            for k, v in self.loss.weights.items():
                row[f"weight_{k}"] = float(v)
        for k, v in row.items():
            self.history.setdefault(k, []).append(float(v))
        self.last_row = row
        return row

    # ------------------------------------------------------------------ checkpoint
    def snapshot(self):
        best = None
        if self.best is not None:
            best = {"loss": self.best[0], "model_state": self.best[1][0], "params": self.best[1][1]}
        return {
            "model_config": self.model.config() if hasattr(self.model, "config") else {},
            "model_state": {k: v for k, v in self.model.state_dict().items()},
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "stage": self.stage, "step_in_stage": self.step_in_stage, "global_step": self.global_step,
            "train_time": self.train_time, "history": {k: list(v) for k, v in self.history.items()},
            "opt_state": self.opt_state, "lm_lam": self.lm_lam,
            "colloc_round": self.colloc.round, "interior": self.colloc.all_interior().clone(),
            "weights": dict(self.loss.weights), "fallbacks": dict(self.fallbacks),
            "best": best, "hooks": self.hooks.state_dict() if self.hooks is not None else {},
        }

    def restore(self, s):
        if s.get("model_config"):
            resize_like(self.model, s["model_config"])
        state = {k: (v if isinstance(v, torch.Tensor) else torch.as_tensor(v)) for k, v in s["model_state"].items()}
        self.model.load_state_dict(state)
        self.model.to(device=self.device, dtype=self.dtype)
        with torch.no_grad():
            for k, v in s["params"].items():
                self.params[k].copy_(torch.as_tensor(v))
        self.stage, self.step_in_stage = int(s["stage"]), int(s["step_in_stage"])
        self.global_step, self.train_time = int(s["global_step"]), float(s["train_time"])
        self.history = {k: list(v) for k, v in s["history"].items()}
        self.opt_state, self.lm_lam = s["opt_state"], float(s["lm_lam"])
        self.colloc.sample(int(s["colloc_round"]), interior=torch.as_tensor(s["interior"]).cpu().numpy())
        self.loss.weights = {k: float(v) for k, v in (s.get("weights") or {}).items()}
        self.fallbacks = dict(s.get("fallbacks") or {})
        best = s.get("best")
        if best:
            to = dict(device=self.device)
            self.best = (float(best["loss"]),
                         ({k: torch.as_tensor(v).to(**to) for k, v in best["model_state"].items()},
                          {k: torch.as_tensor(v).to(**to) for k, v in best["params"].items()}))
        if self.hooks is not None:
            self.hooks.load_state_dict(s.get("hooks") or {})

    def save(self):
        """Write the checkpoint (rank 0 writes; under data parallel every rank takes
        part, since the snapshot gathers every rank's points)."""
        if self.opts["checkpoint"]:
            snap = self.snapshot()
            if self.comm.is_main:
                save_checkpoint(self.opts["checkpoint"], snap, fingerprint=self.fingerprint)
