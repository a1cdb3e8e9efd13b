"""Who may drive a study: one driver per run folder, several drivers per PostgreSQL study.

A run folder is held by one driver at a time through an exclusive ``flock`` on
``driver.lock`` in the folder. The kernel releases it when the driver process ends, however it
ends (``kill -9`` included), so a dead driver never blocks the next one and a live one is never
taken over. A journal study lives in its run folder, so the lock also makes a journal study
single-driver: a second ``nas run`` on it stops with one line naming the holder.

A PostgreSQL study can be driven from several run folders at once (one per machine or Ray
cluster), which is Optuna's own way of scaling out. Those drivers cooperate:

- each records Optuna's RDB heartbeat for its running trials (:class:`Heartbeat`), so a driver
  re-queues only trials whose driver stopped beating (``fail_stale_trials``), never the trials of
  a live one;
- the steps that read the study and then write it (enqueue the fixed trials once, re-queue
  stale trials, count the evaluated trials and ask for one more) run under a PostgreSQL
  advisory lock (:class:`StudyLock`), so two drivers never both take the last trial.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.study.config import StudyError

LOCK_FILE = "driver.lock"


@dataclass(frozen=True)
class Holder:
    """The driver process that holds a run folder."""

    host: str
    pid: int
    started: str
    command: str

    @classmethod
    def this_process(cls) -> Holder:
        return cls(host=socket.gethostname(), pid=os.getpid(),
                   started=time.strftime("%Y-%m-%d %H:%M:%S"), command=" ".join(sys.argv))


class RunLock:
    """The exclusive hold of one run folder by one driver (see the module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the folder, or raise StudyError naming the driver that has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StudyError(self._held_message()) from None
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(Holder.this_process().__dict__) + "\n").encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _held_message(self) -> str:
        try:
            holder = Holder(**json.loads(self.path.read_text()))
            who = f"pid {holder.pid} on host {holder.host}, since {holder.started}"
            stop = f"`kill {holder.pid}` on {holder.host}"
        except (OSError, ValueError, TypeError):  # the holder is still writing its record
            who, stop = "another process", "stop it"
        return (f"{self.path.parent}: the study is being run by another `nas run` ({who}); "
                f"wait for it or stop it ({stop}): its hold ends with its process, and the "
                "same command then continues the study (on a PostgreSQL study, a second "
                "driver needs its own --output folder)")


class StudyLock:
    """Serialises the read-then-write steps of cooperating drivers on one PostgreSQL study.

    A PostgreSQL session-level advisory lock, keyed by the study name, on a connection of its
    own: it is released when the driver's connection ends, even if the driver is killed. For a
    journal study it is a no-op (the run folder's lock already makes the driver the only one).
    """

    def __init__(self, storage: Any, study_name: str) -> None:
        self._connection = None
        self._key = int.from_bytes(hashlib.sha256(f"nas:{study_name}".encode()).digest()[:8],
                                   "big", signed=True)
        engine = getattr(storage, "engine", None)
        if engine is not None and engine.dialect.name == "postgresql":
            self._connection = engine.connect()
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """Whether other drivers may run this study at the same time (PostgreSQL)."""
        return self._connection is not None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._connection is None:
                yield
                return
            from sqlalchemy import text

            self._connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
            try:
                yield
            finally:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                         {"key": self._key})
                self._connection.commit()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Heartbeat:
    """Records Optuna's RDB heartbeat of this driver's running trials from a thread.

    ``trial_ids`` returns the storage ids to beat for (trials and their shadow trials); a
    storage without heartbeat support (the journal) makes this a no-op.
    """

    def __init__(self, storage: Any, interval: float, trial_ids: Callable[[], list[int]]) -> None:
        self._storage = storage
        self._interval = interval
        self._trial_ids = trial_ids
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.enabled = getattr(storage, "get_heartbeat_interval", lambda: None)() is not None

    def beat(self, trial_id: int) -> None:
        """Record one trial's heartbeat now (right after asking for it)."""
        if self.enabled:
            self._storage.record_heartbeat(trial_id)

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nas-heartbeat", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for trial_id in self._trial_ids():
                try:
                    self._storage.record_heartbeat(trial_id)
                except Exception:  # a lost connection: the next beat retries
                    pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class StaleTrials:
    """Optuna's heartbeat-stale callback: collects the trials ``fail_stale_trials`` failed, so
    the driver re-queues exactly those (a trial another driver failed for a reason of its own
    is not among them)."""

    def __init__(self) -> None:
        self._found: list[tuple[str, Any]] = []

    def __call__(self, study: Any, trial: Any) -> None:
        self._found.append((study.study_name, trial))

    def reap(self, study: Any) -> list[Any]:
        """Fail the running trials of ``study`` whose heartbeat stopped; returns them (frozen).
        Empty for a storage without heartbeats."""
        import warnings

        import optuna

        if getattr(study._storage, "get_heartbeat_interval", lambda: None)() is None:
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        mine = [t for name, t in self._found if name == study.study_name]
        self._found = [(name, t) for name, t in self._found if name != study.study_name]
        return mine
