"""Continuation (auto mode using the time its planned schedule leaves): the appended grids
run only when they fit, the points grow with the parameters, and the run always ends in
a trained state. Effects are checked against exact solutions; no timings are asserted
(the decisions are driven to either side by max_time and min_steps)."""
import math

import pytest
import torch

import kanpinn as kp
from kanpinn.errors import KanpinnError
from kanpinn.solver.auto import plan
from kanpinn.solver.continuation import Continuation
from kanpinn.transforms import Embedded

pi = math.pi


def poisson():
    return kp.Problem(kp.Interval(-1, 1), lambda x, u: kp.partial(u, x, 0, 2) + 4 * pi**2 * torch.sin(2 * pi * x),
                      [kp.Dirichlet(0.0)], exact=lambda x: torch.sin(2 * pi * x))


def _solve(hook, grids=(3, 6)):
    return kp.solve(poisson(), kp.KAN([1, 4, 1], grid=grids[0], k=3, seed=0), grids=list(grids), steps=15,
                    n_interior=60, n_boundary=2, test_points=101, progress=False, hooks=[hook])


def test_appended_grid_runs_when_it_fits_and_improves_the_solution():
    go = _solve(Continuation(1e6, planned=1, grids=[3, 12], points_per_param=0), grids=(3, 12))
    stop = _solve(Continuation(1e6, planned=1, grids=[3, 12], min_steps=10**12, points_per_param=0), grids=(3, 12))
    # stopped after the planned grid: the coarse model, fully trained, and a note why
    assert stop.model.grid == 3 and any("would need" in n for n in stop.metrics["notes"])
    assert go.model.grid == 12 and any("continuing to grid 12" in n for n in go.metrics["notes"])
    assert go.metrics["l2_relative"] < 0.5 * stop.metrics["l2_relative"]
    # the stopped run's state is the trained coarse one, not a half-extended model
    plain = kp.solve(poisson(), kp.KAN([1, 4, 1], grid=3, k=3, seed=0), grids=[3], steps=15, n_interior=60,
                     n_boundary=2, test_points=101, progress=False)
    assert stop.metrics["l2_relative"] == pytest.approx(plain.metrics["l2_relative"], rel=1e-9)


def test_the_parameter_limit_stops_the_appended_grids():
    res = _solve(Continuation(1e6, planned=1, grids=[3, 6], max_params=10, points_per_param=0))
    assert res.model.grid == 3 and any("limit 10" in n for n in res.metrics["notes"])


def test_points_grow_with_the_parameters():
    hook = Continuation(1e6, planned=1, grids=[3, 6], points_per_param=4.0)
    res = _solve(hook)
    n_params = res.metrics["n_parameters"]
    # 4 per parameter, but at most doubling per stage (the run has 60)
    assert 4 * n_params > 120 and hook.n_interior == 120
    assert any("120 interior points" in n for n in res.metrics["notes"])
    capped = Continuation(1e6, planned=1, grids=[3, 6], points_per_param=4.0, max_points=70)
    _solve(capped)
    assert capped.n_interior == 70
    planned_only = Continuation(1e6, planned=2, grids=[3, 6], points_per_param=4.0)
    _solve(planned_only)                # the planned stages keep the run's points
    assert planned_only.n_interior is None


def test_auto_mode_appends_grids_only_under_a_time_budget_and_never_over_user_grids():
    _, opts, ch = plan(poisson(), {})
    assert opts["grids"] == [5, 10, 20, 40, 80] and "continuation" in ch["methods"]
    assert [h.planned for h in opts["hooks"] if isinstance(h, Continuation)] == [3]
    _, opts, ch = plan(poisson(), {"grids": [5, 10]})
    assert opts["grids"] == [5, 10] and "continuation" not in ch["methods"]
    assert not any(isinstance(h, Continuation) for h in opts["hooks"])


def test_bad_arguments():
    with pytest.raises(KanpinnError, match="planned"):
        Continuation(10, planned=3, grids=[3, 6])
    with pytest.raises(KanpinnError, match="max_time"):
        Continuation(0, planned=1, grids=[3])
    with pytest.raises(KanpinnError, match="min_steps"):
        Continuation(10, planned=1, grids=[3], min_steps=0)


class _ValidationRises(Continuation):
    """The loss on fresh points rises over the appended stage (what a fine grid fitted to too
    few points does: Burgers in auto mode ended at rel. L2 2.0e3 that way)."""
    values = None

    def _validation_loss(self, run):
        real = super()._validation_loss(run)      # the real one runs too (a finite loss)
        assert real == real and real >= 0.0
        return next(self.values)


@pytest.mark.parametrize("wrapped", [False, True])
def test_an_appended_grid_that_only_fits_its_points_is_undone(wrapped):
    def model():        # auto mode's models sit inside wrappers (here an input embedding)
        kan = kp.KAN([1, 4, 1], grid=3, k=3, seed=0)
        return Embedded(kan, [-1.0], [1.0]) if wrapped else kan
    hook = _ValidationRises(1e6, planned=1, grids=[3, 12], points_per_param=0)
    hook.values = iter([1.0, 2.0])
    opts = dict(steps=15, n_interior=60, n_boundary=2, test_points=101, progress=False)
    guarded = kp.solve(poisson(), model(), grids=[3, 12], hooks=[hook], **opts)
    plain = kp.solve(poisson(), model(), grids=[3], **opts)
    # back in the trained grid-3 state, exactly, with a note; not the grid-12 model
    assert (guarded.model.inner if wrapped else guarded.model).grid == 3
    assert guarded.metrics["l2_relative"] == pytest.approx(plain.metrics["l2_relative"], rel=1e-9)
    assert any("fitted its points but not the PDE" in n for n in guarded.metrics["notes"])

