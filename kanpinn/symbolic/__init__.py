"""Symbolic recovery: candidate library, edge fitting, formula cleaning."""

from .library import EXTRA_FUNCTIONS, DEFAULT_FUNCTIONS, Library, SymbolicFunction, get_library
from .fit import Candidate, EdgeFit, fit_edge, fit_edges, rank_candidates

__all__ = [
    "SymbolicFunction", "Library", "get_library", "DEFAULT_FUNCTIONS", "EXTRA_FUNCTIONS",
    "Candidate", "EdgeFit", "fit_edge", "fit_edges", "rank_candidates",
]
