"""Every optimizer's docstring has the update rule, the arguments, a runnable example and the
paper; the examples run."""

from __future__ import annotations

import doctest
import re

import pytest

import jopt
from jopt.optimizers import __all__ as OPTIMIZERS


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_docstring_has_rule_args_example_and_paper(name):
    doc = getattr(jopt, name).__doc__
    assert ".. math::" in doc and "Args:" in doc and "Example:" in doc
    assert re.search(r"\b(19|20)\d\d\b", doc), "no reference year: cite the paper"


def test_docstring_examples_run():
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for name in OPTIMIZERS:
        for test in finder.find(getattr(jopt, name), name):
            result = runner.run(test)
            assert result.failed == 0, f"{name}: docstring example failed"
            attempted += result.attempted
    assert attempted >= 3 * len(OPTIMIZERS)
