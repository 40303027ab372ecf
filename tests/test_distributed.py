"""Data parallel on torch.distributed: 2 gloo processes on the CPU under torchrun."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import kanpinn as kp

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")

SCRIPT = textwrap.dedent('''
    import json, math, os, sys, time
    import numpy as np, torch
    import kanpinn as kp
    from kanpinn.solver import Hook

    mode, out, optimizer, grids = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    pi = math.pi
    right = float(os.environ.get("RIGHT_OVERRIDE", "1.0")) if rank == 1 else 1.0
    problem = kp.Problem(kp.Interval(-1.0, right), lambda x, u: kp.laplacian(u, x) + pi ** 2 * torch.sin(pi * x),
                         conditions=[kp.Dirichlet(0.0)], exact=lambda x: torch.sin(pi * x), name="p1")

    class Die(Hook):
        """Kills the first launch at step 7; the same (private) hook rides along on the
        resumed launch, so the run's fingerprint is the same."""
        def __init__(self, armed):
            self._armed = armed

        def after_step(self, run, info):
            if self._armed and run.global_step == 7:
                raise KeyboardInterrupt("simulated kill")

    class Lost(Hook):
        """Rank 1 leaves at step 3: it exits at once ("die") or stops answering ("stall")."""
        def after_step(self, run, info):
            if rank == 1 and run.global_step == 3:
                if mode == "die":
                    os._exit(9)
                time.sleep(600)

    hooks = [Die(mode == "kill")] if mode in ("kill", "resume") else [Lost()] if mode in ("die", "stall") else []
    ck = os.path.join(out, "run.ckpt.h5") if mode in ("kill", "resume") else None
    seed = int(os.environ.get("SEED_OVERRIDE", "0")) if rank == 1 else 0
    try:
        res = kp.solve(problem, kp.KAN([1, 4, 1], seed=0), grids=grids, steps=6, optimizer=optimizer,
                       lr=1e-2, n_interior=101, n_boundary=2, progress=False, seed=seed, hooks=hooks,
                       checkpoint=ck, checkpoint_every=2)
    except KeyboardInterrupt:
        sys.exit(3)
    except kp.KanpinnError as e:
        print("KANPINN_ERROR", e, flush=True)
        sys.exit(4)
    x = np.linspace(-1, 1, 41)[:, None]
    np.save(os.path.join(out, f"pred_{mode}_{rank}.npy"), res.predict(x))
    np.save(os.path.join(out, f"loss_{mode}_{rank}.npy"), res.history["loss"])
''')


def _torchrun(tmp_path, mode, optimizer, env_extra=None, nproc=2, grids=(5, 10)):
    script = tmp_path / "dp.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", KANPINN_DIST_TIMEOUT="60", **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_port", str(_free_port()), str(script), mode, str(tmp_path), optimizer, json.dumps(list(grids))]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single(optimizer, grids):
    pi = np.pi
    problem = kp.Problem(kp.Interval(-1.0, 1.0), lambda x, u: kp.laplacian(u, x) + pi ** 2 * torch.sin(pi * x),
                         conditions=[kp.Dirichlet(0.0)], exact=lambda x: torch.sin(pi * x), name="p1")
    res = kp.solve(problem, kp.KAN([1, 4, 1], seed=0), grids=list(grids), steps=6, optimizer=optimizer, lr=1e-2,
                   n_interior=101, n_boundary=2, progress=False, seed=0)
    return res.predict(np.linspace(-1, 1, 41)[:, None]), res.history["loss"]


@pytest.mark.parametrize("optimizer", ["lm", "adam", "lm-cg"])
def test_two_processes_train_the_same_model_as_one(tmp_path, optimizer):
    proc = _torchrun(tmp_path, "plain", optimizer, grids=(5,))
    assert proc.returncode == 0, proc.stderr[-3000:]
    p0, p1 = (np.load(tmp_path / f"pred_plain_{r}.npy") for r in (0, 1))
    np.testing.assert_array_equal(p0, p1)                       # every rank ends with the same model
    single, single_loss = _single(optimizer, grids=(5,))
    loss2 = np.load(tmp_path / "loss_plain_0.npy")
    if optimizer == "lm-cg":
        # the same global problem, but its CG products run on a float32 copy of J (rows
        # split across ranks: sums in another order) and CG is truncated, so the paths
        # agree only approximately
        assert loss2[-1] < 1e-2 * loss2[0] and loss2[-1] < 10 * single_loss[-1]
        return
    # the 2 ranks split exactly the 1-process point set: the same discrete problem, so
    # the results agree to rounding (sums in another order). One grid only: refitting a
    # deeper layer on a new grid amplifies rounding differences (its basis functions
    # outside the data are undetermined), which would blur the comparison
    np.testing.assert_allclose(np.load(tmp_path / "loss_plain_0.npy"), single_loss, rtol=1e-8)
    np.testing.assert_allclose(p0, single, rtol=0, atol=1e-8 * np.abs(single).max())


def test_grid_extension_checkpoint_and_resume_under_torchrun(tmp_path):
    unbroken = _torchrun(tmp_path, "plain", "lm", grids=(5, 10))
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    p0, p1 = (np.load(tmp_path / f"pred_plain_{r}.npy") for r in (0, 1))
    np.testing.assert_array_equal(p0, p1)
    x = np.linspace(-1, 1, 41)[:, None]
    exact = np.sin(np.pi * x)
    single, _ = _single("lm", grids=(5, 10))
    err2, err1 = (np.linalg.norm(p - exact) / np.linalg.norm(exact) for p in (p0, single))
    assert err2 < 2 * err1 and err2 < 0.1
    # killed in stage 2, then resumed from the checkpoint that rank 0 wrote
    killed = _torchrun(tmp_path, "kill", "lm")
    assert killed.returncode != 0 and (tmp_path / "run.ckpt.h5").exists()
    resumed = _torchrun(tmp_path, "resume", "lm")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for r in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"pred_resume_{r}.npy"), p0, rtol=0, atol=1e-10)


@pytest.mark.parametrize("override", [{"SEED_OVERRIDE": "5"}, {"RIGHT_OVERRIDE": "2.0"}])
def test_mismatched_options_across_ranks_are_refused(tmp_path, override):
    # rank 1 runs another seed, or another problem (its domain differs): every rank stops
    proc = _torchrun(tmp_path, "plain", "lm", env_extra=override)
    assert proc.returncode != 0
    assert proc.stdout.count("KANPINN_ERROR") == 2 and "disagree" in proc.stdout


def _spawn_ranks(tmp_path, mode, timeout_s):
    """Two ranks started directly (torchrun's agent would kill the survivor as soon as a
    worker fails, hiding what the survivor does on its own)."""
    script = tmp_path / "dp.py"
    script.write_text(SCRIPT)
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, OMP_NUM_THREADS="1", KANPINN_DIST_TIMEOUT=str(timeout_s), RANK=str(rank),
                   LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, str(script), mode, str(tmp_path), "lm", "[5]"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


@pytest.mark.parametrize("mode", ["die", "stall"])
def test_a_rank_that_dies_or_stalls_stops_the_survivor_with_a_clear_error(tmp_path, mode):
    # rank 1 exits (die) or stops answering (stall) after its third step; rank 0 is in
    # its next collective. It must raise a KanpinnError naming the failed collective,
    # not hang: at once when the peer's socket closes, after KANPINN_DIST_TIMEOUT (10 s)
    # when the peer is silent. The communicate() bound only guards against a hang.
    procs = _spawn_ranks(tmp_path, mode, 10)
    try:
        out0, err0 = procs[0].communicate(timeout=200)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert procs[0].returncode == 4, (out0, err0[-3000:])     # the script's KanpinnError exit
    assert procs[1].returncode != 0
    line = next(ln for ln in out0.splitlines() if ln.startswith("KANPINN_ERROR"))
    assert "data-parallel" in line and "rank 0 of 2" in line and "died or timed out" in line
    assert not (tmp_path / "pred_die_0.npy").exists() and not (tmp_path / "pred_stall_0.npy").exists()


def test_more_processes_than_points_is_refused():
    import types
    from kanpinn.solver.distributed import DistComm
    four_ranks = types.SimpleNamespace(rank=0, world=4)
    with pytest.raises(kp.KanpinnError, match="cannot be split across 4 processes"):
        DistComm.shard(four_ranks, 3)
    assert DistComm.shard(four_ranks, 9) == slice(0, None, 4)
    # through the collocation points, as a solve under torchrun draws them (every rank
    # computes the same counts, so every rank raises: none waits on the others)
    from kanpinn.solver.loss import Collocation
    problem = kp.Problem(kp.Interval(-1.0, 1.0), lambda x, u: kp.laplacian(u, x), conditions=[kp.Dirichlet(0.0)])
    fake = DistComm.__new__(DistComm)
    fake.rank, fake.world = 3, 4
    with pytest.raises(kp.KanpinnError, match="3 points cannot be split across 4 processes"):
        Collocation(problem, 3, 2, "sobol", 0, torch.float64, "cpu", comm=fake)
    colloc = Collocation(problem, 9, 2, "sobol", 0, torch.float64, "cpu", comm=fake)
    assert colloc.interior.shape[0] == 2                  # rows 3 and 7 of 9
    assert colloc.conditions[0]["x"].shape[0] == 2 and colloc.counts[0] == 8   # too few to split: kept


def test_torchrun_command_line_prints_and_writes_once(tmp_path):
    problem = os.path.join(os.path.dirname(__file__), "..", "problems", "poisson_1d.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", KANPINN_DIST_TIMEOUT="60")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "kanpinn", "solve", os.path.abspath(problem), "--set", "steps=3",
           "--set", "grids=[5]", "--set", "progress=false", "--out", "run.h5"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("relative L2 error") == 1          # rank 0 reports, rank 1 is silent
    assert (tmp_path / "run.h5").exists() and (tmp_path / "run.png").exists()
    assert kp.load(tmp_path / "run.h5").metrics["l2_relative"] < 1.0


def test_parallel_bench_reports_strong_and_weak_scaling(monkeypatch):
    # the table's structure from fake launches (real ones are the bench's job, not a test's)
    from kanpinn.bench import parallel
    calls, times = [], iter([10.0, 5.0, 4.0, 4.4])

    def fake_launch(script, nproc, n, steps, optimizer, timeout):
        calls.append((nproc, n))
        return {"train_s": next(times), "l2_relative": 1e-5}
    monkeypatch.setattr(parallel, "_launch", fake_launch)
    rows = parallel.run_parallel(quick=False, nproc=2, log=lambda m: None)
    assert calls == [(1, 8000), (2, 8000), (1, 4000), (2, 8000)]
    assert rows[1]["ratio_to_1"] == pytest.approx(0.5)           # strong: t(2)/t(1)
    assert rows[3]["ratio_to_1"] == pytest.approx(1 / 1.1)       # weak: t(1)/t(2) efficiency
