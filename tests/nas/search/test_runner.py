"""The study runner on a real local Ray instance: end to end, faults, budgets, resume."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys

import optuna
import pytest
import yaml

import mobilevit
from nas.results.outcome import TrialStatus, count_trials
from nas.results.runs import open_run, status_text, trials_frame
from nas.search.lease import LOCK_FILE
from nas.search.ledger import Ledger
from nas.search.runner import run_study
from nas.study.config import parse_study
from nas.study.prepare import load, prepare, repair_journal

ROOT = pathlib.Path(__file__).resolve().parents[3]
SMOKE = ROOT / "studies" / "smoke.yaml"


def _study(tmp_path, **changes):
    data = yaml.safe_load(SMOKE.read_text())
    for key, value in changes.items():
        if (isinstance(value, dict) and isinstance(data.get(key), dict)
                and value.get("kind", data[key].get("kind")) == data[key].get("kind")):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return prepare(parse_study(data, "test"), "test", run_dir=tmp_path / "run")


def _files(run_dir):
    """Files of a run folder by modification time, but the driver's lock (taken by every run)."""
    return {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()
            if p.is_file() and p.name != LOCK_FILE}


def _fixed_id(name):
    return mobilevit.get_fixed_point(name).spec.replace(num_classes=10).spec_id


def test_smoke_study_runs_end_to_end_and_a_rerun_does_nothing(tmp_path):
    prepared = dataclasses.replace(load(SMOKE), run_dir=tmp_path / "run")
    summary = run_study(prepared, stream=None)
    assert summary.finished and summary.counts.evaluated == 6 and summary.counts.failed == 0
    study, _ = open_run(tmp_path / "run")
    frame = trials_frame(study)
    ok = frame[frame.status == "ok"]
    assert len(ok) == prepared.config.trials
    assert ok.accuracy.notna().all() and (ok.latency_ms > 0).all()
    assert (ok.params <= 2_000_000).all()
    assert sorted(frame.fixed_point.dropna()) == ["mobilevit_xxs", "mobilevitv3_xxs"]
    assert frame.pareto.any()
    for name in ("trials.csv", "trials.parquet", "pareto.json", "study.yaml", "journal.log",
                 "sessions.jsonl"):
        assert (tmp_path / "run" / name).exists(), name
    assert len(list((tmp_path / "run" / "specs").glob("*.json"))) == len(set(frame.spec_id))
    assert "Pareto set" in status_text(tmp_path / "run")

    before = _files(tmp_path / "run")
    again = run_study(prepared, stream=None)
    assert again.finished and again.new_trials == 0
    after = _files(tmp_path / "run")
    assert after == before  # re-running a finished study changes nothing


def test_failing_trials_are_recorded_and_the_study_goes_on(tmp_path):
    faults = {_fixed_id("mobilevit_xxs"): "raise", _fixed_id("mobilevitv3_xxs"): "nan",
              _fixed_id("mobilevitv3_xxs_l2"): "exit"}
    prepared = _study(tmp_path, evaluator={"faults": faults},
                      fixed_trials=["mobilevit_xxs", "mobilevitv3_xxs", "mobilevitv3_xxs_l2"])
    summary = run_study(prepared, stream=None)
    assert summary.finished and summary.counts.evaluated == 6 and summary.counts.ok == 3
    study, _ = open_run(tmp_path / "run")
    reasons = {t.user_attrs.get("fixed_point"): t.user_attrs.get("fail_reason")
               for t in study.trials if TrialStatus.of(t) is TrialStatus.FAILED}
    assert reasons["mobilevit_xxs"] == "RuntimeError: injected failure"
    assert reasons["mobilevitv3_xxs"] == "EvaluationError: accuracy is nan"
    assert reasons["mobilevitv3_xxs_l2"].startswith("WorkerCrashedError: the worker died")


def test_infeasible_candidates_never_reach_the_evaluator(tmp_path):
    record = tmp_path / "evaluated.txt"
    prepared = _study(tmp_path, budget={"max_params": 1_100_000}, evaluator={"record": str(record)},
                      fixed_trials=["mobilevit_xxs"], trials=4)
    summary = run_study(prepared, stream=None)
    study, _ = open_run(tmp_path / "run")
    infeasible = [t for t in study.trials if TrialStatus.of(t) is TrialStatus.INFEASIBLE]
    ok = [t for t in study.trials if TrialStatus.of(t) is TrialStatus.OK]
    evaluated = record.read_text().split()
    assert summary.counts.infeasible == len(infeasible) >= 1  # v1-XXS (1.27 M) at least
    assert sorted(evaluated) == sorted(t.user_attrs["spec_id"] for t in ok)
    for t in infeasible:
        assert t.user_attrs["spec_id"] not in evaluated
        assert t.constraints["params"] > 0  # an Optuna constraint violation the sampler sees
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert not (tmp_path / "run" / "trials" / str(t.number)).exists()
    assert all(t.constraints["params"] <= 0 for t in ok)


def test_the_same_network_is_evaluated_once(tmp_path):
    # Heads mean nothing for separable attention: every trial is the same network.
    record = tmp_path / "evaluated.txt"
    params = mobilevit.get_fixed_point("mobilevitv2_050").spec
    from search_spaces import MobileViTSpace

    fixed = {k: v for k, v in MobileViTSpace().params_for(params).items()
             if not k.endswith(".heads")}
    prepared = _study(tmp_path, space=fixed, budget={"max_params": 2_000_000},
                      evaluator={"record": str(record)}, fixed_trials=[], trials=4,
                      max_repeats=3)
    summary = run_study(prepared, stream=None)
    # The repeats are recorded with the first trial's result but do not count towards
    # `trials`: the study stops when the sampler keeps proposing the one network it has.
    assert summary.counts.ok == 4 and summary.counts.repeated == 3
    assert summary.counts.counted == 1 and not summary.finished
    assert "max_repeats" in summary.stopped_by
    assert len(record.read_text().split()) == 1
    frame = trials_frame(open_run(tmp_path / "run")[0])
    assert frame.duplicate_of.notna().sum() == 3 and frame.accuracy.nunique() == 1
    # One network, one Pareto member: the original, not its repeats.
    first = int(frame.number[frame.duplicate_of.isna()].iloc[0])
    assert summary.pareto == [first] and frame.number[frame.pareto].tolist() == [first]
    text = status_text(tmp_path / "run")
    assert "3 repeats of evaluated networks (not counted)" in text
    assert "Pareto set (1 trials" in text


def test_repeats_do_not_count_towards_trials(tmp_path):
    # Two networks in the whole space (heads do not change a separable-attention network):
    # a study of 2 trials ends with both evaluated, however often the sampler repeats one.
    params = mobilevit.get_fixed_point("mobilevitv2_050").spec
    from search_spaces import MobileViTSpace

    fixed = {k: v for k, v in MobileViTSpace().params_for(params).items()
             if not k.endswith(".heads") and k != "s5.mv2_expansion"}
    fixed["s5.mv2_expansion"] = [2, 4]
    prepared = _study(tmp_path, space=fixed, budget={"max_params": 2_000_000},
                      fixed_trials=[], trials=2, sampler={"kind": "random"})
    summary = run_study(prepared, stream=None)
    assert summary.finished and summary.counts.counted == 2
    # The seeded sampler does repeat here, so a runner that counted repeats would stop at
    # 2 trials with one network and fail below.
    assert summary.counts.repeated >= 1
    assert summary.counts.ok == 2 + summary.counts.repeated
    study, _ = open_run(tmp_path / "run")
    specs = {t.user_attrs["spec_id"] for t in study.get_trials()}
    assert len(specs) == 2


class _Clock:
    """The runner's clock, moved on by the test: minutes pass when the test says so."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_the_time_limit_stops_the_search_and_running_trials_finish(tmp_path, monkeypatch):
    from nas.search import runner

    clock = _Clock()
    monkeypatch.setattr(runner, "_now", clock)
    settle = runner._Driver.settle

    def slow_settle(self, ray, ref):  # each trial takes 6 minutes
        clock.t += 360.0
        settle(self, ray, ref)

    monkeypatch.setattr(runner._Driver, "settle", slow_settle)
    prepared = _study(tmp_path, timeout_minutes=10, trials=6)
    summary = run_study(prepared, workers=1, stream=None)
    # Started at 0 and 6 minutes; at 12 minutes no third starts.
    assert summary.stopped_by == "time limit" and not summary.finished
    assert summary.counts.ok - summary.counts.repeated == 2


def test_an_evaluator_slow_to_get_ready_does_not_use_up_the_time_limit(tmp_path, monkeypatch):
    # A supernet trained first on a busy machine took as long as the study's whole limit, and
    # the study stopped before its first trial; the limit is of the search.
    from nas.evaluators.dummy import DummyEvaluator
    from nas.search import runner

    clock = _Clock()
    monkeypatch.setattr(runner, "_now", clock)

    def for_search(self, space, budget, seed, *, label, say, threads):
        clock.t += 3600.0  # an hour of supernet training
        return self

    monkeypatch.setattr(DummyEvaluator, "for_search", for_search, raising=False)
    prepared = _study(tmp_path, timeout_minutes=10)
    summary = run_study(prepared, stream=None)
    assert summary.finished and summary.stopped_by == ""
    frame = trials_frame(open_run(tmp_path / "run")[0])
    assert sorted(frame.fixed_point.dropna()) == ["mobilevit_xxs", "mobilevitv3_xxs"]


def test_a_torn_journal_record_is_dropped(tmp_path):
    journal = tmp_path / "journal.log"
    journal.write_bytes(b'{"op_code": 0}\n{"op_code": 4, "trial_id"')
    assert repair_journal(journal)
    assert journal.read_bytes() == b'{"op_code": 0}\n'
    assert not repair_journal(journal)


def _snapshot(run_dir):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / "journal.log")))
    study = optuna.load_study(study_name="smoke", storage=storage)
    return study.get_trials(deepcopy=False)


def _cli_run(tmp_path, data):
    """The run folder and the `nas run` command line of study ``data`` written to tmp_path."""
    study_file = tmp_path / "kill.yaml"
    study_file.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"
    return run_dir, [sys.executable, "-m", "nas.cli", "run", str(study_file), "--output",
                     str(run_dir), "--quiet"]


def _killed_at(point, command, cwd):
    """Run ``command`` until the kill point ``point`` SIGKILLs its driver (and that worker)."""
    env = {**os.environ, "NAS_KILL_AT": point}
    proc = subprocess.run(command, cwd=cwd, env=env, start_new_session=True, timeout=600,
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])


@pytest.mark.slow
def test_a_study_killed_after_a_result_resumes_without_losing_or_repeating(tmp_path, cpu_hog):
    data = yaml.safe_load(SMOKE.read_text())
    data["evaluator"]["seconds"] = 0.5
    data["evaluator"]["record"] = str(tmp_path / "evaluated.txt")
    data["trials"] = 8
    run_dir, command = _cli_run(tmp_path, data)
    _killed_at("returned@4", command, tmp_path)  # three results recorded, the fourth in hand
    killed = _snapshot(run_dir)
    before = {t.number: t.values for t in killed if TrialStatus.of(t) is TrialStatus.OK}
    assert len(before) == 3
    in_hand = [t for t in killed if t.state.name == "RUNNING"]
    assert in_hand

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    trials = _snapshot(run_dir)
    counts = count_trials(trials)
    assert counts.evaluated == 8 and counts.running == 0 and counts.waiting == 0
    assert counts.interrupted == len(in_hand)  # the trials running at the kill, re-queued
    after = {t.number: t.values for t in trials if t.state.name == "COMPLETE"}
    assert all(after[n] == v for n, v in before.items())  # nothing completed was lost
    fixed = [t.user_attrs["fixed_point"] for t in trials
             if t.user_attrs.get("fixed_point") and TrialStatus.of(t) is TrialStatus.OK]
    assert sorted(fixed) == ["mobilevit_xxs", "mobilevitv3_xxs"]  # enqueued and run once each
    requeued = [t.user_attrs["requeued_from"] for t in trials if "requeued_from" in t.user_attrs]
    interrupted = [t.number for t in trials if t.state.name == "FAIL"
                   and t.user_attrs.get("status", "interrupted") == "interrupted"]
    assert sorted(requeued) == sorted(interrupted) == sorted(t.number for t in in_hand)
    evaluated = (tmp_path / "evaluated.txt").read_text().split()
    recorded = [t.user_attrs["spec_id"] for t in trials if TrialStatus.of(t) is TrialStatus.OK
                and "duplicate_of" not in t.user_attrs]
    # Each network was evaluated for its recorded trial, plus once for each trial killed with
    # its result in hand (that result was never recorded, so it is evaluated again).
    assert sorted(set(evaluated)) == sorted(set(recorded))
    assert len(evaluated) <= len(recorded) + len(in_hand)
    sessions = (run_dir / "sessions.jsonl").read_text().splitlines()
    assert len(sessions) == 2 and json.loads(sessions[1])["existing_trials"] > 0


def _training_run(tmp_path):
    """The run folder and command of a study of one 6-epoch training (v1-XXS, tiny data)."""
    data = yaml.safe_load(SMOKE.read_text())
    data.update(trials=1, fixed_trials=["mobilevit_xxs"], workers={"concurrent": 1},
                evaluator={"kind": "proxy_train", "train_images": 64, "val_images": 16,
                           "resolution": 32, "epochs": 6, "batch_size": 16})
    return _cli_run(tmp_path, data)


# The phases of a training trial a kill can hit, and the epoch its re-queued attempt must resume
# from: nothing trained is lost, and no epoch that was checkpointed is trained again.
KILL_PHASES = [("dispatched", 0), ("epoch:3", 2), ("returned", 6)]


@pytest.mark.slow
@pytest.mark.parametrize("point, resumed", KILL_PHASES, ids=[p for p, _ in KILL_PHASES])
def test_a_training_killed_at_any_phase_resumes_from_its_checkpoint(tmp_path, cpu_hog, point,
                                                                    resumed):
    run_dir, command = _training_run(tmp_path)
    _killed_at(point, command, tmp_path)
    checkpoints = list(run_dir.glob("checkpoints/*/checkpoint.pt"))
    assert len(checkpoints) == (1 if resumed else 0)
    if resumed:
        import torch

        assert torch.load(checkpoints[0], weights_only=False)["epoch"] == resumed

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    trials = _snapshot(run_dir)
    done = [t for t in trials if TrialStatus.of(t) is TrialStatus.OK]
    assert len(done) == 1 and done[0].user_attrs["requeued_from"] is not None
    provenance = done[0].user_attrs["eval"]
    assert provenance["resumed_from_epoch"] == resumed and provenance["epochs_run"] == 6
    assert len(done[0].user_attrs["curve"]) == 6
    assert not list(run_dir.glob("checkpoints/*/checkpoint.pt"))  # removed once recorded


def test_early_stopping_prunes_lagging_trainings(tmp_path):
    prepared = _study(
        tmp_path, trials=8, fixed_trials=[], budget={"max_params": 2_000_000},
        evaluator={"kind": "proxy_train", "train_images": 48, "val_images": 48, "resolution": 32,
                   "epochs": 4, "batch_size": 16},
        pruner={"kind": "successive_halving", "min_epochs": 1, "reduction_factor": 2})
    summary = run_study(prepared, stream=None)
    assert summary.finished and summary.counts.evaluated == 8
    assert summary.counts.pruned >= 1 and summary.counts.ok >= 1
    study, _ = open_run(tmp_path / "run")
    for t in study.trials:
        status = t.user_attrs.get("status")
        if status == "pruned":
            assert t.state == optuna.trial.TrialState.PRUNED and len(t.user_attrs["curve"]) < 4
            assert t.user_attrs["eval"]["stopped_early"]
        elif status == "ok" and "duplicate_of" not in t.user_attrs:
            assert len(t.user_attrs["curve"]) == 4
    shadow = optuna.load_study(study_name="smoke.accuracy",
                               storage=optuna.storages.JournalStorage(
                                   optuna.storages.journal.JournalFileBackend(
                                       str(tmp_path / "run" / "journal.log"))))
    states = [t.state.name for t in shadow.trials]
    assert "RUNNING" not in states and states.count("PRUNED") == summary.counts.pruned
    assert not list((tmp_path / "run" / "checkpoints").glob("*/checkpoint.pt"))  # cleaned up


@pytest.mark.slow
def test_a_worker_that_outlives_its_killed_driver_cannot_spoil_the_resumed_training(tmp_path,
                                                                                     cpu_hog):
    # The driver's process group dies mid-training, its Ray worker (a process group of its own)
    # does not: it must neither delete the checkpoint nor keep the new attempt from resuming.
    run_dir, command = _training_run(tmp_path)
    _killed_at("epoch:3/driver", command, tmp_path)
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    done = [t for t in _snapshot(run_dir) if TrialStatus.of(t) is TrialStatus.OK]
    assert len(done) == 1
    provenance = done[0].user_attrs["eval"]
    # epoch 2's checkpoint, or a later one the orphan wrote before it noticed its driver was
    # gone (training is bit-exact on resume, so any of them is the same training): never less
    assert provenance["resumed_from_epoch"] >= 2 and provenance["epochs_run"] == 6
    assert not list(run_dir.glob("checkpoints/*/*"))


def test_a_trial_that_cannot_fit_on_this_machine_is_a_one_line_error(tmp_path):
    from nas.search.runner import _check_fits
    from nas.study.config import StudyError

    prepared = _study(tmp_path, workers={"cpus_per_trial": 3, "concurrent": 1})
    with pytest.raises(StudyError, match=r"^workers.cpus_per_trial=3: this machine's Ray "
                       r"instance has 2 CPUs, so no trial could start"):
        _check_fits(prepared.config, {"CPU": 2.0})
    gpu = _study(tmp_path, workers={"gpus_per_trial": 1})
    with pytest.raises(StudyError, match=r"^workers.gpus_per_trial=1: .* has 0 GPUs"):
        _check_fits(gpu.config, {"CPU": 2.0})
    _check_fits(prepared.config, {"CPU": 4.0})  # fits: no error


def test_a_local_instance_runs_trials_at_the_study_niceness(tmp_path):
    script = ("import os, sys, yaml\n"
              "from nas.study.config import parse_study\n"
              "from nas.search.runner import init_ray\n"
              "data = yaml.safe_load(open(sys.argv[1]))\n"
              "data['workers'] = {'niceness': 7}\n"
              "ray = init_ray(parse_study(data, 'test'))\n"
              "print(ray.get(ray.remote(lambda: os.nice(0)).remote()))\n")
    out = subprocess.run([sys.executable, "-c", script, str(SMOKE)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "7"


@pytest.mark.slow
def test_counts_kept_along_the_way_equal_a_recount_after_a_resumed_study(tmp_path, monkeypatch):
    data = yaml.safe_load(SMOKE.read_text())
    data["evaluator"].update(seconds=0.1, faults={_fixed_id("mobilevitv3_xxs"): "raise"})
    data["budget"]["max_params"] = 1_260_000  # v1-XXS (1.27 M) and some samples are over
    data["trials"] = 8
    run_dir, command = _cli_run(tmp_path, data)
    _killed_at("returned@3", command, tmp_path)  # leaves running trials to re-queue
    seen = []
    close = Ledger.close

    def checked_close(ledger):
        seen.append((ledger.counts, count_trials(ledger.trials()),
                     sorted(n for n, _ in ledger.front), sorted(t.number for t in ledger.pareto())))
        close(ledger)

    monkeypatch.setattr(Ledger, "close", checked_close)
    prepared = dataclasses.replace(load(tmp_path / "kill.yaml"), run_dir=run_dir)
    summary = run_study(prepared, stream=None)
    assert summary.finished and len(seen) == 1
    kept, recounted, front, pareto = seen[0]
    assert kept == recounted and front == pareto
    assert recounted.interrupted >= 1 and recounted.infeasible >= 1 and recounted.failed == 1


def test_a_trial_costs_the_journal_two_synced_appends_at_most(tmp_path, monkeypatch):
    # Optuna's file backend syncs each record (about 55 per trial: every parameter and
    # attribute); the driver writes an asked trial and a recorded outcome as one append each.
    syncs = []
    real = os.fsync
    monkeypatch.setattr("nas.study.journal.os.fsync", lambda fd: (syncs.append(fd), real(fd)))
    prepared = _study(tmp_path, trials=8, latency={"kind": "none"},
                      objectives=[{"metric": "accuracy"}, {"metric": "params"}])
    summary = run_study(prepared, stream=None)
    assert summary.finished
    study, _ = open_run(prepared.run_dir)
    asked = len(study.trials)
    assert asked >= 8
    # per session: the study, its fingerprint and the fixed trials' queue
    assert asked <= len(syncs) <= 2 * asked + 4, (len(syncs), asked)
