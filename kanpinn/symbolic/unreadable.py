"""``kp.symbolify`` for a solved problem whose model has no edges to read.

Auto mode wraps its KAN in an exact-constraint transform u = g + D·N (Dirichlet and
initial conditions) or splits time into windows; an MLP-PINN has no edges at all. The
network N of u = g + D·N is not the solution (it is (u - g)/D, rarely a short formula),
so reading its edges would not give the closed form even where it exists. The solution
itself is what has one: the trained model is used as a *teacher* and the distillation of
``kp.discover`` (:mod:`kanpinn.symbolic.distill`) fits small structures to its values,
reads them back, polishes the constants on the PDE and keeps only a formula verified on
the PDE itself (never on the teacher).
"""
from __future__ import annotations

import math
import warnings

from ..errors import KanpinnError

__all__ = ["readable", "needs_distillation", "symbolify_by_distillation"]

# the options of symbolify that this route takes; the rest describe reading KAN edges
_OPTIONS = ("seed", "max_time", "num_threads", "log")


def readable(model) -> bool:
    """Whether symbolify reads ``model``'s edges: a KAN, or a KAN behind an input
    embedding (``kanpinn.transforms.Embedded``)."""
    if type(model).__name__ == "Embedded":
        return readable(getattr(model, "inner", None))
    layers = getattr(model, "layers", None)
    return layers is not None and hasattr(model, "widths") and \
        all(hasattr(layer, "edge_values") for layer in layers)


def needs_distillation(obj) -> bool:
    """A Result with its problem whose model symbolify cannot read edge by edge."""
    is_result = hasattr(obj, "model") and hasattr(obj, "metrics")
    return is_result and getattr(obj, "problem", None) is not None and not readable(obj.model)


def symbolify_by_distillation(result, library=None, variables=None, options=None):
    """The verified closed form of ``result``'s solution, distilled from its model.

    Returns the formula (a sympy expression, a Matrix for systems). When nothing
    verifies, the candidate with the smallest PDE residual is returned with a
    ``SymbolicWarning`` saying so; with no candidate at all, a KanpinnError.
    Options: ``seed`` (0), ``max_time`` (seconds for the structure fits, default 300),
    ``num_threads`` (1), ``log`` (a callable receiving one line per candidate)."""
    import sympy

    from .discover import discover
    from .fit import _threads
    from .symbolify import SymbolicWarning, _symbols
    options = dict(options or {})
    other = sorted(set(options) - set(_OPTIONS))
    if other:
        raise KanpinnError(f"symbolify: option(s) {', '.join(other)} describe reading a KAN's edges; a "
                           f"{type(result.model).__name__} model is read by distillation, which takes "
                           f"{', '.join(_OPTIONS)}")
    max_time = options.get("max_time", 300.0)
    with _threads(options.get("num_threads", 1)):
        found = discover(result.problem, distill=True, teacher=result, library=library,
                         seed=int(options.get("seed", 0)), max_time=max_time, log=options.get("log"))
    formula = found.formula
    if formula is None:
        tried = [row for row in found.candidates if row.formula is not None and math.isfinite(row.residual)]
        if not tried:
            raise KanpinnError(f"symbolify: no closed form found for this {type(result.model).__name__} "
                               "model; distillation produced no formula:\n" + found.table())
        best = min(tried, key=lambda row: row.residual)
        formula = best.formula
        warnings.warn(f"symbolify: no closed form found; the returned formula is the distilled candidate "
                      f"with the smallest PDE residual ({best.residual:.2e} relative, not verified: "
                      f"{best.structure}). See kp.discover(problem, teacher=result) for the table.",
                      SymbolicWarning, stacklevel=3)
    if variables is not None:
        old = [sympy.Symbol(v) for v in result.problem.variables]
        try:
            new = _symbols(variables, None, len(old))
        except ValueError as exc:
            raise KanpinnError(f"symbolify: {exc}") from None
        formula = formula.xreplace(dict(zip(old, new)))
    return formula
