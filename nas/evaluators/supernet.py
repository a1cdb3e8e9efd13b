"""The supernet evaluator: candidates scored with weights inherited from a weight-sharing supernet.

Before the search, the driver calls :meth:`SupernetEvaluator.for_search` with the study's space,
budget and seed: it finds the supernet for them in the store (:mod:`nas.supernet.store`) or trains
it there (:func:`nas.supernet.train.train_supernet`), and returns the evaluator that the workers
use. A worker loads the supernet once per process; each candidate is then cut from it
(:meth:`nas.supernet.network.Supernet.extract`: the builder's own network), its BatchNorm
statistics re-estimated on a fixed set of training batches, and scored by top-1 on the
validation images. The result is a function of the stored weights and the data alone.
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from mobilevit import ArchSpec, MobileViT
from nas.evaluators.base import EvalResult, EvaluationError
from nas.evaluators.recipe import prepare_images
from nas.evaluators.train import make_loaders, make_sources
from nas.runtime import torch_threads, with_torch_threads
from nas.study.config import Budget, SupernetConfig
from nas.supernet.calibrate import recalibrate
from nas.supernet.network import Supernet, SupernetError
from nas.supernet.store import StoredSupernet, SupernetStore, supernet_key
from search_spaces import MobileViTSpace

Say = Callable[[str], None]

# Per worker process: the loaded supernets (by folder) and the evaluation data (by config).
_SUPERNETS: OrderedDict[str, Supernet] = OrderedDict()
_DATA: dict[str, tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]] = {}


@dataclass(frozen=True)
class SupernetEvaluator:
    """Scores a candidate by the top-1 of its inherited weights (see the module docstring).

    ``space``, ``folder`` and ``seed`` are set by :meth:`for_search` (or :meth:`attached`); a
    fresh one from the config cannot evaluate yet.
    """

    config: SupernetConfig
    name: str = "supernet"
    space: MobileViTSpace | None = None
    folder: str | None = None
    seed: int = 0

    @cached_property
    def _sources(self) -> tuple[Any, Any]:
        return make_sources(self.config.train_config().dataset)

    @property
    def num_classes(self) -> int:
        return len(self._sources[0].classes)

    # -- in the driver ----------------------------------------------------------------------

    def key(self, space: MobileViTSpace, budget: Budget, seed: int) -> str:
        """The store key of the supernet for this study's space, budget and seed."""
        c = self.config
        sandwich: dict[str, Any] = {"subnets": c.subnets, "distill": c.distill}
        if c.train_workers > 1:  # per-worker BatchNorm batches: other weights (same keys at 1)
            sandwich["train_workers"] = c.train_workers
        return supernet_key(space, budget.model_dump(mode="json"),
                            c.train_config().model_dump(mode="json"), sandwich, seed)

    def stored(self, space: MobileViTSpace, budget: Budget, seed: int) -> StoredSupernet:
        """The store entry this study would use (complete or not)."""
        return SupernetStore(self.config.store).entry(self.key(space, budget, seed))

    def for_search(self, space: MobileViTSpace, budget: Budget, seed: int, *,
                   label: str = "", say: Say | None = None,
                   threads: int | None = None) -> SupernetEvaluator:
        """The evaluator for a study over ``space``: its supernet loaded from the store, or
        trained into it first (resuming an interrupted training; waiting while another process
        trains the same one)."""
        entry = ensure_trained(self, space, budget, seed, label=label, say=say or _stderr,
                               threads=threads or os.cpu_count() or 1)
        return self.attached(space, entry.folder, seed)

    def attached(self, space: MobileViTSpace, folder: str | Path, seed: int) -> SupernetEvaluator:
        """This evaluator bound to the stored supernet in ``folder`` (trained over ``space``)."""
        return replace(self, space=space, folder=str(folder), seed=seed)

    # -- in a worker ------------------------------------------------------------------------

    def _supernet(self) -> Supernet:
        if self.space is None or self.folder is None:
            raise EvaluationError("the supernet evaluator was not prepared for a study (the "
                                  "driver trains or loads its supernet before the search)")
        net = _SUPERNETS.get(self.folder)
        if net is None:
            net = Supernet(self.space, seed=self.seed)
            state = torch.load(Path(self.folder) / "supernet.pt", map_location="cpu",
                               weights_only=True)
            net.load_state_dict(state)
            net.eval()
            _SUPERNETS[self.folder] = net
            while len(_SUPERNETS) > 2:
                _SUPERNETS.popitem(last=False)
        return net

    def _data(self) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
        key = f"{self.config.model_dump_json()}:{self.seed}"
        if key not in _DATA:
            cfg = self.config.train_config()
            train_src, val_src = self._sources
            train_loader, val_loader = make_loaders(cfg, train_src, val_src, seed=self.seed)
            from nas.supernet.train import first_batches

            calibration = first_batches(train_loader, self.config.calibration_batches)
            val, left = [], self.config.eval_images or len(val_src)
            for images, labels in val_loader:
                if left <= 0:
                    break
                val.append((prepare_images(images[:left], "cpu", False), labels[:left]))
                left -= len(labels)
            _DATA.clear()
            _DATA[key] = (calibration, val)
        return _DATA[key]

    def network(self, spec: ArchSpec) -> MobileViT:
        """The candidate with its inherited weights and recalibrated BatchNorms (eval mode)."""
        supernet = self._supernet()
        calibration, _ = self._data()
        try:
            net = supernet.extract(spec)
        except SupernetError as exc:
            raise EvaluationError(str(exc)) from None
        recalibrate(net, calibration)
        return net

    @with_torch_threads
    @torch.no_grad()
    def evaluate(self, spec: ArchSpec, *, seed: int, workdir: Path, threads: int, device: str,
                 on_epoch: Callable[[int, float], bool] | None = None) -> EvalResult:
        start = time.perf_counter()
        net = self.network(spec)
        calibration, val = self._data()
        correct = total = 0
        for images, labels in val:
            correct += int((net(images).argmax(1) == labels).sum())
            total += len(labels)
        top1 = round(100 * correct / max(1, total), 3)
        cfg = self.config.train_config()
        folder = Path(self.folder)  # type: ignore[arg-type]  # set: network() checked it
        return EvalResult(accuracy=top1, curve=(top1,), provenance={
            "evaluator": self.name, "metric": "top1", "inherited": True,
            "supernet": folder.name, "store": str(folder.parent),
            "dataset": cfg.dataset.kind, "path": cfg.dataset.path,
            "classes": self.num_classes, "train_images": len(self._sources[0]),
            "val_images": total, "supernet_epochs": cfg.epochs, "resolution": cfg.resolution,
            "calibration_images": sum(len(b) for b in calibration), "seed": seed,
            "supernet_seed": self.seed,  # the trial's seed changes nothing: no training here
            "wall_time_s": round(time.perf_counter() - start, 3)})


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_trained(evaluator: SupernetEvaluator, space: MobileViTSpace, budget: Budget,
                   seed: int, *, label: str = "", say: Say = _stderr,
                   threads: int = 1) -> StoredSupernet:
    """The complete store entry of the supernet for (space, budget, training, seed), trained
    now when the store has none (see :meth:`SupernetEvaluator.for_search`)."""
    from nas.study.budget import BudgetGate
    from nas.supernet.sampling import SandwichSampler
    from nas.supernet.train import format_report, train_supernet

    config = evaluator.config
    store = SupernetStore(config.store)
    key = evaluator.key(space, budget, seed)
    entry = store.entry(key)
    if entry.complete:
        say(f"supernet {key}: stored in {entry.folder}, reused")
        return entry
    with store.training(key) as entry:
        if entry.complete:  # another process trained it while this one waited
            say(f"supernet {key}: trained by another process, reused")
            return entry
        cfg = config.train_config()
        sampler = SandwichSampler(space, BudgetGate(budget), seed=seed)
        try:
            sampler.largest  # noqa: B018 - an impossible budget fails here, before any work
        except SupernetError as exc:
            raise EvaluationError(f"evaluator.kind=supernet: {exc}") from None
        with torch_threads(threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            supernet = Supernet(space, seed=seed)
            train_src, val_src = evaluator._sources
            resumed = " (resuming)" if entry.checkpoint.exists() else ""
            workers = config.train_workers
            where = (f" on {workers} Ray Train workers" if workers > 1 else "")
            say(f"supernet {key}: training {cfg.epochs} epochs on {len(train_src):,} "
                f"{cfg.dataset.kind} images at {cfg.resolution} px, "
                f"{supernet.tensor_count() / 1e6:.1f} M values{where}{resumed}")
            if workers > 1:
                from nas.supernet.distributed import DistributedJob, train_distributed

                job = DistributedJob(evaluator=evaluator, space=space, budget=budget, seed=seed,
                                     checkpoint=str(entry.checkpoint),
                                     threads=max(1, threads // workers),
                                     use_gpu=config.train_gpus_per_worker > 0)
                result, world = train_distributed(
                    job, workers, gpus_per_worker=config.train_gpus_per_worker,
                    on_epoch=lambda report: say(format_report(report)))
                # rank 0 counted its own shard of the images
                result = replace(result, images=result.images * world)
                supernet.load_state_dict(torch.load(entry.checkpoint, map_location="cpu",
                                                    weights_only=False)["supernet"])
            else:
                train_loader, val_loader = make_loaders(cfg, train_src, val_src, seed=seed)
                result = train_supernet(
                    supernet, sampler, cfg.recipe, cfg.epochs, train_loader,
                    subnets=config.subnets, distill=config.distill,
                    checkpoint=entry.checkpoint, val_loader=val_loader,
                    calibration_batches=config.calibration_batches,
                    on_epoch=lambda report: say(format_report(report)))
        store.finish(entry, supernet.state_dict(), {
            "key": key, "study": label, "seed": seed, "epochs": cfg.epochs,
            "train": cfg.model_dump(mode="json"), "budget": budget.model_dump(mode="json"),
            "sandwich": {"subnets": config.subnets, "distill": config.distill},
            "space": {name: p.describe() for name, p in space.params.items()},
            "largest": sampler.largest.spec_id, "smallest": sampler.smallest.spec_id,
            "tensor_values": supernet.tensor_count(), "steps": result.steps,
            "train_workers": config.train_workers,
            "images": result.images, "wall_time_s": result.wall_time_s,
            "resumed_from_epoch": result.resumed_from_epoch,
            "history": [r.__dict__ for r in result.history],
            "torch": torch.__version__})
        say(f"supernet {key}: trained in {result.wall_time_s / 60:.1f} min, stored in "
            f"{entry.folder}")
        return store.entry(key)


def save_inherited_weights(config: Any, provenance: dict[str, Any], spec: ArchSpec,
                           path: Path) -> Path:
    """Write the inherited weights of a trial scored by the supernet evaluator (``provenance``
    is its ``eval`` record) as a state dict: cut from the stored supernet and recalibrated
    exactly as when it was scored. ``config`` is the run's study config."""
    from nas.study.config import StudyError

    folder = Path(provenance["store"]) / provenance["supernet"]
    if not (folder / "supernet.pt").exists():
        raise StudyError(f"the trial's supernet {folder} is not in the store any more; train it "
                         "again with `nas supernet train STUDY.yaml` (same study, same key)")
    evaluator: SupernetEvaluator = config.evaluator.build()
    space = MobileViTSpace(config.space, num_classes=evaluator.num_classes,
                           resolution=config.budget.resolution)
    bound = evaluator.attached(space, folder, int(provenance.get("supernet_seed", config.seed)))
    with torch.no_grad():
        net = bound.network(spec)
    torch.save(net.state_dict(), path)
    return path
