"""ModelBench's measurement protocol: its settings, the trimmed mean of a round, and the loop that
measures rounds again until they agree.

``rounds`` x ``iterations`` timed predictions after one warm-up per round; each round's value is
the mean after trimming the fastest and slowest ``trim`` share; when the rounds disagree by more
than ``max_spread`` (10 %), they are measured again (up to ``attempts`` times) and the result says
how many attempts it took.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nas.latency.base import LatencyResult
from nas.latency.errors import AgentError


@dataclass(frozen=True)
class MeasureProtocol:
    """ModelBench-style measurement settings (defaults: 5 rounds x 20 iterations)."""

    rounds: int = 5
    iterations: int = 20
    trim: float = 0.2  # share dropped at each end of a round (ModelBench: 10 of 50)
    max_spread: float = 0.10
    attempts: int = 3

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, others: Sequence[str] = ()) -> MeasureProtocol:
        """The protocol that measurement options describe. ``others``: more option names the
        caller reads itself (ignored here); any other unknown option is an error naming it."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(k for k in data if k not in names and k not in others)
        if unknown:
            raise AgentError(f"unknown measurement option{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))} (expected: "
                             f"{', '.join([*names, *others])})")
        known = {k: data[k] for k in names if k in data}
        try:
            protocol = cls(**{k: type(getattr(cls, k))(v) for k, v in known.items()})
        except (TypeError, ValueError) as exc:
            raise AgentError(f"measurement options {known}: {exc}") from None
        if protocol.rounds < 1 or protocol.iterations < 1 or not 0 <= protocol.trim < 0.5 \
                or protocol.attempts < 1:
            raise AgentError(f"measurement options {known}: rounds, iterations and attempts "
                             "must be >= 1 and trim in [0, 0.5)")
        return protocol

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def trimmed_mean(samples: Sequence[float], trim: float) -> float:
    """Mean after dropping the ``trim`` share of the fastest and of the slowest samples."""
    ordered = sorted(samples)
    cut = int(len(ordered) * trim)
    return statistics.fmean(ordered[cut:len(ordered) - cut] or ordered)


def run_protocol(time_round: Callable[[int], list[float]], protocol: MeasureProtocol,
                 **context: Any) -> LatencyResult:
    """Run ``protocol`` with ``time_round(iterations)`` (one warm-up, then timed predictions in
    ms) and summarise: median and trimmed mean of all samples, rounds' spread, attempts."""
    attempt = 0
    while True:
        attempt += 1
        rounds = [time_round(protocol.iterations) for _ in range(protocol.rounds)]
        means = [trimmed_mean(r, protocol.trim) for r in rounds]
        spread = (max(means) - min(means)) / statistics.median(means)
        if spread <= protocol.max_spread or attempt == protocol.attempts:
            break
    samples = [s for r in rounds for s in r]
    result = LatencyResult.from_samples(samples, **context)
    details = {**result.details, "round_means_ms": [round(m, 4) for m in means],
               "round_spread": round(spread, 4), "attempts": attempt,
               "trimmed_mean_rule": f"mean per round after dropping {protocol.trim:.0%} at "
                                    "each end, averaged over rounds"}
    return dataclasses.replace(result, trimmed_mean_ms=round(statistics.fmean(means), 4),
                               details=details)
