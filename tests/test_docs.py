"""The examples in docstrings and in the README run and say what they claim."""

import doctest
import importlib
import pathlib
import re

import pytest

MODULES = ["mobilevit.spec", "mobilevit.model", "mobilevit.zoo", "mobilevit", "mobilevit.complexity",
           "nas.profile"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_readme_python_example_runs():
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    exec(compile(code, "README.md", "exec"), {})
