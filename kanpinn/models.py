"""Rebuild a model from its ``config()`` dict (the inverse of ``KAN.config()`` /
``MLP.config()``), so that ``load_state_dict`` can restore the trained weights.

    cfg = model.config()                       # JSON-safe
    again = model_from_config(cfg)
    again.load_state_dict(model.state_dict())  # same predictions

A config may come from a file someone else wrote, so every field is checked (type and
range) before anything is built, and :func:`state_shapes` says which tensor shapes a config
implies without allocating them: ``kp.load`` compares those with the stored arrays and
builds a model only when they agree (a config claiming ``grid = 1e9`` next to a 5-interval
weight array is refused, not allocated). For a KAN the config holds the grid of every layer
(grids differ after extension or pruning) and the symbolic edges (``{"i_o": {"name",
"expr"}}`` per layer, expr the text of a sympy expression in ``z``, read by
:func:`kanpinn.edge_formula.parse_formula`, which evaluates nothing before checking it).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .edge_formula import parse_formula
from .errors import KanpinnError

__all__ = ["model_from_config", "check_config", "state_shapes", "parse_formula", "count_parameters"]

MAX_K = 20                   # spline order
MAX_WIDTH = 100_000          # nodes in one layer
MAX_LAYERS = 1000
MAX_NAME = 200               # characters of a symbolic edge's name
MAX_WINDOWS = 1000           # time windows of a time-marching model


def _where(path):
    return "model config" + (f" ({path})" if path else "")


def _int(v, what, lo, hi, path=""):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or int(v) != v \
            or not lo <= v <= hi:
        raise KanpinnError(f"{_where(path)}: {what} must be an integer in [{lo}, {hi}], got {str(v)[:60]!r}")
    return int(v)


def _real(v, what, lo=-math.inf, hi=math.inf, path=""):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise KanpinnError(f"{_where(path)}: {what} must be a finite number in [{lo}, {hi}], got {str(v)[:60]!r}")
    return float(v)


def _seed(cfg, path):
    """The initialisation seed a preset may give (absent from saved configs: weights follow)."""
    seed = cfg.get("seed")
    return None if seed is None else _int(seed, "'seed'", 0, 2 ** 63 - 1, path)


def _widths(cfg, path, mult_allowed):
    w = cfg.get("widths")
    if not isinstance(w, (list, tuple)) or not 2 <= len(w) <= MAX_LAYERS + 1:
        raise KanpinnError(f"{_where(path)}: 'widths' must be a list of 2 to {MAX_LAYERS + 1} layer sizes, "
                           f"got {str(w)[:80]}")
    out = []
    for i, e in enumerate(w):
        if mult_allowed and isinstance(e, (list, tuple)) and len(e) == 2:
            pair = tuple(_int(v, f"'widths' entry {i}", 0, MAX_WIDTH, path) for v in e)
        else:
            pair = (_int(e, f"'widths' entry {i}", 1, MAX_WIDTH, path), 0)
        if sum(pair) < 1 or (i == 0 and pair[1]):
            raise KanpinnError(f"{_where(path)}: 'widths' entry {i} is {e!r}; a layer needs a node, and the "
                               "input layer no multiplication nodes")
        out.append(pair)
    return out


def check_config(cfg, path="") -> dict:
    """``cfg`` checked field by field and normalised (KAN: ``grid`` as one int per layer,
    ``widths`` as (n_sum, n_mult) pairs); raises :class:`KanpinnError` naming the field.
    Informational keys it does not know are dropped. ``path``: named in messages."""
    if not isinstance(cfg, dict):
        raise KanpinnError(f"{_where(path)} must be a JSON object, got {type(cfg).__name__}")
    kind = cfg.get("type")
    if kind == "MLP":
        from .mlp import ACTIVATIONS
        act = cfg.get("activation", "tanh")
        if not isinstance(act, str) or act not in ACTIVATIONS:
            raise KanpinnError(f"{_where(path)}: 'activation' must be one of {sorted(ACTIVATIONS)}, got {str(act)[:60]!r}")
        return {"type": "MLP", "widths": [s for s, _ in _widths(cfg, path, False)], "activation": act,
                "seed": _seed(cfg, path)}
    if kind == "KAN":
        from .bases import BASES
        widths = _widths(cfg, path, True)
        n_layers = len(widths) - 1
        grid = cfg.get("grid", 5)
        grids = list(grid) if isinstance(grid, (list, tuple)) else [grid] * n_layers
        if len(grids) != n_layers:
            raise KanpinnError(f"{_where(path)}: 'grid' lists {len(grids)} grids for {n_layers} layers")
        out = {"type": "KAN", "widths": widths,
               "grid": [_int(g, "'grid' entry", 1, 2 ** 62, path) for g in grids],
               "k": _int(cfg.get("k", 3), "'k'", 0, MAX_K, path),
               "grid_eps": _real(cfg.get("grid_eps", 1.0), "'grid_eps'", 0.0, 1.0, path),
               "noise_scale": _real(cfg.get("noise_scale", 0.1), "'noise_scale'", 0.0, path=path),
               "seed": _seed(cfg, path)}
        basis = cfg.get("basis", "bspline")
        if not isinstance(basis, str) or basis not in BASES:
            raise KanpinnError(f"{_where(path)}: 'basis' must be one of {sorted(BASES)}, got {str(basis)[:60]!r}")
        out["basis"] = basis
        rng = cfg.get("grid_range", [-1.0, 1.0])
        if not isinstance(rng, (list, tuple)) or len(rng) != 2:
            raise KanpinnError(f"{_where(path)}: 'grid_range' must be [lo, hi], got {str(rng)[:60]}")
        lo, hi = (_real(v, "'grid_range' entry", path=path) for v in rng)
        if not lo < hi:
            raise KanpinnError(f"{_where(path)}: 'grid_range' needs lo < hi, got {rng}")
        out["grid_range"] = (lo, hi)
        out["symbolic"] = _symbolic(cfg.get("symbolic") or [], widths, path)
        return out
    if kind == "TimeWindows":
        return _check_windows(cfg, path)
    if isinstance(kind, str) and isinstance(cfg.get("inner"), dict):
        return dict(cfg, inner=check_config(cfg["inner"], path))     # a wrapper: checked by its builder
    raise KanpinnError(f"{_where(path)} has unknown type {str(kind)[:60]!r}; expected 'KAN' or 'MLP'")


def _check_windows(cfg, path):
    """A time-marching model (``transforms.TimeWindows``): its edges, time column and
    every window's own config."""
    from .transforms.windows import check_edges
    subs = cfg.get("windows")
    if not isinstance(subs, list) or not 1 <= len(subs) <= MAX_WINDOWS:
        raise KanpinnError(f"{_where(path)}: 'windows' must list 1 to {MAX_WINDOWS} model configs, got {str(subs)[:80]}")
    try:
        edges = check_edges(cfg.get("edges") or [], len(subs))
    except KanpinnError as e:
        raise KanpinnError(f"{_where(path)}: {e}") from None
    t_col = _int(cfg.get("t_col"), "'t_col'", 0, MAX_WIDTH, path)
    return {"type": "TimeWindows", "edges": edges, "t_col": t_col,
            "windows": [check_config(c, f"{path} window {i}".strip()) for i, c in enumerate(subs)]}


def _symbolic(symbolic, widths, path):
    n_layers = len(widths) - 1
    if not isinstance(symbolic, list) or len(symbolic) not in (0, n_layers):
        raise KanpinnError(f"{_where(path)}: 'symbolic' must list one dict per layer ({n_layers}), "
                           f"got {str(symbolic)[:80]}")
    out = []
    for li, edges in enumerate(symbolic):
        if not isinstance(edges, dict):
            raise KanpinnError(f"{_where(path)}: symbolic edges of layer {li} must be a dict, got {str(edges)[:60]}")
        n_in, n_out = sum(widths[li]), widths[li + 1][0] + 2 * widths[li + 1][1]
        checked = {}
        for key, spec in edges.items():
            parts = str(key).split("_")
            ok = len(parts) == 2 and all(p.isdigit() and len(p) < 7 for p in parts)
            i, o = (int(p) for p in parts) if ok else (-1, -1)
            if not (0 <= i < n_in and 0 <= o < n_out) or not isinstance(spec, dict) \
                    or not isinstance(spec.get("name"), str) or len(spec["name"]) > MAX_NAME:
                raise KanpinnError(f"{_where(path)}: bad symbolic edge {str(key)[:20]!r}: {str(spec)[:80]} in layer "
                                   f"{li} (edges i_o with i < {n_in}, o < {n_out}; a name of at most {MAX_NAME} "
                                   "characters and an expr)")
            try:
                checked[f"{i}_{o}"] = (spec["name"], parse_formula(spec.get("expr")))
            except KanpinnError as e:
                raise KanpinnError(f"{_where(path)}: symbolic edge {i}_{o} of layer {li}: {e}") from None
        out.append(checked)
    return out


def state_shapes(cfg, path="") -> dict:
    """The ``state_dict`` shapes (name -> tuple) of the model ``cfg`` describes, computed
    from the config alone (nothing is allocated). A wrapper's own entries are not listed,
    only its inner model's (prefixed ``inner.``)."""
    c = check_config(cfg, path)
    if c["type"] == "MLP":
        w = c["widths"]
        out = {}
        for i, (a, b) in enumerate(zip(w[:-1], w[1:])):
            out[f"linears.{i}.weight"], out[f"linears.{i}.bias"] = (b, a), (b,)
        return out
    if c["type"] == "KAN":
        out, w, k = {}, c["widths"], c["k"]
        for li, g in enumerate(c["grid"]):
            n_in, n_out = sum(w[li]), w[li + 1][0] + 2 * w[li + 1][1]
            nb = g + k if c["basis"] == "bspline" else g
            pre = f"layers.{li}."
            out[pre + "coef"] = (n_in, nb, n_out)
            for name in ("scale_base", "scale_sp", "mask"):
                out[pre + name] = (n_in, n_out)
            if c["basis"] == "bspline":
                out[pre + "basis.knots"] = (n_in, g + 2 * k + 1)
            else:
                out[pre + "basis.lo"] = out[pre + "basis.hi"] = (n_in,)
            for key in c["symbolic"][li] if c["symbolic"] else ():
                out[pre + f"symbolic.{key}.params"] = (4,)
        return out
    if c["type"] == "TimeWindows":
        return {f"windows.{i}.{k}": v for i, sub in enumerate(cfg["windows"]) for k, v in state_shapes(sub, path).items()}
    out = {"inner." + k: v for k, v in state_shapes(cfg["inner"], path).items()}
    if c["type"] == "Embedded" and isinstance(cfg.get("lo"), list):
        # its box, as buffers: listed so an Embedded inside another wrapper (auto mode's
        # HardConstraint(Embedded(KAN))) loads, whose buffers are then inner.lo / inner.hi
        out["lo"] = out["hi"] = (len(cfg["lo"]),)
    return out


def _build_kan(c, dtype):
    from .kan import KAN
    from .edge_formula import EdgeFormula
    grids = c["grid"]
    # built at the coarsest grid, then each layer refined to its own: no layer is ever
    # allocated larger than its final size
    model = KAN([[s, m] if m else s for s, m in c["widths"]], grid=min(grids), k=c["k"], basis=c["basis"],
                grid_range=c["grid_range"], grid_eps=c["grid_eps"], noise_scale=c["noise_scale"], seed=c["seed"],
                dtype=dtype)
    for layer, g in zip(model.layers, grids):
        if layer.basis.grid != g:
            layer.basis = layer.basis.refined(g)
            layer.coef = nn.Parameter(torch.zeros(layer.in_dim, layer.basis.size, layer.out_dim,
                                                  dtype=layer.coef.dtype, device=layer.coef.device))
    for li, edges in enumerate(c["symbolic"]):
        layer = model.layers[li]
        for key, (name, expr) in edges.items():
            i, o = (int(v) for v in key.split("_"))
            layer.fix_symbolic(i, o, EdgeFormula(name, expr, dtype=layer.coef.dtype))
    return model


def model_from_config(cfg: dict, dtype=None) -> nn.Module:
    """A fresh model of the architecture ``cfg`` describes (``{"type": "KAN", ...}`` or
    ``{"type": "MLP", "widths": [...], "activation": ...}``, or a wrapper of one), with
    parameters of the right shapes for ``load_state_dict``; every field is checked first
    (:func:`check_config`). ``dtype``: the floating type of its parameters (default:
    torch's default dtype)."""
    c = check_config(cfg)
    if c["type"] == "KAN":
        return _build_kan(c, dtype)
    if c["type"] == "MLP":
        from .mlp import MLP
        return MLP(c["widths"], activation=c["activation"], seed=c["seed"], dtype=dtype)
    if c["type"] == "TimeWindows":
        from .transforms.windows import TimeWindows
        subs = [model_from_config(sub, dtype) for sub in cfg["windows"]]
        return TimeWindows(subs, c["edges"], c["t_col"]).relink()
    if c["type"] in ("Embedded", "HardConstraint", "Mirror"):
        from .transforms.config import wrapper_from_config
        return wrapper_from_config(cfg, lambda inner: model_from_config(inner, dtype))
    raise KanpinnError(f"model config has unknown type {str(c['type'])[:60]!r}; expected 'KAN' or 'MLP'")


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a model."""
    n = getattr(model, "n_parameters", None)
    if isinstance(n, int):
        return n
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
