"""Solver checkpoints in HDF5: nested dicts/lists of tensors and plain values, no pickle.

A tree is stored as groups (dicts, and lists with attribute ``list=True``), datasets
(tensors and arrays, with attribute ``torch=True`` for tensors) and JSON attributes
(numbers, strings, booleans, None). Files are written to a temporary name and moved into
place, so a run killed while saving never destroys the previous checkpoint.
"""
from __future__ import annotations

import json
import os
import tempfile

import h5py
import numpy as np
import torch

from ..errors import KanpinnError

__all__ = ["save_checkpoint", "load_checkpoint", "FORMAT"]

FORMAT = "kanpinn-checkpoint"


def _write(group, key, obj):
    if isinstance(obj, torch.Tensor):
        ds = group.create_dataset(key, data=obj.detach().cpu().numpy())
        ds.attrs["torch"] = True
    elif isinstance(obj, np.ndarray):
        group.create_dataset(key, data=obj)
    elif isinstance(obj, dict):
        sub = group.create_group(key)
        sub.attrs["keys"] = json.dumps([str(k) for k in obj])
        sub.attrs["int_keys"] = all(isinstance(k, int) for k in obj) and bool(obj)
        for i, (k, v) in enumerate(obj.items()):
            _write(sub, f"k{i}", v)
    elif isinstance(obj, (list, tuple)):
        sub = group.create_group(key)
        sub.attrs["list"] = True
        sub.attrs["n"] = len(obj)
        for i, v in enumerate(obj):
            _write(sub, f"k{i}", v)
    elif obj is None or isinstance(obj, (bool, int, float, str, np.integer, np.floating)):
        val = obj.item() if isinstance(obj, (np.integer, np.floating)) else obj
        group.attrs[f"json:{key}"] = json.dumps(val)
    else:
        raise KanpinnError(f"cannot store a {type(obj).__name__} in a checkpoint")


def _read(group):
    if group.attrs.get("list", False):
        n = int(group.attrs["n"])
        return [_read_item(group, f"k{i}") for i in range(n)]
    keys = json.loads(group.attrs["keys"])
    int_keys = bool(group.attrs.get("int_keys", False))
    return {(int(k) if int_keys else k): _read_item(group, f"k{i}") for i, k in enumerate(keys)}


def _read_item(group, key):
    if key in group:
        item = group[key]
        if isinstance(item, h5py.Group):
            return _read(item)
        arr = item[()]
        if item.attrs.get("torch", False):
            return torch.from_numpy(np.array(arr))
        return np.array(arr)
    return json.loads(group.attrs[f"json:{key}"])


def save_checkpoint(path, tree: dict):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".h5", dir=folder)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            _write(f, "tree", tree)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path) -> dict:
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise KanpinnError(f"{path} is not a kanpinn checkpoint (format attribute "
                                   f"{f.attrs.get('format')!r}); refusing to resume from it")
            return _read(f["tree"])
    except (OSError, KeyError, ValueError) as e:
        if isinstance(e, KanpinnError):
            raise
        raise KanpinnError(f"checkpoint {path} cannot be read ({e}); move it away to start afresh") from None
