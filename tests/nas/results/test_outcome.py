"""Trial statuses and counts: one type shared by the runner, results, report and ablations."""

import optuna
import pytest

from nas.errors import NasError
from nas.results.outcome import TrialStatus, count_trials


def _trials(tmp_path):
    """One trial in every state the runner leaves, as it leaves them."""
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"])
    for status in ("ok", "infeasible"):
        t = study.ask()
        t.set_user_attr("status", status)
        study.tell(t, [1.0])
    failed = study.ask()
    failed.set_user_attr("status", "failed")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    pruned = study.ask()
    pruned.set_user_attr("status", "pruned")
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)  # a dead driver's, reaped
    study.ask()  # running
    study.enqueue_trial({})  # waiting
    return study


def test_every_state_has_its_status_and_counts(tmp_path):
    study = _trials(tmp_path)
    statuses = [TrialStatus.of(t) for t in study.get_trials()]
    assert statuses == [TrialStatus.OK, TrialStatus.INFEASIBLE, TrialStatus.FAILED,
                        TrialStatus.PRUNED, TrialStatus.INTERRUPTED, TrialStatus.RUNNING,
                        TrialStatus.WAITING]
    counts = count_trials(study.get_trials())
    for status in TrialStatus:
        assert counts[status] == statuses.count(status)
        assert getattr(counts, status.value) == statuses.count(status)
    assert counts.evaluated == sum(s.evaluated for s in statuses) == 3  # ok, failed, pruned


def test_an_unknown_status_is_a_one_line_error(tmp_path):
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    t = study.ask()
    t.set_user_attr("status", "teleported")
    study.tell(t, 1.0)
    with pytest.raises(NasError, match=r"^trial 0: unknown status 'teleported'"):
        count_trials(study.get_trials())


def test_status_values_are_the_strings_old_run_folders_hold():
    assert {s.value for s in TrialStatus} == {"ok", "pruned", "failed", "infeasible",
                                              "interrupted", "running", "waiting"}
    assert [s for s in TrialStatus if s.final] == [TrialStatus.OK, TrialStatus.PRUNED,
                                                  TrialStatus.FAILED, TrialStatus.INFEASIBLE]
