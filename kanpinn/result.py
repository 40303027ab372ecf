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
from .metrics import as_columns, error_metrics
from .paths import check_output_path, clean_orphans, temp_prefix

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


def _nonfinite_back(v):
    """Undo ``_jsonable``'s spelling of nan/inf as strings (JSON has no such numbers), so
    that a NaN metric reads back as the float NaN, not as the text "nan"."""
    if isinstance(v, dict):
        return {k: _nonfinite_back(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_nonfinite_back(x) for x in v]
    return float(v) if v in ("nan", "inf", "-inf") else v


def _model_place(model):
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _to_numpy_2d(a, what):
    return None if a is None else as_columns(a, what, owner="Result")


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
        """Write the result to an HDF5 file (layout in the module docstring). Under
        torchrun only rank 0 writes (every rank holds the same result)."""
        import h5py

        from .solver.distributed import is_main_process
        path = os.fspath(path)
        if not is_main_process():
            return
        if os.path.exists(path) and not overwrite:
            raise KanpinnError(f"{path} exists; pass overwrite=True to replace it")
        check_output_path(path, "result file")
        folder = os.path.dirname(os.path.abspath(path))
        cfg = self.model.config() if hasattr(self.model, "config") else None
        if cfg is None:
            raise KanpinnError(f"cannot save a {type(self.model).__name__}: it has no config() "
                               "(only kanpinn KAN and MLP models can be saved)")
        clean_orphans(path, "kanpinn", ".h5.tmp")        # left by a process killed while saving
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path, "kanpinn"), suffix=".h5.tmp", dir=folder)
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

def _implied_state(reader, names, cfg):
    """The state shapes ``cfg`` implies, after checking that the stored tensor names are
    those (a wrapper may add a few of its own): nothing is read or allocated yet."""
    from .models import state_shapes
    try:
        implied = state_shapes(cfg, "/model attribute 'config'")
    except KanpinnError as e:
        raise KanpinnError(f"{reader.path}: {e}") from None
    missing = sorted(set(implied) - set(names))
    if missing:
        raise reader.fail("/model/state", f"lacks {len(missing)} tensor(s) the model config needs: "
                                          f"{', '.join(missing[:5])}")
    extra = sorted(set(names) - set(implied))
    wrapper = cfg.get("type") not in ("KAN", "MLP")
    if extra and (not wrapper or len(extra) > 100 or any(k.startswith("inner.") for k in extra)):
        raise reader.fail("/model/state", f"holds {len(extra)} tensor(s) the model config does not have: "
                                          f"{', '.join(extra[:5])}")
    return implied


def _check_state(reader, stored, implied):
    """The stored shapes and dtypes against ``implied``; returns the floating dtype."""
    for name, shape in implied.items():
        if tuple(stored[name][0]) != tuple(shape):
            raise reader.fail(f"/model/state/{name}", f"has shape {tuple(stored[name][0])}, but the model "
                                                      f"config implies {tuple(shape)} (config 'grid', "
                                                      f"'widths', 'k' or 'basis' disagree with the weights)")
    floats = {str(dt) for _, dt in stored.values() if dt.kind == "f"}
    if not floats <= {"float32", "float64"} or len(floats) > 1:
        raise reader.fail("/model/state", f"must hold float32 or float64 tensors of one type, got {sorted(floats)}")
    return {"float32": torch.float32, "float64": torch.float64}[floats.pop()] if floats else None


def _read_all(reader, f):
    """Everything ``load`` needs from an open file, checked and bounded."""
    path = reader.path
    fmt = reader.attr(f, "format", "/", default=None)
    if fmt != FORMAT:
        raise KanpinnError(f"{path}: not a kanpinn result file (format attribute is {str(fmt)[:60]!r}, "
                           f"expected {FORMAT!r})")
    version = reader.attr(f, "version", "/", default=0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise reader.fail("attribute 'version' of /", f"must be an integer, got {str(version)[:40]!r}")
    if version > VERSION:
        raise KanpinnError(f"{path}: written by a newer kanpinn (file version {version}, "
                           f"this one reads up to {VERSION})")
    model_g = reader.group(f, "model", "/model")
    state_g = reader.group(model_g, "state", "/model/state")
    hist_g = reader.group(f, "history", "/history")
    prob_g = reader.group(f, "problem", "/problem")
    metrics = reader.json_attr(f, "metrics", "/")
    options = reader.json_attr(f, "options", "/", default={})
    cfg = reader.json_attr(model_g, "config", "/model")
    implied = _implied_state(reader, reader.names(state_g, "/model/state", max_members=100_000), cfg)
    stored = {}
    for k, ds in reader.members(state_g, "/model/state", max_members=100_000):
        stored[k] = (reader.dataset_info(ds, f"/model/state/{k}"), ds)
    dtype = _check_state(reader, {k: info for k, (info, _) in stored.items()}, implied)
    state = {k: torch.from_numpy(np.array(reader.read(ds, f"/model/state/{k}"))) for k, (_, ds) in stored.items()}
    history = {k: reader.read(ds, f"/history/{k}", ndim=(0, 1)).reshape(-1).astype(np.float64)
               for k, ds in reader.members(hist_g, "/history", max_members=1000)}
    name = reader.attr(prob_g, "name", "/problem", default="result")
    domain_spec = reader.json_attr(prob_g, "domain", "/problem", default=None)
    variables = reader.json_attr(prob_g, "variables", "/problem", default=None)
    if variables is not None and not (isinstance(variables, list) and len(variables) <= 1000
                                      and all(isinstance(v, str) and len(v) <= 100 for v in variables)):
        raise reader.fail("attribute 'variables' of /problem", f"must be a list of names, got {str(variables)[:80]}")
    if domain_spec is not None and not isinstance(domain_spec, dict):
        raise reader.fail("attribute 'domain' of /problem", f"must be a JSON object or null, got {str(domain_spec)[:80]}")
    test_x = test_u = None
    test_g = reader.group(f, "test", "/test", required=False)
    if test_g is not None:
        x_ds, u_ds = reader.child(test_g, "x", "/test/x"), reader.child(test_g, "u_exact", "/test/u_exact")
        test_x = None if x_ds is None else reader.read(x_ds, "/test/x", ndim=(1, 2)).astype(np.float64)
        test_u = None if u_ds is None else reader.read(u_ds, "/test/u_exact", ndim=(1, 2)).astype(np.float64)
    return dict(metrics=metrics, options=options, cfg=cfg, dtype=dtype, state=state, history=history,
                name=str(name)[:200], domain_spec=domain_spec, variables=variables, test_x=test_x, test_u=test_u)


def _check_test_set(path, model, d):
    """/test/x and /test/u_exact must fit the model: (M, inputs) and (M, outputs)."""
    x, u = d["test_x"], d["test_u"]
    n_in, n_out = getattr(model, "width_in", None), getattr(model, "width_out", None)
    if x is not None:
        x = x.reshape(-1, 1) if x.ndim == 1 else x
        if n_in is not None and x.shape[1] != n_in:
            raise KanpinnError(f"{path}: /test/x has shape {x.shape}, but the model takes {n_in} input(s)")
    if u is not None:
        u = u.reshape(-1, 1) if u.ndim == 1 else u
        if x is None or u.shape[0] != x.shape[0] or (n_out is not None and u.shape[1] != n_out):
            raise KanpinnError(f"{path}: /test/u_exact has shape {u.shape}, but /test/x has "
                               f"{None if x is None else x.shape} and the model {n_out} output(s)")
    if d["variables"] and n_in is not None and len(d["variables"]) != n_in:
        raise KanpinnError(f"{path}: /problem 'variables' names {len(d['variables'])} inputs, "
                           f"the model takes {n_in}")
    return x, u


def load(path, max_bytes=None):
    """Read a result written by :meth:`Result.save`; rebuilds the model (no pickle).

    Returns a :class:`Result` whose ``problem`` is None; the model, history, metrics,
    ``variables`` and test points come from the file.

    The file may come from anyone: nothing in it is executed (formulas are parsed, not
    evaluated; see :func:`kanpinn.edge_formula.parse_formula`), links to other files are
    not followed, every dataset's size is checked before it is read (``max_bytes``: all
    arrays together, default 256 MiB), and the model config is checked field by field and
    against the stored weight shapes before a model is built. Anything wrong is a
    :class:`KanpinnError` naming the file and the field.

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
    from .h5safe import DEFAULT_MAX_BYTES, Reader, open_hdf5
    from .models import model_from_config
    path = os.fspath(path)
    f = open_hdf5(path, "result")
    try:
        with f:
            d = _read_all(Reader(f, path, DEFAULT_MAX_BYTES if max_bytes is None else max_bytes), f)
    except KanpinnError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise KanpinnError(f"{path}: corrupt kanpinn result file ({type(e).__name__}: {e})") from None
    try:
        model = model_from_config(d["cfg"], dtype=d["dtype"])
    except KanpinnError as e:
        raise KanpinnError(f"{path}: cannot rebuild the model from /model attribute 'config': {e}") from None
    try:
        model.load_state_dict(d["state"])
    except RuntimeError as e:
        msg = str(e).strip().splitlines()
        raise KanpinnError(f"{path}: the stored weights do not fit the stored model config "
                           f"({' '.join(m.strip() for m in msg[:4])})") from None
    model.eval()
    test_x, test_u = _check_test_set(path, model, d)
    metrics, options = d["metrics"], d["options"]
    res = Result(model, None, d["history"], _nonfinite_back(metrics) if isinstance(metrics, dict) else {},
                 options if isinstance(options, dict) else {}, test_x=test_x, test_u=test_u,
                 variables=d["variables"] or None, domain_spec=d["domain_spec"])
    res._name = d["name"]
    return res
