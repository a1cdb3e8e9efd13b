"""What a trial came to: one status type and one outcome type, shared by every stage.

The worker returns an :class:`Outcome`; the driver records it; results, the report and the
ablation table read a trial's :class:`TrialStatus` back from the storage. The status values are the
strings every run folder already holds (``user_attrs["status"]``), so old runs read unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nas.errors import NasError


class TrialStatus(StrEnum):
    """A trial's outcome as recorded in the study."""

    OK = "ok"  # evaluated
    PRUNED = "pruned"  # trained until the pruner stopped it
    FAILED = "failed"  # raised, ran out of memory, produced NaN: ``fail_reason`` says
    INFEASIBLE = "infeasible"  # over budget (or not a valid network): never trained
    INTERRUPTED = "interrupted"  # running when its driver or node stopped; re-queued
    RUNNING = "running"
    WAITING = "waiting"  # queued (a fixed trial, a re-queued one), not asked for yet

    @property
    def evaluated(self) -> bool:
        """Whether the trial counts towards a study's ``trials``: trained, fully or until
        pruned, or failed while being evaluated."""
        return self in (TrialStatus.OK, TrialStatus.PRUNED, TrialStatus.FAILED)

    @property
    def trained(self) -> bool:
        """Whether the trial has an accuracy (an evaluation that ran to its end or was pruned)."""
        return self in (TrialStatus.OK, TrialStatus.PRUNED)

    @property
    def final(self) -> bool:
        """Whether the attempt ended with a verdict on its network (not interrupted, not
        pending)."""
        return self.evaluated or self == TrialStatus.INFEASIBLE

    @classmethod
    def of(cls, trial: Any) -> TrialStatus:
        """The status of an Optuna (frozen) trial.

        A finished trial carries its status in its user attributes; one without (failed with
        no status) was left running by a driver that died: interrupted."""
        state = trial.state.name
        if state == "RUNNING":
            return cls.RUNNING
        if state == "WAITING":
            return cls.WAITING
        if state == "PRUNED":
            return cls.PRUNED
        value = trial.user_attrs.get("status", cls.INTERRUPTED.value)
        try:
            return cls(value)
        except ValueError:
            raise NasError(f"trial {trial.number}: unknown status {value!r} (written by a "
                           "newer version?)") from None


@dataclass
class Counts:
    """Trials of a study by status."""

    by_status: dict[TrialStatus, int] = field(default_factory=dict)
    # Searched trials whose network an earlier trial already evaluated: recorded (the sampler
    # learns from them) with that trial's result, but not counted towards ``trials``.
    repeated: int = 0

    def add(self, status: TrialStatus, n: int = 1) -> None:
        """Count ``n`` more trials of ``status`` (fewer when negative)."""
        total = self.by_status.get(status, 0) + n
        if total:
            self.by_status[status] = total
        else:
            self.by_status.pop(status, None)

    def __getitem__(self, status: TrialStatus) -> int:
        return self.by_status.get(status, 0)

    ok = property(lambda self: self[TrialStatus.OK])
    pruned = property(lambda self: self[TrialStatus.PRUNED])
    failed = property(lambda self: self[TrialStatus.FAILED])
    infeasible = property(lambda self: self[TrialStatus.INFEASIBLE])
    interrupted = property(lambda self: self[TrialStatus.INTERRUPTED])
    running = property(lambda self: self[TrialStatus.RUNNING])
    waiting = property(lambda self: self[TrialStatus.WAITING])

    @property
    def evaluated(self) -> int:
        """Trials trained (fully or until pruned) or failed while being evaluated, repeats
        included."""
        return sum(n for s, n in self.by_status.items() if s.evaluated)

    @property
    def counted(self) -> int:
        """Trials that count towards a study's ``trials``: evaluated ones, less repeats."""
        return self.evaluated - self.repeated


def is_repeat(attrs: dict[str, Any]) -> bool:
    """Whether a finished trial's user attributes mark a searched proposal of a network an
    earlier trial evaluated (a fixed trial sharing a network is a row of its own, not a
    repeat)."""
    return "duplicate_of" in attrs and "fixed_point" not in attrs


def count_trials(trials: list[Any]) -> Counts:
    """Counts of a study's trials (Optuna FrozenTrial list) by status."""
    counts = Counts()
    for t in trials:
        status = TrialStatus.of(t)
        counts.add(status)
        if status == TrialStatus.OK and is_repeat(t.user_attrs):
            counts.repeated += 1
    return counts


@dataclass(frozen=True)
class Evaluation:
    """The evaluator's part of an outcome."""

    accuracy: float
    curve: list[float]
    provenance: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back for one trial (picklable; artifacts as bytes, so workers on
    other machines need no shared file system).

    ``status`` is OK, PRUNED, or INFEASIBLE (the measured latency is over the budget; then
    ``evaluation`` is None). Failures are raised, not returned."""

    number: int
    status: TrialStatus
    wall_time_s: float
    latency: dict[str, Any] | None = None
    latency_cached: bool | None = None
    evaluation: Evaluation | None = None
    artifacts: dict[str, bytes] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float | None:
        return self.latency["median_ms"] if self.latency else None
