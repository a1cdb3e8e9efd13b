"""Data-parallel supernet training: the gradient averaging in two real gloo processes, then the
whole path through Ray Train's TorchTrainer with 2 CPU workers."""

import json

import pytest
import torch
import torch.multiprocessing as mp

from nas.supernet.distributed import ShardedBatches, average_gradients, same_weights_everywhere

from .test_training import BUDGET, TINY


def test_shards_cover_each_batch_once_and_no_worker_is_left_without_a_step():
    batches = [[0, 1, 2, 3, 4], [5]]

    class Batches(list):
        def set_epoch(self, epoch):
            self.epoch = epoch

    source = Batches(batches)
    shards = [ShardedBatches(source, rank, 2) for rank in (0, 1)]
    shards[0].set_epoch(3)
    assert source.epoch == 3 and len(shards[1]) == 2
    assert list(shards[0]) == [[0, 2, 4], [5]] and list(shards[1]) == [[1, 3], [5]]


def _averaging_worker(rank, world, init, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.manual_seed(0)  # the same model and batch in every process
    model = torch.nn.ModuleDict({"used": torch.nn.Linear(4, 3), "unused": torch.nn.Linear(4, 3)})
    x, y = torch.randn(6, 4), torch.randn(6, 3)
    mine = slice(rank, None, world)  # this worker's shard: rows rank, rank + world, ...
    torch.nn.functional.mse_loss(model["used"](x[mine]), y[mine]).backward()
    average_gradients(model)
    agree = same_weights_everywhere(model)
    with torch.no_grad():
        model["unused"].bias[0] += rank  # one worker drifts
    drifted = same_weights_everywhere(model)
    if rank == 0:
        reference = torch.nn.Linear(4, 3)
        reference.load_state_dict(model["used"].state_dict())
        torch.nn.functional.mse_loss(reference(x), y).backward()
        torch.save({"averaged": [p.grad for p in model["used"].parameters()],
                    "full_batch": [p.grad for p in reference.parameters()],
                    "unused": [p.grad for p in model["unused"].parameters()],
                    "agree": (agree, drifted)}, out)
    dist.destroy_process_group()


def test_averaged_gradients_of_equal_shards_are_the_full_batch_gradient(tmp_path):
    # Two real gloo processes (no Ray): the all-reduce itself, not a stand-in.
    out = tmp_path / "grads.pt"
    mp.spawn(_averaging_worker, args=(2, f"file://{tmp_path / 'group'}", str(out)), nprocs=2)
    grads = torch.load(out)
    for averaged, full in zip(grads["averaged"], grads["full_batch"], strict=True):
        torch.testing.assert_close(averaged, full)
    assert grads["unused"] == [None, None]  # AdamW leaves a weight no subnet used alone
    assert grads["agree"] == (True, False)  # the end-of-training check sees a drifted worker


@pytest.fixture(scope="module")
def local_ray():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 2**20)
    yield ray
    ray.shutdown()


def test_the_supernet_trains_on_two_ray_train_workers_over_gloo(local_ray, tmp_path):
    from nas.evaluators.supernet import ensure_trained
    from nas.study.config import ProxyTrainConfig, SupernetConfig
    from search_spaces import MobileViTSpace

    train = ProxyTrainConfig(kind="proxy_train", train_images=32, val_images=16, resolution=32,
                             epochs=1, batch_size=16)
    config = SupernetConfig(kind="supernet", train=train, subnets=1, calibration_batches=1,
                            store=str(tmp_path / "store"), train_workers=2)
    evaluator = config.build()
    space = MobileViTSpace(TINY, num_classes=evaluator.num_classes, resolution=256)
    said = []
    entry = ensure_trained(evaluator, space, BUDGET, 0, say=said.append, threads=2)
    assert entry.complete
    meta = json.loads((entry.folder / "meta.json").read_text())
    # Two workers each took half of each 16-image batch (2 steps for 32 images, as in one
    # process), and ended with the same weights (the run fails otherwise); rank 0's epoch
    # report reached the driver.
    assert meta["train_workers"] == 2 and meta["steps"] == 2 and meta["images"] == 32
    assert any(line.startswith("supernet epoch 1/1: loss") for line in said)
    assert "on 2 Ray Train workers" in said[0]
    # The stored weights are the supernet's: a candidate is cut from them and scored.
    bound = evaluator.attached(space, entry.folder, 0)
    result = bound.evaluate(_largest(space), seed=0, workdir=tmp_path / "w", threads=1,
                            device="cpu")
    assert 0 <= result.accuracy <= 100
    # One worker's supernet is another: a single-process study does not reuse it.
    single = config.model_copy(update={"train_workers": 1}).build()
    assert single.key(space, BUDGET, 0) != evaluator.key(space, BUDGET, 0)


def _largest(space):
    from nas.study.budget import BudgetGate
    from nas.supernet.sampling import SandwichSampler

    return SandwichSampler(space, BudgetGate(BUDGET), seed=0).largest


def test_the_distributed_and_split_settings_leave_an_existing_studys_evaluator_key_alone():
    # Trials share results under one evaluator key: a run resumed after these settings were
    # added must find its earlier results under the key it wrote them with.
    import hashlib

    from nas.study.config import SupernetConfig, evaluator_key

    config = SupernetConfig(kind="supernet")
    before = config.model_dump_json(exclude={"train_workers", "train_gpus_per_worker", "split",
                                             "split_epochs", "split_lr"})
    assert evaluator_key(config) == hashlib.sha256(before.encode()).hexdigest()[:8]
    assert evaluator_key(config.model_copy(update={"train_workers": 2})) != evaluator_key(config)
    assert evaluator_key(config.model_copy(update={"split": ["block"]})) != evaluator_key(config)
