"""Symbolic recovery: candidate library, edge fitting, formula cleaning, symbolify,
verification of a formula on the PDE, and the structure search ``discover``."""

from .library import (EXTRA_FUNCTIONS, DEFAULT_FUNCTIONS, Library, SymbolicFunction,
                      get_function, get_library)
from .fit import Candidate, EdgeFit, fit_edge, fit_edges, rank_candidates
from .clean import expr_to_torch, relative_l2
from .symbolify import EdgeChoice, SymbolicReport, symbolify, symbolify_report
from .verify import Verification, verify
from .polish import polish
from .discover import CandidateRow, Discovery, discover

__all__ = [
    "SymbolicFunction", "Library", "get_library", "get_function", "DEFAULT_FUNCTIONS",
    "EXTRA_FUNCTIONS", "Candidate", "EdgeFit", "fit_edge", "fit_edges", "rank_candidates",
    "expr_to_torch", "relative_l2", "symbolify", "symbolify_report",
    "SymbolicReport", "EdgeChoice", "verify", "Verification", "polish", "discover",
    "Discovery", "CandidateRow",
]
