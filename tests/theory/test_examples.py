"""Every public name of ``isokit.theory`` shows a runnable example (the doctests run them)."""

from __future__ import annotations

import inspect
import sys

import pytest

import isokit.theory


@pytest.mark.parametrize("name", isokit.theory.__all__)
def test_every_public_name_has_an_example(name):
    obj = getattr(isokit.theory, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        doc = inspect.getdoc(obj) or ""
        assert ">>>" in doc, f"isokit.theory.{name} has no >>> example in its docstring"
    else:  # a constant: an example line of the package or of its defining module uses it
        modules = [isokit.theory] + [
            m
            for m in sys.modules.values()
            if getattr(m, "__name__", "").startswith("isokit.theory.")
        ]
        examples = [
            line
            for module in modules
            for line in (module.__doc__ or "").splitlines()
            if line.strip().startswith(">>>")
        ]
        assert any(name in line for line in examples), f"no >>> example uses {name}"
