"""The systems table of the bench (issue 11): its error figures against known fields, and
the rows produced by a quick run."""
import math
import os
import runpy

import numpy as np
import pytest
import torch

from kanpinn.bench.report import markdown_report
from kanpinn.bench.systems import SYSTEMS_COLUMNS, kovasznay_errors, run_systems, systems_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KOV = runpy.run_path(os.path.join(REPO, "problems", "kovasznay.py"))


class _Fake:
    """A result whose prediction is the exact field plus ``shift`` on p."""

    def __init__(self, shift=0.0, scale=1.0):
        self.shift, self.scale = shift, scale

    def predict(self, x):
        w = KOV["exact"](torch.as_tensor(x)).numpy().copy()
        w[:, 2] = self.scale * w[:, 2] + self.shift
        return w


def test_kovasznay_errors_exact_field_and_pressure_constant():
    problem = KOV["problem"]
    e = kovasznay_errors(_Fake(), problem)
    assert max(e.values()) < 1e-15
    # a constant on p: the direct error sees it, the error up to the constant does not
    e = kovasznay_errors(_Fake(shift=0.1), problem)
    assert e["u"] < 1e-15 and e["v"] < 1e-15 and e["p"] > 1e-2 and e["p_up_to_constant"] < 1e-12
    # a wrong shape of p is seen by both
    e = kovasznay_errors(_Fake(scale=1.1), problem)
    assert e["p_up_to_constant"] == pytest.approx(0.1, rel=1e-9)


def test_quick_systems_rows(monkeypatch):
    monkeypatch.chdir(REPO)
    rows = run_systems(quick=True, max_time=1.0, log=lambda m: None)
    assert [r["row"].split(":")[0].split(" rel.")[0] for r in rows] == [
        "Kovasznay", "Cavity Re = 100", "LM step", "Matrix-free LM step"]
    for r in rows:
        assert set(r) == set(SYSTEMS_COLUMNS) and r["error"] == "", r
        assert math.isfinite(r["seconds"]) and r["seconds"] > 0
    kov = [float(v) for v in rows[0]["measured"].replace("(", " ").replace(")", " ").replace("/", " ").split()]
    assert len(kov) == 4 and all(np.isfinite(kov))
    ratio = float(rows[2]["measured"].split()[0])
    assert ratio > 0


def test_systems_table_renders(monkeypatch):
    monkeypatch.setattr("kanpinn.bench.systems.run_systems",
                        lambda *a, **k: [dict(row="r", setup="s", measured="1e-6", target="t",
                                              seconds=1.5, error="")])
    table = systems_table(quick=True)
    assert table.name == "systems" and table.columns == SYSTEMS_COLUMNS
    text = markdown_report({}, [], [], [], [], True, 1.0, [table])
    assert "Systems (Navier-Stokes)" in text and "| r | s | 1e-6 | t | 1.5 |" in text
