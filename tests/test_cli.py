"""The kanpinn command line and problem files."""
import glob
import os

import numpy as np
import pytest
import torch

from kanpinn.cli import main
from kanpinn.domains import Rectangle
from kanpinn.errors import KanpinnError
from kanpinn.kan import KAN
from kanpinn.problem_file import load_problem, load_problem_module
from kanpinn.result import Result, load

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
PROBLEM_FILES = sorted(glob.glob(os.path.join(REPO, "problems", "*.py")))

TINY_PROBLEM = '''
import torch
from kanpinn.conditions import Dirichlet
from kanpinn.domains import Interval
from kanpinn.operators import laplacian
from kanpinn.problem import Problem

pi = torch.pi
problem = Problem(Interval(-1.0, 1.0), lambda x, u: laplacian(u, x) + pi**2 * torch.sin(pi * x),
                  conditions=[Dirichlet(0.0)], exact=lambda x: torch.sin(pi * x))
'''


@pytest.fixture
def run_file(tmp_path):
    model = KAN([2, [1, 1], 1], grid=3, seed=0)
    model.extend_grid(5)
    rect = Rectangle([-1, -1], [1, 1])
    tx = rect.test_points(10)
    r = Result(model, None, {"step": np.arange(3), "loss": np.array([1.0, 0.5, 0.2]), "time": np.array([0, 0.1, 0.2]),
                             "l2_relative": np.array([1.0, 0.8, 0.6])},
               {"l2_relative": 0.6}, {"steps": 3}, test_x=tx, test_u=np.sin(tx[:, :1]),
               variables=("x", "y"), domain_spec=rect.spec())
    path = tmp_path / "hand.h5"
    r.save(path)
    return path


def test_plot_command(run_file, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plot", str(run_file), "--out", str(out)]) == 0
    assert (out / "hand.png").stat().st_size > 1000
    assert (out / "hand_kan.png").stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.h5" in err and "Traceback" not in err
    bad = tmp_path / "bad.h5"
    bad.write_text("junk")
    assert main(["plot", str(bad)]) == 2
    assert "bad.h5" in capsys.readouterr().err
    prob = tmp_path / "p.py"
    prob.write_text(TINY_PROBLEM)
    assert main(["solve", str(prob), "--set", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["solve", str(prob), "--solver", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in capsys.readouterr().err
    assert main(["nonsense"]) == 2                                    # argparse usage error
    assert main(["solve", str(tmp_path / "nothing.py")]) == 2
    assert "nothing.py" in capsys.readouterr().err


def test_problem_file_errors(tmp_path):
    p = tmp_path / "noproblem.py"
    p.write_text("x = 1\n")
    with pytest.raises(KanpinnError, match="does not define `problem`"):
        load_problem(p)
    p.write_text("problem = 3\n")
    with pytest.raises(KanpinnError, match="not a kp.Problem"):
        load_problem(p)
    p.write_text("import torch\n\nraise RuntimeError('boom')\n")
    with pytest.raises(KanpinnError, match=r"line 3.*RuntimeError: boom"):
        load_problem(p)
    good = tmp_path / "tiny_one.py"
    good.write_text(TINY_PROBLEM)
    assert load_problem(good).name == "tiny_one"                     # name from the file


@pytest.mark.parametrize("path", PROBLEM_FILES, ids=os.path.basename)
def test_shipped_problem_files_have_exact_solutions(path):
    mod = load_problem_module(path)
    p = mod.problem
    assert p.name == os.path.splitext(os.path.basename(path))[0]
    assert isinstance(getattr(mod, "suggested", {}), dict)
    if p.exact is None:
        # no closed form: the file must carry its published reference (the cavity: Ghia
        # et al.'s centreline tables) and a function comparing a solution with it
        assert callable(getattr(mod, "centreline_deviation", None)), "no exact solution and no reference"
        return
    x = torch.as_tensor(p.domain.sample_interior(64, "sobol", seed=1), dtype=torch.float64).requires_grad_()
    tol = getattr(mod, "reference_accuracy", 1e-9)      # a numerical reference states its own
    args = (x, p.exact(x))
    if p.parameters:                                    # inverse problems: at the true values
        args += ({k: torch.tensor(v, dtype=torch.float64) for k, v in mod.true_parameters.items()},)
    res = p.residual(*args)
    for term in (res if isinstance(res, (tuple, list)) else (res,)):    # systems: one term each
        assert float(term.detach().abs().max()) < tol
    for c in p.conditions:
        pts = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in c.sample(p.domain, 32, "sobol", 0).items()}
        assert float(c.misfit(p.exact, pts).detach().abs().max()) < tol


def test_solve_command_tiny_budget(tmp_path, capsys, monkeypatch):
    prob = tmp_path / "tiny.py"
    prob.write_text(TINY_PROBLEM)
    monkeypatch.chdir(tmp_path)
    args = ["solve", str(prob), "--set", "steps=5", "grids=[3]", "n_interior=64", "n_boundary=2",
            "progress=false", "--set", "model.widths=[1, 3, 1]", "--solver", "kan"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "relative L2 error" in out
    assert (tmp_path / "tiny.h5").exists() and (tmp_path / "tiny.png").exists()
    again = load(tmp_path / "tiny.h5")
    assert np.isfinite(again.metrics["l2_relative"])
    # a second run never overwrites: it picks a new name and says so
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tiny-1.h5" in out and (tmp_path / "tiny-1.h5").exists()
    # compare: table with one row per solver, result files and plots in the folder
    assert main(["compare", str(prob), "kan", "--out", "cmp", "--set", "steps=3", "grids=[3]", "n_interior=64",
                 "n_boundary=2", "progress=false", "model.widths=[1, 2, 1]"]) == 0
    out = capsys.readouterr().out
    assert "rel. L2" in out and "FLOPs/point" in out and "kan" in out
    assert {"compare.png", "table.txt", "tiny-kan.h5", "tiny-kan.png"} <= set(os.listdir(tmp_path / "cmp"))


def test_unique_names(tmp_path):
    from kanpinn.cli import _unique_path
    p = tmp_path / "a.h5"
    assert _unique_path(str(p), False) == str(p)
    p.write_text("x")
    assert _unique_path(str(p), False) == str(tmp_path / "a-1.h5")
    assert _unique_path(str(p), True) == str(p)
    (tmp_path / "a-1.h5").write_text("x")
    assert _unique_path(str(p), False) == str(tmp_path / "a-2.h5")
