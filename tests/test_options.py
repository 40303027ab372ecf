"""The option schema (kanpinn.options): one entry per kp.solve option, used by every entry
point; model arguments; Python 3.10 support of the presets."""
import doctest
import importlib
import os
import sys

import numpy as np
import pytest
import torch

import kanpinn as kp
import kanpinn.options as options_module
from kanpinn import presets
from kanpinn.errors import KanpinnError
from kanpinn.options import (SOLVE_OPTIONS, check_option, solve_defaults, unknown_name_message,
                             validate_solve_options)

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
solve_module = importlib.import_module("kanpinn.solver.solve")


def test_schema_has_one_entry_per_solve_option_with_the_same_defaults():
    """The drift guard: an option added to kp.solve without a schema entry fails here."""
    assert set(SOLVE_OPTIONS) == set(solve_module.DEFAULTS)
    for name, default in solve_module.DEFAULTS.items():
        assert SOLVE_OPTIONS[name].default == default, name


@pytest.mark.parametrize("name", sorted(SOLVE_OPTIONS))
def test_every_default_passes_its_own_check_and_is_documented(name):
    spec = SOLVE_OPTIONS[name]
    assert check_option(name, spec.default) == spec.default
    assert spec.doc and spec.allowed


def test_validate_fills_defaults_normalises_and_leaves_the_input_alone():
    given = {"grids": (np.int64(5), 10), "steps": np.int32(7), "lr": np.float32(0.5), "resample": 25,
             "seed": None, "device": "cuda:1", "weights": {"pde": 2}, "adaptive_weights": True}
    before = dict(given)
    opts = validate_solve_options(given)
    assert given == before
    assert set(opts) == set(SOLVE_OPTIONS)
    assert opts["grids"] == [5, 10] and all(type(g) is int for g in opts["grids"])
    assert opts["steps"] == 7 and type(opts["steps"]) is int
    assert opts["lr"] == 0.5 and type(opts["lr"]) is float
    assert opts["resample"] == {"every": 25}
    assert opts["weights"] == {"pde": 2.0}
    assert opts["adaptive_weights"] is True and opts["seed"] is None and opts["device"] == "cuda:1"
    assert opts["n_interior"] == solve_defaults()["n_interior"]


def test_optimizer_accepts_registered_names_pairs_and_torch_optimizers():
    assert check_option("optimizer", "lm+lbfgs") == "lm+lbfgs"
    assert check_option("optimizer", torch.optim.Adam) is torch.optim.Adam
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    assert check_option("optimizer", opt) is opt
    factory = lambda params: torch.optim.Adam(params)                   # noqa: E731
    assert check_option("optimizer", factory) is factory
    with pytest.raises(KanpinnError, match="'gn'"):
        check_option("optimizer", "gn")
    assert check_option("optimizer", "gn", optimizers=["lm", "gn"]) == "gn"        # a registry's names
    assert check_option("optimizer", "auto", optimizers=["lm"]) == "auto"
    with pytest.raises(KanpinnError, match="'optimizer'"):
        check_option("optimizer", torch.nn.Linear)                                 # a class, not an optimiser


def test_messages_name_the_option_the_value_and_what_is_allowed():
    with pytest.raises(KanpinnError) as err:
        check_option("checkpoint_every", 0)
    assert str(err.value) == "solve option 'checkpoint_every': expected an integer >= 1, got 0"
    with pytest.raises(KanpinnError) as err:
        check_option("lr", "1e-3")
    assert str(err.value) == ("solve option 'lr': expected a finite number > 0, or None, got '1e-3' "
                              "(a string; write it without quotes)")
    assert unknown_name_message("solve option", "n_interiour", SOLVE_OPTIONS).startswith(
        "unknown solve option 'n_interiour'; did you mean 'n_interior'?")
    assert "did you mean" not in unknown_name_message("solve option", "zzzz", SOLVE_OPTIONS)


def test_doctests_of_the_module_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for t in finder.find(options_module):
        runner.run(t)
    for t in finder.find(kp.Problem.check_model, "check_model", globs={"kp": kp, "torch": torch}):
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 4 and result.failed == 0


@pytest.mark.parametrize("dtype, expected", [("float32", torch.float32), ("float64", torch.float64),
                                             (torch.float64, torch.float64)])
def test_models_take_the_dtype_by_name(dtype, expected):
    kan = kp.KAN([2, 3, 1], grid=3, seed=0, dtype=dtype)
    mlp = kp.MLP([2, 4, 1], seed=0, dtype=dtype)
    assert {p.dtype for p in kan.parameters()} == {expected} == {p.dtype for p in mlp.parameters()}
    x = torch.rand(5, 2, dtype=expected)
    assert kan(x).dtype == expected and mlp(x).dtype == expected


def test_models_take_numpy_integers_and_stay_identical():
    a = kp.KAN([np.int64(2), [0, np.int32(1)], 1], grid=np.int64(3), k=np.int64(3), seed=np.int64(4))
    b = kp.KAN([2, [0, 1], 1], grid=3, k=3, seed=4)
    x = torch.rand(7, 2)
    assert a.config() == b.config()
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_presets_use_the_schema_and_every_shipped_preset_passes_it():
    assert not hasattr(presets, "_FALLBACK_OPTIONS")
    for name in presets.preset_names():
        data = presets.read_solver(name)
        assert validate_solve_options(data["options"])                       # no error
    data = presets.apply_overrides(presets.read_solver("kan"), ["steps=7", "optimizer=lbfgs"])
    assert data["options"]["steps"] == 7 and data["options"]["optimizer"] == "lbfgs"


def test_presets_read_toml_with_tomli_where_tomllib_is_missing(monkeypatch):
    """Python 3.10 has no tomllib: the presets fall back to tomli (same API)."""
    pytest.importorskip("tomli")
    try:
        with monkeypatch.context() as m:
            m.setitem(sys.modules, "tomllib", None)           # import tomllib now fails, as on 3.10
            importlib.reload(presets)
            assert presets.tomllib.__name__ == "tomli"
            assert presets.read_solver("kan")["options"]["grids"] == [5, 10, 20]
            assert presets.parse_assignment("g=[5, 10]") == ("g", [5, 10])
    finally:
        importlib.reload(presets)
    assert presets.tomllib.__name__ == ("tomllib" if sys.version_info >= (3, 11) else "tomli")


def test_pyproject_declares_tomli_for_python_below_3_11():
    try:
        import tomllib
    except ModuleNotFoundError:                                  # pragma: no cover - Python 3.10
        import tomli as tomllib
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["requires-python"] == ">=3.10"
    tomli = [d for d in project["dependencies"] if d.startswith("tomli")]
    assert tomli == ['tomli>=1.1; python_version < "3.11"']
