"""kp.symbolify on solutions whose model has no edges to read (auto mode's exact-constraint
wrapper, an MLP): read by distillation and verified on the PDE (kanpinn.symbolic.unreadable)."""
import math

import pytest
import sympy
import torch

import kanpinn as kp
from kanpinn.errors import KanpinnError
from kanpinn.symbolic.unreadable import needs_distillation, readable

PI = math.pi


def sine_problem():
    # u'' = -π² sin(πx), u(0) = u(1) = 0: the solution sin(πx) is in the library
    return kp.Problem(kp.Interval(0.0, 1.0), lambda x, u: kp.laplacian(u, x) + PI ** 2 * torch.sin(PI * x),
                      [kp.Dirichlet(0.0)], exact=lambda x: torch.sin(PI * x))


@pytest.fixture(scope="module")
def auto_result():
    torch.manual_seed(0)
    return kp.solve(sine_problem(), seed=0, max_time=3, progress=False)


def test_auto_mode_solution_is_read_back_exactly(auto_result):
    # auto mode wraps its KAN in u = g + D·N: N = sin(πx)/(x(1-x))-like is no short formula,
    # the solution is
    assert type(auto_result.model).__name__ == "HardConstraint"
    assert not readable(auto_result.model) and needs_distillation(auto_result)
    # under the caller's variable name
    f = kp.symbolify(auto_result, variables=["s"])
    s = sympy.Symbol("s")
    assert sympy.simplify(f - sympy.sin(sympy.pi * s)) == 0


def test_edge_options_are_refused_by_name(auto_result):
    with pytest.raises(KanpinnError, match="allow_numeric.*distillation"):
        kp.symbolify(auto_result, allow_numeric=True)


def test_bare_wrapped_model_and_cli_without_problem_say_what_to_do(auto_result, tmp_path, capsys):
    from kanpinn.cli import main
    from kanpinn.symbolic import symbolify_report
    with pytest.raises(KanpinnError, match="distillation"):
        symbolify_report(auto_result.model)
    path = tmp_path / "run.h5"
    auto_result.save(str(path))
    assert main(["symbolify", str(path)]) == 2
    assert "--problem" in capsys.readouterr().err
