"""Auto mode: the model and the training schedule chosen from the problem itself.

``plan(problem, options)`` (``kp.solve(problem)`` with no model) and
``complete(problem, model, options)`` (a model given, options partly set) both return
``(model, options, choices)``. ``choices`` is a JSON-safe dict saying what was chosen and
why; the solver stores it in ``Result.options["auto"]`` and prints it. Options the user
set always win: auto mode only fills the ones left unset.

What is chosen follows from a classification of the problem (``classify``): dimension,
outputs, time dependence and its order (``Initial(derivative=1)`` means second order in
time), periodic variables, unknown coefficients, and the size of the bounding box.

The rules (measured on a shared 2-core CPU, same process, small budgets; see each
rule's ``why`` string):

- box reaching outside [-1, 1] -> ``transforms.Embedded`` (affine onto the grid range):
  x in [0, 100] Poisson 0.95 -> 1.8e-3 after 10 LM steps (identical to the [0, 1] run);
- periodic variables -> cos/sin embedding (exact periodicity of u and all derivatives;
  Allen-Cahn, G = 5, 15 LM steps: 1.04 -> 0.86);
- Dirichlet on a whole box boundary and/or u(t0) -> ``transforms.HardConstraint``
  (Burgers, grids 5/10, 40 LM steps: 0.25 -> 0.21; wave 1-D, 30 steps: 0.44 -> 0.19);
  u_t(t0) stays in the loss (made exact by τ² it gave 1.2); an initial value periodic but
  with a kink at the seam (u0' not periodic) in a parabolic equation gets the kink's
  smoothing in closed form in the lifting (``transforms/kinks.py``; Allen-Cahn, 180 s:
  4.75e-5 -> 1.0e-5), otherwise its initial condition stays in the loss; corners of u0
  inside an interval are carried the same way (heat from a hat, 60 s: 2.8e-2 -> 1.3e-6),
  and under u_tt = c² u_xx by d'Alembert's solution (plucked string: 0.999 -> 5.7e-7);
- an initial condition -> causal weighting (``causal.CausalWeights``; Burgers with exact
  constraints, same budget: 0.21 -> 0.19; Allen-Cahn at G = 5: no difference, 0.86/0.88);
- a time budget over several grids -> ``budget.StageBudget`` (every planned grid is reached);
- time left after the planned grids 5/10/20 -> grids 40 and 80 appended, each started only
  when 10 of its steps fit, with interior points growing on them (4 per parameter, at
  most doubling per stage; ``continuation.Continuation``; 180 s, 1 thread, load 3-4:
  Helmholtz (1, 4) 1.6e-5 -> 1.4e-7, Wave1d-C 3.2e-4 -> 6.8e-6);
- unknown coefficients and observations -> first-layer knots that follow the solution's
  variation (``knots.VariationKnots``; inverse Burgers, 180 s: ν off 5.1 % -> 0.017 %);
- first order in time with a reaction nonlinear in u -> time-marching in 3 windows
  (``marching``; Allen-Cahn, 180 s, load 3-5: 6.7e-3 -> 2.4e-4);
- first order in time, nonlinear in u through its derivatives only (transport that can
  steepen into fronts) -> RAD resampling every 5 steps, first-layer knots that follow
  the solution, and the problem's mirror symmetry made exact where the probe finds one
  (``fronts``), with ``guard.FreshPointGuard`` undoing steps that fit the points but not
  the PDE and LM refusing single steps that raise the loss on its fresh points (forward
  Burgers, 180 s, 1 thread, quiet box: 7.3e-2 -> 8.0e-5 for seed 0, 1.7e-3 for seed 1).
"""
from __future__ import annotations

import numpy as np

from ..errors import KanpinnError

__all__ = ["plan", "complete", "classify", "DEFAULT_MAX_TIME"]

# seconds of training auto mode plans for when the user gives no max_time
DEFAULT_MAX_TIME = 180.0
# harmonics of a periodic variable's embedding (cos/sin of 2πk x/L, k = 1..K)
_HARMONICS = 2
# the README's KAN preset: quintic B-splines, grid extension 5 -> 10 -> 20, LM
_PRESET = dict(width=10, k=5, grids=[5, 10, 20], steps=60, n_interior=2000, n_boundary=400)


def classify(problem) -> dict:
    """What auto mode knows of ``problem``: a JSON-safe dict."""
    from ..conditions import Data, Dirichlet, Initial, Periodic
    from ..domains import SpaceTime
    dom = problem.domain
    lo, hi = np.asarray(dom.lo, dtype=float), np.asarray(dom.hi, dtype=float)
    is_time = isinstance(dom, SpaceTime)
    initial = [c for c in problem.conditions if isinstance(c, Initial)]
    order = (max(c.derivative for c in initial) + 1) if initial else (1 if is_time else 0)
    try:
        n_out = problem.n_outputs
    except Exception:               # noqa: BLE001 - exact() failing must not stop a solve
        n_out = None
    outputs = n_out or _outputs_from_conditions(problem) or 1
    return {
        "dimension": int(dom.dim),
        "variables": list(dom.variables),
        "outputs": int(outputs),
        "outputs_known": n_out is not None,
        "time_dependent": bool(is_time),
        "time_order": int(order),
        "periodic": [c.variable for c in problem.conditions if isinstance(c, Periodic)],
        "dirichlet": sum(isinstance(c, Dirichlet) for c in problem.conditions),
        "initial": len(initial),
        "data": sum(isinstance(c, Data) for c in problem.conditions),
        "inverse": sorted(problem.parameters or {}),
        "box": [[float(a), float(b)] for a, b in zip(lo, hi)],
        "box_is_unit": bool(np.all(lo >= -1.0 - 1e-12) and np.all(hi <= 1.0 + 1e-12)),
        "is_box": bool(getattr(dom, "is_box", False)),
        "domain": type(dom).__name__,
    }


def _outputs_from_conditions(problem):
    comps = [getattr(c, "component", None) for c in problem.conditions]
    comps = [c for c in comps if c is not None]
    return (max(comps) + 1) if comps else None


def _set(options, choices, key, value, why):
    """Fill ``key`` unless the user set it; record the choice and its reason."""
    if key in options:
        choices["kept"][key] = "set by the user"
        return
    options[key] = value
    choices["options"][key] = {"value": value, "why": why}


def _schedule(info, options, choices, grid0, continuation=False):
    """Grids, steps and the time budget (the user's settings win). ``continuation``
    (auto mode's own model and LM only) appends finer grids that run while time is left."""
    planned = [grid0, 2 * grid0, 4 * grid0]
    extra = []
    if continuation and "grids" not in options and options.get("max_time"):
        # continuation: finer grids appended after the planned schedule, started only when
        # they fit in the time left (continuation.Continuation); measured, 180 s budget:
        # Helmholtz (1, 4) 1.6e-5 -> 1.4e-7 and Wave1d-C 3.2e-4 -> 6.8e-6
        extra = [8 * grid0, 16 * grid0]
    _set(options, choices, "grids", planned + extra,
         "grid extension (coarse to fine) is what makes KANs accurate: each stage starts "
         "from the previous grid's solution" + ("; the grids after the first three run only when the "
                                                 "time budget leaves room for them" if extra else ""))
    n_stages = len(options["grids"]) if options.get("grids") else 1
    steps = _PRESET["steps"] if n_stages >= 3 else 120
    _set(options, choices, "steps", steps, "Levenberg-Marquardt converges within tens of steps per grid")
    _set(options, choices, "n_interior", _PRESET["n_interior"] if info["dimension"] <= 2 else 3000,
         "collocation points: enough to resolve the finest grid in every direction")
    _set(options, choices, "n_boundary", _PRESET["n_boundary"], "points per condition")
    if extra and options.get("grids") == planned + extra:
        choices["methods"]["continuation"] = {
            "planned": len(planned), "extra_grids": extra,
            "why": "the planned grids often end long before max_time: finer grids follow while "
                   "they fit in the time left, with points growing with the parameters"}


def plan(problem, options: dict):
    """(model, options, choices) for ``kp.solve(problem)`` without a model."""
    from ..kan import KAN
    _check_options(options)
    options = dict(options or {})
    info = classify(problem)
    choices = {"mode": "plan", "problem": info, "model": {}, "options": {}, "kept": {}, "notes": [],
               "methods": {}}
    if not info["outputs_known"]:
        choices["notes"].append(f"no exact solution to read the number of outputs from; "
                                f"assumed {info['outputs']} from the conditions")
    if not info["is_box"]:
        choices["notes"].append(f"{info['domain']} is not a box: no exact constraints or periodic "
                                "embedding; the conditions stay in the loss")
    seed = int(options.get("seed", 0) or 0)
    periodic = _periodic_columns(problem, info)
    even = _even_columns(problem, info, periodic)
    from ..transforms.embedding import embedded_width
    width = _hidden_width(info)
    widths = [embedded_width(info["dimension"], periodic, even), width, info["outputs"]]
    model = KAN(widths, grid=_PRESET["grids"][0], k=_PRESET["k"], seed=seed)
    choices["model"] = {"type": "KAN", "widths": widths, "k": _PRESET["k"],
                        "why": "a one-hidden-layer KAN with quintic B-splines is the measured "
                               "best on smooth problems; LM trains it in seconds"}
    if info["outputs"] > 1:
        choices["model"]["why_width"] = _SYSTEM_WIDTH_WHY
    steep = _steepening(problem, info)
    model = _wrap(problem, model, info, choices, periodic, mirror=steep, even=even)
    _set(options, choices, "optimizer", "lm", "Levenberg-Marquardt with the structured Jacobian")
    _set(options, choices, "max_time", DEFAULT_MAX_TIME,
         f"auto mode's default training budget ({DEFAULT_MAX_TIME:g} s); the best state "
         "reached is returned when it runs out")
    _schedule(info, options, choices, _PRESET["grids"][0], continuation=True)
    _time_methods(problem, info, options, choices)
    _time_marching(problem, info, options, choices)
    _inverse_methods(info, options, choices)
    if steep:
        _front_methods(options, choices)
    _stage_budget(options, choices)
    _say_methods(choices)
    return model, options, choices


# systems (several outputs): one shared hidden layer, twice the scalar width
_SYSTEM_WIDTH_WHY = (
    "several outputs share one hidden layer of twice the scalar width: the fields are coupled "
    "by the residual, and LM trains them together on the one Jacobian. Measured on Kovasznay "
    "(u, v, p), auto mode, 180 s, idle 16-core Xeon at 2 threads: rel. L2 6.7e-7 / 3.2e-6 / 2.3e-6 with "
    "width 20; width 12 at equal time (loaded 2-core box, ~96 s, grids 5/10/20) was no better "
    "overall (u 8.7e-6 vs 7.9e-6, v 5.3e-5 vs 3.2e-5, p 3.2e-5 vs 6.2e-5)")


def _hidden_width(info):
    """Hidden nodes of the planned KAN: the preset width, doubled for systems."""
    return _PRESET["width"] * (2 if info["outputs"] > 1 else 1)


def _points_per_param(choices):
    """Continuation's interior points per parameter, divided by the equations per point.

    What keeps LM's least-squares problem overdetermined is rows per parameter, and a
    system of m fields has about m residual rows per point (Navier-Stokes: two momentum
    equations and continuity), so a system gets 1/m of the scalar points per parameter.
    Measured on Kovasznay, auto mode, max_time 180 s, 1 thread, shared 2-core box (load
    5.2-5.7): 4 points per parameter (10 800 points at grid 20, 3 rows each) ran 19 LM
    steps, rel. L2 3.0e-4 / 1.2e-3 / 9.5e-4 (u, v, p); 4/3 ran 42 steps, 2.2e-6 / 1.2e-5 /
    1.1e-5."""
    from .continuation import POINTS_PER_PARAM as base
    m = int(choices["problem"]["outputs"])
    if m > 1 and "continuation" in choices["methods"]:
        choices["methods"]["continuation"]["points_per_param"] = base / m
        choices["methods"]["continuation"]["why_points"] = (
            f"{m} fields, so about {m} residual rows per point: {base:g}/{m} points per parameter keep the "
            "rows per parameter of a scalar problem (Kovasznay, 180 s, loaded box: 19 LM steps and "
            "rel. L2 ~1e-3 with 4 points per parameter, 42 steps and ~1e-5 with 4/3)")
    return base / max(1, m)


def _stage_budget(options, choices):
    """Split max_time over the planned grid stages (finer grids get more), so a slow
    machine still reaches the finest planned grid; appended grids (continuation) run on
    the time the planned ones leave."""
    grids = options.get("grids") or []
    if not options.get("max_time") or len(grids) < 2:
        return
    from .budget import StageBudget
    from .continuation import Continuation
    from .lm import MAX_PARAMS
    hooks = list(options.get("hooks") or ())
    cont = choices["methods"].get("continuation")
    planned = cont["planned"] if cont else len(grids)
    if cont and not any(isinstance(h, Continuation) for h in hooks):
        # LM refuses more than MAX_PARAMS parameters: no appended grid beyond that
        lm = options.get("optimizer") == "lm"
        hooks.append(Continuation(options["max_time"], planned, grids, max_params=MAX_PARAMS if lm else None,
                                  points_per_param=_points_per_param(choices)))
    if not any(isinstance(h, StageBudget) for h in hooks):
        shares = list(range(1, planned + 1))
        hooks.append(StageBudget(options["max_time"], shares))
        choices["methods"]["stage_budget"] = {
            "shares": shares, "why": "max_time split over the planned grids in proportion 1:2:...: every "
                                     "planned grid is reached, unused time carries over"}
    if hooks:
        options["hooks"] = hooks


def _say_methods(choices):
    """The methods switched on, as notes (printed with the options)."""
    for name, m in choices["methods"].items():
        choices["notes"].append(f"{name.replace('_', ' ')}: {m['why']}")


def _periodic_columns(problem, info):
    """{column: harmonics} for the periodic variables (exact periodicity by embedding)."""
    if not info["is_box"]:
        return {}
    return {info["variables"].index(v): _HARMONICS for v in info["periodic"]}


def _even_columns(problem, info, periodic):
    """The periodic columns in which the problem is mirror symmetric with even parity
    about the period's centre (``symmetry.mirror_symmetries``): their embedding keeps the
    cosines only (``Embedded(even=...)``), so u is even there exactly, as it is periodic.
    Measured on Allen-Cahn (auto mode, 5 windows, seed 0, 180 s, 1 thread, quiet 2-core
    box): rel. L2 6.8e-5 -> 4.75e-5; per window 1.25e-4 / 1.4e-5 / 1.8e-5 / 2.7e-5 / 5.9e-5
    -> 1.07e-4 / 5.5e-6 / 8.8e-6 / 1.4e-5 / 2.2e-5: the first layer has 3 inputs instead
    of 5 (1080 parameters instead of 1620 at grid 20), so the windows take 160-200 LM steps
    instead of 97-133, and the two interfaces share their parameters. An odd parity is left to the fronts
    rule's ``Mirror`` (no cosine-only form: odd periodic functions are sin·f(cos))."""
    if not periodic:
        return ()
    return tuple(sorted(col for col, _centre, sign in _mirrors(problem, info) if col in periodic and sign > 0))


def _mirrors(problem, info):
    """The problem's mirror symmetries [[column, centre, sign], ...] (``symmetry``),
    probed once per plan and kept in ``info`` (so in ``Result.options["auto"]``)."""
    if "mirrors" not in info:
        from .symmetry import mirror_symmetries
        info["mirrors"] = [list(m) for m in mirror_symmetries(problem)]
    return info["mirrors"]


def _reaction(problem, info):
    """Whether the residual has a reaction nonlinear in u (``_nonlinear_reaction``),
    probed once per plan and kept in ``info``."""
    if "nonlinear_reaction" not in info:
        info["nonlinear_reaction"] = bool(info["time_dependent"] and _nonlinear_reaction(problem, info))
    return info["nonlinear_reaction"]


def _wrap(problem, model, info, choices, periodic, mirror=False, even=()):
    """The input embedding (periodic columns in ``even`` by cosines alone), the mirror
    symmetry (``mirror``: looked for) and the exact constraints that apply to this
    problem."""
    from ..transforms import Embedded, HardConstraint, hard_constraint_for
    from ..transforms.mirror import Mirror
    lo = [b[0] for b in info["box"]]
    hi = [b[1] for b in info["box"]]
    if periodic or not info["box_is_unit"]:
        model = Embedded(model, lo, hi, periodic, even)
        why = []
        if not info["box_is_unit"]:
            why.append("the box reaches outside [-1, 1]: inputs mapped affinely onto the grid range "
                       "(x in [0, 100] Poisson: rel. L2 0.95 -> 1.8e-3 after 10 LM steps, the same as on [0, 1])")
        if periodic:
            why.append(f"periodic in {info['periodic']}: cos/sin embedding with {_HARMONICS} harmonics makes "
                       "u and every derivative exactly periodic")
        if even:
            why.append(f"mirror symmetric (even) in {[info['variables'][j] for j in even]} about the period's centre "
                       "(probed): cosines only, so u is even exactly and the network learns half the period "
                       "(Allen-Cahn, 180 s: 6.8e-5 -> 4.75e-5)")
        choices["methods"]["embedding"] = {"periodic": {str(k): v for k, v in periodic.items()}, "why": "; ".join(why)}
        if even:
            choices["methods"]["embedding"]["even"] = [info["variables"][j] for j in even]
    # one mirror at most (each doubles the evaluations), on a column whose parity the
    # embedding has not made exact already
    sym = next((m for m in _mirrors(problem, info) if m[0] not in even), None) if mirror else None
    if sym is not None:
        # inside the constraint: u = g + D·N has the parity of g (D is even on a symmetric box)
        model = Mirror(model, *sym)
        choices["methods"]["mirror_symmetry"] = {
            "variable": info["variables"][sym[0]], "centre": sym[1], "parity": "odd" if sym[2] < 0 else "even",
            "why": "the problem is invariant under this reflection (residual, box and conditions, probed), so "
                   "its solution is too: made exact, a front on the mirror line cannot drift off it "
                   "(forward Burgers, 75 s: with RAD and knots 6.3e-2 -> 3.1e-4)"}
    built = hard_constraint_for(problem) if info["is_box"] else None
    if built is not None:
        factors, lifting, notes = built
        model = HardConstraint(model, factors, lifting)
        choices["methods"]["hard_constraints"] = {"enforced": notes[0], "notes": notes[1:],
                                                  "why": "u = g + D*N satisfies these conditions exactly: "
                                                         "the optimiser fits only the PDE"}
        choices["notes"].extend(notes[1:])      # what was not made exact, or how (printed)
    return model


def _steepening(problem, info):
    """Whether the problem can steepen into fronts (``fronts.steepening``)."""
    from .fronts import steepening
    return steepening(problem, info, reaction=_reaction(problem, info))


def _front_methods(options, choices):
    """Fronts: RAD resampling and first-layer knots that follow the solution (see
    ``solver/fronts.py`` for the measurements)."""
    from .fronts import GUARD_PER_STAGE, KNOTS_DAMPING, KNOTS_UNIFORM, RESAMPLE
    from .knots import VariationKnots
    _set(options, choices, "resample", dict(RESAMPLE),
         "a nonlinearity that steepens into fronts: points drawn where the residual is large every 5 steps, "
         "so the residual cannot hide between fixed points (Burgers, 75 s: dense-grid residual 41 -> 5.6e-5)")
    hooks = list(options.get("hooks") or ())
    if any(isinstance(h, VariationKnots) for h in hooks):
        choices["kept"]["variation_knots"] = "a VariationKnots hook given by the user"
        return
    from .guard import FreshPointGuard
    options["hooks"] = [VariationKnots(uniform=KNOTS_UNIFORM, damping=KNOTS_DAMPING)] + hooks + \
        [FreshPointGuard(per_stage=GUARD_PER_STAGE)]
    choices["methods"]["front_knots"] = {
        "uniform": KNOTS_UNIFORM,
        "why": "a nonlinearity that steepens into fronts: from the second grid on, first-layer knots gather "
               "where the solution varies (forward Burgers, 75 s, with RAD and the mirror: 1.7e-2 -> 3.1e-4)"}


def _time_methods(problem, info, options, choices):
    """Causal weighting for evolution equations (hooks are added to the user's)."""
    if not info["time_dependent"] or not info["initial"]:
        return                          # no initial condition (e.g. data everywhere): nothing to march from
    from .causal import CausalWeights
    if any(isinstance(h, CausalWeights) for h in options.get("hooks") or ()):
        choices["kept"]["causal_weighting"] = "a CausalWeights hook given by the user"
        return
    if info["time_order"] >= 2:
        # measured (quiet 2-core box, auto mode, 180 s budget): Wave1d-C 17.0 with causal
        # weighting against 3.1e-4 without; Klein-Gordon 2.3e-10 against 3.6e-10. Burgers
        # (first order) needs it: 6.6e-2 with, 0.55 without
        choices["notes"].append("no causal weighting: second order in time (it hurt the wave equation: "
                                "rel. L2 17 with it, 3.1e-4 without)")
        return
    hook = CausalWeights(chunks=16)
    options["hooks"] = list(options.get("hooks") or ()) + [hook]
    choices["methods"]["causal_weighting"] = {
        "chunks": hook.chunks, "levels": list(hook.levels),
        "why": "time-dependent: residuals of later times count once earlier times are fitted "
               "(Wang, Sankaran & Perdikaris 2022)"}


# time windows auto mode marches in (``marching.solve_windows``) where it pays: as many as
# max_time gives _MARCH_MIN_WINDOW_TIME each, at most _MARCH_WINDOWS, at least 2. Measured
# on Allen-Cahn, max_time 180 s counted in CPU seconds of one thread (what a quiet box
# gives; the shared box ran it in ~350 s of wall time), with the cached hand-over
# (transforms.windows.SliceOf): 3 windows 2.0e-4, 5 windows 9.9e-5; on the wall clock at
# load 3-5: 3 windows 2.3e-4, 4: 4.7e-4, 5: 1.5e-4, 6: 2.1e-4
_MARCH_WINDOWS = 5
# seconds each window needs at least: a window spends its first half on the coarse grids
# (5 and 10) and builds its accuracy on grid 20 (Allen-Cahn at 30 s: ~100 LM steps, grid 20)
_MARCH_MIN_WINDOW_TIME = 30.0
_MARCH_WHY = ("a reaction nonlinear in u amplifies errors over the horizon; windows solved one after "
              "another restart it from an accurate state. Measured, Allen-Cahn, max_time 180 s, 1 thread: "
              "6.7e-3 in one window, 7.1e-4 in 2, 2.0e-4 in 3, 9.9e-5 in 5; not on for "
              "transport (Burgers 7.3e-2 -> 0.10 / 0.14 in 2 / 3) nor second order in time (Wave1d-C 6.8e-6 "
              "-> 3.0e-5, Klein-Gordon 2.1e-12 -> 5.5e-10 in 2)")


def _time_marching(problem, info, options, choices):
    """Time-marching (``windows``) for equations first order in time with a nonlinear
    reaction, an initial condition to march from and nothing learned from data (see
    ``_MARCH_WHY``)."""
    if "windows" in options:
        choices["kept"]["windows"] = "set by the user"
        return
    if not info["time_dependent"] or not info["initial"] or info["inverse"] or info["data"] \
            or info["time_order"] != 1 or not _reaction(problem, info):
        return
    n = min(_MARCH_WINDOWS, int(float(options.get("max_time") or 0.0) // _MARCH_MIN_WINDOW_TIME))
    if n < 2:
        choices["notes"].append(f"no time-marching: max_time under {2 * _MARCH_MIN_WINDOW_TIME:g} s leaves two "
                                f"windows under {_MARCH_MIN_WINDOW_TIME:g} s each")
        return
    _set(options, choices, "windows", n, _MARCH_WHY)
    choices["methods"]["time_marching"] = {"windows": n, "why": _MARCH_WHY}


def _nonlinear_reaction(problem, info, n=64):
    """Whether the residual is nonlinear in u already for fields constant in space, u =
    c(t): a reaction term (Allen-Cahn's 5u³ - 5u), whose error growth over the horizon is
    what marching restarts. Transport (Burgers' u u_x) and diffusion vanish on such
    fields. Tested as R(u1 + u2) - R(u1) - R(u2) + R(0) on two functions of t, relative
    to their size (an affine R gives rounding); a residual the probe cannot drive counts
    as no."""
    import torch
    try:
        x = torch.as_tensor(problem.domain.sample_interior(n, "uniform", seed=7),
                            dtype=torch.float64).requires_grad_(True)
        t = x[:, -1:].expand(n, info["outputs"])
        phase = torch.arange(info["outputs"], dtype=torch.float64)

        def res(u):
            return torch.cat([r.reshape(n, -1) for r in problem.residual_terms(x, u)], 1).detach()
        u1, u2 = torch.sin(1.3 * t + 0.3 + phase), torch.cos(0.7 * t - 0.2 + phase)
        r1, r2, r12, r0 = (res(u) for u in (u1, u2, u1 + u2, 0.0 * t))
        scale = float(r1.abs().max() + r2.abs().max() + r0.abs().max()) + 1e-300
        return float((r12 - r1 - r2 + r0).abs().max()) > 1e-8 * scale
    except Exception:                   # noqa: BLE001 - a residual the probe cannot drive
        return False


def _inverse_methods(info, options, choices):
    """Unknown coefficients fitted to observations: first-layer knots that follow the
    solution's variation (``knots.VariationKnots``), two thirds of them gathering where
    the solution is steep. Measured on inverse Burgers (auto mode with continuation,
    max_time 180 s, one thread, shared 2-core box at load 3-6, one run per figure): ν off
    by 5.1 % (u rel. L2 3.4e-3) without; uniform share 1/2 (uniform=1): 0.08 %, 0.17 %,
    0.12 % (u 1.1e-3 .. 1.2e-3); uniform share 1/3 (uniform=0.5): 0.009 %, 0.017 % (u 1.9e-3,
    2.2e-3). ``inverse.DataFirst`` (data, then the coefficients alone, then both) is not
    switched on: 2.8 % alone, 0.25 % together with the knots (uniform=1)."""
    if not info["inverse"] or not info["data"]:
        return
    from .knots import VariationKnots
    hooks = list(options.get("hooks") or ())
    if any(isinstance(h, VariationKnots) for h in hooks):
        choices["kept"]["variation_knots"] = "a VariationKnots hook given by the user"
        return
    options["hooks"] = [VariationKnots(uniform=_INVERSE_UNIFORM)] + hooks
    choices["methods"]["variation_knots"] = {
        "uniform": _INVERSE_UNIFORM,
        "why": "unknown coefficients: from the second grid on, first-layer knots sit at the quantiles of "
               f"{_INVERSE_UNIFORM:g} + |du/dz|/mean, so steep fronts in the data get knots (inverse Burgers, "
               "180 s: ν off 5.1 % -> 0.009 % and 0.017 % in two runs; an LM fit of the Burgers solution, "
               "grids 5/10/20: 1.2e-3 -> 5.6e-4)"}


# the monitor's uniform part for inverse problems (a third of the knots stay uniform)
_INVERSE_UNIFORM = 0.5


def complete(problem, model, options: dict):
    """(model, options, choices) for ``kp.solve(problem, model)``: the options left unset
    get the best known defaults for this model."""
    _check_options(options)
    options = dict(options or {})
    info = classify(problem)
    choices = {"mode": "complete", "problem": info, "model": {"type": type(model).__name__, "given": True},
               "options": {}, "kept": {}, "notes": [], "methods": {}}
    is_kan = hasattr(model, "extend_grid") and hasattr(model, "update_grid")
    if is_kan:
        grid0 = int(getattr(model, "grid", 5))
        multiplies = any(m for _, m in getattr(model, "widths", ()))
        if multiplies and getattr(model, "k", 3) < 5 and "grids" not in options:
            # a cubic MultKAN's first grid must resolve each factor before the product is
            # found: default KAN([2, [0, 1], 1]) on sin(πx)sin(2πy), seeds 0-2: grids
            # 5/10/20 stalled at 0.14-0.19 (symbolify 0/5), 10/20/40 reached 2-4e-4
            grid0 *= 2
            choices["notes"].append(f"multiplication nodes with k < 5: the schedule starts at grid {grid0}, "
                                    "twice the model's, so each factor is resolved before the product is fitted")
        _schedule(info, options, choices, grid0)
        if multiplies:
            # restart rounds come with the starts auto mode chose (a caller that sets its own
            # starts, such as kp.discover, keeps one round unless it asks for restarts)
            own_starts = "starts" not in options
            # multiplication nodes: most single starts stop in a mixed local minimum
            # (heat_1d: 1 of 8 seeds reaches the separable solution; 16 starts: 7 of 8)
            _set(options, choices, "starts", 16, "a KAN with multiplication nodes has poor local minima "
                 "that other random starts avoid; the best of 16 short starts is trained")
            # the 20-step loss does not tell a mixed minimum from the separable solution
            # (Poisson-product: winners at 0.087 stalled, starts at 3-5 reached 3e-4) and
            # some seeds draw no good start (heat seed 8: 0 of 16); the stall shows at the
            # last grid refinement (loss drop 1-2x against 16x). Default KAN([2, [0, 1], 1]),
            # seeds 0-9: see docs/closed_forms.md
            if own_starts:
                _set(options, choices, "restarts", 2, "a mixed minimum shows as a loss that stops falling "
                     "when the grid is refined: then new starts are drawn and the lower final loss is kept")
    from ..transforms.wrapper import ModelWrapper
    if is_kan and not isinstance(model, ModelWrapper) and not info["box_is_unit"] \
            and getattr(model, "width_in", None) == info["dimension"]:
        from ..transforms import Embedded
        model = Embedded(model, [b[0] for b in info["box"]], [b[1] for b in info["box"]])
        choices["methods"]["embedding"] = {
            "why": "the box reaches outside [-1, 1]: the KAN sees it mapped affinely onto its grid "
                   "range (result.model.inner is the given KAN)"}
    _say_methods(choices)
    return model, options, choices


def _check_options(options):
    if not isinstance(options, dict):
        raise KanpinnError(f"auto mode takes the solve options as a dict, got {type(options).__name__}")
