"""Early stopping of trials by accuracy, with Optuna's pruners, in multi-objective studies.

Optuna's ``Trial.report`` only exists for single-objective studies, and its pruners (successive
halving, Hyperband, median) read a study's intermediate values. So the runner keeps a shadow
single-objective study, ``<name>.accuracy``, in the same storage: every trial that trains gets a
shadow trial; after each epoch the worker reports the validation accuracy there and asks the
configured pruner whether to go on. The shadow trial ends with the trial (complete or pruned).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nas.study.config import PrunerConfig


def storage_from_address(address: str) -> Any:
    """An Optuna storage from ``journal:<file>`` or a database URL."""
    import optuna

    if address.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(address.removeprefix("journal:")))
    return optuna.storages.RDBStorage(address)


@lru_cache(maxsize=4)
def _shadow(study_name: str, address: str, pruner: PrunerConfig, max_epochs: int) -> Any:
    import optuna

    return optuna.load_study(study_name=study_name, storage=storage_from_address(address),
                             pruner=pruner.build(max_epochs))


@dataclass(frozen=True)
class EpochReporter:
    """Sent to a worker: reports each epoch's accuracy to the shadow trial and says whether to
    continue (False when the pruner stops the trial).

    A fixed trial (a published design) is reported but never stopped: its full curve is the
    reference the searched candidates are pruned against, and its final accuracy is what the
    study compares them with."""

    study_name: str
    address: str
    trial_id: int
    pruner: PrunerConfig
    max_epochs: int
    prunable: bool = True

    def __call__(self, epoch: int, accuracy: float) -> bool:
        import optuna

        study = _shadow(self.study_name, self.address, self.pruner, self.max_epochs)
        trial = optuna.trial.Trial(study, self.trial_id)
        trial.report(accuracy, epoch + 1)
        return not (self.prunable and trial.should_prune())
