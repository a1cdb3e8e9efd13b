"""Storage and cluster settings: a real PostgreSQL server, an unreachable Ray cluster."""

import pathlib
import subprocess
import sys

import yaml

from nas.results.outcome import TrialStatus
from tests.conftest import free_port

ROOT = pathlib.Path(__file__).resolve().parents[3]
SMOKE = ROOT / "studies" / "smoke.yaml"


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
    ok = [t for t in study.trials if TrialStatus.of(t) is TrialStatus.OK]
    assert len(ok) == data["trials"]
    again = subprocess.run(command[:-1], capture_output=True, text=True, timeout=300)
    assert "is finished" in again.stderr


def test_an_unreachable_cluster_is_a_quick_one_line_error(tmp_path):
    data = yaml.safe_load(SMOKE.read_text())
    data["workers"]["address"] = f"127.0.0.1:{free_port()}"
    study_file = tmp_path / "cluster.yaml"
    study_file.write_text(yaml.safe_dump(data))
    out = subprocess.run([sys.executable, "-m", "nas.cli", "run", str(study_file), "--output",
                          str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("nas: error: workers.address=127.0.0.1:")
    assert "nothing answers there" in out.stderr and out.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()
