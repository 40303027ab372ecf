"""Solver presets: shipped files, validation, the "d" placeholder, --set overrides."""
import filecmp
import os

import pytest

from kanpinn.errors import KanpinnError
from kanpinn.kan import KAN
from kanpinn.mlp import MLP
from kanpinn.presets import (PRESET_DIR, apply_overrides, load_solver, parse_assignment, preset_names,
                             preset_path, read_solver)

REPO_SOLVERS = os.path.join(os.path.dirname(__file__), os.pardir, "solvers")


def test_repo_solvers_are_identical_copies_of_the_package_presets():
    shipped = sorted(f for f in os.listdir(PRESET_DIR) if f.endswith(".toml"))
    repo = sorted(f for f in os.listdir(REPO_SOLVERS) if f.endswith(".toml"))
    assert shipped == repo
    assert {"kan.toml", "mlp.toml", "kan_multkan.toml", "kan_chebyshev.toml"} <= set(shipped)
    for f in shipped:
        assert filecmp.cmp(os.path.join(PRESET_DIR, f), os.path.join(REPO_SOLVERS, f), shallow=False), f


@pytest.mark.parametrize("name", ["kan", "mlp", "kan_multkan", "kan_chebyshev"])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_presets_build_models_for_any_dimension(name, dim):
    factory, options = load_solver(name)
    model = factory(dim)
    assert model.width_in == dim and model.width_out == 1
    assert isinstance(options, dict) and "steps" in options
    assert factory(dim) is not model                      # a fresh model each call


def test_preset_contents():
    f, o = load_solver(os.path.join(REPO_SOLVERS, "kan.toml"))
    m = f(2)
    assert isinstance(m, KAN) and m.config()["widths"] == [2, 10, 1]
    assert o["grids"] == [5, 10, 20]
    f, o = load_solver("mlp")
    m = f(3)
    assert isinstance(m, MLP) and m.widths == [3, 50, 50, 50, 50, 1] and m.activation == "tanh"
    assert o["optimizer"] == "adam+lbfgs" and o["adam_steps"] == 5000
    assert load_solver("kan_multkan")[0](2).config()["widths"] == [2, [0, 1], 1]
    assert load_solver("kan_chebyshev")[0](2).config()["basis"] == "chebyshev"
    assert set(preset_names()) >= {"kan", "mlp"}


def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_unknown_keys_are_named(tmp_path):
    base = '[model]\ntype = "KAN"\nwidths = ["d", 4, 1]\n'
    with pytest.raises(KanpinnError, match="stepz"):
        load_solver(_write(tmp_path, base + "[options]\nstepz = 3\n"))
    with pytest.raises(KanpinnError, match="gird"):
        load_solver(_write(tmp_path, base + "gird = 3\n"))
    with pytest.raises(KanpinnError, match="modle"):
        load_solver(_write(tmp_path, base + "[modle]\nx = 1\n"))
    with pytest.raises(KanpinnError, match="activation"):
        load_solver(_write(tmp_path, base + 'activation = "tanh"\n'))     # MLP key on a KAN
    with pytest.raises(KanpinnError, match="type"):
        load_solver(_write(tmp_path, '[model]\ntype = "CNN"\nwidths = [1]\n'))
    with pytest.raises(KanpinnError, match="TOML"):
        load_solver(_write(tmp_path, "[model\n"))
    with pytest.raises(KanpinnError, match="does not exist"):
        load_solver(tmp_path / "nothing.toml")
    f, _ = load_solver(_write(tmp_path, '[model]\ntype = "KAN"\nwidths = ["q", 4, 1]\n'))
    with pytest.raises(KanpinnError, match="'q'"):
        f(2)


def test_overrides():
    assert parse_assignment("steps=200") == ("steps", 200)
    assert parse_assignment("grids=[5, 10]") == ("grids", [5, 10])
    assert parse_assignment("optimizer=lbfgs") == ("optimizer", "lbfgs")
    assert parse_assignment('optimizer="adam"') == ("optimizer", "adam")
    assert parse_assignment("lr=1e-3") == ("lr", 1e-3)
    assert parse_assignment("progress=false") == ("progress", False)
    with pytest.raises(KanpinnError):
        parse_assignment("steps")
    with pytest.raises(KanpinnError):
        parse_assignment("grids=[5,")
    data = apply_overrides(read_solver("kan"), ["steps=5", "grids=[3]", "model.grid=3"])
    assert data["options"]["steps"] == 5 and data["options"]["grids"] == [3]
    assert data["model"]["grid"] == 3
    assert read_solver("kan")["options"]["steps"] != 5                 # the file is untouched
    with pytest.raises(KanpinnError, match="bogus"):
        apply_overrides(read_solver("kan"), ["bogus=1"])
    assert preset_path("kan").endswith(os.path.join("presets", "kan.toml"))
