"""Vectorised, memory-bounded fitting of ``y ~ c*f(a*x+b)+d`` for a whole library.

Algorithm (per group of edges sharing the same inputs ``x``):

1. *Normalise*: ``t = (x - m)/s`` maps the data to ``[-1, 1]``; ``y`` is centred and scaled.
   The search is done on ``f(alpha*t + beta)`` and mapped back to ``(a, b)`` at the end,
   so the grids below are independent of the units of ``x``.
2. *Coarse search*: for every function, a grid of ``(alpha, beta)`` candidates (log-spaced
   ``|alpha|`` in [0.05, 40], ``beta`` over a period for periodic functions, near the
   domain edge for ``log``/``sqrt``/``1/x``; redundant parameters are not searched, see
   :mod:`kanpinn.symbolic.library`). For each candidate the best ``c, d`` follow in closed
   form from linear least squares, and R^2 is the squared correlation of ``f(alpha*t+beta)``
   with ``y``. This is done on an evenly spread subsample (``n_coarse`` points) and in
   chunks of grid candidates such that no working tensor holds more than
   ``max_elements`` numbers (default 2**21 float64 = 16 MB), whatever ``n`` and the grid
   size are. Candidates whose argument leaves the function's domain over the data get
   R^2 = -inf before anything is evaluated.
3. *Refinement*: the ``n_starts`` best grid points per (edge, function) are refined
   jointly in ``(alpha, beta, c, d)`` by a batched Levenberg-Marquardt iteration (torch,
   derivatives of ``f`` by autograd, steps that leave the domain rejected) on at most
   ``n_refine`` points, again chunked to respect ``max_elements``.
4. *Report*: R^2 of the best refined start is recomputed on all the data (chunked),
   parameters are mapped back to ``x`` units and put in canonical form (``a > 0`` for
   even/odd functions, ``b`` reduced modulo the period, ``exp``'s shift folded into ``c``, ...).

Selection rule (documented, see :func:`rank_candidates`)::

    score = log10(max(1 - R^2, 1e-14)) + complexity_weight * complexity     (lower is better)

so one unit of complexity must buy a factor ``10**complexity_weight`` in unexplained
variance; all fits better than 1e-14 count as exact and then the simplest wins. Ties are
broken by smaller ``|b|`` (``cos(x)`` rather than ``sin(x + pi/2)``), then library order.

For PDE edges, ``required_derivative_order=k`` marks *degenerate* candidates: those whose
k-th derivative vanishes identically (``SymbolicFunction.vanishing_order <= k``, e.g. ``x``,
``abs`` and ``0`` for k = 2). A degenerate candidate is admissible only when its fit is
essentially exact (``1 - R^2 < exact_tol``, default 1e-9); inadmissible candidates are
ranked after all admissible ones and never returned as ``best``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import sympy
import torch

from .library import Library, SymbolicFunction, get_library

__all__ = [
    "Candidate",
    "EdgeFit",
    "fit_edges",
    "fit_edge",
    "rank_candidates",
    "chunk_rows",
    "LOSS_FLOOR",
]

LOSS_FLOOR = 1e-14
_DT = torch.float64
_MARGIN = 1e-6  # distance (normalised units) kept from domain edges / poles


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------
@dataclass
class Candidate:
    """One library function fitted to one edge: ``c*f(a*x+b)+d``."""

    name: str
    r2: float
    a: float
    b: float
    c: float
    d: float
    complexity: int
    score: float = math.inf
    degenerate: bool = False
    admissible: bool = True
    function: SymbolicFunction | None = field(default=None, repr=False, compare=False)

    @property
    def params(self) -> tuple[float, float, float, float]:
        return (self.a, self.b, self.c, self.d)

    @property
    def loss(self) -> float:
        """Unexplained variance fraction ``1 - R^2`` (inf when invalid)."""
        return 1.0 - self.r2 if math.isfinite(self.r2) else math.inf

    def expr(self, s: sympy.Expr) -> sympy.Expr:
        """The fitted edge as a sympy expression of ``s`` (float constants)."""
        return self.function.expr(s, self.a, self.b, self.c, self.d)

    def __call__(self, x) -> torch.Tensor:
        """Evaluate the fitted edge on a tensor/array (float64)."""
        x = torch.as_tensor(x, dtype=_DT)
        if "c" in self.function.fixed:
            return torch.full_like(x, self.d)
        return self.c * self.function.torch_fn(self.a * x + self.b) + self.d


@dataclass
class EdgeFit:
    """All candidates for one edge, ranked best first (see module docstring)."""

    candidates: list[Candidate]
    r2_threshold: float = 0.999

    @property
    def best(self) -> Candidate | None:
        for c in self.candidates:
            if c.admissible and math.isfinite(c.r2):
                return c
        return None

    @property
    def recovered(self) -> bool:
        """Whether the chosen function explains the edge (``R^2 >= r2_threshold``)."""
        b = self.best
        return b is not None and b.r2 >= self.r2_threshold

    @property
    def best_r2(self) -> float:
        """Highest R^2 over all candidates, admissible or not."""
        return max((c.r2 for c in self.candidates), default=-math.inf)

    def __getitem__(self, name: str) -> Candidate:
        for c in self.candidates:
            if c.name == name:
                return c
        raise KeyError(name)

    def names(self) -> list[str]:
        return [c.name for c in self.candidates]

    def table(self, top: int | None = None) -> str:
        rows = [f"{'name':>9} {'1-R2':>10} {'cmpl':>4} {'score':>7} {'ok':>2}  a, b, c, d"]
        for c in self.candidates[:top]:
            rows.append(f"{c.name:>9} {c.loss:10.3e} {c.complexity:4d} {c.score:7.2f} "
                        f"{'y' if c.admissible else 'n':>2}  "
                        f"{c.a:.6g}, {c.b:.6g}, {c.c:.6g}, {c.d:.6g}")
        return "\n".join(rows)


def rank_candidates(candidates: Sequence[Candidate], *, complexity_weight: float = 1.0,
                    required_derivative_order: int | None = None,
                    exact_tol: float = 1e-9) -> list[Candidate]:
    """Score, flag and sort candidates (in place on the records; returns a new list)."""
    order = {id(c): i for i, c in enumerate(candidates)}
    for c in candidates:
        if math.isfinite(c.r2):
            c.score = math.log10(max(1.0 - c.r2, LOSS_FLOOR)) + complexity_weight * c.complexity
        else:
            c.score = math.inf
        vo = c.function.vanishing_order if c.function is not None else None
        c.degenerate = bool(required_derivative_order is not None and vo is not None
                            and vo <= required_derivative_order)
        c.admissible = math.isfinite(c.r2) and (not c.degenerate or c.loss < exact_tol)
    return sorted(candidates, key=lambda c: (not c.admissible, round(c.score, 9),
                                             abs(c.b), order[id(c)]))


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def chunk_rows(n_cols: int, max_elements: int, factor: int = 1) -> int:
    """Rows per chunk so that ``rows * n_cols * factor <= max_elements`` (at least 1)."""
    return max(1, int(max_elements) // max(1, int(n_cols) * int(factor)))


@contextlib.contextmanager
def _threads(n):
    old = torch.get_num_threads()
    change = n is not None and n != old
    if change:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(old)


def _even_subsample(t: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of about ``k`` points evenly spread in rank (min and max included)."""
    n = t.shape[0]
    if n <= k:
        return torch.arange(n)
    order = torch.argsort(t)
    pos = torch.linspace(0, n - 1, k, dtype=_DT).round().long().unique()
    return order[pos]


def _domain_ok(fn: SymbolicFunction, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Argument range over t in [-1, 1] is [beta-|alpha|, beta+|alpha|]."""
    lo = beta - alpha.abs()
    hi = beta + alpha.abs()
    ok = torch.isfinite(lo) & torch.isfinite(hi)
    if fn.domain is None:
        return ok
    inside = torch.zeros_like(ok)
    for L, H in fn.domain:
        inside |= (lo >= L + _MARGIN) & (hi <= H - _MARGIN)
    return ok & inside


def _grid(fn: SymbolicFunction) -> tuple[torch.Tensor, torch.Tensor]:
    """Coarse (alpha, beta) candidates in normalised coordinates."""
    fixed = fn.fixed
    symmetric = fn.parity is not None
    if "a" in fixed:
        alphas = [1.0] if symmetric else [1.0, -1.0]
    else:
        n_a = 48 if fn.period is not None else 32
        mags = np.geomspace(0.05, 40.0, n_a)
        alphas = list(mags) if symmetric else list(mags) + list(-mags)
    pairs = []
    for al in alphas:
        if "b" in fixed:
            betas = [0.0]
        elif fn.period is not None:
            P = fn.period[0]
            betas = list(np.linspace(-P / 2, P / 2, 12, endpoint=False))
        elif "a" in fixed:
            edge = 1.0 + np.geomspace(1e-4, 300.0, 40)
            betas = list(np.linspace(-4.0, 4.0, 33)) + list(edge) + list(-edge)
        else:
            B = 1.5 * abs(al) + 2.0
            betas = list(np.linspace(-B, B, 21))
        pairs.extend((al, be) for be in betas)
    g = torch.tensor(pairs, dtype=_DT)
    alpha, beta = g[:, 0], g[:, 1]
    ok = _domain_ok(fn, alpha, beta)
    return alpha[ok], beta[ok]


def _eval(fn: SymbolicFunction, u: torch.Tensor) -> torch.Tensor:
    if "c" in fn.fixed:
        return torch.zeros_like(u)
    return fn.torch_fn(u)


def _eval_with_grad(fn: SymbolicFunction, u: torch.Tensor):
    if "c" in fn.fixed:
        return torch.zeros_like(u), torch.zeros_like(u)
    with torch.enable_grad():
        u_ = u.detach().requires_grad_(True)
        z = fn.torch_fn(u_)
        if z.requires_grad:
            (dz,) = torch.autograd.grad(z, u_, torch.ones_like(z))
        else:
            dz = torch.zeros_like(u)
    return z.detach(), dz.detach()


def _as_2d(v, name: str) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        v = v.detach().to("cpu", _DT)
    else:
        v = torch.as_tensor(np.asarray(v, dtype=np.float64))
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2:
        raise ValueError(f"{name} must be (n,) or (E, n), got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError(f"{name} contains non-finite values")
    return v


# ---------------------------------------------------------------------------------------
# coarse search
# ---------------------------------------------------------------------------------------
def _coarse(fn, t, Yn, n_starts, max_elements):
    """Top starts per edge: returns (alpha, beta, C, D, r2) each (E, K)."""
    E, n = Yn.shape
    alpha, beta = _grid(fn)
    G = alpha.shape[0]
    K = max(1, min(n_starts, G))
    if G == 0:
        nan = torch.full((E, 1), math.nan, dtype=_DT)
        return nan, nan, nan, nan, torch.full((E, 1), -math.inf, dtype=_DT)
    if "c" in fn.fixed:  # the constant: R^2 = 0
        z = torch.zeros((E, 1), dtype=_DT)
        return (z + 1, z, z, z, z)
    gc = chunk_rows(max(n, E), max_elements, 3)
    r2 = torch.empty((E, G), dtype=_DT)
    cc = torch.empty((E, G), dtype=_DT)
    zmean = torch.empty(G, dtype=_DT)
    for g0 in range(0, G, gc):
        sl = slice(g0, min(G, g0 + gc))
        z = _eval(fn, alpha[sl, None] * t[None, :] + beta[sl, None])  # (g, n)
        finite = torch.isfinite(z).all(1)
        z = torch.where(finite[:, None], z, torch.zeros_like(z))
        zm = z.mean(1)
        zc = z - zm[:, None]
        zz = (zc * zc).sum(1)
        scale = (z * z).sum(1)
        good = finite & (zz > 1e-20 * scale) & (zz > 1e-280)
        zy = Yn @ zc.T  # (E, g); Yn rows are centred and have unit norm
        zz_safe = torch.where(good, zz, torch.ones_like(zz))
        r2[:, sl] = torch.where(good[None, :], zy * zy / zz_safe[None, :],
                                torch.full_like(zy, -math.inf))
        cc[:, sl] = zy / zz_safe[None, :]
        zmean[sl] = zm
    top_r2, idx = torch.topk(r2, K, dim=1)
    a0 = alpha[idx]
    b0 = beta[idx]
    C0 = torch.gather(cc, 1, idx)
    D0 = -C0 * zmean[idx]
    return a0, b0, C0, D0, top_r2


# ---------------------------------------------------------------------------------------
# batched Levenberg-Marquardt
# ---------------------------------------------------------------------------------------
def _lm(fn, T, Y, P, max_iter):
    """Refine P (B, 4) = (alpha, beta, C, D) to minimise ||C f(alpha T + beta) + D - Y||^2
    row by row; T and Y are (B, n). Rows that have converged leave the active set."""
    B = P.shape[0]
    free = torch.tensor([("a" not in fn.fixed) and ("c" not in fn.fixed),
                         ("b" not in fn.fixed) and ("c" not in fn.fixed),
                         "c" not in fn.fixed, True])
    fixed_idx = (~free).nonzero().flatten().tolist()
    freef = free.to(_DT)
    eye = torch.eye(4, dtype=_DT)

    def state(Pc, Tc, Yc):
        u = Pc[:, 0:1] * Tc + Pc[:, 1:2]
        z, dz = _eval_with_grad(fn, u)
        r = Pc[:, 2:3] * z + Pc[:, 3:4] - Yc
        cost = (r * r).sum(1)
        ok = _domain_ok(fn, Pc[:, 0], Pc[:, 1]) & torch.isfinite(cost) \
            & torch.isfinite(dz).all(1)
        cost = torch.where(ok, cost, torch.full_like(cost, math.inf))
        return cost, z, dz, r

    P = P.clone()
    cost, z, dz, r = state(P, T, Y)
    ytol = 1e-28 * (Y * Y).sum(1).clamp_min(1e-300)
    lam = torch.full((B,), 1e-3, dtype=_DT)
    done = ~torch.isfinite(cost) | (cost <= ytol)
    for _ in range(max_iter):
        act = (~done).nonzero().flatten()
        if act.numel() == 0:
            break
        Pa, Ta, Ya, la = P[act], T[act], Y[act], lam[act]
        za, dza, ra, ca = z[act], dz[act], r[act], cost[act]
        C = Pa[:, 2:3]
        J = torch.stack([C * dza * Ta, C * dza, za, torch.ones_like(za)], -1) * freef
        JTJ = J.transpose(1, 2) @ J
        g = (J * ra[..., None]).sum(1)
        diag = torch.diagonal(JTJ, dim1=1, dim2=2)
        dscale = diag.clamp_min(1e-12 * diag.amax(1, keepdim=True).clamp_min(1e-300))
        A = JTJ + la[:, None, None] * torch.diag_embed(dscale)
        for i in fixed_idx:
            A[:, i, :] = 0.0
            A[:, :, i] = 0.0
            A[:, i, i] = 1.0
            g[:, i] = 0.0
        A = torch.where(torch.isfinite(A), A, eye)
        step, info = torch.linalg.solve_ex(A, -g[..., None])
        step = step[..., 0]
        solved = (info == 0) & torch.isfinite(step).all(1)
        Pt = torch.where(solved[:, None], Pa + step, Pa)
        ct, zt, dzt, rt = state(Pt, Ta, Ya)
        acc = solved & (ct < ca)
        rel = torch.where(acc, (ca - ct) / ca.clamp_min(1e-300), torch.zeros_like(ca))
        P[act] = torch.where(acc[:, None], Pt, Pa)
        z[act] = torch.where(acc[:, None], zt, za)
        dz[act] = torch.where(acc[:, None], dzt, dza)
        r[act] = torch.where(acc[:, None], rt, ra)
        cnew = torch.where(acc, ct, ca)
        cost[act] = cnew
        lnew = torch.where(acc, (la / 3).clamp_min(1e-12), la * 4)
        lam[act] = lnew
        # predicted decrease of the Gauss-Newton model: nothing left to gain -> stop
        pred = -(g * step).sum(1) - 0.5 * (step[:, None, :] @ JTJ @ step[..., None])[:, 0, 0]
        small_step = (step.abs() <= 1e-12 * (Pa.abs() + 1e-8)).all(1)
        done[act] = (acc & (rel < 1e-10)) | (lnew > 1e8) | (cnew <= ytol[act]) \
            | (solved & ((pred <= 1e-13 * ca) | small_step))
    return P, cost


# ---------------------------------------------------------------------------------------
# main entry points
# ---------------------------------------------------------------------------------------
def fit_edges(x, y, library=None, *, required_derivative_order: int | None = None,
              complexity_weight: float = 1.0, r2_threshold: float = 0.999,
              exact_tol: float = 1e-9, n_coarse: int = 512, n_refine: int = 4096,
              n_starts: int = 3, max_iter: int = 60,
              max_elements: int = 2**21, num_threads: int | None = 1) -> list[EdgeFit]:
    """Fit every library function to every edge.

    Args:
        x: inputs, ``(n,)`` shared by all edges or ``(E, n)`` one row per edge
            (rows that are identical are fitted as one group).
        y: outputs, ``(n,)`` or ``(E, n)``.
        library: ``None`` (default library), a :class:`Library`, or a list of names.
        required_derivative_order: derivative order the PDE needs (2 for a Laplacian);
            functions whose derivative of that order vanishes are admissible only for
            exact fits (``1 - R^2 < exact_tol``).
        complexity_weight, r2_threshold: selection rule and "recovered" flag.
        n_coarse, n_refine: points used for the grid search and for refinement (evenly
            spread subsamples; R^2 is always reported on all points).
        n_starts: grid optima refined per (edge, function).
        max_elements: bound on the numbers held by one working tensor (memory bound).
        num_threads: torch intra-op threads while fitting (restored afterwards; None keeps
            the current setting). The tensors here are small; one thread is several times
            faster than two on a busy 2-core machine (measured 1.1 s vs 12-30 s).

    Returns:
        one :class:`EdgeFit` per edge, candidates ranked best first.
    """
    lib = get_library(library)
    fns = list(lib)
    X = _as_2d(x, "x")
    Yall = _as_2d(y, "y")
    E, n = Yall.shape
    if X.shape[1] != n:
        raise ValueError(f"x has {X.shape[1]} points per edge, y has {n}")
    if X.shape[0] not in (1, E):
        raise ValueError(f"x has {X.shape[0]} rows for {E} edges")
    if n < 2:
        raise ValueError("need at least two points per edge")
    if X.shape[0] == 1:
        groups = [(X[0], torch.arange(E))]
    else:
        uniq, inv = np.unique(X.numpy(), axis=0, return_inverse=True)
        inv = np.asarray(inv).reshape(-1)
        groups = [(torch.from_numpy(uniq[g]), torch.from_numpy(np.nonzero(inv == g)[0]))
                  for g in range(uniq.shape[0])]

    with _threads(num_threads):
        cands = _fit_all(groups, Yall, fns, n_coarse, n_refine, n_starts, max_iter,
                         max_elements)
    out = []
    for row in cands:
        ranked = rank_candidates(row, complexity_weight=complexity_weight,
                                 required_derivative_order=required_derivative_order,
                                 exact_tol=exact_tol)
        out.append(EdgeFit(ranked, r2_threshold))
    return out


def fit_edge(x, y, library=None, **options) -> EdgeFit:
    """Fit one edge (``x``, ``y`` of shape ``(n,)``); options as :func:`fit_edges`."""
    return fit_edges(x, y, library, **options)[0]


@dataclass
class _Group:
    rows: torch.Tensor  # edge indices
    t: torch.Tensor  # (n,) normalised inputs in [-1, 1]
    m: float
    s: float
    i_c: torch.Tensor  # coarse subsample
    i_r: torch.Tensor  # refinement subsample


def _fit_all(groups, Y, fns, n_coarse, n_refine, n_starts, max_iter, max_elements):
    E, n = Y.shape
    G = []
    T = torch.empty((E, n), dtype=_DT)
    for xg, rows in groups:
        xmin, xmax = float(xg.min()), float(xg.max())
        m = 0.5 * (xmax + xmin)
        s = 0.5 * (xmax - xmin)
        if not s > 0:
            s = 1.0
        t = (xg - m) / s
        T[rows] = t
        G.append(_Group(rows, t, m, s, _even_subsample(t, n_coarse),
                        _even_subsample(t, n_refine)))
    shared = len(G) == 1
    ym = Y.mean(1)
    Yc = Y - ym[:, None]
    ys = Yc.pow(2).mean(1).sqrt()
    const = ys <= 1e-13 * ym.abs().clamp_min(1e-300)
    ys_safe = torch.where(const | (ys == 0), torch.ones_like(ys), ys)
    Yn = Yc / ys_safe[:, None]  # centred, unit variance (rows of constant y are ~0)
    sst = (Yn * Yn).sum(1)
    m_e = torch.empty(E, dtype=_DT)
    s_e = torch.empty(E, dtype=_DT)
    n_r = G[0].i_r.shape[0]
    T_r = torch.empty((E, n_r), dtype=_DT)
    Y_r = torch.empty((E, n_r), dtype=_DT)
    Yc_sub, C_scale = [], []
    for g in G:
        m_e[g.rows] = g.m
        s_e[g.rows] = g.s
        T_r[g.rows] = g.t[g.i_r]
        Y_r[g.rows] = Yn[g.rows][:, g.i_r]
        ysub = Yn[g.rows][:, g.i_c]
        ysub = ysub - ysub.mean(1, keepdim=True)
        nrm = ysub.norm(dim=1)
        Yc_sub.append(ysub / nrm.clamp_min(1e-300)[:, None])
        C_scale.append(nrm)
    if shared:  # broadcast views: no copies of the shared inputs
        T = G[0].t.expand(E, n)

    cands: list[list[Candidate]] = [[] for _ in range(E)]
    for fn in fns:
        # coarse search, one group (shared inputs) at a time
        K = None
        parts = []
        for g, ysub, nrm in zip(G, Yc_sub, C_scale):
            a0, b0, C0, D0, r0 = _coarse(fn, g.t[g.i_c], ysub, n_starts, max_elements)
            parts.append((g.rows, a0, b0, C0 * nrm[:, None], r0))
            K = a0.shape[1] if K is None else min(K, a0.shape[1])
        P0 = torch.zeros((E, K, 4), dtype=_DT)
        alive = torch.zeros((E, K), dtype=torch.bool)
        for rows, a0, b0, C0, r0 in parts:
            P0[rows] = torch.stack([a0[:, :K], b0[:, :K], C0[:, :K],
                                    torch.zeros_like(a0[:, :K])], -1)
            alive[rows] = torch.isfinite(r0[:, :K])
        P0 = torch.where(alive[..., None], P0, torch.zeros_like(P0)).reshape(E * K, 4)
        alive = alive.reshape(-1)
        erow = torch.arange(E).repeat_interleave(K)
        # refinement, all edges and starts batched, chunked by memory
        bc = chunk_rows(n_r, max_elements, 6)
        Ps, costs = [], []
        for i0 in range(0, E * K, bc):
            sl = slice(i0, min(E * K, i0 + bc))
            Tb, Yb = T_r[erow[sl]], Y_r[erow[sl]]
            P = P0[sl].clone()
            if "c" not in fn.fixed:  # D from the refinement data (C kept)
                z = _eval(fn, P[:, 0:1] * Tb + P[:, 1:2])
                P[:, 3] = torch.nan_to_num((Yb - P[:, 2:3] * z).mean(1))
            else:
                P[:, 3] = Yb.mean(1)
            P, cost = _lm(fn, Tb, Yb, P, max_iter)
            cost = torch.where(alive[sl], cost, torch.full_like(cost, math.inf))
            Ps.append(P)
            costs.append(cost)
        P = torch.cat(Ps).reshape(E, K, 4)
        cost = torch.cat(costs).reshape(E, K)
        kbest = cost.argmin(1)
        Pb = P[torch.arange(E), kbest]  # (E, 4)
        ok = torch.isfinite(cost[torch.arange(E), kbest])
        sse = _sse_full(fn, T, Yn, Pb, ok, max_elements)
        r2 = torch.where(sst > 0, 1.0 - sse / sst.clamp_min(1e-300), torch.zeros_like(sse))
        r2 = torch.where(ok & torch.isfinite(r2), r2, torch.full_like(r2, -math.inf))
        for e in range(E):
            if bool(const[e]):
                valid = bool(ok[e]) or "c" in fn.fixed or fn.domain is None
                a, b, c, d = fn.canonicalize(1.0, 0.0, 0.0, float(ym[e]))
                cands[e].append(Candidate(fn.name, 1.0 if valid else -math.inf, a, b, c, d,
                                          fn.complexity, function=fn))
                continue
            r2e = float(r2[e])
            if not math.isfinite(r2e):
                nan = math.nan
                cands[e].append(Candidate(fn.name, -math.inf, nan, nan, nan, nan,
                                          fn.complexity, function=fn))
                continue
            al, be, C, D = (float(v) for v in Pb[e])
            m, s = float(m_e[e]), float(s_e[e])
            # back to x units: alpha*t + beta = (alpha/s) x + (beta - alpha m / s)
            a, b = al / s, be - al * m / s
            c, d = C * float(ys_safe[e]), D * float(ys_safe[e]) + float(ym[e])
            a, b, c, d = fn.canonicalize(a, b, c, d)
            cands[e].append(Candidate(fn.name, r2e, a, b, c, d, fn.complexity, function=fn))
    return cands


def _sse_full(fn, T, Yn, P, ok, max_elements):
    """Sum of squared residuals on all points, chunked over rows and columns."""
    E, n = Yn.shape
    sse = torch.zeros(E, dtype=_DT)
    cols = min(n, max(1, int(max_elements) // 2))
    rows = chunk_rows(cols, max_elements, 2)
    Psafe = torch.where(ok[:, None], P, torch.zeros_like(P))
    for r0 in range(0, E, rows):
        rs = slice(r0, min(E, r0 + rows))
        for c0 in range(0, n, cols):
            cs = slice(c0, min(n, c0 + cols))
            Pr = Psafe[rs]
            z = _eval(fn, Pr[:, 0:1] * T[rs, cs] + Pr[:, 1:2])
            res = Pr[:, 2:3] * z + Pr[:, 3:4] - Yn[rs, cs]
            sse[rs] += (res * res).sum(1)
    return torch.where(ok, sse, torch.full_like(sse, math.inf))
