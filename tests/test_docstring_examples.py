"""The `>>>` examples in docstrings are run, so the documentation cannot drift from the behaviour."""

import doctest
import importlib

import pytest

MODULES = ["zsclip.glossary", "zsclip_train.glossary"]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_hold(module_name: str) -> None:
    results = doctest.testmod(importlib.import_module(module_name))
    assert results.attempted > 0, f"{module_name} has no examples to run"
    assert results.failed == 0
