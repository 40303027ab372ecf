"""The error of a prediction against a reference solution: one definition for the solver's
history, its final metrics and ``Result.errors()``.

``error_metrics(pred, exact)`` takes two (N, m) arrays (numpy or torch; a 1-D array is one
column) of exactly the same shape and returns floats:

- ``l2_relative``: ||pred - exact||₂ / ||exact||₂ over all test points and outputs;
- ``l2_absolute``: the root-mean-square error sqrt(mean((pred - exact)²));
- ``max_abs``: max |pred - exact|;
- ``l2_relative_per_output`` (only when m > 1): a list, the relative error of each column.

A relative error needs a reference that is not zero. When ||exact||₂ is 0, or so small
that the ratio would exceed ``UNDEFINED_ABOVE`` (the reference is zero up to rounding, and
the ratio says nothing but that), ``l2_relative`` is NaN and the key ``l2_note`` explains
why; read ``l2_absolute`` instead. A perfect prediction (pred == exact) has
``l2_relative`` 0, even against a zero reference. NaN was chosen over inf because it
fails every comparison: no threshold test (``l2 < 1e-3``) passes by accident.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import KanpinnError

__all__ = ["error_metrics", "as_columns", "UNDEFINED_ABOVE", "SCALAR_KEYS"]

UNDEFINED_ABOVE = 1e12        # a relative error above this only says the reference is ~0
SCALAR_KEYS = ("l2_relative", "l2_absolute", "max_abs")   # the float entries (for histories)


def as_columns(a, what, owner="error_metrics"):
    """``a`` (numpy or torch) as a float64 (N, m) array; a 1-D array is one column."""
    if hasattr(a, "detach"):                              # a torch tensor
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise KanpinnError(f"{owner}: {what} must be an (N, m) array, got shape {a.shape}")
    return a




def _relative(diff_norm, ref_norm):
    """diff/ref, or NaN when the reference is (numerically) zero."""
    if diff_norm == 0.0:
        return 0.0
    if ref_norm == 0.0:
        return math.nan
    ratio = diff_norm / ref_norm
    if math.isfinite(diff_norm) and ratio > UNDEFINED_ABOVE:
        return math.nan
    return ratio                          # inf or NaN when the prediction is not finite


def error_metrics(pred, exact) -> dict:
    """Errors of ``pred`` against ``exact`` (see the module docstring for the definitions).

    Both must have the same shape (N, m); nothing is broadcast, so an ``exact`` with another
    number of columns than the model's output is an error.

    >>> m = error_metrics(np.array([[1.0], [2.0]]), np.array([[1.0], [1.0]]))
    >>> round(m["l2_relative"], 6), round(m["l2_absolute"], 6), m["max_abs"]
    (0.707107, 0.707107, 1.0)
    >>> z = error_metrics(np.ones((4, 1)), np.zeros((4, 1)))
    >>> z["l2_relative"], z["l2_absolute"], "l2_note" in z
    (nan, 1.0, True)
    """
    p = as_columns(pred, "the prediction")
    e = as_columns(exact, "the exact solution")
    if p.shape != e.shape:
        raise KanpinnError(f"error_metrics: the prediction has shape {p.shape} but the exact solution "
                           f"{e.shape}; they must match exactly (one exact column per model output)")
    if p.size == 0:
        raise KanpinnError("error_metrics: no test points (empty arrays)")
    diff = p - e
    diff_norm, ref_norm = float(np.linalg.norm(diff)), float(np.linalg.norm(e))
    out = {"l2_relative": _relative(diff_norm, ref_norm),
           "l2_absolute": float(np.sqrt(np.mean(diff * diff))),
           "max_abs": float(np.max(np.abs(diff)))}
    if p.shape[1] > 1:
        out["l2_relative_per_output"] = [_relative(float(np.linalg.norm(diff[:, j])), float(np.linalg.norm(e[:, j])))
                                         for j in range(p.shape[1])]
    if math.isnan(out["l2_relative"]) and np.isfinite(diff_norm):
        out["l2_note"] = (f"the exact solution is zero on the test points (norm {ref_norm:.3g}); "
                          "a relative error is undefined, see l2_absolute")
    return out
