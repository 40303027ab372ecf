"""Options and model arguments checked at the door: one schema, one message format.

Every ``kp.solve`` option has one entry in :data:`SOLVE_OPTIONS`: its default, a check
that returns the normalised value or raises :class:`~kanpinn.errors.KanpinnError`, and
a line of documentation. ``kp.solve``, the command line's ``--set key=value`` and solver
TOML presets all go through :func:`validate_solve_options` / :func:`check_option`, so a
bad value is refused before any work, with one message format::

    solve option 'lr': expected a finite number > 0, or None, got '0.1' (a string; write it without quotes)

Adding an option is one entry in :data:`SOLVE_OPTIONS`. The KAN and MLP constructors use
:func:`check_kan_arguments` / :func:`check_mlp_arguments` the same way. Model ``dtype``
accepts a torch dtype or its name, ``"float32"`` / ``"float64"`` (what TOML presets and
JSON configs can spell), and nothing else: the jets and the solver assume real floats.

This module depends only on :mod:`kanpinn.errors` and torch, so every layer may use it.
"""
from __future__ import annotations

import difflib
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .errors import KanpinnError

__all__ = ["Spec", "SOLVE_OPTIONS", "OPTIMIZERS", "solve_defaults", "validate_solve_options",
           "check_option", "unknown_name_message", "check_kan_arguments", "check_mlp_arguments",
           "check_choice", "model_dtype"]

OPTIMIZERS = ("auto", "lm", "lbfgs", "adam", "adam+lbfgs")
SAMPLERS = ("sobol", "uniform", "lhs", "grid")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEVICE_TYPES = ("cpu", "cuda", "mps")
RESAMPLE_MODES = ("uniform", "rad")


# --------------------------------------------------------------------------- messages

def _shown(value) -> str:
    """The value as the user wrote it, with a hint where its type is the likely mistake."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    if isinstance(value, str):
        try:
            float(value)
            return f"{text} (a string; write it without quotes)"
        except ValueError:
            return text
    if isinstance(value, bool):
        return f"{text} (a bool)"
    if not isinstance(value, (numbers.Number, type(None), list, tuple, dict)):
        return f"{text} (a {type(value).__name__})"
    return text


def _refuse(owner: str, name: str, value, allowed: str, note: str = ""):
    raise KanpinnError(f"{owner} {name!r}: expected {allowed}, got {_shown(value)}{note}")


def unknown_name_message(owner: str, name: str, known) -> str:
    """'unknown X 'nam'; did you mean 'name'? known: ...' (difflib suggestion)."""
    near = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"unknown {owner} {name!r}{hint} (known: {', '.join(sorted(known))})"


# --------------------------------------------------------------------------- value kinds

def _int_or_none(v):
    """int(v) for a real integer (numpy ints too; bools are not numbers here), else None."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        return None
    return int(v)


def _real_or_none(v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    return float(v)


def _bound_text(lo, hi, lo_open=False, hi_open=False) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return " and ".join(parts)


def integer(lo=None, hi=None, optional=False, text=None):
    """Check: an integer in [lo, hi] (bools and floats such as 2.5 are refused); ``text``
    replaces the generated description of the range."""
    allowed = text or ("an integer" + (f" {_bound_text(lo, hi)}" if lo is not None or hi is not None else ""))
    allowed += ", or None" if optional else ""

    def check(owner, name, v):
        if v is None and optional:
            return None
        i = _int_or_none(v)
        if i is None or (lo is not None and i < lo) or (hi is not None and i > hi):
            _refuse(owner, name, v, allowed)
        return i
    check.allowed = allowed
    return check


def real(lo=None, hi=None, lo_open=False, hi_open=False, optional=False):
    """Check: a finite number in the given range (NaN and inf are refused)."""
    bounds = _bound_text(lo, hi, lo_open, hi_open)
    allowed = "a finite number" + (f" {bounds}" if bounds else "") + (", or None" if optional else "")

    def check(owner, name, v):
        if v is None and optional:
            return None
        f = _real_or_none(v)
        if (f is None or not math.isfinite(f)
                or (lo is not None and (f <= lo if lo_open else f < lo))
                or (hi is not None and (f >= hi if hi_open else f > hi))):
            _refuse(owner, name, v, allowed)
        return f
    check.allowed = allowed
    return check


def flag():
    """Check: True or False."""
    def check(owner, name, v):
        if not isinstance(v, bool):
            if type(v).__name__ == "bool_":            # numpy.bool_
                return bool(v)
            _refuse(owner, name, v, "True or False")
        return v
    check.allowed = "True or False"
    return check


def choice(*choices, optional=False):
    """Check: one of the given strings."""
    allowed = "one of " + ", ".join(repr(c) for c in choices) + (", or None" if optional else "")

    def check(owner, name, v):
        if v is None and optional:
            return None
        if not isinstance(v, str) or v not in choices:
            near = difflib.get_close_matches(v, choices, n=1, cutoff=0.6) if isinstance(v, str) else []
            _refuse(owner, name, v, allowed, f"; did you mean {near[0]!r}?" if near else "")
        return v
    check.allowed = allowed
    return check


def check_choice(owner: str, name: str, value, choices) -> str:
    """One string out of ``choices`` (any iterable of str), with a 'did you mean'."""
    return choice(*sorted(choices))(owner, name, value)


def _path(owner, name, v):
    """A file path (str or os.PathLike). Whether it can be written is checked by doing
    (kanpinn.paths.check_output_path, which may create the folder), not here."""
    if v is None:
        return None
    if not isinstance(v, (str, os.PathLike)) or not os.fspath(v):
        _refuse(owner, name, v, "a file path (str), or None")
    p = os.fspath(v)
    if os.path.isdir(p):
        _refuse(owner, name, v, "a file path, not a folder")
    return p


_path.allowed = "a file path, or None"


def _grids(owner, name, v):
    allowed = "a list of strictly increasing grid sizes (integers >= 1) such as [5, 10, 20], or None"
    if v is None:
        return None
    if _int_or_none(v) is not None:
        _refuse(owner, name, v, allowed, f"; for a single stage write [{v}]")
    if not isinstance(v, (list, tuple)) or not v:
        _refuse(owner, name, v, allowed)
    out = []
    for i, g in enumerate(v):
        gi = _int_or_none(g)
        if gi is None or gi < 1:
            _refuse(owner, name, v, allowed, f"; entry {i} is {g!r}")
        if out and gi <= out[-1]:
            _refuse(owner, name, v, allowed, f"; {gi} follows {out[-1]} (grids only grow: extend_grid refines)")
        out.append(gi)
    return out


_grids.allowed = "a list of strictly increasing integers >= 1, or None"


def _windows(owner, name, v):
    """Time-marching (kanpinn.solver.marching): None (auto mode decides), n equal windows
    (1: off), or the window edges in time; the edges' range is checked against the problem."""
    allowed = ("None, an integer n >= 1 (n equal time windows; 1 = one window, no marching) or a list "
               "of at least two strictly increasing times (the window edges, from t0 to t1)")
    if v is None:
        return None
    n = _int_or_none(v)
    if n is not None:
        if n < 1:
            _refuse(owner, name, v, allowed)
        return n
    if not isinstance(v, (list, tuple)) or len(v) < 2:
        _refuse(owner, name, v, allowed)
    out = []
    for i, e in enumerate(v):
        f = _real_or_none(e)
        if f is None or not math.isfinite(f):
            _refuse(owner, name, v, allowed, f"; entry {i} is {e!r}")
        if out and not f > out[-1]:
            _refuse(owner, name, v, allowed, f"; {f:g} follows {out[-1]:g} (edges must increase)")
        out.append(f)
    return out


_windows.allowed = "None, an integer >= 1, or a list of strictly increasing times"


def _weights(owner, name, v):
    allowed = "a dict term -> finite weight >= 0 (terms: 'pde' and the condition names), or None"
    if v is None:
        return None
    if not isinstance(v, dict):
        _refuse(owner, name, v, allowed)
    out = {}
    for key, w in v.items():
        f = _real_or_none(w)
        if not isinstance(key, str) or f is None or not math.isfinite(f) or f < 0:
            _refuse(owner, name, v, allowed, f"; entry {key!r}: {w!r}")
        out[key] = f
    return out


_weights.allowed = "a dict term -> finite number >= 0, or None"


def _schedule(fields: dict, allowed: str, true_ok: bool):
    """Check for a periodic schedule: False/None (off), an integer k (every k steps), a
    dict of the given fields (name -> check), and True (the defaults) where ``true_ok``."""

    def check(owner, name, v):
        if v is None or v is False:
            return v
        if v is True:
            if not true_ok:
                _refuse(owner, name, v, allowed)
            return True
        every = _int_or_none(v)
        if every is not None:
            if every < 1:
                _refuse(owner, name, v, allowed)
            return {"every": every}
        if not isinstance(v, dict):
            _refuse(owner, name, v, allowed)
        out = {}
        for key, val in v.items():
            if key not in fields:
                raise KanpinnError(f"{owner} {name!r}: {unknown_name_message('key', key, fields)}")
            out[key] = fields[key](owner, f"{name}.{key}", val)
        return out
    check.allowed = allowed
    return check


def _device(owner, name, v):
    allowed = "'auto', 'cpu', 'cuda', 'cuda:N' (N a GPU index), 'mps' or a torch.device"
    if isinstance(v, torch.device):
        return v
    if not isinstance(v, str):
        _refuse(owner, name, v, allowed)
    if v == "auto":
        return v
    try:
        dev = torch.device(v)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        hint = "; did you mean 'cuda'?" if v.lower().startswith("gpu") else ""
        _refuse(owner, name, v, allowed, hint)
    return v


_device.allowed = "'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device"


def _dtype(owner, name, v):
    if v in (torch.float32, torch.float64):
        return v
    if isinstance(v, str) and v in DTYPES:
        return v
    _refuse(owner, name, v, "'float32' or 'float64' (or torch.float32 / torch.float64)")


_dtype.allowed = "'float32' or 'float64'"


def _optimizer_check(names):
    """Check for ``optimizer``: a name out of ``names``, two of them joined by '+'
    ('adam+lbfgs'), or what torch offers: an Optimizer subclass or instance, or a
    callable building one (``params -> Optimizer``)."""
    names = tuple(names)
    plain = [n for n in names if n != "auto"]
    allowed = ("one of " + ", ".join(repr(n) for n in names) + ", two joined by '+' (e.g. 'adam+lbfgs'), "
               "or a torch.optim.Optimizer class, instance or factory")

    def check(owner, name, v):
        if isinstance(v, str):
            parts = v.split("+")
            if v in names or (len(parts) == 2 and all(p in plain for p in parts)):
                return v
            near = difflib.get_close_matches(v, names, n=1, cutoff=0.6)
            _refuse(owner, name, v, allowed, f"; did you mean {near[0]!r}?" if near else "")
        if isinstance(v, torch.optim.Optimizer) or (isinstance(v, type) and issubclass(v, torch.optim.Optimizer)):
            return v
        if callable(v) and not isinstance(v, type):
            return v
        _refuse(owner, name, v, allowed)
    check.allowed = allowed
    return check


def _hooks(owner, name, v):
    if v is None:
        return None
    if not isinstance(v, (list, tuple)) or any(h is None or isinstance(h, (str, numbers.Number)) for h in v):
        _refuse(owner, name, v, "None or a list of hook objects (see kanpinn.solver.hooks)")
    return list(v)


_hooks.allowed = "None or a list of hook objects"


# --------------------------------------------------------------------------- the schema

@dataclass(frozen=True)
class Spec:
    """One option: its default, its check ``(owner, name, value) -> value``, its doc."""
    default: Any
    check: Callable
    doc: str

    @property
    def allowed(self) -> str:
        return getattr(self.check, "allowed", "")


_RESAMPLE = _schedule({"every": integer(lo=1), "mode": choice(*RESAMPLE_MODES),
                       "k": real(lo=0), "c": real(lo=0)},
                      "None, an integer k >= 1 (new points every k steps) or a dict with "
                      "'every' (>= 1), 'mode' ('uniform' or 'rad'), 'k' and 'c' (>= 0)", true_ok=False)
_ADAPTIVE = _schedule({"every": integer(lo=1), "alpha": real(lo=0, hi=1, lo_open=True)},
                      "False, True, an integer k >= 1 (every k steps) or a dict with "
                      "'every' (>= 1) and 'alpha' (in (0, 1])", true_ok=True)

SOLVE_OPTIONS: dict[str, Spec] = {
    "grids": Spec(None, _grids, "KAN grid sizes, one training stage each (KAN only)"),
    "steps": Spec(100, integer(lo=0), "optimiser steps per stage"),
    "optimizer": Spec("auto", _optimizer_check(OPTIMIZERS),
                      "'auto' (LM up to 5000 parameters, else adam+lbfgs), 'lm', 'lbfgs', 'adam', "
                      "'adam+lbfgs', a registered name, or a torch.optim.Optimizer class/instance/factory"),
    "lr": Spec(None, real(lo=0, lo_open=True, optional=True), "learning rate (None: the optimiser's default)"),
    "adam_steps": Spec(None, integer(lo=0, optional=True), "Adam steps before L-BFGS with 'adam+lbfgs'"),
    "n_interior": Spec(2000, integer(lo=1), "interior collocation points"),
    "n_boundary": Spec(400, integer(lo=1), "points per condition"),
    "sampler": Spec("sobol", choice(*SAMPLERS), "how collocation points are drawn"),
    "resample": Spec(None, _RESAMPLE, "fresh collocation points on a schedule (uniform or RAD)"),
    "device": Spec("auto", _device, "where to train ('auto' = CUDA when present)"),
    "dtype": Spec("float64", _dtype, "floating-point precision of the training"),
    "seed": Spec(0, integer(lo=0, hi=2**63 - 1, optional=True, text="an integer in [0, 2**63)"),
                 "seed of the sampling and initialisation"),
    "checkpoint": Spec(None, _path, "checkpoint file (resumes when it exists)"),
    "checkpoint_every": Spec(50, integer(lo=1), "steps between checkpoints"),
    "progress": Spec(True, flag(), "show a progress bar"),
    "weights": Spec(None, _weights, "loss weight per term ('pde' and the condition names)"),
    "grid_update": Spec(True, flag(), "move the KAN grids to the collocation points at each stage"),
    "log_every": Spec(None, integer(lo=1, optional=True), "steps between history rows"),
    "test_points": Spec(None, integer(lo=2, optional=True), "test points per dimension"),
    "max_time": Spec(None, real(lo=0, lo_open=True, optional=True), "seconds of training at most"),
    "target": Spec(None, real(lo=0, lo_open=True, optional=True), "stop at this relative L2 error"),
    "lbfgs_history": Spec(50, integer(lo=1), "L-BFGS history size"),
    "lm_cg_products": Spec("auto", choice("auto", "structured", "autograd", "records"),
                           "'lm-cg' Jacobian products: the stored structured J ('auto': when the layers' "
                           "rule covers the residual), or with J never formed: the KAN layers' records "
                           "('records') or autograd J·v / Jᵀu ('autograd')"),
    "starts": Spec(1, integer(lo=1), "random initialisations tried on the first grid"),
    "start_steps": Spec(20, integer(lo=1), "steps per multi-start trial"),
    "restarts": Spec(0, integer(lo=0), "with starts > 1: rounds of new starts while the loss stalls at "
                                       "the last grid refinement (the lowest final loss is kept)"),
    "adaptive_weights": Spec(False, _ADAPTIVE, "learning-rate annealing of the condition weights"),
    "hooks": Spec(None, _hooks, "objects called around each training step"),
    "windows": Spec(None, _windows, "time-marching: n time windows solved one after another (1: off), "
                                    "or their edges; None lets auto mode decide"),
}


def solve_defaults() -> dict:
    """name -> default of every solve option (a fresh dict)."""
    return {name: spec.default for name, spec in SOLVE_OPTIONS.items()}


def check_option(name: str, value, owner: str = "solve option", optimizers=None):
    """The normalised value of one solve option, or a KanpinnError naming it, the value
    given and what is allowed (unknown names get a 'did you mean')."""
    if name not in SOLVE_OPTIONS:
        raise KanpinnError(unknown_name_message(owner, name, SOLVE_OPTIONS))
    if name == "optimizer" and optimizers is not None:
        return _optimizer_check(("auto", *(n for n in optimizers if n != "auto")))(owner, name, value)
    return SOLVE_OPTIONS[name].check(owner, name, value)


def validate_solve_options(options: dict, optimizers=None) -> dict:
    """Every option checked, the defaults filled in: the dict ``kp.solve`` runs with.

    ``optimizers`` (names, e.g. the keys of the solver's optimiser registry) replaces the
    built-in list of optimiser names; "auto" is always allowed.

    >>> opts = validate_solve_options({"grids": (5, 10), "lr": 0.1})
    >>> opts["grids"], opts["lr"], opts["steps"]
    ([5, 10], 0.1, 100)
    >>> validate_solve_options({"stpes": 5})
    Traceback (most recent call last):
    ...
    kanpinn.errors.KanpinnError: unknown solve option 'stpes'; did you mean 'steps'? (known: ...)
    """
    if not isinstance(options, dict):
        raise KanpinnError(f"solve options must be a dict name -> value, got {type(options).__name__}")
    for name in options:
        if name not in SOLVE_OPTIONS:
            raise KanpinnError(unknown_name_message("solve option", name, SOLVE_OPTIONS))
    out = solve_defaults()
    for name, value in options.items():
        out[name] = check_option(name, value, optimizers=optimizers)
    return out


# --------------------------------------------------------------------------- models

def model_dtype(owner: str, value):
    """A model's ``dtype`` argument as a torch dtype (None stays None): torch.float32 /
    torch.float64 or their names 'float32' / 'float64'."""
    if value is None:
        return None
    if isinstance(value, str) and value in DTYPES:
        return DTYPES[value]
    if value in (torch.float32, torch.float64):
        return value
    _refuse(owner, "dtype", value, "None, 'float32', 'float64', torch.float32 or torch.float64")


_SEED = integer(lo=0, hi=2**63 - 1, optional=True, text="an integer in [0, 2**63)")


def _kan_widths(owner, v):
    allowed = ("a list of at least two layer sizes, each an integer >= 1 or a pair "
               "[n_sum, n_mult], e.g. [2, 10, 1] or [2, [0, 1], 1]")
    if not isinstance(v, (list, tuple)) or len(v) < 2:
        _refuse(owner, "widths", v, allowed)
    out = []
    for i, w in enumerate(v):
        if isinstance(w, (list, tuple)):
            pair = [_int_or_none(c) for c in w]
            if len(w) != 2 or None in pair or min(pair) < 0:
                _refuse(owner, "widths", v, allowed, f"; entry {i} is {w!r}")
            out.append(pair)
        else:
            wi = _int_or_none(w)
            if wi is None or wi < 1:
                _refuse(owner, "widths", v, allowed, f"; entry {i} is {w!r}")
            out.append(wi)
    return out


def _grid_range(owner, v):
    allowed = "a pair (lo, hi) of finite numbers with lo < hi, e.g. (-1, 1)"
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        _refuse(owner, "grid_range", v, allowed)
    try:
        lo, hi = (torch.as_tensor(e, dtype=torch.float64) for e in v)
    except (TypeError, ValueError, RuntimeError):
        _refuse(owner, "grid_range", v, allowed)
    if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())) or not bool((hi > lo).all()):
        _refuse(owner, "grid_range", v, allowed)
    return v


def check_kan_arguments(widths, grid, k, basis, grid_range, grid_eps, noise_scale, seed, dtype,
                        bases) -> dict:
    """The KAN constructor's arguments, checked and normalised (dtype as a torch dtype);
    ``bases``: the names of the known bases."""
    owner = "KAN argument"
    return {
        "widths": _kan_widths(owner, widths),
        "grid": integer(lo=1)(owner, "grid", grid),
        "k": integer(lo=0)(owner, "k", k),
        "basis": check_choice(owner, "basis", basis, bases),
        "grid_range": _grid_range(owner, grid_range),
        "grid_eps": real(lo=0, hi=1)(owner, "grid_eps", grid_eps),
        "noise_scale": real(lo=0)(owner, "noise_scale", noise_scale),
        "seed": _SEED(owner, "seed", seed),
        "dtype": model_dtype(owner, dtype),
    }


def check_mlp_arguments(widths, activation, seed, dtype, activations) -> dict:
    """The MLP constructor's arguments, checked and normalised (dtype as a torch dtype)."""
    owner = "MLP argument"
    allowed = "a list of at least two layer sizes, each an integer >= 1, e.g. [2, 50, 50, 1]"
    if not isinstance(widths, (list, tuple)) or len(widths) < 2:
        _refuse(owner, "widths", widths, allowed)
    sizes = []
    for i, w in enumerate(widths):
        wi = _int_or_none(w)
        if wi is None or wi < 1:
            _refuse(owner, "widths", widths, allowed, f"; entry {i} is {w!r}")
        sizes.append(wi)
    return {
        "widths": sizes,
        "activation": check_choice(owner, "activation", activation, activations),
        "seed": _SEED(owner, "seed", seed),
        "dtype": model_dtype(owner, dtype),
    }
