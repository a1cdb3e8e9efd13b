"""The one architectural rule: imports flow mobilevit <- search_spaces <- nas."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAVY = ("optuna", "ray", "coremltools", "plotly", "fvcore", "pandas", "yaml")


def _imported_packages(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_mobilevit_imports_only_torch_and_the_standard_library():
    imported = _imported_packages("mobilevit")
    assert not imported & {"search_spaces", "nas", *HEAVY}
    assert imported - set(sys.stdlib_module_names) <= {"torch", "mobilevit"}


def test_search_spaces_do_not_import_nas():
    assert "nas" not in _imported_packages("search_spaces")


def test_importing_the_model_package_loads_no_heavy_dependency():
    code = ("import sys, mobilevit, search_spaces; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_cli_help_is_fast_because_heavy_imports_are_lazy():
    code = "import sys, nas.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("argv", [["zoo"], ["zoo", "--json"], ["spec", "mobilevit_s"], ["space"]])
def test_commands_that_read_specs_build_no_network(argv):
    # They answer from the specs and the analytic counts: torch, fvcore, Ray, Optuna, pandas
    # and the study config's pydantic would cost seconds of imports for nothing.
    code = ("import sys; from nas.cli import main; main(sys.argv[1:]); "
            "print([m for m in ('torch', 'fvcore', 'ray', 'optuna', 'pandas', 'pydantic') "
            "if m in sys.modules], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stderr.strip().splitlines()[-1] == "[]"


def test_a_latency_prediction_neither_converts_nor_imports_torch(tmp_path):
    # The predictor reads written-down unit programs (nas.latency.templates): no torch.export,
    # no coremltools, so `nas latency` answers in well under a second.
    code = ("import sys; from nas.cli import main; main(sys.argv[1:]); "
            "print([m for m in ('torch', 'coremltools') if m in sys.modules], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, "latency", "mobilevitv3_xs"],
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "NAS_CACHE_DIR": str(tmp_path)})
    assert out.stderr.strip().splitlines()[-1] == "[]"
    assert "predicted" in out.stdout
