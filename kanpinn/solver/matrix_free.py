"""Matrix-free Levenberg-Marquardt: (JᵀJ + λD) δ = -Jᵀr by preconditioned conjugate
gradients, from Jacobian products only.

The dense optimiser (``lm.py``) forms J, points × parameters numbers, and a P × P normal
matrix: fine for a few thousand parameters, impossible for tens of thousands (a
[2, 32, 32, 1] KAN at G = 20 has 28 000 parameters: JᵀJ alone would be 6 GB). Here JᵀJ
is never formed, and J only in bounded pieces (or not at all). Three sources of
products (``jacobian``; the solve option ``lm_cg_products`` of the registered "lm-cg"):

- structured rows (default when they apply): the layers' own per-point Jacobian rule
  (``jet.recording``, as ``lm.py`` uses it), evaluated on small chunks of points. Jᵀr and
  the exact diag(JᵀJ) come from the same pass. When all of J fits in ``store_bytes``
  (float32 copy) it is kept for the step and each CG product is two matrix-vector
  products; otherwise each product rebuilds the chunks (memory: a chunk's rows ×
  parameters, whatever the number of points). A one-time check against autograd's Jᵀu
  guards against residuals the rule does not cover.
- layer records (``"records"``, ``record_products.py``): J is never formed. The signals
  of the residual blocks at each KAN layer's outputs are kept for the step; J·v is one
  tangent evaluation of each layer (its jet is linear in its weights), Jᵀu one backward
  of each layer alone. Per CG iteration about an evaluation: the cheapest J-free route
  (session 9: 1.6x faster than autograd's, and a system's step ~2.3-3x a scalar's at
  equal width and equal CG work, where the stored J's is ~3.7-5x), but dearer in seconds
  than the stored J while that fits (docs/navier_stokes.md, "Session 9"). Checked once
  against autograd's Jᵀu; residuals the records do not cover use autograd.
- autograd (the fallback, and for unknown problem coefficients): Jᵀu is one backward
  pass of u·r; J·v the double-backward trick (g(u) = Jᵀu is linear in u, so
  ∂(g(u)·v)/∂u = Jv); diag(JᵀJ) by Hutchinson, E[(Jᵀz)²] over Rademacher z. Any residual
  autograd can differentiate qualifies; memory is a chunk's rows × the network's width.
  Forward-mode J·v (``torch.autograd.forward_ad``) does not run through the KAN layers'
  fused jet nodes, which define no ``jvp`` (session 9).

Damping follows ``lm.py``: D = sqrt(diag JᵀJ) · mean(sqrt(diag JᵀJ)), Jacobi
preconditioner diag(JᵀJ) + λD, Nielsen's update of λ from the ratio of actual to
predicted decrease, except that λ only falls after a CG solve that converged (a
truncated one says λ is as small as the CG budget can use). CG is an inexact Newton
solve: its relative tolerance is min(``forcing``, sqrt(‖Jᵀr‖/‖Jᵀr₀‖)), floored at
``cg_tol``. A rejected step first tries a quarter of its length (one forward pass)
before paying for another solve.
"""
from __future__ import annotations

import copy
import math

import torch

from .. import jet
from ..errors import KanpinnError
from .jacobian import NotPointwise, layer_deltas
from .loss import PINNLoss
from .optimizers import ResidualStepper, register_optimizer
from .record_products import RecordProducts

__all__ = ["MatrixFreeLM", "conjugate_gradient", "hutchinson_diagonal", "ResidualProducts"]


def conjugate_gradient(apply_A, b, precond=None, tol=1e-6, maxiter=100, info=None):
    """Solve A x = b for SPD A given as ``apply_A(v)``, with an optional diagonal
    preconditioner ``precond`` (a vector M ≈ diag(A); steps use M⁻¹). Stops when
    ‖b - A x‖ ≤ tol·‖b‖. Returns (x, iterations); ``info["residual"]`` (when a dict is
    passed) receives b - A x, so that xᵀA x = xᵀ(b - residual) needs no extra product."""
    x = torch.zeros_like(b)
    r = b.clone()
    if info is not None:
        info["residual"] = r
    bnorm = float(b.norm())
    if bnorm == 0.0:
        return x, 0
    z = r / precond if precond is not None else r
    p = z.clone()
    rz = float(r @ z)
    for it in range(1, maxiter + 1):
        Ap = apply_A(p)
        pAp = float(p @ Ap)
        if not pAp > 0:                 # lost positive curvature to rounding: stop here
            return x, it - 1
        alpha = rz / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        if info is not None:
            info["residual"] = r
        if float(r.norm()) <= tol * bnorm:
            return x, it
        z = r / precond if precond is not None else r
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, maxiter


def hutchinson_diagonal(rmatvec, rows, probes, generator, dtype, device):
    """Unbiased estimate of diag(JᵀJ) = E[(Jᵀz)²] over Rademacher z (``rows`` long),
    averaged over ``probes`` vectors. ``rmatvec(u)`` returns Jᵀu."""
    acc = None
    for _ in range(probes):
        z = (torch.randint(0, 2, (rows,), generator=generator, dtype=torch.int64) * 2 - 1)
        g = rmatvec(z.to(dtype=dtype, device=device))
        acc = g * g if acc is None else acc + g * g
    return acc / probes


def _flat(grads, params):
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


class ResidualProducts:
    """J·v and Jᵀ·u for one residual vector ``r`` (M,) that still holds its graph.

    The graph of g(u) = Jᵀu (create_graph) is built on first use of ``matvec`` and kept,
    so each product afterwards is one backward pass."""

    def __init__(self, r: torch.Tensor, params):
        self.r, self.params = r, list(params)
        self._u = self._g = None

    def rmatvec(self, u):
        g = torch.autograd.grad(self.r, self.params, grad_outputs=u.to(self.r.dtype),
                                retain_graph=True, allow_unused=True)
        return _flat(g, self.params)

    def matvec(self, v):
        if self._g is None:
            self._u = torch.zeros_like(self.r, requires_grad=True)
            g = torch.autograd.grad(self.r, self.params, grad_outputs=self._u,
                                    create_graph=True, allow_unused=True)
            # unused parameters (no path to r) have zero columns: leave them out
            self._g = [(gi, p) for gi, p in zip(g, self.params) if gi is not None]
        if not self._g:
            return torch.zeros_like(self.r)
        outs, vs, o = [], [], 0
        offsets = {}
        for p in self.params:
            offsets[id(p)] = o
            o += p.numel()
        for gi, p in self._g:
            a = offsets[id(p)]
            outs.append(gi)
            vs.append(v[a:a + p.numel()].view_as(gi).to(gi.dtype))
        (jv,) = torch.autograd.grad(outs, self._u, grad_outputs=vs, retain_graph=True, allow_unused=True)
        return jv if jv is not None else torch.zeros_like(self.r)


def _offsets(params):
    out, o = {}, 0
    for p in params:
        out[p] = (o, o + p.numel())
        o += p.numel()
    return out, o


class MatrixFreeLM:
    """Levenberg-Marquardt whose linear solves use conjugate gradients on Jacobian
    products (the interface of ``LevenbergMarquardt``: ``step``, ``state``,
    ``load_state``).

    Three ways to the products (``jacobian``):

    - ``"structured"``: each chunk's rows of J come from the layers' own per-point rule
      (as the dense ``lm.py`` forms them), ``build`` interior points at a time so that no
      temporary exceeds a few tens of MB. diag(JᵀJ) is then exact, and when the whole J
      fits in ``store_bytes`` it is kept for the step: each CG product is two
      matrix-vector products on it (measured ~12x cheaper than a double backward at
      2048 points, [2, 32, 32, 1] G = 20). Beyond ``store_bytes`` the chunks are rebuilt
      for every product: memory is ``build`` rows × parameters, whatever the points.
    - ``"autograd"``: J·v by the double-backward trick and diag(JᵀJ) by Hutchinson, any
      residual autograd can differentiate; memory is ``chunk`` rows × the network's width,
      whatever the parameters. Used when the structured rows do not match autograd's
      (residuals outside the jets, coupled points) or the problem has unknown
      coefficients; ``"auto"`` (default) tries the structured rows first.
    - ``"records"``: J·v and Jᵀu from the KAN layers' records (``record_products``), J
      never formed, the diagonal by Hutchinson; autograd's products where the records
      do not cover the residual.

    Options: ``lam`` initial damping, ``lam_min`` its floor; ``cg_iters`` the CG budget per solve (with rebuilt
    chunks, ``cg_iters_rebuild``); ``cg_tol`` the largest relative CG residual; the
    tolerance of a step is the Eisenstat-Walker forcing term min(cg_tol,
    sqrt(‖Jᵀr‖ / ‖Jᵀr₀‖)) (loose while far from the solution, tighter near it);
    ``probes`` Rademacher vectors for the autograd diagonal; ``chunk`` interior points
    evaluated at once by the autograd products (None: all, graphs kept for the step);
    ``seed`` for the probes."""

    def __init__(self, loss: PINNLoss, params, inverse=(), lam=1e-3, cg_iters=50, cg_tol=1e-4,
                 probes=8, chunk=None, seed=0, comm=None, jacobian="auto", store_bytes=1 << 30,
                 build=None, cg_iters_rebuild=10, store_dtype=torch.float32, forcing=0.1, lam_min=1e-15):
        self.loss_fn = loss
        # data parallel: every product and loss is summed over ranks (identity in one
        # process), so CG runs on the global normal equations, identically on each rank
        self.sum_ = comm.sum_ if comm is not None else (lambda t: t)
        self.params, self.inverse = list(params), list(inverse)
        self.all = self.params + self.inverse
        checks = {"lam": (lam, float, lambda v: v > 0), "cg_tol": (cg_tol, float, lambda v: 0 < v < 1),
                  "cg_iters": (cg_iters, int, lambda v: v >= 1), "probes": (probes, int, lambda v: v >= 1),
                  "cg_iters_rebuild": (cg_iters_rebuild, int, lambda v: v >= 1),
                  "store_bytes": (store_bytes, int, lambda v: v >= 0)}
        for name, (v, kind, ok) in checks.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and int(v) != v) or not ok(v):
                raise KanpinnError(f"MatrixFreeLM: {name} must be a {'positive integer' if kind is int else 'positive number'}"
                                   f"{' below 1' if name == 'cg_tol' else ''}, got {v!r}")
        for name, v in (("chunk", chunk), ("build", build)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise KanpinnError(f"MatrixFreeLM: {name} must be None or a positive integer, got {v!r}")
        if jacobian not in ("auto", "structured", "autograd", "records"):
            raise KanpinnError("MatrixFreeLM: jacobian must be 'auto', 'structured', 'autograd' or 'records', "
                               f"got {jacobian!r}")
        self.lam, self.nu = float(lam), 2.0
        self.cg_iters, self.cg_tol, self.probes, self.chunk = int(cg_iters), float(cg_tol), int(probes), chunk
        self.cg_iters_rebuild, self.store_bytes, self.build = int(cg_iters_rebuild), int(store_bytes), build
        if store_dtype not in (None, torch.float32, torch.float64):
            raise KanpinnError("MatrixFreeLM: store_dtype must be None, torch.float32 or torch.float64, "
                               f"got {store_dtype!r}")
        if isinstance(forcing, bool) or not isinstance(forcing, (int, float)) or not 0 < forcing < 1:
            raise KanpinnError(f"MatrixFreeLM: forcing must be a number in (0, 1), got {forcing!r}")
        self.store_dtype, self.forcing = store_dtype, float(forcing)
        if isinstance(lam_min, bool) or not isinstance(lam_min, (int, float)) or not lam_min > 0:
            raise KanpinnError(f"MatrixFreeLM: lam_min must be a positive number, got {lam_min!r}")
        self.lam_min = float(lam_min)
        self.seed, self.n_steps = int(seed), 0
        self.last_cg_iterations = 0
        self.offsets, self.n_params = _offsets(self.all)
        # "structured" once the first chunk's rows matched autograd's, "autograd" when
        # they did not (or were not asked for); decided on the first step
        structured = jacobian == "structured" or (jacobian == "auto" and not self.inverse)
        # "records": products from the layers' records (J never formed), checked against
        # autograd's Jᵀu on the first step; "autograd" when they do not cover the residual
        # (or for unknown problem coefficients, which no layer record sees)
        records = jacobian == "records" and not self.inverse
        self.mode = None if structured else ("records" if records else "autograd")
        self._records_checked = False
        self._want_structured = jacobian == "structured"
        self._buf = None                # the stored J, reused from step to step
        self._g0 = None                 # ‖Jᵀr‖ at the first step (forcing terms)

    # ------------------------------------------------------------------ rows
    def _views(self, size=None):
        """PINNLoss views, one per chunk of ``size`` interior points (default ``chunk``);
        the conditions' rows all go with the first (boundary sets are small next to the
        interior)."""
        loss = self.loss_fn
        colloc = loss.colloc
        n = colloc.interior.shape[0]
        size = n if size is None and self.chunk is None else min(size or self.chunk, n)
        if size == n:                   # one chunk: the loss itself (its points, its caches)
            return [loss], n
        views = []
        for a in range(0, n, size):
            sub = copy.copy(colloc)
            sub.interior = colloc.interior.detach()[a:a + size].requires_grad_(True)
            if a > 0:
                sub.conditions = []
            view = copy.copy(loss)
            view.colloc = sub
            if loss.interior_weights is not None:
                view.interior_weights = loss.interior_weights[a:a + size]
            views.append(view)
        return views, n

    @staticmethod
    def _scaled(view, n_interior):
        """Scaled residual rows of one view, block by block, as in the full loss:
        sqrt(w / M) · r with M the full count of the block's points. Returns
        ([rows (m_b,)], [(name, w, raw)])."""
        blocks = view.blocks()
        rows = []
        for name, w, r in blocks:
            m = n_interior if view.group[name] == "pde" else r.shape[0]
            rows.append(r * math.sqrt(w / m))
        return rows, blocks

    @classmethod
    def _rows(cls, view, n_interior):
        """(r (m,), blocks): the scaled rows of one view as one vector."""
        rows, blocks = cls._scaled(view, n_interior)
        return torch.cat(rows), blocks

    def _residual(self, views=None):
        """Full scaled residual vector under no_grad (trial steps)."""
        views, n = (views, self.loss_fn.colloc.interior.shape[0]) if views else self._views()
        with torch.no_grad():
            return torch.cat([self._rows(v, n)[0] for v in views])

    @staticmethod
    def _add_parts(parts, view, blocks, n):
        for name, w, raw in blocks:          # w · mean(raw²) over the block's full count
            m = n if view.group[name] == "pde" else raw.shape[0]
            parts[name] = parts.get(name, 0.0) + w * float((raw.detach().double() ** 2).sum()) / m

    # ------------------------------------------------------------------ structured rows
    def _build_size(self, n):
        """Interior points per structured chunk: the per-point parameter gradients of a
        chunk (and the layers' temporaries, a few times that) stay near 16 MB, below the
        size at which the allocator maps fresh pages for every tensor (first-touch page
        faults measured to cost more than the arithmetic here)."""
        if self.build is not None:
            return min(self.build, n)
        return max(32, min(n, (16 << 20) // (8 * max(self.n_params, 1))))

    def _structured_chunk(self, view, n, out, check=False):
        """Write the structured Jacobian of one view's rows into ``out`` (m, P) (zeroed
        here). Returns (r (m,) detached, blocks). With ``check``, compares Jᵀu with
        autograd's for a random u and raises NotPointwise when they differ."""
        with jet.recording() as recs, torch.enable_grad():
            rows, blocks = self._scaled(view, n)
        r = torch.cat(rows)
        m = r.shape[0]
        if out.shape[0] != m:
            raise NotPointwise(f"structured rows: expected {out.shape[0]} rows, got {m}")
        out.zero_()
        a = 0
        for bi, b in enumerate(rows):
            keep = check or bi < len(rows) - 1
            for rec, deltas in zip(recs, layer_deltas(b, recs, retain_graph=keep)):
                if deltas is None:
                    continue
                if rec.n_points != b.shape[0]:
                    raise NotPointwise(f"a residual block of {b.shape[0]} rows depends on an evaluation at "
                                       f"{rec.n_points} points")
                with torch.no_grad():
                    for p, g in rec.per_point_grads(deltas).items():
                        if p in self.offsets:
                            lo, hi = self.offsets[p]
                            out[a:a + b.shape[0], lo:hi] += g.reshape(b.shape[0], -1).to(out.dtype)
            a += b.shape[0]
        if check:
            u = torch.randn(m, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(r)
            exact = ResidualProducts(r, self.all).rmatvec(u).double()
            mine = (out.T @ u.to(out.dtype)).double()
            err = float((mine - exact).norm() / exact.norm().clamp_min(1e-300))
            if not err < (1e-8 if out.dtype == torch.float64 else 1e-3):
                raise NotPointwise(f"structured rows differ from autograd's (rel. error {err:.1e})")
        return r.detach(), blocks

    def _structured_pass(self, views, n, fn, store=None):
        """One pass over the structured chunks: each chunk's rows are built in a small
        scratch buffer (reused), handed to ``fn(Jc, rc)`` and, with ``store`` (an (M, P)
        tensor), copied into it. Returns (r, parts)."""
        parts, rs, o = {}, [], 0
        scratch = None
        for v in views:
            m = self._row_count(v)
            if scratch is None or scratch.shape[0] < m:
                scratch = torch.empty(m, self.n_params, dtype=v.colloc.interior.dtype,
                                      device=v.colloc.interior.device)
            Jc = scratch[:m]
            r, blocks = self._structured_chunk(v, n, Jc, check=self.mode is None)
            self.mode = "structured"
            self._add_parts(parts, v, blocks, n)
            fn(Jc, r)
            if store is not None:
                store[o:o + m].copy_(Jc)
            rs.append(r)
            o += m
        return torch.cat(rs), parts

    def _count_rows(self, first):
        """Rows per interior point and the conditions' rows, from the first view (which
        holds the conditions), once per point set."""
        colloc = self.loss_fn.colloc
        key = (colloc.interior.shape[0],) + tuple(len(next(iter(c.values()))) if c else 0 for c in colloc.conditions)
        if getattr(self, "_rows_per", (None,))[0] != key:
            with torch.no_grad():
                blocks = first.blocks()
            per_point = sum(1 for name, _, r in blocks if first.group[name] == "pde")
            fixed = sum(r.shape[0] for name, _, r in blocks if first.group[name] != "pde")
            self._rows_per = (key, per_point, fixed)

    def _row_count(self, view):
        """Residual rows of a view: every interior term's columns and every condition's."""
        _, per_point, fixed = self._rows_per
        return per_point * view.colloc.interior.shape[0] + (fixed if view.colloc.conditions else 0)

    def _prepare_structured(self):
        """Jᵀr, exact diag(JᵀJ), the loss, its parts and the normal product for this
        step, from structured rows. Jᵀr and the diagonal come from the rows in the
        model's precision; the stored copy for the CG products is in ``store_dtype``
        (float32 by default: half the memory and time of each product; an inexact
        Newton step needs no more, the gradient and the losses stay exact)."""
        colloc = self.loss_fn.colloc
        views, n = self._views(self._build_size(colloc.interior.shape[0]))
        self._count_rows(views[0])
        total_rows = sum(self._row_count(v) for v in views)
        sdt = self.store_dtype or colloc.interior.dtype
        itemsize = torch.empty((), dtype=sdt).element_size()
        store = None
        if total_rows * self.n_params * itemsize <= self.store_bytes:
            if self._buf is None or self._buf.shape[0] != total_rows or self._buf.dtype != sdt:
                self._buf = None        # free the old one before the new one is allocated
                self._buf = torch.empty(total_rows, self.n_params, dtype=sdt, device=colloc.interior.device)
            store = self._buf
        dt = torch.float64
        acc = {"g": torch.zeros(self.n_params, dtype=dt, device=colloc.interior.device)}
        acc["d"] = torch.zeros_like(acc["g"])

        def take(Jc, rc):
            acc["g"] += (Jc.T @ rc.to(Jc.dtype)).double()
            for piece in Jc.split(64):              # squares in small pieces: no big temporary
                acc["d"] += (piece * piece).sum(0).double()

        r, parts = self._structured_pass(views, n, take, store)
        rd = r.double()
        loss = float(self.sum_(rd @ rd))
        grad, diag = self.sum_(acc["g"]), self.sum_(acc["d"])
        if store is not None:
            J = store

            def normal(v):
                return self.sum_((J.T @ (J @ v.to(J.dtype))).double())
        else:
            def normal(v):
                out = torch.zeros_like(v)

                def prod(Jc, rc):
                    out.add_((Jc.T @ (Jc @ v.to(Jc.dtype))).double())
                self._structured_pass(views, n, prod)
                return self.sum_(out)
        return grad, diag, loss, parts, normal, store is not None

    def _chunk_sums(self, prod, rd, gen, grad, diag, loss):
        """The running sums with one chunk's Jᵀr, Hutchinson diagonal and squared
        residual added (``prod``: the chunk's products, ``rd``: its residual, detached)."""
        g = prod.rmatvec(rd)
        d = hutchinson_diagonal(prod.rmatvec, rd.shape[0], self.probes, gen, rd.dtype, rd.device)
        return (g if grad is None else grad + g, d if diag is None else diag + d,
                loss + float(rd.double() @ rd.double()))

    # ------------------------------------------------------------------ autograd products
    def _gather(self):
        """One pass over the chunks: Jᵀr, the Hutchinson diagonal, the loss and its
        parts. Keeps the chunk's graph (for the CG products) when there is one chunk."""
        views, n = self._views()
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + self.n_steps)
        grad = diag = None
        loss = 0.0
        parts = {}
        kept = []
        for view in views:
            with torch.enable_grad():
                r, blocks = self._rows(view, n)
            prod = ResidualProducts(r, self.all)
            grad, diag, loss = self._chunk_sums(prod, r.detach(), gen, grad, diag, loss)
            self._add_parts(parts, view, blocks, n)
            if len(views) == 1:
                kept = [prod]
        loss = float(self.sum_(torch.tensor(loss, dtype=torch.float64, device=grad.device)))
        return self.sum_(grad), self.sum_(diag), loss, parts, kept, views, n

    def _normal_product(self, v, kept, views, n):
        """JᵀJ v, chunk by chunk (re-evaluating each chunk) unless a graph is kept."""
        if kept:
            return self.sum_(kept[0].rmatvec(kept[0].matvec(v)))
        out = None
        for view in views:
            with torch.enable_grad():
                r, _ = self._rows(view, n)
            prod = ResidualProducts(r, self.all)
            jtjv = prod.rmatvec(prod.matvec(v))
            out = jtjv if out is None else out + jtjv
        if len(views) == 1:         # one chunk: keep this graph until the parameters move
            kept.append(prod)
        return self.sum_(out)

    def _prepare_records(self):
        """Jᵀr, a Hutchinson diagonal, the loss and its parts, and the normal product, from
        the layer records of each chunk (``record_products``): per CG iteration one
        tangent evaluation and one backward of the layers alone."""
        views, n = self._views()
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + self.n_steps)
        prods, parts, grad, diag, loss = [], {}, None, None, 0.0
        for view in views:
            with jet.recording() as recs, torch.enable_grad():
                rows, blocks = self._scaled(view, n)
            prod = RecordProducts(rows, recs, self.offsets, self.n_params)
            r = torch.cat(rows)
            if not self._records_checked:   # once: the records cover the whole residual
                u = torch.randn(r.shape[0], generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(r)
                exact = ResidualProducts(r, self.all).rmatvec(u).double()
                err = float((prod.rmatvec(u).double() - exact).norm() / exact.norm().clamp_min(1e-300))
                if not err < (1e-8 if r.dtype == torch.float64 else 1e-3):
                    raise NotPointwise(f"record products differ from autograd's (rel. error {err:.1e})")
                self._records_checked = True
            rd = r.detach()
            del rows, r                     # the residual's graph: the layers' nodes stay with prod
            grad, diag, loss = self._chunk_sums(prod, rd, gen, grad, diag, loss)
            self._add_parts(parts, view, blocks, n)
            prods.append(prod)
        loss = float(self.sum_(torch.tensor(loss, dtype=torch.float64, device=grad.device)))

        def normal(v):
            if not prods:               # cleared after a rejected trial (the parameters were
                for view in views:      # written in place): the records again, same values
                    with jet.recording() as recs, torch.enable_grad():
                        rows, _ = self._scaled(view, n)
                    prods.append(RecordProducts(rows, recs, self.offsets, self.n_params))
            return self.sum_(sum(p.rmatvec(p.matvec(v)) for p in prods).to(v.dtype))
        normal.kept = prods
        return self.sum_(grad), self.sum_(diag), loss, parts, normal, True

    def _prepare_autograd(self):
        grad, diag, loss, parts, kept, views, n = self._gather()

        def normal(v):
            return self._normal_product(v, kept, views, n)
        normal.kept = kept
        return grad, diag, loss, parts, normal, bool(kept)

    def _apply(self, delta, sign=1.0):
        with torch.no_grad():
            o = 0
            for p in self.all:
                k = p.numel()
                p.add_(sign * delta[o:o + k].view_as(p).to(p.dtype))
                o += k

    # ------------------------------------------------------------------ iteration
    def direction(self, lam, grad, damping, normal, precond_diag, tol=None, maxiter=None, info=None):
        """CG solution of (JᵀJ + λ·diag(damping)) δ = -grad with the Jacobi
        preconditioner diag(JᵀJ) + λ·damping. Returns (δ, iterations)."""
        def apply_A(v):
            return normal(v) + lam * damping * v
        pre = (precond_diag + lam * damping).clamp_min(1e-300)
        return conjugate_gradient(apply_A, -grad, pre, self.cg_tol if tol is None else tol,
                                  self.cg_iters if maxiter is None else maxiter, info)

    @staticmethod
    def damping(diag):
        """D = sqrt(diag) · mean(sqrt(diag)), floored (as in ``lm.py``)."""
        root = diag.clamp_min(0).sqrt()
        floor = 1e-12 * float(root.max().clamp_min(1e-150)) ** 2
        return (root * root.mean()).clamp_min(floor)

    def _prepare(self):
        if self.mode == "records":
            try:
                return self._prepare_records()
            except NotPointwise:
                self.mode = "autograd"     # the records do not cover the residual
        if self.mode != "autograd":
            try:
                return self._prepare_structured()
            except NotPointwise:
                if self._want_structured:
                    raise
                self.mode = "autograd"     # the rows are not covered: autograd from now on
        return self._prepare_autograd()

    def step(self):
        """One LM iteration. Returns (loss, {term: loss}, accepted)."""
        grad, diag, loss0, parts, normal, cheap = self._prepare()
        self.n_steps += 1
        gnorm = float(grad.norm())
        if self._g0 is None:
            self._g0 = max(gnorm, 1e-300)
        # inexact Newton (Eisenstat-Walker-style forcing term): solve loosely while the
        # gradient is large, tighter as it falls; an accurate solve far from the
        # solution is wasted work. Never looser than ``forcing``, never tighter than cg_tol
        tol = max(self.cg_tol, min(self.forcing, math.sqrt(gnorm / self._g0)))
        maxiter = self.cg_iters if cheap or self.mode == "autograd" else min(self.cg_iters, self.cg_iters_rebuild)
        D = self.damping(diag)
        saved = [p.detach().clone() for p in self.all]
        # trial losses: chunks of ``chunk`` points (all up to WHOLE_UP_TO without one)
        trial_views = self._views(self.chunk or WHOLE_UP_TO)[0] if self.mode == "structured" else None

        def trial(delta, alpha=1.0):
            with torch.no_grad():
                for p, s in zip(self.all, saved):
                    p.copy_(s)
            self._apply(alpha * delta)
            r_new = self._residual(trial_views).double()
            return float(self.sum_(r_new @ r_new))

        for _ in range(30):
            cg = {}
            delta, its = self.direction(self.lam, grad, D, normal, diag, tol, maxiter, cg)
            self.last_cg_iterations = its
            # ‖Jδ‖² = δᵀ(JᵀJ + λD)δ - λδᵀDδ, and (JᵀJ + λD)δ = -g - (CG residual):
            # the predicted decrease without another product (a whole pass when rebuilt)
            jj = float(delta @ (-grad - cg["residual"])) - self.lam * float(delta @ (D * delta))
            predicted = float(-2.0 * (delta @ grad)) - jj
            loss_new = trial(delta)
            rho = (loss0 - loss_new) / predicted if predicted > 0 else -1.0
            if loss_new == loss_new and rho > 0 and loss_new < loss0:
                # Nielsen's update, but λ falls only when CG converged: a truncated solve
                # says λ is already as small as CG can use (below it the system is too
                # ill-conditioned for the budget, and steps start failing at full cost)
                if its < maxiter or rho > 0.75:
                    self.lam = max(self.lam * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), self.lam_min)
                self.nu = 2.0
                return loss_new, parts, True
            kept = getattr(normal, "kept", None)
            if kept is not None:
                kept.clear()            # the trial moved the parameters in place: the
            self.lam *= self.nu         # kept graph is stale (rebuilt on next use)
            self.nu *= 2.0
            # the model over-trusted J: a quarter of the step (one forward pass) often
            # still lowers the loss, where a new solve costs a whole CG run
            if predicted > 0:
                short = trial(delta, 0.25)
                if short == short and short < loss0:
                    self.nu = 2.0       # λ stays raised; the next rejection starts afresh
                    return short, parts, True
            with torch.no_grad():
                for p, s in zip(self.all, saved):
                    p.copy_(s)
            if self.lam > 1e16:
                break
        return loss0, parts, False

    def fixed_work(self, iterations):
        """The work of a step that one solve settles, for cost measurements
        (``kanpinn.bench.systems.step_ratio``): the step's preparation (gradient, diagonal,
        products' graph or stored J), exactly ``iterations`` CG iterations (no early stop:
        equal work whatever the conditioning) and the trial evaluation. The parameters are
        left as they were. Returns the CG iterations run (fewer only if CG lost positive
        curvature to rounding)."""
        grad, diag, _, _, normal, _ = self._prepare()
        delta, its = self.direction(self.lam, grad, self.damping(diag), normal, diag, 0.0, int(iterations))
        saved = [p.detach().clone() for p in self.all]
        self._apply(delta)
        self._residual(self._views(self.chunk or WHOLE_UP_TO)[0] if self.mode == "structured" else None)
        with torch.no_grad():
            for p, s in zip(self.all, saved):
                p.copy_(s)
        return its

    def state(self):
        # g0 (the first step's ‖Jᵀr‖) sets the forcing terms: a resumed run must keep it
        return {"lam": self.lam, "nu": self.nu, "n_steps": self.n_steps, "g0": self._g0}

    def load_state(self, s):
        self.lam, self.nu = float(s["lam"]), float(s["nu"])
        self.n_steps = int(s.get("n_steps", 0))
        self._g0 = None if s.get("g0") is None else float(s["g0"])


# interior points evaluated at once by the registered optimiser's autograd products and
# trial losses: all of them up to WHOLE_UP_TO (graphs kept for the step: fastest),
# chunks of CHUNK beyond (memory bounded by the chunk, whatever the number of points).
# Measured with autograd chunks of 4096 on a [2, 32, 32, 1] KAN at G = 20: peak RSS
# 2.2 GB on CPU, 1.8 GB on CUDA; the graph of a chunk grows linearly with its rows,
# hence 2048. The structured rows use their own, smaller chunks (``_build_size``):
# one whole default step at 65 536 + 1 024 points (J rebuilt for every product) peaked
# at 1 065 MB RSS on CPU
WHOLE_UP_TO, CHUNK = 8192, 2048


def _lm_cg(run, lr):
    params = [p for p in run.model.parameters() if p.requires_grad]
    n = run.loss.colloc.interior.shape[0]
    # the solve option lm_cg_products (checked at the door by kanpinn.options) picks the route
    inner = MatrixFreeLM(run.loss, params, list(run.params.values()), lam=run.lm_lam, comm=run.comm,
                         chunk=None if n <= WHOLE_UP_TO else CHUNK,
                         jacobian=run.opts.get("lm_cg_products", "auto"))
    return ResidualStepper(inner, run, "lm-cg")


register_optimizer("lm-cg", _lm_cg, monotone=True,
                   doc="matrix-free Levenberg-Marquardt: CG on Jacobian products (tens of thousands of parameters)")
