"""Process-level settings for running networks on the CPU, and scoped changes of process-wide
state (torch's thread count, logger levels, output streams) that library code makes only for the
duration of a call and restores on the way out, also on exceptions."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DEFAULT_THRESHOLD = 1 << 30


def tune_cpu_allocator(threshold: int = _DEFAULT_THRESHOLD) -> bool:
    """Stop glibc from returning large freed buffers to the OS after every use.

    With glibc's defaults every activation larger than the (adaptive, at most 32 MiB) mmap
    threshold is a fresh ``mmap``, page-faulted in and unmapped again, each step; at batch 32 and
    256x256 that is most of a CPU forward pass (bench/model_speed.py measures it). Raising the mmap
    and trim thresholds keeps those buffers in the heap, at the cost of holding the peak memory.

    Applies to this process only, and only on Linux with glibc; set ``NAS_MALLOC_TUNING=0`` to
    leave the allocator alone. Returns whether the setting took effect.
    """
    if os.environ.get("NAS_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    value = min(threshold, 2**31 - 1)
    return mallopt(_M_MMAP_THRESHOLD, value) == 1 and mallopt(_M_TRIM_THRESHOLD, value) == 1


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, then restore the previous count.

    torch's thread count is process-wide: two threads of one process that use this with different
    counts at the same time see each other's setting (the last to leave restores the count it
    found). The workers run one trial per process, so there they never overlap.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def with_torch_threads(evaluate: Callable[..., T]) -> Callable[..., T]:
    """Decorate a method called with ``threads=N`` (an evaluator's ``evaluate``): it runs under
    :func:`torch_threads` with that count, and the previous count is back when it returns or
    raises."""

    @functools.wraps(evaluate)
    def wrapper(self: Any, *args: Any, threads: int, **kwargs: Any) -> T:
        with torch_threads(threads):
            return evaluate(self, *args, threads=threads, **kwargs)

    return wrapper


@contextlib.contextmanager
def logger_levels(names: Sequence[str], level: int) -> Iterator[None]:
    """Set the loggers ``names`` to ``level`` for the block, then restore each one's own level."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, previous in zip(loggers, levels, strict=True):
            lg.setLevel(previous)


class SharedOverride:
    """A process-wide change held while at least one caller needs it, from any thread.

    ``enter(stack)`` makes the change, registering its undo on ``stack``. The first caller in
    makes it, the last one out undoes it, so callers that overlap in several threads restore the
    state from before the first of them exactly, once, in whatever order they leave. (Nested
    ``contextlib.redirect_stdout`` blocks from two threads do not: the one that leaves second
    puts back the first one's replacement stream for good.) The change is seen by every thread
    while it is held.
    """

    def __init__(self, enter: Callable[[contextlib.ExitStack], None]) -> None:
        self._enter = enter
        self._lock = threading.Lock()
        self._users = 0
        self._stack: contextlib.ExitStack | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                with contextlib.ExitStack() as stack:
                    self._enter(stack)
                    self._stack = stack.pop_all()  # undone on the last exit, not here
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._stack is not None:
                    stack, self._stack = self._stack, None
                    stack.close()


_OVERRIDES: dict[str, SharedOverride] = {}
_OVERRIDES_LOCK = threading.Lock()


def _shared(what: str, enter: Callable[[contextlib.ExitStack], None]) -> SharedOverride:
    """The one override of ``what`` (a logger, the warning filters, the streams) in the
    process, so that blocks that change it from anywhere share it."""
    with _OVERRIDES_LOCK:
        if what not in _OVERRIDES:
            _OVERRIDES[what] = SharedOverride(enter)
        return _OVERRIDES[what]


def _logger_at_error(name: str, stack: contextlib.ExitStack) -> None:
    stack.enter_context(logger_levels((name,), logging.ERROR))


def _ignore_warnings(stack: contextlib.ExitStack) -> None:
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")


def _sink_streams(stack: contextlib.ExitStack) -> None:
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))


@contextlib.contextmanager
def quiet(loggers: Sequence[str] = (), *, streams: bool = False) -> Iterator[None]:
    """Quiet a block: the ``loggers`` at ERROR, warnings ignored and, with ``streams``,
    sys.stdout and sys.stderr sent to a sink; each restored exactly when the block ends, also on
    an exception.

    All of it is process-wide: while the block runs, other threads' warnings (and, with
    ``streams``, their prints) are dropped too; file descriptors 1 and 2 and the handlers of
    other loggers are left alone. Blocks that overlap in several threads share each change (one
    :class:`SharedOverride` per logger, one for the warning filters, one for the streams), so
    each is restored once, to what it was before the first of them.
    """
    with contextlib.ExitStack() as stack:
        for name in loggers:
            stack.enter_context(_shared(f"logger {name}", functools.partial(
                _logger_at_error, name))())
        stack.enter_context(_shared("warnings", _ignore_warnings)())
        if streams:
            stack.enter_context(_shared("streams", _sink_streams)())
        yield
