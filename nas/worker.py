"""One trial's work, run inside a Ray worker: latency (cached), the latency budget, evaluation.

Everything the driver needs comes back in the returned dict, artifacts included as bytes, so
workers on other machines need no shared file system.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilevit import ArchSpec
from nas.evaluators.base import EvaluationError
from nas.latency import LatencyCache, cached_latency
from nas.runtime import tune_cpu_allocator


@dataclass(frozen=True)
class TrialTask:
    """What a worker needs to run one trial (picklable)."""

    number: int
    spec_json: str  # the spec to train (the study's classes)
    latency_spec_json: str  # the spec to time (the budget's classes, as published models)
    seed: int
    evaluator: Any
    oracle: Any | None
    latency_cache: str | None
    max_latency_ms: float | None
    threads: int
    device: str
    workdir: str | None = None  # persistent: a re-queued trial resumes from its checkpoint
    reporter: Any | None = None  # EpochReporter for early stopping


def execute(task: TrialTask) -> dict[str, Any]:
    """Run one trial; raises on failure (the driver records the reason)."""
    tune_cpu_allocator()
    start = time.perf_counter()
    out: dict[str, Any] = {"number": task.number, "status": "ok", "latency": None,
                           "latency_cached": None, "eval": None, "artifacts": {}}
    if task.oracle is not None:
        result, hit = cached_latency(task.oracle, ArchSpec.from_json(task.latency_spec_json),
                                     LatencyCache(task.latency_cache))
        out["latency"], out["latency_cached"] = result.to_dict(), hit
        if task.max_latency_ms is not None and result.median_ms > task.max_latency_ms:
            out["status"] = "infeasible"
            out["wall_time_s"] = time.perf_counter() - start
            return out
    spec = ArchSpec.from_json(task.spec_json)
    with tempfile.TemporaryDirectory(prefix=f"trial{task.number}_") as tmp:
        workdir = Path(task.workdir) if task.workdir else Path(tmp)
        ev = task.evaluator.evaluate(spec, seed=task.seed, workdir=workdir, threads=task.threads,
                                     device=task.device, on_epoch=task.reporter)
        out["artifacts"] = {name: Path(path).read_bytes() for name, path in ev.artifacts.items()}
        if task.workdir:  # the result is in hand: the checkpoint is no longer needed
            shutil.rmtree(workdir, ignore_errors=True)
    if not math.isfinite(ev.accuracy):
        raise EvaluationError(f"accuracy is {ev.accuracy}")
    if ev.provenance.get("stopped_early"):
        out["status"] = "pruned"
    out["eval"] = {"accuracy": ev.accuracy, "curve": list(ev.curve),
                   "provenance": ev.provenance}
    out["wall_time_s"] = time.perf_counter() - start
    return out
