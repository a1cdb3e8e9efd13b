"""The budget gate: is a candidate within the study's parameter, MAC and latency limits?

Counts come from :func:`mobilevit.complexity.complexity` (the spec alone, fvcore's conventions)
and are cached per spec id, so the gate costs well under a millisecond. Violations are reported
as Optuna constraint values relative to the limit ((value - limit) / limit; feasible when <= 0),
so violations of different budgets add up on a common scale in NSGA-II's constrained domination.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobilevit import ArchSpec
from mobilevit.complexity import complexity
from nas.study.config import Budget

# Every trial of a study carries the same constraint keys.
CONSTRAINTS = ("params", "macs", "latency", "valid")


@dataclass(frozen=True)
class Verdict:
    """A candidate's size and its constraint values (all <= 0 when it fits the budget)."""

    params: int
    macs: int
    constraints: dict[str, float]

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    def violated(self) -> list[str]:
        return [k for k, v in self.constraints.items() if v > 0]


def _violation(value: float, limit: float | None) -> float:
    # Negative values are the slack under the limit; Optuna treats <= 0 as feasible.
    return 0.0 if limit is None else (value - limit) / limit


class BudgetGate:
    """Checks specs against a :class:`nas.study.config.Budget`; counts are cached per spec id."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._counts: dict[str, tuple[int, int]] = {}

    def counts(self, spec: ArchSpec) -> tuple[int, int]:
        """Parameters and MACs of ``spec`` with the budget's classifier width and resolution."""
        counted = spec.replace(num_classes=self.budget.count_classes)
        key = counted.spec_id
        if key not in self._counts:
            c = complexity(counted, self.budget.resolution)
            self._counts[key] = (c.params, c.macs)
        return self._counts[key]

    def check(self, spec: ArchSpec) -> Verdict:
        """The verdict on size alone (latency is checked later, when it is known)."""
        params, macs = self.counts(spec)
        return Verdict(params, macs, {
            "params": _violation(params, self.budget.max_params),
            "macs": _violation(macs, self.budget.max_macs),
            "latency": 0.0,
            "valid": 0.0,
        })

    def latency_violation(self, latency_ms: float) -> float:
        """The "latency" constraint value for a measured latency."""
        return _violation(latency_ms, self.budget.max_latency_ms)


def invalid_verdict() -> Verdict:
    """The verdict for a parameter combination that gives no valid network."""
    return Verdict(0, 0, {"params": 0.0, "macs": 0.0, "latency": 0.0, "valid": 1.0})
