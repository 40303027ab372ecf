"""The Gauss-Newton matrix JᵀJ, computed once per symmetric pair of column blocks.

JᵀJ is symmetric, but ``J.T @ J`` is one general matrix product: it computes both
triangles, M·P² multiply-adds. Splitting the P columns into b blocks and computing only
the block row A[i, i:] = J_iᵀ J[:, i:] (then mirroring it) costs M·P²·(b + 1)/(2b), about
half, in b products that are still large enough for BLAS to run at full speed. For LM on
a KAN system this product is most of a step (Kovasznay, [2,20,3] k=5 G=20: 6801 × 2700,
about half of the step's time, measured in docs/navier_stokes.md).
"""
from __future__ import annotations

import torch

__all__ = ["gram"]

# below this many columns one product is as fast as the blocks (BLAS overheads)
_MIN_COLUMNS = 768
# columns per block: large enough for full-speed products
_BLOCK = 384


def gram(J: torch.Tensor) -> torch.Tensor:
    """JᵀJ (P, P) of J (M, P), exactly symmetric."""
    m, p = J.shape
    if p < _MIN_COLUMNS or J.device.type != "cpu":
        # GPU: one product is fast and the blocks' launches would cost more than they save
        return J.T @ J
    b = max(2, p // _BLOCK)
    edges = [round(i * p / b) for i in range(b + 1)]
    A = J.new_empty(p, p)
    for i in range(b):
        a, c = edges[i], edges[i + 1]
        row = J[:, a:c].T @ J[:, a:]
        A[a:c, a:] = row
        A[c:, a:c] = row[:, c - a:].T
    return A
