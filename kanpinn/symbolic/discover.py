"""``kp.discover``: find the closed-form solution of a problem without guessing a structure.

Small KAN structures are tried cheapest first (:func:`default_structures`): a sum of
univariate functions, one product of two sums, a function of a sum (``exp`` of a sum),
a sum plus a product, two products, sums of compositions. Each is trained with
``kp.solve`` (Levenberg-Marquardt, several random starts where products make the start
matter), read back with ``symbolify``, and polished against the PDE
(:func:`kanpinn.symbolic.polish.polish`: small-argument linearisation, constants refined
to the residual, constants snapped). A formula counts only when :func:`verify` accepts
it: its own PDE residual and condition misfits, differentiated exactly, vanish on fresh
points. The search stops at the first verified formula (``stop_early``), else keeps the
simplest verified one; when none verifies, ``Discovery.formula`` is None and the table
of candidates says how close each came.

For a system of m outputs, each structure is built once per output inside one KAN: the
hidden nodes are split into m blocks and the edges between blocks are masked off, so
output j is computed by its own copy of the structure (the inputs are shared).

Distillation (``distill="auto"``, after the first two structures trained on the PDE):
a tiny structure trained on the PDE often stops far from the solution (Klein-Gordon's
two products: 6.7e-2), while auto mode solves it to 1e-11. So the problem is solved once
in auto mode (the teacher, part of ``max_time``), and the :func:`distill_structures` are
fitted to the teacher's VALUES by least squares, each output on its own structure
(:mod:`kanpinn.symbolic.distill`; 2-D sums of products are read off a grid of values,
:mod:`kanpinn.symbolic.separable`). The formula is then polished and verified on the
PDE exactly as above: fitting the teacher is never enough.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import sympy
import torch

from ..errors import KanpinnError
from .alternatives import edge_alternatives
from .distill_search import CandidateRow, _has_products, attempt, distill_phase, distill_structures
from .polish import n_ops, polish
from .verify import DEFAULT_TOL, Verification, verify

__all__ = ["discover", "Discovery", "CandidateRow", "default_structures", "distill_structures",
           "system_model"]


# ---------------------------------------------------------------------------------------
# structures
# ---------------------------------------------------------------------------------------
def default_structures(d: int):
    """(name, widths for one output) in the order they are tried: cheapest first (the
    same widths are listed once: in 1-D a function of a sum is a sum of compositions)."""
    out, seen = [], set()
    for name, widths in [
        ("sum", [d, 1]),
        ("product", [d, [0, 1], 1]),
        ("function of a sum", [d, 1, 1]),
        ("sum + product", [d, [1, 1], 1]),
        ("two products", [d, [0, 2], 1]),
        ("sum of compositions", [d, d, 1]),
    ]:
        if str(widths) not in seen:
            seen.add(str(widths))
            out.append((name, widths))
    return out


def _pair(w):
    return (int(w[0]), int(w[1])) if isinstance(w, (list, tuple)) else (int(w), 0)


def system_model(widths, m: int, **kan_options):
    """A KAN computing m independent copies of the one-output structure ``widths`` (one
    per output) from shared inputs: hidden blocks with the cross-block edges masked."""
    from ..kan import KAN
    if m == 1:
        return KAN(widths, **kan_options)
    pairs = [_pair(w) for w in widths]
    if pairs[-1] != (1, 0):
        raise KanpinnError(f"discover: a structure must end in one output, got {widths}")
    big = [widths[0]] + [[s * m, p * m] for s, p in pairs[1:-1]] + [m]
    model = KAN(big, **kan_options)

    def node_owner(s, p):        # owners of the nodes of a node layer (sums, then products)
        return [j // s for j in range(s * m)] + [j // p for j in range(p * m)]

    def pre_owner(s, p):         # owners of a layer's outputs (sums, then product pairs)
        return [j // s for j in range(s * m)] + [j // (2 * p) for j in range(2 * p * m)]

    with torch.no_grad():
        for li, layer in enumerate(model.layers):
            if li == 0:
                continue          # the inputs are shared by every block
            s_in, p_in = pairs[li]
            s_out, p_out = pairs[li + 1]
            ins = node_owner(s_in, p_in)
            outs = pre_owner(s_out, p_out) if li + 1 < len(pairs) - 1 else list(range(m))
            for i, oi in enumerate(ins):
                for o, oo in enumerate(outs):
                    if oi != oo:
                        layer.mask[i, o] = 0.0
    return model


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------
def _fmt(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) and math.isfinite(v) else "-"


@dataclass
class Discovery:
    """What :func:`discover` found. ``formula`` is the simplest verified closed form
    (a sympy expression, a Matrix for systems), or None when nothing verified;
    ``candidates`` the rows of what was tried (:class:`CandidateRow`); ``report()`` the
    readable table.

    Example (no time given: nothing is tried, nothing is passed off as the answer):

    >>> problem = kp.Problem(kp.Interval(-1.0, 1.0), lambda x, u: kp.laplacian(u, x) + 1.0,
    ...                      [kp.Dirichlet(0.0)])
    >>> found = kp.discover(problem, max_time=1e-9)
    >>> found.verified, found.formula, found.candidates[0].why
    (False, None, 'not tried: max_time spent')
    """

    formula: object
    verified: bool
    residual: float
    candidates: list = field(default_factory=list)
    seconds: float = 0.0
    problem_name: str = "problem"
    tol: float = DEFAULT_TOL
    verification: Verification | None = None

    def table(self) -> str:
        rows = [f"{'structure':<22} {'widths':<18} {'residual':>9} {'ops':>4} {'s':>6}  formula / why"]
        for c in self.candidates:
            text = str(c.formula) if c.formula is not None else ""
            if len(text) > 70:
                text = text[:67] + "..."
            note = "VERIFIED" if c.verified else c.why
            rows.append(f"{c.structure:<22} {str(c.widths):<18} {_fmt(c.residual, '9.2e'):>9} "
                        f"{_fmt(c.n_ops, 'd'):>4} {c.seconds:6.1f}  {text}"
                        + (f"  [{note}]" if note else ""))
        return "\n".join(rows)

    def report(self) -> str:
        head = (f"discover({self.problem_name}): "
                + (f"verified closed form, residual {self.residual:.2e} (tol {self.tol:.0e})\n"
                   f"  {self.formula}" if self.verified else
                   f"NOT verified: no formula solves the PDE to tol {self.tol:.0e}; "
                   f"best residual {self.residual:.2e}")
                + f"\n{len(self.candidates)} candidate(s) in {self.seconds:.1f} s:\n")
        return head + self.table()

    def __repr__(self):
        if self.verified:
            return (f"Discovery(verified: {self.formula}, residual {self.residual:.2e}, "
                    f"{len(self.candidates)} candidate(s), {self.seconds:.1f} s)")
        return (f"Discovery(NOT verified: best residual {self.residual:.2e}, "
                f"{len(self.candidates)} candidate(s), {self.seconds:.1f} s)")

    __str__ = report


# ---------------------------------------------------------------------------------------
# the search
# ---------------------------------------------------------------------------------------
_SOLVE_DEFAULTS = dict(grids=[5, 10, 20], steps=40, n_interior=1000, n_boundary=200,
                       optimizer="lm", progress=False)


class _Screened(Exception):
    """A candidate rejected by the screen (internal control flow)."""


def _zero_loss(problem, seed):
    """The PINN loss of u = 0 on fresh points: the scale the screen compares with."""
    from .verify import _blocks, zero_function
    import numpy as np
    dom = problem.domain
    x = torch.as_tensor(np.asarray(dom.sample_interior(512, "sobol", seed=seed + 11)),
                        dtype=torch.float64).requires_grad_(True)
    pts = []
    for i, cond in enumerate(problem.conditions):
        raw = cond.sample(dom, 128, "sobol", seed=seed + 12 + i)
        pts.append({k: torch.as_tensor(np.asarray(v), dtype=torch.float64).requires_grad_(k.startswith("x"))
                    for k, v in raw.items()})
    m = problem.n_outputs or 1
    p = problem.default_params(x) if problem.parameters else None
    try:
        with torch.enable_grad():
            blocks = _blocks(problem, zero_function(m), x, pts, p)
        weights = dict(zip(problem.condition_names, (c.weight for c in problem.conditions)))
        total = 0.0
        for name, r in blocks:
            w = weights.get(name, weights.get(name.rsplit("_", 1)[0], 1.0))
            total += w * float((r.detach() ** 2).mean())
        return total if math.isfinite(total) and total > 0 else None
    except Exception:  # noqa: BLE001 - without a scale there is no screen
        return None


def _train(kp_solve, problem, model, opts, zero_loss, screen):
    """(result, first-grid loss / zero loss or None, rejected by the screen?)
    The first grid is trained with the multi-start; the later grids continue from it
    (kp.solve refits the trained splines onto the next grid)."""
    grids = list(opts.get("grids") or [])
    if screen is None or zero_loss is None or len(grids) < 2:
        return kp_solve(problem, model, **opts), None, False
    first = kp_solve(problem, model, **dict(opts, grids=grids[:1]))
    ratio = float(first.metrics["loss"]) / zero_loss
    if not ratio <= screen:
        return first, ratio, True
    rest = dict(opts, grids=grids[1:], starts=1)
    if opts.get("max_time") is not None:
        rest["max_time"] = max(1e-3, opts["max_time"] - first.metrics.get("wall_time", 0.0))
    return kp_solve(problem, model, **rest), ratio, False


def _check_options(problem, structures, max_time, tol, starts, stop_early, solve, swaps=0):
    from ..problem import Problem
    if not isinstance(problem, Problem):
        raise KanpinnError(f"discover: expected a kp.Problem, got {type(problem).__name__}")
    if max_time is not None and not (isinstance(max_time, (int, float)) and max_time > 0):
        raise KanpinnError(f"discover: max_time must be a positive number of seconds or None, got {max_time!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise KanpinnError(f"discover: tol must be a number in (0, 1), got {tol!r}")
    if not isinstance(starts, int) or starts < 1:
        raise KanpinnError(f"discover: starts must be a positive integer, got {starts!r}")
    if not isinstance(swaps, int) or swaps < 0:
        raise KanpinnError(f"discover: swaps must be a non-negative integer, got {swaps!r}")
    if not isinstance(solve, dict):
        raise KanpinnError(f"discover: solve must be a dict of kp.solve options, got {type(solve).__name__}")
    d = problem.domain.dim
    if structures is None:
        return default_structures(d)
    out = []
    for s in structures:
        name, widths = (s if isinstance(s, tuple) and len(s) == 2 else (str(s), s))
        if not isinstance(widths, (list, tuple)) or len(widths) < 2 or widths[0] != d \
                or _pair(widths[-1]) != (1, 0):
            raise KanpinnError(f"discover: structure {s!r} must be a widths list for ONE output "
                               f"starting with the dimension {d} and ending in 1, e.g. [{d}, [0, 1], 1]")
        out.append((name, list(widths)))
    return out


def discover(problem, *, structures=None, max_time: float | None = 600.0, tol: float = DEFAULT_TOL,
             starts: int = 4, stop_early: bool = True, seed: int = 0, k: int = 5,
             solve: dict | None = None, library=None, screen: float | None = 1e-2,
             swaps: int = 0, distill="auto", teacher=None, teacher_time: float = 150.0,
             log=None) -> Discovery:
    """Search small KAN structures for the closed-form solution of ``problem`` (see the
    module docstring).

    Args:
        structures: (name, widths) pairs for ONE output, tried in order (default:
            :func:`default_structures`); a bare widths list is accepted too.
        max_time: seconds for the whole search (a structure is started only while time
            is left; its training is cut at the remaining time).
        tol: verification tolerance (relative residual, see :func:`verify`).
        starts: random starts for structures with multiplication nodes or hidden layers.
        stop_early: stop at the first verified formula (structures are ordered cheapest
            first), else try them all and keep the simplest verified.
        solve: extra ``kp.solve`` options (override the defaults: grids [5, 10, 20],
            40 LM steps per grid, 1000 interior points).
        library: symbolic library for symbolify (default: its default library).
        screen: after the first grid, a structure whose PINN loss is above ``screen``
            times the loss of u = 0 is rejected without further training or reading
            back (it cannot represent the solution); None trains every structure fully.
        swaps: when a structure's formula does not verify, up to this many single-edge
            swaps to the fitter's next candidates are polished and verified
            (:func:`kanpinn.symbolic.alternatives.edge_alternatives`). Off by default: on
            the failures measured so far (Klein-Gordon two products, 14 swaps; Kovasznay
            products, 23 swaps) the trained network itself was 1e-2..0.4 from the
            solution, and no single swap verified.
        distill: ``"auto"`` (default): the structures are first trained on the PDE
            itself (only the first two defaults, sum and product, unless ``structures``
            is given: heat and Poisson-product verify there in seconds), then, while
            nothing is verified, DISTILLED: an accurate auto-mode solve (the teacher)
            and the :func:`distill_structures` fitted to its values by least squares,
            each output on its own structure, read back, polished and verified on the
            PDE (:mod:`kanpinn.symbolic.distill`). ``True``: distillation only;
            ``False``: the PDE-trained search alone, over all the structures.
        teacher: a ``kp.Result`` of the problem to distil from instead of solving it
            (its ``model`` is evaluated; it is not part of ``max_time``).
        teacher_time: seconds for the teacher's auto-mode solve (at most half the time
            left when it starts).
        log: callable receiving one line per candidate (e.g. ``print``), or None.
    """
    from ..solver import solve as kp_solve
    from .symbolify import symbolify_report

    solve = dict(solve or {})
    todo = _check_options(problem, structures, max_time, tol, starts, stop_early, solve, swaps)
    if distill not in ("auto", True, False):
        raise KanpinnError(f"discover: distill must be 'auto', True or False, got {distill!r}")
    if not (isinstance(teacher_time, (int, float)) and teacher_time > 0):
        raise KanpinnError(f"discover: teacher_time must be a positive number of seconds, got {teacher_time!r}")
    if teacher is not None and not hasattr(teacher, "model"):
        raise KanpinnError(f"discover: teacher must be a kp.Result of the problem, got {type(teacher).__name__}")
    if distill is True:
        todo = []
    elif distill == "auto" and structures is None:
        todo = todo[:2]               # sum, product: what verifies directly when anything does
    t_start = time.perf_counter()
    m = problem.n_outputs or 1
    symbols = tuple(sympy.Symbol(v) for v in problem.variables)
    points = problem.domain.sample_interior(1024, "sobol", seed=seed + 3)
    zero_loss = _zero_loss(problem, seed)
    rows: list[CandidateRow] = []
    best = None  # (n_ops, residual, formula, verification)

    for name, widths in todo:
        left = None if max_time is None else max_time - (time.perf_counter() - t_start)
        if left is not None and left <= 0:
            rows.append(CandidateRow(name, widths, why="not tried: max_time spent"))
            continue
        row = CandidateRow(name, widths)
        with attempt(row, refused="solve refused", skip=_Screened):
            model = system_model(widths, m, k=k, seed=seed, grid_eps=0.02)
            opts = dict(_SOLVE_DEFAULTS, seed=seed)
            if _has_products(widths) or len(widths) > 2:
                opts["starts"] = starts
            opts.update(solve)
            if left is not None:
                opts["max_time"] = left if opts.get("max_time") is None else min(left, opts["max_time"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result, row.screen_ratio, rejected = _train(kp_solve, problem, model, opts,
                                                            zero_loss, screen)
                row.network_error = result.metrics.get("l2_relative")
                if rejected:              # the structure cannot even fit the PDE numerically
                    row.why = (f"screened out: network loss {row.screen_ratio:.1e} x u=0's "
                               f"after the first grid (> {screen:.0e})")
                    raise _Screened
                rep = symbolify_report(result, library=library)
                formula, ver = polish(rep.expr, problem, symbols=symbols, points=points, tol=tol)
                if not ver.verified and swaps:
                    deadline = None if max_time is None else t_start + max_time
                    alt, alt_ver, row.swaps = edge_alternatives(
                        rep, problem, symbols=symbols, points=points, tol=tol,
                        wrapper=result.model, max_trials=swaps, deadline=deadline, log=log)
                    if alt_ver is not None and (alt_ver.verified or alt_ver.residual < ver.residual):
                        formula, ver = alt, alt_ver
            row.formula, row.residual, row.verified = formula, ver.residual, ver.verified
            row.n_ops = n_ops(formula)
            if not ver.verified:
                row.why = f"residual {ver.residual:.1e} > tol {tol:.0e}"
                if ver.error:
                    row.why = f"formula not evaluable: {ver.error}"
        rows.append(row)
        if log is not None:
            log(f"{name} {widths}: {row.formula}  residual {row.residual:.2e}"
                f"{'  VERIFIED' if row.verified else '  (' + row.why + ')'}  {row.seconds:.1f} s"
                + (f", first-grid loss ratio {row.screen_ratio:.1e}" if row.screen_ratio is not None else ""))
        if row.verified:
            cand = (row.n_ops, row.residual, row.formula, ver)
            if best is None or cand[:2] < best[:2]:
                best = cand
            if stop_early:
                break

    if distill and (best is None or not stop_early):
        deadline = None if max_time is None else t_start + max_time
        found = distill_phase(problem, teacher, rows, dict(
            seed=seed, k=k, starts=starts, solve=solve, library=library, tol=tol,
            symbols=symbols, points=points, deadline=deadline, teacher_time=teacher_time,
            stop_early=stop_early, log=log))
        if found is not None and (best is None or found[:2] < best[:2]):
            best = found

    if best is not None:
        for r in rows:
            if r.verified and r.formula is not best[2]:
                r.why = f"verified, but {r.n_ops} operations > {best[0]}"
    seconds = time.perf_counter() - t_start
    name = getattr(problem, "name", "problem")
    if best is None:
        tried = [r.residual for r in rows if math.isfinite(r.residual)]
        return Discovery(None, False, min(tried) if tried else math.inf, rows, seconds, name, tol)
    return Discovery(best[2], True, best[1], rows, seconds, name, tol, best[3])
