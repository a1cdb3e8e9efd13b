"""Latency oracles: a calibrated CoreML predictor (the offline iPhone default), a latency agent
on a Mac or tethered iPhone (over HTTP or as a Ray resource), and wall clock on this machine.

Importing the package does not import torch: the predictor reads written-down programs
(:mod:`nas.latency.templates`), so ``nas latency`` answers without it; ``LocalLatencyOracle``
(which runs the network) is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nas.latency.base import LatencyCache, LatencyOracle, LatencyResult, cached_latency

if TYPE_CHECKING:
    from nas.latency.local import LocalLatencyOracle

__all__ = ["LatencyCache", "LatencyOracle", "LatencyResult", "LocalLatencyOracle",
           "cached_latency"]


def __getattr__(name: str) -> Any:
    if name == "LocalLatencyOracle":
        return importlib.import_module("nas.latency.local").LocalLatencyOracle
    raise AttributeError(f"module 'nas.latency' has no attribute {name!r}")
