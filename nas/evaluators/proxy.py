"""Short real training on the procedural dataset: the offline default accuracy evaluator.

AdamW with a linear warm-up and a cosine schedule per step, label-smoothing cross-entropy,
random horizontal flips, a fixed resolution; top-1 on a held-out split after every epoch. Seeded:
the same spec, seed and settings give the same accuracy on the same machine.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mobilevit import ArchSpec, MobileViT
from nas.evaluators.base import EvalResult, EvaluationError
from nas.evaluators.procedural import NUM_CLASSES, dataset


@dataclass(frozen=True)
class ProxyTrainEvaluator:
    """Train ``epochs`` epochs on ``train_images`` procedural images at ``resolution``.

    The fields and their defaults are documented once, in :class:`nas.config.ProxyTrainConfig`.
    """

    train_images: int
    val_images: int
    resolution: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    label_smoothing: float
    warmup_fraction: float
    data_seed: int
    save_weights: bool
    name: str = "proxy_train"

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    def evaluate(self, spec: ArchSpec, *, seed: int, workdir: Path, threads: int,
                 device: str) -> EvalResult:
        start = time.perf_counter()
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        x_train, y_train = dataset(self.data_seed, self.train_images, self.resolution, "train")
        x_val, y_val = dataset(self.data_seed, self.val_images, self.resolution, "val")
        # channels-last is 20-27 % faster for these networks on CPU too (bench: docs/studies.md).
        model = MobileViT(spec).to(device, memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps_per_epoch = math.ceil(self.train_images / self.batch_size)
        total = steps_per_epoch * self.epochs
        warmup = max(1, int(self.warmup_fraction * total))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warmup if s < warmup else
            0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
        g = torch.Generator().manual_seed(seed)
        curve, step = [], 0
        for _epoch in range(self.epochs):
            model.train()
            order = torch.randperm(self.train_images, generator=g)
            for i in range(0, self.train_images, self.batch_size):
                idx = order[i:i + self.batch_size]
                x = (x_train[idx].to(device).float() / 255).contiguous(
                    memory_format=torch.channels_last)  # [B, 3, R, R]
                flip = torch.rand(len(idx), generator=g) < 0.5
                x = torch.where(flip[:, None, None, None].to(device), x.flip(-1), x)
                loss = F.cross_entropy(model(x), y_train[idx].to(device),
                                       label_smoothing=self.label_smoothing)
                if not torch.isfinite(loss):
                    raise EvaluationError(f"loss is {loss.item()} at step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                step += 1
            curve.append(self._top1(model, x_val, y_val, device))
        artifacts = {}
        if self.save_weights:
            workdir.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), workdir / "weights.pt")
            artifacts["weights"] = str(workdir / "weights.pt")
        return EvalResult(
            accuracy=curve[-1], curve=tuple(curve), artifacts=artifacts,
            provenance={"evaluator": self.name, "dataset": "procedural", "classes": NUM_CLASSES,
                        "train_images": self.train_images, "val_images": self.val_images,
                        "epochs": self.epochs, "resolution": self.resolution, "seed": seed,
                        "steps": step, "wall_time_s": round(time.perf_counter() - start, 2)})

    @torch.no_grad()
    def _top1(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: str) -> float:
        model.eval()
        correct = 0
        for i in range(0, len(x), 256):
            batch = (x[i:i + 256].to(device).float() / 255).contiguous(
                memory_format=torch.channels_last)
            logits = model(batch)
            correct += int((logits.argmax(1).cpu() == y[i:i + 256]).sum())
        return round(100 * correct / len(x), 2)
