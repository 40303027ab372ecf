"""Matrix-free Levenberg-Marquardt: (JᵀJ + λD) δ = -Jᵀr by preconditioned conjugate
gradients, from Jacobian products only.

The dense optimiser (``lm.py``) forms J, points × parameters numbers, and a P × P normal
matrix: fine for a few thousand parameters, impossible for tens of thousands at 10⁵ rows
(a [2, 32, 32, 1] KAN at G = 20 has ~28 000). Here J is never formed:

- Jᵀu is one backward pass of u·r;
- J·v is the double-backward trick: g(u) = Jᵀu is linear in u, so ∂(g(u)·v)/∂u = Jv
  (one backward pass through the graph of the first);
- the Jacobi preconditioner and the damping use diag(JᵀJ), estimated by Hutchinson's
  rule diag(JᵀJ) = E[(Jᵀz)²] over Rademacher vectors z (``probes`` backward passes).

Everything goes through autograd, so any model and any residual that autograd can
differentiate qualify (systems with sliced outputs, residuals outside the jets). The
rows are split into chunks of interior points (``chunk``), each evaluated on its own
and dropped after use: memory is then bounded by chunk × the network's width, whatever
the number of points or parameters. With one chunk the graphs are kept for the whole
step instead (faster: no re-evaluation per product).

Damping follows ``lm.py``: D = sqrt(diag JᵀJ) · mean(sqrt(diag JᵀJ)), Nielsen's update
of λ from the ratio of actual to predicted decrease. CG stops at a relative residual of
``cg_tol`` or after ``cg_iters`` products (a truncated Newton step: the system is SPD
for λ > 0, so no negative curvature arises).
"""
from __future__ import annotations

import copy
import math

import torch

from ..errors import KanpinnError
from .loss import PINNLoss
from .optimizers import ResidualStepper, register_optimizer

__all__ = ["MatrixFreeLM", "conjugate_gradient", "hutchinson_diagonal", "ResidualProducts"]


def conjugate_gradient(apply_A, b, precond=None, tol=1e-6, maxiter=100):
    """Solve A x = b for SPD A given as ``apply_A(v)``, with an optional diagonal
    preconditioner ``precond`` (a vector M ≈ diag(A); steps use M⁻¹). Stops when
    ‖b - A x‖ ≤ tol·‖b‖. Returns (x, iterations)."""
    x = torch.zeros_like(b)
    r = b.clone()
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


class MatrixFreeLM:
    """Levenberg-Marquardt whose linear solves use conjugate gradients on Jacobian
    products (the interface of ``LevenbergMarquardt``: ``step``, ``state``,
    ``load_state``).

    Options: ``lam`` initial damping; ``cg_iters`` and ``cg_tol`` the CG budget per
    solve; ``probes`` Rademacher vectors for the diagonal of JᵀJ; ``chunk`` interior
    points evaluated at once (None: all, graphs kept for the step); ``seed`` for the
    probes."""

    def __init__(self, loss: PINNLoss, params, inverse=(), lam=1e-3, cg_iters=50, cg_tol=1e-4,
                 probes=8, chunk=None, seed=0, comm=None):
        self.loss_fn = loss
        # data parallel: every product and loss is summed over ranks (identity in one
        # process), so CG runs on the global normal equations, identically on each rank
        self.sum_ = comm.sum_ if comm is not None else (lambda t: t)
        self.params, self.inverse = list(params), list(inverse)
        self.all = self.params + self.inverse
        checks = {"lam": (lam, float, lambda v: v > 0), "cg_tol": (cg_tol, float, lambda v: 0 < v < 1),
                  "cg_iters": (cg_iters, int, lambda v: v >= 1), "probes": (probes, int, lambda v: v >= 1)}
        for name, (v, kind, ok) in checks.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and int(v) != v) or not ok(v):
                raise KanpinnError(f"MatrixFreeLM: {name} must be a {'positive integer' if kind is int else 'positive number'}"
                                   f"{' below 1' if name == 'cg_tol' else ''}, got {v!r}")
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise KanpinnError(f"MatrixFreeLM: chunk must be None or a positive integer, got {chunk!r}")
        self.lam, self.nu = float(lam), 2.0
        self.cg_iters, self.cg_tol, self.probes, self.chunk = int(cg_iters), float(cg_tol), int(probes), chunk
        self.seed, self.n_steps = int(seed), 0
        self.last_cg_iterations = 0

    # ------------------------------------------------------------------ rows
    def _views(self):
        """PINNLoss views, one per chunk of interior points; the conditions' rows all go
        with the first (boundary sets are small next to the interior)."""
        loss = self.loss_fn
        colloc = loss.colloc
        n = colloc.interior.shape[0]
        size = n if self.chunk is None else min(self.chunk, n)
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
    def _rows(view, n_interior):
        """Scaled residual rows of one view, as in the full loss: sqrt(w / M) · r with M
        the full count of the block's points. Returns (r (m,), [(name, w, raw)])."""
        blocks = view.blocks()
        rows = []
        for name, w, r in blocks:
            m = n_interior if view.group[name] == "pde" else r.shape[0]
            rows.append(r * math.sqrt(w / m))
        return torch.cat(rows), blocks

    def _residual(self, views=None):
        """Full scaled residual vector under no_grad (trial steps)."""
        views, n = (views, self.loss_fn.colloc.interior.shape[0]) if views else self._views()
        with torch.no_grad():
            return torch.cat([self._rows(v, n)[0] for v in views])

    # ------------------------------------------------------------------ products
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
            rd = r.detach()
            g = prod.rmatvec(rd)
            d = hutchinson_diagonal(prod.rmatvec, r.shape[0], self.probes, gen, r.dtype, r.device)
            grad = g if grad is None else grad + g
            diag = d if diag is None else diag + d
            loss += float(rd.double() @ rd.double())
            for name, w, raw in blocks:          # w · mean(raw²) over the block's full count
                m = n if view.group[name] == "pde" else raw.shape[0]
                parts[name] = parts.get(name, 0.0) + w * float((raw.detach().double() ** 2).sum()) / m
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

    def _apply(self, delta, sign=1.0):
        with torch.no_grad():
            o = 0
            for p in self.all:
                k = p.numel()
                p.add_(sign * delta[o:o + k].view_as(p).to(p.dtype))
                o += k

    # ------------------------------------------------------------------ iteration
    def direction(self, lam, grad, damping, normal, precond_diag):
        """CG solution of (JᵀJ + λ·diag(damping)) δ = -grad with the Jacobi
        preconditioner diag(JᵀJ) + λ·damping. Returns (δ, iterations)."""
        def apply_A(v):
            return normal(v) + lam * damping * v
        pre = (precond_diag + lam * damping).clamp_min(1e-300)
        return conjugate_gradient(apply_A, -grad, pre, self.cg_tol, self.cg_iters)

    @staticmethod
    def damping(diag):
        """D = sqrt(diag) · mean(sqrt(diag)), floored (as in ``lm.py``)."""
        root = diag.clamp_min(0).sqrt()
        floor = 1e-12 * float(root.max().clamp_min(1e-150)) ** 2
        return (root * root.mean()).clamp_min(floor)

    def step(self):
        """One LM iteration. Returns (loss, {term: loss}, accepted)."""
        grad, diag, loss0, parts, kept, views, n = self._gather()
        self.n_steps += 1
        D = self.damping(diag)
        normal = lambda v: self._normal_product(v, kept, views, n)   # noqa: E731
        saved = [p.detach().clone() for p in self.all]
        for _ in range(30):
            delta, its = self.direction(self.lam, grad, D, normal, diag)
            self.last_cg_iterations = its
            jd = normal(delta)
            predicted = float(-2.0 * (delta @ grad) - delta @ jd)
            self._apply(delta)
            r_new = self._residual(views).double()
            loss_new = float(self.sum_(r_new @ r_new))
            rho = (loss0 - loss_new) / predicted if predicted > 0 else -1.0
            if loss_new == loss_new and rho > 0 and loss_new < loss0:
                self.lam = max(self.lam * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), 1e-15)
                self.nu = 2.0
                return loss_new, parts, True
            with torch.no_grad():
                for p, s in zip(self.all, saved):
                    p.copy_(s)
            kept.clear()                # the trial moved the parameters in place: the
            self.lam *= self.nu         # kept graph is stale (rebuilt on next use)
            self.nu *= 2.0
            if self.lam > 1e16:
                break
        return loss0, parts, False

    def state(self):
        return {"lam": self.lam, "nu": self.nu, "n_steps": self.n_steps}

    def load_state(self, s):
        self.lam, self.nu = float(s["lam"]), float(s["nu"])
        self.n_steps = int(s.get("n_steps", 0))


# rows evaluated at once by the registered optimiser: all of them up to this many
# interior points (graphs kept for the step: fastest), chunks of CHUNK beyond (memory
# bounded by the chunk, whatever the number of points). Measured with chunks of 4096 on
# a [2, 32, 32, 1] KAN at G = 20: peak RSS 2.2 GB on CPU, 1.8 GB on CUDA; the graph of a
# chunk grows linearly with its rows, hence 2048
WHOLE_UP_TO, CHUNK = 8192, 2048


def _lm_cg(run, lr):
    params = [p for p in run.model.parameters() if p.requires_grad]
    n = run.loss.colloc.interior.shape[0]
    inner = MatrixFreeLM(run.loss, params, list(run.params.values()), lam=run.lm_lam, comm=run.comm,
                         chunk=None if n <= WHOLE_UP_TO else CHUNK)
    return ResidualStepper(inner, run, "lm-cg")


register_optimizer("lm-cg", _lm_cg, monotone=True,
                   doc="matrix-free Levenberg-Marquardt: CG on Jacobian products (tens of thousands of parameters)")
