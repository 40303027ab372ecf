"""Warm start of a time window: auto mode's plan for the window, with the network of the
previous window's trained model in place of the random one and the coarse grids skipped.

Why: each window of a march (``marching.solve_windows``) otherwise starts from a random
network on grid 5 and spends about half its time on grids 5 and 10 (Allen-Cahn, 5
windows in 180 s: every window stopped on grid 20). The models auto mode builds for the
windows see the same normalised coordinates (``Embedded`` maps each window's box onto
the grid range; the exact lifting u = u(a) + τ·N with τ = (t - a)/(b - a)), so the
previous window's network N, on its last grid and with its knots, is a start for the
next one, if N ≈ (u - u(a))/τ changes slowly from window to window. The window then starts
on that grid (the planned grids below it are dropped, the finer ones stay, appended ones
still only when they fit).

Measured, it does not pay, so ``marching.solve_windows`` has it off by default: Allen-Cahn
changes by 11-18 % of its norm over one of 5 windows, the copied N starts no closer than
N = 0 (PDE loss ~1 against 5-7 for a random start, which grids 5 and 10 beat in 20 cheap
steps), and a window on grid 20 throughout makes fewer, dearer steps (5 windows, 180 CPU
s: 7.95e-5 against 7.5e-5 cold; Fisher-KPP, 3 windows, 90 s: 6.3e-8 against 1.2e-8;
docs/hard_problems.md, "Session 8").

A warm start needs the same model structure in both windows (the wrappers and their
constraints, the network's widths, order and basis): otherwise the networks mean
different things (a soft initial condition makes N ≈ u, an exact one N ≈ (u - u(a))/τ)
and the window starts cold, with a note.
"""
from __future__ import annotations

import copy

from ..transforms.wrapper import innermost, wrappers

__all__ = ["warm_plan", "network", "structure"]


# the share of a warm window's time its first grid may take before the next (finer) grid
# is tried (when 10 of its steps fit in the rest). Measured with 0.5 (Allen-Cahn, 5
# windows, 180 CPU s): grid 40 fitted in one window of three, and a window where it did
# not fit stopped with half its time unused (Fisher-KPP, 90 s: 3.5e-8 against 1.2e-8
# cold); 1 keeps the first grid for the whole window (Allen-Cahn 7.95e-5 against 7.5e-5 cold)
WARM_SHARE = 1.0


def network(model):
    """(the network inside a model's wrappers, its parent wrapper or None)."""
    chain = wrappers(model)
    return innermost(model)[0], (chain[-1] if chain else None)


def _normalised(model):
    """Whether an input map (``Embedded``) puts each window's box on the same coordinates."""
    from ..transforms import Embedded
    return any(isinstance(w, Embedded) for w in wrappers(model))


def structure(model):
    """What must agree for one window's network to mean the same in the next: each
    wrapper's kind and settings (not its box or its time window) and the network's
    configuration without its grid sizes."""
    from ..transforms import Embedded, HardConstraint
    out = []
    for w in wrappers(model):
        if isinstance(w, HardConstraint):
            # a time factor's window differs; a spatial factor's box must not
            desc = [(c, kind, p) if kind == "low" else (c, a, b, kind, p) for c, a, b, kind, p in w.factors]
            lift = {k: v is not None for k, v in w._spec.items() if k in ("h", "u0", "v0")}
            out.append(("HardConstraint", tuple(desc), tuple(sorted(lift.items()))))
        elif isinstance(w, Embedded):
            out.append(("Embedded", tuple(sorted(w.periodic.items())), tuple(w.even)))
        else:
            cfg = w.config() if hasattr(w, "config") else {}
            out.append((type(w).__name__, repr({k: v for k, v in cfg.items() if k != "inner"})))
    net = innermost(model)[0]
    cfg = net.config() if hasattr(net, "config") else {}
    out.append((type(net).__name__, repr({k: v for k, v in cfg.items() if k != "grid"})))
    return tuple(out)


def warm_plan(problem, options, prev):
    """(model, options, choices) for ``kp.solve(problem, model, **options)``: auto mode's
    plan for this window with ``prev``'s trained network copied in and the grids below
    its grid dropped; or a string saying why the window must start cold."""
    from .auto import plan
    from .budget import StageBudget
    from .continuation import Continuation
    model, opts, choices = plan(problem, dict(options))
    src, _ = network(prev)
    dst, parent = network(model)
    if not _normalised(model):
        # a network that sees t itself has its grid on the previous window's interval
        return "the network sees the window's time unnormalised (no input map of the window's box)"
    if structure(prev) != structure(model):
        return "the previous window's model differs in structure (its network would mean something else here)"
    grids = list(opts.get("grids") or ())
    grid = getattr(src, "grid", None)
    if not grids or grid is None or not hasattr(src, "extend_grid"):
        return "the network has no grid schedule to continue"
    kept = [g for g in grids if g > grid]
    dropped = len(grids) - len(kept)
    new_grids = [int(grid)] + kept
    cont = choices["methods"].get("continuation")
    planned = cont["planned"] if cont else len(grids)
    planned_new = max(1, planned - dropped + 1)
    if cont:
        cont["planned"] = planned_new
        cont["extra_grids"] = new_grids[planned_new:]
    hooks, budget = [], None
    for h in opts.get("hooks") or ():
        if isinstance(h, Continuation):
            h = Continuation(h.max_time, planned_new, new_grids, min_steps=h.min_steps,
                             points_per_param=h.points_per_param, max_points=h.max_points,
                             max_params=h.max_params)
        elif isinstance(h, StageBudget):
            budget = h
            continue
        hooks.append(h)
    if budget is not None and planned_new >= 2:
        shares = list((choices["methods"].get("stage_budget") or {}).get("shares") or range(1, planned + 1))
        hooks.append(StageBudget(budget.max_time, shares[-planned_new:]))
    elif budget is not None and len(new_grids) > 1 and WARM_SHARE < 1:
        # one planned stage: it ends at its share of the window, and the next grid follows
        # when its steps fit in the rest (continuation)
        hooks.append(StageBudget(budget.max_time, [WARM_SHARE, 1 - WARM_SHARE]))
    opts["grids"] = new_grids
    last_planned = grids[planned - 1] if planned <= len(grids) else grids[-1]
    cont_hook = next((h for h in hooks if isinstance(h, Continuation)), None)
    if grid > last_planned and cont_hook is not None and cont_hook.points_per_param:
        # the previous window reached an appended grid, which trained on points growing with
        # its parameters; this window's first stage (a planned one) would keep n_interior:
        # measured, Allen-Cahn window 5 warm on grid 40 with 2000 points for ~2700
        # parameters: rel. L2 1.05e-3 against 7.8e-5 cold
        n_params = sum(p.numel() for p in src.parameters() if p.requires_grad)
        base = int(opts["n_interior"])
        opts["n_interior"] = int(max(base, min(cont_hook.max_points, round(cont_hook.points_per_param * n_params),
                                               2 * base)))
    if "steps" in choices["options"] and dropped > 1:
        # the first stage takes the steps of the planned stages it replaces: a warm window
        # has no coarse stages to spend them on, and stopping after one stage's steps left
        # a third of the window's time unused (Allen-Cahn: grid 40 did not fit in it)
        opts["steps"] = int(opts["steps"]) * dropped
        choices["options"]["steps"]["value"] = opts["steps"]
    if hooks:
        opts["hooks"] = hooks
    parent.inner = copy.deepcopy(src)
    choices["methods"]["warm_start"] = {
        "grid": int(grid), "grids": new_grids,
        "why": "the previous window's trained network, on its last grid, starts this window (the same "
               "normalised coordinates; the coarse grids are skipped)"}
    choices["notes"].append(f"warm start: {choices['methods']['warm_start']['why']}; grids {new_grids}")
    return model, opts, choices
