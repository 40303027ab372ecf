"""Peers timed in the same process as kanpinn, when they are installed.

pykan 0.2.8 (``pip install pykan==0.2.8 scikit-learn pandas``; its wheel declares no
dependencies of its own): the closure of its PDE tutorial on the same points and
right-hand side as kanpinn's jet closure, i.e. u = model(x) after ``model.speed()``, the
Laplacian from two ``torch.autograd.functional.jacobian`` calls with ``create_graph``
(the tutorial's ``batch_jacobian``), and the gradient of mean((Δu - f)²) with respect to
every trainable parameter. A ratio against it is then a same-process measurement, not a
figure carried over from another machine or day.

pykan is imported only here and only on request. Its constructor reseeds the global
random generators and it builds parameters in the default dtype, so both are saved and
restored around it.

Example::

    >>> from kanpinn.bench.peers import pykan_closure
    >>> fn = pykan_closure([2, 10, 1], 5, x, f)      # doctest: +SKIP
    >>> fn()                                         # one closure  # doctest: +SKIP
"""
from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["PeerUnavailable", "pykan_version", "pykan_closure"]

PYKAN_VERSION = "0.2.8"


class PeerUnavailable(RuntimeError):
    """The peer package is not installed (or not the version the benchmark targets)."""


def pykan_version():
    """The installed pykan version, or None."""
    from importlib import metadata
    try:
        return metadata.version("pykan")
    except metadata.PackageNotFoundError:
        return None


@contextmanager
def _isolated(dtype):
    """Default dtype and the global random states as they were, whatever happens inside."""
    old_dtype = torch.get_default_dtype()
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old_dtype)
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def _batch_jacobian(func, x):
    """d func(x)[n] / d x[n] for every n: (N, out, d), as pykan's PDE tutorial does."""
    return torch.autograd.functional.jacobian(lambda z: func(z).sum(0), x,
                                              create_graph=True).permute(1, 0, 2)


def pykan_closure(widths, G, x, f, k=3, seed=1):
    """A callable running one pykan closure (see the module docstring) for a KAN of
    ``widths`` with G intervals, on x (N, d) with right-hand side f (N, 1), in x's dtype.

    Raises ``PeerUnavailable`` when pykan 0.2.8 (and what it imports) is not installed."""
    version = pykan_version()
    if version != PYKAN_VERSION:
        raise PeerUnavailable(f"pykan {PYKAN_VERSION} is not installed" if version is None else
                              f"pykan {version} is installed; the benchmark targets {PYKAN_VERSION}")
    try:
        with _isolated(x.dtype):
            from kan import KAN as PyKAN
            model = PyKAN(width=list(widths), grid=G, k=k, seed=seed, auto_save=False, device="cpu")
            model.speed()
    except ImportError as e:
        raise PeerUnavailable(f"pykan is installed but cannot be imported ({e}); it needs "
                              "scikit-learn and pandas") from e
    params = [p for p in model.parameters() if p.requires_grad]
    x = x.detach().clone()

    def closure():
        grad_fn = lambda z: _batch_jacobian(model, z)[:, 0, :]      # noqa: E731  (N, d)
        hess = _batch_jacobian(grad_fn, x)                           # (N, d, d)
        lap = torch.diagonal(hess, dim1=1, dim2=2).sum(1, keepdim=True)
        loss = ((lap - f) ** 2).mean()
        return torch.autograd.grad(loss, params, allow_unused=True)

    closure.n_params = sum(p.numel() for p in params)
    return closure
