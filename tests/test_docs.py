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


ROOT = pathlib.Path(__file__).resolve().parents[1]
README_EXAMPLES = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


@pytest.mark.parametrize("code", README_EXAMPLES, ids=[f"example{i}" for i, _ in
                                                       enumerate(README_EXAMPLES)])
def test_readme_python_examples_run(code, tmp_path, monkeypatch):
    # From a scratch folder that has the repository's studies: the example writes its run there.
    (tmp_path / "studies").symlink_to(ROOT / "studies")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
