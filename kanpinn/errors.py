"""Exceptions raised by kanpinn.

Every user-facing validation error is a :class:`KanpinnError`. It subclasses
``ValueError`` so that code written against plain Python conventions
(``except ValueError``) keeps catching bad inputs.
"""
import torch


class KanpinnError(ValueError):
    """A problem, domain, condition or option was specified incorrectly.

    The message always names the offending object and says what was expected.

    Example:

    >>> try:
    ...     kp.Interval(1, 0)
    ... except kp.KanpinnError as e:
    ...     print(e)
    Interval: need a < b, got a = 1.0, b = 0.0
    >>> issubclass(kp.KanpinnError, ValueError)
    True
    """


class KanpinnWarning(UserWarning):
    """Something kanpinn accepted but the user should know (e.g. data outside the domain,
    kept because ``outside="allow"`` was passed)."""


def check_model_input(kind: str, x, width: int, like) -> None:
    """Validate a model input at the boundary: a (N, width) tensor on the device and of
    the dtype of ``like`` (one of the model's parameters). A model trained by ``kp.solve``
    on CUDA stays there, so a CPU tensor would otherwise fail deep inside the layers."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != width:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise KanpinnError(f"{kind} expects input of shape (N, {width}), got {shape}")
    if x.device != like.device:
        raise KanpinnError(f"{kind} input is on {x.device} but the model is on {like.device}: "
                           f"move one of them (x.to(model_device), or model.to('cpu')); "
                           "Result.predict does this for you")
    if x.dtype != like.dtype:
        raise KanpinnError(f"{kind} input has dtype {x.dtype} but the model has {like.dtype}: "
                           f"convert one of them (x.to({like.dtype}) or model.to(dtype))")
