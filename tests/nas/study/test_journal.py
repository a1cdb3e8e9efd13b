"""The batched journal: the same study on disk as Optuna's own file backend writes, with a step's
records appended at once, other processes' records neither lost nor repeated."""

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from nas.study.journal import BatchedJournalStorage, batch

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _lines(path):
    return path.read_bytes().count(b"\n")


def _plain(path):
    """Optuna's own reading of the file, as a worker or another process sees it."""
    return JournalStorage(JournalFileBackend(str(path)))


def _steps(study, n):
    """Trials written as a driver writes them: asked, parameters, attributes, told."""
    for i in range(n):
        trial = study.ask()
        trial.suggest_int("width", 16, 64)
        trial.suggest_categorical("block", ["v1", "v2"])
        trial.set_user_attr("spec_id", f"s{i}")
        study.tell(trial, [float(i), float(-i)])


def _view(storage, name="s"):
    study = optuna.load_study(study_name=name, storage=storage)
    return [(t.number, t.state, t.params, t.user_attrs, t.values) for t in study.trials]


def test_a_batch_is_one_append_and_reads_back_its_own_records(tmp_path, monkeypatch):
    path = tmp_path / "journal.log"
    storage = BatchedJournalStorage(str(path))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"] * 2)
    before = _lines(path)
    syncs = []
    monkeypatch.setattr("nas.study.journal.os.fsync", syncs.append)
    with storage.batch():
        trial = study.ask()
        width = trial.suggest_int("width", 16, 64)
        trial.set_user_attr("spec_id", "x")
        # the storage sees its own writes inside the batch; the file has none of them yet
        assert study.trials[-1].params == {"width": width}
        assert study.trials[-1].user_attrs == {"spec_id": "x"}
        assert _lines(path) == before
        assert _view(_plain(path)) == []
    assert len(syncs) == 1
    assert _lines(path) == before + 3  # the trial, its parameter, its attribute
    assert _view(_plain(path)) == _view(storage)


def test_batched_and_unbatched_files_are_the_same_study(tmp_path):
    one = BatchedJournalStorage(str(tmp_path / "a.log"))
    study = optuna.create_study(study_name="s", storage=one, directions=["maximize"] * 2,
                                sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(4):
        with one.batch():
            _steps(study, 3)
    two = JournalStorage(JournalFileBackend(str(tmp_path / "b.log")))
    study = optuna.create_study(study_name="s", storage=two, directions=["maximize"] * 2,
                                sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(4):
        _steps(study, 3)
    assert _view(_plain(tmp_path / "a.log")) == _view(_plain(tmp_path / "b.log"))
    assert _view(one) == _view(_plain(tmp_path / "a.log"))
    assert _lines(tmp_path / "a.log") == _lines(tmp_path / "b.log")


def test_records_of_another_process_during_a_batch_are_read_once(tmp_path):
    path = tmp_path / "journal.log"
    storage = BatchedJournalStorage(str(path))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"])
    shadow = optuna.create_study(study_name="shadow", storage=storage, direction="maximize")
    watched = shadow.ask()  # a worker reports to it from its own process
    other = optuna.load_study(study_name="shadow", storage=_plain(path))
    with storage.batch():
        trial = study.ask()
        trial.set_user_attr("mine", 1)
        for step in range(3):
            other._storage.set_trial_intermediate_value(watched._trial_id, step, step / 10)
        trial.set_user_attr("mine", 2)
        study.tell(trial, 1.0)
    # then the worker's records of after the batch, and one more of ours unbatched
    other._storage.set_trial_intermediate_value(watched._trial_id, 3, 0.3)
    study.set_user_attr("after", True)
    for name in ("s", "shadow"):
        assert _view(storage, name) == _view(_plain(path), name)
    assert storage.get_trial(watched._trial_id).intermediate_values == {
        0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3}
    assert study.trials[0].user_attrs == {"mine": 2}
    assert optuna.load_study(study_name="s", storage=_plain(path)).user_attrs == {"after": True}


def test_a_failed_operation_inside_a_batch_loses_no_later_record(tmp_path):
    # Optuna stops applying records at its own failed operation and asks again from there.
    storage = BatchedJournalStorage(str(tmp_path / "journal.log"))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"])
    with storage.batch():
        done = study.ask()
        study.tell(done, 1.0)
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(done._trial_id, "late", 1)
        trial = study.ask()
        trial.set_user_attr("after", 2)
    assert _view(storage) == _view(_plain(tmp_path / "journal.log"))
    assert study.trials[1].user_attrs == {"after": 2}
    assert "late" not in study.trials[0].user_attrs


def test_an_error_inside_a_batch_still_records_what_was_done(tmp_path):
    path = tmp_path / "journal.log"
    storage = BatchedJournalStorage(str(path))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"])
    with pytest.raises(KeyboardInterrupt), storage.batch():
        study.ask().set_user_attr("started", True)
        raise KeyboardInterrupt
    assert _view(_plain(path))[0][3] == {"started": True}


def test_a_process_killed_in_a_batch_leaves_the_study_as_before_it(tmp_path):
    path = tmp_path / "journal.log"
    storage = BatchedJournalStorage(str(path))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"])
    study.tell(study.ask(), 1.0)
    before = path.read_bytes()
    context = storage.batch()
    context.__enter__()  # never left, as in a process killed inside it
    study.tell(study.ask(), 2.0)
    assert path.read_bytes() == before
    fresh = BatchedJournalStorage(str(path))
    assert len(_view(fresh)) == 1


def test_batch_of_a_storage_without_batches_does_nothing(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    with batch(storage):
        optuna.create_study(study_name="s", storage=storage)
    assert _view(_plain(tmp_path / "journal.log")) == []
