"""Every public name documents itself with a runnable example, and the examples pass."""

import doctest
import inspect
import warnings

import numpy
import pytest
import torch

import kanpinn

PUBLIC = list(kanpinn.__all__)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _doc(name):
    return inspect.getdoc(getattr(kanpinn, name)) or ""


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_has_example(name):
    doc = _doc(name)
    assert "Example" in doc or ">>>" in doc, f"kp.{name} has no example in its docstring"


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_examples_run(name):
    obj = getattr(kanpinn, name)
    # recurse=False: the object's own docstring, the one users see with help(kp.<name>)
    finder = doctest.DocTestFinder(recurse=False)
    globs = {"kp": kanpinn, "torch": torch, "np": numpy}
    tests = [t for t in finder.find(obj, f"kp.{name}", globs=globs) if t.examples]
    assert tests, f"kp.{name} has no >>> examples"
    runner = doctest.DocTestRunner(optionflags=FLAGS, verbose=False)
    report = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in tests:
            runner.run(t, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
