"""Jets: a model output together with its derivatives with respect to the input.

A model that implements ``forward_jet(x, order)`` returns ``u`` (N, m), its gradient
``du`` (N, m, d) and the diagonal of its Hessian ``d2u`` (N, m, d), propagated forward
through the layers analytically. A PDE loss built from them needs only one first-order
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
"""
from __future__ import annotations

import contextvars
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import torch

__all__ = ["Jet", "JetTensor", "attach", "lazy", "lookup", "evaluate", "supports_jet", "strip",
           "recording", "record", "LayerRecord", "NotPointwise"]


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


# --------------------------------------------------------------------------- jets

@dataclass
class Jet:
    x: torch.Tensor                 # (N, d) the input the derivatives are taken against
    du: torch.Tensor                # (N, m, d)
    d2u: Optional[torch.Tensor]     # (N, m, d) diagonal second derivatives, or None


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


def attach(u: torch.Tensor, x: torch.Tensor, du: torch.Tensor, d2u=None) -> torch.Tensor:
    """``u`` as a JetTensor carrying its derivatives with respect to ``x``."""
    return _wrap(u, x, Jet(x, du, d2u))


def lazy(u: torch.Tensor, x: torch.Tensor, compute) -> torch.Tensor:
    """``u`` as a JetTensor whose jet ``compute() -> (du, d2u)`` runs on first use."""
    return _wrap(u, x, compute)


def strip(u: torch.Tensor) -> torch.Tensor:
    """``u`` as a plain tensor (same values and graph, no jet): operators then use autograd."""
    return u.as_subclass(torch.Tensor) if isinstance(u, JetTensor) else u


def _resolve(t: JetTensor) -> Optional[Jet]:
    src = t._jet_src
    if src is None or isinstance(src, Jet):
        return src
    du, d2u = src()
    jet = Jet(t._jet_x, du, d2u)
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
    ``forward_jet`` autograd then serves the derivatives)."""
    if order <= 0 or not supports_jet(model):
        values = getattr(model, "forward_values", None)
        return values(x) if order <= 0 and callable(values) else model(x)
    u, du, d2u = model.forward_jet(x, order)
    return attach(strip(u), x, du, d2u)


def identity_jet(x: torch.Tensor, order: int):
    """Jet of the input itself: gradient the identity, second derivatives zero."""
    n, d = x.shape
    g = torch.eye(d, dtype=x.dtype, device=x.device).expand(n, d, d)
    h = torch.zeros_like(g) if order >= 2 else None
    return g, h


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
    """Resolved (du, d2u) per operand; constants give (None, None)."""
    res = []
    for o in ops:
        if o.source is None:
            res.append((None, None))
            continue
        jet = _resolve(o.source)
        if jet is None:
            raise RuntimeError("kanpinn: a jet disappeared while an expression needed it")
        res.append((jet.du, jet.d2u))
    return res


def _lift(c):
    """A constant multiplier broadcast against (N, m, d) jets."""
    return c.unsqueeze(-1) if isinstance(c, torch.Tensor) and c.dim() >= 1 else c


def _finish(out, x, compute):
    """Wrap ``out`` with a lazy jet; ``compute() -> (du, d2u)`` may return partial shapes
    that broadcast to (N, m, d)."""
    n, m = out.shape
    d = x.shape[1]

    def full():
        du, d2u = compute()
        du = du.expand(n, m, d)
        d2u = d2u.expand(n, m, d) if d2u is not None else None
        return du, d2u
    return _wrap(out, x, full)


def _add_rule(sign_a, sign_b):
    def rule(out, args, kwargs):
        if kwargs or len(args) != 2:
            raise _Plain
        x, (a, b) = _operands(args)
        _fits(out, x)

        def compute():
            (ga, ha), (gb, hb) = _jets([a, b])
            g = _signed_sum(ga, gb, sign_a, sign_b)
            h = None if (ha is None and a.source is not None) or (hb is None and b.source is not None) \
                else _signed_sum(ha, hb, sign_a, sign_b)
            return g, h
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
        (ga, ha), (gb, hb) = _jets([a, b])
        if ga is None:
            c = _lift(a.value)
            return c * gb, (c * hb if hb is not None else None)
        if gb is None:
            c = _lift(b.value)
            return c * ga, (c * ha if ha is not None else None)
        _, g, h = product(a.value, ga, ha if hb is not None else None, b.value, gb, hb)
        return g, h
    return _finish(out, x, compute)


def _div(out, args, kwargs):
    if kwargs or len(args) != 2:
        raise _Plain
    x, (a, b) = _operands(args)
    _fits(out, x)

    def compute():
        (ga, ha), (gb, hb) = _jets([a, b])
        if gb is None:                                     # u / c
            c = _lift(b.value)
            return ga / c, (ha / c if ha is not None else None)
        q, bv = _lift(strip(out)), _lift(b.value)               # q = a / b
        gq = ((ga if ga is not None else 0) - q * gb) / bv
        h = None
        if hb is not None and (ga is None or ha is not None):
            h = ((ha if ha is not None else 0) - 2 * gq * gb - q * hb) / bv
        return gq, h
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
        ((ga, ha),) = _jets([a])
        return -ga, (-ha if ha is not None else None)
    return _finish(out, x, compute)


def _elementwise(derivatives):
    """A rule for y = f(u): ``derivatives(u, y) -> (f'(u), f''(u))``."""
    def rule(out, args, kwargs):
        if kwargs or len(args) != 1:
            raise _Plain
        x, (a,) = _operands(args)
        _fits(out, x)

        def compute():
            ((ga, ha),) = _jets([a])
            f1, f2 = derivatives(a.value, strip(out))
            _, g, h = compose_elementwise(None, f1, f2, ga, ha)
            return g, h
        return _finish(out, x, compute)
    return rule


def _pow(out, args, kwargs):
    if kwargs or len(args) != 2:
        raise _Plain
    base, p = args
    if not (isinstance(base, JetTensor) and isinstance(p, (int, float)) and not isinstance(p, bool)):
        raise _Plain
    def derivatives(u, y):
        f1 = p * u ** (p - 1) if p != 0 else torch.zeros_like(u)
        f2 = p * (p - 1) * u ** (p - 2) if p not in (0, 1) else torch.zeros_like(u)
        return f1, f2
    return _elementwise(derivatives)(out, (base,), {})


def _rpow(out, args, kwargs):
    """c ** u for a number c > 0 (``Tensor.__rpow__(u, c)``)."""
    if kwargs or len(args) != 2:
        raise _Plain
    u, c = args
    if not (isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0):
        raise _Plain
    lc = math.log(c)
    return _elementwise(lambda _, y: (y * lc, y * lc * lc))(out, (u,), {})


_FUNCTIONS = {
    "sin": lambda u, y: (torch.cos(u), -y),
    "cos": lambda u, y: (-torch.sin(u), -y),
    "exp": lambda u, y: (y, y),
    "log": lambda u, y: (1 / u, -1 / (u * u)),
    "tanh": lambda u, y: (1 - y * y, -2 * y * (1 - y * y)),
    "sigmoid": lambda u, y: (y * (1 - y), y * (1 - y) * (1 - 2 * y)),
    "sqrt": lambda u, y: (0.5 / y, -0.25 / (y * y * y)),
    "square": lambda u, y: (2 * u, 2 + 0 * u),
    "sinh": lambda u, y: (torch.cosh(u), y),
    "cosh": lambda u, y: (torch.sinh(u), y),
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
        jet = _resolve(src)
        return jet.du[:, cols], (jet.d2u[:, cols] if jet.d2u is not None else None)
    return _finish(out, x, compute)


def _dim_arg(args, kwargs, pos, default):
    d = kwargs.get("dim", args[pos] if len(args) > pos else default)
    return d


def _column_pieces(out, src, sizes):
    """Wrap the pieces of a column split of ``src``."""
    x, pieces, at = src._jet_x, [], 0
    for piece, w in zip(out, sizes):
        def compute(a=at, b=at + w):
            jet = _resolve(src)
            return jet.du[:, a:b], (jet.d2u[:, a:b] if jet.d2u is not None else None)
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
        js = _jets(ops)
        order2 = all(h is not None for (g, h), o in zip(js, ops) if o.source is not None)
        gs, hs = [], []
        for (g, h), o in zip(js, ops):
            n, w = o.value.shape
            if g is None:
                z = o.value.new_zeros(()).expand(n, w, d)
                g, h = z, z
            gs.append(g.expand(n, w, d))
            if order2:
                hs.append(h.expand(n, w, d))
        return torch.cat(gs, 1), (torch.cat(hs, 1) if order2 else None)
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
