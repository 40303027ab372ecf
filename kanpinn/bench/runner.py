"""``kanpinn bench``'s runner: micro-benchmarks, the problems × solvers suite, the CPU
against CUDA timings, the reference targets and the hard problems, into one report."""
from __future__ import annotations

import os
import sys
import time

from .report import (BenchReport, ExtraTable, machine_info, markdown_report, plot_error_vs_time,
                     write_h5, write_markdown)

__all__ = ["run"]


def run(quick=False, out="bench-results", micro=True, suite=True, problems=None, solvers=None,
        micro_config=None, suite_overrides=None, verbose=True, targets=None, devices=None,
        devices_config=None, device="cpu", hard=None, hard_max_time=180.0, parallel=None,
        systems=None):
    """Run the micro-benchmarks and the suite, print the markdown report and write
    ``bench.md``, ``bench.h5`` and ``error_vs_time.png`` into ``out``.

    quick: fewer sizes and repeats, a few seconds per suite run (minutes in all on two
    cores). ``device`` runs the suite there ("auto": CUDA when present). ``devices``: time
    CPU against CUDA (``kanpinn.bench.devices``); default: when CUDA is present. The
    targets run on the CPU and, when CUDA is present, on CUDA too. ``hard``: the hard
    problems (``kanpinn.bench.hard``: auto mode against the MLP preset at equal time,
    ``hard_max_time`` seconds each; default: in the full run, not with ``quick``).
    ``parallel``: data-parallel strong and weak scaling on the CPU (``kanpinn.bench.parallel``,
    torchrun with 1 and 2 processes; default: in the full run). ``systems``: the
    Navier-Stokes rows of issue 11 (``kanpinn.bench.systems``; default: in the full run).
    Returns a :class:`BenchReport`."""
    import torch

    from .micro import run_micro, scaling
    from .suite import ratios, run_suite

    def log(msg):
        if verbose:
            print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    machine = machine_info()
    log(f"kanpinn bench{' --quick' if quick else ''}: {machine['cpu_model']}, "
        f"{machine['torch_threads']} torch threads, torch {machine['torch']}, "
        f"CUDA: {machine['cuda_device'] or 'none'}")
    micro_rows, scaling_rows = [], []
    if micro:
        micro_rows = run_micro(quick, config=micro_config, log=log)
        scaling_rows = scaling(micro_rows)
    suite_rows, histories, ratio_rows = [], {}, []
    if suite:
        suite_rows, histories = run_suite(quick, problems=problems, solvers=solvers,
                                          overrides=suite_overrides, log=log, device=device)
        ratio_rows = ratios(suite_rows)
    extra = []
    has_cuda = torch.cuda.is_available()
    if devices if devices is not None else has_cuda:
        from .devices import DEVICE_COLUMNS, crossover, run_devices
        dev_rows = run_devices(quick, config=devices_config, log=log)
        kinds = {"cpu_ms": "ms", "cuda_ms": "ms", "cpu_over_cuda": "ratio"}
        extra.append(ExtraTable("devices", "CPU against CUDA (ms per call, median)",
                                "KAN [2,10,1] G=5 on pykan's Poisson 2D problem. jet: one closure "
                                "(forward with the Laplacian jet + backward); lm_step: one "
                                "Levenberg-Marquardt iteration of the solver.",
                                dev_rows, DEVICE_COLUMNS, kinds))
        extra.append(ExtraTable("crossover", "Where CUDA starts to pay", "",
                                crossover(dev_rows), ["task", "dtype", "gpu_faster_from_N",
                                                      "largest_N", "speedup_at_largest"],
                                {"speedup_at_largest": "ratio"}))
    if targets if targets is not None else not quick:
        from .targets import run_targets
        target_rows = run_targets(quick, log=log)
        if has_cuda:
            target_rows += run_targets(quick, log=log, device="cuda")
        extra.append(ExtraTable("targets", "Targets (reference problems)", "", target_rows,
                                ["target", "device", "setup", "measured", "reference"]))
    if hard if hard is not None else not quick:
        from .hard import hard_table
        extra.append(hard_table(quick, hard_max_time, log=log, device=device))
    if systems if systems is not None else not quick:
        from .systems import systems_table
        extra.append(systems_table(quick, hard_max_time, log=log, device=device))
    if parallel if parallel is not None else not quick:
        from .parallel import parallel_table
        extra.append(parallel_table(quick, log=log))
    elapsed = time.perf_counter() - t0
    text = markdown_report(machine, micro_rows, scaling_rows, suite_rows, ratio_rows, quick, elapsed, extra)
    md = os.path.join(out, "bench.md")
    h5 = os.path.join(out, "bench.h5")
    png = os.path.join(out, "error_vs_time.png")
    write_markdown(md, text)
    write_h5(h5, machine, micro_rows, scaling_rows, suite_rows, ratio_rows, histories, quick, extra)
    files = [md, h5]
    try:
        plot_error_vs_time(png, histories, suite_rows)
        files.append(png)
    except Exception as e:  # noqa: BLE001 - a plot failure must not lose the numbers
        log(f"bench: error-vs-time plot failed ({type(e).__name__}: {e})")
    if verbose:
        print(text)
        print(f"wrote {', '.join(files)}")
    return BenchReport(text, micro_rows, scaling_rows, suite_rows, ratio_rows, machine, files, extra)
