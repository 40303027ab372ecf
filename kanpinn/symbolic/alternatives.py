"""Second choices for the edges of a read-back KAN, judged by the PDE.

``symbolify`` gives every edge the library function that fits the trained network's
activation best (:func:`kanpinn.symbolic.fit.rank_candidates`). When the composed formula
does not verify, the fault is often one edge whose fit was close between two functions,
or a line refused on a PDE edge (a line's second derivative vanishes, but inside a
product it is what the solution needs: ``x*cos(5*pi*t)``). :func:`edge_alternatives`
tries, worst-fitting edge first, each edge's next candidates from the fitter's own
ranking (degenerate ones included), composes the formula, polishes it against the PDE
(constants refined to the residual, then snapped; :func:`kanpinn.symbolic.polish.polish`)
and verifies it. It returns the first verified formula, else the one with the lowest
residual: the caller decides, by verification, what counts.
"""
from __future__ import annotations

import copy
import math
import time

import sympy

from .polish import polish

__all__ = ["edge_alternatives"]


def _choices(edge, per_edge, min_r2):
    """The next candidates of one edge, best score first (admissibility ignored)."""
    fit = edge.fit
    if fit is None:
        return []
    cands = [c for c in fit.candidates if c.name != edge.name and c.function is not None
             and math.isfinite(c.r2) and c.r2 >= min_r2]
    cands.sort(key=lambda c: c.score)
    return cands[:per_edge]


def edge_alternatives(report, problem, *, symbols, points, tol, wrapper=None, per_edge: int = 2,
                      min_r2: float = 0.9, max_trials: int = 24, deadline: float | None = None,
                      params=None, log=None):
    """(formula, verification, trials) of the best single-edge swap (see the module
    docstring), or (None, None, 0) when the report has nothing to swap. ``wrapper``: the
    trained model when it is a KAN behind an input embedding (the report's edges are then
    in the embedding's coordinates). ``deadline``: a ``time.perf_counter()`` value after
    which no new trial starts."""
    from .symbolify import _compose, _embedding_exprs
    inner_syms, sub = tuple(symbols), None
    if wrapper is not None and hasattr(wrapper, "inner"):
        zexprs = _embedding_exprs(wrapper, tuple(symbols))
        inner_syms = tuple(sympy.Symbol(f"_z{i}") for i in range(len(zexprs)))
        sub = dict(zip(inner_syms, zexprs))
    edges = [e for e in report.edges if e.kind == "library" and e.fit is not None]
    if not edges or any(e.kind == "numeric" for e in report.edges):
        return None, None, 0
    edges.sort(key=lambda e: e.r2)                  # the worst fit is the likeliest culprit
    best, trials = None, 0
    for e in edges:
        for cand in _choices(e, per_edge, min_r2):
            if trials >= max_trials or (deadline is not None and time.perf_counter() > deadline):
                return (best or (None, None))[0], (best or (None, None))[1], trials
            trials += 1
            model = copy.deepcopy(report.model)
            model.fix_symbolic(e.layer, e.i, e.o, cand.name, *cand.params, expr=cand.function.sympy_fn)
            try:
                nodes = _compose(model, inner_syms, {})
                if sub is not None:
                    nodes = [n.xreplace(sub) for n in nodes]
                formula = nodes[0] if len(nodes) == 1 else sympy.Matrix(nodes)
                formula, ver = polish(formula, problem, symbols=symbols, points=points, tol=tol,
                                      params=params)
            except Exception:  # noqa: BLE001 - one failing swap must not end the search
                continue
            if log is not None:
                log(f"  edge {e.layer}:{e.i}->{e.o} {e.name} -> {cand.name}: residual {ver.residual:.2e}")
            if best is None or (ver.verified, -ver.residual) > (best[1].verified, -best[1].residual):
                best = (formula, ver)
            if ver.verified:
                return formula, ver, trials
    return (best or (None, None))[0], (best or (None, None))[1], trials
