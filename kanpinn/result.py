"""The outcome of ``kp.solve``: the trained model, its history and metrics, and the file
format that stores it.

File layout (HDF5, written with h5py; only numeric arrays and JSON strings, never a
pickle, so loading a file cannot run code)::

    /                      attrs: format = "kanpinn-result", version = 1,
                                  metrics (JSON object), options (JSON object),
                                  created (ISO time), kanpinn_version
    /model                 attrs: config (JSON, ``model.config()``)
    /model/state/<name>    one dataset per ``state_dict`` entry (numeric, native dtype;
                           names as in the state dict, e.g. ``layers.0.coef``)
    /history/<key>         1-D numeric datasets: step, loss, time, per-term losses,
                           l2_relative, ...
    /problem               attrs: name, domain (JSON, ``Domain.spec()`` or "null"),
                           variables (JSON list of the input variable names)
    /test/x                (M, d) test points, when known
    /test/u_exact          (M, m) reference solution on /test/x, when known

``Result.save`` writes a temporary file next to the target and renames it over the target
only once it is complete, so an interrupted save never destroys a good file.
``load(path)`` validates the structure and raises :class:`KanpinnError` naming the file and
what is wrong; the returned Result has ``problem = None`` (a problem is code, not data) but
keeps ``variables``, ``domain_spec``, ``test_x`` and ``test_u``.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import tempfile

import numpy as np
import torch

from .errors import KanpinnError
from .metrics import error_metrics

__all__ = ["Result", "load", "FORMAT", "VERSION"]

FORMAT = "kanpinn-result"
VERSION = 1
_CHUNK = 65536
_TEST_POINTS = 10000          # about this many test points when none are given


def _jsonable(v):
    """A JSON-safe copy of v (numpy/torch scalars -> floats, arrays -> lists, other
    objects -> their string form)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, torch.Tensor):
        return _jsonable(v.detach().cpu().numpy())
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else str(f)     # JSON has no nan/inf
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return str(v)


def _model_place(model):
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _to_numpy_2d(a, what):
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise KanpinnError(f"Result: {what} must be a 2-D array (N, k), got shape {a.shape}")
    return a


class Result:
    """What ``kp.solve`` returns (see API.md).

    Attributes: ``model`` (trained ``nn.Module``), ``problem`` (the Problem, None after
    ``load``), ``history`` (dict of 1-D numpy arrays), ``metrics`` (dict), ``options``
    (dict of the solve options), ``variables`` (input names), ``domain_spec`` (JSON dict
    of the domain), ``test_x`` (M, d) / ``test_u`` (M, m) numpy arrays of the reference
    solution on test points (None when unknown).

    ``predict(x)``: (N, d) numpy array or tensor -> (N, m) numpy array. ``history``
    entries all have one value per recorded step.

    Example (a tiny, fast solve; real runs use more steps and points):

    >>> pi = torch.pi
    >>> problem = kp.Problem(kp.Interval(0, 1),
    ...                      lambda x, u: kp.partial(u, x, 0, 2) + pi**2 * torch.sin(pi * x),
    ...                      [kp.Dirichlet(0.0)], exact=lambda x: torch.sin(pi * x))
    >>> result = kp.solve(problem, kp.KAN([1, 3, 1], grid=3, seed=0), grids=[3], steps=2,
    ...                   n_interior=20, n_boundary=2, progress=False)
    >>> result.variables
    ('x',)
    >>> result.predict(np.linspace(0, 1, 7).reshape(-1, 1)).shape
    (7, 1)
    >>> all(k in result.history for k in ("step", "loss", "time", "l2_relative"))
    True
    >>> result.history["loss"].ndim, result.history["loss"].shape == result.history["step"].shape
    (1, True)
    >>> isinstance(result.metrics["l2_relative"], float)
    True
    """

    def __init__(self, model, problem, history, metrics, options, test_x=None, test_u=None,
                 variables=None, domain_spec=None):
        self.model = model
        self.problem = problem
        self.history = {str(k): np.asarray(v if not isinstance(v, torch.Tensor) else v.detach().cpu().numpy()).reshape(-1)
                        for k, v in (history or {}).items()}
        self.metrics = dict(metrics or {})
        self.options = dict(options or {})
        domain = getattr(problem, "domain", None)
        if variables is None and domain is not None:
            variables = domain.variables
        self.variables = tuple(variables) if variables is not None else None
        if domain_spec is None and domain is not None and hasattr(domain, "spec"):
            domain_spec = domain.spec()
        if isinstance(domain_spec, str):
            domain_spec = json.loads(domain_spec)
        self.domain_spec = domain_spec
        self.test_x = _to_numpy_2d(test_x, "test_x")
        self.test_u = _to_numpy_2d(test_u, "test_u")
        if self.test_x is None and domain is not None:
            self._make_test_points(problem)

    def _make_test_points(self, problem):
        """A dense test grid on the domain, with the exact solution on it when known."""
        domain = problem.domain
        n = max(2, int(round(_TEST_POINTS ** (1.0 / domain.dim))))
        try:
            x = domain.test_points(n)
        except Exception:  # noqa: BLE001 - a domain without a test grid: leave None
            return
        self.test_x = np.asarray(x, dtype=np.float64)
        if getattr(problem, "exact", None) is not None:
            _, dtype = _model_place(self.model)
            xt = torch.as_tensor(self.test_x, dtype=dtype)
            with torch.no_grad():
                u = problem.exact_values(xt)
            self.test_u = _to_numpy_2d(u, "exact(x)")

    # ------------------------------------------------------------------ evaluation
    @property
    def name(self) -> str:
        """The problem's name (kept in the file, so also known after ``load``)."""
        return str(getattr(self, "_name", None) or getattr(self.problem, "name", None) or "result")

    def predict(self, x) -> np.ndarray:
        """Model output at x ((N, d) numpy array or tensor) as an (N, m) numpy array."""
        if isinstance(x, torch.Tensor):
            x = x.detach()
        else:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        if x.dim() == 1:
            x = x[:, None]
        device, dtype = _model_place(self.model)
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            with torch.no_grad():
                for s in range(0, x.shape[0], _CHUNK):
                    xb = x[s:s + _CHUNK].to(device=device, dtype=dtype)
                    out.append(self.model(xb).detach().cpu().numpy())
        finally:
            self.model.train(was_training)
        if not out:
            n_out = getattr(self.model, "width_out", 1)
            return np.zeros((0, n_out))
        return np.concatenate(out, 0)

    def error_metrics(self):
        """:func:`kanpinn.metrics.error_metrics` of the prediction on the test points (the
        solver's definition: ``l2_relative``, ``l2_absolute``, ``max_abs``, ...), or None
        without a reference solution."""
        if self.test_x is None or self.test_u is None:
            return None
        return error_metrics(self.predict(self.test_x), self.test_u)

    def errors(self):
        """(relative L2, max abs) of the prediction on the test points, or None; the
        relative error is NaN against a zero reference (see :mod:`kanpinn.metrics`)."""
        m = self.error_metrics()
        return None if m is None else (m["l2_relative"], m["max_abs"])

    # ------------------------------------------------------------------ files
    def save(self, path, overwrite=True):
        """Write the result to an HDF5 file (layout in the module docstring)."""
        import h5py
        path = os.fspath(path)
        if os.path.exists(path) and not overwrite:
            raise KanpinnError(f"{path} exists; pass overwrite=True to replace it")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise KanpinnError(f"cannot save {path}: the folder {folder} does not exist")
        cfg = self.model.config() if hasattr(self.model, "config") else None
        if cfg is None:
            raise KanpinnError(f"cannot save a {type(self.model).__name__}: it has no config() "
                               "(only kanpinn KAN and MLP models can be saved)")
        fd, tmp = tempfile.mkstemp(prefix=".kanpinn-", suffix=".h5.tmp", dir=folder)
        os.close(fd)
        try:
            with h5py.File(tmp, "w") as f:
                from . import __version__
                f.attrs["format"] = FORMAT
                f.attrs["version"] = VERSION
                f.attrs["kanpinn_version"] = str(__version__)
                f.attrs["created"] = datetime.datetime.now().isoformat(timespec="seconds")
                f.attrs["metrics"] = json.dumps(_jsonable(self.metrics))
                f.attrs["options"] = json.dumps(_jsonable(self.options))
                g = f.create_group("model")
                g.attrs["config"] = json.dumps(_jsonable(cfg))
                st = g.create_group("state")
                for k, v in self.model.state_dict().items():
                    st.create_dataset(k, data=v.detach().cpu().numpy())
                h = f.create_group("history")
                for k, v in self.history.items():
                    arr = np.asarray(v)
                    if arr.dtype.kind not in "biuf":
                        arr = arr.astype(np.float64)
                    h.create_dataset(k, data=arr)
                p = f.create_group("problem")
                p.attrs["name"] = self.name
                p.attrs["domain"] = json.dumps(_jsonable(self.domain_spec))
                p.attrs["variables"] = json.dumps(list(self.variables) if self.variables else [])
                t = f.create_group("test")
                if self.test_x is not None:
                    t.create_dataset("x", data=self.test_x)
                    if self.test_u is not None:
                        t.create_dataset("u_exact", data=self.test_u)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path

    def plot(self, path=None):
        """Solution, exact solution, error and loss history in one figure (PNG at path)."""
        from .plotting import plot_result
        return plot_result(self, path)

    def __repr__(self):
        l2 = self.metrics.get("l2_relative")
        l2s = f", l2_relative={l2:.3g}" if isinstance(l2, (int, float)) else ""
        return f"Result({self.name!r}, model={type(self.model).__name__}{l2s})"


# --------------------------------------------------------------------------- load

def _json_attr(obj, key, path, where):
    if key not in obj.attrs:
        raise KanpinnError(f"{path}: not a valid kanpinn result file: {where} lacks the attribute {key!r}")
    raw = obj.attrs[key]
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        return json.loads(str(raw))
    except json.JSONDecodeError as e:
        raise KanpinnError(f"{path}: attribute {key!r} of {where} is not valid JSON ({e})") from None


def _numeric(ds, path, what):
    if not hasattr(ds, "dtype") or ds.dtype.kind not in "biuf":
        raise KanpinnError(f"{path}: {what} is not a numeric dataset")
    return ds[()]


def load(path):
    """Read a result written by :meth:`Result.save`; rebuilds the model (no pickle).

    Returns a :class:`Result` whose ``problem`` is None; the model, history, metrics,
    ``variables`` and test points come from the file.

    Example:

    >>> import os, tempfile
    >>> problem = kp.Problem(kp.Interval(0, 1), lambda x, u: kp.partial(u, x, 0, 2) + 1.0,
    ...                      [kp.Dirichlet(0.0)])
    >>> result = kp.solve(problem, kp.KAN([1, 2, 1], grid=3, seed=0), grids=[3], steps=2,
    ...                   n_interior=20, n_boundary=2, progress=False)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "run.h5")
    ...     _ = result.save(path)
    ...     again = kp.load(path)
    >>> again.problem is None, again.variables
    (True, ('x',))
    >>> x = np.linspace(0, 1, 5).reshape(-1, 1)
    >>> bool(np.allclose(again.predict(x), result.predict(x)))
    True
    """
    import h5py
    from .models import model_from_config
    path = os.fspath(path)
    if not os.path.exists(path):
        raise KanpinnError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise KanpinnError(f"{path}: not a readable HDF5 file (corrupt or not a kanpinn result): {e}") from None
    try:
        with f:
            fmt = f.attrs.get("format")
            if isinstance(fmt, bytes):
                fmt = fmt.decode()
            if fmt != FORMAT:
                raise KanpinnError(f"{path}: not a kanpinn result file (format attribute is {fmt!r}, "
                                   f"expected {FORMAT!r})")
            version = int(f.attrs.get("version", 0))
            if version > VERSION:
                raise KanpinnError(f"{path}: written by a newer kanpinn (file version {version}, "
                                   f"this one reads up to {VERSION})")
            for grp in ("model", "model/state", "history", "problem"):
                if grp not in f or not isinstance(f[grp], h5py.Group):
                    raise KanpinnError(f"{path}: not a valid kanpinn result file: the group /{grp} is missing")
            metrics = _json_attr(f, "metrics", path, "/")
            options = _json_attr(f, "options", path, "/") if "options" in f.attrs else {}
            cfg = _json_attr(f["model"], "config", path, "/model")
            state = {}
            for k, ds in f["model/state"].items():
                state[k] = torch.from_numpy(np.array(_numeric(ds, path, f"/model/state/{k}")))
            history = {k: np.asarray(_numeric(ds, path, f"/history/{k}")).reshape(-1)
                       for k, ds in f["history"].items()}
            pg = f["problem"]
            name = pg.attrs.get("name", "result")
            name = name.decode() if isinstance(name, bytes) else str(name)
            domain_spec = _json_attr(pg, "domain", path, "/problem") if "domain" in pg.attrs else None
            variables = _json_attr(pg, "variables", path, "/problem") if "variables" in pg.attrs else None
            test_x = test_u = None
            if "test" in f:
                if "x" in f["test"]:
                    test_x = _numeric(f["test/x"], path, "/test/x")
                if "u_exact" in f["test"]:
                    test_u = _numeric(f["test/u_exact"], path, "/test/u_exact")
    except KanpinnError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise KanpinnError(f"{path}: corrupt kanpinn result file ({type(e).__name__}: {e})") from None

    floats = [t.dtype for t in state.values() if t.is_floating_point()]
    dtype = floats[0] if floats else None
    try:
        model = model_from_config(cfg, dtype=dtype)
    except KanpinnError as e:
        raise KanpinnError(f"{path}: cannot rebuild the model: {e}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()
        raise KanpinnError(f"{path}: the stored weights do not fit the stored model config "
                           f"({' '.join(m.strip() for m in msg[:4])})") from None
    model.eval()
    metrics = metrics if isinstance(metrics, dict) else {}
    res = Result(model, None, history, metrics, options if isinstance(options, dict) else {},
                 test_x=test_x, test_u=test_u, variables=variables or None,
                 domain_spec=domain_spec)
    res._name = name
    return res

