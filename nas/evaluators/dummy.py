"""A fixed-cost evaluator for benchmarks and tests of the study runner.

It burns ``seconds`` of CPU (a real busy loop, so parallel workers compete for cores as training
would) and returns a deterministic score that grows with the log of the parameter count, plus a
small deterministic jitter from the spec id (and, with ``seed_noise``, from the trial's seed). It
can also fail on purpose, to exercise the runner's fault handling: raise an exception, return a
NaN accuracy, or kill its worker process as the kernel's out-of-memory killer would; or score at
chance level, as a training that learned nothing does.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mobilevit import ArchSpec
from mobilevit.complexity import complexity
from nas.evaluators.base import EvalResult


@dataclass(frozen=True)
class DummyEvaluator:
    """See the module docstring; defaults are in :class:`nas.study.config.DummyConfig`.

    Attributes:
        seconds: CPU time to burn per evaluation.
        classes: classifier width of evaluated specs.
        faults: spec ids -> "raise" | "nan" | "exit", failures to inject.
        record: a file to which every evaluated spec id is appended (for tests and debugging).
        hold: a file each evaluation waits for before it starts (a test creates it once every
            driver it starts has a trial running, so no driver can finish the study alone).
        seed_noise: the score moves by up to +-seed_noise with the trial's seed.
        chance: spec ids that score 100 / classes, what guessing does.
        val_images: the validation set size the provenance reports.
    """

    seconds: float
    classes: int
    faults: dict[str, str] = field(default_factory=dict)
    record: str | None = None
    hold: str | None = None
    seed_noise: float = 0.0
    chance: list[str] = field(default_factory=list)
    val_images: int = 200
    name: str = "dummy"

    @property
    def num_classes(self) -> int:
        return self.classes

    def evaluate(self, spec: ArchSpec, *, seed: int, workdir: Path, threads: int,
                 device: str, on_epoch: Callable[[int, float], bool] | None = None) -> EvalResult:
        if self.hold:
            while not os.path.exists(self.hold):
                time.sleep(0.05)  # a file another process creates: nothing else to wait on
        start = time.perf_counter()
        if self.record:
            with open(self.record, "a") as f:
                f.write(spec.spec_id + "\n")
        fault = self.faults.get(spec.spec_id)
        if fault == "exit":
            os._exit(137)  # what the kernel's OOM killer leaves behind
        x = 0.0
        while time.perf_counter() - start < self.seconds:
            for i in range(10_000):
                x += math.sin(i)
        if fault == "raise":
            raise RuntimeError("injected failure")
        params = complexity(spec).params
        jitter = int(spec.spec_id[:6], 16) / 0xFFFFFF - 0.5
        accuracy = 100 * (1 - 1 / (1 + math.log10(params) - 4)) + 2 * jitter
        if self.seed_noise:
            accuracy += self.seed_noise * (2 * ((seed * 2654435761) % 2**32) / 2**32 - 1)
        if spec.spec_id in self.chance:
            accuracy = 100 / self.classes
        if fault == "nan":
            accuracy = math.nan
        return EvalResult(accuracy=round(accuracy, 4), curve=(round(accuracy, 4),),
                          provenance={"evaluator": self.name, "seconds": self.seconds,
                                      "seed": seed, "metric": "top1", "classes": self.classes,
                                      "val_images": self.val_images,
                                      "wall_time_s": round(time.perf_counter() - start, 3)})
