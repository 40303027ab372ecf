"""The Gauss-Newton matrix JᵀJ: each symmetric pair of column blocks once, and, for a
stack of residual blocks, only the products that are not identically zero.

JᵀJ is symmetric, but ``J.T @ J`` is one general matrix product: it computes both
triangles, M·P² multiply-adds. Splitting the P columns into b blocks and computing only
the block row A[i, i:] = J_iᵀ J[:, i:] (then mirroring it) costs M·P²·(b + 1)/(2b), about
half, in b products that are still large enough for BLAS to run at full speed. For LM on
a KAN system this product is most of a step (Kovasznay, [2,20,3] k=5 G=20: 6801 × 2700,
about half of the step's time, measured in docs/navier_stokes.md).

A system's J is also sparse by blocks (``gram(J, rows)``, the row range of each residual
block): a residual block does not read every output, so the last layer's columns of the
outputs it does not read are exactly zero on its rows (the cavity's continuity equation
never touches p's edges, a wall condition on u touches only u's edges), and a B-spline
basis function that no point of the problem reaches (the cavity's first layer, inputs in
[0, 1] on a grid over [-1, 1]) is a zero column on every row. The columns are grouped by
the set of blocks they are non-zero on; the product of two groups runs only over the rows
of the blocks they share, and zero columns are left out. The groups are read from J's
exact zeros at every call, so nothing is assumed about which residual reads which output
and the result is JᵀJ up to the order of the sums. Measured (1 thread, shared 2-core box):
the cavity's J at [2,20,3] G=20, 6801 × 2700, 1753 live columns in 5 groups, 0.37x the
multiply-adds and 0.34x the time of the symmetric-block product; Kovasznay's (embedded
inputs, no dead columns), 0.68x and 0.73x. Gathering the groups' columns is one copy of
J; ``stacked_jacobian`` stores J column-major so that each column is one contiguous copy
(gathering across a row-major J's rows ran ~4x slower and ate the saving on Kovasznay).
"""
from __future__ import annotations

import torch

__all__ = ["gram", "gram_live", "structured_flops"]

# below this many columns one product is as fast as the blocks (BLAS overheads)
_MIN_COLUMNS = 768
# columns per block: large enough for full-speed products
_BLOCK = 384
# a diagonal block (XᵀX of one column chunk) is split into pieces of about this many
# columns and only its lower block triangle multiplied: a whole-chunk product computes
# both triangles, and the diagonal chunks held ~25 % of the cavity's grouped
# multiply-adds at [2,12,3] G=10 (docs/navier_stokes.md, session 8)
_DIAG_BLOCK = 128
# a residual block of fewer rows (a pinned value, a few data points) is counted as
# touching every live column: its own column set would split the groups for no saving
_SMALL_BLOCK = 64
# a group of fewer columns joins the group of all blocks (tiny products run slowly)
_MIN_GROUP = 32
# the grouped product must save at least this fraction of the dense one's work to pay
# for gathering the columns (one copy of J)
_MIN_SAVING = 0.15
# the gathered columns' memory is kept between calls up to this size
_KEEP_BYTES = 2 ** 28


def gram(J: torch.Tensor, rows=None) -> torch.Tensor:
    """JᵀJ (P, P) of J (M, P), exactly symmetric. ``rows``: optional (start, stop) of each
    residual block, in order and covering J's rows: products between column groups then
    run only over the blocks where both are non-zero."""
    A, order = gram_live(J, rows)
    if order is None:
        return A
    p = J.shape[1]
    full = J.new_zeros(p, p)
    full[order[:, None], order[None, :]] = A
    return full


def gram_live(J: torch.Tensor, rows=None, work=None):
    """(A, order): with ``order`` None, A = JᵀJ (P, P); else ``order`` lists J's columns
    that are not identically zero, grouped, and A = JᵀJ restricted to them in that order
    (JᵀJ is zero in every other row and column). LM solves in these columns: a zero
    column of J has a zero gradient and a zero row of JᵀJ, so its step is exactly 0.
    ``work``: a dict the caller keeps between calls, for the gathered columns' and the
    result's memory (the result is then overwritten by the next call)."""
    if rows is not None and len(rows) > 0 and J.device.type == "cpu":
        plan = _plan(J, rows)
        if plan is not None:
            return _grouped(J, *plan, work=work), plan[0]
    return _dense(J, work), None


def _square(J, n, work):
    """An n × n result matrix; with ``work``, its memory kept there between calls up to
    ``_KEEP_BYTES`` (above glibc's 32 MB mmap threshold a fresh one page-faults at every
    call: [2,20,3] k=5 G=20, n = 2687, 58 MB)."""
    buf = work.get("gram") if work is not None else None
    if buf is None or buf.numel() < n * n or buf.dtype != J.dtype or buf.device != J.device:
        buf = J.new_empty(n * n)
        if work is not None and buf.numel() * buf.element_size() <= _KEEP_BYTES:
            work["gram"] = buf
    return buf[:n * n].view(n, n)


def _dense(J, work=None):
    m, p = J.shape
    if p < _MIN_COLUMNS or J.device.type != "cpu":
        # GPU: one product is fast and the blocks' launches would cost more than they save
        return J.T @ J
    b = max(2, p // _BLOCK)
    edges = [round(i * p / b) for i in range(b + 1)]
    A = _square(J, p, work)
    for i in range(b):
        a, c = edges[i], edges[i + 1]
        _symmetric(J, a, c, [(0, m)], A)
        if c < p:
            row = J[:, a:c].T @ J[:, c:]
            A[a:c, c:] = row
            A[c:, a:c] = row.T
    return A


def _pieces(n):
    """How many pieces a diagonal chunk of n columns is split into."""
    return max(1, round(n / _DIAG_BLOCK))


def _symmetric(X, a, b, ranges, A):
    """A[a:b, a:b] = X[r, a:b]ᵀ X[r, a:b] summed over the row ranges r, exactly
    symmetric: the chunk split into pieces, the products of the lower block triangle
    formed and mirrored ((s + 1) / 2s of the whole product's work for s pieces)."""
    s = _pieces(b - a)
    edges = [a + round(i * (b - a) / s) for i in range(s + 1)]
    for p in range(s):
        e0, e1 = edges[p], edges[p + 1]
        for q in range(p, s):
            f0, f1 = edges[q], edges[q + 1]
            block = A[f0:f1, e0:e1]
            _product(X, f0, f1, e0, e1, ranges, block)
            if q != p:
                A[e0:e1, f0:f1] = block.T
            else:
                # a square piece's product is symmetric only up to rounding: mirror its
                # lower triangle so that A is exactly symmetric, as LM's Cholesky expects
                block.copy_(block.tril() + block.tril(-1).T)


def _product(X, a, b, c, d, ranges, block):
    """block = Σ over the row ranges of X[r, a:b]ᵀ X[r, c:d] (zero when no range)."""
    if not ranges:
        block.zero_()
    for k, (r0, r1) in enumerate(ranges):
        if k == 0:
            torch.mm(X[r0:r1, a:b].T, X[r0:r1, c:d], out=block)
        else:
            block.addmm_(X[r0:r1, a:b].T, X[r0:r1, c:d])


def _symmetric_flops(n):
    s = _pieces(n)
    return n * n * (s + 1) / (2 * s)


def _dense_flops(m, p, symmetric=False):
    """Multiply-adds of ``_dense``; ``symmetric``: of its blocked route whatever the size
    (what the grouped route's saving is judged against: its diagonal chunks are split
    the same way, so the split alone must not count as a saving of the groups)."""
    if p < _MIN_COLUMNS and not symmetric:
        return m * p * p
    b = max(2, p // _BLOCK)
    edges = [round(i * p / b) for i in range(b + 1)]
    return m * sum(_symmetric_flops(c - a) + (c - a) * (p - c) for a, c in zip(edges, edges[1:]))


def _nonzero_columns(Jb):
    """Which columns of Jb hold a non-zero (or a NaN: it must reach the solve). Each
    column's largest entry (``any`` first converts J to bool: ~4x slower), then the
    smallest only where the largest is 0 (memory bandwidth bounds this: J is the step's
    largest tensor)."""
    if Jb.shape[0] == 0:
        return Jb.new_zeros(Jb.shape[1], dtype=torch.bool)
    JT = Jb.T if Jb.stride(0) == 1 else Jb.T.contiguous()     # (P, rows), rows contiguous
    live = JT.amax(1) != 0
    rest = (~live).nonzero()[:, 0]
    if rest.numel():
        live[rest] = JT.index_select(0, rest).amin(1) != 0
    return live


def _ranges(rows, members):
    """The row ranges of the blocks in ``members`` (sorted block indices), adjacent
    blocks merged."""
    out = []
    for i in members:
        a, b = rows[i]
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _plan(J, rows):
    """(live column order, chunks) for the grouped product, or None when it would not
    save enough. chunks: [(start, stop) in the gathered columns, set of blocks]."""
    m, p = J.shape
    nb = len(rows)
    if nb > 62:
        return None
    masks = torch.stack([_nonzero_columns(J[a:b]) for a, b in rows])    # (blocks, P)
    live = masks.any(0)
    small = torch.tensor([b - a < _SMALL_BLOCK for a, b in rows], device=J.device)
    masks = masks | (small[:, None] & live[None, :])
    weights = torch.tensor([1 << i for i in range(nb)], dtype=torch.int64, device=J.device)
    sig = (masks.long() * weights[:, None]).sum(0)
    full = (1 << nb) - 1
    values, counts = torch.unique(sig[live], return_counts=True)
    small_groups = [int(v) for v, c in zip(values.tolist(), counts.tolist()) if c < _MIN_GROUP and v != full]
    for v in small_groups:
        sig[sig == v] = full
    sig = torch.where(live, sig, torch.zeros_like(sig))
    groups = sorted({int(v) for v in sig[live].tolist()}, key=lambda v: -bin(v).count("1"))
    if len(groups) <= 1 and bool(live.all()):
        return None                     # no structure: the plain blocked product
    order, chunks, at = [], [], 0
    for v in groups:
        cols = (sig == v).nonzero()[:, 0]
        members = frozenset(i for i in range(nb) if v >> i & 1)
        n = cols.numel()
        pieces = max(1, round(n / _BLOCK))
        edges = [at + round(i * n / pieces) for i in range(pieces + 1)]
        chunks += [((edges[i], edges[i + 1]), members) for i in range(pieces)]
        order.append(cols)
        at += n
    if _flops(chunks, rows) > (1 - _MIN_SAVING) * _dense_flops(m, p, symmetric=True):
        return None
    return torch.cat(order) if order else sig.new_zeros(0), chunks, rows


def _flops(chunks, rows):
    flops = 0
    for i, ((a, b), si) in enumerate(chunks):
        for (c, d), sj in chunks[i:]:
            n = sum(rows[k][1] - rows[k][0] for k in si & sj)
            flops += n * (_symmetric_flops(b - a) if c == a else (b - a) * (d - c))
    return flops


def _columns(J, order, work):
    """J[:, order]; a column-major J (``stacked_jacobian``'s layout) is gathered as rows of
    Jᵀ, contiguous copies (~4x faster than gathering across a row-major J's rows), into
    ``work["columns"]`` when it is large enough (a fresh tensor of J's size costs its page
    faults at every call)."""
    if not (J.stride(0) == 1 and J.shape[0] > 1):
        return J.index_select(1, order)
    n, m = order.numel(), J.shape[0]
    buf = work.get("columns") if work is not None else None
    if buf is None or buf.numel() < n * m or buf.dtype != J.dtype or buf.device != J.device:
        buf = J.new_empty(J.shape[1] * m)
        # kept only while small: a kept copy of a large J doubles what LM holds between
        # steps, and there the products outweigh the page faults
        if work is not None and buf.numel() * buf.element_size() <= _KEEP_BYTES:
            work["columns"] = buf
    out = buf[:n * m].view(n, m)
    torch.index_select(J.T, 0, order, out=out)
    return out.T


def _grouped(J, order, chunks, rows, work=None):
    Jg = _columns(J, order, work)                                        # live columns, grouped
    n = Jg.shape[1]
    Ag = _square(J, n, work)
    for i, ((a, b), si) in enumerate(chunks):
        for (c, d), sj in chunks[i:]:
            ranges = _ranges(rows, sorted(si & sj))
            if c == a:
                _symmetric(Jg, a, b, ranges, Ag)
                continue
            block = Ag[a:b, c:d]
            _product(Jg, a, b, c, d, ranges, block)
            Ag[c:d, a:b] = block.T
    return Ag


def structured_flops(J, rows):
    """(grouped, dense) multiply-adds of ``gram(J, rows)``, for the benchmarks' notes."""
    plan = _plan(J, rows) if rows else None
    dense = _dense_flops(*J.shape)
    return (dense if plan is None else _flops(plan[1], rows)), dense
