"""The latency agent: measures CoreML packages on the machine (or tethered iPhone) it runs on.

This module gathers the agent's parts under one name; each lives in a module of its own:

* :mod:`nas.latency.stats`: ModelBench's measurement protocol (:class:`MeasureProtocol`), the
  trimmed mean and the rounds that are measured again until they agree.
* :mod:`nas.latency.package`: zipping a converted candidate, and the agent's checks of an upload.
* :mod:`nas.latency.runners`: the ``coreml`` and ``local`` runners, and the cache key that a
  runner's description gives.
* :mod:`nas.latency.api`: the HTTP endpoints and the measurement options (unknown ones refused).
* :mod:`nas.latency.server`: the HTTP agent (``nas latency-agent``).
* :mod:`nas.latency.client`: the HTTP client with retries.
* :mod:`nas.latency.oracles`: the oracles that measure through the agent (over HTTP) or as a Ray
  task on the node with the device.
* :mod:`nas.latency.errors`: :class:`AgentError`.
"""

from __future__ import annotations

from nas.latency.api import API, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT
from nas.latency.client import AgentClient
from nas.latency.errors import AgentError
from nas.latency.oracles import AgentOracle, RayDeviceOracle
from nas.latency.package import export_archive, package_metadata, read_package, zip_package
from nas.latency.runners import CoreMLRunner, LocalRunner, Runner
from nas.latency.server import AgentServer
from nas.latency.stats import MeasureProtocol, run_protocol, trimmed_mean

__all__ = ["API", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_PORT", "AgentClient", "AgentError",
           "AgentOracle", "AgentServer", "CoreMLRunner", "LocalRunner", "MeasureProtocol",
           "RayDeviceOracle", "Runner", "export_archive", "package_metadata",
           "read_package", "run_protocol", "trimmed_mean", "zip_package"]
