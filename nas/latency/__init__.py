"""Latency oracles: a calibrated CoreML predictor (the offline iPhone default), a latency agent
on a Mac or tethered iPhone (over HTTP or as a Ray resource), and wall clock on this machine."""

from __future__ import annotations

import os
from typing import Any

from nas.latency.base import LatencyCache, LatencyOracle, LatencyResult, cached_latency
from nas.latency.local import LocalLatencyOracle

BACKENDS = ("predictor", "agent", "local")


def make_oracle(backend: str, *, resolution: int, calibration: str | None = None,
                agent: str | None = None, token: str | None = None,
                threads: int = 1) -> Any:
    """The oracle for ``nas latency --backend``: ``predictor``, ``agent`` (needs ``agent``, the
    URL; the token defaults to $NAS_AGENT_TOKEN) or ``local`` (this machine's CPU)."""
    from nas.errors import NasError

    if backend == "predictor":
        from nas.latency.predictor import PredictorOracle, load_calibration

        load_calibration(calibration)  # a bad file is an error now, not in a worker
        return PredictorOracle(resolution=resolution, calibration=calibration)
    if backend == "agent":
        from nas.latency.oracles import AgentOracle

        if not agent:
            raise NasError("--backend agent: give the agent's URL with --agent")
        return AgentOracle(agent, resolution=resolution,
                           token=token or os.environ.get("NAS_AGENT_TOKEN"))
    if backend == "local":
        return LocalLatencyOracle(resolution=resolution, threads=threads, warmup=2, runs=10)
    raise NasError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "LatencyCache", "LatencyOracle", "LatencyResult", "LocalLatencyOracle",
           "cached_latency", "make_oracle"]
