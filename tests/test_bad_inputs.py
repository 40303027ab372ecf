"""Bad inputs, one case each: the exact error class and a message naming the culprit.

Every case is refused at the door, before any work: the solve cases count the residual's
calls (zero), the command-line cases replace ``kp.solve`` with a function that fails the
test if it is reached. Cases are grouped by where the mistake is made: solve options,
models, problems, conditions, data, files, the command line.
"""
import math
import os
import warnings

import numpy as np
import pytest
import torch

import kanpinn as kp
import kanpinn.solver
from kanpinn.cli import main
from kanpinn.errors import KanpinnError, KanpinnWarning
from kanpinn.options import validate_solve_options
from kanpinn.presets import load_solver
from kanpinn.problem_file import load_problem

NAN = float("nan")
SQUARE = kp.Rectangle([0.0, 0.0], [1.0, 1.0])


def _residual(x, u):
    return kp.laplacian(u, x) + 1.0


def _square_problem(**kw):
    return kp.Problem(SQUARE, _residual, [kp.Dirichlet(0.0)], **kw)


# --------------------------------------------------------------------------- solve options
# (options, text the message must contain: the option's name, and the value where it helps)
OPTION_CASES = [
    ({"weights": {"pde": -1}}, ["'weights'", "-1"]),
    ({"weights": {"pde": NAN}}, ["'weights'", "nan"]),
    ({"weights": [1.0, 2.0]}, ["'weights'", "[1.0, 2.0]"]),
    ({"checkpoint_every": 0}, ["'checkpoint_every'", "got 0"]),
    ({"lbfgs_history": 0}, ["'lbfgs_history'", "got 0"]),
    ({"resample": {"every": 0}}, ["'resample.every'", "got 0"]),
    ({"resample": {"evry": 5}}, ["'evry'", "did you mean 'every'"]),
    ({"resample": {"mode": "radd"}}, ["'resample.mode'", "did you mean 'rad'"]),
    ({"resample": True}, ["'resample'", "True"]),
    ({"grids": 5}, ["'grids'", "write [5]"]),
    ({"grids": [10, 5]}, ["'grids'", "5 follows 10"]),
    ({"grids": [5, 0]}, ["'grids'", "entry 1 is 0"]),
    ({"grids": [5, "a"]}, ["'grids'", "entry 1 is 'a'"]),
    ({"seed": "abc"}, ["'seed'", "'abc'"]),
    ({"seed": -1}, ["'seed'", "-1"]),
    ({"device": "gpu"}, ["'device'", "'gpu'", "did you mean 'cuda'"]),
    ({"lr": "0.1"}, ["'lr'", "'0.1'", "without quotes"]),
    ({"lr": 0}, ["'lr'", "> 0"]),
    ({"lr": NAN}, ["'lr'", "nan"]),
    ({"adam_steps": -3}, ["'adam_steps'", "-3"]),
    ({"starts": 0}, ["'starts'", "got 0"]),
    ({"start_steps": 0}, ["'start_steps'", "got 0"]),
    ({"steps": 2.5}, ["'steps'", "2.5"]),
    ({"steps": True}, ["'steps'", "True"]),
    ({"optimizer": "lbgfs"}, ["'optimizer'", "did you mean 'lbfgs'"]),
    ({"optimizer": 3}, ["'optimizer'", "got 3"]),
    ({"dtype": "float16"}, ["'dtype'", "'float16'"]),
    ({"sampler": "random"}, ["'sampler'", "'random'"]),
    ({"n_interior": 0}, ["'n_interior'", "got 0"]),
    ({"n_boundary": -1}, ["'n_boundary'", "-1"]),
    ({"max_time": -1.0}, ["'max_time'", "-1.0"]),
    ({"target": 0.0}, ["'target'", "0.0"]),
    ({"progress": "yes"}, ["'progress'", "'yes'"]),
    ({"grid_update": 1}, ["'grid_update'", "True or False"]),
    ({"checkpoint": 5}, ["'checkpoint'", "got 5"]),
    ({"checkpoint": os.path.dirname(os.path.abspath(__file__))}, ["'checkpoint'", "not a folder"]),
    ({"adaptive_weights": {"alpha": 2}}, ["'adaptive_weights.alpha'", "got 2"]),
    ({"log_every": 0}, ["'log_every'", "got 0"]),
    ({"test_points": 1}, ["'test_points'", "got 1"]),
    ({"hooks": 5}, ["'hooks'", "got 5"]),
    ({"stpes": 5}, ["'stpes'", "did you mean 'steps'"]),
]


@pytest.mark.parametrize("options, culprit", OPTION_CASES, ids=lambda v: str(v)[:40])
def test_solve_option_is_refused_naming_it(options, culprit):
    with pytest.raises(KanpinnError) as err:
        validate_solve_options(options)
    for text in culprit:
        assert text in str(err.value), (text, str(err.value))


def _counting_problem(conditions=None):
    calls = []

    def residual(x, u):
        calls.append(1)
        return kp.partial(u, x, 0, 2) + 1.0

    conditions = [kp.Dirichlet(0.0)] if conditions is None else conditions
    return kp.Problem(kp.Interval(0, 1), residual, conditions), calls


def _solve_tiny(problem, **options):
    kp.solve(problem, kp.KAN([1, 2, 1], grid=3, seed=0),
             **{"steps": 1, "n_interior": 8, "n_boundary": 2, "progress": False, **options})


# The options kp.solve itself refuses before any work: the residual is never called.
SOLVE_CASES = [({"stpes": 5}, "stpes"), ({"optimizer": "lbgfs"}, "lbgfs"), ({"dtype": "float16"}, "float16"),
               ({"steps": -1}, "steps")]


@pytest.mark.parametrize("options, culprit", SOLVE_CASES, ids=lambda v: str(v)[:30])
def test_solve_refuses_before_any_work(options, culprit):
    problem, calls = _counting_problem()
    with pytest.raises(KanpinnError, match=culprit):
        _solve_tiny(problem, **options)
    assert calls == []


def _solve_source():
    import importlib
    import inspect
    return inspect.getsource(importlib.import_module("kanpinn.solver.solve"))


@pytest.mark.parametrize("options, culprit", OPTION_CASES, ids=lambda v: str(v)[:40])
def test_solve_refuses_every_bad_option_before_any_work(options, culprit):
    """Every schema case through kp.solve itself, once solve calls the schema (kanpinn.options)."""
    if "validate_solve_options" not in _solve_source():
        pytest.skip("kp.solve does not call kanpinn.options.validate_solve_options yet")
    problem, calls = _counting_problem()
    with pytest.raises(KanpinnError) as err:
        _solve_tiny(problem, **options)
    for text in culprit:
        assert text in str(err.value), (text, str(err.value))
    assert calls == []


def test_solve_refuses_a_component_out_of_range_before_any_work():
    if "check_model" not in _solve_source():
        pytest.skip("kp.solve does not call Problem.check_model yet")
    problem, calls = _counting_problem([kp.Dirichlet(0.0, component=1, name="wall")])
    with pytest.raises(KanpinnError, match=r"conditions\[0\] \(Dirichlet 'wall'\) has component=1"):
        _solve_tiny(problem)
    assert calls == []


# --------------------------------------------------------------------------- models
MODEL_CASES = [
    (lambda: kp.KAN([2, 3, 1], k=1.5), ["KAN", "'k'", "1.5"]),
    (lambda: kp.KAN([2, "a", 1]), ["KAN", "'widths'", "entry 1 is 'a'"]),
    (lambda: kp.KAN([2]), ["'widths'", "[2]"]),
    (lambda: kp.KAN([2, [0, 1, 2], 1]), ["'widths'", "entry 1 is [0, 1, 2]"]),
    (lambda: kp.KAN([2, 3, 1], dtype="float16"), ["'dtype'", "'float16'"]),
    (lambda: kp.KAN([2, 3, 1], grid=0), ["'grid'", "got 0"]),
    (lambda: kp.KAN([2, 3, 1], basis="bsplines"), ["'basis'", "did you mean 'bspline'"]),
    (lambda: kp.KAN([2, 3, 1], grid_range=(1, -1)), ["'grid_range'", "(1, -1)"]),
    (lambda: kp.KAN([2, 3, 1], grid_eps=2), ["'grid_eps'", "got 2"]),
    (lambda: kp.KAN([2, 3, 1], seed="abc"), ["'seed'", "'abc'"]),
    (lambda: kp.KAN([2, 3, 1], noise_scale=-0.1), ["'noise_scale'", "-0.1"]),
    (lambda: kp.MLP([2, "a", 1]), ["MLP", "'widths'", "entry 1 is 'a'"]),
    (lambda: kp.MLP([2, 0, 1]), ["MLP", "'widths'", "entry 1 is 0"]),
    (lambda: kp.MLP([2, 3, 1], activation="relu"), ["'activation'", "'relu'"]),
    (lambda: kp.MLP([2, 3, 1], activation="tahn"), ["'activation'", "did you mean 'tanh'"]),
    (lambda: kp.MLP([2, 3, 1], dtype="int64"), ["'dtype'", "'int64'"]),
]


@pytest.mark.parametrize("build, culprit", MODEL_CASES, ids=[f"model{i}" for i in range(len(MODEL_CASES))])
def test_model_argument_is_refused_naming_it(build, culprit):
    with pytest.raises(KanpinnError) as err:
        build()
    for text in culprit:
        assert text in str(err.value), (text, str(err.value))


# --------------------------------------------------------------------------- problems

def _terms_of(problem):
    """Evaluate the residual once on a real model output (the first evaluation checks)."""
    x = torch.rand(6, problem.domain.dim, dtype=torch.float64).requires_grad_()
    u = kp.KAN([problem.domain.dim, 2, 1], grid=3, seed=0, dtype="float64")(x)
    return problem.residual_terms(x, u)


PROBLEM_CASES = [
    (lambda: kp.Problem("square", _residual), ["domain", "str"]),
    (lambda: kp.Problem(SQUARE, "laplacian"), ["residual", "str"]),
    (lambda: kp.Problem(SQUARE, _residual, [5]), ["conditions[0]", "int"]),
    (lambda: kp.Problem(SQUARE, _residual, exact=3.0), ["exact", "float"]),
    (lambda: kp.Problem(SQUARE, _residual, parameters={"k": NAN}), ["parameter 'k'", "nan"]),
    (lambda: kp.Problem(SQUARE, lambda x, u, p: u), ["parameters={...}"]),
    (lambda: kp.Problem(SQUARE, _residual, name=3), ["name", "int"]),
    (lambda: _terms_of(kp.Problem(SQUARE, lambda x, u: u[:, 0])), ["the residual", "shape (6,)"]),
    (lambda: _terms_of(kp.Problem(SQUARE, lambda x, u: kp.laplacian(u, x) + x[:, 2:3])),
     ["the residual", "no columns", "x, y"]),
    (lambda: _terms_of(kp.Problem(SQUARE, lambda x, u: u * NAN)), ["the residual", "NaN"]),
    (lambda: _terms_of(kp.Problem(SQUARE, lambda x, u: x[:, :1] ** 2)), ["the residual", "does not depend on u"]),
    (lambda: _terms_of(kp.Problem(SQUARE, lambda x, u: u + x[:, 5])),
     ["the residual", "first evaluation", "IndexError"]),
    (lambda: _terms_of(kp.Problem(SQUARE, lambda x, u: (u, "r2"))), ["residual term 1", "str"]),
    (lambda: _square_problem(exact=lambda x: x[:3, :1]).exact_values(torch.rand(6, 2)), ["exact(x)", "(3, 1)"]),
    (lambda: _square_problem(exact=lambda x: x[:, :1] / 0.0 * 0.0).exact_values(torch.rand(6, 2)),
     ["exact(x)", "NaN"]),
    (lambda: _square_problem(exact=lambda x: x).check_model(1), ["exact(x) returns 2 column(s)", "1 output"]),
    (lambda: kp.Problem(SQUARE, _residual, [kp.Dirichlet(0.0, component=2, name="wall")]).check_model(2),
     ["conditions[0]", "'wall'", "component=2"]),
    (lambda: kp.Problem(SQUARE, _residual, [kp.Data([[0.5, 0.5]], [[1.0, 2.0]])]).check_model(1),
     ["conditions[0]", "Data", "2 column(s)"]),
    (lambda: _square_problem().check_model(0), ["model_outputs", "0"]),
]


@pytest.mark.parametrize("build, culprit", PROBLEM_CASES, ids=[f"problem{i}" for i in range(len(PROBLEM_CASES))])
def test_problem_mistake_is_refused_naming_it(build, culprit):
    with pytest.raises(KanpinnError) as err:
        build()
    for text in culprit:
        assert text in str(err.value), (text, str(err.value))


# --------------------------------------------------------------------------- conditions
SPACE_TIME = kp.SpaceTime(kp.Interval(0, 1), t=(0, 1))
CONDITION_CASES = [
    (lambda: kp.Dirichlet(value="zero"), ["Dirichlet", "value", "'zero'"]),
    (lambda: kp.Dirichlet(0.0, weight=-1), ["Dirichlet", "weight", "-1"]),
    (lambda: kp.Dirichlet(0.0, on=5), ["Dirichlet", "on", "5"]),
    (lambda: kp.Neumann(0.0, component=-1), ["Neumann", "component", "-1"]),
    (lambda: kp.Robin(1.0, NAN), ["Robin", "b", "finite"]),
    (lambda: kp.Periodic("x", derivatives=3), ["Periodic", "derivatives", "3"]),
    (lambda: kp.Initial(0.0, derivative=-1), ["Initial", "derivative", "-1"]),
    (lambda: kp.Problem(SQUARE, _residual, [kp.Periodic("z")]), ["Periodic('z')", "('x', 'y')"]),
    (lambda: kp.Problem(SQUARE, _residual, [kp.Initial(0.0)]), ["Initial", "SpaceTime"]),
    (lambda: kp.Problem(SPACE_TIME, _residual, [kp.Periodic("t")]), ["Periodic('t')", "time"]),
    # a selector that picks nothing: exact float equality on a face (probed when the problem is built)
    (lambda: kp.Problem(SQUARE, _residual, [kp.Dirichlet(0.0), kp.Dirichlet(1.0, on=lambda x: x[:, 0] == 0.5)]),
     ["conditions[1]", "'dirichlet_2'", "selects no boundary points"]),
    (lambda: kp.Problem(SQUARE, _residual, [kp.Dirichlet(0.0, on=lambda x: x[:, 7] > 0)]),
     ["conditions[0]", "on=...", "failed"]),
    (lambda: kp.Problem(SQUARE, _residual, [kp.Neumann(0.0, on=lambda x: x[:, :2] > 0.5)]),
     ["conditions[0]", "on=...", "shape"]),
    (lambda: kp.Problem(SQUARE, _residual, [kp.Neumann(0.0, on=lambda x: x[:, 0])]),
     ["conditions[0]", "on=...", "booleans"]),
]


@pytest.mark.parametrize("build, culprit", CONDITION_CASES, ids=[f"condition{i}" for i in range(len(CONDITION_CASES))])
def test_condition_mistake_is_refused_naming_it(build, culprit):
    with pytest.raises(KanpinnError) as err:
        build()
    for text in culprit:
        assert text in str(err.value), (text, str(err.value))


def test_condition_value_of_wrong_shape_is_named_at_the_first_misfit():
    bc = kp.Dirichlet(lambda x: torch.ones(3, 4))
    pts = {"x": torch.rand(5, 2)}
    with pytest.raises(KanpinnError, match=r"Dirichlet: value\(x\) must return shape \(5, 1\)"):
        bc.misfit(lambda x: x[:, :1], pts)


# --------------------------------------------------------------------------- data
DATA_CASES = [
    (lambda: kp.Problem(SQUARE, _residual, [kp.Data([[0.5, 0.5], [2.0, 0.5], [1.0, 3.0]], [1.0, 2.0, 3.0])]),
     ["2 of 3 point(s)", "outside", "row 1", "x=2", 'outside="allow"']),
    (lambda: kp.Data([[0.5, NAN]], [1.0]), ["points", "NaN or inf", "row 0"]),
    (lambda: kp.Data([[0.5, 0.5], [0.2, 0.2]], [1.0, math.inf]), ["values", "NaN or inf", "row 1"]),
    (lambda: kp.Data([[0.5, 0.5], [0.2, 0.2]], [1.0]), ["2 points", "1 values"]),
    (lambda: kp.Data([[0.5, 0.5]], [1.0], outside="maybe"), ["outside", "'maybe'"]),
    (lambda: kp.Problem(SQUARE, _residual, [kp.Data([[0.5]], [1.0])]), ["1 columns", "('x', 'y')"]),
    (lambda: kp.Data("points", [1.0]), ["points", "str"]),
    (lambda: kp.Data(np.zeros((0, 2)), np.zeros((0, 1))), ["points", "empty"]),
    (lambda: kp.Data([[0.5, 0.5]], [[1.0, 2.0]], component=0), ["component=0", "one column"]),
]


@pytest.mark.parametrize("build, culprit", DATA_CASES, ids=[f"data{i}" for i in range(len(DATA_CASES))])
def test_data_mistake_is_refused_naming_it(build, culprit):
    with pytest.raises(KanpinnError) as err:
        build()
    for text in culprit:
        assert text in str(err.value), (text, str(err.value))


def test_data_outside_allowed_warns_with_the_count():
    pts = np.array([[0.5, 0.5], [2.0, 0.5], [1.0, 1.0], [-0.5, -0.5]])
    with pytest.warns(KanpinnWarning, match="2 of 4 point"):
        problem = kp.Problem(SQUARE, _residual, [kp.Data(pts, np.zeros(4), outside="allow")])
    # the points are kept as given (the boundary point (1, 1) counts as inside)
    np.testing.assert_array_equal(problem.conditions[0].sample(SQUARE)["x"], pts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # points inside: no warning at all
        kp.Problem(SQUARE, _residual, [kp.Data(pts[[0, 2]], np.zeros(2))])


# --------------------------------------------------------------------------- files

def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


TINY = (
    "import torch\nimport kanpinn as kp\n"
    "problem = kp.Problem(kp.Interval(0.0, 1.0), lambda x, u: kp.partial(u, x, 0, 2) + 1.0,\n"
    "                     [kp.Dirichlet(0.0)], exact=lambda x: 0.5 * x * (1 - x))\n"
)
MODEL = '[model]\ntype = "KAN"\nwidths = ["d", 2, 1]\ngrid = 3\n'
PROBLEM_FILE_CASES = [
    ("missing.py", None, ["missing.py", "does not exist"]),
    ("notes.txt", "problem = 1\n", ["notes.txt", ".py"]),
    ("noproblem.py", "x = 1\n", ["noproblem.py", "does not define `problem`"]),
    ("three.py", "problem = 3\n", ["three.py", "int", "not a kp.Problem"]),
    ("raises.py", "import math\n\nraise RuntimeError('boom')\n", ["raises.py", "line 3", "RuntimeError: boom"]),
    ("syntax.py", "def (\n", ["syntax.py", "SyntaxError"]),
    ("binary.py", b"\x00\x01\x02", ["binary.py", "failed to run"]),
    ("exits.py", "import sys\nsys.exit(3)\n", ["exits.py", "sys.exit(3)"]),
    ("badproblem.py", "import kanpinn as kp\nproblem = kp.Problem(kp.Interval(1, 0), None)\n",
     ["badproblem.py", "Interval"]),
]


@pytest.mark.parametrize("name, text, culprit", PROBLEM_FILE_CASES, ids=[c[0] for c in PROBLEM_FILE_CASES])
def test_problem_file_mistake_is_refused_naming_it(tmp_path, name, text, culprit):
    path = tmp_path / name if text is None else _write(tmp_path, name, text)
    with pytest.raises(KanpinnError) as err:
        load_problem(path)
    for t in culprit:
        assert t in str(err.value), (t, str(err.value))


SOLVER_FILE_CASES = [
    ("broken.toml", "[model\n", ["broken.toml", "not valid TOML"]),
    ("typo.toml", MODEL + "[options]\nstpes = 3\n", ["typo.toml", "'stpes'", "did you mean 'steps'"]),
    ("negative.toml", MODEL + "[options]\nsteps = -1\n", ["negative.toml", "'steps'", "-1"]),
    ("grids.toml", MODEL + "[options]\ngrids = [10, 5]\n", ["grids.toml", "'grids'", "5 follows 10"]),
    ("cnn.toml", '[model]\ntype = "CNN"\nwidths = [1]\n', ["cnn.toml", "type", "'CNN'"]),
    ("modelkey.toml", MODEL + "gird = 3\n", ["modelkey.toml", "'gird'", "did you mean 'grid'"]),
    ("utf.toml", b"\xff\xfe[model]", ["utf.toml"]),
]


@pytest.mark.parametrize("name, text, culprit", SOLVER_FILE_CASES, ids=[c[0] for c in SOLVER_FILE_CASES])
def test_solver_file_mistake_is_refused_naming_it(tmp_path, name, text, culprit):
    path = _write(tmp_path, name, text)
    with pytest.raises(KanpinnError) as err:
        load_solver(path)
    for t in culprit:
        assert t in str(err.value), (t, str(err.value))


def test_result_file_that_is_not_hdf5_is_refused(tmp_path):
    path = _write(tmp_path, "junk.h5", "not an HDF5 file")
    with pytest.raises(KanpinnError, match="junk.h5"):
        kp.load(path)


# --------------------------------------------------------------------------- the command line

@pytest.fixture
def no_training(monkeypatch):
    """kp.solve replaced by a tripwire: a case that reaches it did work before refusing."""
    def tripwire(*a, **k):
        raise AssertionError("training was reached: the mistake was not caught at the door")
    monkeypatch.setattr(kanpinn.solver, "solve", tripwire)


CLI_CASES = [
    (["solve", "{tmp}/missing.py"], ["missing.py", "does not exist"]),
    (["solve", "{tmp}/noproblem.py"], ["noproblem.py", "does not define `problem`"]),
    (["solve", "{tmp}/raises.py"], ["raises.py", "RuntimeError: boom"]),
    (["solve", "{tmp}/tiny.py", "--solver", "{tmp}/broken.toml"], ["broken.toml", "not valid TOML"]),
    (["solve", "{tmp}/tiny.py", "--solver", "nope"], ["nope", "shipped presets: kan"]),
    (["solve", "{tmp}/tiny.py", "--set", "steps"], ["--set", "key=value", "'steps'"]),
    (["solve", "{tmp}/tiny.py", "--set", "steps=-3"], ["'steps'", "-3"]),
    (["solve", "{tmp}/tiny.py", "--set", "lr=abc"], ["'lr'", "'abc'"]),
    (["solve", "{tmp}/tiny.py", "--set", "stpes=3"], ["'stpes'", "did you mean 'steps'"]),
    (["solve", "{tmp}/tiny.py", "--set", "grids=5"], ["'grids'", "write [5]"]),
    (["solve", "{tmp}/tiny.py", "--set", "grids=[5,"], ["--set grids", "cannot read"]),
    (["solve", "{tmp}/tiny.py", "--solver", "kan", "--set", "model.k=1.5"], ["'k'", "1.5"]),
    (["solve", "{tmp}/tiny.py", "--solver", "kan", "--set", "model.gird=3"], ["'gird'", "did you mean 'grid'"]),
    (["solve", "{tmp}/tiny.py", "--solver", "kan", "--set", "steps=-3"], ["kan with --set", "'steps'", "-3"]),
    (["solve", "{tmp}/tiny.py", "--set", "model.k=3"], ["model.k=3", "need a solver file"]),
    (["solve", "{tmp}/tiny.py", "--out", "/nonexistent/dir/run.h5"], ["--out", "/nonexistent/dir", "does not exist"]),
    (["solve", "{tmp}/tiny.py", "--out", "{tmp}"], ["--out", "is a folder"]),
    (["compare", "{tmp}/tiny.py", "kan", "--out", "{tmp}/tiny.py"], ["--out", "tiny.py", "not a folder"]),
    (["plot", "{tmp}/missing.h5"], ["missing.h5"]),
    (["plot", "{tmp}/tiny.py"], ["tiny.py"]),
    (["symbolify", "{tmp}/missing.h5"], ["missing.h5"]),
    (["symbolify", "{tmp}/missing.h5", "--problem", "{tmp}/noproblem.py"], ["missing.h5"]),
    (["solve"], ["required: problem"]),
    (["solve", "{tmp}/tiny.py", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["sovle", "{tmp}/tiny.py"], ["invalid choice: 'sovle'"]),
    (["bench", "--quick", "--device", "gpu"], ["'device'", "'gpu'", "did you mean 'cuda'"]),
    (["bench", "--quick", "--out", "{tmp}/tiny.py"], ["--out", "tiny.py", "not a folder"]),
]


@pytest.mark.parametrize("argv, culprit", CLI_CASES, ids=lambda v: " ".join(v)[:50] if isinstance(v, list) else "")
def test_cli_mistake_is_one_line_exit_2(tmp_path, capsys, no_training, argv, culprit):
    _write(tmp_path, "tiny.py", TINY)
    _write(tmp_path, "noproblem.py", "x = 1\n")
    _write(tmp_path, "raises.py", "raise RuntimeError('boom')\n")
    _write(tmp_path, "broken.toml", "[model\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:                    # argparse's own exit, as the console script sees it
        code = e.code
    assert code == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("kanpinn: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err + captured.out
    for t in culprit:
        assert t.replace("{tmp}", str(tmp_path)) in err, (t, err)
    assert not any(p.suffix == ".h5" for p in tmp_path.iterdir())          # nothing was written


def test_cli_internal_error_is_one_line_exit_1_and_debug_shows_it(tmp_path, capsys, monkeypatch):
    """A bug (not a user's mistake) says so in one line; --debug / KANPINN_DEBUG re-raise it."""
    def bug(*a, **k):
        raise ZeroDivisionError("a bug inside kanpinn")
    monkeypatch.setattr(kanpinn.solver, "solve", bug)
    prob = _write(tmp_path, "tiny.py", TINY)
    monkeypatch.chdir(tmp_path)
    assert main(["solve", str(prob)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kanpinn: internal error: ZeroDivisionError: a bug inside kanpinn") and "--debug" in err
    assert err.count("\n") == 1
    with pytest.raises(ZeroDivisionError):
        main(["solve", str(prob), "--debug"])
    monkeypatch.setenv("KANPINN_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["solve", str(prob)])
    with pytest.raises(KanpinnError, match="steps"):          # user mistakes too, under debug
        main(["solve", str(prob), "--set", "steps=-1"])


# --------------------------------------------------------------------------- the checks are not over-strict

def test_valid_inputs_pass_every_check():
    """The door lets good input through: boundary data, systems with component=, selectors
    that pick a face, numpy numbers, the shipped presets."""
    t0, t1 = 0.0, 2.0
    domain = kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(t0, t1))
    pts = np.array([[-1.0, 0.0], [1.0, 2.0], [0.25, 1.0]])             # two on the boundary
    problem = kp.Problem(
        domain, lambda x, u: (kp.partial(u[:, 0:1], x, 1) - kp.partial(u[:, 0:1], x, 0, 2), u[:, 1:2] - u[:, 0:1]),
        [kp.Dirichlet(0.0, on=lambda x: x[:, 0] > 0.999, component=0), kp.Initial(0.0, component=1),
         kp.Data(pts, np.zeros((3, 2)))],
        exact=lambda x: torch.zeros(x.shape[0], 2, dtype=x.dtype))
    problem.check_model(2)
    model = kp.KAN([2, np.int64(4), 2], grid=np.int64(3), k=3, seed=np.int64(1), dtype="float64")
    assert len(_terms_of_model(problem, model)) == 2
    opts = validate_solve_options({"grids": [np.int64(3), 6], "steps": np.int64(4), "lr": np.float64(1e-3),
                                   "weights": {"pde": 1, "dirichlet": 0.0}, "resample": {"every": 10, "mode": "rad"},
                                   "device": "cpu", "dtype": torch.float32, "optimizer": "adam+lbfgs",
                                   "checkpoint": "run.ckpt.h5", "adaptive_weights": {"every": 5, "alpha": 1.0}})
    assert opts["grids"] == [3, 6] and opts["steps"] == 4 and opts["checkpoint"] == "run.ckpt.h5"


def _terms_of_model(problem, model):
    x = torch.as_tensor(problem.domain.sample_interior(6, "sobol", seed=0)).requires_grad_()
    return problem.residual_terms(x, model(x))
