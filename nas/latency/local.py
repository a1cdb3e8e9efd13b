"""Wall-clock latency of batch-1 inference on this machine's CPU or GPU.

The stand-in for the iPhone oracle until that lands, and the oracle for users who target the
machine they are on. Results are labelled with the backend and device, never as iPhone numbers.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

import torch

from mobilevit import ArchSpec, MobileViT
from nas.latency.base import LatencyResult, context_key
from nas.runtime import torch_threads


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class LocalLatencyOracle:
    """Median of ``runs`` timed forward passes after ``warmup`` untimed ones, ``threads`` threads.

    Defaults are in :class:`nas.study.config.LocalLatencyConfig`.
    """

    resolution: int
    threads: int
    warmup: int
    runs: int
    device: str = "cpu"
    name: str = "local"

    def _context(self) -> dict[str, object]:
        if self.device == "cuda":
            where = torch.cuda.get_device_name()
        else:
            where = f"{cpu_name()}, {self.threads} thread{'s' if self.threads > 1 else ''}"
        return {"backend": "torch-eager", "device": where, "compute_units": self.device,
                "versions": {"torch": torch.__version__}, "resolution": self.resolution}

    def key(self, spec: ArchSpec) -> str:
        return context_key(spec, self._context())

    @torch.no_grad()
    def measure(self, spec: ArchSpec) -> LatencyResult:
        with torch_threads(self.threads):
            model = MobileViT(spec).eval().to(self.device)
            x = torch.zeros(1, 3, self.resolution, self.resolution, device=self.device)
            sync = torch.cuda.synchronize if self.device == "cuda" else (lambda: None)
            for _ in range(self.warmup):
                model(x)
            sync()
            samples = []
            for _ in range(self.runs):
                start = time.perf_counter()
                model(x)
                sync()
                samples.append((time.perf_counter() - start) * 1e3)
        return LatencyResult.from_samples(samples, **self._context())  # type: ignore[arg-type]
