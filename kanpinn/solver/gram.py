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
inputs, no dead columns), 0.68x and 0.73x. ``stacked_jacobian`` stores J column-major:
a group's equally spaced columns (a KAN layer's block, or one output's columns of the
last layer, spaced by the number of outputs) are then read in place by BLAS as a
strided view, and only the few columns outside such runs are gathered (gathering all
of them was one copy of J per step; across a row-major J's rows it ran ~4x slower).
The diagonal chunks' products XᵀX are formed as lower block triangles of ~128-column
pieces (a whole-chunk product computes both triangles).
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
# equally spaced columns are read in place from this many on; fewer are gathered
_MIN_RUN = 32
# a group with more runs than this, or more than this fraction of its columns outside
# runs, is gathered whole (many small runs would make many small products)
_MAX_RUNS = 2
_MAX_LOOSE = 0.1
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
        _symmetric(J[:, a:c], [(0, m)], A[a:c, a:c])
        if c < p:
            row = J[:, a:c].T @ J[:, c:]
            A[a:c, c:] = row
            A[c:, a:c] = row.T
    return A


def _cut(n, size):
    """Edges 0 = e_0 < .. < e_s = n cutting n columns into s ≈ n / size equal pieces."""
    s = max(1, round(n / size))
    return [round(i * n / s) for i in range(s + 1)]


def _symmetric(X, ranges, A):
    """A = X[r]ᵀ X[r] summed over the row ranges r, exactly symmetric (A: an n × n view
    to fill, X: n columns): X's columns split into pieces, the products of the lower
    block triangle formed and mirrored ((s + 1) / 2s of the whole product's work for s
    pieces)."""
    edges = _cut(X.shape[1], _DIAG_BLOCK)
    s = len(edges) - 1
    for p in range(s):
        e0, e1 = edges[p], edges[p + 1]
        for q in range(p, s):
            f0, f1 = edges[q], edges[q + 1]
            block = A[f0:f1, e0:e1]
            _product(X[:, f0:f1], X[:, e0:e1], ranges, block)
            if q != p:
                A[e0:e1, f0:f1] = block.T
            else:
                # a square piece's product is symmetric only up to rounding: mirror its
                # lower triangle so that A is exactly symmetric, as LM's Cholesky expects
                block.copy_(block.tril() + block.tril(-1).T)


def _product(X, Y, ranges, block):
    """block = Σ over the row ranges r of X[r]ᵀ Y[r] (zero when there is no range)."""
    if not ranges:
        block.zero_()
    for k, (r0, r1) in enumerate(ranges):
        if k == 0:
            torch.mm(X[r0:r1].T, Y[r0:r1], out=block)
        else:
            block.addmm_(X[r0:r1].T, Y[r0:r1])


def _symmetric_flops(n):
    s = len(_cut(n, _DIAG_BLOCK)) - 1
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
    save enough. chunks: [((start, stop) in the order, set of blocks, source)], source
    (first column, spacing) of a run of J's columns, or None for gathered columns."""
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
        members = frozenset(i for i in range(nb) if v >> i & 1)
        cols = (sig == v).nonzero()[:, 0].tolist()
        runs, loose = _runs(cols)
        if len(runs) > _MAX_RUNS or len(loose) > _MAX_LOOSE * len(cols):
            # a group broken into many runs (columns no point reaches inside a layer's
            # block) would make many small products: it is gathered and cut as one piece
            runs, loose = [], cols
        for start, step, n in runs:
            edges = _cut(n, _BLOCK)
            for e0, e1 in zip(edges, edges[1:]):
                chunks.append(((at + e0, at + e1), members, (start + e0 * step, step)))
            order += range(start, start + n * step, step)
            at += n
        if loose:
            edges = _cut(len(loose), _BLOCK)
            for e0, e1 in zip(edges, edges[1:]):
                chunks.append(((at + e0, at + e1), members, None))
            order += loose
            at += len(loose)
    if _flops(chunks, rows) > (1 - _MIN_SAVING) * _dense_flops(m, p, symmetric=True):
        return None
    return torch.tensor(order, dtype=torch.long, device=J.device), chunks, rows


def _runs(cols):
    """Split sorted column indices into runs of equal spacing (start, step, length) of at
    least ``_MIN_RUN`` columns, and the columns left over. A run is a view of a
    column-major J that BLAS reads in place (leading dimension step·M): a KAN's last
    layer interleaves its outputs' columns (spacing = the number of outputs), and a
    system's column groups are mostly such runs, so J need not be gathered."""
    runs, loose, i, n = [], [], 0, len(cols)
    while i < n:
        j = i + 1
        if j < n:
            step = cols[j] - cols[i]
            while j + 1 < n and cols[j + 1] - cols[j] == step:
                j += 1
            j += 1
        if j - i >= _MIN_RUN:
            runs.append((cols[i], step, j - i))
            i = j
        else:
            loose.append(cols[i])
            i += 1
    return runs, loose


def _flops(chunks, rows):
    flops = 0
    for i, ((a, b), si, _) in enumerate(chunks):
        for (c, d), sj, _ in chunks[i:]:
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
        buf = J.new_empty(n * m)
        # kept only while small: a kept copy of a large J doubles what LM holds between
        # steps, and there the products outweigh the page faults
        if work is not None and buf.numel() * buf.element_size() <= _KEEP_BYTES:
            work["columns"] = buf
    out = buf[:n * m].view(n, m)
    torch.index_select(J.T, 0, order, out=out)
    return out.T


def _grouped(J, order, chunks, rows, work=None):
    n = order.numel()
    Ag = _square(J, n, work)
    if J.stride(0) == 1 and J.shape[0] > 1:
        # column-major J: a run's chunk is a strided view of J, read in place; only the
        # columns outside runs are gathered (the whole gather was one copy of J per step)
        loose = [k for k, c in enumerate(chunks) if c[2] is None]
        idx = torch.cat([order[chunks[k][0][0]:chunks[k][0][1]] for k in loose]) if loose else None
        Jl = _columns(J, idx, work) if loose else None
        views, at = [], 0
        for (a, b), _, src in chunks:
            if src is None:
                views.append(Jl[:, at:at + b - a])
                at += b - a
            else:
                start, step = src
                views.append(J[:, start:start + (b - a - 1) * step + 1:step])
    else:
        Jg = _columns(J, order, work)                                    # live columns, grouped
        views = [Jg[:, a:b] for (a, b), _, _ in chunks]
    for i, ((a, b), si, _) in enumerate(chunks):
        for j in range(i, len(chunks)):
            (c, d), sj, _ = chunks[j]
            ranges = _ranges(rows, sorted(si & sj))
            if j == i:
                _symmetric(views[i], ranges, Ag[a:b, a:b])
                continue
            block = Ag[a:b, c:d]
            _product(views[i], views[j], ranges, block)
            Ag[c:d, a:b] = block.T
    return Ag


def structured_flops(J, rows):
    """(grouped, dense) multiply-adds of ``gram(J, rows)``, for the benchmarks' notes."""
    plan = _plan(J, rows) if rows else None
    dense = _dense_flops(*J.shape)
    return (dense if plan is None else _flops(plan[1], rows)), dense
