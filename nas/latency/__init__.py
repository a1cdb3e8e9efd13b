"""Latency oracles: local wall-clock measurement now; the iPhone oracle is its own issue."""

from nas.latency.base import LatencyCache, LatencyOracle, LatencyResult, cached_latency
from nas.latency.local import LocalLatencyOracle

__all__ = ["LatencyCache", "LatencyOracle", "LatencyResult", "LocalLatencyOracle",
           "cached_latency"]
