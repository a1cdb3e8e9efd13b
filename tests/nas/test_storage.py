"""Storage and cluster settings: a real PostgreSQL server, an unreachable Ray cluster."""

import glob
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = ROOT / "studies" / "smoke.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on a free port (skipped where PostgreSQL is not installed;
    under CI that fails instead: tests/conftest.py; .ci/run installs Debian's postgresql)."""
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
    data, port = folder / "data", _free_port()
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


def test_a_study_on_postgresql(tmp_path, postgres_url):
    import optuna

    data = yaml.safe_load(SMOKE.read_text())
    data["storage"] = postgres_url
    study_file = tmp_path / "pg.yaml"
    study_file.write_text(yaml.safe_dump(data))
    command = [sys.executable, "-m", "nas.cli", "run", str(study_file), "--output",
               str(tmp_path / "run"), "--quiet"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    assert not (tmp_path / "run" / "journal.log").exists()  # the record is in the database
    study = optuna.load_study(study_name="smoke", storage=postgres_url)
    ok = [t for t in study.trials if t.user_attrs.get("status") == "ok"]
    assert len(ok) == 6
    again = subprocess.run(command[:-1], capture_output=True, text=True, timeout=300)
    assert "is finished" in again.stderr


def test_an_unreachable_cluster_is_a_quick_one_line_error(tmp_path):
    data = yaml.safe_load(SMOKE.read_text())
    data["workers"]["address"] = f"127.0.0.1:{_free_port()}"
    study_file = tmp_path / "cluster.yaml"
    study_file.write_text(yaml.safe_dump(data))
    out = subprocess.run([sys.executable, "-m", "nas.cli", "run", str(study_file), "--output",
                          str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("nas: error: workers.address=127.0.0.1:")
    assert "nothing answers there" in out.stderr and out.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()
