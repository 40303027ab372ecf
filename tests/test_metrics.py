"""One error metric: hand-computed values, zero references, shapes that must match."""
import math
import re

import numpy as np
import pytest
import torch

from kanpinn.errors import KanpinnError
from kanpinn.metrics import UNDEFINED_ABOVE, error_metrics
from kanpinn.mlp import MLP
from kanpinn.result import Result


def test_hand_computed_values():
    pred = np.array([[1.0], [2.0], [3.0], [4.0]])
    exact = np.array([[1.0], [0.0], [3.0], [2.0]])          # diff 0, 2, 0, 2
    m = error_metrics(pred, exact)
    assert m["l2_relative"] == pytest.approx(math.sqrt(8) / math.sqrt(14), rel=1e-15)
    assert m["l2_absolute"] == pytest.approx(math.sqrt(8 / 4), rel=1e-15)
    assert m["max_abs"] == 2.0
    assert "l2_relative_per_output" not in m and "l2_note" not in m


def test_torch_and_numpy_agree_and_1d_is_one_column():
    rng = np.random.default_rng(0)
    p, e = rng.normal(size=(50, 1)), rng.normal(size=(50, 1))
    a = error_metrics(p, e)
    b = error_metrics(torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(e))
    c = error_metrics(p[:, 0], e[:, 0])
    assert a == b == c


def test_several_outputs_per_column():
    pred = np.array([[1.0, 10.0], [1.0, 10.0]])
    exact = np.array([[2.0, 10.0], [2.0, 5.0]])
    m = error_metrics(pred, exact)
    assert m["l2_relative_per_output"] == pytest.approx([0.5, 5 / math.sqrt(125)], rel=1e-15)
    assert m["l2_relative"] == pytest.approx(math.sqrt(1 + 1 + 25) / math.sqrt(4 + 4 + 100 + 25), rel=1e-15)
    assert m["max_abs"] == 5.0


def test_zero_reference_gives_nan_relative_and_the_absolute_error():
    # the defect: exact == 0 reported l2_relative = 4e301
    m = error_metrics(np.full((9, 1), 0.5), np.zeros((9, 1)))
    assert math.isnan(m["l2_relative"])
    assert m["l2_absolute"] == 0.5 and m["max_abs"] == 0.5
    assert "zero" in m["l2_note"] and "l2_absolute" in m["l2_note"]
    # a reference that is zero up to rounding (sin(pi*k) in float64) counts as zero too
    tiny = np.sin(np.pi * np.arange(1, 10.0))[:, None]          # |values| ~ 1e-15
    assert math.isnan(error_metrics(tiny + 0.5, tiny)["l2_relative"])
    # ... but a small, genuine reference keeps its relative error
    small = np.full((4, 1), 1e-8)
    assert error_metrics(small * 1.5, small)["l2_relative"] == pytest.approx(0.5)
    assert UNDEFINED_ABOVE * 1e-8 > 0.5


def test_perfect_prediction_of_zero_is_zero_error():
    m = error_metrics(np.zeros((3, 2)), np.zeros((3, 2)))
    assert m["l2_relative"] == 0.0 and m["l2_absolute"] == 0.0 and m["l2_relative_per_output"] == [0.0, 0.0]
    assert "l2_note" not in m


def test_non_finite_prediction_is_not_a_small_error():
    m = error_metrics(np.array([[np.inf], [1.0]]), np.ones((2, 1)))
    assert m["l2_relative"] == math.inf
    assert math.isnan(error_metrics(np.array([[np.nan]]), np.ones((1, 1)))["l2_relative"])


@pytest.mark.parametrize("pshape, eshape", [((10, 1), (10, 2)), ((10, 2), (10, 1)), ((10, 1), (9, 1)),
                                            ((10, 3), (10,))])
def test_shapes_must_match_exactly(pshape, eshape):
    # the defect: an exact with another number of columns was broadcast (l2 0.998, no error)
    with pytest.raises(KanpinnError, match=r"shape .*" + re.escape(str(pshape)) + r".*" + re.escape(str(
            eshape if len(eshape) == 2 else eshape + (1,)))):
        error_metrics(np.zeros(pshape), np.ones(eshape))


def test_empty_and_bad_rank_are_errors():
    with pytest.raises(KanpinnError, match="empty"):
        error_metrics(np.zeros((0, 1)), np.zeros((0, 1)))
    with pytest.raises(KanpinnError, match=r"\(N, m\).*\(2, 2, 2\)"):
        error_metrics(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


def test_result_errors_uses_the_same_metric():
    model = MLP([1, 4, 2], seed=0, dtype=torch.float64)
    x = np.linspace(0, 1, 11)[:, None]
    with torch.no_grad():
        pred = model(torch.as_tensor(x)).numpy()
    exact = pred + np.array([[0.1, -0.2]])
    r = Result(model, None, {}, {}, {}, test_x=x, test_u=exact)
    m = r.error_metrics()
    assert m == error_metrics(pred, exact)
    assert r.errors() == (m["l2_relative"], m["max_abs"])
    assert m["max_abs"] == pytest.approx(0.2, abs=1e-12)
    zero = Result(model, None, {}, {}, {}, test_x=x, test_u=np.zeros((11, 2)))
    assert math.isnan(zero.errors()[0])
    wrong = Result(model, None, {}, {}, {}, test_x=x, test_u=np.zeros((11, 1)))
    with pytest.raises(KanpinnError, match=r"\(11, 2\).*\(11, 1\)"):
        wrong.errors()


def test_nan_metric_survives_a_file_round_trip(tmp_path):
    from kanpinn.result import load
    model = MLP([1, 4, 1], seed=0, dtype=torch.float64)
    x = np.linspace(0, 1, 5)[:, None]
    r = Result(model, None, {}, {}, {}, test_x=x, test_u=np.zeros((5, 1)))
    r.metrics.update(r.error_metrics())
    r.save(tmp_path / "run.h5")
    back = load(tmp_path / "run.h5").metrics
    assert isinstance(back["l2_relative"], float) and math.isnan(back["l2_relative"])
    assert back["l2_absolute"] == r.metrics["l2_absolute"] and back["l2_note"] == r.metrics["l2_note"]



def test_solver_reports_the_same_metric():
    import kanpinn as kp
    problem = kp.Problem(kp.Interval(0, 1), lambda x, u: kp.partial(u, x, 0, 2), [kp.Dirichlet(0.0)],
                         exact=lambda x: 0 * x)                      # the defect: l2_relative = 4e301
    res = kp.solve(problem, kp.KAN([1, 3, 1], grid=3, seed=0), grids=[3], steps=2, n_interior=20, n_boundary=2,
                   progress=False)
    m = res.metrics
    assert math.isnan(m["l2_relative"]) and "l2_note" in m
    assert m["l2_absolute"] == pytest.approx(res.error_metrics()["l2_absolute"], rel=1e-12)
    assert m["l2_absolute"] == pytest.approx(float(np.sqrt(np.mean(res.predict(res.test_x) ** 2))), rel=1e-12)
    assert np.isnan(res.history["l2_relative"]).all() and np.isfinite(res.history["l2_absolute"]).all()
    two = kp.Problem(kp.Interval(0, 1), lambda x, u: kp.partial(u, x, 0, 2), [kp.Dirichlet(0.0)],
                     exact=lambda x: torch.cat([x, x], 1))           # the defect: broadcast, l2 0.998
    with pytest.raises(KanpinnError, match=r"exact\(x\) returns 2 column\(s\) but the model has 1 output"):
        kp.solve(two, kp.KAN([1, 3, 1], grid=3, seed=0), grids=[3], steps=2, n_interior=20, n_boundary=2,
                 progress=False)
