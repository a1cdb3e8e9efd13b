"""One trial's work, run inside a Ray worker: latency (cached), the latency budget, evaluation.

Everything the driver needs comes back as one :class:`nas.results.outcome.Outcome`, artifacts included
as bytes, so workers on other machines need no shared file system.

Fencing: a trial's checkpoint folder is shared by every attempt at that network (a re-queued
trial resumes where the killed one stopped), and a worker can outlive its driver. So a worker
never deletes that folder (the driver does, once it has recorded the result), checks before
each checkpoint write that the storage still says its attempt is current (its trial is
RUNNING; a trial re-queued by a new driver is FAIL), and stops when its driver process is gone
(on the driver's host; elsewhere Ray ends a dead job's workers).
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from mobilevit import ArchSpec
from nas.evaluators.base import EvaluationError
from nas.latency import LatencyCache, cached_latency
from nas.results.outcome import Evaluation, Outcome, TrialStatus
from nas.runtime import tune_cpu_allocator
from nas.search.faults import kill_point


class AttemptSuperseded(Exception):
    """This attempt's trial is no longer current: another driver re-queued it."""


@lru_cache(maxsize=4)
def _storage(address: str) -> Any:
    from nas.search.pruning import storage_from_address

    return storage_from_address(address)


@dataclass(frozen=True)
class AttemptFence:
    """An attempt's right to write its trial's files: the trial ``trial_id`` (storage id) in
    the storage at ``address`` is still RUNNING."""

    address: str
    trial_id: int

    def current(self) -> bool:
        import optuna

        if self.address.startswith("journal:") and not Path(
                self.address.removeprefix("journal:")).exists():
            return True  # a node without the driver's disk: Ray's job clean-up fences it
        state = _storage(self.address).get_trial(self.trial_id).state
        return state == optuna.trial.TrialState.RUNNING


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
    fence: AttemptFence | None = None
    driver_host: str = ""
    driver_pid: int = 0


@contextmanager
def _driver_watch(host: str, pid: int, interval: float = 1.0) -> Iterator[None]:
    """Exit this worker process when the driver ``pid`` on this host is gone."""
    if not pid or host != socket.gethostname():
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(interval):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(70)  # nobody will read the result; checkpoints are written atomically
            except PermissionError:
                pass

    thread = threading.Thread(target=watch, name="nas-driver-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


def _epoch_hook(task: TrialTask) -> Callable[[int, float], bool]:
    def on_epoch(epoch: int, accuracy: float) -> bool:
        kill_point(f"epoch:{epoch + 1}", task.driver_pid)
        if task.fence is not None and not task.fence.current():
            raise AttemptSuperseded(f"trial {task.number} was re-queued by another driver")
        return task.reporter(epoch, accuracy) if task.reporter is not None else True

    return on_epoch


def execute(task: TrialTask) -> Outcome:
    """Run one trial; raises on failure (the driver records the reason)."""
    tune_cpu_allocator()
    with _driver_watch(task.driver_host, task.driver_pid):
        return _execute(task)


def _execute(task: TrialTask) -> Outcome:
    start = time.perf_counter()
    latency, cached = None, None
    if task.oracle is not None:
        result, cached = cached_latency(task.oracle, ArchSpec.from_json(task.latency_spec_json),
                                        LatencyCache(task.latency_cache))
        latency = result.to_dict()
        if task.max_latency_ms is not None and result.median_ms > task.max_latency_ms:
            return Outcome(task.number, TrialStatus.INFEASIBLE, time.perf_counter() - start,
                           latency, cached)
    spec = ArchSpec.from_json(task.spec_json)
    with tempfile.TemporaryDirectory(prefix=f"trial{task.number}_") as tmp:
        workdir = Path(task.workdir) if task.workdir else Path(tmp)
        ev = task.evaluator.evaluate(spec, seed=task.seed, workdir=workdir, threads=task.threads,
                                     device=task.device, on_epoch=_epoch_hook(task))
        artifacts = {name: Path(path).read_bytes() for name, path in ev.artifacts.items()}
    if not math.isfinite(ev.accuracy):
        raise EvaluationError(f"accuracy is {ev.accuracy}")
    return Outcome(task.number, TrialStatus.PRUNED if ev.stopped_early else TrialStatus.OK,
                   time.perf_counter() - start, latency, cached,
                   Evaluation(ev.accuracy, list(ev.curve), ev.provenance), artifacts)
