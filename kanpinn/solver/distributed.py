"""Data parallel over ``torch.distributed``: the collectives a solve needs, in one place.

Under ``torchrun --nproc_per_node=N`` each process holds the whole model and a share of
the collocation points. Every rank draws the same point set (the single-process one, from
the run's seed) and keeps the rows ``rank::world``, so the union over ranks is exactly the
set one process would train on and an N-process run solves the same discrete problem as
a 1-process run (their results agree to rounding); resampling rounds follow the same rule.
The loss is the global mean: each rank weights its rows by 1/world (``PINNLoss.world``),
and the optimisers sum across ranks what they need (loss, gradients; JᵀJ and Jᵀr for
Levenberg-Marquardt), so every rank takes the identical step and the models never drift.
Grid updates see the points of all ranks. Only rank 0 prints, shows progress and writes
files; a checkpoint holds the points of every rank.

The process group is made from torchrun's environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``...) when the script has not made one: gloo on CPU, NCCL on CUDA, with a
timeout on every collective (``KANPINN_DIST_TIMEOUT`` seconds, default 300), so a rank
that dies stops the others with a clear error instead of a hang.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta

import torch

from ..errors import KanpinnError

__all__ = ["Comm", "DistComm", "setup", "world_from_env", "gather_uneven", "is_main_process"]


def is_main_process() -> bool:
    """False on every data-parallel rank but 0 (they neither print results nor write
    files); True outside torch.distributed."""
    import torch.distributed as dist
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class Comm:
    """The single-process case: every collective is the identity."""
    rank, world = 0, 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over ranks, in place; returns it."""
        return t

    def sum_float(self, v: float) -> float:
        return float(v)

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """The rows of every rank, rank 0's first (equal row counts)."""
        return t

    def broadcast_(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        return t

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def check_same(self, what: str, value) -> None:
        """Raise on every rank when ranks disagree about ``value`` (JSON-able)."""

    def shard(self, n: int):
        """The slice of n rows this rank keeps."""
        return slice(0, n)


def world_from_env() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise KanpinnError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} is not an integer") from None


def _timeout():
    raw = os.environ.get("KANPINN_DIST_TIMEOUT", "300")
    try:
        return timedelta(seconds=float(raw))
    except ValueError:
        raise KanpinnError(f"KANPINN_DIST_TIMEOUT={raw!r} is not a number of seconds") from None


class DistComm(Comm):
    """Collectives over the default process group; failures become clear errors."""

    def __init__(self, device):
        import torch.distributed as dist
        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = device

    def _run(self, what, fn):
        try:
            return fn()
        except KanpinnError:
            raise
        except Exception as e:   # noqa: BLE001 - any backend failure means a lost peer
            raise KanpinnError(f"data-parallel {what} failed on rank {self.rank} of {self.world} "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                               "another process probably died or timed out: see its output") from None

    def sum_(self, t):
        self._run("all-reduce", lambda: self.dist.all_reduce(t))
        return t

    def sum_float(self, v):
        t = torch.tensor([float(v)], dtype=torch.float64, device=self.device)
        return float(self.sum_(t)[0])

    def gather_rows(self, t):
        parts = [torch.empty_like(t) for _ in range(self.world)]
        self._run("all-gather", lambda: self.dist.all_gather(parts, t.contiguous()))
        return torch.cat(parts, 0)

    def broadcast_(self, t, src=0):
        self._run("broadcast", lambda: self.dist.broadcast(t, src))
        return t

    def any(self, flag):
        t = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64, device=self.device)
        return bool(self.sum_(t)[0] > 0)

    def check_same(self, what, value):
        text = json.dumps(value, sort_keys=True, default=str)
        digest = hashlib.sha256(text.encode()).digest()[:8]
        mine = torch.tensor(list(digest), dtype=torch.float64, device=self.device)
        every = self.gather_rows(mine[None])
        differ = [r for r in range(self.world) if not torch.equal(every[r], every[0])]
        if differ:
            raise KanpinnError(f"data-parallel ranks disagree about the {what}: rank(s) {differ} differ from "
                               "rank 0; every process must run the same problem, model and options "
                               "(same seed too)")

    def shard(self, n):
        if n < self.world:
            raise KanpinnError(f"{n} points cannot be split across {self.world} processes; ask for at least "
                               f"{self.world} (n_interior/n_boundary) or run fewer processes")
        return slice(self.rank, None, self.world)


def setup(device: torch.device) -> Comm:
    """The communicator for this solve: the script's process group, one made from
    torchrun's environment, or the single-process ``Comm``."""
    import torch.distributed as dist
    if not dist.is_available():
        return Comm()
    if not dist.is_initialized():
        if world_from_env() <= 1:
            return Comm()
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend, timeout=_timeout())
        except Exception as e:   # noqa: BLE001
            raise KanpinnError(f"could not join the data-parallel process group ({type(e).__name__}: {e}); "
                               "run under torchrun, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT") from None
    if dist.get_world_size() <= 1:
        return Comm()
    return DistComm(device)


def gather_uneven(comm: Comm, rows: torch.Tensor, n: int) -> torch.Tensor:
    """The n rows that ``comm.shard(n)`` split across ranks, back in their original
    order (rank r held rows r, r + world, ...: counts differ by at most one)."""
    world = comm.world
    size = -(-n // world)
    padded = rows.new_zeros((size,) + tuple(rows.shape[1:]))
    padded[:rows.shape[0]] = rows
    every = comm.gather_rows(padded).reshape((world, size) + tuple(rows.shape[1:]))
    # original index i sits on rank i % world at position i // world
    return every.transpose(0, 1).reshape((world * size,) + tuple(rows.shape[1:]))[:n]
