"""The supernet evaluator: candidates scored with weights inherited from a weight-sharing supernet.

Before the search, the driver calls :meth:`SupernetEvaluator.for_search` with the study's space,
budget and seed: it finds the supernet for them in the store (:mod:`nas.supernet.store`) or trains
it there (:func:`nas.supernet.train.train_supernet`), and returns the evaluator that the workers
use. A worker loads the supernet once per process; each candidate is then cut from it
(:meth:`nas.supernet.network.Supernet.extract`: the builder's own network), its BatchNorm
statistics re-estimated on a fixed set of training batches, and scored by top-1 on the
validation images. The result is a function of the stored weights and the data alone.

With ``split`` (few-shot NAS, Zhao et al. 2021), the shared supernet is then split along design
parameters: one sub-supernet per combination of their values (one per block design, say), each
starting from the shared weights and trained ``split_epochs`` more on its part of the space only,
so designs stop competing for the same tensors; a candidate is cut from the sub-supernet of its
part. Each sub-supernet is its own store entry, keyed by its part and the shared supernet's key.
"""

from __future__ import annotations

import itertools
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
from search_spaces import MobileViTSpace, SpaceError

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
    parts: tuple[tuple[tuple[Any, ...], str], ...] = ()  # a split's values -> its folder

    @cached_property
    def _sources(self) -> tuple[Any, Any]:
        return make_sources(self.config.train_config().dataset)

    @property
    def num_classes(self) -> int:
        return len(self._sources[0].classes)

    # -- in the driver ----------------------------------------------------------------------

    def key(self, space: MobileViTSpace, budget: Budget, seed: int) -> str:
        """The store key of the supernet for this study's space, budget and seed."""
        return supernet_key(space, budget.model_dump(mode="json"),
                            self.config.train_config().model_dump(mode="json"), self._sandwich(),
                            seed)

    def _sandwich(self) -> dict[str, Any]:
        """The sandwich settings a store key covers."""
        c = self.config
        sandwich: dict[str, Any] = {"subnets": c.subnets, "distill": c.distill}
        if c.train_workers > 1:  # per-worker BatchNorm batches: other weights (same keys at 1)
            sandwich["train_workers"] = c.train_workers
        elif c.train_gpus_per_worker:  # other kernels, other weights; a checkpoint stays on one
            sandwich["device"] = "cuda"
        return sandwich

    def split_of(self, values: tuple[Any, ...]) -> dict[str, Any]:
        """The split parameters named with ``values``: {"block": "v2"}."""
        return dict(zip(self.config.split, values, strict=True))

    def stored(self, space: MobileViTSpace, budget: Budget, seed: int) -> StoredSupernet:
        """The store entry this study would use (complete or not)."""
        return SupernetStore(self.config.store).entry(self.key(space, budget, seed))

    def part_spaces(self, space: MobileViTSpace) -> list[tuple[tuple[Any, ...], MobileViTSpace]]:
        """The parts of ``space`` a split supernet has: (values of the split parameters, the
        space with them fixed) for each combination; none without ``split``."""
        names = self.config.split
        return [(values, space.fixing(self.split_of(values)))
                for values in itertools.product(*(space.params[n].values for n in names))
                ] if names else []

    def part_key(self, space: MobileViTSpace, budget: Budget, seed: int,
                 values: tuple[Any, ...]) -> str:
        """The store key of the sub-supernet for the part ``values`` of ``space``."""
        sandwich = {**self._sandwich(), "split": self.split_of(values),
                    "from": self.key(space, budget, seed)}
        return supernet_key(space.fixing(self.split_of(values)), budget.model_dump(mode="json"),
                            self.config.part_train_config().model_dump(mode="json"), sandwich,
                            seed)

    def stored_parts(self, space: MobileViTSpace, budget: Budget,
                     seed: int) -> list[tuple[tuple[Any, ...], StoredSupernet]]:
        """The store entries of a split's sub-supernets (complete or not)."""
        store = SupernetStore(self.config.store)
        return [(values, store.entry(self.part_key(space, budget, seed, values)))
                for values, _ in self.part_spaces(space)]

    def for_search(self, space: MobileViTSpace, budget: Budget, seed: int, *,
                   label: str = "", say: Say | None = None,
                   threads: int | None = None) -> SupernetEvaluator:
        """The evaluator for a study over ``space``: its supernet loaded from the store, or
        trained into it first (resuming an interrupted training; waiting while another process
        trains the same one)."""
        say = say or _stderr
        threads = threads or os.cpu_count() or 1
        entry = ensure_trained(self, space, budget, seed, label=label, say=say, threads=threads)
        parts = ensure_parts(self, space, budget, seed, entry, label=label, say=say,
                             threads=threads)
        return self.attached(space, entry.folder, seed,
                             tuple((values, str(e.folder)) for values, e in parts))

    def attached(self, space: MobileViTSpace, folder: str | Path, seed: int,
                 parts: tuple[tuple[tuple[Any, ...], str], ...] = ()) -> SupernetEvaluator:
        """This evaluator bound to the stored supernet in ``folder`` (trained over ``space``)
        and, for a split supernet, to its sub-supernets (values of the split -> folder)."""
        return replace(self, space=space, folder=str(folder), seed=seed, parts=parts)

    # -- in a worker ------------------------------------------------------------------------

    def _part_of(self, spec: ArchSpec) -> tuple[tuple[Any, ...], str]:
        """The split values and folder of the (sub-)supernet ``spec`` is cut from."""
        assert self.space is not None and self.folder is not None
        if not self.parts:
            return (), self.folder
        names = self.config.split
        try:
            params = self.space.params_for(spec)
        except SpaceError as exc:
            raise EvaluationError(f"spec {spec.spec_id}: {exc}") from None
        values = tuple(params[n] for n in names)
        folder = dict(self.parts).get(values)
        if folder is None:
            where = ", ".join(f"{n}={v}" for n, v in zip(names, values, strict=True))
            raise EvaluationError(f"spec {spec.spec_id}: no sub-supernet for {where} (no "
                                  "network of that part fits the budget)")
        return values, folder

    def _supernet(self, spec: ArchSpec) -> tuple[Supernet, str]:
        if self.space is None or self.folder is None:
            raise EvaluationError("the supernet evaluator was not prepared for a study (the "
                                  "driver trains or loads its supernet before the search)")
        values, folder = self._part_of(spec)
        net = _SUPERNETS.get(folder)
        if net is None:
            space = self.space.fixing(self.split_of(values)) if values else self.space
            net = Supernet.load(Path(folder) / "supernet.pt", space, self.seed)
            net.eval()
            _SUPERNETS[folder] = net
            # every sub-supernet of a split stays loaded: candidates come in any order
            while len(_SUPERNETS) > max(2, len(self.parts)):
                _SUPERNETS.popitem(last=False)
        else:
            _SUPERNETS.move_to_end(folder)
        return net, folder

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
        supernet, _ = self._supernet(spec)
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
        values, used = self._part_of(spec)
        folder = Path(used)
        split = ({"split": self.split_of(values),
                  "split_epochs": self.config.part_train_config().epochs} if values else {})
        return EvalResult(accuracy=top1, curve=(top1,), provenance={**split,
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
    return _ensure(evaluator, evaluator.key(space, budget, seed), space, budget, seed,
                   evaluator.config.train_config(), label=label, say=say, threads=threads)


def ensure_parts(evaluator: SupernetEvaluator, space: MobileViTSpace, budget: Budget, seed: int,
                 shared: StoredSupernet, *, label: str = "", say: Say = _stderr,
                 threads: int = 1) -> list[tuple[tuple[Any, ...], StoredSupernet]]:
    """The complete store entries of a split supernet's sub-supernets, each trained now (from
    the ``shared`` supernet's weights) when the store has none; parts where no network fits
    the budget have none. Empty without ``split``."""
    from nas.study.budget import BudgetGate
    from nas.supernet.sampling import SandwichSampler

    out = []
    for values, part in evaluator.part_spaces(space):
        where = ", ".join(f"{n}={v}" for n, v in zip(evaluator.config.split, values, strict=True))
        try:
            SandwichSampler(part, BudgetGate(budget), seed=seed).smallest  # noqa: B018
        except SupernetError:
            say(f"supernet split {where}: no network of this part fits the budget; no "
                "sub-supernet")
            continue
        key = evaluator.part_key(space, budget, seed, values)
        out.append((values, _ensure(evaluator, key, part, budget, seed,
                                    evaluator.config.part_train_config(), label=label, say=say,
                                    threads=threads, parent=(shared, space), part=where)))
    return out


def _ensure(evaluator: SupernetEvaluator, key: str, space: MobileViTSpace, budget: Budget,
            seed: int, cfg: Any, *, label: str, say: Say, threads: int,
            parent: tuple[StoredSupernet, MobileViTSpace] | None = None,
            part: str = "") -> StoredSupernet:
    """The complete store entry ``key`` of a supernet over ``space`` trained as ``cfg`` says,
    trained now when the store has none; a sub-supernet starts from ``parent`` (its entry and
    space)."""
    from nas.study.budget import BudgetGate
    from nas.supernet.sampling import SandwichSampler
    from nas.supernet.train import format_report, train_supernet

    config = evaluator.config
    store = SupernetStore(config.store)
    entry = store.entry(key)
    title = f"supernet {key}" + (f" ({part})" if part else "")
    if entry.complete:
        say(f"{title}: stored in {entry.folder}, reused")
        return entry
    with store.training(key) as entry:
        if entry.complete:  # another process trained it while this one waited
            say(f"{title}: trained by another process, reused")
            return entry
        sampler = SandwichSampler(space, BudgetGate(budget), seed=seed)
        try:
            sampler.largest  # noqa: B018 - an impossible budget fails here, before any work
        except SupernetError as exc:
            raise EvaluationError(f"evaluator.kind=supernet: {exc}") from None
        with torch_threads(threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            supernet = Supernet(space, seed=seed)
            warm = None
            if parent is not None:
                warm = str(parent[0].weights)
                supernet.inherit(Supernet.load(parent[0].weights, parent[1], seed))
            train_src, val_src = evaluator._sources
            resumed = " (resuming)" if entry.checkpoint.exists() else ""
            workers = config.train_workers
            where = (f" on {workers} Ray Train workers" if workers > 1 else "")
            start = f", from {parent[0].key}" if parent is not None else ""
            say(f"{title}: training {cfg.epochs} epochs on {len(train_src):,} "
                f"{cfg.dataset.kind} images at {cfg.resolution} px, "
                f"{supernet.tensor_count() / 1e6:.1f} M values{start}{where}{resumed}")
            if workers > 1:
                from nas.supernet.distributed import DistributedJob, train_distributed

                job = DistributedJob(evaluator=evaluator, space=space, budget=budget, seed=seed,
                                     checkpoint=str(entry.checkpoint),
                                     threads=max(1, threads // workers),
                                     use_gpu=config.train_gpus_per_worker > 0,
                                     train=cfg, warm_from=warm,
                                     warm_space=parent[1] if parent is not None else None)
                result, world = train_distributed(
                    job, workers, gpus_per_worker=config.train_gpus_per_worker,
                    on_epoch=lambda report: say(format_report(report)))
                # rank 0 counted its own shard of the images
                result = replace(result, images=result.images * world)
                supernet.load_state_dict(torch.load(entry.checkpoint, map_location="cpu",
                                                    weights_only=False)["supernet"])
            else:
                device = "cuda" if config.train_gpus_per_worker else "cpu"
                if device == "cuda" and not torch.cuda.is_available():
                    raise EvaluationError("evaluator.train_gpus_per_worker=1: this process "
                                          "sees no CUDA device")
                train_loader, val_loader = make_loaders(cfg, train_src, val_src, seed=seed,
                                                        device=device)
                result = train_supernet(
                    supernet.to(device), sampler, cfg.recipe, cfg.epochs, train_loader,
                    subnets=config.subnets, distill=config.distill,
                    checkpoint=entry.checkpoint, val_loader=val_loader,
                    calibration_batches=config.calibration_batches,
                    on_epoch=lambda report: say(format_report(report)), device=device)
                supernet.to("cpu")  # stored and cut on the CPU
        store.finish(entry, supernet.state_dict(), {
            "key": key, "study": label, "seed": seed, "epochs": cfg.epochs,
            "train": cfg.model_dump(mode="json"), "budget": budget.model_dump(mode="json"),
            "sandwich": {"subnets": config.subnets, "distill": config.distill},
            "space": {name: p.describe() for name, p in space.params.items()},
            **({"part": part, "from": parent[0].key} if parent is not None else {}),
            "largest": sampler.largest.spec_id, "smallest": sampler.smallest.spec_id,
            "tensor_values": supernet.tensor_count(), "steps": result.steps,
            "train_workers": config.train_workers,
            "images": result.images, "wall_time_s": result.wall_time_s,
            "resumed_from_epoch": result.resumed_from_epoch,
            "history": [r.__dict__ for r in result.history],
            "torch": torch.__version__})
        say(f"{title}: trained in {result.wall_time_s / 60:.1f} min, stored in "
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
    split = provenance.get("split")
    parts = ((tuple(split[n] for n in evaluator.config.split), str(folder)),) if split else ()
    bound = evaluator.attached(space, folder, int(provenance.get("supernet_seed", config.seed)),
                               parts)
    with torch.no_grad():
        net = bound.network(spec)
    torch.save(net.state_dict(), path)
    return path
