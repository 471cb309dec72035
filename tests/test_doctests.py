"""Run the docstring examples of the installed package (sqlglot's test_docs.py idea)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import netboard

MODULES = sorted(m.name for m in pkgutil.walk_packages(netboard.__path__, "netboard."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
