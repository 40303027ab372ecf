"""Exceptions raised by kanpinn.

Every user-facing validation error is a :class:`KanpinnError`. It subclasses
``ValueError`` so that code written against plain Python conventions
(``except ValueError``) keeps catching bad inputs.
"""


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
