"""A worker's fence: only the attempt the storage says is current writes its trial's files."""

import subprocess
import sys

import optuna
import pytest
import torch
import yaml

import mobilevit
from nas.search.worker import AttemptFence, AttemptSuperseded, TrialTask, execute
from nas.study.config import parse_study
from tests.nas.search.test_runner import SMOKE


def _journal_trial(tmp_path):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")))
    study = optuna.create_study(study_name="s", storage=storage)
    return study, study.ask()


def _task(tmp_path, fence, epochs=3):
    data = yaml.safe_load(SMOKE.read_text())
    data["evaluator"] = {"kind": "proxy_train", "train_images": 32, "val_images": 16,
                         "resolution": 32, "epochs": epochs, "batch_size": 16}
    evaluator = parse_study(data, "test").evaluator.build()
    spec = mobilevit.get_fixed_point("mobilevit_xxs").spec.replace(num_classes=10)
    return TrialTask(number=0, spec_json=spec.to_json(), latency_spec_json=spec.to_json(),
                     seed=1, evaluator=evaluator, oracle=None, latency_cache=None,
                     max_latency_ms=None, threads=1, device="cpu",
                     workdir=str(tmp_path / "work"), fence=fence)


def test_an_attempt_is_current_while_its_trial_runs(tmp_path):
    study, trial = _journal_trial(tmp_path)
    fence = AttemptFence(f"journal:{tmp_path / 'journal.log'}", trial._trial_id)
    assert fence.current()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # a new driver re-queued it
    assert not fence.current()


@pytest.mark.slow
def test_a_superseded_attempt_stops_before_writing_and_a_current_one_never_deletes(tmp_path):
    study, trial = _journal_trial(tmp_path)
    fence = AttemptFence(f"journal:{tmp_path / 'journal.log'}", trial._trial_id)
    result = execute(_task(tmp_path, fence, epochs=2))
    checkpoint = tmp_path / "work" / "checkpoint.pt"
    assert result.evaluation.provenance["epochs_run"] == 2
    assert checkpoint.exists()  # the driver removes it once it has recorded the result
    written = checkpoint.stat().st_mtime_ns

    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    with pytest.raises(AttemptSuperseded):
        execute(_task(tmp_path, fence, epochs=4))  # resumes at epoch 2, then is fenced out
    assert checkpoint.stat().st_mtime_ns == written
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 2
    assert not list((tmp_path / "work").glob("*.tmp"))


def test_a_worker_exits_when_its_driver_is_gone():
    driver = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    worker = subprocess.Popen(
        [sys.executable, "-c", "import socket, sys, threading\n"
         "from nas.search.worker import _driver_watch\n"
         "with _driver_watch(socket.gethostname(), int(sys.argv[1]), interval=0.05):\n"
         "    print('watching', flush=True)\n"
         "    threading.Event().wait()\n", str(driver.pid)],
        stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline() == "watching\n"
    assert worker.poll() is None  # the driver lives: the worker goes on
    driver.kill()
    driver.wait()
    assert worker.wait(timeout=120) == 70

