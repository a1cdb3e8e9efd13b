"""Latency oracles: a calibrated CoreML predictor (the offline iPhone default), a latency agent
on a Mac or tethered iPhone (over HTTP or as a Ray resource), and wall clock on this machine."""

from __future__ import annotations

from nas.latency.base import LatencyCache, LatencyOracle, LatencyResult, cached_latency
from nas.latency.local import LocalLatencyOracle

__all__ = ["LatencyCache", "LatencyOracle", "LatencyResult", "LocalLatencyOracle",
           "cached_latency"]
