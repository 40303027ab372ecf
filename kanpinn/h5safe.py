"""Reading HDF5 files that someone else may have written: bounded in memory, never leaving
the file, never running code.

h5py alone would follow external links and soft links into other files, read external
or virtual datasets from other files, inflate a small gzip dataset into gigabytes, and
load filter plugins named by the file. A :class:`Reader` checks each object before it
touches its data:

- only hard links are followed (external and soft links are refused, not resolved);
- a dataset must be contiguous or chunked in this file (no external storage, no virtual
  dataset), numeric (bool/int/float), use only HDF5's built-in filters, and its size in
  memory (shape × item size, and its chunk's) must fit what is left of the byte budget,
  before a single byte is read; every read is charged to that budget; a compressed or
  chunked dataset above 1 MiB may not expand more than ``MAX_EXPANSION`` times;
- an attribute must be a scalar number or string (an array of variable-length strings
  could point many times at one large string);
- a group may hold at most ``max_members`` links (listing them is not free).

Every refusal is a :class:`KanpinnError` naming the file and the object.
"""
from __future__ import annotations

import json
import os
import stat

import numpy as np

from .errors import KanpinnError

__all__ = ["Reader", "open_hdf5", "DEFAULT_MAX_BYTES", "BUILTIN_FILTERS"]

DEFAULT_MAX_BYTES = 256 * 2 ** 20     # all datasets of one file, as arrays in memory
BUILTIN_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset",
                   32000: "lzf"}       # lzf is compiled into h5py, not a plugin
MAX_JSON_DEPTH = 32
MAX_EXPANSION = 1000                  # in-memory size / stored size of a compressed dataset above 1 MiB


def open_hdf5(path, what="file"):
    """An open read-only ``h5py.File`` for a regular file at ``path`` (a FIFO or device
    would block or never end); :class:`KanpinnError` when it is missing or not HDF5."""
    import h5py
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KanpinnError(f"{path}: no such file") from None
    except OSError as e:
        raise KanpinnError(f"{path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise KanpinnError(f"{path}: not a regular file (a {what} must be an HDF5 file)")
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise KanpinnError(f"{path}: not a readable HDF5 file (corrupt or not a kanpinn {what}): {e}") from None


def _depth(v, limit):
    """Nesting depth of a JSON value, stopping early past ``limit``."""
    stack, deepest = [(v, 1)], 0
    while stack:
        x, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(x, dict):
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list):
            stack.extend((y, d + 1) for y in x)
    return deepest


class Reader:
    """Checked access to one open file; ``max_bytes`` is the budget of all dataset reads.

    ``path`` is only named in messages."""

    def __init__(self, f, path, max_bytes=DEFAULT_MAX_BYTES):
        self.f, self.path, self.left = f, os.fspath(path), int(max_bytes)
        self.max_bytes = int(max_bytes)

    def fail(self, what, why):
        return KanpinnError(f"{self.path}: {what} {why}")

    # ------------------------------------------------------------------ links
    def child(self, group, name, where):
        """``group[name]`` when it is a hard link, None when absent."""
        import h5py
        try:
            link = group.get(name, getlink=True)
        except (KeyError, ValueError, OSError, TypeError) as e:
            raise self.fail(where, f"cannot be read ({e})") from None
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            kind = type(link).__name__
            target = getattr(link, "filename", None) or getattr(link, "path", "")
            raise self.fail(where, f"is a {kind} (to {target!r}); kanpinn files hold no links, and "
                                   "links are not followed")
        try:
            return group[name]
        except (KeyError, ValueError, OSError, TypeError) as e:
            raise self.fail(where, f"cannot be read ({e})") from None

    def group(self, group, name, where, required=True):
        import h5py
        g = self.child(group, name, where)
        if g is None and not required:
            return None
        if not isinstance(g, h5py.Group):
            raise self.fail(where, "is missing (not a valid kanpinn file: that group is required)")
        return g

    def names(self, group, where, max_members=10000):
        """The names of a group's links (nothing resolved), at most ``max_members``."""
        try:
            n = len(group)
        except (OSError, ValueError) as e:
            raise self.fail(where, f"cannot be listed ({e})") from None
        if n > max_members:
            raise self.fail(where, f"holds {n} entries, more than {max_members}")
        try:
            return list(group.keys())
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise self.fail(where, f"cannot be listed ({e})") from None

    def members(self, group, where, max_members=10000):
        """[(name, object)] of a group's hard links, in order."""
        return [(k, self.child(group, k, f"{where}/{k}")) for k in self.names(group, where, max_members)]

    # ------------------------------------------------------------------ attributes
    def attr(self, obj, key, where, default=KeyError):
        """A scalar attribute: str (decoded), int, float or bool; ``default`` when absent."""
        import h5py
        where = f"attribute {key!r} of {where}"
        try:
            if key not in obj.attrs:
                if default is KeyError:
                    raise self.fail(where, "is missing (not a valid kanpinn file)")
                return default
            aid = obj.attrs.get_id(key)
            shape, dt = aid.shape, aid.dtype
        except KanpinnError:
            raise
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise self.fail(where, f"cannot be read ({e})") from None
        is_str = h5py.check_string_dtype(dt) is not None or dt.kind == "S"
        if shape not in ((), (1,)) or not (is_str or dt.kind in "biuf"):
            raise self.fail(where, f"must be a scalar number or string, got shape {shape} and type {dt}")
        try:
            v = obj.attrs[key]
        except (OSError, ValueError, TypeError, UnicodeDecodeError) as e:
            raise self.fail(where, f"cannot be read ({e})") from None
        if isinstance(v, np.ndarray):
            v = v.reshape(-1)[0]
        if isinstance(v, (bytes, np.bytes_)):
            try:
                v = bytes(v).decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail(where, "is not UTF-8 text") from None
        if isinstance(v, np.generic):
            v = v.item()
        return v

    def json_attr(self, obj, key, where, default=KeyError):
        raw = self.attr(obj, key, where, default)
        if raw is default and default is not KeyError:
            return default
        if not isinstance(raw, str):
            raise self.fail(f"attribute {key!r} of {where}", f"must be JSON text, got {type(raw).__name__}")
        try:
            v = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise self.fail(f"attribute {key!r} of {where}", f"is not valid JSON ({str(e)[:120]})") from None
        if _depth(v, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise self.fail(f"attribute {key!r} of {where}", f"is nested deeper than {MAX_JSON_DEPTH} levels")
        return v

    # ------------------------------------------------------------------ datasets
    def dataset_info(self, ds, where):
        """(shape, dtype) of a dataset after checking its storage, without reading it."""
        import h5py
        if not isinstance(ds, h5py.Dataset):
            raise self.fail(where, f"must be a dataset, found a {type(ds).__name__}")
        try:
            shape, dt = ds.shape, ds.dtype
            virtual, external, chunks = ds.is_virtual, ds.external, ds.chunks
            plist = ds.id.get_create_plist()
            filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        except (OSError, ValueError, TypeError, RuntimeError) as e:
            raise self.fail(where, f"cannot be read ({e})") from None
        if virtual or external:
            raise self.fail(where, "stores its data in other files (virtual or external dataset); refused")
        unknown = [fid for fid in filters if fid not in BUILTIN_FILTERS]
        if unknown:
            raise self.fail(where, f"needs the filter plugin(s) {unknown}; only HDF5's built-in filters "
                                   f"({', '.join(BUILTIN_FILTERS.values())}) are read")
        if shape is None:
            raise self.fail(where, "is an empty (null) dataset")
        if dt.kind not in "biuf" or dt.itemsize > 8:
            raise self.fail(where, f"must be numeric (bool, int or float), got {dt}")
        need = int(np.prod(shape, dtype=object)) * dt.itemsize
        chunk = int(np.prod(chunks, dtype=object)) * dt.itemsize if chunks else 0
        if need > 2 ** 20 and (filters or chunks):
            try:
                stored = ds.id.get_storage_size()
            except (OSError, ValueError, RuntimeError):
                stored = 0
            if stored * MAX_EXPANSION < need:
                raise self.fail(where, f"would expand {stored} bytes on disk into {need / 2 ** 20:.1f} MiB "
                                       f"(more than {MAX_EXPANSION}x: a compression bomb, or data never written)")
        if max(need, chunk) > self.left:
            raise self.fail(where, f"would take {max(need, chunk) / 2 ** 20:.1f} MiB in memory (shape {shape}, "
                                   f"{dt}); the limit for this file is {self.max_bytes / 2 ** 20:.0f} MiB "
                                   f"({self.left / 2 ** 20:.1f} MiB left; load(..., max_bytes=...) raises it)")
        return shape, dt

    def read(self, ds, where, ndim=None):
        """The dataset's values as a numpy array, checked first (see the module docstring)."""
        shape, dt = self.dataset_info(ds, where)
        if ndim is not None and len(shape) not in (ndim if isinstance(ndim, tuple) else (ndim,)):
            raise self.fail(where, f"must have {ndim} dimension(s), got shape {shape}")
        self.left -= int(np.prod(shape, dtype=object)) * dt.itemsize
        try:
            arr = ds[()]
        except (OSError, ValueError, TypeError, RuntimeError) as e:
            raise self.fail(where, f"cannot be read (corrupt data: {e})") from None
        return np.asarray(arr)
