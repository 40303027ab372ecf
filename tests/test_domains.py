"""Domains: sampling lands where it should, in the right proportions, reproducibly.

Truths are computed by hand here (face membership by exact coordinate, distance to a
circle by its formula), never by asking the domain about itself.
"""

import math
import warnings

import numpy as np
import pytest

from kanpinn.domains import Box, Disk, Interval, Rectangle, SpaceTime, domain_from_spec
from kanpinn.errors import KanpinnError

RANDOM = ["uniform", "sobol", "lhs"]


def box_boundary_distance(x, lo, hi):
    """Distance of in-box points to the box boundary, by hand."""
    return np.minimum(np.abs(x - lo), np.abs(hi - x)).min(axis=1)


# ------------------------------------------------------------------ boxes


@pytest.mark.parametrize("method", RANDOM)
def test_rectangle_interior_inside_and_reproducible(method):
    r = Rectangle([-1.0, 0.0], [2.0, 0.5])
    x = r.sample_interior(300, method, seed=7)
    assert x.shape == (300, 2) and x.dtype == np.float64
    assert np.all(x[:, 0] >= -1) and np.all(x[:, 0] <= 2)
    assert np.all(x[:, 1] >= 0) and np.all(x[:, 1] <= 0.5)
    np.testing.assert_array_equal(x, r.sample_interior(300, method, seed=7))
    assert not np.allclose(x, r.sample_interior(300, method, seed=8))
    # Space is covered: every quarter of each direction gets points.
    for j, (a, b) in enumerate([(-1, 2), (0, 0.5)]):
        counts = np.histogram(x[:, j], bins=4, range=(a, b))[0]
        assert counts.min() > 300 / 4 * 0.6


def test_sobol_non_power_of_two_no_warning_and_is_prefix():
    r = Rectangle([0, 0], [1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x100 = r.sample_interior(100, "sobol", seed=3)
        x128 = r.sample_interior(128, "sobol", seed=3)
    np.testing.assert_array_equal(x100, x128[:100])
    # A 128-point scrambled Sobol' set is balanced: 8 per cell of a 4x4 partition.
    cells = (np.floor(x128 * 4).astype(int) @ np.array([4, 1]))
    assert np.all(np.bincount(cells, minlength=16) == 8)


def test_lhs_is_latin():
    x = Interval(0.0, 1.0).sample_interior(50, "lhs", seed=1)
    assert sorted(np.floor(x[:, 0] * 50).astype(int)) == list(range(50))


def test_grid_interior_is_full_51_by_51_mesh():
    r = Rectangle([-1, -1], [1, 1])
    x = r.sample_interior(2601, "grid")
    assert x.shape == (2601, 2)
    line = np.linspace(-1, 1, 51)
    for j in range(2):
        np.testing.assert_allclose(np.unique(x[:, j]), line, atol=1e-15)
    assert len({tuple(p) for p in x}) == 2601  # all distinct
    assert [-1.0, -1.0] in x.tolist() and [1.0, 1.0] in x.tolist()  # edges included


def test_grid_boundary_51_per_side():
    r = Rectangle([-1, -1], [1, 1])
    b = r.sample_boundary(204, "grid")
    assert b.shape == (204, 2)
    line = np.linspace(-1, 1, 51)
    for j, v in [(0, -1.0), (0, 1.0), (1, -1.0), (1, 1.0)]:
        side = b[b[:, j] == v]
        # corners lie on two sides, so each side has its own 51 plus up to 2 corners
        # contributed by the neighbouring sides
        own = np.sort(side[:, 1 - j])
        assert set(np.round(line, 12)) <= set(np.round(own, 12))
        assert 51 <= len(side) <= 53
    np.testing.assert_allclose(box_boundary_distance(b, -1, 1), 0, atol=0)


@pytest.mark.parametrize("method", RANDOM + ["grid"])
def test_box_boundary_on_faces_in_area_proportion(method):
    lo, hi = np.array([0.0, 0.0, 0.0]), np.array([1.0, 2.0, 3.0])
    b = Box(lo, hi).sample_boundary(2200, method, seed=0)
    assert np.all(b >= lo) and np.all(b <= hi)
    assert np.max(box_boundary_distance(b, lo, hi)) == 0.0
    # face areas: x-faces 2*3 = 6, y-faces 1*3 = 3, z-faces 1*2 = 2 (total 22)
    expect = {0: 6 / 22, 1: 3 / 22, 2: 2 / 22}
    for j in range(3):
        for v in (lo[j], hi[j]):
            on_face = b[:, j] == v
            if method == "grid":
                # shares 600/300/200 per face -> closed m x m face grids with
                # m = 24, 17, 14, of which (m - 2)^2 points lie strictly inside the face
                others = [k for k in range(3) if k != j]
                inner = np.all((b[:, others] > lo[others]) & (b[:, others] < hi[others]), axis=1)
                assert np.sum(on_face & inner) == {0: 22**2, 1: 15**2, 2: 12**2}[j]
            else:
                assert np.mean(on_face) == pytest.approx(expect[j], abs=1e-12)
    if method == "grid":
        assert len(b) == 2 * (24**2 + 17**2 + 14**2)  # 2122, "about" 2200


def test_rectangle_boundary_exact_counts():
    b = Rectangle([0, 0], [2, 1]).sample_boundary(300, "uniform", seed=0)
    # perimeter 6: the two sides of length 1 get 50 points each, those of length 2 get 100
    assert np.sum(b[:, 0] == 0) == 50 and np.sum(b[:, 0] == 2) == 50
    assert np.sum(b[:, 1] == 0) == 100 and np.sum(b[:, 1] == 1) == 100


def test_box_normals_by_hand():
    r = Rectangle([0, 0], [2, 1])
    x = np.array([[2.0, 0.3], [0.0, 0.7], [1.2, 0.0], [0.5, 1.0], [0.0, 0.0], [2.0, 1.0]])
    s = 1 / math.sqrt(2)
    expect = np.array([[1, 0], [-1, 0], [0, -1], [0, 1], [-s, -s], [s, s]])
    np.testing.assert_allclose(r.normals(x), expect, atol=1e-15)


def test_box_variables():
    assert Box([0] * 3, [1] * 3).variables == ("x", "y", "z")
    assert Box([0] * 4, [1] * 4).variables == ("x1", "x2", "x3", "x4")
    assert Rectangle([0, 0], [1, 1]).variables == ("x", "y")
    assert Interval(0, 1).variables == ("x",)
    b = Box([0] * 5, [1] * 5)
    assert b.dim == 5 and b.sample_interior(10, "sobol", seed=0).shape == (10, 5)
    assert b.sample_boundary(10, "sobol", seed=0).shape == (10, 5)


def test_interval_boundary_alternates():
    b = Interval(-2.0, 3.0).sample_boundary(5)
    np.testing.assert_array_equal(b[:, 0], [-2, 3, -2, 3, -2])
    np.testing.assert_array_equal(Interval(-2.0, 3.0).normals(b)[:, 0], [-1, 1, -1, 1, -1])
    np.testing.assert_allclose(Interval(0, 1).sample_interior(11, "grid")[:, 0], np.linspace(0, 1, 11))


def test_contains_and_test_points():
    r = Rectangle([0, 0], [1, 1])
    assert r.contains(np.array([[0.5, 0.5], [1.0, 0.0], [1.01, 0.5], [-0.2, 0.5]])).tolist() == [
        True, True, False, False]
    t = r.test_points(5)
    assert t.shape == (25, 2) and [0.0, 0.0] in t.tolist() and [1.0, 1.0] in t.tolist()


# ------------------------------------------------------------------ disk


@pytest.mark.parametrize("method", RANDOM)
def test_disk_interior_uniform_in_area(method):
    d = Disk([1.0, -1.0], 2.0)
    x = d.sample_interior(4096, method, seed=0)
    r = np.hypot(x[:, 0] - 1, x[:, 1] + 1)
    assert np.all(r <= 2 + 1e-12)
    # uniform in area: the inner disk of radius 1 holds a quarter of the points
    assert np.mean(r <= 1) == pytest.approx(0.25, abs=0.03)
    # and the angles are uniform: each quadrant holds a quarter
    q = (x[:, 0] > 1).astype(int) * 2 + (x[:, 1] > -1)
    assert np.allclose(np.bincount(q) / 4096, 0.25, atol=0.03)


@pytest.mark.parametrize("method", RANDOM + ["grid"])
def test_disk_boundary_and_normals(method):
    d = Disk([1.0, -1.0], 2.0)
    b = d.sample_boundary(64, method, seed=2)
    assert b.shape == (64, 2)
    np.testing.assert_allclose(np.hypot(b[:, 0] - 1, b[:, 1] + 1), 2.0, rtol=1e-13)
    np.testing.assert_allclose(d.normals(b), (b - [1.0, -1.0]) / 2.0, atol=1e-13)


def test_disk_grid_and_test_points():
    d = Disk([0, 0], 1)
    x = d.sample_interior(1000, "grid")
    assert 900 < len(x) < 1100 and np.all(np.hypot(*x.T) <= 1 + 1e-12)
    b = d.sample_boundary(8, "grid")  # equally spaced angles, no duplicate at 2 pi
    ang = np.sort(np.mod(np.arctan2(b[:, 1], b[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(ang, np.arange(8) * np.pi / 4, atol=1e-12)
    t = d.test_points(21)
    assert np.all(np.hypot(*t.T) <= 1 + 1e-12) and len(t) > 300


# ------------------------------------------------------------------ space-time


@pytest.mark.parametrize("method", RANDOM + ["grid"])
def test_spacetime_interval(method):
    st = SpaceTime(Interval(0.0, 1.0), t=(0.5, 2.0))
    assert st.variables == ("x", "t") and st.dim == 2
    x = st.sample_interior(400, method, seed=1)
    assert np.all((x[:, 0] >= 0) & (x[:, 0] <= 1) & (x[:, 1] >= 0.5) & (x[:, 1] <= 2))
    b = st.sample_boundary(100, method, seed=1)
    assert set(np.unique(b[:, 0])) == {0.0, 1.0}
    assert np.sum(b[:, 0] == 0) == 50
    # the lateral sides are covered in time: both halves of [0.5, 2] are hit on each side
    for side in (0.0, 1.0):
        ts = b[b[:, 0] == side, 1]
        assert np.all((ts >= 0.5) & (ts <= 2)) and np.any(ts < 1.25) and np.any(ts > 1.25)
    np.testing.assert_array_equal(st.normals(b), np.where(b[:, :1] == 0, [[-1.0, 0.0]], [[1.0, 0.0]]))
    ini = st.sample_initial(30, method, seed=1)
    assert np.all(ini[:, 1] == 0.5) and np.all((ini[:, 0] >= 0) & (ini[:, 0] <= 1))


def test_spacetime_sobol_is_joint_low_discrepancy():
    from scipy.stats import qmc

    st = SpaceTime(Rectangle([0, 0], [1, 1]), t=(0, 1))
    x = st.sample_interior(512, "sobol", seed=0)
    rand = st.sample_interior(512, "uniform", seed=0)
    assert qmc.discrepancy(x) < 0.3 * qmc.discrepancy(rand)


def test_spacetime_disk_normals_and_initial():
    st = SpaceTime(Disk([0, 0], 2.0), t=(0, 1))
    b = st.sample_boundary(50, "sobol", seed=0)
    np.testing.assert_allclose(np.hypot(b[:, 0], b[:, 1]), 2.0)
    n = st.normals(b)
    np.testing.assert_allclose(n[:, :2], b[:, :2] / 2.0, atol=1e-13)
    assert np.all(n[:, 2] == 0)
    assert st.contains(b).all()


def test_spacetime_grid_counts():
    st = SpaceTime(Interval(0, 1), t=(0, 1))
    x = st.sample_interior(2601, "grid")
    assert len(np.unique(x[:, 0])) == 51 and len(np.unique(x[:, 1])) == 51 and len(x) == 2601
    assert st.test_points(11).shape == (121, 2)


# ------------------------------------------------------------------ specs


@pytest.mark.parametrize("dom", [
    Interval(-1, 2), Rectangle([0, 1], [2, 3]), Box([0] * 4, [1, 2, 3, 4]), Disk([0.5, 0], 3),
    SpaceTime(Disk([0, 0], 1), t=(0, 2)), SpaceTime(Interval(0, 1)), Box([0, 0], [1, 1], variables=("r", "s")),
])
def test_spec_round_trip(dom):
    import json

    spec = json.loads(json.dumps(dom.spec()))
    again = domain_from_spec(spec)
    assert type(again) is type(dom) and again.variables == dom.variables
    np.testing.assert_array_equal(again.lo, dom.lo)
    np.testing.assert_array_equal(again.sample_interior(16, seed=4), dom.sample_interior(16, seed=4))


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("make, words", [
    (lambda: Rectangle([0, 0], [1, 0]), "lo[1]"),
    (lambda: Interval(1, 1), "a < b"),
    (lambda: Box([0, 0], [1, 1, 1]), "same length"),
    (lambda: Rectangle([0, 0, 0], [1, 1, 1]), "2 entries"),
    (lambda: Disk([0, 0], -1), "radius"),
    (lambda: Disk([0, 0, 0], 1), "center"),
    (lambda: SpaceTime(Interval(0, 1), t=(1, 0)), "t0 < t1"),
    (lambda: SpaceTime(SpaceTime(Interval(0, 1))), "already a SpaceTime"),
    (lambda: SpaceTime("interval"), "space must be"),
    (lambda: Box([0, float("nan")], [1, 1]), "finite"),
    (lambda: Rectangle([0, 0], [1, 1]).sample_interior(10, "halton"), "unknown sampling method"),
    (lambda: Rectangle([0, 0], [1, 1]).sample_boundary(-3), "non-negative"),
    (lambda: Rectangle([0, 0], [1, 1]).sample_interior(2.5), "non-negative integer"),
    (lambda: Rectangle([0, 0], [1, 1]).sample_interior(4, seed=-1), "seed"),
    (lambda: Rectangle([0, 0], [1, 1]).normals(np.zeros((3, 3))), "shape (n, 2)"),
    (lambda: Disk([0, 0], 1).contains(np.zeros(4)), "shape (n, 2)"),
    (lambda: domain_from_spec({"type": "Torus"}), "unknown domain type"),
    (lambda: domain_from_spec({"type": "Disk", "center": [0, 0]}), "radius"),
])
def test_bad_inputs_raise(make, words):
    with pytest.raises(KanpinnError) as e:
        make()
    assert words in str(e.value)
    assert isinstance(e.value, ValueError)


def test_zero_points():
    assert Rectangle([0, 0], [1, 1]).sample_interior(0).shape == (0, 2)
    assert Disk([0, 0], 1).sample_boundary(0).shape == (0, 2)
