"""Rebuild a model from its ``config()`` dict (the inverse of ``KAN.config()`` /
``MLP.config()``), so that ``load_state_dict`` can restore the trained weights.

    cfg = model.config()                       # JSON-safe
    again = model_from_config(cfg)
    again.load_state_dict(model.state_dict())  # same predictions

For a KAN the config holds the grid of every layer (grids differ after extension or
pruning) and the symbolic edges (``{"i_o": {"name", "expr"}}`` per layer, expr a sympy
string in ``z``). Symbolic formulas are parsed without evaluating arbitrary code: the
string may only hold numbers, operators, parentheses, ``z`` and known function/constant
names; anything else is refused with a :class:`KanpinnError`.
"""
from __future__ import annotations

import inspect
import re

import sympy as sp
import torch
from torch import nn

from .errors import KanpinnError

__all__ = ["model_from_config", "parse_formula", "count_parameters"]

# names a symbolic edge formula may use (sympy spellings)
_FUNCTIONS = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "exp": sp.exp, "log": sp.log,
    "sqrt": sp.sqrt, "tanh": sp.tanh, "sinh": sp.sinh, "cosh": sp.cosh, "atan": sp.atan,
    "asin": sp.asin, "acos": sp.acos, "Abs": sp.Abs, "sign": sp.sign, "erf": sp.erf,
    "sec": sp.sec, "csc": sp.csc, "cot": sp.cot, "Heaviside": sp.Heaviside,
}
_CONSTANTS = {"pi": sp.pi, "E": sp.E}
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|([A-Za-z_]\w*)|(\*\*|[-+*/(),^]))")


def parse_formula(text: str) -> sp.Expr:
    """A sympy expression in ``z`` from its string form, refusing anything but numbers,
    ``+ - * / ** ^ ( ) ,``, the symbol ``z``, ``pi``, ``E`` and known function names."""
    if not isinstance(text, str) or not text.strip():
        raise KanpinnError(f"symbolic edge formula must be a non-empty string, got {text!r}")
    if len(text) > 2000:
        raise KanpinnError(f"symbolic edge formula is too long ({len(text)} characters)")
    pos, names = 0, set()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise KanpinnError(f"symbolic edge formula {text!r} has a character not allowed at position {pos}: "
                               f"{text[pos]!r}")
        if m.group(2):
            names.add(m.group(2))
        pos = m.end()
    bad = sorted(n for n in names if n != "z" and n not in _FUNCTIONS and n not in _CONSTANTS)
    if bad:
        raise KanpinnError(f"symbolic edge formula {text!r} uses unknown names {bad}; allowed: z, "
                           f"{', '.join(sorted(_CONSTANTS))}, {', '.join(sorted(_FUNCTIONS))}")
    from sympy.parsing.sympy_parser import parse_expr, standard_transformations, convert_xor
    glb = {"__builtins__": {}, "Integer": sp.Integer, "Float": sp.Float, "Rational": sp.Rational,
           "Symbol": sp.Symbol, **_FUNCTIONS, **_CONSTANTS}
    try:
        expr = parse_expr(text, local_dict={"z": sp.Symbol("z")}, global_dict=glb,
                          transformations=standard_transformations + (convert_xor,))
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad formula
        raise KanpinnError(f"symbolic edge formula {text!r} cannot be parsed: {e}") from None
    if not isinstance(expr, sp.Expr) or not expr.free_symbols <= {sp.Symbol("z")}:
        raise KanpinnError(f"symbolic edge formula {text!r} is not an expression of z")
    return expr


def _int(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise KanpinnError(f"model config: {what} must be an integer, got {v!r}")
    return int(v)


def _kwargs_for(cls, cfg, skip):
    """The entries of cfg that cls.__init__ accepts (extra informational keys are ignored)."""
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in cfg.items() if k in params and k not in skip}


def _build_kan(cfg, dtype):
    from .kan import KAN
    from .edge_formula import EdgeFormula
    if "widths" not in cfg:
        raise KanpinnError("model config of type 'KAN' lacks 'widths'")
    grids = cfg.get("grid", 5)
    n_layers = len(cfg["widths"]) - 1
    if isinstance(grids, (list, tuple)):
        if len(grids) != n_layers:
            raise KanpinnError(f"model config: 'grid' lists {len(grids)} grids for {n_layers} layers")
        grids = [_int(g, "grid") for g in grids]
    else:
        grids = [_int(grids, "grid")] * max(n_layers, 1)
    kw = _kwargs_for(KAN, cfg, {"self", "widths", "grid", "dtype", "type", "symbolic"})
    if "k" in kw:
        kw["k"] = _int(kw["k"], "k")
    if "grid_range" in kw:
        kw["grid_range"] = tuple(kw["grid_range"])
    model = KAN(cfg["widths"], grid=grids[0], dtype=dtype, **kw)
    for layer, g in zip(model.layers, grids):
        if layer.basis.grid != g:
            layer.basis = layer.basis.refined(g)
            layer.coef = nn.Parameter(torch.zeros(layer.in_dim, layer.basis.size, layer.out_dim,
                                                  dtype=layer.coef.dtype, device=layer.coef.device))
    symbolic = cfg.get("symbolic") or []
    if not isinstance(symbolic, (list, tuple)) or len(symbolic) not in (0, len(model.layers)):
        raise KanpinnError(f"model config: 'symbolic' must list one dict per layer ({len(model.layers)}), "
                           f"got {symbolic!r}")
    for li, edges in enumerate(symbolic):
        if not isinstance(edges, dict):
            raise KanpinnError(f"model config: symbolic edges of layer {li} must be a dict, got {edges!r}")
        layer = model.layers[li]
        for key, spec in edges.items():
            try:
                i, o = (int(v) for v in str(key).split("_"))
                name, text = str(spec["name"]), spec["expr"]
            except (ValueError, KeyError, TypeError):
                raise KanpinnError(f"model config: bad symbolic edge {key!r}: {spec!r} in layer {li}") from None
            layer.fix_symbolic(i, o, EdgeFormula(name, parse_formula(text), dtype=layer.coef.dtype))
    return model


def model_from_config(cfg: dict, dtype=None) -> nn.Module:
    """A fresh model of the architecture ``cfg`` describes (``{"type": "KAN", ...}`` or
    ``{"type": "MLP", "widths": [...], "activation": ...}``), with parameters of the
    right shapes for ``load_state_dict``. ``dtype``: the floating type of its parameters
    (default: torch's default dtype)."""
    if not isinstance(cfg, dict):
        raise KanpinnError(f"model config must be a dict, got {type(cfg).__name__}")
    kind = cfg.get("type")
    if kind == "KAN":
        return _build_kan(cfg, dtype)
    if kind == "MLP":
        from .mlp import MLP
        if "widths" not in cfg:
            raise KanpinnError("model config of type 'MLP' lacks 'widths'")
        kw = _kwargs_for(MLP, cfg, {"self", "widths", "dtype", "type"})
        return MLP(cfg["widths"], dtype=dtype, **kw)
    raise KanpinnError(f"model config has unknown type {kind!r}; expected 'KAN' or 'MLP'")


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a model."""
    n = getattr(model, "n_parameters", None)
    if isinstance(n, int):
        return n
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
