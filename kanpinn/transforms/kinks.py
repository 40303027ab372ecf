"""Kinks of the initial value carried in closed form (singularity subtraction).

A parabolic equation smooths a corner of its initial value u0 over a layer of width
σ = sqrt(2ε(t - t0)): sharp at first (0.001 at t = 0.005 for ε = 1e-4), with u growing
like sqrt(t) at the corner. No smooth network represents that layer, and an exact
initial condition u = u0 + τ·N keeps the corner for all t (N is smooth). Two places
where users write such corners:

- at a periodic seam: u0 periodic in value but not in its derivative (Allen-Cahn's
  x² cos(πx): u0' = ±2 at x = ∓1). On Allen-Cahn the two seam columns of the test grid
  held 91 % of the squared error of the whole solve (first window 1.5e-4; 6.5e-6 without
  the seam column);
- inside the interval: a hat or tent (heat from u0 = 1 - |x|: auto mode 2.8e-2 in 60 s).

The remedy is the one finite elements use for corner singularities: the corner's own
evolution under the equation linearised there,

    u_t = ε u_xx - v u_x - λ u      (ε, v, λ read off the residual at the corner, t = t0)

is known in closed form. For u0 = A|δ| near the corner (δ the distance to it) it is

    E(x, t) = A e^{-λτ} S(w, σ) χ(x),  τ = t - t0,  σ = sqrt(2ετ),
    S(w, σ) = w + σ sqrt(2/π) e^{-w²/2σ²} - w erfc(w / (σ sqrt 2)),

the heat kernel's smoothing of |w| (S -> |w| as σ -> 0), w the distance to the moving
corner c + vτ, and χ a smooth weight equal to 1 (with zero slope) at the corner:
- at a periodic seam (``SeamKink``): w = (L/π) sin(π(x - vτ - lo)/L), a smooth periodic
  stand-in for the distance (w >= 0 on [lo, hi], so E = A·w at t0 with each face's
  one-sided slope), χ = 1: E is periodic and smooth for τ > 0;
- inside [lo, hi] (``InteriorKink``, one space variable): w = x - c - vτ and χ the cubic
  with χ(c) = 1, χ'(c) = 0, χ(lo) = χ(hi) = 0, so E(·, t) - E(·, t0) vanishes on the
  boundary and Dirichlet conditions stay exact.

The wave equation does not smooth a corner but moves it: for u_tt = c² u_xx between exact
walls, ``WaveKink`` carries d'Alembert's solution with the walls' images instead (the
plucked string, tent plus sine, 60 CPU s: 0.999 -> 5.7e-7).

The hard constraint's lifting carries E (``Lifting(singular=...)``):
u = E(x, t) + [u0 - E](x, t0) + τ·N(x, t); u0 - E(·, t0) has no corner left, the initial
condition is exact and the network represents a smooth remainder.

Measured (auto mode, seed 0): Allen-Cahn (180 s) 4.8e-5 -> 1.0e-5; heat from a hat
(60 CPU s) 2.8e-2 -> 1.3e-6; advection-diffusion, 2-D heat
and Fisher-KPP from kinked periodic data 7.8e-4 / 1.4e-3 / 2.2e-4 -> 2.2e-6 / 9.3e-6 / 7.7e-7.

``seam_kinks_for`` and ``interior_kinks_for`` find the corners (autograd on the user's
u0) and read ε, v, λ off the residual, by differentiating it with respect to the
coefficients of a probe field at the corner (the linearisation about u0's value and mean
slope there). The coefficients are those at t0: a state that drifts later is the
network's to absorb. Where the residual is not parabolic (no u_t, no diffusion), where
u0 jumps, where the amplitude or the coefficients vary along a seam, or for systems,
nothing is built and the caller keeps what it did before.
"""
from __future__ import annotations

import math

import torch

from ..errors import KanpinnError

__all__ = ["SeamKink", "InteriorKink", "WaveKink", "seam_kinks_for", "interior_kinks_for", "kinks_from_spec"]

_SQRT_2_PI = math.sqrt(2.0 / math.pi)
_FIELDS = ("col", "lo", "hi", "t_col", "t0", "amplitude", "diffusion")


class SeamKink:
    """E(x, t) above for periodic column ``col`` of period [lo, hi], time column ``t_col``
    starting at ``t0``: ``amplitude`` A, ``diffusion`` ε > 0, ``decay`` λ, ``speed`` v.
    Only floats: JSON-safe (``spec``), so a model carrying it saves and loads whole."""

    kind = "SeamKink"

    def __init__(self, col, lo, hi, t_col, t0, amplitude, diffusion, decay=0.0, speed=0.0):
        self.col, self.t_col = int(col), int(t_col)
        self.lo, self.hi, self.t0 = float(lo), float(hi), float(t0)
        self.amplitude, self.diffusion = float(amplitude), float(diffusion)
        self.decay, self.speed = float(decay), float(speed)
        if not self.hi > self.lo:
            raise KanpinnError(f"{self.kind}: need lo < hi, got [{self.lo}, {self.hi}]")
        if not self.diffusion > 0:
            raise KanpinnError(f"{self.kind}: the diffusion coefficient must be positive, got {self.diffusion}")
        if not all(math.isfinite(v) for v in (self.amplitude, self.decay, self.speed, self.t0)):
            raise KanpinnError(f"{self.kind}: amplitude, decay, speed and t0 must be finite")

    def _distance(self, xc, tau):
        """w (the signed distance stand-in) and |w| at t0 with each face's one-sided
        slope: w >= 0 on [lo, hi], so |w| = w there."""
        period = self.hi - self.lo
        w = (period / math.pi) * torch.sin(math.pi * (xc - self.speed * tau - self.lo) / period)
        return w, w

    def _weight(self, xc):
        return None

    def __call__(self, x):
        """E at x (N, d) -> (N, 1), differentiable in x to any order."""
        tau = x[:, self.t_col:self.t_col + 1] - self.t0
        xc = x[:, self.col:self.col + 1]
        w, at_start = self._distance(xc, tau)
        # σ = 0 at t0 exactly: E = A|w| there; the safe branch keeps autograd finite (a
        # where() whose other branch divides by zero would still send NaN backwards)
        later = tau > 0
        sig = torch.sqrt(2.0 * self.diffusion * torch.where(later, tau, torch.ones_like(tau)))
        smooth = w + sig * _SQRT_2_PI * torch.exp(-(w * w) / (2.0 * sig * sig)) \
            - w * torch.erfc(w / (sig * math.sqrt(2.0)))
        out = self.amplitude * torch.exp(-self.decay * tau) * torch.where(later, smooth, at_start)
        chi = self._weight(xc)
        return out if chi is None else out * chi

    def spec(self):
        return {"type": self.kind, **{k: getattr(self, k) for k in _FIELDS},
                "decay": self.decay, "speed": self.speed}

    def __repr__(self):
        return (f"{self.kind}(col={self.col}, [{self.lo:g}, {self.hi:g}], A={self.amplitude:.6g}, "
                f"ε={self.diffusion:.6g}, λ={self.decay:.6g}, v={self.speed:.6g}, t0={self.t0:g})")


class InteriorKink(SeamKink):
    """A corner of u0 at x_col = ``centre`` inside [lo, hi] (a variable that is not
    periodic): w = x - centre - vτ, weighted by the cubic χ with χ(centre) = 1,
    χ'(centre) = 0 and χ(lo) = χ(hi) = 0, so E(·, t) - E(·, t0) vanishes on the
    boundary (Dirichlet conditions stay exact) and u0 - E(·, t0) keeps its first two
    derivatives continuous at the corner (a moving corner, v != 0, leaves χ's slope
    behind: the remainder is then C¹ there)."""

    kind = "InteriorKink"

    def __init__(self, col, lo, hi, t_col, t0, amplitude, diffusion, decay=0.0, speed=0.0, centre=0.0):
        super().__init__(col, lo, hi, t_col, t0, amplitude, diffusion, decay, speed)
        self.centre = float(centre)
        if not self.lo < self.centre < self.hi:
            raise KanpinnError(f"InteriorKink: the corner {self.centre} must lie inside ({self.lo}, {self.hi})")

    def _distance(self, xc, tau):
        w = xc - self.centre - self.speed * tau
        return w, (xc - self.centre).abs()

    def _weight(self, xc):
        a, b, c = self.lo, self.hi, self.centre
        q = (xc - a) * (b - xc) / ((c - a) * (b - c))
        slope = (b - c - (c - a)) / ((c - a) * (b - c))          # q'(c); χ = q·(1 - q'(c)(x - c))
        return q * (1.0 - slope * (xc - c))

    def spec(self):
        return {**super().spec(), "centre": self.centre}


class WaveKink(InteriorKink):
    """A corner of u0 at ``centre`` under u_tt = c² u_xx between walls where u is given
    (Dirichlet, exact): the wave equation moves a corner instead of smoothing it, so E is
    d'Alembert's solution ½[K(x - cτ) + K(x + cτ)] (c = ``speed``, u_t(t0) = 0) with K the
    odd 2L-periodic extension (the walls' images) of A(|x - centre| - ℓ(x)), ℓ the line
    through the corner function's values at the walls, so K vanishes there. E solves the
    wave equation exactly, is zero on the walls for all t, E(·, t0) = A|x - centre| - Aℓ
    and E_t(·, t0) = 0: the remainder starts smooth and stays smooth. ``diffusion`` is
    unused (kept 1 in the spec)."""

    kind = "WaveKink"

    def __init__(self, col, lo, hi, t_col, t0, amplitude, diffusion=1.0, decay=0.0, speed=1.0, centre=0.0):
        super().__init__(col, lo, hi, t_col, t0, amplitude, 1.0, 0.0, speed, centre)
        if not self.speed > 0:
            raise KanpinnError(f"WaveKink: the wave speed must be positive, got {self.speed}")

    def _profile(self, y):
        a, b, c = self.lo, self.hi, self.centre
        period = 2.0 * (b - a)
        s = torch.remainder(y - a, period)                         # [0, 2L)
        back = s > (b - a)
        z = a + torch.where(back, period - s, s)                   # the point in [a, b] it images
        line = (c - a) + (z - a) * ((b - c) - (c - a)) / (b - a)    # ℓ: |a - c| at a, |b - c| at b
        f = self.amplitude * ((z - c).abs() - line)
        return torch.where(back, -f, f)

    def __call__(self, x):
        tau = x[:, self.t_col:self.t_col + 1] - self.t0
        xc = x[:, self.col:self.col + 1]
        return 0.5 * (self._profile(xc - self.speed * tau) + self._profile(xc + self.speed * tau))

    def __repr__(self):
        return (f"WaveKink(col={self.col}, [{self.lo:g}, {self.hi:g}], A={self.amplitude:.6g}, "
                f"c={self.speed:.6g}, centre={self.centre:.6g}, t0={self.t0:g})")


def kinks_from_spec(specs):
    """The kinks a lifting spec lists (None or [] -> [])."""
    out = []
    for s in specs or ():
        cls = _KINDS.get(s.get("type")) if isinstance(s, dict) else None
        if cls is None:
            raise KanpinnError(f"a lifting's singular part must be a {', '.join(_KINDS)} spec, got {s!r}")
        extra = {} if cls is SeamKink else {"centre": s["centre"]}
        out.append(cls(*(s[k] for k in _FIELDS), decay=s.get("decay", 0.0), speed=s.get("speed", 0.0), **extra))
    return out


_KINDS = {cls.kind: cls for cls in (SeamKink, InteriorKink, WaveKink)}


def _derivative(u0, x, col):
    """u0 and ∂u0/∂x_col at x (N, d) by autograd on the user's function (None, None for
    several components)."""
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
    """Per point, ∂R/∂(u, u_t, u_x, u_xx, u_tt) along ``col`` at x (on the corner, t = t0) for the
    probe field u = value + slope·δ (+ zero perturbations), δ = x_col - x_col(corner)."""
    n = x.shape[0]
    with torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        p = [torch.zeros(n, 1, dtype=x.dtype, requires_grad=True) for _ in range(5)]
        delta = xr[:, col:col + 1] - x[:, col:col + 1]
        tau = xr[:, t_col:t_col + 1] - x[:, t_col:t_col + 1]
        u = value + slope * delta + p[0] + p[1] * tau + p[2] * delta + p[3] * delta * delta / 2 + p[4] * tau * tau / 2
        terms = problem.residual_terms(xr, u)
        if len(terms) != 1 or terms[0].shape != (n, 1):
            return None
        grads = torch.autograd.grad(terms[0].sum(), p, allow_unused=True)
    return [torch.zeros(n, 1, dtype=x.dtype) if g is None else g.detach() for g in grads]


def _agree(a, scale):
    return float((a - a.mean()).abs().max()) <= 1e-6 * scale


def _linearised(problem, x, col, t_col, value, slope, name, wave=False):
    """(ε, λ, v) of the residual linearised at the corner points x (all agreeing), or a
    string saying why not; with ``wave``, the speed c of a residual whose linear part at
    the corner is u_tt - c² u_xx alone (a float)."""
    try:
        coef = _coefficients(problem, x, col, t_col, value, slope)
    except Exception as e:                         # noqa: BLE001 - a residual the probe cannot drive
        return f"the residual could not be linearised at the corner ({type(e).__name__}: {e})"
    if coef is None:
        return "the residual is not a single scalar equation"
    cscale = float(max(c.abs().max() for c in coef))
    if not all(_agree(c, cscale) for c in coef):
        return f"the residual's coefficients vary along the seam of {name}"
    a0_, at_, a1_, a2_, att_ = (float(c.mean()) for c in coef)
    if wave:
        small = [abs(a) <= 1e-12 * cscale for a in (a0_, at_, a1_, att_)]
        if small[3] or not all(small[:3]) or not -a2_ / att_ > 0:
            return "the residual is not u_tt - c² u_xx at the corner"
        return math.sqrt(-a2_ / att_)
    if abs(at_) <= 1e-12 * cscale:
        return "the residual has no u_t term at the corner (not parabolic)"
    eps = -a2_ / at_
    lo, hi = float(problem.domain.lo[col]), float(problem.domain.hi[col])
    if not eps > 1e-12 * max(1.0, (hi - lo) ** 2):
        return f"the residual does not diffuse along {name} at the corner (coefficient {eps:.3g})"
    return eps, a0_ / at_, a1_ / at_


def _said(name, kink, where=""):
    return (f"{name}{where}: u0' jumps by {2 * kink.amplitude:.4g}; ε = {kink.diffusion:.4g}, "
            f"λ = {kink.decay:.4g}, v = {kink.speed:.4g}")


def seam_kinks_for(problem, u0, periodic, t_col, t0, n_check=16):
    """([SeamKink ...], note) for the periodic columns where u0 is periodic in value but
    not in its derivative, or ([], why) when none can be built (see the module doc).
    ``u0``: the initial value (callable); ``periodic``: the periodic column indices."""
    if not callable(u0):
        return [], "the initial value is a constant"
    dom = problem.domain
    kinks, said = [], []
    for col in periodic:
        lo, hi = float(dom.lo[col]), float(dom.hi[col])
        x = torch.as_tensor(dom.sample_interior(n_check, "uniform", seed=3), dtype=torch.float64)
        x[:, t_col] = float(t0)
        x_lo, x_hi = x.clone(), x.clone()
        x_lo[:, col], x_hi[:, col] = lo, hi
        try:
            v_lo, s_lo = _derivative(u0, x_lo, col)
            v_hi, s_hi = _derivative(u0, x_hi, col)
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
        got = _linearised(problem, x_lo, col, t_col, v_lo, (s_lo + s_hi) / 2, name)
        if isinstance(got, str):
            return [], got
        eps, decay, speed = got
        kinks.append(SeamKink(col, lo, hi, t_col, t0, float(amp.mean()), eps, decay=decay, speed=speed))
        said.append(_said(name, kinks[-1]))
    if not kinks:
        return [], "no kink at a seam"
    return kinks, ("the initial value has a kink at the periodic seam (" + "; ".join(said) +
                   "): its smoothing under the equation linearised there is carried in closed form, "
                   "and the initial condition is exact")


# corners looked for on this many points of the interval (at an irrational offset, so that
# no grid point falls on a corner a user writes at a round number), at most this many kept
_SCAN_POINTS, _MAX_KINKS = 4001, 8


def _corners(u0, x0, col, lo, hi):
    """[(centre, amplitude)] of u0's corners along column ``col`` inside (lo, hi) at the
    point x0 (1, d), or a string when u0 jumps. A corner is a jump of u0' between two scan
    points that bisection narrows to rounding while the jump stays (a smooth u0' changes
    in proportion to the gap)."""
    n = _SCAN_POINTS
    h = (hi - lo) / n
    s = lo + h * (torch.arange(n, dtype=torch.float64) + (math.sqrt(5.0) - 1.0) / 2.0)
    x = x0.repeat(n, 1)
    x[:, col] = s
    val, g = _derivative(u0, x, col)
    val, g = val[:, 0], g[:, 0]
    scale = max(1.0, float(val.abs().max()), float(g.abs().max()))
    dv, dg = val.diff(), g.diff()
    if float((dv.abs() - (g[1:].abs() + g[:-1].abs()) * h).max()) > 1e-3 * scale:
        return "the initial value jumps inside the interval"
    # a corner is an isolated spike of the slope's steps (a smooth slope changes by about
    # as much between neighbouring gaps): only spikes are bisected
    step = dg.abs()
    nearby = torch.maximum(torch.cat([step[1:], step[-1:]]), torch.cat([step[:1], step[:-1]]))
    big = torch.nonzero((step > 1e-6 * scale) & (step > 4.0 * nearby)).ravel().tolist()

    def slope(at):
        xa = x0.clone()
        xa[0, col] = at
        return float(_derivative(u0, xa, col)[1])

    found = []
    for i in big:
        a, b = float(s[i]), float(s[i + 1])
        ga, gb = slope(a), slope(b)
        for _ in range(64):                         # bisection: keep the half holding the jump
            m = 0.5 * (a + b)
            gm = slope(m)
            if abs(gm - ga) > abs(gb - gm):
                b, gb = m, gm
            else:
                a, ga = m, gm
            if b - a <= 4e-16 * max(1.0, abs(m)):
                break
        if abs(gb - ga) < 0.5 * abs(float(dg[i])):
            continue                                # the jump shrank with the gap: smooth
        c = 0.5 * (a + b)
        eta = 1e-7 * (hi - lo)
        found.append((c, 0.5 * (slope(c + eta) - slope(c - eta))))
        if len(found) > _MAX_KINKS:
            return f"the initial value has more than {_MAX_KINKS} corners"
    return found


def interior_kinks_for(problem, u0, col, t_col, t0, second_order=False, walls=False):
    """([InteriorKink ...], note) for the corners of u0 inside the interval of a problem in
    one space variable ``col`` (not periodic), or ([], why). ``second_order``: the problem
    prescribes u_t(t0) too; its corners are carried only for u_tt = c² u_xx between
    ``walls`` where u is exact (``WaveKink``)."""
    if second_order and not walls:
        return [], "a second-order problem's corners need exact walls (their images)"
    if not callable(u0):
        return [], "the initial value is a constant"
    dom = problem.domain
    lo, hi = float(dom.lo[col]), float(dom.hi[col])
    x0 = torch.zeros(1, dom.dim, dtype=torch.float64)
    x0[0, t_col] = float(t0)
    try:
        corners = _corners(u0, x0, col, lo, hi)
    except Exception as e:                         # noqa: BLE001 - a function autograd cannot drive
        return [], f"the initial value could not be differentiated ({type(e).__name__})"
    if isinstance(corners, str):
        return [], corners
    if not corners:
        return [], "no corner inside the interval"
    name = dom.variables[col]
    kinks, said = [], []
    for c, amp in corners:
        xc = x0.clone()
        xc[0, col] = c
        eta = 1e-7 * (hi - lo)
        left, right = xc.clone(), xc.clone()
        left[0, col], right[0, col] = c - eta, c + eta
        value = _derivative(u0, xc, col)[0]
        mean = 0.5 * (_derivative(u0, left, col)[1] + _derivative(u0, right, col)[1])
        got = _linearised(problem, xc, col, t_col, value, mean, name, wave=second_order)
        if isinstance(got, str):
            return [], got
        if second_order:
            kinks.append(WaveKink(col, lo, hi, t_col, t0, amp, speed=got, centre=c))
            said.append(f"{name} = {c:.6g}: u0' jumps by {2 * amp:.4g}; c = {got:.4g}")
            continue
        eps, decay, speed = got
        kinks.append(InteriorKink(col, lo, hi, t_col, t0, amp, eps, decay=decay, speed=speed, centre=c))
        said.append(_said(name, kinks[-1], f" = {c:.6g}"))
    how = ("it travels at ±c and reflects at the walls (d'Alembert's solution with their images)"
           if second_order else "its smoothing under the equation linearised there")
    return kinks, ("the initial value has a corner inside the interval (" + "; ".join(said) +
                   f"): {how} is carried in closed form")
