"""`nas report --serve` rebuilds the page while a study runs; `nas dashboard` serves Optuna's."""

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import optuna
import pytest

from nas.errors import NasError
from nas.report.serve import ReportServer
from nas.results.runs import open_run


def _get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_report_is_rebuilt_when_a_trial_finishes(smoke_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    server = ReportServer(run_dir, port=0, interval_s=0.2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = _get(server.url)
        assert "const NAS_REFRESH_S = 0.2;" in page  # the page polls version.json
        before = json.loads(_get(server.url + "version.json"))["version"]
        study, _ = open_run(run_dir)
        trial = optuna.trial.create_trial(
            values=[99.0, 1.0], params={}, distributions={},
            user_attrs={"status": "ok", "accuracy": 99.0, "latency_ms": 1.0})
        study.add_trial(trial)  # what a running study's next result does to the storage
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            after = json.loads(_get(server.url + "version.json"))["version"]
            if after != before:
                break
            time.sleep(0.2)
        assert after != before
        assert "99.00 (trial" in _get(server.url)  # the header's best accuracy
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_a_busy_port_is_one_line(smoke_run, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(NasError, match=f"--port {port}: cannot listen on 127.0.0.1"):
            ReportServer(smoke_run, output=tmp_path / "r", port=port)


def test_nas_dashboard_serves_the_study(smoke_run):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "dashboard", str(smoke_run),
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        studies = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                studies = json.loads(_get(f"http://127.0.0.1:{port}/api/studies"))
                break
            except OSError:
                time.sleep(0.5)
        assert studies is not None, proc.stderr.read() if proc.poll() is not None else "timeout"
        names = [s["study_name"] for s in studies["study_summaries"]]
        assert names == ["smoke"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
