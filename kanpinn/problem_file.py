"""Problem files: a Python file that defines ``problem = kp.Problem(...)`` (and optionally
``suggested = {...}``, plain values hinting at a model and sampling budget).

Loading runs the file: it is the user's own code, run because they asked for it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys

from .errors import KanpinnError

__all__ = ["load_problem", "load_problem_module"]


def load_problem_module(path):
    """Import the file at ``path`` as a module and return it (checked to define a
    ``problem`` that is a :class:`kanpinn.Problem`). The problem's name defaults to the
    file's stem when the file does not set one."""
    from .problem import Problem
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise KanpinnError(f"problem file {path} does not exist")
    if not path.endswith(".py"):
        raise KanpinnError(f"problem file {path} must be a Python file (.py) defining `problem`")
    stem = os.path.splitext(os.path.basename(path))[0]
    tag = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
    mod_name = f"kanpinn_problem_{tag}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise KanpinnError(f"problem file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except KanpinnError as e:
        sys.modules.pop(mod_name, None)
        raise KanpinnError(f"problem file {path}: {e}") from None
    except SystemExit as e:          # sys.exit() in a problem file must not end the caller silently
        sys.modules.pop(mod_name, None)
        raise KanpinnError(f"problem file {path} called sys.exit({e.code!r}) instead of defining `problem`") from None
    except Exception as e:  # noqa: BLE001 - the user's code failed: say where, in one line
        sys.modules.pop(mod_name, None)
        tb = e.__traceback__
        line = None
        while tb is not None:
            if os.path.abspath(tb.tb_frame.f_code.co_filename) == os.path.abspath(path):
                line = tb.tb_lineno
            tb = tb.tb_next
        where = f" (line {line})" if line else ""
        raise KanpinnError(f"problem file {path} failed to run{where}: {type(e).__name__}: {e}") from e
    if not hasattr(module, "problem"):
        raise KanpinnError(f"problem file {path} does not define `problem` (a kp.Problem)")
    if not isinstance(module.problem, Problem):
        raise KanpinnError(f"problem file {path}: `problem` is a {type(module.problem).__name__}, "
                           "not a kp.Problem")
    if module.problem.name == "problem":
        module.problem.name = stem
    suggested = getattr(module, "suggested", None)
    if suggested is not None and not isinstance(suggested, dict):
        raise KanpinnError(f"problem file {path}: `suggested` must be a dict of plain values")
    return module


def load_problem(path):
    """The ``problem`` defined by the Python file at ``path``."""
    return load_problem_module(path).problem
