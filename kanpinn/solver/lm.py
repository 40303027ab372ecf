"""Levenberg-Marquardt on the PINN residual vector, with the structured Jacobian.

Each iteration forms J (M x P) from one backward pass per residual block (``jacobian.stacked_jacobian``),
solves (JᵀJ + λ·diag(JᵀJ)) δ = -Jᵀr in float64 by Cholesky, and accepts the step when
the loss falls, updating λ by Nielsen's rule from the ratio of actual to predicted
decrease. Small PINNs (hundreds to a few thousand parameters) converge in far fewer
iterations than with L-BFGS, and a rejected step costs one forward evaluation.

JᵀJ comes from ``gram.gram_live``: for a system, products of column groups only over the
residual blocks where both are non-zero, and J's all-zero columns (B-splines no point
reaches) left out; the normal equations are then solved on the live columns, the dead
ones' step being exactly 0 (docs/navier_stokes.md, "Cost of a system step").
"""
from __future__ import annotations

import torch

from .. import jet
from .gram import gram, gram_live
from .jacobian import NotPointwise, stacked_jacobian
from .loss import PINNLoss

__all__ = ["LevenbergMarquardt", "MAX_PARAMS"]

# dense normal equations: P² memory and P³ Cholesky per step stop paying beyond this
MAX_PARAMS = 8000
# P × P work matrices (the damped matrix, its factor) are kept between steps up to this
# size (P ~ 5800 in float64)
_KEEP_BYTES = 2 ** 28
HOLDOUT_FACTOR = 3.0    # a step may raise the held-out loss at most this many times


class LevenbergMarquardt:
    def __init__(self, loss: PINNLoss, params, inverse=(), lam=1e-3, max_param_count=MAX_PARAMS, comm=None,
                 holdout=None, holdout_factor=HOLDOUT_FACTOR):
        self.loss_fn, self.params, self.inverse = loss, list(params), list(inverse)
        # holdout: () -> the loss on points no step trains on. A step that lowers the loss on
        # the points but multiplies this one by more than holdout_factor bent the function
        # between the points (forward Burgers, grid 20: rel. L2 4e-3 -> 5.6 in one step at a
        # training loss of 1e-4): it is refused like a step that raises the loss
        self.holdout, self.holdout_factor = holdout, float(holdout_factor)
        self._held = None
        # data parallel: sums across ranks (JᵀJ, Jᵀr, losses); identity in one process
        self.sum_ = comm.sum_ if comm is not None else (lambda t: t)
        self.distributed = comm is not None
        self.rows = None                # (start, stop) of each residual block in J's rows
        self._J, self._work = None, {}  # memory kept between steps (page faults cost)
        self.lam, self.nu = float(lam), 2.0
        n = sum(p.numel() for p in self.params + self.inverse)
        if n > max_param_count:
            raise NotPointwise(f"{n} parameters is too many for Levenberg-Marquardt (limit {max_param_count})")
        self.checked = False

    # ------------------------------------------------------------------ pieces
    def _vector(self):
        """Scaled residual vector under no_grad (for trial steps)."""
        with torch.no_grad():
            return torch.cat(PINNLoss.scaled(self.loss_fn.blocks()))

    def _recorded_blocks(self):
        """(layer records, blocks) of one evaluation for the structured Jacobian.

        The parameter columns come from the layers' per-point rule, never from autograd, so
        the evaluation runs with the parameters frozen: each block's backward then stops at
        the layer outputs instead of also forming the parameter gradients that a layer's
        node would compute and discard (cavity, KAN [2,12,3]: the six backward passes
        ~0.6x the time). When some record output then needs no gradient (a condition that
        evaluates the model at points without grad), it is evaluated again as it was."""
        frozen = [p for p in self.params if p.requires_grad]
        try:
            for p in frozen:
                p.requires_grad_(False)
            with jet.recording() as recs:
                blocks = self.loss_fn.blocks()
        finally:
            for p in frozen:
                p.requires_grad_(True)
        if all(o is None or o.requires_grad for rec in recs for o in rec.outputs):
            return recs, blocks
        with jet.recording() as recs:
            blocks = self.loss_fn.blocks()
        return recs, blocks

    def _jacobian(self, out=None):
        recs, blocks = self._recorded_blocks()
        scaled = PINNLoss.scaled(blocks)
        n_inverse = sum(p.numel() for p in self.inverse)
        with torch.enable_grad():
            J = stacked_jacobian(scaled, recs, self.params, extra_columns=n_inverse, out=out)
        r = torch.cat([b.detach() for b in scaled])
        if self.inverse:
            J[:, J.shape[1] - n_inverse:] = self._inverse_columns(r)
        self.rows, at = [], 0
        for b in scaled:
            self.rows.append((at, at + b.shape[0]))
            at += b.shape[0]
        return J.detach(), r, {name: float((w * (rb.detach() ** 2).mean())) for (name, w, rb) in blocks}

    def _inverse_columns(self, r):
        """Columns for the problem's unknown coefficients by central differences."""
        cols = []
        with torch.no_grad():
            for p in self.inverse:
                saved = p.detach().clone()
                eps = 1e-6 * (1.0 + float(p.abs()))
                p.add_(eps)
                plus = self._vector()
                p.copy_(saved - eps)
                minus = self._vector()
                p.copy_(saved)          # exact restore keeps runs repeatable bit for bit
                cols.append(((plus - minus) / (2 * eps))[:, None])
        return torch.cat(cols, 1)

    def _apply(self, delta, sign=1.0):
        with torch.no_grad():
            o = 0
            for p in self.params + self.inverse:
                n = p.numel()
                p.add_(sign * delta[o:o + n].view_as(p).to(p.dtype))
                o += n

    def _check(self, J, r):
        """Once: J·v must match a finite difference of r along v (pointwise residuals)."""
        g = torch.Generator(device="cpu").manual_seed(0)
        v = torch.randn(J.shape[1], generator=g, dtype=torch.float64).to(J.device)
        v = v / v.norm()
        eps = 1e-6 if J.dtype == torch.float64 else 1e-2
        saved = [p.detach().clone() for p in self.params + self.inverse]
        self._apply(v * eps)
        plus = self._vector()
        self._apply(v * eps, -1.0)
        self._apply(v * eps, -1.0)
        minus = self._vector()
        with torch.no_grad():                   # exact restore: no drift from +eps-eps
            for p, s in zip(self.params + self.inverse, saved):
                p.copy_(s)
        fd = (plus - minus).double() / (2 * eps)
        jv = J.double() @ v
        sq = self.sum_(torch.stack([((fd - jv) ** 2).sum(), (fd ** 2).sum()]))
        err = float(sq[0].sqrt() / sq[1].sqrt().clamp_min(1e-30))
        tol = 1e-4 if J.dtype == torch.float64 else 5e-2
        if not err < tol:
            raise NotPointwise(f"structured Jacobian does not match finite differences (rel. error {err:.2e}): "
                               "the residual couples points or uses derivatives outside the jets")
        self.checked = True

    # ------------------------------------------------------------------ iteration
    def step(self):
        """One LM iteration. Returns (loss, {term: loss}, accepted)."""
        # J's memory is kept for the next step (see stacked_jacobian's ``out``)
        J, r, parts = self._jacobian(out=self._J)
        self._J = J
        if not self.checked:
            self._check(J, r)
        loss0 = float(self.sum_(r.double() @ r.double()))
        Jd = J.double()
        n = Jd.shape[1]
        if self.distributed:
            A, live = self.sum_(gram(Jd, self.rows)), None      # every rank's matrix in full, summed
        else:
            # JᵀJ by symmetric blocks, and for a system only the products of column groups
            # over the residual blocks they share; ``live``: J's non-zero columns, in the
            # order of A (None: all, in order). A zero column has a zero gradient and a zero
            # row of JᵀJ, so its step is exactly 0 and the system is solved without it
            A, live = gram_live(Jd, self.rows, self._work)
        g = self.sum_(Jd.T @ r.double())
        if live is not None:
            g = g[live]
        # damping D = sqrt(diag(JᵀJ)) · mean(sqrt(diag)): between Levenberg's identity
        # (ignores parameter scales) and Marquardt's diag(JᵀJ) (over-damps the strong
        # directions); measured ~2x lower error per step on the reference Poisson problem.
        # The mean is over all P columns, the dead ones included (as with the full matrix)
        root = A.diagonal().clamp_min(0).sqrt()
        mean = root.mean() if live is None else root.sum() / n
        diag = (root * mean).clamp_min(1e-12 * float(root.max().clamp_min(1e-150)) ** 2)
        saved = [p.detach().clone() for p in self.params + self.inverse]
        if self.holdout is not None:
            # against the lowest held-out loss of this optimiser's steps, so that steps
            # each within the factor cannot compound into a drift
            now = float(self.holdout())
            self._held = now if self._held is None or not self._held <= now else self._held
        held = self._held
        # the factor's memory kept between steps: a fresh P × P tensor above glibc's mmap
        # threshold (32 MB: P > 2000) page-faults at every step (cavity at [2,20,3] k=5
        # G=20, P = 2687: fresh 0.62 s, kept 0.35 s per factorisation)
        L = self._square("L", A, column_major=True)
        info = torch.empty((), dtype=torch.int32, device=A.device)
        undamped = A.diagonal().clone()
        for _ in range(30):
            # A + λ·diag(D) + 1e-14·max(D)·I formed on A's own diagonal (the same numbers: the
            # diagonal gets λ·D_i, then the shift), factored (cholesky_ex copies its input
            # into L), and the diagonal put back exactly: no P × P copy of A per try
            A.diagonal().add_(self.lam * diag).add_(1e-14 * float(diag.max()))
            torch.linalg.cholesky_ex(A, out=(L, info))
            A.diagonal().copy_(undamped)
            if int(info) != 0:
                self.lam *= 10.0
                continue
            # two triangular solves on the column-major factor, read in place: the same
            # numbers as cholesky_solve, which first copies L (P = 2687: 88 ms against 8)
            y = torch.linalg.solve_triangular(L, g[:, None], upper=False)
            delta = -torch.linalg.solve_triangular(L.mH, y, upper=True)[:, 0]
            predicted = float(-2.0 * (delta @ g) - delta @ (A @ delta))
            self._apply(delta if live is None else delta.new_zeros(n).index_copy_(0, live, delta))
            r_new = self._vector().double()
            loss_new = float(self.sum_(r_new @ r_new))
            rho = (loss0 - loss_new) / predicted if predicted > 0 else -1.0
            if loss_new == loss_new and rho > 0 and loss_new < loss0 and \
                    (held is None or float(self.holdout()) <= self.holdout_factor * held):
                self.lam *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                self.lam = max(self.lam, 1e-15)
                self.nu = 2.0
                return loss_new, parts, True
            with torch.no_grad():
                for p, s in zip(self.params + self.inverse, saved):
                    p.copy_(s)
            self.lam *= self.nu
            self.nu *= 2.0
            if self.lam > 1e16:
                break
        return loss0, parts, False

    def _square(self, name, like, column_major=False):
        """A P × P buffer shaped like ``like``, kept in ``self._work`` between steps while
        it is at most ``_KEEP_BYTES`` (larger ones are fresh: LM would otherwise hold
        them between steps)."""
        buf = self._work.get(name)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty_like(like, memory_format=torch.contiguous_format)
            if column_major:
                buf = buf.T
            if buf.numel() * buf.element_size() <= _KEEP_BYTES:
                self._work[name] = buf
        return buf

    def state(self):
        return {"lam": self.lam, "nu": self.nu}

    def load_state(self, s):
        self.lam, self.nu = float(s["lam"]), float(s["nu"])
