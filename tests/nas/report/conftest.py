import dataclasses
import os
from pathlib import Path

import pytest

from nas.report.browser import find_chromium

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """A finished run of studies/smoke.yaml (6 trials, dummy evaluator, CPU latency)."""
    from nas.search.runner import run_study
    from nas.study.prepare import load

    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    prepared = dataclasses.replace(load(ROOT / "studies" / "smoke.yaml"), run_dir=run_dir)
    summary = run_study(prepared, stream=None)
    assert summary.finished
    return run_dir


@pytest.fixture(scope="session")
def chromium():
    """Path of a headless Chromium (``$NAS_CHROMIUM`` or one on the PATH); the browser tests are
    skipped, saying why, without one (and fail instead under CI: tests/conftest.py). Nothing is
    installed here: .ci/run installs Debian's chromium."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need playwright: pip install -e '.[dev]'")
    path = find_chromium()
    if path is None:
        explicit = os.environ.get("NAS_CHROMIUM")
        where = f"NAS_CHROMIUM={explicit} does not exist" if explicit else \
            "no chromium or google-chrome on the PATH"
        pytest.skip(f"browser tests need Chromium ({where}): install Debian's chromium package "
                    "(as .ci/run does) or set NAS_CHROMIUM")
    return path
