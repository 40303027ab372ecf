"""Result files from someone else: ``kp.load`` (and the CLI's plot / symbolify, which read
through it) refuses every bad file quickly, in bounded memory, without running code, with a
KanpinnError naming the file and the field.

Each hostile file is built with h5py in tmp_path. Where hanging or exhausting memory is
the failure mode, the loads run in one subprocess with an address-space limit and a
timeout, so a regression fails the test instead of freezing or swapping the machine."""
import json
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import sympy
import torch

from kanpinn.errors import KanpinnError
from kanpinn.kan import KAN
from kanpinn.mlp import MLP
from kanpinn.result import Result, load

# Loads each file given on the command line after capping the address space at what is
# mapped now (torch and kanpinn imported) + 1 GiB; prints one JSON line per file.
BOUNDED_LOADER = r"""
import json, resource, sys, time
import kanpinn
from kanpinn.errors import KanpinnError
from kanpinn.result import load
with open("/proc/self/statm") as fh:
    mapped = int(fh.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + 2 ** 30, resource.RLIM_INFINITY))
for path in sys.argv[1:]:
    t0 = time.perf_counter()
    try:
        load(path)
        out = {"outcome": "loaded"}
    except KanpinnError as e:
        out = {"outcome": "KanpinnError", "message": str(e)}
    except BaseException as e:
        out = {"outcome": type(e).__name__, "message": str(e)[:300]}
    out.update(path=path, seconds=time.perf_counter() - t0)
    print(json.dumps(out), flush=True)
"""


def bounded_loads(paths, timeout=120):
    """{path: outcome dict} of kp.load on each path, in a memory-capped subprocess."""
    proc = subprocess.run([sys.executable, "-c", BOUNDED_LOADER, *map(str, paths)], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {r["path"]: r for r in rows}


def _model():
    m = KAN([2, 3, 1], grid=5, k=3, seed=0, dtype=torch.float64)
    m.fix_symbolic(0, 1, 2, "sin", a=2.0, expr=sympy.sin)
    return m


def _save(path, model=None):
    x = np.random.default_rng(0).uniform(-1, 1, (20, 2))
    Result(model or _model(), None, {"step": np.arange(3), "loss": np.ones(3)}, {"l2_relative": 0.1}, {"steps": 3},
           test_x=x, test_u=x[:, :1] * 0.5, variables=("x", "y")).save(path)
    return path


def _edit_config(path, change):
    with h5py.File(path, "a") as f:
        cfg = json.loads(f["model"].attrs["config"])
        change(cfg)
        f["model"].attrs["config"] = json.dumps(cfg)
    return path


def _set_expr(text):
    return lambda cfg: cfg["symbolic"][0]["1_2"].__setitem__("expr", text)


def _replace(path, name, make):
    with h5py.File(path, "a") as f:
        del f[name]
        make(f, name)
    return path


# ------------------------------------------------------------------ the reported defects

def test_hang_and_memory_cases_are_refused_quickly_in_bounded_memory(tmp_path):
    cases = {
        # "9**9**9*z" hung forever: parsing evaluated it
        "tower": (lambda p: _edit_config(p, _set_expr("9**9**9*z")), r"'9\*\*9\*\*9\*z' stacks powers"),
        "left_tower": (lambda p: _edit_config(p, _set_expr("((((9**99)**99)**99)**99)*z")), "finite real"),
        "exp_exp": (lambda p: _edit_config(p, _set_expr("sin(exp(exp(1000)))*z")), r"exp\(1000\)"),
        "huge_literal": (lambda p: _edit_config(p, _set_expr("9" * 400 + "*z")), "beyond float64"),
        "huge_power": (lambda p: _edit_config(p, _set_expr("z**100000000")), "power 1e\\+08"),
        "big_product": (lambda p: _edit_config(p, _set_expr("*".join(["sin(z)"] * 60))), "too large"),
        # config.grid = [1e9, ...] allocated tens of GB before any check
        "grid_1e9": (lambda p: _edit_config(p, lambda c: c.__setitem__("grid", [1e9, 5])),
                     r"layers.0.coef has shape \(2, 8, 3\), but the model config implies \(2, 1000000003, 3\)"),
        "widths_huge": (lambda p: _edit_config(p, lambda c: c.__setitem__("widths", [2, 99999, 1])),
                        r"layers.0.coef has shape \(2, 8, 3\), but the model config implies \(2, 8, 99999\)"),
        # a 213 kB file whose gzip dataset expands to 30 GB raised MemoryError
        "gzip_bomb": (lambda p: _replace(p, "history/loss", lambda f, n: f.create_dataset(
            n, shape=(4_000_000_000,), dtype="f8", compression="gzip", chunks=(1_000_000,))),
            r"/history/loss would expand 0 bytes on disk into 30517.6 MiB"),
        # one small dataset whose chunk is 2 GiB: HDF5 would allocate the whole chunk to read it
        "chunk_bomb": (lambda p: _replace(p, "history/step", lambda f, n: f.create_dataset(
            n, shape=(1,), maxshape=(None,), dtype="f8", chunks=(2 ** 28,), compression="gzip")),
            "/history/step would take 2048.0 MiB"),
    }
    paths = {}
    for name, (make, _) in cases.items():
        paths[name] = make(_save(tmp_path / f"{name}.h5"))
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)                                   # opening a FIFO for reading would block forever
    out = bounded_loads([*paths.values(), fifo])
    for name, (_, pattern) in cases.items():
        row = out[str(paths[name])]
        assert row["outcome"] == "KanpinnError", (name, row)
        assert f"{name}.h5" in row["message"], (name, row["message"])
        assert re.search(pattern, row["message"]), (name, row["message"])
        assert row["seconds"] < 20, (name, row)          # generous: a regression hangs or takes minutes
    assert out[str(fifo)]["outcome"] == "KanpinnError" and "not a regular file" in out[str(fifo)]["message"]


@pytest.mark.parametrize("field, value, words", [
    ("grid_eps", "x", "'grid_eps' must be a finite number in \\[0.0, 1.0\\], got 'x'"),
    ("grid_eps", float("nan"), "'grid_eps'"),
    ("k", 1.5, "'k' must be an integer in \\[0, 20\\], got '1.5'"),
    ("k", 10 ** 30, "'k' must be an integer"),
    ("grid", ["5", 5], "'grid' entry must be an integer"),
    ("grid", [5], "'grid' lists 1 grids for 2 layers"),
    ("widths", "abc", "'widths' must be a list"),
    ("widths", [2, "a", 1], "'widths' entry 1"),
    ("widths", [2, -3, 1], "'widths' entry 1"),
    ("basis", 3, "'basis' must be one of"),
    ("grid_range", [1, 0], "'grid_range' needs lo < hi"),
    ("grid_range", "wide", "'grid_range' must be \\[lo, hi\\]"),
    ("symbolic", [{"7_0": {"name": "sin", "expr": "sin(z)"}}, {}], "bad symbolic edge '7_0'"),
    ("symbolic", [{"1_2": {"name": "x" * 1000, "expr": "sin(z)"}}, {}], "bad symbolic edge '1_2'"),
    ("symbolic", "all", "'symbolic' must list one dict per layer"),
    ("type", "CNN", "unknown type 'CNN'"),
])
def test_wrong_config_types_are_named(tmp_path, field, value, words):
    # the defect: grid_eps "x" and other wrong types raised raw errors
    path = _edit_config(_save(tmp_path / "run.h5"), lambda c: c.__setitem__(field, value))
    with pytest.raises(KanpinnError, match=words) as err:
        load(path)
    assert "run.h5" in str(err.value) and "config" in str(err.value)


@pytest.mark.parametrize("expr, words", [
    ("__import__('os').system('true')", "unknown name .__import__\\(.os.\\).system"),
    ("z.__class__", "Attribute"),
    ("[z for z in ()]", "ListComp"),
    ("lambda: 1", "Lambda"),
    ("sin(z, 2)", "sin with 2 arguments"),
    ("sin(z=1)", "sin with 1 arguments"),
    ("1/0*z", "divides by zero|finite real"),
    ("sqrt(-1)*z", "not a finite real number"),
    ("'text'", "only real numbers"),
    ("z" + "+z" * 600, "too long"),
    ("sin(" * 35 + "z" + ")" * 35, "too large"),
    ("-" * 900 + "z", "too large"),
    ("z**(z**2)", "stacks powers"),
])
def test_formula_text_is_checked_not_run(expr, words):
    from kanpinn.edge_formula import parse_formula
    with pytest.raises(KanpinnError, match=words):
        parse_formula(expr)


def test_formulas_kanpinn_writes_read_back_exactly():
    from kanpinn.edge_formula import parse_formula
    from kanpinn.symbolic.library import DEFAULT_FUNCTIONS, EXTRA_FUNCTIONS, get_function
    z = sympy.Symbol("z")
    exprs = [get_function(n).sympy_fn(z) for n in list(DEFAULT_FUNCTIONS) + list(EXTRA_FUNCTIONS)]
    exprs += [z ** sympy.Rational(3, 2), 2 ** z, sympy.exp(-z ** 2 / 2) / sympy.sqrt(2 * sympy.pi), 1.5e-3 * z,
              sympy.Heaviside(z) * sympy.sign(z), -z ** -3]
    for e in exprs:
        assert parse_formula(str(e)) == e, str(e)
    assert parse_formula("z^2 + 1") == z ** 2 + 1


@pytest.mark.parametrize("kind", ["external_link", "soft_link", "external_dataset", "virtual_dataset"])
def test_links_and_storage_outside_the_file_are_not_followed(tmp_path, kind):
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as f:
        f["data"] = np.arange(3.0)
    raw = tmp_path / "raw.bin"
    np.arange(3.0).tofile(raw)
    path = _save(tmp_path / "run.h5")

    def make(f, name):
        if kind == "external_link":
            f[name] = h5py.ExternalLink(str(outside), "/data")     # valid target: following it would "work"
        elif kind == "soft_link":
            f[name] = h5py.SoftLink("/history/step")
        elif kind == "external_dataset":
            f.create_dataset(name, shape=(3,), dtype="f8", external=[(str(raw), 0, 24)])
        else:
            layout = h5py.VirtualLayout(shape=(3,), dtype="f8")
            layout[:] = h5py.VirtualSource(str(outside), "data", shape=(3,))
            f.create_virtual_dataset(name, layout)
    _replace(path, "history/loss", make)
    words = {"external_link": "ExternalLink .*outside.h5.*not followed", "soft_link": "SoftLink",
             "external_dataset": "other files", "virtual_dataset": "other files"}[kind]
    with pytest.raises(KanpinnError, match=f"run.h5: /history/loss .*{words}"):
        load(path)


def test_filter_plugins_are_not_loaded(tmp_path):
    path = _save(tmp_path / "run.h5")
    _replace(path, "history/loss", lambda f, n: f.create_dataset(
        n, data=np.ones(3), chunks=(3,), compression=307, allow_unknown_filter=True))   # bzip2 plugin id
    with pytest.raises(KanpinnError, match=r"/history/loss needs the filter plugin\(s\) \[307\]"):
        load(path)


def test_bad_attributes_and_datasets_are_named(tmp_path):
    def check(edit, words):
        path = _save(tmp_path / "run.h5")
        with h5py.File(path, "a") as f:
            edit(f)
        with pytest.raises(KanpinnError, match=words):
            load(path)

    check(lambda f: f.attrs.__setitem__("metrics", np.array(["{}"] * 1000, dtype=h5py.string_dtype())),
          r"attribute 'metrics' of / must be a scalar")
    check(lambda f: f.attrs.__setitem__("metrics", "[" * 100000), "attribute 'metrics' of / is not valid JSON|nested")
    check(lambda f: f.attrs.__setitem__("options", json.dumps(json.loads("[" * 40 + "]" * 40))), "nested deeper")
    check(lambda f: f.attrs.__setitem__("version", "one"), "'version' of / must be an integer")
    check(lambda f: _replace_ds(f, "model/state/layers.0.mask", np.ones((2, 3), dtype=np.float16)),
          r"float32 or float64 tensors of one type")
    check(lambda f: _replace_ds(f, "history/loss", np.array([b"abc"])), r"/history/loss must be numeric")
    check(lambda f: _replace_ds(f, "history/loss", np.ones((2, 2))), r"/history/loss must have \(0, 1\) dimension")
    check(lambda f: _replace_ds(f, "test/x", np.ones((20, 3))), r"/test/x has shape \(20, 3\), but the model takes 2")
    check(lambda f: _replace_ds(f, "test/u_exact", np.ones((20, 2))), r"/test/u_exact has shape \(20, 2\)")
    check(lambda f: f["problem"].attrs.__setitem__("variables", json.dumps([1, 2])), "'variables' of /problem")
    check(lambda f: f["model"].create_group("x") and f["model"].__delitem__("state"), "/model/state is missing")
    check(lambda f: [f.create_dataset(f"model/state/extra{i}", data=np.ones(1)) for i in range(3)],
          r"/model/state holds 3 tensor\(s\) the model config does not have: extra0")
    check(lambda f: f.__delitem__("model/state/layers.1.coef"), r"/model/state lacks 1 tensor\(s\).*layers.1.coef")


def _replace_ds(f, name, data):
    del f[name]
    f[name] = data


def test_compression_bomb_within_the_byte_budget_is_refused(tmp_path):
    # 200 MiB of never-written gzip chunks fit the 256 MiB budget, but would take seconds to
    # inflate from a file of a few kB: refused by its expansion ratio
    path = _replace(_save(tmp_path / "run.h5"), "history/loss", lambda f, n: f.create_dataset(
        n, shape=(25 * 2 ** 20,), maxshape=(None,), dtype="f8", chunks=(4096,), compression="gzip"))
    assert os.path.getsize(path) < 100_000
    with pytest.raises(KanpinnError, match=r"run.h5: /history/loss would expand 0 bytes on disk into 200.0 MiB "
                                           r"\(more than 1000x"):
        load(path)
    ok = _replace(_save(tmp_path / "ok.h5"), "history/loss", lambda f, n: f.create_dataset(
        n, data=np.random.default_rng(0).normal(size=2 ** 18), chunks=(4096,), compression="gzip"))
    assert load(ok).history["loss"].shape == (2 ** 18,)          # real compressed data (2 MiB) loads


def test_max_bytes_caps_every_read(tmp_path):
    path = _save(tmp_path / "run.h5")
    assert load(path, max_bytes=10 ** 6).predict(np.zeros((1, 2))).shape == (1, 1)
    with pytest.raises(KanpinnError, match="limit for this file is 0 MiB"):
        load(path, max_bytes=300)


def test_state_shapes_match_every_model_kind():
    # the shape check refuses a file only if state_shapes knows each layout exactly
    from kanpinn.models import model_from_config, state_shapes
    models = [KAN([2, [2, 1], 1], grid=5, seed=0), KAN([3, 4, 2], grid=4, k=2), MLP([2, 5, 5, 1])]
    models += [KAN([2, 3, 1], grid=6, basis=b) for b in ("chebyshev", "rbf", "fourier")]
    m = _model()
    m.layers[1].basis = m.layers[1].basis.refined(9)             # layers on different grids
    m.layers[1].coef = torch.nn.Parameter(torch.zeros(3, 12, 1, dtype=torch.float64))
    models.append(m)
    for model in models:
        cfg = json.loads(json.dumps(model.config()))
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert state_shapes(cfg) == expected, cfg
        rebuilt = model_from_config(cfg)
        assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == expected


def test_cli_plot_and_symbolify_refuse_hostile_files_in_one_line(tmp_path, capsys):
    from kanpinn.cli import main
    path = _edit_config(_save(tmp_path / "run.h5"), _set_expr("9**9**9*z"))
    for cmd in (["plot", str(path), "--out", str(tmp_path)], ["symbolify", str(path)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("kanpinn: error:") and "run.h5" in err and "stacks powers" in err
        assert "Traceback" not in err and len(err.splitlines()) == 1
