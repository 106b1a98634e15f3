"""The ``>>>`` examples of the ACoL module and of the synthetic pets generator run (the
project-wide list in tests/test_doctests.py does not name these modules)."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch


@pytest.mark.parametrize("name", ["pyseg.interpret.acol", "pyseg.data.synthetic"])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module, globs={**vars(module), "torch": torch})
             if t.examples]
    assert tests, f"{name} has no docstring example"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of {name} failed"


def _interpret_modules():
    import pkgutil

    import pyseg.interpret as pkg
    return sorted(f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__))


@pytest.mark.parametrize("name", _interpret_modules())
def test_examples_run_with_module_globals_only(name):
    # As ``pytest --doctest-modules`` runs them: no names injected, so an example that uses
    # ``torch`` without importing it fails here.
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of {name} failed"
