"""``kanpinn bench``: speed micro-benchmarks and the problems × solvers suite.

    from kanpinn.bench import run
    report = run(quick=True, out="bench-results")   # prints the tables as it goes
    print(report.markdown)

writes into ``out``: ``bench.md`` (markdown tables), ``bench.h5`` (arrays and JSON
attributes, no pickle) and ``error_vs_time.png``. The machine (platform, CPU model, cores,
torch version and threads, CUDA device) is recorded in both files. The runner is
``kanpinn.bench.runner``, the report and files ``kanpinn.bench.report``; see
``kanpinn.bench.micro``, ``suite``, ``targets``, ``devices`` and ``hard`` for what is
measured.
"""
from .report import (BenchReport, ExtraTable, machine_info, markdown_report, plot_error_vs_time,
                     write_h5, write_markdown)
from .runner import run

__all__ = ["run", "machine_info", "BenchReport", "write_markdown", "write_h5", "plot_error_vs_time",
           "markdown_report", "ExtraTable"]
