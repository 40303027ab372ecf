"""The part every model wrapper shares: delegate the KAN interface to the inner model."""
from __future__ import annotations

from torch import nn

from ..errors import KanpinnError

__all__ = ["ModelWrapper", "innermost", "wrappers", "run_layers", "values"]


def values(model):
    """The model's plain forward: ``forward_values`` when it has one (a KAN called on an x
    that requires grad computes its jet too), else the module itself."""
    return getattr(model, "forward_values", model)


def wrappers(model):
    """The ``inner`` chain of input embeddings and exact constraints around a model's
    network, outermost first (empty for a bare network)."""
    chain = []
    while hasattr(model, "inner") and hasattr(model, "inner_inputs"):
        chain.append(model)
        model = model.inner
    return chain


def innermost(model, x=None):
    """(the network inside a model's wrappers, what it sees for x); x may be None."""
    z = x
    for w in wrappers(model):
        z = None if z is None else w.inner_inputs(z)
        model = w.inner
    return model, z


class ModelWrapper(nn.Module):
    """A module holding ``inner`` (a KAN or MLP) and passing its interface through.
    Subclasses define ``forward``, ``forward_jet`` and ``config``, and ``inner_inputs``
    (what the inner model sees for x, used to place its grids)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        if not isinstance(inner, nn.Module):
            raise KanpinnError(f"a model wrapper takes a kp.KAN or kp.MLP, got {type(inner).__name__}")
        self.inner = inner

    def inner_inputs(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def width_out(self):
        return self.inner.width_out

    @property
    def layers(self):
        return self.inner.layers

    @property
    def grid(self):
        return self.inner.grid

    @property
    def k(self):
        return self.inner.k

    @property
    def n_parameters(self):
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _require_kan(self, what):
        if not hasattr(self.inner, what):
            raise KanpinnError(f"{what} needs a KAN inside {type(self).__name__}, "
                               f"got {type(self.inner).__name__}")

    def extend_grid(self, new_grid, x=None):
        self._require_kan("extend_grid")
        self.inner.extend_grid(new_grid, None if x is None else self.inner_inputs(x))
        return self

    def update_grid(self, x):
        self._require_kan("update_grid")
        self.inner.update_grid(self.inner_inputs(x))
        return self

    def reset_parameters(self, seed=None):
        self.inner.reset_parameters(seed=seed)
        return self


def run_layers(kan, z, gz, hz):
    """A KAN's jet for an input z whose own jet (gz, hz: (N, dz, d)) is given: each
    edge is univariate, so d²φ(z(x))/dx_j² = φ''·(∂z/∂x_j)² + φ'·∂²z/∂x_j² is exact for
    the Hessian diagonal and the layers' forward rule applies unchanged."""
    kan._check_input(z)
    y, g, h = z, gz, hz
    for li, layer in enumerate(kan.layers):
        y, g, h = layer.forward_jet(y, g, h, identity_input=False)
        y, g, h = kan._mult_jet(li, y, g, h)
    return y, g, h
