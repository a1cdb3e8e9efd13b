"""Who drives a study: one driver per run folder; several drivers on one PostgreSQL study."""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from nas.results.outcome import TrialStatus, count_trials
from nas.search.lease import LOCK_FILE, RunLock
from nas.study.config import StudyError
from tests.nas.search.test_runner import SMOKE, _cli_run, _killed_at, _snapshot


def test_a_run_folder_is_held_by_one_driver_at_a_time(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(StudyError) as err:
            RunLock(tmp_path).acquire()
    message = str(err.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert f"kill {os.getpid()}" in message and "\n" not in message
    with RunLock(tmp_path):  # released: the next driver takes it
        pass


def test_a_killed_holder_releases_the_folder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import pathlib, sys\nfrom nas.search.lease import RunLock\n"
         "RunLock(pathlib.Path(sys.argv[1])).acquire()\nprint('held', flush=True)\n"
         "sys.stdin.read()", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(StudyError, match=f"pid {holder.pid} "):
        RunLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with RunLock(tmp_path):  # the kernel released the dead process's hold
        pass


def _wait_until(condition, what, timeout=300):
    """Poll ``condition`` until it holds (an event another process causes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:  # a safety bound for a hung process, not a timing check
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def _running(load):
    try:
        return any(t.state.name == "RUNNING" for t in load())
    except (KeyError, FileNotFoundError, ValueError):  # not created yet
        return False


@pytest.mark.slow
def test_a_second_driver_on_a_journal_study_is_refused_and_the_first_goes_on(tmp_path):
    data = yaml.safe_load(SMOKE.read_text())
    go = tmp_path / "go"  # the first driver's trials wait for it: it is still running below
    data["evaluator"].update(seconds=0.2, hold=str(go))
    data["trials"] = 4
    run_dir, command = _cli_run(tmp_path, data)
    first = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    _wait_until(lambda: _running(lambda: _snapshot(run_dir)), "a running trial")
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    go.touch()
    assert second.returncode == 2, second.stderr
    assert second.stderr.startswith(f"nas: error: {run_dir}: the study is being run by another")
    assert f"pid {first.pid} on host {socket.gethostname()}" in second.stderr
    assert second.stderr.count("\n") == 1
    assert first.wait(timeout=600) == 0, first.stderr.read()
    counts = count_trials(_snapshot(run_dir))
    assert counts.evaluated == 4 and counts.interrupted == 0 and counts.running == 0
    assert (run_dir / LOCK_FILE).exists()


def _pg_study(tmp_path, postgres_url, name, **changes):
    data = yaml.safe_load(SMOKE.read_text())
    data.update({"name": name, "storage": postgres_url, "trials": 8, **changes})
    data["evaluator"]["seconds"] = 1.0
    data["workers"] = {**data["workers"], "concurrent": 1}
    study_file = tmp_path / f"{name}.yaml"
    study_file.write_text(yaml.safe_dump(data))
    return [[sys.executable, "-m", "nas.cli", "run", str(study_file), "--output",
             str(tmp_path / folder), "--quiet"] for folder in ("a", "b")]


def _pg_trials(postgres_url, name):
    return optuna.load_study(study_name=name, storage=postgres_url).get_trials(deepcopy=False)


def _fixed_once(trials):
    fixed = [t.user_attrs["fixed_point"] for t in trials
             if t.user_attrs.get("fixed_point") and TrialStatus.of(t) is TrialStatus.OK]
    return sorted(fixed) == ["mobilevit_xxs", "mobilevitv3_xxs"]


@pytest.mark.slow
def test_two_drivers_on_one_postgresql_study_end_with_its_trials(tmp_path, postgres_url):
    gate = tmp_path / "go"
    first_command, second_command = _pg_study(tmp_path, postgres_url, "two_drivers")
    study_file = pathlib.Path(first_command[4])
    data = yaml.safe_load(study_file.read_text())
    data["evaluator"]["hold"] = str(gate)  # no trial ends before both drivers run one
    study_file.write_text(yaml.safe_dump(data))
    first = subprocess.Popen(first_command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    # The second driver starts while the first one is running a trial: it must not take it.
    _wait_until(lambda: _running(lambda: _pg_trials(postgres_url, "two_drivers")),
                "a running trial")
    second = subprocess.Popen(second_command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    _wait_until(lambda: len({t.user_attrs.get("driver")
                             for t in _pg_trials(postgres_url, "two_drivers")
                             if t.state.name == "RUNNING"}) == 2, "a running trial per driver")
    gate.touch()
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert second.wait(timeout=600) == 0, second.stderr.read()
    trials = _pg_trials(postgres_url, "two_drivers")
    counts = count_trials(trials)
    assert counts.evaluated == 8 and counts.running == 0 and counts.waiting == 0
    assert counts.interrupted == 0  # neither driver reaped the other's live trials
    assert _fixed_once(trials)
    drivers = {t.user_attrs.get("driver") for t in trials}
    assert len(drivers) == 2  # both asked for trials


@pytest.mark.slow
def test_the_trials_of_a_dead_driver_are_requeued_by_a_live_one(tmp_path, postgres_url,
                                                                cpu_hog):
    first_command, second_command = _pg_study(tmp_path, postgres_url, "dead_driver", trials=5)
    study_file = pathlib.Path(first_command[4])
    data = yaml.safe_load(study_file.read_text())
    data["workers"].update(heartbeat_seconds=1, heartbeat_grace_seconds=2)
    study_file.write_text(yaml.safe_dump(data))
    _killed_at("returned@2", first_command, tmp_path)  # one recorded, one in hand, unrecorded
    killed = _pg_trials(postgres_url, "dead_driver")
    stale = sorted(t.number for t in killed if t.state.name == "RUNNING")
    assert stale
    second = subprocess.run(second_command, cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr
    trials = _pg_trials(postgres_url, "dead_driver")
    counts = count_trials(trials)
    assert counts.evaluated == 5 and counts.running == 0 and counts.waiting == 0
    requeued = sorted(t.user_attrs["requeued_from"] for t in trials
                      if "requeued_from" in t.user_attrs)
    assert requeued == stale and counts.interrupted == len(stale)
    assert _fixed_once(trials)


def test_a_driver_never_reaps_its_own_trials_when_its_heartbeat_lags(tmp_path, postgres_url):
    import dataclasses

    from nas.search.ledger import Ledger
    from nas.study.prepare import load

    study_file = pathlib.Path(_pg_study(tmp_path, postgres_url, "lagging")[0][4])
    data = yaml.safe_load(study_file.read_text())
    data["workers"].update(heartbeat_seconds=1, heartbeat_grace_seconds=2)
    study_file.write_text(yaml.safe_dump(data))
    prepared = dataclasses.replace(load(study_file), run_dir=tmp_path / "a")
    ledger = Ledger(prepared, prepared.config)  # its heartbeat thread is never started
    try:
        with ledger.lock.held():
            trial = ledger.ask()
        # A beat a minute old: what a heartbeat thread starved for a minute would leave.
        storage = optuna.storages.RDBStorage(postgres_url)
        with storage.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE trial_heartbeats SET heartbeat = heartbeat - "
                                 "interval '60 seconds'")
        assert ledger.reap_interrupted() == 0
        assert ledger.study.trials[trial.number].state.name == "RUNNING"
    finally:
        ledger.close()
