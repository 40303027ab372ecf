"""Closed-form recovery on the target problems: the formula equals the exact solution."""
import numpy as np
import pytest

from kanpinn.bench.symbolic_targets import CASES, run_symbolic_targets


@pytest.mark.parametrize("case", CASES)
def test_recovers_exact_closed_form(case):
    (row,) = run_symbolic_targets([case], log=lambda *_: None)
    assert row["formula_error"] <= 1e-6, row
    assert row["sympy_equal"], row["formula"]
