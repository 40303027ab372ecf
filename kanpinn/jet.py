"""Jets: a model output together with its derivatives with respect to the input.

A model that implements ``forward_jet(x, order)`` returns ``u`` (N, m), its gradient
``du`` (N, m, d) and the diagonal of its Hessian ``d2u`` (N, m, d), propagated forward
through the layers analytically; asked for ``order`` 3 or 4 it may add the diagonal
third and fourth derivatives ``d3u``, ``d4u`` (N, m, d): ∂³u/∂x_i³, ∂⁴u/∂x_i⁴ per input
axis i (see "Orders 3 and 4" below). A PDE loss built from them needs only one first-order
backward pass, where nested autograd needs a double backward through every layer (about
3x slower on the reference problem, see FIELD_NOTES).

A jet travels *with* the tensor: ``attach`` returns ``u`` as a :class:`JetTensor`, a
torch.Tensor subclass whose ``__torch_function__`` carries the jet through the few
operations a PDE residual applies to model outputs: column slices (``w[:, j:j+1]``,
``w.split``), concatenation of columns, sums, differences, products, quotients, powers
and elementwise functions (sin, exp, tanh, ...). Each result's jet is formed lazily, on
first use by ``kanpinn.operators``, so a residual that never differentiates an
expression pays nothing for it. Every other operation returns a plain tensor, whose
derivatives autograd then computes: always correct, only slower.

A KAN or MLP called as ``model(x)`` with ``x`` requiring grad returns its output from
``forward_jet`` with the jet attached, so a user's own training loop
``kp.laplacian(model(x), x)`` takes the same path as the solver's closure.

The operand rules: a jet of another ``x`` or a tensor that may depend on ``x`` through
autograd (non-leaf, requires grad) makes the result plain; numbers, tensors without
grad and leaves other than ``x`` (parameters) are constants.

While ``recording()`` is active (a ``contextvars.ContextVar``, not module state), layers
add a :class:`LayerRecord` for every evaluation: their outputs and a rule giving per-point
parameter gradients from the gradients at those outputs (``kanpinn.solver.jacobian``).

Orders 3 and 4 (KdV's u_xxx, a beam's or Kuramoto-Sivashinsky's u_xxxx). Only the
*diagonal* derivatives are carried, as for order 2: along one input axis every rule is
a rule of one-variable calculus, so the extension is the same few formulas written to
order K <= 4 (``MAX_ORDER``), with d_r = ∂^r/∂x_i^r for each axis i at once. Mixed
derivatives (a biharmonic's u_xxyy) are not carried: autograd serves them, as before.

- sums: termwise; products: Leibniz, (ab)_k = Σ_j C(k, j) a_j b_(k-j)
  (``leibniz``); quotients: q_k = (a_k - Σ_(j>=1) C(k, j) b_j q_(k-j)) / b;
- z = f(y) (an elementwise function, a KAN edge φ, an MLP activation): Faà di Bruno,
  z_k = Σ_r f^(r)(y) B_(k,r)(y_1 .. y_k) with the partial Bell polynomials
  B_(3,·) = (y3, 3 y1 y2, y1³), B_(4,·) = (y4, 3 y2² + 4 y1 y3, 6 y1² y2, y1⁴)
  (``bell``, ``faa_di_bruno``). A KAN layer sums these over its inputs (one batched
  product per order) and its rule for the structured Jacobian uses the same B_(k,r):
  the signal at the edge derivative a_r is Σ_k Σ_d G_k B_(k,r).

A jet holds its derivatives as the list ``Jet.derivs`` = [du, d2u, (d3u, (d4u))]; an
expression's jet has the lowest order among its operands. Nothing is computed beyond
order 2 unless asked: ``forward_jet(x, order)`` builds orders 3 and 4 only when
``order`` says so (order 1 and 2 run the same code as before: the hand-written layer
backward of ``kanpinn.layer_jet``), and the solver asks for them only when a residual
needs them. It learns that with ``needed_order``: the residual is run once on the
interior points at order 2 while ``demanding()`` listens; ``kp.partial(u, x, i, 3)``
on a jet of order 2 notes the demand (``note_demand``) and answers by autograd on top
of the jet. The KAN layer's orders 3 and 4 are plain autograd ops (differentiable to
any order), except the network-input layer's cached-feature product, whose
hand-written node serves every order; a B-spline basis of order k refuses a jet of
order > k (its k+1-th derivative is zero between the knots: a residual would not see
the splines), k >= order + 1 keeps the highest derivative continuous.
A model (or transform) that cannot carry order 3/4 returns what it has (u, du, d2u):
``evaluate`` attaches it and the operators differentiate the rest by autograd, which
is exact, only slower, and outside the structured Jacobian.
"""
from __future__ import annotations

import contextvars
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import torch

__all__ = ["Jet", "JetTensor", "attach", "lazy", "lookup", "evaluate", "supports_jet", "strip",
           "recording", "record", "LayerRecord", "NotPointwise", "MAX_ORDER", "bell", "faa_di_bruno",
           "leibniz", "chain_polynomials", "horner", "demanding", "note_demand", "needed_order"]

MAX_ORDER = 4           # the highest diagonal derivative a jet carries


# --------------------------------------------------------------------------- records

class NotPointwise(RuntimeError):
    """The residual couples points (or uses something the layer records do not cover)."""


@dataclass
class LayerRecord:
    """One layer evaluation seen by the recorder.

    ``outputs``: the tensors the layer returned (None entries allowed);
    ``per_point_grads(deltas) -> {parameter: (N, numel)}``: given the gradients of a sum
    of pointwise residuals at ``outputs`` (same shapes, None where zero), the gradient of
    each point's residual with respect to the layer's parameters. The rule lives with the
    layer (it knows its own parameters); the solver only collects and assembles.
    ``stacked``: the rule also takes the deltas of B residual blocks stacked in a leading
    dimension, (B, N, ...) each, and then returns (B, N, numel) per parameter (one call
    for the B blocks of a system)."""
    outputs: tuple
    per_point_grads: Callable
    n_points: int
    stacked: bool = False


_RECORDER: contextvars.ContextVar = contextvars.ContextVar("kanpinn_layer_records", default=None)


@contextmanager
def recording():
    """Collect the :class:`LayerRecord` of every layer evaluation inside the block (a list)."""
    records = []
    token = _RECORDER.set(records)
    try:
        yield records
    finally:
        _RECORDER.reset(token)


def record(outputs, per_point_grads, n_points, stacked=False):
    """Add a layer's record when a ``recording()`` block is active (else nothing)."""
    records = _RECORDER.get()
    if records is not None:
        records.append(LayerRecord(tuple(outputs), per_point_grads, int(n_points), bool(stacked)))


# --------------------------------------------------------------------------- demand

class _Demand:
    """The highest derivative order a residual asked of a jet that did not hold it."""
    __slots__ = ("order",)

    def __init__(self):
        self.order = 0


_DEMAND: contextvars.ContextVar = contextvars.ContextVar("kanpinn_jet_demand", default=None)


@contextmanager
def demanding():
    """Inside the block, ``note_demand`` records the highest order asked (``.order``)."""
    holder = _Demand()
    token = _DEMAND.set(holder)
    try:
        yield holder
    finally:
        _DEMAND.reset(token)


def note_demand(order: int):
    """A derivative of ``order`` was asked of a jet of lower order (operators call this)."""
    holder = _DEMAND.get()
    if holder is not None and order > holder.order:
        holder.order = int(order)


def needed_order(residual, x: torch.Tensor, model, base: int = 2, probe: Optional[int] = None) -> int:
    """The jet order a residual needs: ``residual(xs, u)`` is run once on ``x`` (its
    first ``probe`` points when given) with ``u`` of order ``base``, its jets' demands
    noted; returns max(base, the highest order asked), at most ``MAX_ORDER``. All points
    by default: a residual may hold per-point data of x's length. Layer records of the
    probe are kept out of any active ``recording()``; nothing else is changed."""
    if not supports_jet(model) or x.shape[0] == 0:
        return base
    xs = strip(x)[:probe].detach().clone().requires_grad_(True)
    with recording(), demanding() as want, torch.enable_grad():
        residual(xs, evaluate(model, xs, base))
    return max(base, min(want.order, MAX_ORDER))


# --------------------------------------------------------------------------- jets

@dataclass
class Jet:
    x: torch.Tensor                 # (N, d) the input the derivatives are taken against
    du: torch.Tensor                # (N, m, d)
    d2u: Optional[torch.Tensor] = None     # (N, m, d) diagonal second derivatives, or None
    d3u: Optional[torch.Tensor] = None     # (N, m, d) diagonal third derivatives, or None
    d4u: Optional[torch.Tensor] = None     # (N, m, d) diagonal fourth derivatives, or None

    @property
    def derivs(self) -> list:
        """[du, d2u, ...] up to the first absent one: len is the jet's order."""
        out = []
        for d in (self.du, self.d2u, self.d3u, self.d4u):
            if d is None:
                break
            out.append(d)
        return out


def _make_jet(x, derivs) -> Jet:
    ds = list(derivs)[:MAX_ORDER]
    return Jet(x, *ds)


class JetTensor(torch.Tensor):
    """A tensor that knows its derivatives with respect to one input ``x`` (see module
    docstring). ``_jet_x`` is that input (None: no jet); ``_jet_src`` is a Jet or a
    function computing one on first use."""

    _jet_x = None
    _jet_src = None

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        rule = _RULES.get(func)
        if rule is not None:
            try:
                return rule(out, args, kwargs)
            except _Plain:
                return out
        name = getattr(func, "__name__", "")
        if isinstance(out, JetTensor) and (name.endswith("_") and not name.endswith("__")
                                           or name.startswith("__i") or name == "__setitem__"):
            out._jet_x = out._jet_src = None        # changed in place: its jet is stale
        elif name == "__setitem__" and args and isinstance(args[0], JetTensor):
            args[0]._jet_x = args[0]._jet_src = None
        return out


def _wrap(out, x, src):
    t = out.as_subclass(JetTensor)
    t._jet_x, t._jet_src = x, src
    return t


def attach(u: torch.Tensor, x: torch.Tensor, du: torch.Tensor, d2u=None, *higher) -> torch.Tensor:
    """``u`` as a JetTensor carrying its derivatives with respect to ``x`` (``higher``:
    d3u and d4u, when the jet has them)."""
    return _wrap(u, x, _make_jet(x, (du, d2u) + tuple(higher)))


def lazy(u: torch.Tensor, x: torch.Tensor, compute) -> torch.Tensor:
    """``u`` as a JetTensor whose jet ``compute() -> (du, d2u, ...)`` runs on first use."""
    return _wrap(u, x, compute)


def strip(u: torch.Tensor) -> torch.Tensor:
    """``u`` as a plain tensor (same values and graph, no jet): operators then use autograd."""
    return u.as_subclass(torch.Tensor) if isinstance(u, JetTensor) else u


def _resolve(t: JetTensor) -> Optional[Jet]:
    src = t._jet_src
    if src is None or isinstance(src, Jet):
        return src
    jet = _make_jet(t._jet_x, src())
    t._jet_src = jet
    return jet


def lookup(u: torch.Tensor, x: torch.Tensor) -> Optional[Jet]:
    """The jet of ``u`` with respect to exactly this ``x``, or None."""
    if not isinstance(u, JetTensor) or u._jet_x is not x:
        return None
    return _resolve(u)


def supports_jet(model) -> bool:
    return callable(getattr(model, "forward_jet", None))


def evaluate(model, x: torch.Tensor, order: int = 2) -> torch.Tensor:
    """``model(x)`` with derivatives up to ``order`` attached (for order 0 the model's
    ``forward_values`` when it has one, else ``model(x)``; for models without
    ``forward_jet`` autograd then serves the derivatives). A model may return fewer
    derivatives than asked for (u, du, d2u for any order >= 2): the operators then take
    the rest by autograd."""
    if order <= 0 or not supports_jet(model):
        values = getattr(model, "forward_values", None)
        return values(x) if order <= 0 and callable(values) else model(x)
    u, *derivs = model.forward_jet(x, order)
    return _wrap(strip(u), x, _make_jet(x, derivs))


def identity_jet(x: torch.Tensor, order: int):
    """Jet of the input itself: gradient the identity, second derivatives zero. For
    order > 2 a third entry: the list of zero higher derivatives (orders 3 .. order)."""
    n, d = x.shape
    g = torch.eye(d, dtype=x.dtype, device=x.device).expand(n, d, d)
    h = torch.zeros_like(g) if order >= 2 else None
    if order > 2:
        return g, h, [h] * (order - 2)
    return g, h


# --------------------------------------------------------------------------- calculus

def bell(g: list) -> list:
    """Partial Bell polynomials of a jet g = [g1, .., gK] (K <= 4), the Faà di Bruno
    weights: B[k][r] for 1 <= r <= k <= K (B[k][0] unused, None), so that
    (f∘y)_k = Σ_r f^(r)(y) B[k][r](y_1 .. y_k)."""
    K = len(g)
    B = [None, [None, g[0]]]
    if K >= 2:
        g1, g2 = g[0], g[1]
        B.append([None, g2, g1 * g1])
    if K >= 3:
        g3 = g[2]
        g11 = B[2][2]
        B.append([None, g3, 3 * g1 * g2, g11 * g1])
    if K >= 4:
        g4 = g[3]
        B.append([None, g4, 3 * g2 * g2 + 4 * g1 * g3, 6 * g11 * g2, g11 * g11])
    return B


def faa_di_bruno(f: list, g: list) -> list:
    """Derivatives [z1 .. zK] of z = F(y) along one direction, from F's derivatives
    f = [F', F'', ...] (at least K of them) at y and y's derivatives g = [y1 .. yK]."""
    out = [f[0] * g[0]]
    if len(g) >= 2:                     # written as before orders 3-4 existed: same rounding
        out.append(f[1] * g[0] * g[0] + f[0] * g[1])
    if len(g) >= 3:
        B = bell(g)
        for k in range(3, len(g) + 1):
            acc = f[0] * B[k][1]
            for r in range(2, k + 1):
                acc = acc + f[r - 1] * B[k][r]
            out.append(acc)
    return out


def leibniz(a, da: list, b, db: list) -> list:
    """Derivatives [1 .. K] of a·b from values a, b and derivative lists da, db (K each;
    values broadcast against the derivatives)."""
    out = []
    for k in range(1, len(da) + 1):
        acc = a * db[k - 1] + b * da[k - 1]
        for j in range(1, k):
            acc = acc + math.comb(k, j) * da[j - 1] * db[k - j - 1]
        out.append(acc)
    return out


def compose_elementwise(f0, f1, f2, g, h):
    """Jet of z = f(y) elementwise, given f, f', f'' at y and y's jet g, h (N, w, d)."""
    gz = f1[..., None] * g
    hz = None
    if h is not None:
        hz = f2[..., None] * g * g + f1[..., None] * h
    return f0, gz, hz


def product(a, ga, ha, b, gb, hb):
    """Jet of a * b for values (N, w) and jets (N, w, d)."""
    g = a[..., None] * gb + b[..., None] * ga
    h = None
    if ha is not None:
        h = a[..., None] * hb + b[..., None] * ha + 2 * ga * gb
    return a * b, g, h


# --------------------------------------------------------------------------- rules

class _Plain(Exception):
    """The result of an operation does not get a jet (returned as a plain tensor)."""


@dataclass
class _Operand:
    value: object                   # the operand as given (tensor or number)
    source: Optional[JetTensor]     # a jet-carrying tensor, or None for a constant


def _operand(a, x):
    """Classify an operand against the jets' input ``x`` (x None: not decided yet)."""
    if isinstance(a, JetTensor) and a._jet_x is not None:
        return _Operand(strip(a), a)
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return _Operand(a, None)
    if isinstance(a, torch.Tensor):
        plain = strip(a)
        # no autograd path to x: a tensor without grad, or a leaf that is not x itself
        if not plain.requires_grad or (plain.grad_fn is None and plain is not x and a is not x):
            return _Operand(plain, None)
    raise _Plain


def _operands(args):
    """Operands of an elementwise op, all against one x; (x, operands)."""
    x = next((a._jet_x for a in args if isinstance(a, JetTensor) and a._jet_x is not None), None)
    if x is None:
        raise _Plain
    ops = [_operand(a, x) for a in args]
    if any(o.source is not None and o.source._jet_x is not x for o in ops):
        raise _Plain
    return x, ops


def _fits(out, x):
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise _Plain


def _jets(ops):
    """Resolved derivative lists per operand, all cut to the lowest order among the
    jets (constants give None), and that order K."""
    res = []
    for o in ops:
        if o.source is None:
            res.append(None)
            continue
        jet = _resolve(o.source)
        if jet is None:
            raise RuntimeError("kanpinn: a jet disappeared while an expression needed it")
        res.append(jet.derivs)
    K = min(len(r) for r in res if r is not None)
    return [None if r is None else r[:K] for r in res], K


def _lift(c):
    """A constant multiplier broadcast against (N, m, d) jets."""
    return c.unsqueeze(-1) if isinstance(c, torch.Tensor) and c.dim() >= 1 else c


def _finish(out, x, compute):
    """Wrap ``out`` with a lazy jet; ``compute() -> [d1, .., dK]`` may return partial
    shapes that broadcast to (N, m, d)."""
    n, m = out.shape
    d = x.shape[1]

    def full():
        return [t.expand(n, m, d) for t in compute()]
    return _wrap(out, x, full)


def _add_rule(sign_a, sign_b):
    def rule(out, args, kwargs):
        if kwargs or len(args) != 2:
            raise _Plain
        x, (a, b) = _operands(args)
        _fits(out, x)

        def compute():
            (da, db), K = _jets([a, b])
            return [_signed_sum(None if da is None else da[k], None if db is None else db[k], sign_a, sign_b)
                    for k in range(K)]
        return _finish(out, x, compute)
    return rule


def _signed_sum(p, q, sp_, sq):
    if p is None:
        return q if sq > 0 else -q
    if q is None:
        return p if sp_ > 0 else -p
    return p + q if sq > 0 else p - q


def _mul(out, args, kwargs):
    if kwargs or len(args) != 2:
        raise _Plain
    x, (a, b) = _operands(args)
    _fits(out, x)

    def compute():
        (da, db), _ = _jets([a, b])
        if da is None:
            c = _lift(a.value)
            return [c * t for t in db]
        if db is None:
            c = _lift(b.value)
            return [c * t for t in da]
        return leibniz(_lift(a.value), da, _lift(b.value), db)
    return _finish(out, x, compute)


def _div(out, args, kwargs):
    if kwargs or len(args) != 2:
        raise _Plain
    x, (a, b) = _operands(args)
    _fits(out, x)

    def compute():
        (da, db), K = _jets([a, b])
        if db is None:                                     # u / c
            c = _lift(b.value)
            return [t / c for t in da]
        q, bv = _lift(strip(out)), _lift(b.value)          # q = a / b: a_k = Σ_j C(k,j) b_j q_(k-j)
        qs = [q]
        for k in range(1, K + 1):
            acc = da[k - 1] if da is not None else 0
            for j in range(1, k + 1):
                acc = acc - math.comb(k, j) * db[j - 1] * qs[k - j]
            qs.append(acc / bv)
        return qs[1:]
    return _finish(out, x, compute)


def _rdiv(out, args, kwargs):
    return _div(out, (args[1], args[0]), kwargs)


def _rsub(out, args, kwargs):
    return _add_rule(1, -1)(out, (args[1], args[0]), kwargs)


def _neg(out, args, kwargs):
    if kwargs or len(args) != 1:
        raise _Plain
    x, (a,) = _operands(args)
    _fits(out, x)

    def compute():
        (da,), _ = _jets([a])
        return [-t for t in da]
    return _finish(out, x, compute)


def _elementwise(derivatives):
    """A rule for y = f(u): ``derivatives(u, y, K) -> [f'(u), .., f^(K)(u)]``."""
    def rule(out, args, kwargs):
        if kwargs or len(args) != 1:
            raise _Plain
        x, (a,) = _operands(args)
        _fits(out, x)

        def compute():
            (da,), K = _jets([a])
            f = [_lift(t) for t in derivatives(a.value, strip(out), K)]
            return faa_di_bruno(f, da)
        return _finish(out, x, compute)
    return rule


def _power_derivatives(p):
    """d^r/du^r u^p = p (p-1) .. (p-r+1) u^(p-r) (zero once a factor is 0)."""
    def derivatives(u, y, K):
        out, c = [], 1.0
        for r in range(1, K + 1):
            c *= p - r + 1
            out.append(c * u ** (p - r) if c != 0 else torch.zeros_like(u))
        return out
    return derivatives


def _pow(out, args, kwargs):
    if kwargs or len(args) != 2:
        raise _Plain
    base, p = args
    if not (isinstance(base, JetTensor) and isinstance(p, (int, float)) and not isinstance(p, bool)):
        raise _Plain
    return _elementwise(_power_derivatives(p))(out, (base,), {})


def _rpow(out, args, kwargs):
    """c ** u for a number c > 0 (``Tensor.__rpow__(u, c)``)."""
    if kwargs or len(args) != 2:
        raise _Plain
    u, c = args
    if not (isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0):
        raise _Plain
    lc = math.log(c)
    derivs = _first_two(lambda _, y: (y * lc, y * lc * lc), lambda _, y, K: [y * lc ** r for r in range(1, K + 1)])
    return _elementwise(derivs)(out, (u,), {})


def chain_polynomials(rate, count):
    """[P_1 .. P_count]: f^(r) = P_r(y) for y = f(u) when dy/du is the polynomial ``rate``
    in y (coefficients, lowest power first; tanh: 1 - y², sigmoid: y - y²), by
    P_(r+1) = P_r'(y) · rate(y)."""
    polys = [list(rate)]
    for _ in range(count - 1):
        p = polys[-1]
        dp = [i * p[i] for i in range(1, len(p))] or [0.0]
        prod = [0.0] * (len(dp) + len(rate) - 1)
        for i, a in enumerate(dp):
            for j, b in enumerate(rate):
                prod[i + j] += a * b
        polys.append(prod)
    return polys


def horner(p, y):
    """Σ_i p[i] y^i (p a list of numbers) elementwise."""
    acc = p[-1] + 0 * y
    for c in reversed(p[:-1]):
        acc = acc * y + c
    return acc


def _chain_in_y(rate):
    """Derivatives of y = f(u) for dy/du a polynomial in y (``chain_polynomials``),
    formed once here, evaluated by Horner's rule."""
    polys = chain_polynomials(rate, MAX_ORDER)
    return lambda u, y, K: [horner(polys[r], y) for r in range(K)]


def _first_two(fn, higher):
    """f', f'' by ``fn(u, y)`` (the order-2 formulas, unchanged), beyond by ``higher``."""
    def derivatives(u, y, K):
        out = list(fn(u, y))[:K]
        return out + higher(u, y, K)[2:] if K > 2 else out
    return derivatives


def _cycle(*fns):
    """Derivatives that repeat with period len(fns): fns[r % n](u, y) is f^(r+1)."""
    return lambda u, y, K: [fns[r % len(fns)](u, y) for r in range(K)]


_FUNCTIONS = {
    "sin": _cycle(lambda u, y: torch.cos(u), lambda u, y: -y, lambda u, y: -torch.cos(u), lambda u, y: y),
    "cos": _cycle(lambda u, y: -torch.sin(u), lambda u, y: -y, lambda u, y: torch.sin(u), lambda u, y: y),
    "exp": lambda u, y, K: [y] * K,
    "log": _first_two(lambda u, y: (1 / u, -1 / (u * u)),
                      lambda u, y, K: [(-1) ** (r - 1) * math.factorial(r - 1) / u ** r for r in range(1, K + 1)]),
    "tanh": _first_two(lambda u, y: (1 - y * y, -2 * y * (1 - y * y)), _chain_in_y([1.0, 0.0, -1.0])),
    "sigmoid": _first_two(lambda u, y: (y * (1 - y), y * (1 - y) * (1 - 2 * y)), _chain_in_y([0.0, 1.0, -1.0])),
    "sqrt": _first_two(lambda u, y: (0.5 / y, -0.25 / (y * y * y)), _power_derivatives(0.5)),
    "square": lambda u, y, K: [2 * u, 2 + 0 * u, 0 * u, 0 * u][:K],
    "sinh": _cycle(lambda u, y: torch.cosh(u), lambda u, y: y),
    "cosh": _cycle(lambda u, y: torch.sinh(u), lambda u, y: y),
}


def _column_key(key):
    """The column index of a ``w[:, key]`` (or ``w[..., key]``) on a 2-D tensor, or raise."""
    if not (isinstance(key, tuple) and len(key) == 2):
        raise _Plain
    rows, cols = key
    if not (rows is Ellipsis or (isinstance(rows, slice) and rows == slice(None))):
        raise _Plain
    if isinstance(cols, slice) or (isinstance(cols, list) and all(isinstance(i, int) for i in cols)):
        return cols
    if isinstance(cols, torch.Tensor) and cols.dim() == 1 and not cols.is_floating_point() \
            and cols.dtype != torch.bool:
        return cols
    raise _Plain


def _getitem(out, args, kwargs):
    src, key = args
    if not isinstance(src, JetTensor) or src._jet_x is None or strip(src).dim() != 2:
        raise _Plain
    cols = _column_key(key)
    x = src._jet_x
    _fits(out, x)

    def compute():
        return [t[:, cols] for t in _resolve(src).derivs]
    return _finish(out, x, compute)


def _dim_arg(args, kwargs, pos, default):
    d = kwargs.get("dim", args[pos] if len(args) > pos else default)
    return d


def _column_pieces(out, src, sizes):
    """Wrap the pieces of a column split of ``src``."""
    x, pieces, at = src._jet_x, [], 0
    for piece, w in zip(out, sizes):
        def compute(a=at, b=at + w):
            return [t[:, a:b] for t in _resolve(src).derivs]
        pieces.append(_finish(piece, x, compute))
        at += w
    return type(out)(pieces) if isinstance(out, tuple) else pieces


def _split(out, args, kwargs):
    src = args[0]
    if not isinstance(src, JetTensor) or src._jet_x is None or strip(src).dim() != 2:
        raise _Plain
    if _dim_arg(args, kwargs, 2, 0) not in (1, -1):
        raise _Plain
    return _column_pieces(out, src, [p.shape[1] for p in out])


_chunk = _split          # the same rule: column pieces of a 2-D jet tensor along dim 1


def _cat(out, args, kwargs):
    tensors = kwargs.get("tensors", args[0] if args else None)
    if tensors is None or _dim_arg(args, kwargs, 1, 0) not in (1, -1):
        raise _Plain
    return _join(out, list(tensors))


def _hstack(out, args, kwargs):
    tensors = kwargs.get("tensors", args[0] if args else None)
    if tensors is None:
        raise _Plain
    return _join(out, list(tensors))


def _join(out, tensors):
    if not tensors or any(not isinstance(t, torch.Tensor) or t.dim() != 2 for t in tensors):
        raise _Plain
    x, ops = _operands(tensors)
    _fits(out, x)
    d = x.shape[1]

    def compute():
        js, K = _jets(ops)
        cols = [[] for _ in range(K)]
        for ds, o in zip(js, ops):
            n, w = o.value.shape
            if ds is None:
                ds = [o.value.new_zeros(()).expand(n, w, d)] * K
            for k in range(K):
                cols[k].append(ds[k].expand(n, w, d))
        return [torch.cat(c, 1) for c in cols]
    return _finish(out, x, compute)


def _rules():
    T = torch.Tensor
    add, sub = _add_rule(1, 1), _add_rule(1, -1)
    rules = {
        T.__add__: add, T.__radd__: add, torch.add: add, T.add: add,
        T.__sub__: sub, torch.sub: sub, T.sub: sub, torch.subtract: sub, T.__rsub__: _rsub,
        T.__mul__: _mul, T.__rmul__: _mul, torch.mul: _mul, T.mul: _mul, torch.multiply: _mul,
        T.__truediv__: _div, torch.div: _div, T.div: _div, torch.true_divide: _div,
        T.__rtruediv__: _rdiv,
        T.__neg__: _neg, torch.neg: _neg, T.neg: _neg, torch.negative: _neg,
        T.__pow__: _pow, torch.pow: _pow, T.pow: _pow, T.__rpow__: _rpow,
        T.__getitem__: _getitem,
        T.split: _split, torch.split: _split, T.chunk: _chunk, torch.chunk: _chunk,
        torch.cat: _cat, torch.concat: _cat, torch.concatenate: _cat,
        torch.hstack: _hstack, torch.column_stack: _hstack,
    }
    for name, derivs in _FUNCTIONS.items():
        rule = _elementwise(derivs)
        for owner in (torch, T):
            fn = getattr(owner, name, None)
            if fn is not None:
                rules[fn] = rule
    return rules


_RULES = _rules()
