"""A kink of the initial value at a periodic seam, carried in closed form.

A user writes a periodic problem's initial value u0 on [lo, hi]. When u0(lo) = u0(hi)
but u0'(lo) != u0'(hi) (Allen-Cahn's x² cos(πx): u0' = ±2 at x = ∓1), the periodic
extension has a corner at the seam, and a parabolic equation rounds it off over a layer
of width σ = sqrt(2ε(t - t0)): sharp at first (0.001 at t = 0.005 for ε = 1e-4), with
u - u(seam) growing like sqrt(t) there. No smooth network represents that layer: on
Allen-Cahn the two seam points x = ±1 of the test grid held 91 % of the squared error
of the whole solve, and the first time window's error was 1.5e-4 with its rest at
6.5e-6.

The remedy is singularity subtraction, as in finite elements for corner singularities:
the corner's own evolution under the equation linearised at the seam,

    u_t = ε u_xx - v u_x - λ u      (ε, v, λ read off the residual at the seam, t = t0)

is known in closed form. For u0 = A|δ| near the seam (δ the distance to it), it is

    E(x, t) = A e^{-λτ} S(w, σ),  τ = t - t0,  σ = sqrt(2ετ),
    S(w, σ) = w + σ sqrt(2/π) e^{-w²/2σ²} - w erfc(w / (σ sqrt 2)),

the heat kernel's smoothing of |w| (S -> |w| as σ -> 0), with w = (L/π) sin(π(x - vτ - lo)/L)
a smooth stand-in for the distance to the (moving) seam: w ≈ δ next to it, and S(w) is
even in w, so E is periodic and smooth for τ > 0 and equals A·w at t0 (w >= 0 on [lo, hi]).
The hard constraint's lifting then carries E (``Lifting(singular=...)``):

    u = E(x, t) + [u0 - E](x, t0) + τ·N(x, t),

and u0 - A·w has a periodic derivative, so the initial condition is exact and the network
represents a smooth remainder. On Allen-Cahn (auto mode, 180 s) this took the total from
4.8e-5 to 8.5e-6 (first window 1.5e-4 -> 2.9e-6).

``seam_kinks_for`` finds the kinks and reads ε, v, λ off the residual by differentiating it
with respect to the coefficients of a probe field at the seam (the linearisation about
u0's value and mean slope there). The coefficients are those at t0: later changes of
the state at the seam (a drifting u(seam)) are the network's to absorb. Where the
residual is not parabolic along the periodic variable (no u_t, or no diffusion), where
the amplitude or the coefficients vary along the seam, or for systems, nothing is built
and the caller keeps the initial condition in the loss, as before.
"""
from __future__ import annotations

import math

import torch

from ..errors import KanpinnError

__all__ = ["SeamKink", "seam_kinks_for", "seam_kinks_from_spec"]

_SQRT_2_PI = math.sqrt(2.0 / math.pi)


class SeamKink:
    """E(x, t) above for periodic column ``col`` of period [lo, hi], time column ``t_col``
    starting at ``t0``: ``amplitude`` A, ``diffusion`` ε > 0, ``decay`` λ, ``speed`` v.
    Only floats: JSON-safe (``spec``), so a model carrying it saves and loads whole."""

    def __init__(self, col, lo, hi, t_col, t0, amplitude, diffusion, decay=0.0, speed=0.0):
        self.col, self.t_col = int(col), int(t_col)
        self.lo, self.hi, self.t0 = float(lo), float(hi), float(t0)
        self.amplitude, self.diffusion = float(amplitude), float(diffusion)
        self.decay, self.speed = float(decay), float(speed)
        if not self.hi > self.lo:
            raise KanpinnError(f"SeamKink: need lo < hi, got [{self.lo}, {self.hi}]")
        if not self.diffusion > 0:
            raise KanpinnError(f"SeamKink: the diffusion coefficient must be positive, got {self.diffusion}")
        if not all(math.isfinite(v) for v in (self.amplitude, self.decay, self.speed, self.t0)):
            raise KanpinnError("SeamKink: amplitude, decay, speed and t0 must be finite")

    def __call__(self, x):
        """E at x (N, d) -> (N, 1), differentiable in x to any order."""
        period = self.hi - self.lo
        tau = x[:, self.t_col:self.t_col + 1] - self.t0
        w = (period / math.pi) * torch.sin(math.pi * (x[:, self.col:self.col + 1] - self.speed * tau - self.lo)
                                           / period)
        # σ = 0 at t0 exactly: E = A·w there; the safe branch keeps autograd finite (a
        # where() whose other branch divides by zero would still send NaN backwards)
        later = tau > 0
        sig = torch.sqrt(2.0 * self.diffusion * torch.where(later, tau, torch.ones_like(tau)))
        rounding = sig * _SQRT_2_PI * torch.exp(-(w * w) / (2.0 * sig * sig)) \
            - w * torch.erfc(w / (sig * math.sqrt(2.0)))
        rounding = torch.where(later, rounding, torch.zeros_like(rounding))
        return self.amplitude * torch.exp(-self.decay * tau) * (w + rounding)

    def spec(self):
        return {"type": "SeamKink", "col": self.col, "lo": self.lo, "hi": self.hi, "t_col": self.t_col,
                "t0": self.t0, "amplitude": self.amplitude, "diffusion": self.diffusion,
                "decay": self.decay, "speed": self.speed}

    def __repr__(self):
        return (f"SeamKink(col={self.col}, period=[{self.lo:g}, {self.hi:g}], A={self.amplitude:.6g}, "
                f"ε={self.diffusion:.6g}, λ={self.decay:.6g}, v={self.speed:.6g}, t0={self.t0:g})")


def seam_kinks_from_spec(specs):
    """The kinks a lifting spec lists (None or [] -> [])."""
    out = []
    for s in specs or ():
        if not isinstance(s, dict) or s.get("type") != "SeamKink":
            raise KanpinnError(f"a lifting's singular part must be a SeamKink spec, got {s!r}")
        out.append(SeamKink(*(s[k] for k in ("col", "lo", "hi", "t_col", "t0", "amplitude", "diffusion")),
                            decay=s.get("decay", 0.0), speed=s.get("speed", 0.0)))
    return out


def _one_sided(u0, x, col):
    """u0 and ∂u0/∂x_col at x (N, d) by autograd on the user's function."""
    from .constraint import _call
    with torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        val = _call(u0, xr, "initial value")
        if val.shape[1] != 1:
            return None, None
        (g,) = torch.autograd.grad(val.sum(), xr, allow_unused=True)
    g = torch.zeros_like(xr) if g is None else g
    return val.detach(), g[:, col:col + 1].detach()


def _coefficients(problem, x, col, t_col, value, slope):
    """Per point, ∂R/∂(u, u_t, u_x, u_xx) along ``col`` at x (on the seam, t = t0) for the
    probe field u = value + slope·δ (+ zero perturbations), δ = x_col - x_col(seam)."""
    n = x.shape[0]
    with torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        p = [torch.zeros(n, 1, dtype=x.dtype, requires_grad=True) for _ in range(4)]
        delta = xr[:, col:col + 1] - x[:, col:col + 1]
        tau = xr[:, t_col:t_col + 1] - x[:, t_col:t_col + 1]
        u = value + slope * delta + p[0] + p[1] * tau + p[2] * delta + p[3] * delta * delta / 2
        terms = problem.residual_terms(xr, u)
        if len(terms) != 1 or terms[0].shape != (n, 1):
            return None
        grads = torch.autograd.grad(terms[0].sum(), p, allow_unused=True)
    return [torch.zeros(n, 1, dtype=x.dtype) if g is None else g.detach() for g in grads]


def _agree(a, scale):
    return float((a - a.mean()).abs().max()) <= 1e-6 * scale


def seam_kinks_for(problem, u0, periodic, t_col, t0, n_check=16):
    """([SeamKink ...], note) for the periodic columns where u0 is periodic in value but
    not in its derivative, or ([], why) when none can be built (see the module doc).
    ``u0``: the initial value (callable); ``periodic``: the periodic column indices."""
    if not callable(u0):
        return [], "the initial value is a constant"
    dom = problem.domain
    dtype = torch.float64
    kinks, said = [], []
    for col in periodic:
        lo, hi = float(dom.lo[col]), float(dom.hi[col])
        x = torch.as_tensor(dom.sample_interior(n_check, "uniform", seed=3), dtype=dtype)
        x[:, t_col] = float(t0)
        x_lo, x_hi = x.clone(), x.clone()
        x_lo[:, col], x_hi[:, col] = lo, hi
        try:
            v_lo, s_lo = _one_sided(u0, x_lo, col)
            v_hi, s_hi = _one_sided(u0, x_hi, col)
        except Exception as e:                     # noqa: BLE001 - a function autograd cannot drive
            return [], f"the initial value could not be differentiated at the seam ({type(e).__name__})"
        if v_lo is None:
            return [], "the initial value has several components"
        scale = max(1.0, float(v_lo.abs().max()), float(s_lo.abs().max()), float(s_hi.abs().max()))
        if float((v_lo - v_hi).abs().max()) > 1e-8 * scale:
            return [], f"the initial value jumps at the seam of {dom.variables[col]}"
        amp = (s_lo - s_hi) / 2
        if float(amp.abs().max()) <= 1e-6 * scale:
            continue                                # no kink in this column
        name = dom.variables[col]
        if not _agree(amp, scale):
            return [], f"the kink of the initial value at the seam of {name} varies along the seam"
        try:
            coef = _coefficients(problem, x_lo, col, t_col, v_lo, (s_lo + s_hi) / 2)
        except Exception as e:                     # noqa: BLE001 - a residual the probe cannot drive
            return [], f"the residual could not be linearised at the seam ({type(e).__name__}: {e})"
        if coef is None:
            return [], "the residual is not a single scalar equation"
        a0, at, a1, a2 = coef
        cscale = float(max(c.abs().max() for c in coef))
        if not all(_agree(c, cscale) for c in coef):
            return [], f"the residual's coefficients vary along the seam of {name}"
        at_, a0_, a1_, a2_ = (float(c.mean()) for c in (at, a0, a1, a2))
        if abs(at_) <= 1e-12 * cscale:
            return [], "the residual has no u_t term at the seam (not parabolic)"
        eps = -a2_ / at_
        if not eps > 1e-12 * max(1.0, (hi - lo) ** 2):
            return [], f"the residual does not diffuse along {name} at the seam (coefficient {eps:.3g})"
        kink = SeamKink(col, lo, hi, t_col, t0, float(amp.mean()), eps, decay=a0_ / at_, speed=a1_ / at_)
        kinks.append(kink)
        said.append(f"{name}: u0' jumps by {2 * kink.amplitude:.4g}; ε = {eps:.4g}, λ = {kink.decay:.4g}, "
                    f"v = {kink.speed:.4g}")
    if not kinks:
        return [], "no kink at a seam"
    return kinks, ("the initial value has a kink at the periodic seam (" + "; ".join(said) +
                   "): its smoothing under the equation linearised there is carried in closed form, "
                   "and the initial condition is exact")

