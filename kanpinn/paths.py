"""Output paths checked before the work that fills them.

``kanpinn solve --out /nonexistent/dir/run.h5`` used to train to the end and then fail to
save. :func:`check_output_path` is called first (by the CLI and the solver, for the result
file and the checkpoint) and raises a :class:`KanpinnError` saying what is wrong with the
path while nothing has been spent yet. It checks by doing: it creates and removes a
temporary file in the folder, which also catches read-only file systems and quotas that
permission bits do not show (and works when running as root).

Files are written through a temporary file next to the target and renamed into place;
:func:`temp_prefix` names those temporaries after their target, so that
:func:`clean_orphans` can remove the ones a killed process left, and only those.

Nothing here decides about overwriting: the CLI keeps its own rule (a free ``stem-N.ext``
unless ``--force``), and a checkpoint path that exists is a run to resume.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile

from .errors import KanpinnError

__all__ = ["check_output_path", "temp_prefix", "clean_orphans"]


def check_output_path(path, what="output file", create_folder=False) -> str:
    """``path`` (as a str) when a file can be written there; else :class:`KanpinnError`
    naming ``what`` (e.g. "result file", "checkpoint"), the path and the problem.
    ``create_folder``: make the missing folders first (checkpoints do).

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     ok = check_output_path(os.path.join(tmp, "run.h5"), "result file")
    >>> check_output_path("/nonexistent/dir/run.h5", "result file")
    Traceback (most recent call last):
    ...
    kanpinn.errors.KanpinnError: result file /nonexistent/dir/run.h5: the folder /nonexistent/dir does not exist; create it first or choose another path
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise KanpinnError(f"{what}: expected a file path, got {path!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise KanpinnError(f"{what} {path}: is a folder; give a file name inside it")
    if create_folder and not os.path.exists(folder):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise KanpinnError(f"{what} {path}: cannot create the folder {folder} ({e.strerror})") from None
    if not os.path.exists(folder):
        raise KanpinnError(f"{what} {path}: the folder {folder} does not exist; create it first or choose "
                           "another path")
    if not os.path.isdir(folder):
        raise KanpinnError(f"{what} {path}: {folder} is not a folder")
    if os.path.exists(path) and not os.path.isfile(path):
        raise KanpinnError(f"{what} {path}: exists and is not a regular file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".kanpinn-probe-", dir=folder)
    except OSError as e:
        raise KanpinnError(f"{what} {path}: cannot write in the folder {folder} ({e.strerror}); choose "
                           "another path") from None
    os.close(fd)
    os.unlink(probe)
    return path


def temp_prefix(path, kind) -> str:
    """The name prefix of the temporary files written on the way to ``path``
    (``.<kind>-<hash of path's name>-``): one per target, so that cleaning up never
    touches another file's temporaries."""
    name = os.path.basename(os.path.abspath(os.fspath(path)))
    return f".{kind}-{hashlib.sha256(name.encode()).hexdigest()[:12]}-"


def _process_start():
    """When this process started (seconds since the epoch), or None where unknown."""
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as fh:
            btime = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def clean_orphans(path, kind, suffix, before=None) -> list:
    """Remove the temporary files of ``path`` (``temp_prefix(path, kind)``, 8 random
    characters as ``tempfile.mkstemp`` makes them, then ``suffix``) last written before
    ``before`` (default: this process's start, less a second of clock resolution: a file
    that old was left by a process that is gone, never by a save in progress here).
    Returns the removed paths; nothing is removed where the start time is unknown."""
    before = before if before is not None else (_process_start() or -math.inf) - 1.0
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    pattern = re.compile(re.escape(temp_prefix(path, kind)) + r"[A-Za-z0-9_]{8}" + re.escape(suffix))
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        full = os.path.join(folder, name)
        try:
            if pattern.fullmatch(name) and os.path.isfile(full) and os.stat(full).st_mtime < before:
                os.remove(full)
                removed.append(full)
        except OSError:
            pass                                  # gone already, or not ours to remove
    return removed
