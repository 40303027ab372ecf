"""The KAN-PINN solver: ``solve(problem, model, **options) -> Result``."""
from .solve import DEFAULTS, SolverWarning, solve

__all__ = ["solve", "DEFAULTS", "SolverWarning"]
