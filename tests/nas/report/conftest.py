import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nas.report.browser import find_chromium

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """A finished run of studies/smoke.yaml (6 trials, dummy evaluator, CPU latency)."""
    from nas.runner import run_study
    from nas.study import load

    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    prepared = dataclasses.replace(load(ROOT / "studies" / "smoke.yaml"), run_dir=run_dir)
    summary = run_study(prepared, stream=None)
    assert summary.finished
    return run_dir


def _install_chromium() -> str:
    """Install Debian's chromium package; returns why not when it cannot."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "installing it needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    result = None
    for command in (install, ["apt-get", "update", "-q"], install):
        try:
            result = subprocess.run(command, env=env, capture_output=True, text=True,
                                    timeout=900)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(command)}` took over 15 minutes"
        if command is install and result.returncode == 0:
            return ""
    lines = (result.stderr or result.stdout).strip().splitlines()
    return f"`apt-get install chromium` failed: {lines[-1] if lines else result.returncode}"


@pytest.fixture(scope="session")
def chromium():
    """Path of a headless Chromium, installed with apt-get when missing; the browser tests are
    skipped, saying why, where neither is possible."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need playwright: pip install -e '.[dev]'")
    path = find_chromium()
    if path is None:
        why = _install_chromium()
        path = find_chromium()
        if path is None:
            pytest.skip(f"browser tests need Chromium, and it could not be installed ({why}); "
                        "install Debian's chromium package or set NAS_CHROMIUM")
    return path
