"""Training-free scores of an untrained network (the lowest rung of the fidelity ladder).

* ``synflow`` (Tanaka et al. 2020; Abdelfattah et al. 2021): with every weight replaced by its
  absolute value and an all-ones input, the log of sum |w * dR/dw| where R is the sum of the
  outputs (float64, so the product does not overflow).
* ``naswot`` (Mellor et al. 2021): on a batch of images, the binary activation pattern of every
  unit before each activation (positive or not) gives each image a code; the score is
  log |det K| with K[i, j] the number of units on which images i and j agree.
* ``grad_norm`` (Abdelfattah et al. 2021): the sum over parameters of the L2 norm of the
  cross-entropy gradient on a batch.
* ``params`` / ``macs``: the baselines every proxy must beat (log10 of the count).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mobilevit import ArchSpec, MobileViT
from mobilevit.complexity import complexity
from nas.data import ImageDataset, SingleScaleSampler, collate
from nas.evaluators.base import EvalResult, EvaluationError
from nas.evaluators.train import make_sources
from nas.runtime import with_torch_threads
from nas.study.config import ZeroCostConfig

ACTIVATIONS = (nn.SiLU, nn.ReLU, nn.GELU)


def synflow(model: nn.Module, resolution: int) -> float:
    """log of the synflow score of ``model``."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    out = net(torch.ones(1, 3, resolution, resolution, dtype=torch.float64))
    out.sum().backward()
    total = sum(float((p.detach() * p.grad).abs().sum()) for p in net.parameters()
                if p.grad is not None)
    return math.log(total) if total > 0 else -math.inf


@torch.no_grad()
def naswot(model: nn.Module, images: torch.Tensor) -> float:
    """log |det K| of the activation-pattern kernel of ``images`` [B, 3, H, W]."""
    n = images.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...], __: Any) -> None:
        codes = (inputs[0] > 0).flatten(1).double()  # [B, units]
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, ACTIVATIONS)]
    try:
        model.train()(images)
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(kernel).logabsdet)


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum of the L2 norms of the parameters' cross-entropy gradients on one batch."""
    model.train().zero_grad()
    F.cross_entropy(model(images), labels).backward()
    return float(sum(p.grad.norm() for p in model.parameters() if p.grad is not None))


@dataclass(frozen=True)
class ZeroCostEvaluator:
    """Scores an untrained candidate with one zero-cost proxy (the study maximises the score)."""

    config: ZeroCostConfig
    name: str = "zero_cost"

    @cached_property
    def _source(self) -> Any:
        return make_sources(self.config.dataset)[0]

    @property
    def num_classes(self) -> int:
        return len(self._source.classes)

    def batch(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first batch of a seeded shuffle, evaluation transform, as floats in [0, 1]."""
        cfg = self.config
        sampler = SingleScaleSampler(len(self._source), cfg.resolution, cfg.batch_size,
                                     seed=seed)
        sampler.set_epoch(-1)
        dataset = ImageDataset(self._source, seed=seed)
        images, labels = collate([dataset[key] for key in next(iter(sampler))])
        return images.float() / 255, labels

    @with_torch_threads
    def evaluate(self, spec: ArchSpec, *, seed: int, workdir: Path, threads: int, device: str,
                 on_epoch: Callable[[int, float], bool] | None = None) -> EvalResult:
        start = time.perf_counter()
        torch.manual_seed(seed)
        proxy = self.config.proxy
        if proxy in ("params", "macs"):
            c = complexity(spec, self.config.resolution)
            score = math.log10(c.params if proxy == "params" else c.macs)
        else:
            model = MobileViT(spec)
            if proxy == "synflow":
                score = synflow(model, self.config.resolution)
            else:
                images, labels = self.batch(seed)
                score = naswot(model, images) if proxy == "naswot" else \
                    grad_norm(model, images, labels)
        if not math.isfinite(score):
            raise EvaluationError(f"{proxy} score is {score}")
        return EvalResult(accuracy=score, curve=(score,), provenance={
            "evaluator": self.name, "metric": proxy, "resolution": self.config.resolution,
            "dataset": self.config.dataset.kind, "batch_size": self.config.batch_size,
            "seed": seed, "wall_time_s": round(time.perf_counter() - start, 3)})
