"""The two latency oracles that measure on the device through the agent's runners.

* :class:`AgentOracle` sends each candidate to a latency agent over HTTP.
* :class:`RayDeviceOracle` runs the measurement as a Ray task that needs one unit of a custom
  resource (``iphone`` on the Mac node that has the phone), so device jobs queue in Ray.

Their cache key holds the runner's description (backend, device, compute units, versions). Each
oracle object asks for it once, keeps it for its own lifetime (never in a module global, and not
across a pickle: every copy a Ray worker unpickles asks again), and checks it against every
measurement: a result measured by another device than the description says (the agent was
restarted elsewhere) is stored under the key of the device that measured it, and the object asks
again next time. Asking never waits for the device: the Ray oracle asks the node that holds the
resource with a task that needs none of it, so a cached candidate is a hit without queueing
behind the measurements that hold the device.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilevit import ArchSpec
from nas.latency.base import LatencyResult
from nas.latency.client import AgentClient
from nas.latency.package import export_archive
from nas.latency.runners import DEVICE_CONTEXT, Runner, device_key
from nas.latency.stats import MeasureProtocol

_INFO = "_device_info"  # where an oracle object keeps the description it was given


class _DeviceKeys:
    """The cache keys of an oracle that measures with a runner it describes by ``_ask_info()``
    (an oracle dataclass with a ``resolution``)."""

    resolution: int

    def _ask_info(self) -> dict[str, Any]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """The runner's description, asked for once per object."""
        info = self.__dict__.get(_INFO)
        if info is None:
            info = self._ask_info()
            self.__dict__[_INFO] = info  # the oracles are frozen: not an attribute of theirs
        return info

    def key(self, spec: ArchSpec) -> str:
        return device_key(spec, self.info(), self.resolution)

    def result_key(self, spec: ArchSpec, result: LatencyResult) -> str:
        """The key of what was measured: that of the device the result says measured it. When
        it is not the one the object was told about, the object forgets the description."""
        measured = {k: getattr(result, k) for k in DEVICE_CONTEXT}
        told = self.__dict__.get(_INFO)
        if told is not None and any(told.get(k) != v for k, v in measured.items()):
            self.__dict__.pop(_INFO, None)
        return device_key(spec, measured, self.resolution)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != _INFO}


@dataclass(frozen=True)
class AgentOracle(_DeviceKeys):
    """The latency oracle that sends each candidate to a latency agent over HTTP."""

    url: str
    resolution: int = 256
    token: str | None = None
    protocol: MeasureProtocol = MeasureProtocol()
    attempts: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 600.0
    name: str = "agent"

    @property
    def client(self) -> AgentClient:
        return AgentClient(self.url, self.token, self.timeout_s, self.attempts, self.backoff_s)

    def _ask_info(self) -> dict[str, Any]:
        return self.client.info()

    def measure(self, spec: ArchSpec) -> LatencyResult:
        return self.client.measure(export_archive(spec, self.resolution), self.protocol,
                                   self.resolution)


@dataclass(frozen=True)
class RayDeviceOracle(_DeviceKeys):
    """Measures on the Ray node that holds the device: each measurement is a Ray task needing
    one unit of ``resource`` (declare it on the Mac: ``ray start --resources='{"iphone": 1}'``),
    so device jobs queue one at a time whatever the number of search workers. The runner's
    description is asked of that node by a task that needs no unit of it."""

    runner: Runner
    resolution: int = 256
    resource: str = "iphone"
    protocol: MeasureProtocol = MeasureProtocol()
    name: str = "ray-device"

    def _ask_info(self) -> dict[str, Any]:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(num_cpus=0, max_retries=0)(_describe_runner)
        for node in _nodes_with(ray, self.resource):
            pinned = task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                node, soft=False))
            try:
                return ray.get(pinned.remote(self.runner))
            except (ray.exceptions.TaskUnschedulableError, ray.exceptions.NodeDiedError):
                continue  # gone since ray.nodes() listed it, or died while asked
        # No node has the resource now: wait for one, as a measurement would.
        return ray.get(task.options(resources={self.resource: 1}).remote(self.runner))

    def measure(self, spec: ArchSpec) -> LatencyResult:
        import ray

        task = ray.remote(num_cpus=0, resources={self.resource: 1}, max_retries=0)(_device_job)
        return ray.get(task.remote(self.runner, spec.to_json(), self.resolution, self.protocol))


def _nodes_with(ray: Any, resource: str) -> list[str]:
    """The ids of the live Ray nodes that declare ``resource``."""
    return sorted(n["NodeID"] for n in ray.nodes()
                  if n.get("Alive") and n.get("Resources", {}).get(resource, 0) > 0)


def _describe_runner(runner: Runner) -> dict[str, Any]:
    """Runs on the device's node (needing none of its resource): the runner's description."""
    return runner.info()


def _device_job(runner: Runner, spec_json: str, resolution: int,
                protocol: MeasureProtocol) -> LatencyResult:
    """Runs on the device's node, holding its resource: convert and measure a spec."""
    from nas.export import export_model

    with tempfile.TemporaryDirectory(prefix="nas-device-") as tmp:
        package = export_model(ArchSpec.from_json(spec_json), Path(tmp) / "candidate",
                               to="coreml", resolution=resolution).path
        return runner.measure(package, protocol, resolution)
