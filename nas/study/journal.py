"""The run folder's Optuna journal, with the driver's records of one step written at once.

Optuna's journal storage writes every change as its own record: each suggested parameter, user
attribute, constraint and state change is one append under the file's lock, synced to disk, and
each is followed by a read of the file. A MobileViT trial is about 55 of them, which made the
driver's cost per trial tens of milliseconds at any study size. :meth:`BatchedJournal.batch`
keeps a step's records in memory (the storage reads them back from there, so the driver sees its
own writes at once) and appends them with one locked, synced write when the step ends.

Other processes write to the same file while a driver runs (the workers report to the pruner's
shadow study and check their attempt's lease), so:

* a batch must end before anything another process needs from it is started (a trial's task is
  submitted only after its creation is on disk);
* records appended by others during a batch are read when it ends, under the lock, and handed to
  the storage after the batch's own. Each record reaches the storage exactly once; only the order
  of concurrent, unrelated records can differ from the file's (records about one trial keep their
  order: a worker's reports are on disk before the driver records that trial's outcome);
* a process killed during a batch loses only that batch, which is a step not yet recorded: an
  asked trial that never started, or a finished one that is found running, re-queued and run
  again on resume, as after any kill before its outcome was written.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from typing import Any

from optuna.storages.journal import BaseJournalBackend, JournalFileSymlinkLock, JournalStorage


class BatchedJournal(BaseJournalBackend):
    """A journal file backend whose writer can group its records (see the module docstring).

    Outside :meth:`batch` it behaves as Optuna's ``JournalFileBackend``: each append is written
    and synced at once."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = JournalFileSymlinkLock(path)  # the lock Optuna's file backend takes
        if not os.path.exists(path):
            open(path, "ab").close()
        self._guard = threading.Lock()
        self._depth = 0  # nested batch() calls
        self._pending: list[dict[str, Any]] = []  # this batch's records, not yet on disk
        self._undelivered: list[dict[str, Any]] = []  # records the storage has not read yet
        self._file_records = 0  # records of the file that are accounted for
        self._offset = 0  # and where they end, in bytes
        # The last records handed out, from virtual number _chunk_start: the storage may stop
        # applying a chunk midway (it raises for a failed operation of its own) and ask again
        # from there.
        self._chunk: list[dict[str, Any]] = []
        self._chunk_start = 0

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Keep the records appended inside in memory and write them when the outermost batch
        ends (also when it ends with an exception: what was done is recorded, as it would
        have been without the batch)."""
        with self._guard:
            self._depth += 1
        try:
            yield
        finally:
            with self._guard:
                self._depth -= 1
                if self._depth == 0 and self._pending:
                    pending, self._pending = self._pending, []
                    self._write(pending, deliver=False)

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        with self._guard:
            end = self._chunk_start + len(self._chunk)
            if not self._chunk_start <= log_number_from <= end:
                raise ValueError(f"{self._path}: records asked from {log_number_from}, but "
                                 f"{self._chunk_start}-{end} were handed out (one storage per "
                                 "backend)")
            if self._depth == 0:
                self._undelivered += self._read_new()
            again = self._chunk[log_number_from - self._chunk_start:]
            if not self._undelivered and not again:
                return []
            # The next chunk starts where the storage asked from; a record handed out before
            # and not applied (after a raise) is handed out again.
            self._chunk = again + self._undelivered
            self._chunk_start = log_number_from
            self._undelivered = []
            return list(self._chunk)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with self._guard:
            if self._depth:
                self._pending += logs
                self._undelivered += logs
            else:
                self._write(logs, deliver=True)

    def _read_new(self) -> list[dict[str, Any]]:
        """Records other processes appended since this one last accounted for the file."""
        with open(self._path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a record still being appended is read next time
        new = [json.loads(line) for line in data[:end].splitlines()]
        self._offset += end
        self._file_records += len(new)
        return new

    def _write(self, logs: list[dict[str, Any]], *, deliver: bool) -> None:
        """Append ``logs`` with one locked, synced write; the records others appended before it
        are read under the same lock, so the count of the file's records stays exact."""
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        self._lock.acquire()
        try:
            self._undelivered += self._read_new()
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            self._file_records += len(logs)
            self._offset += len(data)
        finally:
            self._lock.release()
        if deliver:
            self._undelivered += logs


class BatchedJournalStorage(JournalStorage):
    """Optuna's journal storage on a :class:`BatchedJournal` file: ``with storage.batch():``
    writes the records of the block at once."""

    def __init__(self, path: str) -> None:
        self._batched = BatchedJournal(path)
        super().__init__(self._batched)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """See :meth:`BatchedJournal.batch`."""
        return self._batched.batch()


def batch(storage: Any) -> contextlib.AbstractContextManager[None]:
    """``storage.batch()`` where the storage has one, else a context that does nothing (a
    database writes each change in its own transaction)."""
    method = getattr(storage, "batch", None)
    return method() if method is not None else contextlib.nullcontext()
