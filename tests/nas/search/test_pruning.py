"""Early stopping through the shadow accuracy study."""

import typing

import optuna
import pytest

from nas.search.pruning import EpochReporter
from nas.study.config import PrunerConfig

PRUNER_KINDS = typing.get_args(PrunerConfig.model_fields["kind"].annotation)


@pytest.mark.parametrize("kind", PRUNER_KINDS)
def test_each_pruner_kind_builds_an_optuna_pruner_or_none(kind):
    pruner = PrunerConfig(kind=kind, min_epochs=1, reduction_factor=3).build(9)
    if kind == "none":
        assert pruner is None
    else:
        assert isinstance(pruner, optuna.pruners.BasePruner)


def _shadow_with_good_curves(tmp_path, config):
    address = f"journal:{tmp_path / 'journal.log'}"
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")))
    study = optuna.create_study(study_name="s.accuracy", storage=storage, direction="maximize",
                                pruner=config.build(4))
    for _ in range(6):  # finished trials that reached 80 % after one epoch
        trial = study.ask()
        for epoch in range(4):
            trial.report(80.0 + epoch, epoch + 1)
        study.tell(trial, 83.0)
    return study, address


def test_a_lagging_searched_trial_is_stopped_but_a_fixed_trial_is_not(tmp_path):
    config = PrunerConfig(kind="median", min_epochs=1)
    study, address = _shadow_with_good_curves(tmp_path, config)
    searched = EpochReporter("s.accuracy", address, study.ask()._trial_id, config, 4)
    fixed = EpochReporter("s.accuracy", address, study.ask()._trial_id, config, 4,
                          prunable=False)
    assert searched(0, 10.0) is False  # far below the median of the finished trials
    assert fixed(0, 10.0) is True      # a published design trains to the end regardless
    assert fixed(1, 11.0) is True
    reported = {t.number: t.intermediate_values for t in study.get_trials(deepcopy=False)[6:]}
    assert reported[7] == {1: 10.0, 2: 11.0}  # the fixed trial's curve still feeds the pruner
