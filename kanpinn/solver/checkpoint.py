"""Solver checkpoints in HDF5: nested dicts/lists of tensors and plain values, no pickle,
and the fingerprint of the run they belong to.

A tree is stored as groups (dicts, and lists with attribute ``list=True``), datasets
(tensors and arrays, with attribute ``torch=True`` for tensors) and JSON attributes
(numbers, strings, booleans, None). Files are written to a temporary name next to the
checkpoint (``.ckpt-<hash of the checkpoint's name>-<random>.h5``) and moved into place,
so a run killed while saving never destroys the previous checkpoint; the temporary files a
killed run left behind for the same checkpoint are removed by the next save.

Resuming another run's checkpoint used to continue it silently (other problem, seed,
point or step count) or fail with a raw torch error (other model). :func:`run_fingerprint`
describes a run (problem, model config, the options that change the run) as JSON;
:func:`save_checkpoint` stores it and :func:`load_checkpoint` refuses a checkpoint whose
fingerprint differs, naming every differing field with both values
(:func:`check_fingerprint`).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import tempfile

import h5py
import numpy as np
import torch

from ..errors import KanpinnError
from ..paths import check_output_path, clean_orphans, temp_prefix

__all__ = ["save_checkpoint", "load_checkpoint", "run_fingerprint", "check_fingerprint", "FORMAT",
           "RUN_NEUTRAL_OPTIONS", "TEMP_KIND"]

FORMAT = "kanpinn-checkpoint"
TEMP_KIND = "ckpt"            # temporary files: .ckpt-<hash of the checkpoint's name>-<random>.h5
MAX_CHECKPOINT_BYTES = 4 * 2 ** 30
# options that do not change what a run computes: a resumed run may change them freely
RUN_NEUTRAL_OPTIONS = frozenset({"checkpoint", "checkpoint_every", "progress", "max_time", "target", "device"})


# --------------------------------------------------------------------------- fingerprints

def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


def _code_bytes(code) -> bytes:
    """A process-independent description of a code object (nested code included; no
    addresses, which repr() of a code object would hold)."""
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for c in code.co_consts:
        parts.append(_code_bytes(c) if inspect.iscode(c) else repr(c).encode())
    return b"\0".join(parts)


def _callable_id(fn, depth):
    """A hash of a callable's source (its code when the source cannot be read) and of the
    values it captures (closure cells, defaults), so that a changed residual, or the same
    lambda over another constant, gives another fingerprint."""
    if inspect.isclass(fn) or inspect.isbuiltin(fn) or depth > 4:
        return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
    h = hashlib.sha256()
    try:
        h.update(inspect.getsource(fn).encode())
    except (OSError, TypeError):
        pass                                      # defined in a REPL or exec'd text
    code = getattr(fn, "__code__", None)          # also tells apart two lambdas on one line
    h.update(_code_bytes(code) if code is not None else type(fn).__qualname__.encode())
    captured = [c.cell_contents for c in (getattr(fn, "__closure__", None) or ()) if _filled(c)]
    captured += list(getattr(fn, "__defaults__", None) or ())
    glb = getattr(fn, "__globals__", {})
    captured += [(name, glb[name]) for name in sorted(_global_names(code)) if name in glb
                 and not inspect.ismodule(glb[name])]          # e.g. a constant the residual reads
    h.update(json.dumps(_describe(captured, depth + 1), sort_keys=True, default=str).encode())
    return "sha256:" + h.hexdigest()[:16]


def _global_names(code) -> set:
    if code is None:
        return set()
    names = set(code.co_names)
    for c in code.co_consts:
        if inspect.iscode(c):
            names |= _global_names(c)
    return names


def _filled(cell):
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


def _describe(v, depth=0):
    """A JSON-safe description of v: plain values as they are, arrays/tensors by shape and
    a hash of their bytes, callables by a hash of their source, other objects by their
    public attributes (to a bounded depth)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else str(f)
    if isinstance(v, torch.dtype):
        return str(v).replace("torch.", "")
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        a = np.ascontiguousarray(v)
        return {"shape": list(a.shape), "dtype": str(a.dtype), "data": _digest(a.tobytes())}
    if inspect.isclass(v):
        return f"{v.__module__}.{v.__qualname__}"
    if depth > 4:
        return type(v).__qualname__
    if isinstance(v, dict):
        return {str(k): _describe(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_describe(x, depth + 1) for x in v]
    if isinstance(v, (set, frozenset)):               # iteration order varies between processes
        return sorted((_describe(x, depth + 1) for x in v), key=lambda x: json.dumps(x, sort_keys=True, default=str))
    if callable(v) and not hasattr(v, "__dict__") or inspect.isfunction(v) or inspect.ismethod(v):
        return _callable_id(v, depth)
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    public = {k: x for k, x in sorted(getattr(v, "__dict__", {}).items()) if not k.startswith("_")}
    if callable(v) and not public:
        return _callable_id(v, depth)
    return {"type": type(v).__qualname__, **{k: _describe(x, depth + 1) for k, x in public.items()}}


def run_fingerprint(problem, model, options) -> dict:
    """JSON-safe description of a run, to store in its checkpoint: the problem (name,
    domain spec, variables, a hash of the residual's and exact solution's source, each
    condition's type and settings with callables hashed and data arrays hashed, the
    unknown parameters), the model's config (widths, k, basis, grids, symbolic edges) and
    every option except :data:`RUN_NEUTRAL_OPTIONS`.

    Compute it once at the start of a solve, before anything changes the model (multi-start,
    grid extension), and pass ``options`` with the defaults filled in, so that leaving an
    option out and writing its default give the same fingerprint.

    >>> problem = kp.Problem(kp.Interval(0, 1), lambda x, u: kp.partial(u, x, 0, 2) + 1.0,
    ...                      [kp.Dirichlet(0.0)])
    >>> fp = run_fingerprint(problem, kp.KAN([1, 3, 1], seed=0), {"seed": 0, "steps": 10, "progress": True})
    >>> fp["options"], fp["model"]["widths"], fp["problem"]["conditions"][0]["type"]
    ({'seed': 0, 'steps': 10}, [1, 3, 1], 'Dirichlet')
    """
    conditions = [{"type": type(c).__name__,
                   **{k: _describe(v) for k, v in sorted(vars(c).items()) if not k.startswith("_")}}
                  for c in getattr(problem, "conditions", ()) or ()]
    domain = getattr(problem, "domain", None)
    fp = {
        "problem": {
            "name": getattr(problem, "name", None),
            "domain": domain.spec() if hasattr(domain, "spec") else type(domain).__name__,
            "variables": list(getattr(problem, "variables", None) or getattr(domain, "variables", ()) or ()),
            "residual": _describe(getattr(problem, "residual", None)),
            "exact": _describe(getattr(problem, "exact", None)),
            "parameters": _describe(getattr(problem, "parameters", None)),
            "conditions": conditions,
        },
        "model": model.config() if hasattr(model, "config") else {"type": type(model).__qualname__},
        "options": {str(k): _describe(v) for k, v in sorted(dict(options).items()) if k not in RUN_NEUTRAL_OPTIONS},
    }
    return json.loads(json.dumps(fp, default=str))     # exactly what a JSON round trip returns


def _flatten(v, prefix, out):
    if isinstance(v, dict):
        for k, x in v.items():
            _flatten(x, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
        out[f"{prefix}.length"] = len(v)
        for i, x in enumerate(v):
            _flatten(x, f"{prefix}[{i}]", out)
    else:
        out[prefix] = v
    return out


def _shown(v):
    if v is _MISSING:
        return "(absent)"
    text = json.dumps(v)
    return text if len(text) <= 80 else text[:77] + "..."


_MISSING = object()


def check_fingerprint(stored, current, path):
    """Raise :class:`KanpinnError` when the checkpoint at ``path`` (fingerprint ``stored``)
    belongs to another run than ``current``, naming each differing field with both values.

    >>> check_fingerprint({"options": {"seed": 0}}, {"options": {"seed": 1}}, "run.ckpt.h5")
    Traceback (most recent call last):
    ...
    kanpinn.errors.KanpinnError: checkpoint run.ckpt.h5 belongs to another run, so it cannot be resumed: options.seed: checkpoint 0, now 1. Remove the checkpoint (rm run.ckpt.h5) to start this run afresh, or pass another checkpoint path
    """
    path = os.fspath(path)
    advice = f"Remove the checkpoint (rm {path}) to start this run afresh, or pass another checkpoint path"
    if not isinstance(stored, dict):
        raise KanpinnError(f"checkpoint {path} does not say which run it belongs to (written by an older "
                           f"kanpinn), so it cannot be resumed safely. {advice}")
    a, b = _flatten(stored, "", {}), _flatten(current, "", {})
    diffs = [k for k in sorted(set(a) | set(b)) if a.get(k, _MISSING) != b.get(k, _MISSING)]
    if diffs:
        shown = "; ".join(f"{k}: checkpoint {_shown(a.get(k, _MISSING))}, now {_shown(b.get(k, _MISSING))}"
                          for k in diffs[:12])
        more = f" (and {len(diffs) - 12} more)" if len(diffs) > 12 else ""
        raise KanpinnError(f"checkpoint {path} belongs to another run, so it cannot be resumed: {shown}{more}. "
                           f"{advice}")


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


def _read(reader, group, where):
    if reader.attr(group, "list", where, default=False):
        n = reader.attr(group, "n", where)
        return [_read_item(reader, group, f"k{i}", where) for i in range(int(n))]
    keys = reader.json_attr(group, "keys", where)
    int_keys = bool(reader.attr(group, "int_keys", where, default=False))
    return {(int(k) if int_keys else k): _read_item(reader, group, f"k{i}", where) for i, k in enumerate(keys)}


def _read_item(reader, group, key, where):
    item = reader.child(group, key, f"{where}/{key}")
    if item is not None:
        if isinstance(item, h5py.Group):
            return _read(reader, item, f"{where}/{key}")
        arr = reader.read(item, f"{where}/{key}")
        if reader.attr(item, "torch", f"{where}/{key}", default=False):
            return torch.from_numpy(np.array(arr))
        return np.array(arr)
    return reader.json_attr(group, f"json:{key}", where)


def save_checkpoint(path, tree: dict, fingerprint=None):
    """Write ``tree`` (and the run's ``fingerprint``, see :func:`run_fingerprint`) to
    ``path`` through a temporary file; removes the orphan temporary files of ``path``."""
    path = check_output_path(path, "checkpoint", create_folder=True)
    folder = os.path.dirname(os.path.abspath(path))
    clean_orphans(path, TEMP_KIND, ".h5")
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path, TEMP_KIND), suffix=".h5", dir=folder)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            if fingerprint is not None:
                f.attrs["fingerprint"] = json.dumps(fingerprint)
            _write(f, "tree", tree)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path, fingerprint=None) -> dict:
    """The tree stored at ``path``. With ``fingerprint`` (the current run's), the stored one
    must be equal, else :class:`KanpinnError` (see :func:`check_fingerprint`)."""
    from ..h5safe import Reader, open_hdf5
    path = os.fspath(path)
    f = open_hdf5(path, "checkpoint")
    try:
        with f:
            reader = Reader(f, path, MAX_CHECKPOINT_BYTES)
            fmt = reader.attr(f, "format", "/", default=None)
            if fmt != FORMAT:
                raise KanpinnError(f"{path} is not a kanpinn checkpoint (format attribute "
                                   f"{str(fmt)[:60]!r}); refusing to resume from it")
            if fingerprint is not None:
                stored = reader.json_attr(f, "fingerprint", "/", default=None)
                check_fingerprint(stored, json.loads(json.dumps(fingerprint)), path)
            return _read(reader, reader.group(f, "tree", "/tree"), "/tree")
    except KanpinnError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise KanpinnError(f"checkpoint {path} cannot be read ({e}); move it away to start afresh") from None
