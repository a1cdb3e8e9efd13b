"""Process-level settings for running networks on the CPU."""

from __future__ import annotations

import ctypes
import os
import sys

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
