"""Checkpoints know their run (fingerprints), clean up after killed runs, and output paths
are checked before any work."""
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import kanpinn as kp
from kanpinn.errors import KanpinnError
from kanpinn.paths import check_output_path, clean_orphans, temp_prefix
from kanpinn.solver.checkpoint import TEMP_KIND, check_fingerprint, load_checkpoint, run_fingerprint, save_checkpoint

OPTIONS = dict(seed=0, n_interior=200, n_boundary=20, steps=10, grids=[3, 6], optimizer="lm", sampler="sobol",
               dtype="float64", checkpoint="run.ckpt.h5", progress=False, max_time=None)


def _problem(scale=1.0, data=None):
    def residual(x, u):
        return kp.partial(u, x, 0, 2) + scale
    conditions = [kp.Dirichlet(0.0)]
    if data is not None:
        conditions.append(kp.Data(np.array([[0.5]]), np.array([[data]])))
    return kp.Problem(kp.Interval(0, 1), residual, conditions)


def _residual_a(x, u):
    return kp.partial(u, x, 0, 2) + 1.0


def _residual_b(x, u):
    return kp.partial(u, x, 0, 2) - 1.0


def _fp(problem=None, model=None, **changes):
    return run_fingerprint(problem or _problem(), model or kp.KAN([1, 3, 1], grid=3, seed=0), dict(OPTIONS, **changes))


def test_fingerprint_is_json_and_repeatable():
    fp = _fp()
    assert json.loads(json.dumps(fp)) == fp
    assert fp == _fp()                                              # a fresh problem and model: same run
    assert fp == _fp(model=kp.KAN([1, 3, 1], grid=3, seed=7))       # weights are not part of it (resume loads them)
    assert fp == _fp(progress=True, checkpoint="elsewhere.h5", max_time=60.0)   # run-neutral options
    assert fp["options"]["grids"] == [3, 6] and fp["options"]["seed"] == 0
    assert fp["model"]["widths"] == [1, 3, 1] and fp["model"]["grid"] == [3, 3]


@pytest.mark.parametrize("change, field", [
    (dict(seed=1), "options.seed: checkpoint 0, now 1"),
    (dict(n_interior=500), "options.n_interior: checkpoint 200, now 500"),
    (dict(steps=20), "options.steps: checkpoint 10, now 20"),
    (dict(grids=[3, 6, 12]), "options.grids: checkpoint [3, 6], now [3, 6, 12]"),
    (dict(optimizer="adam"), 'options.optimizer: checkpoint "lm", now "adam"'),
    (dict(dtype="float32"), 'options.dtype: checkpoint "float64", now "float32"'),
    (dict(model=kp.KAN([1, 4, 1], grid=3)), "model.widths: checkpoint [1, 3, 1], now [1, 4, 1]"),
    (dict(model=kp.KAN([1, 3, 1], grid=3, basis="chebyshev")), "model.basis"),
    (dict(model=kp.MLP([1, 8, 1])), "model.type"),
    (dict(problem=_problem(scale=2.0)), "problem.residual: checkpoint \"sha256:"),   # same source, other constant
    (dict(problem=_problem(data=1.0)), "problem.conditions.length: checkpoint 1, now 2"),
    (dict(problem=kp.Problem(kp.Interval(0, 2), _residual_a, [kp.Dirichlet(0.0)])), "problem.domain.b: checkpoint 1"),
])
def test_each_difference_is_named_with_both_values(change, field):
    stored = _fp()
    problem, model = change.pop("problem", None), change.pop("model", None)
    current = _fp(problem=problem, model=model, **change)
    with pytest.raises(KanpinnError) as err:
        check_fingerprint(stored, current, "run.ckpt.h5")
    msg = str(err.value)
    assert field in msg, msg
    assert msg.startswith("checkpoint run.ckpt.h5 belongs to another run") and "rm run.ckpt.h5" in msg


def test_residual_source_and_data_values_are_part_of_the_run():
    a = _fp(problem=kp.Problem(kp.Interval(0, 1), _residual_a, [kp.Dirichlet(0.0)]))
    b = _fp(problem=kp.Problem(kp.Interval(0, 1), _residual_b, [kp.Dirichlet(0.0)]))
    assert a["problem"]["residual"] != b["problem"]["residual"]
    d1, d2 = _fp(problem=_problem(data=1.0)), _fp(problem=_problem(data=1.5))
    assert d1["problem"]["conditions"][1]["values"]["data"] != d2["problem"]["conditions"][1]["values"]["data"]
    assert d1["problem"]["conditions"][1]["values"]["shape"] == [1, 1]


PROBLEM_FILE = """
import numpy as np, torch, kanpinn as kp
k = 2.0
def residual(x, u):
    return kp.partial(u, x, 0, 2) + k * torch.sin(x)
problem = kp.Problem(kp.Interval(0, 1), residual,
                     [kp.Dirichlet(lambda x: 0 * x, on=lambda x: x[:, 0] < 0.5), kp.Neumann(1.0),
                      kp.Data(np.full((2, 1), 0.25), np.ones((2, 1)))],
                     exact=lambda x: torch.sin(x), name="probe")
"""
FINGERPRINT_OF_FILE = """
import json, sys
import torch
import kanpinn as kp
from kanpinn.problem_file import load_problem
from kanpinn.solver.checkpoint import run_fingerprint
print(json.dumps(run_fingerprint(load_problem(sys.argv[1]), kp.KAN([1, 3, 1], grid=3),
                                 {"seed": 0, "steps": 5, "optimizer": torch.optim.Adam, "tags": {"b", "a", "c"}})))
"""


def test_fingerprint_is_the_same_in_a_new_process(tmp_path):
    # resuming happens in another process: hashes must not depend on addresses or hash seeds
    from kanpinn.problem_file import load_problem
    path = tmp_path / "probe.py"
    path.write_text(PROBLEM_FILE)
    run = subprocess.run([sys.executable, "-c", FINGERPRINT_OF_FILE, str(path)], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONHASHSEED="12345"))
    assert run.returncode == 0, run.stderr[-2000:]
    there = json.loads(run.stdout)
    options = {"seed": 0, "steps": 5, "optimizer": torch.optim.Adam, "tags": {"c", "b", "a"}}
    here = run_fingerprint(load_problem(str(path)), kp.KAN([1, 3, 1], grid=3), options)
    assert here == there
    cond = here["problem"]["conditions"]
    assert cond[0]["value"] != cond[0]["on"]            # two lambdas on one line are told apart
    assert here["options"]["optimizer"] == "torch.optim.adam.Adam" and here["options"]["tags"] == ["a", "b", "c"]
    path.write_text(PROBLEM_FILE.replace("k = 2.0", "k = 3.0"))      # a global the residual reads
    changed = run_fingerprint(load_problem(str(path)), kp.KAN([1, 3, 1], grid=3), options)
    assert changed["problem"]["residual"] != here["problem"]["residual"]
    assert changed["problem"]["conditions"] == here["problem"]["conditions"]


def test_save_and_load_carry_the_fingerprint(tmp_path):
    path = tmp_path / "run.ckpt.h5"
    tree = {"model_state": {"w": torch.arange(3.0)}, "step": 4, "history": {"loss": [1.0, 0.5]}}
    fp = _fp()
    save_checkpoint(path, tree, fingerprint=fp)
    back = load_checkpoint(path, fingerprint=_fp())
    assert torch.equal(back["model_state"]["w"], torch.arange(3.0)) and back["step"] == 4
    assert back["history"]["loss"] == [1.0, 0.5]
    with pytest.raises(KanpinnError, match=r"options.seed: checkpoint 0, now 3.*Remove the checkpoint"):
        load_checkpoint(path, fingerprint=_fp(seed=3))
    assert load_checkpoint(path)["step"] == 4                       # no fingerprint asked: no check
    old = tmp_path / "old.ckpt.h5"
    save_checkpoint(old, tree)                                      # as an older kanpinn wrote them
    with pytest.raises(KanpinnError, match="does not say which run it belongs to"):
        load_checkpoint(old, fingerprint=fp)


def test_orphan_temporary_files_of_this_checkpoint_are_removed(tmp_path):
    path = tmp_path / "run.ckpt.h5"
    prefix = temp_prefix(path, TEMP_KIND)
    other_prefix = temp_prefix(tmp_path / "other.ckpt.h5", TEMP_KIND)
    assert prefix != other_prefix and prefix.startswith(".ckpt-")
    old = time.time() - 3600
    files = {name: tmp_path / name for name in
             (prefix + "abcd1234.h5", prefix + "zz_9zz_9.h5",          # orphans of this checkpoint
              other_prefix + "abcd1234.h5",                           # another checkpoint's
              prefix + "abcd1234.h5.keep", "notes.h5")}               # not temporary files
    for p in files.values():
        p.write_bytes(b"x")
        os.utime(p, (old, old))
    fresh = tmp_path / (prefix + "fresh123.h5")                        # a save in progress somewhere
    fresh.write_bytes(b"x")
    save_checkpoint(path, {"step": 1})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([other_prefix + "abcd1234.h5", prefix + "abcd1234.h5.keep", "notes.h5",
                           fresh.name, "run.ckpt.h5"])
    assert clean_orphans(path, TEMP_KIND, ".h5", before=time.time() + 10) == [str(fresh)]


def test_result_save_cleans_its_own_orphans(tmp_path):
    path = tmp_path / "run.h5"
    orphan = tmp_path / (temp_prefix(path, "kanpinn") + "abcd1234.h5.tmp")
    orphan.write_bytes(b"x")
    os.utime(orphan, (time.time() - 3600,) * 2)
    kp.Result(kp.MLP([1, 2, 1]), None, {}, {}, {}).save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


def test_output_paths_are_checked_before_work(tmp_path):
    ok = tmp_path / "run.h5"
    assert check_output_path(ok, "result file") == str(ok)
    assert not list(tmp_path.iterdir())                               # the probe leaves nothing
    with pytest.raises(KanpinnError, match=r"result file /nonexistent/dir/run.h5: the folder /nonexistent/dir "
                                           "does not exist"):
        check_output_path("/nonexistent/dir/run.h5", "result file")
    with pytest.raises(KanpinnError, match="is a folder"):
        check_output_path(tmp_path, "result file")
    (tmp_path / "plain").write_text("x")
    with pytest.raises(KanpinnError, match="plain is not a folder"):
        check_output_path(tmp_path / "plain" / "run.h5", "checkpoint", create_folder=True)
    with pytest.raises(KanpinnError, match="cannot write in the folder /proc"):
        check_output_path("/proc/run.h5", "result file")
    made = tmp_path / "new" / "deeper" / "run.ckpt.h5"
    check_output_path(made, "checkpoint", create_folder=True)
    assert made.parent.is_dir()
    with pytest.raises(KanpinnError, match="result file"):
        kp.Result(kp.MLP([1, 2, 1]), None, {}, {}, {}).save("/nonexistent/dir/run.h5")


def test_solve_refuses_to_resume_another_runs_checkpoint(tmp_path):
    # the defect: another seed / point count / step count continued the old run silently,
    # and another model failed with a raw torch RuntimeError
    ckpt = tmp_path / "run.ckpt.h5"
    base = dict(grids=[3], steps=2, n_interior=20, n_boundary=2, progress=False, checkpoint=str(ckpt))
    first = kp.solve(_problem(), kp.KAN([1, 3, 1], grid=3, seed=0), **base)
    assert ckpt.exists()
    again = kp.solve(_problem(), kp.KAN([1, 3, 1], grid=3, seed=0), **base)      # the same run: resumes
    assert len(again.history["step"]) == len(first.history["step"])
    for change, model, words in [
            (dict(seed=1), None, "options.seed: checkpoint 0, now 1"),
            (dict(n_interior=30), None, "options.n_interior: checkpoint 20, now 30"),
            (dict(steps=3), None, "options.steps: checkpoint 2, now 3"),
            ({}, kp.KAN([1, 4, 1], grid=3, seed=0), "model.widths: checkpoint [1, 3, 1], now [1, 4, 1]")]:
        with pytest.raises(KanpinnError, match=re.escape(words)) as err:
            kp.solve(_problem(), model or kp.KAN([1, 3, 1], grid=3, seed=0), **dict(base, **change))
        assert str(ckpt) in str(err.value) and "Remove the checkpoint" in str(err.value)
