"""kanpinn.bench: the naive reference agrees with kanpinn, reports get written.

No timing is asserted (the machines are shared and noisy); only that timings exist."""
import json
import os

import h5py
import pytest
import torch

from kanpinn.bench import micro, run
from kanpinn.bench.micro import MICRO_COLUMNS, NaiveKAN, check_agreement, naive_bspline_basis
from kanpinn.bench.suite import SUITE_COLUMNS, find_problems, find_solvers, ratios, run_suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POISSON_1D = os.path.join(ROOT, "problems", "poisson_1d.py")

TINY_MICRO = {"models": [("KAN", [2, 10, 1])], "grids": [5], "sizes": [128], "dtypes": ["float64"],
              "only": None, "naive": [([2, 10, 1], 5, 128)], "warmup": 1, "repeats": 1, "max_seconds": 5.0}
TINY_SUITE = {"KAN": {"grids": [5], "steps": 2, "max_time": 1.0, "n_interior": 40, "n_boundary": 2,
                      "test_points": 51},
              "MLP": {"adam_steps": 5, "steps": 2, "max_time": 1.0, "n_interior": 40, "n_boundary": 2,
                      "test_points": 51}}


def test_naive_basis_is_partition_of_unity():
    knots = torch.linspace(-1, 1, 6, dtype=torch.float64)
    h = knots[1] - knots[0]
    knots = torch.cat([knots[0] - h * torch.arange(3, 0, -1), knots, knots[-1] + h * torch.arange(1, 4)])
    x = torch.linspace(-1, 0.999, 57, dtype=torch.float64)
    B = naive_bspline_basis(x, knots, 3)
    assert B.shape == (57, 5 + 3)
    assert torch.allclose(B.sum(1), torch.ones(57, dtype=torch.float64), atol=1e-13)


@pytest.mark.parametrize("widths,G", [([2, 10, 1], 5), ([2, 3, 3, 1], 7)])
def test_naive_reference_agrees_with_kanpinn(widths, G):
    x = micro._inputs(widths[0], 300)
    kan = micro.build_kan(widths, G, x)
    naive = NaiveKAN(kan)
    du, dlap = check_agreement(kan, naive, x)        # raises when |Δu| > 1e-8
    assert du <= 1e-8 and dlap <= 1e-8
    # the gradients of the PINN loss with respect to the parameters agree too
    f = micro._target(x)
    xa = x.clone().requires_grad_(True)
    g_naive = micro.closure_autograd(naive, xa, f, micro._params(naive))
    g_jet = micro.closure_jet(kan, x, f, micro._params(kan))
    # kanpinn: coef, scale_base, scale_sp per layer; naive: the same values (unmasked mask)
    assert torch.allclose(g_naive[0], g_jet[0], rtol=1e-8, atol=1e-10)


def test_micro_smallest_size_rows():
    rows = micro.run_micro(config=TINY_MICRO)
    assert len(rows) == 1
    r = rows[0]
    assert set(MICRO_COLUMNS) <= set(r)
    for key in ("fwdbwd_ms", "jet_ms", "autograd_ms", "naive_fwdbwd_ms", "naive_autograd_ms"):
        assert r[key] is not None and r[key] > 0
    assert r["agree_u"] <= 1e-8
    assert r["autograd_over_jet"] > 0 and r["naive_over_kanpinn"] > 0


def test_micro_skips_when_memory_estimate_too_big():
    cfg = dict(TINY_MICRO, naive=[])
    rows = micro.run_micro(config=cfg, mem_limit=1024)
    assert "skipped (memory" in rows[0]["notes"]
    assert rows[0]["jet_ms"] is None


def test_scaling_ratios():
    base = {c: None for c in MICRO_COLUMNS}
    rows = [dict(base, model="m", G=5, N=10, dtype="float64", jet_ms=2.0),
            dict(base, model="m", G=100, N=10, dtype="float64", jet_ms=6.0),
            dict(base, model="m", G=5, N=40, dtype="float64", jet_ms=8.0)]
    out = micro.scaling(rows)
    got = {(r["vary"], r["task"]): r["ratio"] for r in out}
    assert got[("G 5->100", "jet")] == pytest.approx(3.0)
    assert got[("N 10->40", "jet")] == pytest.approx(4.0)


def test_find_problems_and_solvers():
    if not os.path.isdir(os.path.join(ROOT, "problems")):
        pytest.skip("no problems/ folder")
    assert any(p.endswith("poisson_1d.py") for p in find_problems(os.path.join(ROOT, "problems")))
    names = [os.path.basename(p) for p in find_solvers(names=["kan", "mlp"])]
    assert names == ["kan.toml", "mlp.toml"]


@pytest.mark.skipif(not os.path.isfile(POISSON_1D), reason="problems/poisson_1d.py absent")
def test_run_writes_reports(tmp_path):
    out = tmp_path / "bench"
    report = run(quick=True, out=str(out), micro_config=TINY_MICRO, problems=[POISSON_1D],
                 solvers=["kan", "mlp"], suite_overrides=TINY_SUITE, verbose=False)
    md = (out / "bench.md").read_text()
    for col in ("fwd+bwd ms", "jet Δ ms", "autograd Δ ms", "naive Δ ms", "autograd/jet", "naive Δ/jet",
                "rel. L2", "max abs err", "train s", "FLOPs/pt", "L2 ratio", "time ratio", "cpu_model"):
        assert col in md, col
    assert (out / "error_vs_time.png").stat().st_size > 0
    with h5py.File(out / "bench.h5", "r") as h5:
        assert h5.attrs["format"] == "kanpinn-bench"
        machine = json.loads(h5.attrs["machine"])
        assert {"platform", "cpu_model", "cpu_count", "torch", "torch_threads", "cuda_device"} <= set(machine)
        assert set(MICRO_COLUMNS) <= set(h5["micro"].keys())
        assert set(SUITE_COLUMNS) <= set(h5["suite"].keys())
        assert h5["suite"].attrs["n_rows"] == 4            # 2 solvers x (preset, equal time)
        assert len(h5["suite/history"]) == 4
        modes = [m.decode() if isinstance(m, bytes) else m for m in h5["suite/mode"][()]]
        assert sorted(modes) == ["equal_time", "equal_time", "preset", "preset"]
    rows = {(r["solver"], r["mode"]): r for r in report.suite}
    for r in rows.values():
        assert r["error"] is None
        assert r["l2_relative"] is not None and r["wall_time"] > 0 and r["n_parameters"] > 0
        assert r["flops_per_point"] > 0
    # the MLP's equal-time run was given the KAN preset run's training time
    assert rows[("mlp", "equal_time")]["max_time"] == pytest.approx(rows[("kan", "preset")]["wall_time"])
    assert {r["mode"] for r in ratios(report.suite)} == {"preset", "equal_time"}


def test_cli_bench_calls_run(monkeypatch):
    import kanpinn.bench as bench
    from kanpinn.cli import main
    seen = {}
    monkeypatch.setattr(bench, "run", lambda quick=False, **kw: seen.update(quick=quick, **kw))
    assert main(["bench", "--quick", "--device", "auto"]) == 0
    assert seen["quick"] is True and seen["device"] == "auto" and seen["out"] == "bench-results"


def test_crossover_from_rows():
    from kanpinn.bench.devices import crossover
    rows = [dict(task="jet", dtype="float64", N=n, cpu_over_cuda=r)
            for n, r in ((1000, 0.5), (4000, 1.2), (16000, 0.9), (64000, 3.0), (256000, 9.0))]
    rows.append(dict(task="lm_step", dtype="float64", N=1000, cpu_over_cuda=None))
    (c,) = crossover(rows)
    # 4000 is faster on CUDA but 16000 is not: CUDA pays from 64000 on
    assert c["gpu_faster_from_N"] == 64000 and c["largest_N"] == 256000 and c["speedup_at_largest"] == 9.0
    never = crossover([dict(task="jet", dtype="float32", N=10, cpu_over_cuda=0.5)])
    assert never[0]["gpu_faster_from_N"] is None


def test_devices_rows_and_report(tmp_path):
    """The CPU-vs-CUDA section runs end to end (CPU column only without CUDA), its LM
    timing comes from real solver steps, and the tables reach bench.md and bench.h5."""
    import torch
    tiny = {"jet_sizes": [256], "lm_sizes": [256], "dtypes": ["float64"], "lm_steps": 3,
            "warmup": 1, "repeats": 2, "max_seconds": 1.0, "cpu_lm_max": 256}
    out = tmp_path / "bench"
    report = run(quick=True, out=str(out), micro=False, suite=False, devices=True, devices_config=tiny,
                 targets=False, verbose=False)
    (table, cross) = report.extra
    assert [r["task"] for r in table.rows] == ["jet", "lm_step"]
    for r in table.rows:
        assert r["cpu_ms"] > 0
        if not torch.cuda.is_available():
            assert r["cuda_ms"] is None and "no CUDA device" in r["notes"]
    md = (out / "bench.md").read_text()
    assert "CPU against CUDA" in md and "lm_step" in md
    with h5py.File(out / "bench.h5", "r") as h5:
        assert h5["devices"].attrs["n_rows"] == 2
        assert h5["devices/cpu_ms"][()].min() > 0


def test_pykan_peer_reports_when_missing(monkeypatch):
    """Without pykan 0.2.8 the peer says so (in the row's notes), and the global default
    dtype and random state are untouched either way."""
    from kanpinn.bench import peers
    monkeypatch.setattr(peers, "pykan_version", lambda: None)
    x = torch.rand(10, 2, dtype=torch.float64)
    with pytest.raises(peers.PeerUnavailable, match="pykan 0.2.8 is not installed"):
        peers.pykan_closure([2, 3, 1], 5, x, x[:, :1])
    monkeypatch.setattr(peers, "pykan_version", lambda: "0.2.5")
    with pytest.raises(peers.PeerUnavailable, match="0.2.5 is installed"):
        peers.pykan_closure([2, 3, 1], 5, x, x[:, :1])
    rows = micro.run_micro(config=dict(TINY_MICRO, naive=[], pykan=[([2, 10, 1], 5, 128)]))
    assert "pykan: pykan 0.2.5 is installed" in rows[0]["notes"]
    assert rows[0]["pykan_ms"] is None and rows[0]["pykan_over_jet"] is None


def test_peer_isolation_restores_dtype_and_rng():
    from kanpinn.bench.peers import _isolated
    before = torch.get_default_dtype()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with _isolated(torch.float64):
        assert torch.get_default_dtype() == torch.float64
        torch.manual_seed(0)
        torch.rand(5)
    assert torch.get_default_dtype() == before
    assert torch.equal(torch.rand(3), expected)


def test_interleaved_ratio_pairs_with_a_fake_clock(monkeypatch):
    """Each pair divides the slow call's time by the median of the fast calls after it."""
    now = [0.0]
    monkeypatch.setattr(micro.time, "perf_counter", lambda: now[0])
    fast_steps = iter([2.0, 1.0, 3.0] * 3)

    def slow():
        now[0] += 12.0

    def fast():
        now[0] += next(fast_steps)

    assert micro.interleaved_ratio(slow, fast, pairs=3, inner=3) == 6.0
