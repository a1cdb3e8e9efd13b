import glob
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
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


@pytest.fixture
def cpu_hog():
    """Another process keeping one core busy while the test runs, as on a loaded CI machine."""
    import sys

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield hog
    hog.kill()
    hog.wait()


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray():
    yield
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on a free port (skipped where PostgreSQL is not installed;
    under CI that fails instead, see above; .ci/run installs Debian's postgresql)."""
    pytest.importorskip("psycopg", reason="needs the postgres extra (psycopg)")
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    initdb = shutil.which("initdb") or (bins and os.path.join(bins[-1], "initdb"))
    if not initdb or not os.path.exists(initdb):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: install "
                    "Debian's postgresql package (as .ci/run does)")
    pg_ctl = os.path.join(os.path.dirname(os.path.realpath(initdb)), "pg_ctl")
    prefix: list[str] = []
    # Not under pytest's temporary folder: that one is private to the user running the tests.
    folder = pathlib.Path(tempfile.mkdtemp(prefix="nas-test-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server")
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "nas"], check=True,
                   capture_output=True)
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    import psycopg

    with psycopg.connect(f"postgresql://nas@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE optuna")
    yield f"postgresql://nas@127.0.0.1:{port}/optuna"
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                   capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_with_iphone():
    """A local Ray instance with one unit of the custom resource ``iphone`` (the resource a Mac
    with a tethered iPhone offers a cluster)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, resources={"iphone": 1}, include_dashboard=False,
             object_store_memory=256 * 2**20)
    yield ray
    ray.shutdown()
