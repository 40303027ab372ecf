"""Time budget across grid stages: every stage gets its share of ``max_time``.

Without it a slow machine spends the whole ``max_time`` on the first (coarsest) grid and
never reaches the fine grids that give a KAN its accuracy. Stage i may train until the
run's training time reaches (s_0 + ... + s_i)·max_time, so time a stage leaves unused
carries over to the next; the last stage runs until ``max_time`` itself (the solver's
stop rule), and the best state reached is kept.
"""
from __future__ import annotations

from ..errors import KanpinnError
from .hooks import Hook

__all__ = ["StageBudget"]


class StageBudget(Hook):
    """Hook: end stage i once the training time passes its cumulative share.

    Args:
        max_time: the solve's time budget (seconds).
        shares: one positive weight per stage (normalised here); e.g. (1, 2, 3) gives
            the finest grid half of the time.
    """

    def __init__(self, max_time, shares):
        shares = [float(s) for s in shares]
        if not shares or any(not s > 0 for s in shares):
            raise KanpinnError(f"StageBudget: shares must be positive numbers, got {shares!r}")
        if not float(max_time) > 0:
            raise KanpinnError(f"StageBudget: max_time must be positive, got {max_time!r}")
        total = sum(shares)
        self.max_time = float(max_time)
        self.ends, acc = [], 0.0
        for s in shares:
            acc += s / total
            self.ends.append(acc * self.max_time)

    def after_step(self, run, info):
        stage = run.stage
        if stage >= len(self.ends) - 1 or run.train_time < self.ends[stage]:
            return
        from .loop import stage_plan
        total = sum(n for _, n in stage_plan(run))
        if run.step_in_stage < total:
            run.note(f"stage {stage + 1} ended at step {run.global_step} after its share of max_time "
                     f"({self.ends[stage]:.0f} s)")
            run.step_in_stage = total
