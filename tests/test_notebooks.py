"""Execute the example notebooks (notebooks/*.ipynb) in fast mode.

Each notebook runs in a fresh ``python3`` Jupyter kernel with ``KANPINN_FAST=1`` (tiny
budgets) and a temporary working directory, so whatever it writes stays out of the
repository. The test only checks that every cell runs without an error; the numbers of a
fast-mode run are not meaningful.

Needs ``nbformat``, ``nbclient`` and ``ipykernel`` (``pip install -e ".[test]"``);
ipykernel provides the ``python3`` kernelspec. Without them the tests are skipped with
the reason.
"""
from __future__ import annotations

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB_DIR = os.path.join(REPO, "notebooks")

# The slowest notebook (two timed trainings of max_time seconds each, an MLP among them)
# runs only with -m slow; the others keep the default run within its time budget.
SLOW = {"03_kan_vs_mlp.ipynb"}
NOTEBOOKS = [
    "01_quickstart_poisson.ipynb",
    "02_heat_equation.ipynb",
    "03_kan_vs_mlp.ipynb",
    "04_closed_form_recovery.ipynb",
    "05_inverse_problem.ipynb",
    "06_grid_extension_and_pruning.ipynb",
    "07_navier_stokes.ipynb",
]
CELL_TIMEOUT = 300          # seconds per cell (fast mode needs a few)


def _kernel_name():
    """'python3' when Jupyter can start it, else skip with the reason."""
    pytest.importorskip("nbformat", reason="nbformat is needed to read notebooks (pip install -e '.[test]')")
    pytest.importorskip("nbclient", reason="nbclient is needed to run notebooks (pip install -e '.[test]')")
    pytest.importorskip("ipykernel", reason="ipykernel is needed for the python3 kernel (pip install -e '.[test]')")
    from jupyter_client.kernelspec import find_kernel_specs
    # with ipykernel importable, jupyter_client lists its built-in python3 kernel (this
    # interpreter) even when no kernelspec was installed on disk
    if "python3" not in find_kernel_specs():
        pytest.skip("no 'python3' Jupyter kernel is registered; run: python -m ipykernel install --user")
    return "python3"


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NOTEBOOKS])
def test_notebook_runs(name, tmp_path, monkeypatch):
    kernel = _kernel_name()
    import nbformat
    from nbclient import NotebookClient

    path = os.path.join(NB_DIR, name)
    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("KANPINN_FAST", "1")
    # the kernel must import this checkout's kanpinn, installed or not
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    client = NotebookClient(nb, kernel_name=kernel, timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(tmp_path)}})
    before = sorted(os.listdir(NB_DIR))
    client.execute()
    # nothing may be written into the repository: outputs go to the working directory
    assert sorted(os.listdir(NB_DIR)) == before


def test_notebooks_match_their_generator(tmp_path):
    """The committed .ipynb files are what notebooks/make_notebooks.py writes."""
    pytest.importorskip("nbformat", reason="nbformat is needed (pip install -e '.[test]')")
    import importlib.util

    import nbformat
    spec = importlib.util.spec_from_file_location("make_notebooks", os.path.join(NB_DIR, "make_notebooks.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert sorted(gen.NOTEBOOKS) == sorted(NOTEBOOKS)
    gen.main(str(tmp_path))
    for name in NOTEBOOKS:
        # the cells' sources (a notebook may be committed with its full-mode outputs)
        committed = nbformat.read(os.path.join(NB_DIR, name), as_version=4)
        generated = nbformat.read(str(tmp_path / name), as_version=4)
        assert gen.sources(committed) == gen.sources(generated), \
            f"{name} is stale: run python notebooks/make_notebooks.py"
