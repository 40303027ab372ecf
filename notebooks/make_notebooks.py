"""Generate the kanpinn example notebooks.

The notebooks are written from this script so that they can be reviewed (and diffed) as
ordinary Python. Regenerate them after editing, from the repository root or from here::

    python notebooks/make_notebooks.py

The .ipynb files are written WITHOUT outputs; run them in Jupyter to see the plots
(07_navier_stokes is committed executed in full mode, with its figures: a notebook whose
cell sources are unchanged is left as it is).

Every notebook reads the environment variable ``KANPINN_FAST``: with ``KANPINN_FAST=1``
(what ``tests/test_notebooks.py`` sets) all budgets shrink so that each notebook runs in
seconds. The numbers it then prints are not meaningful; run without it for real results.
Notebooks write their output files (``*.h5``) into the current working directory.
"""
from __future__ import annotations

import os
import textwrap

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))

SETUP = '''\
import os
FAST = os.environ.get("KANPINN_FAST", "0") == "1"   # tiny budgets (set by the test suite)

%matplotlib inline
import numpy as np
import torch
from matplotlib.figure import Figure
from IPython.display import display

import kanpinn as kp

pi = torch.pi
print("fast mode" if FAST else "full mode", "| kanpinn", kp.__version__)'''

SETUP_NOTE = (
    "The first code cell reads `KANPINN_FAST`: the test suite sets it to `1` so the notebook "
    "runs in seconds with tiny budgets (the results are then rough). Run without it for "
    "real numbers. Figures are returned as matplotlib `Figure` objects and shown with "
    "`display(fig)`.")


def md(text):
    return new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text):
    return new_code_cell(textwrap.dedent(text).strip("\n"))


def notebook(cells):
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"             # stable ids: regenerating gives no diff
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# ----------------------------------------------------------------------------- 01
POISSON_2D = '''\
domain = kp.Rectangle([-1.0, -1.0], [1.0, 1.0])        # variables named x, y

def residual(x, u):                                     # x: (N, 2), requires grad; u: (N, 1)
    f = -2 * pi**2 * torch.sin(pi * x[:, 0:1]) * torch.sin(pi * x[:, 1:2])
    return kp.laplacian(u, x) - f                       # (N, 1), zero at the solution

{p} = kp.Problem(
    domain,
    residual,
    conditions=[kp.Dirichlet(0.0)],                     # u = 0 on the whole boundary
    exact=lambda x: torch.sin(pi * x[:, 0:1]) * torch.sin(pi * x[:, 1:2]),
    name="poisson_2d",
)
{p}'''


def nb01():
    return notebook([
        md("""
        # 1. Quickstart: the 2-D Poisson equation

        We solve

        $$\\Delta u = -2\\pi^2 \\sin(\\pi x)\\sin(\\pi y) \\quad\\text{on } [-1, 1]^2, \\qquad u = 0 \\text{ on the boundary,}$$

        whose exact solution is $u = \\sin(\\pi x)\\sin(\\pi y)$, with a physics-informed
        Kolmogorov-Arnold Network (KAN). The network $u_\\theta(x, y)$ is trained so that
        the PDE residual vanishes at random *collocation points* inside the square and the
        boundary condition holds at points on its edge. No solution data is used: the
        exact solution is only given to measure the error.
        """),
        md(SETUP_NOTE),
        code(SETUP),
        md("""
        ## The problem

        A problem is a domain, a residual function `residual(x, u)` that is zero at the
        solution, and boundary conditions. Derivatives come from `kp.laplacian`,
        `kp.grad`, `kp.partial`, which differentiate `u` with respect to the points `x`.
        """),
        code(POISSON_2D.format(p="problem")),
        md("""
        ## Solve

        `kp.KAN([2, 10, 1])` has 2 inputs, 10 hidden nodes and one output; each edge
        carries a learnable cubic B-spline on a grid of 5 intervals. `grids=[5, 10, 20]`
        trains in stages, refining every spline grid between stages (grid extension), and
        `steps` is the number of optimizer steps per stage. Small models are trained with
        Levenberg-Marquardt by default.
        """),
        code('''\
        steps = 3 if FAST else 100
        grids = [5, 10] if FAST else [5, 10, 20]
        budget = dict(n_interior=100, n_boundary=40, test_points=31) if FAST else {}

        model = kp.KAN([2, 10, 1], grid=5, k=3)
        result = kp.solve(problem, model, grids=grids, steps=steps, progress=False, **budget)

        print(result)
        print(f"relative L2 error : {result.metrics['l2_relative']:.3e}")
        print(f"max abs error     : {result.metrics['max_abs']:.3e}")
        print(f"training time     : {result.metrics['wall_time']:.1f} s, {result.metrics['steps']} steps")
        print(f"parameters        : {result.metrics['n_parameters']}")'''),
        md("""
        ## Look at the solution

        `result.plot()` shows the prediction, the exact solution, the absolute error and
        the training history (loss and relative L2 error per step).
        """),
        code('''\
        fig = result.plot()
        display(fig)'''),
        md("""
        The history is a dict of numpy arrays, one entry per logged step, so you can make
        your own plots or tables from it.
        """),
        code('''\
        h = result.history
        print(sorted(h))
        for i in np.linspace(0, len(h["step"]) - 1, 5).astype(int):
            print(f"step {int(h['step'][i]):4d}  loss {h['loss'][i]:.3e}  L2 {h['l2_relative'][i]:.3e}")'''),
        md("""
        ## Save and load

        `result.save` writes an HDF5 file holding arrays and JSON metadata only, and
        `kp.load` reads it back without unpickling anything, so a result file is safe to
        share. The loaded result predicts exactly what the trained one did. (The file is
        written into the current directory.)
        """),
        code('''\
        result.save("poisson.h5")
        again = kp.load("poisson.h5")

        x_test = result.test_x
        diff = np.abs(again.predict(x_test) - result.predict(x_test)).max()
        print(again)
        print("largest prediction difference after the round trip:", diff)
        assert diff < 1e-12'''),
        md("""
        Next: `kp.symbolify(result)` turns a trained KAN into a formula (notebook 4), and
        notebook 3 compares the KAN with an ordinary MLP at equal training time.
        """),
    ])


# ----------------------------------------------------------------------------- 02
def nb02():
    return notebook([
        md("""
        # 2. A time-dependent problem: the heat equation

        $$u_t = \\kappa\\, u_{xx}, \\quad x \\in [-1, 1],\\ t \\in [0, 1], \\quad \\kappa = 1/\\pi^2,$$

        with $u(x, 0) = \\sin(\\pi x)$ and $u(\\pm 1, t) = 0$. The exact solution is
        $u = e^{-t}\\sin(\\pi x)$: the initial sine wave decays.

        A PINN treats time as one more input: the network is $u_\\theta(x, t)$ and the
        domain is the rectangle space x time. `kp.SpaceTime` builds it and knows which
        face is the initial time, so `kp.Initial` and `kp.Dirichlet` can find their points.
        """),
        md(SETUP_NOTE),
        code(SETUP),
        md("""
        ## The problem

        The columns of `x` are the space variables, then `t` last. `kp.partial(u, x, i,
        order)` is the derivative with respect to column `i`. The Dirichlet condition
        applies on the spatial boundary ($x = \\pm 1$) for all times; the initial condition
        on $t = 0$.
        """),
        code('''\
        kappa = 1.0 / pi**2
        domain = kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0))
        print("variables:", domain.variables)

        def residual(x, u):                          # columns: x, t
            u_t = kp.partial(u, x, 1)
            u_xx = kp.partial(u, x, 0, order=2)
            return u_t - kappa * u_xx

        def exact(x):
            return torch.exp(-x[:, 1:2]) * torch.sin(pi * x[:, 0:1])

        problem = kp.Problem(
            domain,
            residual,
            conditions=[kp.Dirichlet(0.0), kp.Initial(lambda x: torch.sin(pi * x[:, 0:1]))],
            exact=exact,
            name="heat_1d",
        )'''),
        md("## Solve"),
        code('''\
        steps = 4 if FAST else 100
        grids = [5] if FAST else [5, 10, 20]
        budget = dict(n_interior=200, n_boundary=60, test_points=21) if FAST else dict(n_interior=2000, n_boundary=200)

        result = kp.solve(problem, kp.KAN([2, 10, 1], seed=0), grids=grids, steps=steps, progress=False, **budget)
        print(f"relative L2 error {result.metrics['l2_relative']:.3e} after {result.metrics['wall_time']:.1f} s")'''),
        md("""
        ## The error in the x-t plane

        We evaluate the trained network on a regular grid of $(x, t)$ points and draw the
        absolute error as an image, time upwards. Errors typically grow away from the
        initial line, where the network is only constrained by the PDE itself.
        """),
        code('''\
        nx, nt = (41, 21) if FAST else (201, 101)
        xs, ts = np.linspace(-1, 1, nx), np.linspace(0, 1, nt)
        X, T = np.meshgrid(xs, ts)                         # (nt, nx)
        pts = np.column_stack([X.ravel(), T.ravel()])
        pred = result.predict(pts).reshape(nt, nx)
        true = np.exp(-T) * np.sin(np.pi * X)
        err = np.abs(pred - true)

        fig = Figure(figsize=(11, 4))
        ax1, ax2 = fig.subplots(1, 2)
        im = ax1.pcolormesh(X, T, err, shading="auto", cmap="magma")
        fig.colorbar(im, ax=ax1, label="|u - u_exact|")
        ax1.set(xlabel="x", ylabel="t", title="absolute error")
        for i, c in zip(np.linspace(0, nt - 1, 4).astype(int), ["C0", "C1", "C2", "C3"]):
            ax2.plot(xs, pred[i], color=c, label=f"t = {ts[i]:.2f}")
            ax2.plot(xs, true[i], "k--", lw=0.8)
        ax2.set(xlabel="x", ylabel="u", title="snapshots (dashed: exact)")
        ax2.legend()
        fig.tight_layout()
        display(fig)
        print(f"max error {err.max():.2e} at t = {T.ravel()[err.argmax()]:.2f}")'''),
        md("""
        The same problem ships as a problem file, `problems/heat_1d.py`, for the command
        line: `kanpinn solve problems/heat_1d.py`.
        """),
    ])


# ----------------------------------------------------------------------------- 03
def nb03():
    return notebook([
        md("""
        # 3. KAN versus MLP at equal wall time

        Comparing network types by number of steps is misleading: a KAN step and an MLP
        step do not cost the same, and the optimizers differ (Levenberg-Marquardt for the
        small KAN, Adam then L-BFGS for the MLP). Here both get the **same training time**
        (`max_time`, in seconds), the same collocation points (same seed) and the same
        precision (float64), and we report the error reached together with the size and
        cost of each network.

        The models and options come from the presets shipped with kanpinn (the same as
        `solvers/kan.toml` and `solvers/mlp.toml`).
        """),
        md(SETUP_NOTE),
        code(SETUP),
        code(POISSON_2D.format(p="problem")),
        md("""
        ## The two solvers

        `load_solver` returns a model factory (called with the problem's dimension) and
        the `kp.solve` options of a preset.
        """),
        code('''\
        from kanpinn.presets import load_solver
        from kanpinn.kan_tools import flops_per_point

        kan_factory, kan_options = load_solver("kan")
        mlp_factory, mlp_options = load_solver("mlp")
        print("KAN preset:", kan_factory.config, kan_options)
        print("MLP preset:", mlp_factory.config, mlp_options)

        budget_s = 2.0 if FAST else 60.0          # wall time each model gets
        common = dict(max_time=budget_s, seed=0, progress=False)
        if FAST:
            common.update(n_interior=200, n_boundary=80, test_points=31)'''),
        md("""
        ## Train both for the same time

        Training stops as soon as the time budget is spent, wherever the run is (for the
        KAN possibly before the finest grid is reached).
        """),
        code('''\
        results = {}
        for name, factory, options in [("KAN", kan_factory, kan_options), ("MLP", mlp_factory, mlp_options)]:
            model = factory(problem.domain.dim)
            results[name] = kp.solve(problem, model, **{**options, **common})
            print(name, results[name])'''),
        md("""
        ## The table

        FLOPs are forward floating-point operations per collocation point, counted by
        `kanpinn.kan_tools.flops_per_point` (a B-spline KAN evaluates only the $k+1$
        non-zero basis functions per input, so its cost does not depend on the grid size).
        """),
        code('''\
        header = f"{'model':6} {'rel. L2':>10} {'max abs':>10} {'time (s)':>9} {'steps':>6} {'params':>7} {'FLOPs/pt':>9}"
        print(header)
        print("-" * len(header))
        for name, r in results.items():
            m = r.metrics
            print(f"{name:6} {m['l2_relative']:10.3e} {m['max_abs']:10.3e} {m['wall_time']:9.1f} "
                  f"{m['steps']:6d} {m['n_parameters']:7d} {flops_per_point(r.model):9d}")'''),
        md("""
        ## Error against time, and where the errors are

        `plot_compare` draws the relative L2 error of each run against wall time (top)
        and each model's absolute error map on a common colour scale (bottom).
        """),
        code('''\
        from kanpinn.plotting import plot_compare

        fig = plot_compare(results)
        display(fig)'''),
        md("""
        The command line does the same for any problem file and solver files:
        `kanpinn compare problems/poisson_2d.py solvers/kan.toml solvers/mlp.toml --out cmp/`.
        """),
    ])


# ----------------------------------------------------------------------------- 04
def nb04():
    return notebook([
        md("""
        # 4. Closed forms without guessing: `kp.discover`

        Each edge of a KAN is a one-variable function, so a trained KAN can be read back as
        a formula (`kp.symbolify`). Which formula comes out depends on the network's
        *structure*: a sum of edges, a product (a multiplication node), a function of a
        sum. `kp.discover(problem)` searches these small structures, cheapest first, trains
        each with `kp.solve`, reads it back, and keeps a formula only when the formula
        **itself** solves the problem: its PDE residual and its boundary/initial misfits,
        differentiated exactly, vanish on fresh points. A formula that merely stays close
        to the network is not enough.
        """),
        md(SETUP_NOTE),
        code(SETUP + '''
import sympy
from kanpinn.symbolic import verify'''),
        md("""
        ## Verification on the formula itself

        `verify(formula, problem)` evaluates the user's own residual on the formula (with
        `kp.laplacian` and friends differentiating it by autograd) and every condition's
        misfit, on points never used for training. Both must vanish relative to the
        largest term of the problem (forcing, u and its derivatives).

        A numerically close formula, e.g. $\\tfrac{127}{4}\\sin(0.0315\\sin\\pi x
        \\sin\\pi y)$ (within 2e-4 of the solution), is rejected; the closed form passes
        to round-off.
        """),
        code(POISSON_2D.format(p="problem_2d")),
        code('''\
        x, y, t = sympy.symbols("x y t")
        close = sympy.Rational(127, 4) * sympy.sin(0.0315 * sympy.sin(sympy.pi * x) * sympy.sin(sympy.pi * y))
        print(verify(close, problem_2d))
        print(verify(sympy.sin(sympy.pi * x) * sympy.sin(sympy.pi * y), problem_2d))'''),
        md("""
        ## Heat equation: $u_t = \\kappa u_{xx}$, $u(x, 0) = \\sin \\pi x$

        With $\\kappa = 1/\\pi^2$ the solution is $e^{-t}\\sin(\\pi x)$. `discover`
        first tries a sum of univariate functions (screened out: after the first grid its
        loss is still above 1e-2 of the loss of $u = 0$, so it is not trained further),
        then one product, whose formula verifies; the search stops there. `log=print`
        shows each candidate as it finishes.
        """),
        code('''\
        kappa = 1 / pi**2
        heat = kp.Problem(
            kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0)),
            lambda x, u: kp.partial(u, x, 1) - kappa * kp.partial(u, x, 0, order=2),
            conditions=[kp.Dirichlet(0.0), kp.Initial(lambda x: torch.sin(pi * x[:, 0:1]))],
            exact=lambda x: torch.exp(-x[:, 1:2]) * torch.sin(pi * x[:, 0:1]),
            name="heat_1d",
        )
        # fast mode: one structure, a tiny training (the formula is then rough), no distillation
        fast = dict(structures=[[2, [0, 1], 1]], starts=1, max_time=60, distill=False,
                    solve=dict(grids=[5], steps=5, n_interior=100, n_boundary=40)) if FAST else {}
        found_heat = kp.discover(heat, log=print, **fast)
        print(found_heat.report())
        found_heat.formula'''),
        md("""
        `found_heat.formula` is a sympy expression (None when nothing verified),
        `found_heat.residual` the verified residual, and `found_heat.candidates` the table
        above (structure, formula, residual, seconds, why rejected).

        ## Poisson on the unit square: $u = \\sin(\\pi x)\\sin(2\\pi y)$

        Two frequencies in a product; constants snap to simple multiples of $\\pi$ only
        when the snapped formula verifies as well as the unsnapped one.
        """),
        code('''\
        def product_exact(x):
            return torch.sin(pi * x[:, 0:1]) * torch.sin(2 * pi * x[:, 1:2])

        product = kp.Problem(
            kp.Rectangle([0.0, 0.0], [1.0, 1.0]),
            lambda x, u: kp.laplacian(u, x) + 5 * pi**2 * product_exact(x),
            conditions=[kp.Dirichlet(0.0)], exact=product_exact, name="poisson_2d_product",
        )
        found_product = kp.discover(product, log=print, **fast)
        print(found_product.report())
        found_product.formula'''),
        md("""
        The formula against the exact solution, and each candidate's verified residual
        (log scale: the verified formula sits at round-off, a structure read back but
        rejected many orders of magnitude higher; structures screened out after the first
        grid have no formula and are not drawn).
        """),
        code('''\
        fig = Figure(figsize=(10, 3.6))
        ax1, ax2 = fig.subplots(1, 2)
        g = np.linspace(0, 1, 101)
        X, Y = np.meshgrid(g, g)
        exact_values = np.sin(np.pi * X) * np.sin(2 * np.pi * Y)
        if found_product.formula is not None:
            f = sympy.lambdify((x, y), found_product.formula, "numpy")
            err = np.abs(np.broadcast_to(f(X, Y), X.shape) - exact_values)
            im = ax1.pcolormesh(X, Y, err, shading="auto")
            fig.colorbar(im, ax=ax1)
            ax1.set_title("|formula - exact|")
        else:
            ax1.set_title("no verified formula (fast mode)")
        # screened-out structures have no formula, hence no residual: not drawn
        rows = [r for r in found_heat.candidates + found_product.candidates if np.isfinite(r.residual)]
        labels = [f"{r.structure}\\n{r.widths}" for r in rows]
        values = [r.residual if np.isfinite(r.residual) and r.residual > 0 else 1e-17 for r in rows]
        colors = ["tab:green" if r.verified else "tab:red" for r in rows]
        ax2.barh(range(len(rows)), values, color=colors)
        ax2.set_xscale("log")
        ax2.set_yticks(range(len(rows)), labels, fontsize=7)
        ax2.axvline(found_product.tol, color="k", ls="--", lw=1)
        ax2.set_title("candidates: verified residual (green: verified)")
        fig.tight_layout()
        display(fig)'''),
        md("""
        ## Klein-Gordon: distillation

        $u_{tt} - u_{xx} + u^3 = f$ with the manufactured solution
        $u = x\\cos(5\\pi t) + (xt)^3$. Here the small structures trained on the PDE stop
        far from the solution (the product's formula has residual 1e-2), so `discover`
        *distils*: it solves the problem once in auto mode (the teacher, accurate to about
        1e-11 here), fits the small structures to the teacher's **values** by least squares
        (far better conditioned than the PDE loss), and reads a 2-D sum of products off a
        grid of those values. The formula must still verify on the PDE itself. About four
        minutes on one CPU thread; fast mode skips it.
        """),
        code('''\
        def kg_exact(x):                                # columns: x, t
            return x[:, 0:1] * torch.cos(5 * pi * x[:, 1:2]) + (x[:, 0:1] * x[:, 1:2]) ** 3

        def kg_forcing(x):
            X, T = x[:, 0:1], x[:, 1:2]
            return -25 * pi**2 * X * torch.cos(5 * pi * T) + 6 * X**3 * T - 6 * X * T**3 + kg_exact(x) ** 3

        kg = kp.Problem(
            kp.SpaceTime(kp.Interval(0.0, 1.0), t=(0.0, 1.0)),
            lambda x, u: kp.partial(u, x, 1, order=2) - kp.partial(u, x, 0, order=2) + u**3 - kg_forcing(x),
            conditions=[kp.Dirichlet(kg_exact), kp.Initial(lambda x: x[:, 0:1]), kp.Initial(0.0, derivative=1)],
            exact=kg_exact, name="klein_gordon_1d",
        )
        if FAST:
            print("full mode only: Klein-Gordon distillation takes about four minutes")
        else:
            found_kg = kp.discover(kg, log=print)
            print(found_kg.report())
            display(found_kg.formula)'''),
        md("""
        ## When the solution is not elementary

        $u'' = \\cos(x^2)$, $u(\\pm 1) = 0$: $u$ is a Fresnel-type integral, outside the
        library. `discover` says so: `verified` is False, `formula` is None, and the table
        lists how close each structure came, trained on the PDE and then distilled from an
        auto-mode solve. An approximation is never passed off as the answer.
        """),
        code('''\
        fresnel = kp.Problem(kp.Interval(-1.0, 1.0), lambda x, u: kp.laplacian(u, x) - torch.cos(x**2),
                             [kp.Dirichlet(0.0)], name="fresnel_1d")
        budget = dict(structures=[[1, 1]], distill=False, solve=dict(grids=[5], steps=10, n_interior=100,
                                                                      n_boundary=2)) if FAST \\
            else dict(structures=[[1, 1], [1, [0, 1], 1]], max_time=240)
        found_fresnel = kp.discover(fresnel, **budget)
        print(found_fresnel.report())
        print("formula:", found_fresnel.formula)'''),
        md("""
        From the command line: `kanpinn discover problems/heat_1d.py --out runs/` prints
        the same report and writes `heat_1d-discovery.json` (formula, residual,
        candidates). `kp.symbolify(result)` is still there for a structure you chose
        yourself; check its formula with `verify(formula, problem)`.
        """),
    ])


# ----------------------------------------------------------------------------- 05
def nb05():
    return notebook([
        md("""
        # 5. An inverse problem: learning a coefficient from data

        So far the PDE was fully known. Often a coefficient is not: here the diffusivity
        $\\kappa$ of the heat equation $u_t = \\kappa u_{xx}$ is unknown, but we have a few
        (noisy) measurements of $u$ inside the domain. A PINN handles this by making
        $\\kappa$ one more trainable number: the network must fit the data **and** satisfy
        the PDE with some $\\kappa$, and only the true value allows both.

        The data are synthetic: we sample the exact solution $e^{-t}\\sin(\\pi x)$, which
        belongs to $\\kappa = 1/\\pi^2 \\approx 0.1013$, and add 1% noise.
        """),
        md(SETUP_NOTE),
        code(SETUP),
        md("## Observations"),
        code('''\
        kappa_true = 1.0 / np.pi**2
        rng = np.random.default_rng(0)
        n_obs = 60
        x_obs = np.column_stack([rng.uniform(-1, 1, n_obs), rng.uniform(0, 1, n_obs)])   # (x, t)
        u_obs = np.exp(-x_obs[:, 1:2]) * np.sin(np.pi * x_obs[:, 0:1])
        u_obs = u_obs + 0.01 * rng.standard_normal(u_obs.shape)
        print(x_obs.shape, u_obs.shape)'''),
        md("""
        ## The problem with an unknown parameter

        `parameters={"kappa": 0.5}` declares the unknown and its initial guess (5 times
        too large). The residual then receives a third argument `p`, with `p["kappa"]` a
        trainable tensor. `kp.Data(points, values)` adds the misfit to the observations to
        the loss.
        """),
        code('''\
        domain = kp.SpaceTime(kp.Interval(-1.0, 1.0), t=(0.0, 1.0))

        def residual(x, u, p):
            return kp.partial(u, x, 1) - p["kappa"] * kp.partial(u, x, 0, order=2)

        problem = kp.Problem(
            domain,
            residual,
            conditions=[
                kp.Dirichlet(0.0),
                kp.Initial(lambda x: torch.sin(pi * x[:, 0:1])),
                kp.Data(x_obs, u_obs),
            ],
            exact=lambda x: torch.exp(-x[:, 1:2]) * torch.sin(pi * x[:, 0:1]),
            parameters={"kappa": 0.5},
            name="heat_inverse",
        )'''),
        md("## Solve"),
        code('''\
        steps = 4 if FAST else 100
        grids = [5] if FAST else [5, 10]
        budget = dict(n_interior=200, n_boundary=60, test_points=21) if FAST else dict(n_interior=1000, n_boundary=200)

        result = kp.solve(problem, kp.KAN([2, 5, 1], seed=0), grids=grids, steps=steps, progress=False, **budget)

        kappa = result.metrics["parameters"]["kappa"]
        print("learned parameters:", result.metrics["parameters"])
        print(f"kappa = {kappa:.5f}  (true {kappa_true:.5f}, relative error {abs(kappa - kappa_true) / kappa_true:.1e})")
        print(f"solution relative L2 error: {result.metrics['l2_relative']:.3e}")'''),
        md("""
        ## How the estimate converged

        The history records the parameter at every logged step (`param_kappa`), next to
        the loss terms: the PDE residual, the boundary and initial conditions, and the
        data misfit.
        """),
        code('''\
        h = result.history
        fig = Figure(figsize=(11, 4))
        ax1, ax2 = fig.subplots(1, 2)
        ax1.plot(h["step"], h["param_kappa"], label="learned")
        ax1.axhline(kappa_true, color="k", ls="--", label="true 1/pi^2")
        ax1.set(xlabel="step", ylabel="kappa", title="parameter estimate")
        ax1.legend()
        for key in sorted(k for k in h if k.startswith("loss_")):
            ax2.semilogy(h["step"], np.maximum(h[key], 1e-300), label=key[5:])
        ax2.set(xlabel="step", title="loss terms")
        ax2.legend()
        fig.tight_layout()
        display(fig)'''),
    ])


# ----------------------------------------------------------------------------- 06
def nb06():
    return notebook([
        md("""
        # 6. Grid extension and pruning

        Two KAN-specific tools:

        * **Grid extension.** A spline on a coarse grid is also a spline on any grid that
          refines it, so a trained KAN can move to a finer grid *without losing anything*
          and then keep training with more resolution. Training coarse-to-fine is cheaper
          and usually more accurate than training the fine grid from the start.
        * **Sparsification and pruning.** A penalty on the size of the edge functions
          pushes unnecessary edges towards zero; nodes whose edges are all weak can then be
          removed, leaving a smaller network that is easier to read (and to symbolify).
        """),
        md(SETUP_NOTE),
        code(SETUP),
        code(POISSON_2D.format(p="problem")),
        md("""
        ## Coarse to fine: 5 → 10 → 20

        `kp.solve(problem, model, grids=[5, 10, 20])` does all stages in one call. Here we
        run them one at a time to watch what happens at each extension: the error just
        before, right after `model.extend_grid` (unchanged: the coarse spline nests in the
        fine one), and after training on the finer grid.
        """),
        code('''\
        steps = 3 if FAST else 60
        grids = [5, 10, 20]
        budget = dict(n_interior=150, n_boundary=60, test_points=21) if FAST else dict(n_interior=1000, n_boundary=200)
        x_fit = torch.as_tensor(domain.sample_interior(150 if FAST else 1000, "sobol"))

        model = kp.KAN([2, 5, 1], grid=grids[0], seed=0)
        stages = []
        for i, g in enumerate(grids):
            if i > 0:
                before = stages[-1].errors()[0]
                model.extend_grid(g, x_fit)
                after = stages[-1].errors()[0]          # same model object, now on the finer grid
                print(f"extend {grids[i - 1]:2d} -> {g:2d}: L2 {before:.3e} -> {after:.3e}")
            r = kp.solve(problem, model, grids=[g], steps=steps, progress=False, **budget)
            stages.append(r)
            print(f"grid {g:2d}: trained {r.metrics['steps']} steps, L2 {r.metrics['l2_relative']:.3e}, "
                  f"{r.metrics['n_parameters']} parameters")'''),
        md("""
        Each stage's `result.history` holds its error per step; joined end to end they
        show the drop after each extension.
        """),
        code('''\
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
        offset = 0
        for g, r in zip(grids, stages):
            h = r.history
            ax.semilogy(offset + h["step"], h["l2_relative"], "o-", ms=3, label=f"grid {g}")
            offset += h["step"][-1]
            ax.axvline(offset, color="gray", lw=0.5)
        ax.set(xlabel="step (all stages)", ylabel="relative L2 error", title="grid extension")
        ax.legend()
        display(fig)'''),
        md("""
        ## The trained network

        `model.plot(x)` draws every edge's function over the range of its inputs; the
        darker the curve, the stronger the edge.
        """),
        code('''\
        display(model.plot(x_fit, in_vars=["x", "y"], out_vars=["u"]))'''),
        md("""
        ## Sparsify, then prune

        We train a little more with the PINN loss plus `model.regularization(x)`, the KAN
        paper's penalty (the L1 size of every edge plus the entropy of their distribution,
        which favours a few strong edges over many weak ones). kanpinn's `kp.solve` has no
        such term, so we write the short training loop ourselves with the solver's loss
        object. Then `model.prune(threshold, x)` returns a new, smaller KAN without the
        hidden nodes whose incoming or outgoing edges are all below the threshold. (A
        longer sparsification, with a larger penalty, prunes more.)
        """),
        code('''\
        from kanpinn.solver.loss import Collocation, PINNLoss

        reg_steps = 5 if FAST else 100
        lam = 1e-3
        colloc = Collocation(problem, budget["n_interior"], budget["n_boundary"], "sobol", 0, torch.float64, "cpu")
        pinn_loss = PINNLoss(problem, model, colloc, {})
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step in range(reg_steps):
            optimizer.zero_grad()
            loss, parts = pinn_loss.loss()
            total = loss + lam * model.regularization(x_fit)
            total.backward()
            optimizer.step()
        print(f"after sparsification: PINN loss {float(loss.detach()):.3e}, L2 {stages[-1].errors()[0]:.3e}")'''),
        code('''\
        from kanpinn.kan_tools import edge_scores

        scores = edge_scores(model, x_fit)          # mean |phi| of every edge, per layer
        print("edge strengths, hidden -> output:", np.round(scores[1][:, 0].numpy(), 3))
        # what counts as "weak" is a judgement call: here 30% of the strongest output edge
        threshold = 0.3 * float(scores[-1].max())
        print(f"threshold {threshold:.3f}")
        pruned = model.prune(threshold=threshold, x=x_fit)
        print("widths:", model.widths, "->", pruned.widths)
        print("parameters:", model.n_parameters, "->", pruned.n_parameters)

        g = np.linspace(-1, 1, 41)
        X, Y = np.meshgrid(g, g)
        x_test = torch.as_tensor(np.column_stack([X.ravel(), Y.ravel()]))
        u_test = np.sin(np.pi * X.ravel()) * np.sin(np.pi * Y.ravel())

        def l2_error(net):
            with torch.no_grad():
                u = net(x_test)[:, 0].numpy()
            return np.linalg.norm(u - u_test) / np.linalg.norm(u_test)

        print(f"relative L2 error: {l2_error(model):.3e} (sparsified) -> {l2_error(pruned):.3e} (pruned)")'''),
        md("""
        Pruning removes only weak nodes, so the pruned network is close to the original;
        a few more steps of ordinary training repair the small difference.
        """),
        code('''\
        result_pruned = kp.solve(problem, pruned, grids=[grids[-1]], steps=steps, progress=False, **budget)
        print(f"pruned KAN: L2 {result_pruned.metrics['l2_relative']:.3e} with {result_pruned.metrics['n_parameters']} parameters "
              f"after {result_pruned.metrics['steps']} steps")
        print("solver notes:", result_pruned.metrics.get("notes", "none"))
        display(pruned.plot(x_fit, in_vars=["x", "y"], out_vars=["u"]))'''),
    ])


def nb07():
    return notebook([
        md("""
        # 7. Navier-Stokes: Kovasznay flow and the lid-driven cavity

        Steady incompressible Navier-Stokes in 2-D is a *system*: three unknown fields
        (velocity u, v and pressure p) and three equations,

        $$u\\,u_x + v\\,u_y + p_x - \\tfrac{1}{Re}\\Delta u = 0,\\quad
          u\\,v_x + v\\,v_y + p_y - \\tfrac{1}{Re}\\Delta v = 0,\\quad u_x + v_y = 0.$$

        One KAN with three outputs, `KAN([2, ..., 3])`, carries all three fields. The
        residual reads each field as a column of the output (`w[:, 0:1]`) and applies
        `kp.grad` / `kp.laplacian` to it; conditions act on one field with `component=`.
        The pressure appears only through its gradient, so it is fixed up to a constant:
        both problems pin it at one point with `kp.Data(..., component=2)`.

        Both problems are files in `problems/`: `kovasznay.py` (Re = 20, with an exact
        solution) and `lid_driven_cavity.py` (Re = 100, checked against the centreline
        tables of Ghia, Ghia & Shin 1982).
        """),
        md(SETUP_NOTE),
        code(SETUP),
        code('''\
        import runpy
        from pathlib import Path

        root = Path(kp.__file__).resolve().parents[1]          # the repository checkout
        kovasznay = runpy.run_path(str(root / "problems" / "kovasznay.py"))
        cavity = runpy.run_path(str(root / "problems" / "lid_driven_cavity.py"))
        print(kovasznay["problem"])
        print(cavity["problem"])'''),
        md("""
        ## Kovasznay flow (Re = 20)

        Kovasznay's exact solution, with λ = Re/2 - sqrt(Re²/4 + 4π²):
        u = 1 - e^{λx} cos 2πy, v = λ/(2π) e^{λx} sin 2πy, p = (1 - e^{2λx})/2, on
        [-0.5, 1] × [-0.5, 1.5]. u and v are prescribed on the boundary; p is pinned at the
        centre of the box (0.25, 0.5) to its exact value, so the learned pressure carries the exact
        constant and the error of p is measured directly. Levenberg-Marquardt on the
        structured Jacobian (`optimizer="lm"`) trains the three fields together.
        """),
        code('''\
        budget = dict(grids=[5], steps=4, n_interior=200, n_boundary=80, test_points=21) if FAST else \\
            dict(grids=[5, 10], steps=20, n_interior=1000, n_boundary=300)
        model = kp.KAN([2, 12, 3], grid=5, k=3, seed=0)
        kov = kp.solve(kovasznay["problem"], model, optimizer="lm", progress=False, seed=0, **budget)

        x_test = torch.as_tensor(kovasznay["problem"].domain.test_points(21 if FAST else 101))
        ref = kovasznay["exact"](x_test).numpy()
        pred = kov.predict(x_test)
        rel = np.linalg.norm(pred - ref, axis=0) / np.linalg.norm(ref, axis=0)
        print(f"training time {kov.metrics['wall_time']:.1f} s, {kov.metrics['n_parameters']} parameters")
        for name, e in zip("uvp", rel):
            print(f"relative L2 error of {name}: {e:.2e}")'''),
        md("""
        Streamlines of the learned velocity over its speed, and the pressure, next to the
        pointwise error of each field.
        """),
        code('''\
        def fields(predict, lo, hi, n):
            gx, gy = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
            X, Y = np.meshgrid(gx, gy)
            w = predict(np.column_stack([X.ravel(), Y.ravel()])).reshape(n, n, 3)
            return gx, gy, X, Y, w

        def flow_figure(predict, lo, hi, title, n=101):
            gx, gy, X, Y, w = fields(predict, lo, hi, n)
            fig = Figure(figsize=(11, 4.5))
            a, b = fig.subplots(1, 2)
            speed = np.hypot(w[..., 0], w[..., 1])
            m = a.contourf(X, Y, speed, 40, cmap="viridis")
            a.streamplot(gx, gy, w[..., 0], w[..., 1], color="white", density=1.4, linewidth=0.7)
            fig.colorbar(m, ax=a, label="speed")
            a.set(title=f"{title}: streamlines", xlabel="x", ylabel="y", aspect="equal")
            m = b.contourf(X, Y, w[..., 2], 40, cmap="RdBu_r")
            fig.colorbar(m, ax=b, label="p")
            b.set(title=f"{title}: pressure", xlabel="x", ylabel="y", aspect="equal")
            fig.tight_layout()
            return fig

        lo, hi = kovasznay["problem"].domain.lo, kovasznay["problem"].domain.hi
        display(flow_figure(kov.predict, lo, hi, "Kovasznay (KAN)", n=41 if FAST else 101))

        n = 41 if FAST else 101
        gx, gy, X, Y, w = fields(kov.predict, lo, hi, n)
        exact_w = kovasznay["exact"](torch.as_tensor(np.column_stack([X.ravel(), Y.ravel()]))).numpy().reshape(n, n, 3)
        fig = Figure(figsize=(13, 3.8))
        for ax, j, name in zip(fig.subplots(1, 3), range(3), "uvp"):
            m = ax.contourf(X, Y, np.abs(w[..., j] - exact_w[..., j]), 40, cmap="magma")
            fig.colorbar(m, ax=ax, format="%.0e")
            ax.set(title=f"|error| of {name}", xlabel="x", aspect="equal")
        fig.tight_layout()
        display(fig)'''),
        md("""
        ## Lid-driven cavity (Re = 100)

        The unit square with the top lid moving to the right at speed 1 and no-slip
        walls. The plain lid is discontinuous at the two top corners (u = 1 on the lid
        meets u = 0 on the side walls), which no smooth network can fit; the problem
        file uses the standard regularised lid u = 1 - (2x - 1)¹⁶ instead, equal to 1
        within 1 % on 0.13 ≤ x ≤ 0.87. There is no closed form: the reference is Ghia,
        Ghia & Shin (1982, J. Comput. Phys. 48, 387-411), Tables I and II, the u and v
        profiles along the two centrelines computed on a 129 × 129 grid.
        """),
        code('''\
        budget = dict(grids=[5], steps=4, n_interior=200, n_boundary=80, test_points=11) if FAST else \\
            dict(grids=[5, 10], steps=20, n_interior=1000, n_boundary=400, test_points=11)
        model = kp.KAN([2, 12, 3], grid=5, k=3, seed=0)
        cav = kp.solve(cavity["problem"], model, optimizer="lm", progress=False, seed=0, **budget)
        du, dv = cavity["centreline_deviation"](cav.predict)
        print(f"training time {cav.metrics['wall_time']:.1f} s, {cav.metrics['n_parameters']} parameters")
        print(f"largest deviation from Ghia: u {np.abs(du).max():.2e}, v {np.abs(dv).max():.2e} (lid speed 1)")'''),
        code('''\
        display(flow_figure(cav.predict, [0, 0], [1, 1], "cavity Re=100 (KAN)", n=41 if FAST else 101))

        s = np.linspace(0, 1, 201)
        half = np.full_like(s, 0.5)
        u_line = cav.predict(np.column_stack([half, s]))[:, 0]
        v_line = cav.predict(np.column_stack([s, half]))[:, 1]
        fig = Figure(figsize=(10, 4.2))
        a, b = fig.subplots(1, 2)
        a.plot(u_line, s, label="KAN")
        a.plot(cavity["GHIA_U"], cavity["GHIA_Y"], "o", label="Ghia et al. 1982")
        a.set(xlabel="u(0.5, y)", ylabel="y", title="vertical centreline")
        b.plot(s, v_line, label="KAN")
        b.plot(cavity["GHIA_X"], cavity["GHIA_V"], "o", label="Ghia et al. 1982")
        b.set(xlabel="x", ylabel="v(x, 0.5)", title="horizontal centreline")
        for ax in (a, b):
            ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        display(fig)'''),
        md("""
        The end points of the tables are wall values (u = 1 on the lid, zeros), set by
        the boundary conditions; the deviation above is over the interior table points.
        Near the top corners the regularised lid differs from Ghia's plain lid, which
        shows most in the highest u values along the vertical centreline.
        """),
    ])


NOTEBOOKS = {
    "01_quickstart_poisson.ipynb": nb01,
    "02_heat_equation.ipynb": nb02,
    "03_kan_vs_mlp.ipynb": nb03,
    "04_closed_form_recovery.ipynb": nb04,
    "05_inverse_problem.ipynb": nb05,
    "06_grid_extension_and_pruning.ipynb": nb06,
    "07_navier_stokes.ipynb": nb07,
}


def sources(nb):
    """What the generator decides: each cell's type and source (not its outputs)."""
    return [(c["cell_type"], c["source"]) for c in nb.cells]


def main(out_dir=HERE):
    for name, build in NOTEBOOKS.items():
        nb = build()
        nbformat.validate(nb)
        path = os.path.join(out_dir, name)
        # a notebook committed with its outputs (executed in full mode) keeps them while
        # its sources are unchanged
        if os.path.exists(path) and sources(nbformat.read(path, as_version=4)) == sources(nb):
            print("unchanged", path)
            continue
        with open(path, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        print("wrote", path)


if __name__ == "__main__":
    main()
