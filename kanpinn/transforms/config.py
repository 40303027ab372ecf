"""Rebuild a model wrapper from its ``config()`` (called by ``kanpinn.models.model_from_config``)."""
from __future__ import annotations

from ..errors import KanpinnError

__all__ = ["wrapper_from_config"]


def wrapper_from_config(cfg, build_inner):
    """``build_inner(inner_cfg)`` rebuilds the wrapped model (any type model_from_config knows)."""
    from .constraint import HardConstraint
    from .embedding import Embedded
    kind = cfg.get("type")
    if not isinstance(cfg.get("inner"), dict):
        raise KanpinnError(f"model config of type {kind!r} lacks its 'inner' model config")
    inner = build_inner(cfg["inner"])
    try:
        if kind == "Embedded":
            periodic = {int(k): int(v) for k, v in (cfg.get("periodic") or {}).items()}
            even = [int(j) for j in (cfg.get("even") or ())]
            return Embedded(inner, cfg["lo"], cfg["hi"], periodic, even).to(next(inner.parameters()).dtype)
        if kind == "Mirror":
            from .mirror import Mirror
            return Mirror(inner, int(cfg["col"]), float(cfg["centre"]), float(cfg["sign"]))
        factors = [tuple(f) for f in cfg["factors"]]
        return HardConstraint(inner, factors, lifting=None, lifting_spec=cfg.get("lifting") or {})
    except (KeyError, TypeError, ValueError) as e:
        raise KanpinnError(f"model config of type {kind!r} is malformed: {e!r}") from None
