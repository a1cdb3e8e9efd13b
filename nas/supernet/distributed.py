"""Data-parallel supernet training through Ray Train's ``TorchTrainer`` (DDP over gloo on CPUs,
NCCL on GPUs).

Every worker holds the whole supernet and draws the same subnets at each step (the sandwich
sampler is a function of (seed, step)); each takes its shard of every batch, so the recipe's
batch size stays the global batch. After a step's backward passes the gradients are averaged
across workers (:func:`average_gradients`), which is what ``DistributedDataParallel`` does; it is
not used itself because a step runs several subnets, each touching a different part of the
weights, and DDP's one-backward-per-forward bookkeeping does not fit that. BatchNorm statistics
are each worker's own, as in DDP without SyncBatchNorm.

Rank 0 writes the store entry's checkpoint after every epoch (the store must be on a filesystem
every worker sees: local by default, shared storage on a multi-node cluster) and sends each
epoch's report to the driver, which prints it. A killed distributed training resumes from the
last epoch's checkpoint like a single-process one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas.evaluators.base import EvaluationError
from nas.supernet.train import EpochReport, SupernetTrainResult


class ShardedBatches:
    """Worker ``rank`` of ``world``'s share of every batch of ``batches`` (a batch sampler):
    items ``rank``, ``rank + world``, ... A batch smaller than ``world`` gives the workers it
    leaves empty its first item, so every worker runs every step."""

    def __init__(self, batches: Any, rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[Any]]:
        for batch in self.batches:
            yield list(batch[self.rank::self.world]) or list(batch[:1])

    def __len__(self) -> int:
        return len(self.batches)


def average_gradients(module: torch.nn.Module) -> None:
    """Average the gradients of ``module``'s parameters over the process group, in one
    all-reduce. A parameter no worker used this step keeps no gradient (AdamW then leaves it
    alone, as in a single process)."""
    import torch.distributed as dist

    params = [p for p in module.parameters() if p.requires_grad]
    used = torch.tensor([float(p.grad is not None) for p in params])
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in params])  # [sum of numel]
    flat = torch.cat([flat, used.to(flat.device)])
    dist.all_reduce(flat)
    world = dist.get_world_size()
    offset = 0
    for p, count in zip(params, flat[-len(params):].tolist(), strict=True):
        n = p.numel()
        if count > 0:
            p.grad = (flat[offset:offset + n] / world).view_as(p)  # a tensor of its own
        else:
            p.grad = None
        offset += n


def same_weights_everywhere(module: torch.nn.Module) -> bool:
    """Whether every worker holds exactly rank 0's parameters (a check at the end of training:
    workers that drifted apart would store one rank's weights and evaluate another's). BatchNorm
    running statistics are each worker's own and are not compared: a candidate's are re-estimated
    before it is scored."""
    import torch.distributed as dist

    mine = torch.cat([p.detach().reshape(-1).double() for p in module.parameters()])
    theirs = mine.clone()
    dist.broadcast(theirs, src=0)
    agree = torch.tensor([float(torch.equal(mine, theirs))], device=mine.device)
    dist.all_reduce(agree, op=dist.ReduceOp.MIN)
    return bool(agree.item())


def _cause(error: BaseException | None) -> str:
    """One line for a failed training: a worker's own EvaluationError (a NaN loss) before the
    knock-on errors of the others, else the error's last line."""
    if error is None:
        return "no result from rank 0"
    failures = getattr(error, "worker_failures", None) or {}
    for failure in (failures.values() if isinstance(failures, dict) else failures):
        if "EvaluationError" in repr(failure):
            return _last_line(failure)
    return _last_line(error)


def _last_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else repr(error)


@dataclass(frozen=True)
class DistributedJob:
    """What each Ray Train worker needs to rebuild the training (picklable)."""

    evaluator: Any  # the SupernetEvaluator (its config names the data and the sandwich)
    space: Any
    budget: Any
    seed: int
    checkpoint: str
    threads: int
    use_gpu: bool
    train: Any = None  # the training (TrainConfig); None: the evaluator's own
    warm_from: str | None = None  # a sub-supernet of a split starts from these stored weights
    warm_space: Any = None  # ... of a supernet over this space


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the same training as a single process, on this worker's shard."""
    import ray.train

    from nas.evaluators.train import make_loaders
    from nas.runtime import torch_threads
    from nas.study.budget import BudgetGate
    from nas.supernet.network import Supernet
    from nas.supernet.sampling import SandwichSampler
    from nas.supernet.train import train_supernet

    job: DistributedJob = config["job"]
    reports = config["reports"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = str(ray.train.torch.get_device()) if job.use_gpu else "cpu"
    cfg = job.train or job.evaluator.config.train_config()
    with torch_threads(job.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(job.seed)
        supernet = Supernet(job.space, seed=job.seed)
        if job.warm_from is not None:
            supernet.inherit(Supernet.load(job.warm_from, job.warm_space, job.seed))
        supernet = supernet.to(device)
        sampler = SandwichSampler(job.space, BudgetGate(job.budget), seed=job.seed)
        train_src, val_src = job.evaluator._sources
        full, val_loader = make_loaders(cfg, train_src, val_src, seed=job.seed)
        train_loader = torch.utils.data.DataLoader(
            full.dataset, batch_sampler=ShardedBatches(full.batch_sampler, rank, world),
            num_workers=full.num_workers, collate_fn=full.collate_fn,
            persistent_workers=full.num_workers > 0)
        result = train_supernet(
            supernet, sampler, cfg.recipe, cfg.epochs, train_loader,
            subnets=job.evaluator.config.subnets, distill=job.evaluator.config.distill,
            checkpoint=Path(job.checkpoint), val_loader=val_loader,
            calibration_batches=job.evaluator.config.calibration_batches,
            on_epoch=lambda r: reports.put(("epoch", r)),
            reduce_gradients=average_gradients, primary=rank == 0, device=device)
        agree = same_weights_everywhere(supernet)
    if rank == 0:
        reports.put(("done", (result, agree, world)))


def train_distributed(job: DistributedJob, workers: int, *, gpus_per_worker: float = 0.0,
                      on_epoch: Callable[[EpochReport], None] | None = None,
                      ) -> tuple[SupernetTrainResult, int]:
    """Train ``job`` on ``workers`` Ray Train workers (on the Ray instance this process is
    connected to, or a local one Ray starts); returns rank 0's result and the world size. The
    weights are in ``job.checkpoint`` (rank 0 writes it after every epoch).

    Raises:
        EvaluationError: the training failed on a worker, or the workers ended with different
            weights.
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    # No CPU of its own: the workers may need every CPU there is.
    reports = Queue(actor_options={"num_cpus": 0})
    resources = {"CPU": float(job.threads)}
    if gpus_per_worker:
        resources["GPU"] = float(gpus_per_worker)
    trainer = TorchTrainer(
        _worker_loop, train_loop_config={"job": job, "reports": reports},
        torch_config=TorchConfig(backend="nccl" if job.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=job.use_gpu,
                                     resources_per_worker=resources),
        # No retries: workers that cannot start (too few CPUs or GPUs) end the training with an
        # error instead of Ray Train retrying the start-up forever, out of the driver's sight.
        run_config=RunConfig(storage_path=str(Path(job.checkpoint).parent / "ray_train"),
                             name="supernet",
                             failure_config=FailureConfig(max_failures=0,
                                                          controller_failure_limit=0)))
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except Exception as exc:  # reported in the driver's thread below
            outcome["error"] = exc
        finally:
            reports.put(("stopped", None))

    thread = threading.Thread(target=fit, name="supernet-ray-train", daemon=True)
    thread.start()
    done = None
    while True:
        kind, value = reports.get()  # blocks until rank 0 or the fit thread says more
        if kind == "epoch" and on_epoch is not None:
            on_epoch(value)
        elif kind == "done":
            done = value
        elif kind == "stopped":
            break
    thread.join()
    error = outcome.get("error") or getattr(outcome.get("result"), "error", None)
    if error is not None or done is None:
        raise EvaluationError(f"distributed supernet training failed: {_cause(error)}")
    result, agree, world = done
    if not agree:
        raise EvaluationError("distributed supernet training: the workers ended with different "
                              "weights (their gradients were not averaged alike)")
    return result, world
