"""Every optimizer's docstring has the update rule, the arguments, a runnable example and the
paper; the examples run."""

from __future__ import annotations

import doctest
import inspect
import re

import pytest

import jopt
from jopt.optimizers import __all__ as OPTIMIZERS

# jopt.optimizers also exports the optimizers' state classes: they document their fields.
STATES = [n for n in OPTIMIZERS if inspect.isclass(getattr(jopt, n))]


@pytest.mark.parametrize("name", STATES)
def test_state_docstring_documents_fields(name):
    cls = getattr(jopt, name)
    assert "Attributes:" in cls.__doc__
    missing = [f for f in cls._fields if not re.search(rf"\b{f}\b", cls.__doc__)]
    assert not missing, f"{name}: fields {missing} not documented"


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS if n not in STATES])
def test_docstring_has_rule_args_example_and_paper(name):
    doc = getattr(jopt, name).__doc__
    assert ".. math::" in doc and "Args:" in doc and "Example:" in doc
    assert re.search(r"\b(19|20)\d\d\b", doc), "no reference year: cite the paper"


def test_docstring_examples_run():
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for name in OPTIMIZERS:
        if name in STATES:
            continue
        for test in finder.find(getattr(jopt, name), name):
            result = runner.run(test)
            assert result.failed == 0, f"{name}: docstring example failed"
            attempted += result.attempted
    assert attempted >= 3 * (len(OPTIMIZERS) - len(STATES))
