"""The KAN-PINN solver: ``solve(problem, model=None, **options) -> Result``.

``solve.py`` is the entry point; ``loop.py`` the training loop; ``optimizers.py`` the
optimiser registry; ``hooks.py`` what runs around each step; ``run.py`` the state of a
solve; ``loss.py`` collocation points and the PINN loss; ``lm.py`` and ``jacobian.py``
Levenberg-Marquardt on the structured Jacobian; ``auto.py`` auto mode's choices;
``checkpoint.py`` HDF5 checkpoints.
"""
from .hooks import Hook
from .loop import SolverWarning
from .optimizers import StepInfo, register_optimizer, registered_optimizers
from . import matrix_free  # noqa: F401,E402  (registers "lm-cg")
from .solve import DEFAULTS, solve

__all__ = ["solve", "DEFAULTS", "SolverWarning", "Hook", "StepInfo", "register_optimizer",
           "registered_optimizers"]
