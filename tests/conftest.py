import os
import tempfile

import pytest

pytest_plugins = ["pytester"]  # tests/test_services.py tests the CI rule below in a scratch project

# Tests never touch the user's latency cache; set before any Ray worker starts (they inherit it).
os.environ.setdefault("NAS_CACHE_DIR", tempfile.mkdtemp(prefix="nas-test-cache-"))

# Tests that need a real service outside Python. Without the service they skip, saying why; under
# CI (the CI environment variable set and not false/0/no, as .ci/run does) a skip of one of them
# fails the run instead, so a CI machine cannot silently leave the real-service path untested.
# A test needs a service when it is marked `@pytest.mark.service("NAME")` (or its module sets
# `pytestmark = pytest.mark.service("NAME")`), or when it uses one of SERVICE_FIXTURES.
SERVICES = {
    "postgres": "a PostgreSQL server (Debian: postgresql)",
    "browser": "a headless Chromium driven by playwright (Debian: chromium)",
    "ray-cluster": "a multi-node Ray cluster (ray start, from the pip-installed ray)",
}
SERVICE_FIXTURES = {"postgres_url": "postgres", "chromium": "browser"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def services_of(item: pytest.Item) -> list[str]:
    """The services a test needs: its service markers, then the service fixtures it uses."""
    names = [name for mark in item.iter_markers("service") for name in mark.args]
    names += [SERVICE_FIXTURES[f] for f in getattr(item, "fixturenames", ()) if f in SERVICE_FIXTURES]
    return list(dict.fromkeys(names))


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in item.iter_markers("service"):
            unknown = [n for n in mark.args if n not in SERVICES] or ([] if mark.args else ["(none)"])
            if unknown:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.service({', '.join(unknown)}): "
                                        f"unknown service; expected one of {', '.join(SERVICES)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        names = services_of(item)
        if names:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            reason = reason.removeprefix("Skipped: ")
            report.outcome = "failed"
            report.longrepr = (f"CI is set, and this test needs {' and '.join(names)} but was "
                               f"skipped: {reason}")
    return report


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray():
    yield
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
