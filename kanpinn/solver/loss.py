"""The PINN loss: collocation points, residual blocks and their weights.

The loss is Σ_b w_b · mean(r_b²) over blocks b: each column of each residual term on the
interior points, and each column of each condition's misfit on its points. As a vector,
``residual_vector`` returns the rows sqrt(w_b / M_b) · r_b stacked, whose squared norm is
the loss: the form a Gauss-Newton / Levenberg-Marquardt optimiser works on.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import jet
from ..errors import KanpinnError

__all__ = ["Collocation", "PINNLoss"]


class Collocation:
    """Collocation points of a problem: interior (N, d) and each condition's point dict.

    Sampling seeds are derived from (seed, round) so a run resumed from a checkpoint draws
    the same points as an unbroken one."""

    def __init__(self, problem, n_interior, n_boundary, sampler, seed, dtype, device, comm=None):
        for name, v in (("n_interior", n_interior), ("n_boundary", n_boundary)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise KanpinnError(f"{name} must be a positive integer, got {v!r}")
        self.problem, self.n_interior, self.n_boundary = problem, int(n_interior), int(n_boundary)
        self.sampler, self.seed, self.dtype, self.device = sampler, seed, dtype, device
        # data parallel (kanpinn.solver.distributed): every rank draws the same points and
        # keeps its rows; ``counts`` holds the global row count of each block
        self.comm = comm
        self.counts = {}
        self.round = 0
        self.sample(0)

    def _tensor(self, a, grad=False):
        t = torch.as_tensor(np.asarray(a), dtype=self.dtype, device=self.device)
        return t.requires_grad_(grad) if grad else t

    def _seed(self, salt):
        base = 0 if self.seed is None else int(self.seed)
        return int(np.random.SeedSequence([base, self.round, salt]).generate_state(1)[0])

    def sample(self, rnd, interior=None):
        """Draw the points of round ``rnd`` (or use the given interior points)."""
        self.round = rnd
        # a "grid" sampler gives the same points every round; others draw fresh ones
        method = self.sampler
        if interior is None:
            interior = self.problem.domain.sample_interior(self.n_interior, method, seed=self._seed(0))
        self.interior = self._tensor(self._share("interior", interior), grad=True)
        self.conditions = []
        for i, cond in enumerate(self.problem.conditions):
            pts = cond.sample(self.problem.domain, self.n_boundary, method, seed=self._seed(i + 1))
            n = len(next(iter(pts.values()))) if pts else 0
            rows = self._shard(n, i)
            self.conditions.append({k: self._tensor(np.asarray(v)[rows], grad=(k.startswith("x")))
                                    for k, v in pts.items()})

    def _shard(self, n, key):
        comm = self.comm
        if comm is None or comm.world == 1:
            self.counts[key] = n
            return slice(None)
        if key != "interior" and n < comm.world:
            # too few rows to split (a handful of data points): every rank keeps them all
            # and counts them once per rank, so each holds 1/world of their weight
            self.counts[key] = n * comm.world
            return slice(None)
        self.counts[key] = n
        return comm.shard(n)

    def _share(self, key, interior):
        """This rank's rows of the interior set (all of them in one process)."""
        interior = np.asarray(interior)
        return interior[self._shard(len(interior), key)]

    def all_interior(self):
        """The interior points of every rank (for grid updates and checkpoints)."""
        x = self.interior.detach()
        if self.comm is None or self.comm.world == 1:
            return x
        from .distributed import gather_uneven
        return gather_uneven(self.comm, x, self.counts["interior"])

    def state(self) -> dict:
        return {"round": self.round, "interior": self.interior.detach().cpu().numpy()}


def interior_jet_order(run, x):
    """The jet order a run's hooks evaluate the residual with at x (causal weights, RAD
    resampling, the inverse-parameter fit): its loss's ``interior_order``, so a
    third-order residual reads u_xxx from the jet there too; 2 for a stand-in loss
    without one."""
    order = getattr(getattr(run, "loss", None), "interior_order", None)
    return order(x) if callable(order) else 2


class PINNLoss:
    """Evaluates the weighted residual blocks of ``problem`` for ``model``."""

    def __init__(self, problem, model, colloc: Collocation, params: dict, weights=None):
        self.problem, self.model, self.colloc, self.params = problem, model, colloc, params
        self.weights = dict(weights or {})
        # per-point weights of the interior residual rows (causal weighting, attention
        # schemes): None, or a detached (N,) tensor set by a hook before each step; each
        # point's squared residual is multiplied by its weight (its row by the sqrt)
        self.interior_weights = None
        unknown = set(self.weights) - {"pde"} - set(problem.condition_names)
        if unknown:
            raise KanpinnError(f"weights for unknown terms {sorted(unknown)}; terms are "
                               f"{['pde'] + list(problem.condition_names)}")

    @property
    def pde_weight(self):
        return float(self.weights.get("pde", 1.0))

    def adapt_weights(self, params, alpha=0.1):
        """Learning-rate annealing (Wang, Teng & Perdikaris 2021): move each condition's
        weight towards max|∇L_pde| / mean|∇L_cond| so that no term's gradient swamps the
        others'. Returns the new weights."""
        blocks = self.blocks()
        groups = {}
        for name, w, r in blocks:
            key = self.group[name]
            groups[key] = groups.get(key, 0.0) + (r * r).mean()
        def grads(term):
            g = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            return torch.cat([x.reshape(-1) for x in g if x is not None] or [term.new_zeros(1)]).abs()
        if "pde" not in groups:
            return dict(self.weights)
        top = float(grads(groups["pde"] * self.pde_weight).max())
        for key, term in groups.items():
            if key == "pde":
                continue
            mean = float(grads(term).mean())
            if mean > 0 and math.isfinite(top / mean):
                old = float(self.weights.get(key, 1.0))
                self.weights[key] = (1 - alpha) * old + alpha * (top / mean)
        return dict(self.weights)

    def _u_fn(self, order):
        return lambda x: jet.evaluate(self.model, x, order)

    def interior_order(self, x):
        """The jet order the residual needs: 2, or 3/4 when it takes higher derivatives
        (KdV's u_xxx, a beam's u_xxxx), probed once per model (``jet.needed_order``)."""
        if getattr(self, "_order_of", None) != id(self.model):
            p = self.problem
            params = self.params if p.parameters else None
            self._order = jet.needed_order(lambda xs, u: p.residual_terms(xs, u, params), x, self.model)
            self._order_of = id(self.model)
        return self._order

    def blocks(self):
        """List of (name, weight, raw rows (M,)). Raw: unweighted residual values."""
        p = self.problem
        x = self.colloc.interior
        u = jet.evaluate(self.model, x, self.interior_order(x))
        out = []
        self.group = {}                 # block name -> "pde" or its condition's name
        terms = p.residual_terms(x, u, self.params if p.parameters else None)
        root = None
        if self.interior_weights is not None:
            w = self.interior_weights
            if w.shape != (x.shape[0],):
                raise KanpinnError(f"interior_weights must have shape ({x.shape[0]},), got {tuple(w.shape)}")
            root = w.detach().to(dtype=x.dtype, device=x.device).clamp_min(0).sqrt()
        for ti, t in enumerate(terms):
            if root is not None:
                t = t * root[:, None]
            for c in range(t.shape[1]):
                name = "pde" if len(terms) == 1 and t.shape[1] == 1 else f"pde_{ti}_{c}"
                out.append((name, self.pde_weight * self._share_of("interior", t.shape[0]), t[:, c]))
                self.group[name] = "pde"
        for ci, (cname, cond, pts) in enumerate(zip(p.condition_names, p.conditions, self.colloc.conditions)):
            mis = cond.misfit(self._u_fn(max(cond.jet_order, 0)), pts)
            if mis.dim() != 2:
                raise KanpinnError(f"condition {cname} returned a misfit of shape {tuple(mis.shape)}")
            w = float(self.weights.get(cname, cond.weight)) * self._share_of(ci, mis.shape[0])
            for c in range(mis.shape[1]):
                bname = cname if mis.shape[1] == 1 else f"{cname}_{c}"
                out.append((bname, w, mis[:, c]))
                self.group[bname] = cname
        return out

    def _share_of(self, key, local_rows):
        """The factor M_local / M_global that makes a rank's block mean its share of the
        global mean (exactly 1 in one process)."""
        colloc = self.colloc
        if colloc.comm is None or colloc.comm.world == 1:
            return 1.0
        return local_rows / colloc.counts[key]

    @staticmethod
    def scaled(blocks):
        """Rows sqrt(w/M)·r of every block, each (M_b,)."""
        return [r * (w / r.shape[0]) ** 0.5 for _, w, r in blocks]

    def loss(self):
        """(total loss tensor, {term: float})."""
        blocks = self.blocks()
        parts = {}
        total = 0.0
        for name, w, r in blocks:
            term = (r * r).mean()
            parts[name] = term
            total = total + w * term
        return total, parts
