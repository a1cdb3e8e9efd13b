"""The evaluator contract: what the study runner calls to score a candidate's accuracy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mobilevit import ArchSpec
from nas.errors import NasError


class EvaluationError(NasError):
    """A candidate could not be evaluated (NaN loss, bad data); the trial fails with this reason."""


@dataclass(frozen=True)
class EvalResult:
    """An evaluator's verdict on one candidate.

    Attributes:
        accuracy: the score the study maximises: top-1 on the validation split (%) for training
            evaluators, the proxy's score for zero-cost ones (``provenance["metric"]`` says).
        curve: the score after each epoch.
        provenance: what produced the number: evaluator, dataset, epochs, resolution, seed,
            images seen, wall time (s).
        artifacts: files written (name -> path), e.g. the trained weights.
        stopped_early: the training was stopped by the pruner before its last epoch.
    """

    accuracy: float
    curve: tuple[float, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    stopped_early: bool = False


class Evaluator(Protocol):
    """Scores candidates. Implementations are picklable (they run inside Ray workers)."""

    name: str

    def evaluate(self, spec: ArchSpec, *, seed: int, workdir: Path, threads: int,
                 device: str, on_epoch: Callable[[int, float], bool] | None = None) -> EvalResult:
        """Train/score ``spec`` (its ``num_classes`` is the dataset's) and return the result.

        ``workdir`` is this trial's own folder (a checkpoint there is resumed); ``threads`` the
        CPU threads it may use; ``device`` "cpu" or "cuda"; ``on_epoch(epoch, accuracy)``
        returning False stops training early (``stopped_early``); it is called
        before the epoch's checkpoint is written, and an exception it raises ends the run
        without writing. Raises EvaluationError for a candidate-specific failure.
        """
        ...

    @property
    def num_classes(self) -> int:
        """Classes of the dataset (the classifier width of evaluated specs)."""
        ...
