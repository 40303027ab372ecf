"""Continuation: use the time budget the planned schedule leaves unused.

Auto mode plans a short schedule (grids 5/10/20) that a fast machine finishes long
before ``max_time``. Auto mode then appends finer grids (40, 80, ...) to ``grids``, and
this hook decides at the end of each stage whether the next one is worth starting:

- the next grid must fit in the time left: its LM step is estimated from the stage just
  run (LM forms JᵀJ, so a step costs about N·P² for N points and P parameters) and at
  least ``min_steps`` of them must fit; otherwise the run stops there, in its current
  (best, since LM only accepts steps that lower the loss) state;
- on the appended grids the collocation points grow with the parameters
  (``points_per_param`` points per parameter, at most doubling per stage, fresh points
  drawn at the stage start) so LM's least-squares problem stays overdetermined: a fine
  grid trained on too few points fits the points, not the PDE (measured on Helmholtz
  (1, 4) at G = 20: 2000 points 1.6e-5, 4000 points 4.5e-6); when that many would not
  let ``min_steps`` steps fit, fewer are drawn, never below one per parameter (one
  process only: under data parallel every rank must draw the same count).

The stages of the planned schedule are never skipped (``budget.StageBudget`` gives each
its share of ``max_time``); only the appended ones are optional.
"""
from __future__ import annotations

from ..errors import KanpinnError
from ..transforms.wrapper import innermost
from .hooks import Hook
from .fresh import FreshLoss, restore, snapshot
from .run import trainable

__all__ = ["Continuation", "POINTS_PER_PARAM"]

# interior points per trainable parameter on the appended grids (scalar problems)
POINTS_PER_PARAM = 4.0


class Continuation(Hook):
    """Hook: grow the points with the parameters; start an appended stage only when it fits.

    Args:
        max_time: the solve's time budget (seconds).
        planned: how many stages (from the first) are the planned schedule; the stages
            after them are started only when ``min_steps`` of their steps fit.
        grids: the stage grids (to estimate the next stage's parameter count).
        min_steps: steps of the next stage that must fit in the time left.
        points_per_param: interior points per trainable parameter (the points never
            shrink below the run's ``n_interior``); 0 leaves the points alone.
        max_points: a cap on the interior points (memory: LM holds an N×P Jacobian).
        max_params: no appended stage with more trainable parameters than this (the
            optimiser's limit, e.g. LM's); None for no limit.
    """

    def __init__(self, max_time, planned, grids, min_steps=10, points_per_param=POINTS_PER_PARAM, max_points=20000,
                 max_params=None):
        if not float(max_time) > 0:
            raise KanpinnError(f"Continuation: max_time must be positive, got {max_time!r}")
        grids = [int(g) for g in grids]
        if not isinstance(planned, int) or not 1 <= planned <= len(grids):
            raise KanpinnError(f"Continuation: planned must be an integer in 1..{len(grids)}, got {planned!r}")
        if not isinstance(min_steps, int) or min_steps < 1:
            raise KanpinnError(f"Continuation: min_steps must be a positive integer, got {min_steps!r}")
        if not float(points_per_param) >= 0 or not int(max_points) >= 1:
            raise KanpinnError("Continuation: points_per_param must be >= 0 and max_points >= 1, got "
                               f"{points_per_param!r}, {max_points!r}")
        self.max_time, self.planned, self.grids = float(max_time), planned, grids
        self.min_steps, self.points_per_param, self.max_points = min_steps, float(points_per_param), int(max_points)
        self.max_params = None if max_params is None else int(max_params)
        self.n_interior = None          # the points now (kept in checkpoints)
        self._stage_t0 = self._stage_step0 = None
        self._next_points = None        # the points on_stage_end chose for the next stage
        self._val = FreshLoss(1_000_003)  # the validation loss (fresh points), built on first use
        self._kept = None               # (validation loss, state, config) before an appended stage

    def state_dict(self):
        return {"n_interior": self.n_interior, "next_points": self._next_points}

    def load_state_dict(self, d):
        n, m = d.get("n_interior"), d.get("next_points")
        self.n_interior = None if n is None else int(n)
        self._next_points = None if m is None else int(m)

    def on_solve_start(self, run):
        if self.n_interior is not None:     # resumed: the restored points came with this count
            run.colloc.n_interior = self.n_interior

    # ------------------------------------------------------------------ points
    def _points_for(self, run, n_params, n_now):
        """Interior points for a stage with ``n_params`` parameters: ``points_per_param``
        per parameter, at most ``max_points`` and at most twice ``n_now`` (a step's cost
        grows with the points: Allen-Cahn's grid 40 at 4 per parameter, 5.8x the points
        of grid 20, was estimated at 125 s for 10 steps with 111 s left), never fewer
        than ``n_interior``."""
        base = int(run.opts["n_interior"])
        want = max(base, round(self.points_per_param * n_params))
        return int(max(base, min(want, self.max_points, 2 * max(n_now, base))))

    def on_stage_start(self, run):
        self._stage_t0, self._stage_step0 = run.train_time, run.global_step
        if run.stage < self.planned or run.step_in_stage or not self.points_per_param:
            # the planned stages keep their points (growing them there cost Allen-Cahn its
            # finest planned grid on a slow machine: 180 s, load 4.5, 2.6e-2 against 1.4e-2);
            # a run resumed inside a stage has its points restored
            return
        n = self._next_points or self._points_for(run, _n_params(run), run.colloc.n_interior)
        if n > run.colloc.n_interior:
            # fresh points (a new round): more of them, and not the ones the coarse grid fitted
            run.colloc.n_interior = n
            run.colloc.sample(run.colloc.round + 1)
            run.note(f"stage {run.stage + 1}: {n} interior points (growing with the parameters: "
                     f"{self.points_per_param:g} per parameter, at most doubling)")
        self.n_interior = run.colloc.n_interior

    # ------------------------------------------------------------------ validation
    def _validation_loss(self, run):
        """The loss on points no stage trained on (drawn once, from another seed)."""
        return self._val(run)

    def _appended_stage_generalises(self, run):
        """Keep the state before each appended stage; when the stage fitted its points but
        not the PDE (the validation loss rose), go back to that state and stop. A fine grid on
        barely more points than parameters can fit the points and miss everything between:
        Burgers in auto mode (180 s, 1 thread, quiet) ended at rel. L2 2.0e3 after grid 40."""
        val = self._validation_loss(run)
        if run.stage >= self.planned and self._kept is not None:
            prev = self._kept[0]
            if not (val <= prev):           # NaN counts as worse
                restore(run, self._kept)
                run.stop = True
                run.stop_reason = (f"grid {self.grids[run.stage]} fitted its points but not the PDE "
                                   f"(loss on fresh points {val:.3g} against {prev:.3g} before it): "
                                   f"returned the grid {self.grids[run.stage - 1]} state")
                run.note(run.stop_reason)
                return False
        self._kept = snapshot(run, val)
        return True

    # ------------------------------------------------------------------ go on?
    def on_stage_end(self, run):
        nxt = run.stage + 1
        if nxt < self.planned:
            return
        # checked also when max_time cut the stage: the better of the two states is returned
        if not self._appended_stage_generalises(run) or run.stop or nxt >= len(self.grids):
            return
        steps = run.global_step - (self._stage_step0 or 0)
        if steps <= 0:
            return
        per_step = (run.train_time - (self._stage_t0 or 0.0)) / steps
        g_now, g_next = self.grids[run.stage], self.grids[nxt]
        p_now = _n_params(run)
        k = _spline_order(run)
        p_next = p_now * (g_next + k) / max(g_now + k, 1)
        n_now = run.colloc.n_interior
        n_next = max(n_now, self._points_for(run, p_next, n_now))
        per_point = per_step * (p_next / p_now) ** 2 / n_now
        left = self.max_time - run.train_time
        if run.comm.world == 1:
            # fewer new points when all of them would not fit, but at least one per parameter:
            # Allen-Cahn at load 3 had 111 s left and needed 125 s with 5.8x the points
            fit = int(left / (self.min_steps * per_point))
            n_next = max(n_now, min(n_next, max(fit, int(p_next))))
        self._next_points = n_next
        est = per_point * n_next
        why = None
        if self.max_params is not None and p_next > self.max_params:
            why = (f"the schedule ended; grid {g_next} would have about {p_next:.0f} parameters, "
                   f"more than the optimiser's limit {self.max_params}")
        elif est * self.min_steps > left:
            why = (f"the schedule ended with {left:.0f} s left; grid {g_next} would need about "
                   f"{est * self.min_steps:.0f} s for {self.min_steps} steps, so the run stops here")
        stop = why is not None
        if run.comm.world > 1:
            # each rank reads its own clock: all must agree, or one would wait for the others
            stop = run.comm.any(stop)
        if stop:
            run.stop = True
            run.stop_reason = why or "another process found no time for the next grid"
            return
        run.note(f"continuing to grid {g_next} ({left:.0f} s left, about {est:.2g} s per step)")


def _n_params(run):
    return max(1, sum(p.numel() for p in trainable(run.model)))


def _kan(run):
    """The KAN inside the model's wrappers (input embeddings, exact constraints)."""
    return innermost(run.model)[0]


def _spline_order(run):
    return int(getattr(_kan(run), "k", 3))
