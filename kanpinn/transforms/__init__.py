"""Model wrappers that change what a network sees or what it outputs, keeping its jets.

- :class:`Embedded`: the inputs mapped to the network's grid range: every box variable
  affinely onto [-1, 1] (so a KAN's grid lives on the problem's box whatever its size),
  and periodic variables through cos/sin harmonics (exact periodicity).
- :class:`HardConstraint`: u = g(x) + D(x)·N(x), with D vanishing where Dirichlet and
  initial conditions hold and g satisfying them (Sukumar & Srivastava 2022), so the
  conditions hold exactly whatever N is.

Both keep the KAN interface the solver uses (``extend_grid``, ``update_grid``,
``set_input_range``, ``layers``, ``config()``) and the jets (``forward_jet``), and work
with Levenberg-Marquardt's structured Jacobian (the wrapped KAN's layers record inside;
the wrapper's own operations are pointwise).
"""
from .embedding import Embedded
from .constraint import HardConstraint, hard_constraint_for
from .distance import box_distance

__all__ = ["Embedded", "HardConstraint", "hard_constraint_for", "box_distance"]
