"""Auto mode's rule for evolution equations whose nonlinearity can steepen into fronts.

A residual first order in time that is nonlinear in u through its derivatives (transport,
Burgers' u·u_x), not through a reaction (Allen-Cahn's u³, which auto mode time-marches
instead), can form a front far narrower than the collocation spacing. A PINN trained on
fixed points then hides its residual between them (forward Burgers, auto mode before this
rule: training loss 2.7e-3, mean squared residual on a dense grid 5.0, rel. L2 7e-2 to
0.14), and the front it draws may sit beside the true one. Three methods together fix it
(measured, ``kp.solve(burgers_1d.problem, seed=0, max_time=75)``, 1 thread, load ~5):

===========================================  =========  ================
methods                                      rel. L2    dense mean res²
===========================================  =========  ================
none (auto mode before)                      7.3e-2     5.0
mirror only                                  0.14       41
mirror + RAD                                 1.7e-2     5.3e-3
mirror + knots                               0.66       84
RAD + knots                                  6.3e-2     7.7e-2
mirror + RAD + knots                         3.1e-4     5.6e-5
===========================================  =========  ================

With ``max_time=180`` (auto mode, 1 thread, load 1.6-3.5; knots from the mirror's part of
the network, ``knots._mirror_between``): rel. L2 3e-4 .. 9e-3 over seeds 0/1 and the
day's builds (the path decides), reached on grid 20, where finer grids broke in their
first LM steps. With LM's holdout (``FreshPointGuard`` hands LM the loss on its fresh
points; a step that triples it is refused), quiet box: seed 0 8.0e-5 (grids 20 and 40
trained; grid 80 broke at its start and was undone), seed 1 1.7e-3 (grid 40 broke at its
start); docs/hard_problems.md, "Forward Burgers: fronts".

- RAD resampling every 5 steps (``hooks.Resample``, Wu et al. 2023): fresh points drawn
  where the residual is large, so the loss is the PDE's, not the points';
- first-layer knots that follow the solution (``knots.VariationKnots``, a third of them
  uniform): the front gets knots;
- the problem's mirror symmetry made exact (``transforms.Mirror``, found by
  ``symmetry.mirror_symmetries``): a front the symmetry puts on the mirror line stays
  there, so the knots gather at the right place.

The fresh-point guard (``guard.FreshPointGuard``) judges a blow-up per stage: each grid
stage starts with a refit (grid update, knots moved) that raises the loss on fresh points
10³-10⁴-fold before any step (measured: grid 10 -> 20 on a travelling shock, 5.2e-5 ->
0.21 from the grid update alone, 0.29 with the knots), and the run-wide rule stopped the
run 5 steps later. Per stage, LM trains it down: the travelling shock of
``problems/burgers_moving_shock.py`` (ν = 0.02, no mirror), 120 s: 4.4e-4 -> 2.5e-5;
forward Burgers on the tree of 08:45 UTC, 180 s, 1 thread, load 3.6-5.4: seed 0 8.2e-4
(guard stop 5 steps into grid 40) -> 1.2e-4 and 2.5e-4 (two runs), seed 1 7.4e-5.
Shocks that form and move without a symmetry (u0 = -sin πx + ½ sin²πx) are not solved:
rel. L2 ~0.2, wrong already at t = 0.1 (docs/hard_problems.md, "Shocks that move").
"""
from __future__ import annotations

import torch

__all__ = ["steepening", "RESAMPLE", "KNOTS_UNIFORM"]

# RAD every 5 LM steps (session 6: every 20 let the residual hide between points again)
RESAMPLE = {"every": 5, "mode": "rad"}
# the monitor's uniform part (a third of the knots uniform), as for inverse problems
KNOTS_UNIFORM = 0.5
# LM's damping at the start of each stage whose knots moved (knots.VariationKnots)
KNOTS_DAMPING = 1.0
# the fresh-point guard judges a blow-up against the lowest loss since the stage started:
# the stage start's own refit raises that loss 10^3-10^4-fold and LM trains it down
# (travelling Burgers front, nu = 0.02, 120 s: stopped 5 steps into grid 20 at 4.4e-4;
# per stage: grids 20 and 40 trained, 2.5e-5)
GUARD_PER_STAGE = True


def steepening(problem, info, reaction, n=64):
    """Whether auto mode treats ``problem`` as one that can steepen into fronts: first
    order in time, an initial condition, nothing learned from data, no reaction
    (``reaction``: auto mode's probe for a residual nonlinear in u on fields constant in
    space), and a residual nonlinear in u on fields varying in space and time. Probed as
    R(u1 + u2) - R(u1) - R(u2) + R(0) against rounding; a residual the probe cannot drive
    counts as no."""
    if not info["time_dependent"] or not info["initial"] or info["inverse"] or info["data"] \
            or info["time_order"] != 1 or info["outputs"] != 1 or reaction:
        return False
    try:
        x = torch.as_tensor(problem.domain.sample_interior(n, "uniform", seed=7), dtype=torch.float64)
        x = x.requires_grad_(True)
        s = x.sum(1, keepdim=True)
        u1 = torch.sin(1.3 * s + 0.3 * x[:, :1] + 0.3)
        u2 = torch.cos(0.7 * s - 1.1 * x[:, -1:] - 0.2)

        def res(u):
            return torch.cat([r.reshape(n, -1) for r in problem.residual_terms(x, u)], 1).detach()
        r1, r2, r12, r0 = (res(u) for u in (u1, u2, u1 + u2, 0.0 * u1))
        scale = float(r1.abs().max() + r2.abs().max() + r0.abs().max()) + 1e-300
        return float((r12 - r1 - r2 + r0).abs().max()) > 1e-8 * scale
    except Exception:                   # noqa: BLE001 - a residual the probe cannot drive
        return False
