"""Result files: save/load round trips, validation of broken files, no pickle."""
import json

import h5py
import numpy as np
import pytest
import sympy
import torch

from kanpinn.domains import Rectangle
from kanpinn.errors import KanpinnError
from kanpinn.kan import KAN
from kanpinn.mlp import MLP
from kanpinn.models import model_from_config, parse_formula
from kanpinn.result import FORMAT, Result, load

RECT = Rectangle([-1.0, -1.0], [1.0, 1.0])


def _hist():
    return {"step": np.arange(5), "loss": np.logspace(0, -2, 5), "time": np.linspace(0, 1, 5),
            "l2_relative": np.logspace(0, -1, 5)}


def _result(model):
    tx = RECT.test_points(12)
    tu = np.sin(np.pi * tx[:, :1]) * np.sin(np.pi * tx[:, 1:])
    return Result(model, None, _hist(), {"l2_relative": 0.1, "max_abs": np.float64(0.2), "n_parameters": 7},
                  {"steps": 5, "grids": [3, 6], "dtype": torch.float64},
                  test_x=tx, test_u=tu, variables=("x", "y"), domain_spec=RECT.spec())


def _kan():
    torch.manual_seed(0)
    m = KAN([2, [2, 1], 1], grid=3, k=3, dtype=torch.float64, seed=1)
    x = torch.rand(64, 2, dtype=torch.float64) * 2 - 1
    m.extend_grid(6, x)                       # grids differ from the constructor's
    m.fix_symbolic(0, 1, 2, "sin", a=1.5, b=0.2, c=0.7, d=0.1, expr=sympy.sin)
    return m


def _all_datasets(f):
    out = []
    f.visititems(lambda name, obj: out.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.parametrize("make", [_kan, lambda: MLP([2, 8, 8, 1], activation="sin", seed=0, dtype=torch.float64),
                                  lambda: KAN([2, 4, 1], grid=4, basis="chebyshev", seed=2)])
def test_round_trip_identical_predictions(tmp_path, make):
    model = make()
    r = _result(model)
    path = tmp_path / "run.h5"
    r.save(path)
    again = load(path)
    x = np.random.default_rng(0).uniform(-1, 1, (300, 2))
    np.testing.assert_array_equal(again.predict(x), r.predict(x))
    np.testing.assert_array_equal(again.predict(torch.as_tensor(x)), r.predict(x))
    assert again.problem is None
    assert again.variables == ("x", "y")
    assert again.domain_spec == RECT.spec()
    np.testing.assert_array_equal(again.test_x, r.test_x)
    np.testing.assert_array_equal(again.test_u, r.test_u)
    assert set(again.history) == set(r.history)
    np.testing.assert_array_equal(again.history["loss"], r.history["loss"])
    assert again.metrics["l2_relative"] == 0.1 and again.metrics["max_abs"] == 0.2
    assert again.options["grids"] == [3, 6]
    assert again.model.config() == json.loads(json.dumps(model.config()))


def test_file_layout_has_no_pickle(tmp_path):
    path = tmp_path / "run.h5"
    _result(_kan()).save(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT
        assert {"model", "history", "problem", "test"} <= set(f)
        assert "layers.0.coef" in f["model/state"]
        json.loads(f["model"].attrs["config"])
        json.loads(f.attrs["metrics"])
        for name, ds in _all_datasets(f):
            assert ds.dtype.kind in "biuf", f"{name} has dtype {ds.dtype}"
    raw = open(path, "rb").read()
    assert b"\x80\x04\x95" not in raw and b"cnumpy" not in raw      # pickle markers


def test_predict_shapes_and_chunks():
    m = MLP([2, 4, 1], seed=0)
    r = Result(m, None, {}, {}, {})
    assert r.predict(np.zeros((0, 2))).shape == (0, 1)
    out = r.predict(np.random.rand(70000, 2))                      # two chunks
    assert out.shape == (70000, 1) and out.dtype == np.float32


def test_save_never_leaves_half_file(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    r = _result(MLP([2, 4, 1], seed=0))
    r.save(path)
    good = path.read_bytes()

    r2 = _result(MLP([2, 4, 1], seed=0))
    r2.history["loss"] = np.array([object()], dtype=object)      # fails while writing
    with pytest.raises(Exception):
        r2.save(path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["run.h5"]     # no temp file left
    with pytest.raises(KanpinnError, match="exists"):
        r.save(path, overwrite=False)


def test_corrupt_and_wrong_files(tmp_path):
    bad = tmp_path / "garbage.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(KanpinnError, match="garbage.h5"):
        load(bad)
    with pytest.raises(KanpinnError, match="no such file"):
        load(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(KanpinnError, match="not a kanpinn result"):
        load(other)
    good = tmp_path / "run.h5"
    _result(_kan()).save(good)
    with h5py.File(good, "a") as f:
        del f["history"]
    with pytest.raises(KanpinnError, match="/history is missing"):
        load(good)
    good2 = tmp_path / "run2.h5"
    _result(_kan()).save(good2)
    with h5py.File(good2, "a") as f:
        f["model"].attrs["config"] = "{broken json"
    with pytest.raises(KanpinnError, match="config"):
        load(good2)
    good3 = tmp_path / "run3.h5"
    _result(_kan()).save(good3)
    with h5py.File(good3, "a") as f:
        del f["model/state/layers.0.coef"]
        f["model/state/layers.0.coef"] = np.zeros((2, 3, 1))
    with pytest.raises(KanpinnError, match=r"layers.0.coef has shape \(2, 3, 1\), but the model config implies"):
        load(good3)
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good2.read_bytes()[:2000])
    with pytest.raises(KanpinnError, match="trunc.h5"):
        load(trunc)


def test_symbolic_formula_parsing_is_safe():
    z = sympy.Symbol("z")
    assert parse_formula("sin(pi*z) + 2.5e-3*exp(-z**2)") == sympy.sin(sympy.pi * z) + 0.0025 * sympy.exp(-z**2)
    for evil in ["__import__('os').system('true')", "z.__class__", "lambda: 1", "open(z)", "x + 1", ""]:
        with pytest.raises(KanpinnError):
            parse_formula(evil)
    cfg = _kan().config()
    cfg["symbolic"][0]["1_2"]["expr"] = "eval(z)"
    with pytest.raises(KanpinnError, match="unknown name 'eval'"):
        model_from_config(cfg)


def test_model_from_config_errors():
    with pytest.raises(KanpinnError, match="unknown type"):
        model_from_config({"type": "CNN"})
    with pytest.raises(KanpinnError, match="widths"):
        model_from_config({"type": "MLP"})
    with pytest.raises(KanpinnError, match="grids"):
        model_from_config({"type": "KAN", "widths": [2, 3, 1], "grid": [5]})


def test_model_from_config_keeps_preset_seeds_and_grid_range():
    # solver presets build their models through model_from_config: seed and grid_range count
    def build(**kw):
        return model_from_config({"type": "KAN", "widths": [2, 3, 1], "grid": 4, **kw})
    a, b, c = build(seed=3, grid_range=(-2.0, 2.0)), build(seed=3, grid_range=[-2.0, 2.0]), build(seed=4)
    assert torch.equal(a.layers[0].coef, b.layers[0].coef) and not torch.equal(a.layers[0].coef, c.layers[0].coef)
    assert float(a.layers[0].basis.knots[0, 3]) == -2.0                     # k = 3 padding knots, then lo
    m1, m2 = (model_from_config({"type": "MLP", "widths": [2, 3, 1], "seed": 5}) for _ in range(2))
    assert torch.equal(m1.linears[0].weight, m2.linears[0].weight)
    with pytest.raises(KanpinnError, match="'seed' must be an integer"):
        build(seed="abc")
