"""The papers' training loop: AdamW, warm-up + cosine, label smoothing, EMA, clipping, AMP.

:func:`train` trains a model epoch by epoch, evaluates after every epoch (with the EMA weights
when EMA is on), writes a checkpoint after every epoch, and resumes from it: a run interrupted
after epoch k and started again gives the same weights as a run that was never interrupted (the
data order and augmentation are functions of (seed, epoch, index), and the random state is saved
with the checkpoint).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas.evaluators.base import EvaluationError
from nas.study.config import RecipeConfig


def learning_rate(recipe: RecipeConfig, step: int, epoch: int, epochs: int,
                  total_steps: int | None = None) -> float:
    """Learning rate at optimiser step ``step`` of epoch ``epoch`` (of ``epochs``; the run has
    about ``total_steps`` steps, needed when the cosine is indexed by step)."""
    if step < recipe.warmup_iters:
        return recipe.warmup_init_lr + (recipe.lr - recipe.warmup_init_lr) * step / \
            recipe.warmup_iters
    if recipe.cosine_per == "step" and total_steps:
        progress = min(1.0, (step - recipe.warmup_iters) / max(1, total_steps
                                                                 - recipe.warmup_iters))
    else:
        progress = epoch / epochs
    return recipe.min_lr + 0.5 * (recipe.lr - recipe.min_lr) * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float,
                 no_decay_norm_bias: bool) -> list[dict[str, Any]]:
    """AdamW parameter groups; with ``no_decay_norm_bias`` norms and biases get no decay (v2)."""
    if not no_decay_norm_bias:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0}]


class EMA:
    """Exponential moving average of a model's weights and buffers:
    ``ema = (1 - momentum) * ema + momentum * weights`` after every step (cvnets' EMA)."""

    def __init__(self, model: nn.Module, momentum: float) -> None:
        self.momentum = momentum
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema, value in zip(self.model.state_dict().values(), model.state_dict().values(),
                              strict=True):
            if ema.dtype.is_floating_point:
                ema.mul_(1 - self.momentum).add_(value.detach(), alpha=self.momentum)
            else:
                ema.copy_(value)


@dataclass
class TrainResult:
    """What a training run produced."""

    curve: list[float]
    steps: int
    images: int
    stopped_early: bool
    wall_time_s: float
    resumed_from_epoch: int = 0

    @property
    def accuracy(self) -> float:
        return self.curve[-1] if self.curve else 0.0


@torch.no_grad()
def top1(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], device: str,
         channels_last: bool) -> float:
    """Top-1 accuracy (%) of ``model`` on ``loader``."""
    model.eval()
    correct = total = 0
    for images, labels in loader:
        x = prepare_images(images, device, channels_last)
        correct += int((model(x).argmax(1).cpu() == labels).sum())
        total += len(labels)
    return round(100 * correct / max(1, total), 3)


def prepare_images(images: torch.Tensor, device: str, channels_last: bool) -> torch.Tensor:
    """uint8 images [B, 3, H, W] as the network's float input in [0, 1] on ``device``."""
    x = images.to(device, non_blocking=True).float().div_(255)  # [B, 3, H, W] in [0, 1]
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a kill leaves the previous file intact)."""
    # A name of this process's own: two writers (a worker that outlived its driver and the
    # attempt that replaced it) must never interleave their bytes in one temporary file.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill during the write leaves the previous checkpoint intact


def train(model: nn.Module, recipe: RecipeConfig, epochs: int, train_loader: Any,
          val_loader: Any, *, device: str = "cpu", checkpoint: Path | None = None,
          on_epoch: Callable[[int, float], bool] | None = None) -> TrainResult:
    """Train ``model`` for ``epochs`` epochs; see the module docstring.

    Args:
        model: the network (already seeded and built).
        recipe: optimiser, schedule and regularisation settings.
        epochs: epochs of the schedule.
        train_loader: yields (uint8 images, labels); its batch sampler has ``set_epoch``.
        val_loader: evaluation batches.
        device: "cpu" or "cuda".
        checkpoint: file to write after every epoch and to resume from when it exists.
        on_epoch: called with (epoch, accuracy) after every epoch, before its checkpoint is
            written; returning False stops the run early (a pruned trial) after the checkpoint,
            raising stops it before.

    Raises:
        EvaluationError: the loss became NaN or infinite.
    """
    start_time = time.perf_counter()
    cuda = device == "cuda"
    channels_last = recipe.channels_last
    model = model.to(device, memory_format=torch.channels_last if channels_last else
                     torch.contiguous_format)
    optimizer = torch.optim.AdamW(param_groups(model, recipe.weight_decay,
                                               recipe.no_decay_norm_bias),
                                  lr=recipe.lr, betas=(0.9, 0.999), eps=1e-8)
    ema = EMA(model, recipe.ema_momentum) if recipe.ema_momentum else None
    use_amp = recipe.amp and cuda
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    forward = torch.compile(model) if recipe.compile else model
    first_epoch, step, images, curve = 0, 0, 0, []
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema") is not None:
            ema.model.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"])
        first_epoch, step, images, curve = (state["epoch"], state["step"], state["images"],
                                            state["curve"])
    stopped = False
    total_steps = epochs * len(train_loader.batch_sampler)
    for epoch in range(first_epoch, epochs):
        train_loader.batch_sampler.set_epoch(epoch)
        model.train()
        for batch, labels in train_loader:
            lr = learning_rate(recipe, step, epoch, epochs, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = prepare_images(batch, device, channels_last)
            with torch.autocast(device, dtype=amp_dtype, enabled=use_amp):
                loss = F.cross_entropy(forward(x), labels.to(device),
                                       label_smoothing=recipe.label_smoothing)
            if not torch.isfinite(loss):
                raise EvaluationError(f"loss is {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if recipe.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update(model)
            step += 1
            images += len(labels)
        accuracy = top1(ema.model if ema is not None else model, val_loader, device,
                        channels_last)
        curve.append(accuracy)
        # Before the checkpoint: a callback that raises (a superseded attempt) writes nothing.
        go_on = on_epoch is None or on_epoch(epoch, accuracy)
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "scaler": scaler.state_dict(),
                               "ema": ema.model.state_dict() if ema is not None else None,
                               "rng": torch.get_rng_state(), "epoch": epoch + 1, "step": step,
                               "images": images, "curve": curve})
        if not go_on:
            stopped = epoch + 1 < epochs
            break
    return TrainResult(curve=curve, steps=step, images=images, stopped_early=stopped,
                       wall_time_s=time.perf_counter() - start_time,
                       resumed_from_epoch=first_epoch)


def final_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The weights to keep after training: the EMA's when there is one."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return state["ema"] if state.get("ema") is not None else state["model"]
