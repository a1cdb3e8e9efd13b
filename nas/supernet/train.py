"""Training a supernet: the sandwich rule with in-place distillation, checkpointed every epoch.

Each optimiser step trains the largest subnet under the budget on the labels, then the smallest
and ``subnets`` random ones on the largest's predictions (in-place distillation, BigNAS), with
the gradients of all of them summed into one AdamW step of the shared weights; the learning rate
follows the papers' recipe (:func:`nas.evaluators.recipe.learning_rate`).

A checkpoint after every epoch holds the weights, the optimiser, the random state and the history;
a training killed and started again gives the same weights as one never interrupted (the data
order is a function of (seed, epoch), the subnets of (seed, step)).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nas.evaluators.base import EvaluationError
from nas.evaluators.recipe import learning_rate, param_groups, prepare_images, save_checkpoint
from nas.study.config import RecipeConfig
from nas.supernet.calibrate import recalibrate
from nas.supernet.network import Supernet
from nas.supernet.sampling import SandwichSampler


@dataclass(frozen=True)
class EpochReport:
    """What one epoch of supernet training did, for progress lines and the history."""

    epoch: int
    epochs: int
    loss: float
    steps: int
    images: int
    seconds: float
    eta_s: float
    top1: dict[str, float] = field(default_factory=dict)  # "largest" / "smallest" -> top-1 (%)


@dataclass(frozen=True)
class SupernetTrainResult:
    """A finished (or resumed and finished) supernet training."""

    history: tuple[EpochReport, ...]
    steps: int
    images: int
    wall_time_s: float
    resumed_from_epoch: int


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` against the probabilities ``target`` (in-place distillation)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


@torch.no_grad()
def subnet_top1(supernet: Supernet, spec: Any, calibration: list[torch.Tensor],
                val_loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 (%) of subnet ``spec`` cut from ``supernet``, its BatchNorms recalibrated on
    ``calibration`` (prepared image batches)."""
    net = supernet.extract(spec)
    recalibrate(net, calibration)
    correct = total = 0
    for images, labels in val_loader:
        correct += int((net(prepare_images(images, "cpu", False)).argmax(1) == labels).sum())
        total += len(labels)
    return round(100 * correct / max(1, total), 3)


def train_supernet(supernet: Supernet, sampler: SandwichSampler, recipe: RecipeConfig,
                   epochs: int, train_loader: Any, *, subnets: int = 2, distill: bool = True,
                   checkpoint: Path | None = None, val_loader: Any = None,
                   calibration_batches: int = 4,
                   on_epoch: Callable[[EpochReport], None] | None = None,
                   reduce_gradients: Callable[[torch.nn.Module], None] | None = None,
                   primary: bool = True, device: str = "cpu") -> SupernetTrainResult:
    """Train ``supernet`` for ``epochs`` epochs with the sandwich rule (see the module docstring).

    Args:
        supernet: the supernet (on the CPU).
        sampler: draws the subnets of each step under the study's budget.
        recipe: optimiser and schedule (lr, warm-up, cosine, weight decay, label smoothing,
            gradient clipping).
        epochs: epochs of the schedule.
        train_loader: yields (uint8 images, labels); its batch sampler has ``set_epoch``.
        subnets: random subnets per step besides the largest and the smallest.
        distill: the smallest and random subnets learn the largest's predictions (else the
            labels).
        checkpoint: file written after every epoch and resumed from when it exists.
        val_loader: when given, the largest and smallest subnets' top-1 after each epoch (their
            BatchNorms recalibrated on ``calibration_batches`` training batches).
        on_epoch: called with each epoch's report.
        reduce_gradients: data-parallel training (:mod:`nas.supernet.distributed`): called
            after each step's backward passes, before clipping, to average the gradients of
            all workers; each worker's ``train_loader`` yields its shard of every batch.
        primary: this worker writes the checkpoint, scores ``val_loader`` and reports epochs
            (the others only train).
        device: where the supernet and its batches live.

    Raises:
        EvaluationError: the loss became NaN or infinite.
    """
    start = time.perf_counter()
    optimizer = torch.optim.AdamW(param_groups(supernet, recipe.weight_decay,
                                               recipe.no_decay_norm_bias),
                                  lr=recipe.lr, betas=(0.9, 0.999), eps=1e-8)
    first_epoch, step, images, history = 0, 0, 0, []
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        supernet.load_state_dict(state["supernet"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"].cpu())
        first_epoch, step, images = state["epoch"], state["step"], state["images"]
        history = [EpochReport(**r) for r in state["history"]]
    steps_per_epoch = len(train_loader.batch_sampler)
    total_steps = epochs * steps_per_epoch
    for epoch in range(first_epoch, epochs):
        epoch_start = time.perf_counter()
        train_loader.batch_sampler.set_epoch(epoch)
        supernet.train()
        losses = []
        for batch, labels in train_loader:
            lr = learning_rate(recipe, step, epoch, epochs, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = prepare_images(batch, device, False)
            labels = labels.to(device)
            optimizer.zero_grad(set_to_none=True)
            teacher = None
            for k, spec in enumerate(sampler.step(step, subnets)):
                logits = supernet(x, spec)
                if k == 0 or not distill:
                    loss = F.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)
                    if k == 0:
                        teacher = logits.detach().softmax(1)
                else:
                    loss = soft_cross_entropy(logits, teacher)
                if not torch.isfinite(loss):
                    raise EvaluationError(f"supernet loss is {loss.item()} at step {step} "
                                          f"(subnet {spec.spec_id})")
                loss.backward()
                if k == 0:
                    losses.append(loss.item())
            if reduce_gradients is not None:
                reduce_gradients(supernet)
            if recipe.grad_clip:
                torch.nn.utils.clip_grad_norm_(supernet.parameters(), recipe.grad_clip)
            optimizer.step()
            step += 1
            images += len(labels)
        top1 = {}
        if val_loader is not None and primary:
            calibration = first_batches(train_loader, calibration_batches, epoch)
            top1 = {name: subnet_top1(supernet, spec, calibration, val_loader)
                    for name, spec in (("largest", sampler.largest),
                                       ("smallest", sampler.smallest))}
        seconds = time.perf_counter() - epoch_start
        done = epoch + 1 - first_epoch
        report = EpochReport(epoch=epoch, epochs=epochs,
                             loss=round(sum(losses) / max(1, len(losses)), 4),
                             steps=step, images=images, seconds=round(seconds, 2),
                             eta_s=round((time.perf_counter() - start) / done
                                         * (epochs - epoch - 1), 1), top1=top1)
        history.append(report)
        if on_epoch is not None and primary:
            on_epoch(report)
        if checkpoint is not None and primary:
            save_checkpoint(checkpoint, {"supernet": supernet.state_dict(),
                               "optimizer": optimizer.state_dict(),
                               "rng": torch.get_rng_state(), "epoch": epoch + 1, "step": step,
                               "images": images,
                               "history": [r.__dict__ for r in history]})
    return SupernetTrainResult(history=tuple(history), steps=step, images=images,
                               wall_time_s=round(time.perf_counter() - start, 2),
                               resumed_from_epoch=first_epoch)


def first_batches(loader: Any, count: int, epoch: int = 0) -> list[torch.Tensor]:
    """The first ``count`` batches of a training loader in epoch ``epoch``'s order, prepared for
    the network: the BatchNorm recalibration set (a function of the seed and the epoch)."""
    loader.batch_sampler.set_epoch(epoch)
    batches = []
    for images, _ in loader:
        if len(batches) >= count:
            break
        batches.append(prepare_images(images, "cpu", False))
    return batches


def format_report(r: EpochReport) -> str:
    """A progress line: ``supernet epoch 3/10: loss 1.92, largest 41.0 %, smallest 30.5 %,
    12.3 s, ETA 1 min 26 s``."""
    scores = "".join(f", {name} {value:.1f} %" for name, value in r.top1.items())
    eta = f"{int(r.eta_s // 60)} min {int(r.eta_s % 60)} s" if r.eta_s >= 60 else \
        f"{math.ceil(r.eta_s)} s"
    return (f"supernet epoch {r.epoch + 1}/{r.epochs}: loss {r.loss:.3f}{scores}, "
            f"{r.seconds:.1f} s, ETA {eta}")
