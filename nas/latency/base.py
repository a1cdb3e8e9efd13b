"""The latency oracle contract and its persistent cache."""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mobilevit import ArchSpec


@dataclass(frozen=True)
class LatencyResult:
    """Latency statistics of one network at one resolution on one backend and device.

    Attributes:
        median_ms: median of the timed runs.
        trimmed_mean_ms: mean after dropping the fastest and slowest 10 % of runs.
        spread: (90th - 10th percentile) / median, a scale-free measure of noise.
        runs: timed runs.
        backend: what executed the network (e.g. "torch-eager").
        device: the machine (e.g. the CPU model and thread count).
        compute_units: "cpu", "cuda", or CoreML's "all" / "cpuAndNeuralEngine" / ...
        versions: software versions the number depends on.
        resolution: square input size.
        samples_ms: the timed runs themselves (none for a prediction).
        details: what else the oracle reports (a predictor's terms, an agent's load time, ...).
    """

    median_ms: float
    trimmed_mean_ms: float
    spread: float
    runs: int
    backend: str
    device: str
    compute_units: str
    versions: dict[str, str]
    resolution: int
    samples_ms: tuple[float, ...] = field(default=())
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], **context: Any) -> LatencyResult:
        """Statistics of ``samples_ms`` with the measurement ``context`` (backend, device, ...)."""
        ordered = sorted(samples_ms)
        n = len(ordered)
        cut = n // 10
        kept = ordered[cut:n - cut] or ordered
        deciles = statistics.quantiles(ordered, n=10) if n >= 2 else [ordered[0]] * 9
        median = statistics.median(ordered)
        return cls(median_ms=round(median, 4), trimmed_mean_ms=round(statistics.fmean(kept), 4),
                   spread=round((deciles[-1] - deciles[0]) / median, 4) if median else 0.0,
                   runs=n, samples_ms=tuple(round(s, 4) for s in samples_ms), **context)


class LatencyOracle(Protocol):
    """Gives the latency of a spec. Implementations are picklable (they run in Ray workers)."""

    name: str

    def key(self, spec: ArchSpec) -> str:
        """The cache key: spec id, resolution, backend, device and versions."""
        ...

    def measure(self, spec: ArchSpec) -> LatencyResult:
        """Measure (or predict) without the cache."""
        ...


def context_key(spec: ArchSpec, context: dict[str, Any]) -> str:
    """A cache key: the spec id and a hash of the measurement context (backend, device, compute
    units, versions, resolution)."""
    import hashlib

    text = json.dumps(context, sort_keys=True)
    return f"{spec.spec_id}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def default_cache_dir() -> Path:
    """``$NAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/mobilevit-nas``, else ``~/.cache/mobilevit-nas``."""
    if os.environ.get("NAS_CACHE_DIR"):
        return Path(os.environ["NAS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mobilevit-nas"


class LatencyCache:
    """Latency results by oracle key in one sqlite file, shared by studies and processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else default_cache_dir() / "latency.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS latency (key TEXT PRIMARY KEY, result TEXT)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get(self, key: str) -> LatencyResult | None:
        with self._connect() as db:
            row = db.execute("SELECT result FROM latency WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        data["samples_ms"] = tuple(data.get("samples_ms", ()))
        return LatencyResult(**data)

    def put(self, key: str, result: LatencyResult) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO latency VALUES (?, ?)",
                       (key, json.dumps(result.to_dict())))


def cached_latency(oracle: LatencyOracle, spec: ArchSpec,
                   cache: LatencyCache) -> tuple[LatencyResult, bool]:
    """The oracle's result for ``spec`` from the cache, measuring on a miss; and whether it hit.

    A new result is stored under ``oracle.result_key(spec, result)`` when the oracle has one (the
    device oracles: the key of the device that measured it, which is the looked-up key unless the
    device changed in between), else under the key that was looked up."""
    key = oracle.key(spec)
    hit = cache.get(key)
    if hit is not None:
        return hit, True
    result = oracle.measure(spec)
    result_key = getattr(oracle, "result_key", None)
    cache.put(result_key(spec, result) if result_key is not None else key, result)
    return result, False
