"""The ``kanpinn`` command line.

    kanpinn solve PROBLEM.py [--solver SOLVER.toml] [--out RUN.h5] [--set key=value ...] [--force]
    kanpinn compare PROBLEM.py SOLVER.toml SOLVER.toml ... [--out DIR] [--set key=value ...]
    kanpinn plot RUN.h5 [--out DIR]
    kanpinn symbolify RUN.h5
    kanpinn discover PROBLEM.py [--out DIR] [--max-time S]
    kanpinn bench [--quick]

A solver is a TOML file or the name of a shipped preset (kan, mlp, kan_multkan,
kan_chebyshev); ``--set`` overrides its options (``steps=200``, ``grids=[5,10]``) or model
keys (``model.grid=3``), values read as TOML literals.

A user's mistake (a missing or broken problem file, a bad TOML, a bad ``--set``, an
output path that cannot be written: checked before any training) prints one line,
``kanpinn: error: ...``, to stderr and exits with status 2. Anything else is a bug: one
line ``kanpinn: internal error: ...`` and status 1; ``--debug`` (or the environment
variable ``KANPINN_DEBUG=1``) shows the full traceback of either.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from .errors import KanpinnError
from .paths import check_output_path
from .kan_tools import flops_or_none as _flops

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with usage mistakes reported like every other mistake: one line."""

    def error(self, message):
        self.exit(2, f"kanpinn: error: {message} (see: {self.prog} --help)\n")


def _fail(msg, code=2):
    print(f"kanpinn: error: {msg}", file=sys.stderr)
    return code


def _check_folder(folder, what):
    """A KanpinnError unless files can be created in ``folder`` (tried, not guessed from
    permission bits: root, read-only mounts and ACLs all answer differently)."""
    if not os.path.isdir(folder):
        raise KanpinnError(f"{what}: the folder {folder} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".kanpinn-probe-"):
            pass
    except OSError as e:
        raise KanpinnError(f"{what}: cannot write into {folder} ({e.strerror or e})") from None


def _make_out_dir(path, what="--out"):
    """Create the output folder ``path`` (and its parents), or a KanpinnError saying why not."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise KanpinnError(f"{what} {path} is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise KanpinnError(f"{what} {path}: cannot create the folder ({e.strerror or e})") from None
    _check_folder(path, f"{what} {path}")


def _unique_path(path, force):
    """path itself when free (or force), else the first free ``stem-1.ext``, ``stem-2.ext``."""
    if force or not os.path.exists(path):
        return path
    root, ext = os.path.splitext(path)
    i = 1
    while os.path.exists(f"{root}-{i}{ext}"):
        i += 1
    return f"{root}-{i}{ext}"


def _fmt(v, spec=".3e"):
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def _solve_one(problem, solver, assignments, quiet_progress=True):
    """Run one solver preset on a problem: (result, solver name, elapsed seconds)."""
    from .presets import apply_overrides, read_solver, solver_from_dict
    try:
        from .solver import solve
    except ImportError as e:
        raise KanpinnError(f"the solver is not available in this installation ({e})") from None
    if solver is None:                  # auto mode: kanpinn picks the model and schedule
        model, data, options = None, {"name": "auto"}, _auto_options(assignments)
    else:
        data = apply_overrides(read_solver(solver), assignments, source=f"{solver} with --set")
        factory, options = solver_from_dict(data, source=str(solver))
        n_out = problem.n_outputs or 1
        model = factory(problem.domain.dim, n_out)
    if "progress" not in options:
        options["progress"] = (not quiet_progress) and sys.stderr.isatty()
    t0 = time.perf_counter()
    result = solve(problem, model, **options)
    return result, data.get("name") or "solver", time.perf_counter() - t0


def _auto_options(assignments):
    """Solve options from ``--set key=value`` in auto mode (no model keys: the model is
    auto mode's choice; kp.solve checks the options against its schema)."""
    from .presets import parse_assignment
    options = {}
    for text in assignments or ():
        key, value = parse_assignment(text)
        if key.startswith("model."):
            raise KanpinnError(f"--set {text}: model keys need a solver file (--solver kan, or a TOML file); "
                               "without --solver kanpinn picks the model itself")
        options[key[8:] if key.startswith("options.") else key] = value
    from .options import validate_solve_options
    from .presets import _optimizer_names
    try:                                 # the schema at the door, before kanpinn picks a model
        validate_solve_options(options, optimizers=_optimizer_names())
    except KanpinnError as e:
        raise KanpinnError(f"--set: {e}") from None
    return options


def _report(result):
    m = result.metrics
    parts = []
    for key, label in (("l2_relative", "relative L2 error"), ("max_abs", "max abs error"), ("loss", "final loss")):
        if isinstance(m.get(key), (int, float)):
            parts.append(f"{label}: {m[key]:.4e}")
    if isinstance(m.get("wall_time"), (int, float)):
        parts.append(f"time: {m['wall_time']:.1f} s")
    return "; ".join(parts)


# --------------------------------------------------------------------------- commands

def _cmd_solve(args):
    from .problem_file import load_problem
    problem = load_problem(args.problem)
    want = args.out or f"{problem.name}.h5"
    check_output_path(want, "--out")     # before training, not after it
    out = _unique_path(want, args.force)
    result, _, _ = _solve_one(problem, args.solver, args.set, quiet_progress=False)
    from .solver.distributed import is_main_process
    if not is_main_process():            # under torchrun rank 0 reports and writes
        return 0
    auto = result.options.get("auto") or {}
    if args.solver is None and auto.get("options") and not result.options.get("progress"):
        from .solver.solve import format_choices
        print(format_choices(auto))      # with progress on, solve printed them already
    print(_report(result))
    if "parameters" in result.metrics:
        for k, v in result.metrics["parameters"].items():
            print(f"parameter {k} = {v:.6g}")
    if out != want:
        print(f"{want} exists; writing {out} instead (use --force to overwrite)")
    result.save(out)
    png = os.path.splitext(out)[0] + ".png"
    _close(result.plot(png))
    print(f"wrote {out} and {png}")
    return 0


def _close(fig):
    try:
        import matplotlib.pyplot as plt
        plt.close(fig)
    except Exception:  # noqa: BLE001
        pass



def _cmd_compare(args):
    from .plotting import plot_compare
    from .problem_file import load_problem
    problem = load_problem(args.problem)
    out_dir = args.out or f"{problem.name}-compare"
    _make_out_dir(out_dir)
    results, rows = {}, []
    for solver in args.solvers:
        result, name, elapsed = _solve_one(problem, solver, args.set)
        base = name
        i = 2
        while name in results:
            name = f"{base}-{i}"
            i += 1
        results[name] = result
        m = result.metrics
        flops = _flops(result.model)
        from .models import count_parameters
        rows.append([name, _fmt(m.get("l2_relative")), _fmt(m.get("max_abs")),
                     _fmt(float(m.get("wall_time", elapsed)), ".1f"),
                     str(m.get("n_parameters", count_parameters(result.model))), _fmt(flops)])
        path = _unique_path(os.path.join(out_dir, f"{problem.name}-{name}.h5"), args.force)
        result.save(path)
        _close(result.plot(os.path.splitext(path)[0] + ".png"))
        print(f"{name}: {_report(result)}", flush=True)
    header = ["solver", "rel. L2", "max abs err", "wall time s", "parameters", "FLOPs/point"]
    widths = [max(len(r[j]) for r in rows + [header]) for j in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(out_dir, "table.txt"), "w") as f:
        f.write(f"{problem.name}\n{table}\n")
    png = os.path.join(out_dir, "compare.png")
    _close(plot_compare(results, png))
    print(f"wrote results, plots and table.txt into {out_dir}")
    return 0


def _cmd_plot(args):
    from .plotting import plot_kan
    from .result import load
    result = load(args.run)
    out_dir = args.out or os.path.dirname(os.path.abspath(args.run))
    _make_out_dir(out_dir)
    stem = os.path.splitext(os.path.basename(args.run))[0]
    written = [os.path.join(out_dir, f"{stem}.png")]
    _close(result.plot(written[0]))
    if hasattr(result.model, "layers") and hasattr(result.model, "layer_inputs"):
        written.append(os.path.join(out_dir, f"{stem}_kan.png"))
        x = result.test_x
        if x is not None and x.shape[0] > 4096:
            x = x[:: max(1, x.shape[0] // 4096)]
        _close(plot_kan(result.model, x, written[-1], in_vars=result.variables))
    print("wrote " + ", ".join(written))
    return 0


def _cmd_symbolify(args):
    from .result import load
    try:
        from .symbolic import symbolify
    except ImportError:
        return _fail("symbolic recovery is not available in this installation "
                     "(kanpinn.symbolic.symbolify is missing)", 1)
    from .symbolic.unreadable import readable
    result = load(args.run)
    if not args.problem and not readable(result.model):
        return _fail(f"{args.run} holds a {type(result.model).__name__} model, whose solution is read by "
                     "distillation and verified on the PDE: pass --problem PROBLEM.py", 2)
    if args.problem:
        from .problem_file import load_problem
        result.problem = load_problem(args.problem)     # PDE-aware refinement and polishing
    kwargs = {}
    if result.variables:
        kwargs["variables"] = list(result.variables)
    if args.allow_numeric:
        kwargs["allow_numeric"] = True
    import time
    t0 = time.perf_counter()
    expr = symbolify(result, **kwargs)
    elapsed = time.perf_counter() - t0
    import sympy
    print(expr)
    print(f"LaTeX: {sympy.latex(expr)}")
    if result.test_x is not None and result.test_u is not None and not isinstance(expr, sympy.Matrix):
        from .symbolic.clean import relative_l2
        syms = [sympy.Symbol(v) for v in (result.variables or [])]
        err = relative_l2(expr, syms, result.test_x, result.test_u.reshape(-1))
        print(f"relative L2 error of the formula against the exact solution: {err:.3e}")
    print(f"recovered in {elapsed:.1f} s")
    return 0


def _cmd_discover(args):
    import json

    from .problem_file import load_problem
    from .symbolic.discover import discover
    problem = load_problem(args.problem)
    if args.out:
        _make_out_dir(args.out)          # before the search, not after it
    found = discover(problem, max_time=args.max_time, log=print)
    print(found.report())
    if args.out:
        path = os.path.join(args.out, f"{problem.name}-discovery.json")
        rows = [{"structure": c.structure, "widths": c.widths, "formula": None if c.formula is None else str(c.formula),
                 "residual": c.residual, "seconds": c.seconds, "verified": c.verified, "why": c.why}
                for c in found.candidates]
        with open(path, "w") as fh:
            json.dump({"problem": problem.name, "verified": found.verified, "residual": found.residual,
                       "formula": None if found.formula is None else str(found.formula),
                       "seconds": found.seconds, "candidates": rows}, fh, indent=1, default=str)
        print(f"wrote {path}")
    return 0 if found.verified else 1


def _cmd_bench(args):
    try:
        from .bench import run
    except ImportError:
        return _fail("the benchmark suite is not available in this installation "
                     "(kanpinn.bench.run is missing)", 1)
    from .options import check_option
    check_option("device", args.device)             # the solve option's check, before any timing
    _make_out_dir(args.out)
    out = run(args.quick, out=args.out, device=args.device)
    if isinstance(out, str):
        print(out)
    return 0


# --------------------------------------------------------------------------- parser

def _parser():
    p = _Parser(prog="kanpinn", description="Solve PDEs with physics-informed KANs.")
    p.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of any error (also: KANPINN_DEBUG=1)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("solve", parents=[common], help="solve a problem file with a solver preset")
    s.add_argument("problem", help="Python file defining `problem`")
    s.add_argument("--solver", default=None,
                   help="solver TOML file or preset name (default: auto mode picks the model and schedule)")
    s.add_argument("--out", help="result file (default: <problem-name>.h5 in the current folder)")
    s.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override solve options (steps=200, grids=[5,10]) or model keys (model.grid=3)")
    s.add_argument("--force", action="store_true", help="overwrite an existing result file")
    s.set_defaults(func=_cmd_solve)

    c = sub.add_parser("compare", parents=[common], help="run several solvers on one problem: table and plots")
    c.add_argument("problem")
    c.add_argument("solvers", nargs="+", help="solver TOML files or preset names")
    c.add_argument("--out", help="output folder (default: <problem-name>-compare)")
    c.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override options of every solver")
    c.add_argument("--force", action="store_true", help="overwrite existing result files")
    c.set_defaults(func=_cmd_compare)

    pl = sub.add_parser("plot", parents=[common], help="plot a result file (solution, error, history, KAN diagram)")
    pl.add_argument("run")
    pl.add_argument("--out", help="output folder (default: the result file's folder)")
    pl.set_defaults(func=_cmd_plot)

    sy = sub.add_parser("symbolify", parents=[common], help="print the closed-form formula of a KAN result")
    sy.add_argument("run")
    sy.add_argument("--allow-numeric", action="store_true", help="keep edges no library function fits as numbers")
    sy.add_argument("--problem", help="the problem file the run solved: enables PDE-aware refinement")
    sy.set_defaults(func=_cmd_symbolify)

    dc = sub.add_parser("discover", parents=[common], help="search small KAN structures for the verified closed form (kp.discover)")
    dc.add_argument("problem", help="Python file defining `problem`")
    dc.add_argument("--out", help="folder for <problem-name>-discovery.json (formula, residual, candidates)")
    dc.add_argument("--max-time", type=float, default=600.0, help="seconds for the whole search (default 600)")
    dc.set_defaults(func=_cmd_discover)

    b = sub.add_parser("bench", parents=[common], help="run the benchmark suite (problems x solvers)")
    b.add_argument("--quick", action="store_true", help="a short version")
    b.add_argument("--out", default="bench-results", help="folder for bench.md, bench.h5 and the plot")
    b.add_argument("--device", default="cpu",
                   help="where the suite trains: cpu (default), cuda or auto; the CPU-vs-CUDA "
                        "timings and the targets on CUDA run whenever CUDA is present")
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv=None) -> int:
    """Entry point of the ``kanpinn`` console script; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:           # argparse already printed its message
        return int(e.code or 0)
    debug = args.debug or os.environ.get("KANPINN_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as e:  # noqa: BLE001 - the one place where every error becomes one line
        if debug:
            raise
        text = " ".join(str(e).split())
        if isinstance(e, KanpinnError):
            return _fail(text or type(e).__name__)
        if isinstance(e, (OSError, UnicodeDecodeError)):      # files the user named
            return _fail(f"{type(e).__name__}: {text}")
        print(f"kanpinn: internal error: {type(e).__name__}: {text} (a bug: run again with --debug "
              "or KANPINN_DEBUG=1 for the traceback, and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
