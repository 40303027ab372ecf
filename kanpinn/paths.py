"""Output paths checked before the work that fills them.

``kanpinn solve --out /nonexistent/dir/run.h5`` used to train to the end and then fail to
save. :func:`check_output_path` is called first (by the CLI and the solver, for the result
file and the checkpoint) and raises a :class:`KanpinnError` saying what is wrong with the
path while nothing has been spent yet. It checks by doing: it creates and removes a
temporary file in the folder, which also catches read-only file systems and quotas that
permission bits do not show (and works when running as root).

It never decides about overwriting: the CLI keeps its own rule (a free ``stem-N.ext``
unless ``--force``), and a checkpoint path that exists is a run to resume.
"""
from __future__ import annotations

import os
import tempfile

from .errors import KanpinnError

__all__ = ["check_output_path"]


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
