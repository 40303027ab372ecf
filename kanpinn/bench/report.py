"""The benchmark report: machine description, markdown tables, the HDF5 file (arrays and
JSON attributes, no pickle) and the error-vs-time figure."""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field


@dataclass
class BenchReport:
    """What ``run`` produced: the markdown text, the rows, and the files written."""
    markdown: str
    micro: list = field(default_factory=list)
    scaling: list = field(default_factory=list)
    suite: list = field(default_factory=list)
    ratios: list = field(default_factory=list)
    machine: dict = field(default_factory=dict)
    files: list = field(default_factory=list)
    extra: list = field(default_factory=list)

    def __str__(self):
        return self.markdown


# --------------------------------------------------------------------------- machine

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit():
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.isdir(os.path.join(here, ".git")):
        return None
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def machine_info():
    """The machine the numbers come from (JSON-safe dict)."""
    import torch
    from .. import __version__
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "kanpinn": __version__,
        "git_commit": _git_commit(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        pass
    return info

# --------------------------------------------------------------------------- markdown

def _cell(v, kind=None):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if kind == "ms":
            return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"
        if kind == "ratio":
            return f"{v:.2f}" if 0.01 <= abs(v) < 1000 else f"{v:.1e}"
        if kind == "s":
            return f"{v:.1f}"
        if kind == "mb":
            return f"{v:.0f}"
        return f"{v:.3e}"
    return str(v).replace("|", "/")


def _table(rows, columns, kinds=None, headers=None):
    kinds = kinds or {}
    headers = headers or {}
    head = [headers.get(c, c) for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c), kinds.get(c)) for c in columns) + " |")
    return "\n".join(lines)


MICRO_TABLE = ["model", "G", "N", "dtype", "n_params", "fwdbwd_ms", "jet_ms", "autograd_ms",
               "naive_fwdbwd_ms", "naive_autograd_ms", "pykan_ms", "autograd_over_jet", "naive_over_kanpinn",
               "pykan_over_jet", "naive_fwdbwd_over_fwdbwd", "est_mem_mb", "notes"]
MICRO_HEADERS = {"fwdbwd_ms": "fwd+bwd ms", "jet_ms": "jet Δ ms", "autograd_ms": "autograd Δ ms",
                 "naive_fwdbwd_ms": "naive fwd+bwd ms", "naive_autograd_ms": "naive Δ ms",
                 "autograd_over_jet": "autograd/jet", "naive_over_kanpinn": "naive Δ/jet",
                 "naive_fwdbwd_over_fwdbwd": "naive/kanpinn fwd+bwd", "est_mem_mb": "est. MB",
                 "pykan_ms": "pykan Δ ms", "pykan_over_jet": "pykan/jet",
                 "n_params": "params"}
MICRO_KINDS = {c: "ms" for c in MICRO_TABLE if c.endswith("_ms")}
MICRO_KINDS.update({c: "ratio" for c in ("autograd_over_jet", "naive_over_kanpinn", "naive_fwdbwd_over_fwdbwd",
                                          "pykan_over_jet")})
MICRO_KINDS["est_mem_mb"] = "mb"

SUITE_TABLE = ["problem", "solver", "mode", "l2_relative", "max_abs", "wall_time", "steps",
               "n_parameters", "flops_per_point", "error"]
SUITE_HEADERS = {"l2_relative": "rel. L2", "max_abs": "max abs err", "wall_time": "train s",
                 "n_parameters": "params", "flops_per_point": "FLOPs/pt"}
RATIO_TABLE = ["problem", "solver", "baseline", "mode", "l2_ratio", "max_abs_ratio", "time_ratio",
               "params_ratio", "flops_ratio"]
RATIO_HEADERS = {"l2_ratio": "L2 ratio", "max_abs_ratio": "max-err ratio", "time_ratio": "time ratio",
                 "params_ratio": "params ratio", "flops_ratio": "FLOPs ratio"}


@dataclass
class ExtraTable:
    """A further table of the report (device crossover, targets): written to the
    markdown under ``title`` and to the HDF5 file as group ``name``."""
    name: str
    title: str
    text: str
    rows: list
    columns: list
    kinds: dict = field(default_factory=dict)


def markdown_report(machine, micro_rows, scaling_rows, suite_rows, ratio_rows, quick, elapsed=None,
                    extra=()):
    out = [f"# kanpinn bench{' (quick)' if quick else ''}", ""]
    out.append("## Machine")
    out.append("")
    for k, v in machine.items():
        out.append(f"- {k}: {v}")
    if elapsed is not None:
        out.append(f"- bench time: {elapsed:.0f} s")
    out.append("")
    if micro_rows:
        out += ["## Micro-benchmarks (ms per call, median)", "",
                "fwd+bwd: forward + backward of mean(u²). jet Δ: `forward_jet(x, 2)` + backward of "
                "mean((Δu-f)²). autograd Δ: the same loss with Δu by nested autograd on `model(x)`. "
                "naive: a per-edge Cox-de Boor KAN (pykan-style) with the same parameters "
                "(agreement checked in float64 before timing). pykan: pykan 0.2.8's own KAN "
                "and its tutorial's Laplacian (two autograd jacobians), in this process, when "
                "installed.", "",
                _table(micro_rows, MICRO_TABLE, MICRO_KINDS, MICRO_HEADERS), ""]
    if scaling_rows:
        out += ["### Scaling (cost ratio; `ideal` = linear in N)", "",
                _table(scaling_rows, ["model", "vary", "fixed", "dtype", "task", "ratio", "ideal"],
                       {"ratio": "ratio", "ideal": "ratio"}), ""]
    if suite_rows:
        out += ["## Suite (problems × solvers)", "",
                "`preset`: each solver's own budget. `equal_time`: every solver trained for the "
                "reference KAN preset run's wall time (`max_time`), steps raised so time ends the run.", "",
                _table(suite_rows, SUITE_TABLE, {"wall_time": "s"}, SUITE_HEADERS), ""]
    if ratio_rows:
        out += ["### Ratios (solver / baseline; < 1 means smaller error or less time)", "",
                _table(ratio_rows, RATIO_TABLE, {c: "ratio" for c in RATIO_TABLE[4:]}, RATIO_HEADERS), ""]
    for t in extra:
        if t.rows:
            out += [f"## {t.title}", ""] + ([t.text, ""] if t.text else []) + [
                _table(t.rows, t.columns, t.kinds), ""]
    return "\n".join(out)


def write_markdown(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")

# --------------------------------------------------------------------------- HDF5

def _columns(rows, columns):
    """Column arrays: numbers as float64 (None -> NaN), anything else as UTF-8 strings."""
    import numpy as np
    cols = {}
    for c in columns:
        vals = [r.get(c) for r in rows]
        numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in vals)
        if numeric and any(v is not None for v in vals):
            cols[c] = np.array([math.nan if v is None else float(v) for v in vals], dtype=np.float64)
        else:
            cols[c] = [("" if v is None else str(v)) for v in vals]
    return cols


def _write_table(h5, name, rows, columns):
    import h5py
    import numpy as np
    g = h5.create_group(name)
    g.attrs["columns"] = json.dumps(list(columns))
    g.attrs["rows"] = json.dumps(rows, default=str)
    g.attrs["n_rows"] = len(rows)
    for c, v in _columns(rows, columns).items():
        if isinstance(v, list):
            g.create_dataset(c, data=np.array(v, dtype=object), dtype=h5py.string_dtype("utf-8"))
        else:
            g.create_dataset(c, data=v)
    return g


def write_h5(path, machine, micro_rows, scaling_rows, suite_rows, ratio_rows, histories, quick, extra=()):
    """bench.h5: one group per table (a dataset per column plus the rows as JSON in
    attrs), suite histories under /suite/history/<i>; no pickled objects."""
    import h5py
    import numpy as np
    from .micro import MICRO_COLUMNS
    from .suite import SUITE_COLUMNS
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = "kanpinn-bench"
        h5.attrs["version"] = 1
        h5.attrs["quick"] = bool(quick)
        h5.attrs["machine"] = json.dumps(machine)
        _write_table(h5, "micro", micro_rows, MICRO_COLUMNS)
        _write_table(h5, "scaling", scaling_rows, ["model", "vary", "fixed", "dtype", "task", "ratio", "ideal"])
        s = _write_table(h5, "suite", suite_rows, SUITE_COLUMNS)
        _write_table(h5, "ratios", ratio_rows, RATIO_TABLE)
        for t in extra:
            _write_table(h5, t.name, t.rows, t.columns)
        hg = s.create_group("history")
        for i, ((prob, solver, mode), hist) in enumerate(sorted(histories.items())):
            g = hg.create_group(str(i))
            g.attrs["problem"], g.attrs["solver"], g.attrs["mode"] = prob, solver, mode
            for k, v in hist.items():
                g.create_dataset(k, data=np.asarray(v, dtype=np.float64))
    os.replace(tmp, path)

# --------------------------------------------------------------------------- plot

def plot_error_vs_time(path, histories, suite_rows):
    """One panel per problem: relative L2 error against training time, a line per solver
    (solid: preset budget, dashed: equal time)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    problems = sorted({p for (p, _, _) in histories})
    if not problems:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.text(0.5, 0.5, "no suite runs", ha="center", va="center")
        ax.set_axis_off()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
    n = len(problems)
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.4 * nrows), squeeze=False)
    solvers = sorted({s for (_, s, _) in histories})
    colors = {s: f"C{i}" for i, s in enumerate(solvers)}
    for ax, prob in zip(axes.flat, problems):
        for (p, s, mode), h in sorted(histories.items()):
            if p != prob or "l2_relative" not in h or "time" not in h:
                continue
            if mode == "equal_time" and histories.get((p, s, "preset")) is h:
                continue                      # the reference's equal-time run is its preset run
            t, e = h["time"], h["l2_relative"]
            ok = (e > 0) & (t >= 0)
            ax.plot(t[ok], e[ok], color=colors[s], ls="-" if mode == "preset" else "--",
                    label=f"{s} ({'preset' if mode == 'preset' else 'equal time'})")
        ax.set_yscale("log")
        ax.set_title(prob, fontsize=10)
        ax.set_xlabel("training time (s)")
        ax.set_ylabel("relative L2")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
