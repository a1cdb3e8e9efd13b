"""The agent's runners: what times a CoreML package on the machine the agent (or the Ray device
task) runs on, and the cache key a runner's description gives a measurement.

* :class:`CoreMLRunner` (macOS): loads the package with coremltools and times predictions with
  coremltools' ``MLModelBenchmarker``, on the Mac itself or on a tethered iPhone through
  coremltools' ``remote_device`` runner app.
* :class:`LocalRunner` (anywhere): rebuilds the network from the spec in the package's metadata
  and times PyTorch on this machine's CPU. It is labelled as such and exists so that the whole
  path (conversion, upload, protocol, statistics, cache) runs end to end where no Mac is.

Both follow the protocol of :mod:`nas.latency.stats`.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilevit import ArchSpec, SpecError
from nas.latency.base import LatencyResult, context_key
from nas.latency.errors import AgentError
from nas.latency.package import package_metadata
from nas.latency.stats import MeasureProtocol, run_protocol
from nas.runtime import torch_threads

#: What of a runner's description (its ``info()``, the agent's ``GET /v1/info``) is part of the
#: cache key; every measurement of the runner carries the same values.
DEVICE_CONTEXT = ("backend", "device", "compute_units", "versions")


def device_key(spec: ArchSpec, info: dict[str, Any], resolution: int) -> str:
    """The cache key of a measurement by the runner ``info`` describes (a runner's ``info()``
    or the fields of one of its results)."""
    context = {k: info.get(k) for k in DEVICE_CONTEXT}
    return context_key(spec, {**context, "resolution": resolution})


@dataclass(frozen=True)
class LocalRunner:
    """Times the package's network with PyTorch on this machine's CPU (not CoreML; labelled)."""

    threads: int = 1
    name: str = "local"

    def info(self) -> dict[str, Any]:
        import torch

        from nas.latency.local import cpu_name

        return {"backend": "torch-eager (latency agent local runner, not CoreML)",
                "device": f"{cpu_name()}, {self.threads} thread"
                          f"{'s' if self.threads > 1 else ''} ({platform.node() or 'agent'})",
                "compute_units": "cpu", "versions": {"torch": torch.__version__}}

    def measure(self, package: Path, protocol: MeasureProtocol,
                resolution: int) -> LatencyResult:
        import torch

        from mobilevit import MobileViT

        meta = package_metadata(package)
        if "spec_json" not in meta:
            raise AgentError("the package has no spec_json metadata (export it with `nas export`"
                             " or the agent client); the local runner rebuilds the network from it")
        try:
            spec = ArchSpec.from_json(meta["spec_json"])
        except SpecError as exc:
            raise AgentError(f"the package's spec_json: {exc}") from None
        with torch_threads(self.threads):
            model = MobileViT(spec).eval()
            x = torch.rand(1, 3, resolution, resolution)

            @torch.no_grad()
            def time_round(iterations: int) -> list[float]:
                model(x)  # the round's warm-up
                out = []
                for _ in range(iterations):
                    start = time.perf_counter()
                    model(x)
                    out.append((time.perf_counter() - start) * 1e3)
                return out

            return run_protocol(time_round, protocol, resolution=resolution, **self.info())


@dataclass(frozen=True)
class CoreMLRunner:
    """Times the package with coremltools' MLModelBenchmarker (macOS; unverified here).

    ``device``: None for this Mac, or ``"iphone"`` for the first tethered iPhone, prepared once
    with coremltools' remote-device runner app (needs Xcode and ``team_id``).
    """

    compute_units: str = "ALL"
    device: str | None = None
    team_id: str | None = None
    name: str = "coreml"

    def _device(self) -> Any:
        if self.device is None:
            return None
        import asyncio

        from coremltools.models.ml_program.experimental import remote_device as rd

        found = rd.Device.get_connected_devices(rd.DeviceType.IPHONE)
        if not found:
            raise AgentError("no tethered iPhone (xcrun devicectl list devices found none)")
        credentials = rd.AppSigningCredentials(development_team=self.team_id) \
            if self.team_id else None
        return asyncio.run(found[0].prepare_for_model_debugging(credentials=credentials))

    def info(self) -> dict[str, Any]:
        import coremltools as ct

        where = f"Mac {platform.mac_ver()[0] or platform.platform()}" if self.device is None \
            else f"tethered {self.device}"
        return {"backend": "coreml", "device": where, "compute_units": self.compute_units,
                "versions": {"coremltools": ct.__version__, "os": platform.platform()}}

    def measure(self, package: Path, protocol: MeasureProtocol,
                resolution: int) -> LatencyResult:
        import asyncio

        import coremltools as ct
        from coremltools.models.ml_program.experimental.perf_utils import MLModelBenchmarker

        if platform.system() != "Darwin":
            raise AgentError("the CoreML runner needs macOS (coremltools cannot run models on "
                             f"{platform.system()}); start the agent with --runner local here")
        model = ct.models.MLModel(str(package),
                                  compute_units=getattr(ct.ComputeUnit, self.compute_units))
        benchmarker = MLModelBenchmarker(model=model, device=self._device())
        load = asyncio.run(benchmarker.benchmark_load(iterations=1))

        def time_round(iterations: int) -> list[float]:
            measured = asyncio.run(benchmarker.benchmark_predict(iterations=iterations,
                                                                 warmup=True))
            return [float(s) for s in measured.samples]

        result = run_protocol(time_round, protocol, resolution=resolution, **self.info())
        load_ms = getattr(getattr(load, "statistics", None), "median", None)
        return dataclasses.replace(result, details={**result.details, "load_ms": load_ms})


Runner = LocalRunner | CoreMLRunner
