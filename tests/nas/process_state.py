"""What library calls must leave as they found it: process-wide state (torch's thread count,
logger levels, Optuna's verbosity, the output streams, the warning filters)."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import torch

LOGGERS = ("fvcore", "coremltools", "optuna", "torch.export", "torch.onnx", "torch.__trace")
SENTINEL_THREADS = 3  # what the tests set first: none of the calls asks for it


def process_state() -> dict[str, Any]:
    import optuna

    return {"torch_threads": torch.get_num_threads(),
            "logger_levels": {n: logging.getLogger(n).level for n in LOGGERS},
            "optuna_verbosity": optuna.logging.get_verbosity(),
            "stdout": sys.stdout, "stderr": sys.stderr,
            "warning_filters": list(warnings.filters)}


@contextlib.contextmanager
def unchanged_process_state() -> Iterator[None]:
    """Set torch's thread count and Optuna's verbosity to values no library call sets, run the
    block, and check that everything in :func:`process_state` is as before; then restore."""
    import optuna

    threads, verbosity = torch.get_num_threads(), optuna.logging.get_verbosity()
    torch.set_num_threads(SENTINEL_THREADS)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        before = process_state()
        yield
        after = process_state()
        for key, value in before.items():
            same = after[key] is value if key in ("stdout", "stderr") else after[key] == value
            assert same, f"{key}: {value!r} before the call, {after[key]!r} after it"
    finally:
        torch.set_num_threads(threads)
        optuna.logging.set_verbosity(verbosity)
