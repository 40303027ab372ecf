"""Solver presets: TOML files naming a model and the options of ``kp.solve``.

    name = "kan"                      # optional
    description = "..."               # optional
    [model]
    type = "KAN"                      # or "MLP"
    widths = ["d", 10, 1]             # "d": the problem's number of input variables
    grid = 5                          # further keys: the model class's arguments
    [options]
    grids = [5, 10, 20]               # any kp.solve option
    steps = 100

The canonical presets ship inside the package (``kanpinn/presets/*.toml``, found by
:func:`preset_path` by name: ``"kan"``, ``"mlp"``, ``"kan_multkan"``, ``"kan_chebyshev"``);
the repository's ``solvers/`` folder holds identical copies.
"""
from __future__ import annotations

import copy
import inspect
import os

try:
    import tomllib
except ModuleNotFoundError:         # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from .errors import KanpinnError
from .options import SOLVE_OPTIONS, check_option, unknown_name_message

__all__ = ["load_solver", "read_solver", "solver_from_dict", "preset_path", "preset_names",
           "apply_overrides", "parse_assignment", "PRESET_DIR"]

PRESET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")
_TOP_KEYS = {"name", "description", "model", "options"}


def preset_names():
    """Names of the presets shipped with kanpinn."""
    return sorted(f[:-5] for f in os.listdir(PRESET_DIR) if f.endswith(".toml"))


def preset_path(name_or_path):
    """A preset file: an existing path as is, else a shipped preset by name (``"kan"``)."""
    p = os.fspath(name_or_path)
    if os.path.isfile(p):
        return p
    stem = os.path.basename(p)
    stem = stem[:-5] if stem.endswith(".toml") else stem
    cand = os.path.join(PRESET_DIR, stem + ".toml")
    if os.sep not in p and "/" not in p and os.path.isfile(cand):
        return cand
    raise KanpinnError(f"solver file {p} does not exist (shipped presets: {', '.join(preset_names())})")


def _optimizer_names():
    """The solver's registered optimiser names (None: the built-in list of kanpinn.options)."""
    try:
        from .solver.optimizers import registered_optimizers
    except ImportError:
        return None
    return list(registered_optimizers())


def _model_keys(kind):
    if kind == "KAN":
        from .kan import KAN as cls
    elif kind == "MLP":
        from .mlp import MLP as cls
    else:
        return None
    params = inspect.signature(cls.__init__).parameters
    return {k for k in params if k not in ("self", "dtype")} | {"type"}


def read_solver(path) -> dict:
    """The preset at ``path`` (or a shipped preset's name) as a validated dict."""
    path = preset_path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise KanpinnError(f"solver file {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise KanpinnError(f"solver file {path} is not valid TOML: not UTF-8 text ({e.reason} at byte "
                           f"{e.start})") from None
    except OSError as e:
        raise KanpinnError(f"solver file {path} cannot be read: {e}") from None
    validate(data, path)
    data.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    return data


def validate(data: dict, source: str = "solver") -> None:
    """Raise KanpinnError naming unknown keys or wrong types."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise KanpinnError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    model = data.get("model")
    if not isinstance(model, dict):
        raise KanpinnError(f"{source}: needs a [model] table with type = \"KAN\" or \"MLP\"")
    kind = model.get("type")
    keys = _model_keys(kind)
    if keys is None:
        raise KanpinnError(f"{source}: [model] type must be \"KAN\" or \"MLP\", got {kind!r}")
    bad = sorted(set(model) - keys)
    if bad:
        raise KanpinnError(f"{source}: {unknown_name_message(f'{kind} [model] key', bad[0], keys)}")
    if "widths" not in model or not isinstance(model["widths"], list):
        raise KanpinnError(f"{source}: [model] needs widths, a list such as [\"d\", 10, 1]")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise KanpinnError(f"{source}: [options] must be a table")
    for name, value in options.items():      # the same schema as kp.solve (kanpinn.options)
        if name not in SOLVE_OPTIONS:
            raise KanpinnError(f"{source}: {unknown_name_message('[options] key', name, SOLVE_OPTIONS)}")
        try:
            check_option(name, value, optimizers=_optimizer_names() if name == "optimizer" else None)
        except KanpinnError as e:
            raise KanpinnError(f"{source}: {e}") from None
    for k in ("name", "description"):
        if k in data and not isinstance(data[k], str):
            raise KanpinnError(f"{source}: {k} must be a string")


def _substitute(w, dim, n_out):
    if isinstance(w, list):
        return [_substitute(v, dim, n_out) for v in w]
    if w == "d":
        return int(dim)
    if w == "m":
        return int(n_out)
    if isinstance(w, str):
        raise KanpinnError(f"widths may hold numbers, \"d\" (input dimension) or \"m\" (outputs), got {w!r}")
    return w


def solver_from_dict(data: dict, source: str = "solver"):
    """(model_factory, options) from a preset dict; ``model_factory(dim, n_out=1)``
    builds a fresh model for a problem with ``dim`` input variables."""
    validate(data, source)
    model_cfg = copy.deepcopy(data["model"])
    options = copy.deepcopy(data.get("options", {}))

    def model_factory(dim, n_out=1):
        from .models import model_from_config
        cfg = dict(model_cfg)
        cfg["widths"] = _substitute(cfg["widths"], dim, n_out or 1)
        if cfg["type"] == "KAN" and isinstance(cfg.get("grid_range"), list):
            cfg["grid_range"] = tuple(cfg["grid_range"])
        try:
            return model_from_config(cfg)
        except KanpinnError as e:
            raise KanpinnError(f"{source}: {e}") from None

    model_factory.config = model_cfg
    model_factory.name = data.get("name", "solver")
    return model_factory, options


def load_solver(path):
    """(model_factory(dim), options dict) from a solver TOML file or a shipped preset's
    name. Unknown keys raise KanpinnError naming them."""
    data = read_solver(path)
    return solver_from_dict(data, os.fspath(path))


def parse_assignment(text: str):
    """``"key=value"`` -> (key, value) with the value read as a TOML literal (``200``,
    ``[5, 10]``, ``"lbfgs"``, ``true``); a bare word that is no TOML literal is a string."""
    if "=" not in text:
        raise KanpinnError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    if not key:
        raise KanpinnError(f"--set expects key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw and all(c.isalnum() or c in "_-+.:/" for c in raw):
            value = raw
        else:
            raise KanpinnError(f"--set {key}: cannot read {raw!r} as a value (TOML literal, e.g. 200, "
                               "[5, 10], \"text\")") from None
    return key, value


def apply_overrides(data: dict, assignments, source: str = "--set") -> dict:
    """A copy of a preset dict with ``key=value`` assignments applied: ``model.KEY`` sets a
    model key, anything else (optionally prefixed ``options.``) a solve option."""
    data = copy.deepcopy(data)
    for text in assignments or ():
        key, value = parse_assignment(text)
        if key.startswith("model."):
            data.setdefault("model", {})[key[6:]] = value
        else:
            if key.startswith("options."):
                key = key[8:]
            data.setdefault("options", {})[key] = value
    validate(data, source)
    return data
