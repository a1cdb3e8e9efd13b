"""The training evaluator: a dataset, a sampler, the recipe, a checkpoint to resume from."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from mobilevit import ArchSpec, MobileViT
from nas.data import (
    CifarSource,
    DataError,
    FolderSource,
    ImageDataset,
    MultiScaleSampler,
    ProceduralSource,
    SingleScaleSampler,
    collate,
    download_cifar,
)
from nas.evaluators.base import EvalResult
from nas.evaluators.recipe import final_weights, train
from nas.runtime import with_torch_threads
from nas.study.config import DatasetConfig, TrainConfig

# cvnets' multi-scale sizes relative to the base size (160, 192, 256, 288, 320 at 256).
SCALES = (0.625, 0.75, 1.0, 1.125, 1.25)


def make_sources(config: DatasetConfig) -> tuple[Any, Any]:
    """The train and validation sources a dataset section describes (errors before training)."""
    kind = config.kind
    if kind == "procedural":
        return (ProceduralSource(config.train_images, config.image_size, "train",
                                 seed=config.seed, classes=config.classes),
                ProceduralSource(config.val_images, config.image_size, "val", seed=config.seed,
                                 classes=config.classes))
    if kind == "folder":
        root = Path(config.path)  # type: ignore[arg-type]
        if not root.is_dir():
            raise DataError(f"dataset path {root}: no such folder")
        train_src = FolderSource(root / config.train_split, classes=config.classes,
                                 per_class=config.images_per_class, seed=config.seed)
        val_src = FolderSource(root / config.val_split, classes=train_src.classes,
                               per_class=config.val_images_per_class, seed=config.seed)
        return train_src, val_src
    root = Path(config.path)  # type: ignore[arg-type]
    if config.download:
        root = download_cifar(kind, root)
    val_split = "test" if config.val_split == "val" else config.val_split
    train_src = CifarSource(root, kind, config.train_split, classes=config.classes,
                            per_class=config.images_per_class, seed=config.seed)
    val_src = CifarSource(root, kind, val_split, classes=train_src.classes,
                          per_class=config.val_images_per_class, seed=config.seed)
    return train_src, val_src


def make_loaders(cfg: TrainConfig, train_src: Any, val_src: Any, *, seed: int,
                 device: str = "cpu") -> tuple[Any, Any]:
    """The training loader (the section's single- or multi-scale sampler and augmentation,
    seeded) and the validation loader (the evaluation transform, in order)."""
    if cfg.multiscale is not None:
        sizes = cfg.multiscale.sizes or sorted({max(16, round(cfg.resolution * s / 16) * 16)
                                                for s in SCALES})
        sampler: Any = MultiScaleSampler(len(train_src), sizes=sizes,
                                         base_size=cfg.resolution, base_batch=cfg.batch_size,
                                         rule=cfg.multiscale.rule, seed=seed)
    else:
        sampler = SingleScaleSampler(len(train_src), cfg.resolution, cfg.batch_size, seed=seed)
    val_sampler = SingleScaleSampler(len(val_src), cfg.resolution, cfg.batch_size,
                                     shuffle=False)
    val_sampler.set_epoch(-1)  # the evaluation transform
    train_set = ImageDataset(train_src, seed=seed, scale=cfg.crop_scale,
                             eval_resize_ratio=cfg.eval_resize)
    workers = cfg.loader_workers
    options: dict[str, Any] = dict(num_workers=workers, collate_fn=collate,
                                   pin_memory=device == "cuda", persistent_workers=workers > 0)
    train_loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, **options)
    val_loader = torch.utils.data.DataLoader(
        ImageDataset(val_src, seed=seed, eval_resize_ratio=cfg.eval_resize),
        batch_sampler=val_sampler, **options)
    return train_loader, val_loader


@dataclass(frozen=True)
class TrainEvaluator:
    """Trains a candidate and scores it by top-1 on the validation split (EMA weights when the
    recipe keeps an EMA)."""

    config: TrainConfig
    name: str = "train"

    @cached_property
    def _sources(self) -> tuple[Any, Any]:
        return make_sources(self.config.dataset)

    @property
    def num_classes(self) -> int:
        return len(self._sources[0].classes)

    @with_torch_threads
    def evaluate(self, spec: ArchSpec, *, seed: int, workdir: Path, threads: int, device: str,
                 on_epoch: Callable[[int, float], bool] | None = None) -> EvalResult:
        cfg = self.config
        start = time.perf_counter()
        torch.manual_seed(seed)
        train_src, val_src = self._sources
        train_loader, val_loader = make_loaders(cfg, train_src, val_src, seed=seed, device=device)
        train_set = train_loader.dataset
        workdir.mkdir(parents=True, exist_ok=True)
        checkpoint = workdir / "checkpoint.pt"
        result = train(MobileViT(spec), cfg.recipe, cfg.epochs, train_loader, val_loader,
                       device=device, checkpoint=checkpoint, on_epoch=on_epoch)
        artifacts = {}
        if cfg.save_weights:
            torch.save(final_weights(checkpoint), workdir / "weights.pt")
            artifacts["weights"] = str(workdir / "weights.pt")
        data = cfg.dataset
        return EvalResult(
            accuracy=result.accuracy, curve=tuple(result.curve), artifacts=artifacts,
            stopped_early=result.stopped_early,
            provenance={
                "evaluator": self.name, "metric": "top1", "dataset": data.kind,
                "path": data.path, "classes": len(train_src.classes),
                "train_images": len(train_src), "val_images": len(val_src),
                "epochs": cfg.epochs, "epochs_run": len(result.curve),
                "resolution": cfg.resolution,
                "multiscale": cfg.multiscale.rule if cfg.multiscale else None,
                "ema": cfg.recipe.ema_momentum is not None, "seed": seed,
                "steps": result.steps, "images_seen": result.images,
                "unreadable_images": train_set.unreadable.value,
                "resumed_from_epoch": result.resumed_from_epoch,
                "stopped_early": result.stopped_early,
                "wall_time_s": round(time.perf_counter() - start, 2)})
