"""The distillation phase of ``kp.discover`` (see :mod:`kanpinn.symbolic.distill`): the
teacher solve, the structures fitted to its values (each output on its own), their
reading, and the polish and verification of the formula on the PDE itself. Also the
row type of the candidates table, shared with :mod:`kanpinn.symbolic.discover`.
"""
from __future__ import annotations

import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import sympy
import torch

from ..errors import KanpinnError
from .polish import n_ops, polish

__all__ = ["CandidateRow", "attempt", "distill_structures", "distill_phase"]


@dataclass
class CandidateRow:
    """One structure tried: what it gave and why it was (not) kept."""

    structure: str
    widths: list
    formula: object = None          # sympy (Matrix for systems) or None
    residual: float = math.inf      # verify()'s relative residual of the formula
    seconds: float = 0.0            # solve + symbolify + polish
    verified: bool = False
    why: str = ""                   # why it was rejected ("" when kept)
    n_ops: int | None = None
    network_error: float | None = None  # the trained network's rel. L2 (when exact known)
    screen_ratio: float | None = None   # first-grid PINN loss / loss of u = 0
    swaps: int = 0                      # single-edge swaps tried after the first reading



def distill_structures(d: int):
    """(name, widths) fitted to the teacher, cheapest first. The outputs of the last node
    layer are SUMMED (no output edge; see :func:`kanpinn.symbolic.distill.regression_problem`)
    and the product nodes are separable (:func:`kanpinn.symbolic.distill.separable_model`),
    so that a perfect fit leaves each edge one library function. "separable products"
    (2-D boxes only) is no KAN: :func:`kanpinn.symbolic.separable.read_separable` reads
    u = h0(t) + sum_k f_k(x) h_k(t) off the teacher's values on a grid, which removes the
    mixing that two product nodes leave (x and x^3 mixed on both Klein-Gordon edges)."""
    out, seen = [], set()
    for name, widths in [
        ("sum", [d, 1]),
        ("separable products", _SEPARABLE),
        ("sum + product", [d, [1, 1]]),
        ("function of a sum", [d, 1, 1]),
        ("two products", [d, [0, 2]]),
        ("sum + two products", [d, [1, 2]]),
        ("sum of compositions", [d, d, 1]),
    ]:
        if widths is _SEPARABLE and d != 2:
            continue
        if str(widths) not in seen:
            seen.add(str(widths))
            out.append((name, widths))
    return out


_SEPARABLE = "grid, rank<=3"     # not a KAN: read_separable on a grid of teacher values


def _has_products(widths) -> bool:
    return any(isinstance(w, (list, tuple)) and w[1] > 0 for w in widths)



_FIT_DEFAULTS = dict(grids=[5, 10, 20], steps=40, n_interior=1000, optimizer="lm", progress=False)
_OUTPUT_FIT = 1e-3   # a system's output keeps the first structure read within this of the teacher


def _left(deadline):
    return None if deadline is None else deadline - time.perf_counter()


@contextmanager
def attempt(row, refused="refused", skip=()):
    """Try one candidate: its seconds go into ``row`` and an error into ``row.why`` (a
    KanpinnError as ``refused: ...``, anything else as ``failed: ...``; the ``skip``
    exceptions just end it), so one failing structure never ends the search."""
    t0 = time.perf_counter()
    try:
        yield
    except skip:
        pass
    except KanpinnError as exc:
        row.why = f"{refused}: {exc}"
    except Exception as exc:  # noqa: BLE001 - one failing structure must not end the search
        row.why = f"failed: {type(exc).__name__}: {exc}"
    finally:
        row.seconds = time.perf_counter() - t0


def _note(log, row):
    if log is not None:
        log(f"{row.structure} {row.widths}: {row.formula}  residual {row.residual:.2e}"
            f"{'  VERIFIED' if row.verified else '  (' + row.why + ')'}  {row.seconds:.1f} s")


def _read_fit(reg, widths, o, comp, model_t, domain):
    """Fit one structure to the teacher (output ``comp``) and read it back: (formula,
    relative misfit of the formula from the teacher)."""
    from .distill import _Values, fit_structure, separable_model, teacher_error
    from .separable import read_separable
    from .symbolify import symbolify_report
    if widths is _SEPARABLE:
        lo = [float(v) for v in domain.lo]
        hi = [float(v) for v in domain.hi]
        grid = torch.stack(torch.meshgrid(*[torch.linspace(a, b, 17, dtype=torch.float64)
                                            for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 2)
        if not bool(np.asarray(domain.contains(grid.numpy())).all()):
            raise KanpinnError("the domain is not a box: no tensor grid to read from")
        values = _Values(model_t, comp)
        out = read_separable(lambda P: values(P).reshape(-1), lo, hi, o["symbols"], library=o["library"])
        if out is None:
            raise KanpinnError("the teacher's values are not a short sum of products of library functions")
        return out[0], teacher_error(out[0], o["symbols"], o["points"], model_t, comp)
    model = separable_model(widths, k=o["k"], seed=o["seed"], grid_eps=0.02)
    opts = dict(_FIT_DEFAULTS, seed=o["seed"])
    if _has_products(widths) or len(widths) > 2:
        opts["starts"] = o["starts"]
    opts.update({key: v for key, v in o["solve"].items() if key not in ("n_boundary", "weights")})
    left = _left(o["deadline"])
    if left is not None:
        opts["max_time"] = left if opts.get("max_time") is None else min(left, opts["max_time"])
    result = fit_structure(reg, model, **opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the network alone, column by column (the summed outputs are judged later, on the
        # PDE): read from the Result, symbolify would judge each column as if it were the
        # whole solution and drop the terms that cancel between columns
        rep = symbolify_report(result.model, library=o["library"], variables=o["symbols"],
                               x=_read_points(reg.domain, o["seed"]), required_derivative_order=2,
                               refine="fit")
    expr = sum(rep.expr) if isinstance(rep.expr, sympy.MatrixBase) else rep.expr
    return expr, teacher_error(expr, o["symbols"], o["points"], model_t, comp)


def _judge(row, expr, problem, o):
    """Polish ``expr`` against the PDE and verify it; fill the row. (formula, Verification)"""
    formula, ver = polish(expr, problem, symbols=o["symbols"], points=o["points"], tol=o["tol"])
    row.formula, row.residual, row.verified, row.n_ops = formula, ver.residual, ver.verified, n_ops(formula)
    row.why = "" if ver.verified else f"residual {ver.residual:.1e} > tol {o['tol']:.0e}"
    return formula, ver


def _read_points(domain, seed):
    parts = [np.asarray(domain.sample_interior(2048, "sobol", seed=seed), dtype=np.float64)]
    try:
        parts.append(np.asarray(domain.sample_boundary(512, "sobol", seed=seed + 1), dtype=np.float64))
    except Exception:  # noqa: BLE001 - domains without a boundary sampler
        pass
    return np.concatenate(parts, 0)


def _ready(model, problem):
    """Evaluate the teacher once; a model loaded from a file whose exact constraints need
    the problem's own value functions is attached to the problem first (a freshly trained
    one must not be: a time-windows model refuses a second attach)."""
    x = torch.as_tensor(np.asarray(problem.domain.sample_interior(4, "sobol", seed=0)), dtype=torch.float64)
    p = next(iter(model.parameters()), None)
    x = x.to(p.dtype) if p is not None else x
    try:
        with torch.no_grad():
            model(x)
    except KanpinnError:
        if not hasattr(model, "attach"):
            raise
        model.attach(problem)
        with torch.no_grad():
            model(x)


def distill_phase(problem, teacher_result, rows, o):
    """Solve the problem accurately (unless a teacher is given), fit each distillation
    structure to the teacher's values (each output on its own), polish and verify on the
    PDE. Appends rows; returns (n_ops, residual, formula, verification) or None."""
    from .distill import regression_problem, teacher as solve_teacher
    m = problem.n_outputs or 1
    row = CandidateRow("teacher (auto mode)" if teacher_result is None else "teacher (given)", [])
    t0 = time.perf_counter()
    if teacher_result is None:
        left = _left(o["deadline"])
        budget = o["teacher_time"] if left is None else min(o["teacher_time"], 0.5 * left)
        if budget < 5.0:
            row.why = "not tried: max_time spent"
            rows.append(row)
            return None
        try:
            teacher_result = solve_teacher(problem, seed=o["seed"], max_time=budget)
        except Exception as exc:  # noqa: BLE001 - without a teacher there is nothing to distil
            row.why = f"failed: {type(exc).__name__}: {exc}"
            rows.append(row)
            return None
    model_t = teacher_result.model
    try:
        _ready(model_t, problem)
    except Exception as exc:  # noqa: BLE001 - a teacher that cannot be evaluated ends the phase
        row.why = f"teacher not usable: {type(exc).__name__}: {exc}"
        rows.append(row)
        return None
    row.network_error = (teacher_result.metrics or {}).get("l2_relative")
    row.seconds = time.perf_counter() - t0
    row.why = f"teacher: PDE loss {float((teacher_result.metrics or {}).get('loss', math.nan)):.1e}"
    rows.append(row)
    _note(o["log"], row)

    best, per_output = None, []
    for j in range(m):
        comp = None if m == 1 else j
        reg = regression_problem(problem, model_t, comp)
        chosen = None                               # (misfit, formula) of output j
        for name, widths in distill_structures(problem.domain.dim):
            label = f"distilled {name}" + (f" [output {j}]" if m > 1 else "")
            left = _left(o["deadline"])
            if left is not None and left <= 0:
                rows.append(CandidateRow(label, widths, why="not tried: max_time spent"))
                continue
            row = CandidateRow(label, widths)
            with attempt(row):
                expr, misfit = _read_fit(reg, widths, o, comp, model_t, problem.domain)
                row.formula, row.n_ops = expr, n_ops(expr)
                if m == 1:
                    formula, ver = _judge(row, expr, problem, o)
                    if misfit is not None and not ver.verified:
                        row.why += f" (teacher misfit {misfit:.1e})"
                    if ver.verified and (best is None or (row.n_ops, ver.residual) < best[:2]):
                        best = (row.n_ops, ver.residual, formula, ver)
                else:
                    row.why = f"output {j}: teacher misfit {misfit:.1e}"
                    if chosen is None or misfit < chosen[0]:
                        chosen = (misfit, expr)
            rows.append(row)
            _note(o["log"], row)
            if (m == 1 and best is not None and o["stop_early"]) or \
                    (m > 1 and chosen is not None and chosen[0] <= _OUTPUT_FIT):
                break
        if m == 1:
            return best
        if chosen is None:
            return None
        per_output.append(chosen[1])

    row = CandidateRow("distilled system", [], formula=sympy.Matrix(per_output))
    with attempt(row, refused="failed"):
        formula, ver = _judge(row, row.formula, problem, o)
        if ver.verified:
            best = (row.n_ops, ver.residual, formula, ver)
    rows.append(row)
    _note(o["log"], row)
    return best
