"""numpy / torch dispatch for the reference evaluators: the same formula runs on numpy
arrays (plain evaluation) and on torch tensors (so autograd can differentiate it)."""
from __future__ import annotations

import numpy as np
import torch


def is_torch(a) -> bool:
    return isinstance(a, torch.Tensor)


def as_float64(a):
    """``a`` as float64: a torch tensor stays a tensor (keeping its graph), anything else
    becomes a numpy array."""
    if is_torch(a):
        return a.to(torch.float64)
    return np.asarray(a, dtype=np.float64)


def constant(values: np.ndarray, like):
    """A numpy constant as the array type of ``like`` (a tensor on its device, or numpy)."""
    if is_torch(like):
        values = np.asarray(values, dtype=np.float64)
        if not values.flags.writeable:            # torch wants to own writable memory
            values = values.copy()
        return torch.as_tensor(values, device=like.device)
    return values


def to_numpy(a) -> np.ndarray:
    """The values of ``a`` as a numpy array (a tensor is detached and copied to the CPU)."""
    if is_torch(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def cat(parts):
    """Concatenate 1-D pieces of one type along their axis."""
    return torch.cat(parts) if is_torch(parts[0]) else np.concatenate(parts)


def namespace(a):
    """The module whose functions (exp, sin, cos, sqrt, ...) apply to ``a``."""
    return torch if is_torch(a) else np


def max_last(a):
    """Maximum over the last axis, kept as an axis of length 1, out of any autograd graph
    (it is only a shift that cancels)."""
    if is_torch(a):
        return a.detach().amax(dim=-1, keepdim=True)
    return a.max(axis=-1, keepdims=True)
