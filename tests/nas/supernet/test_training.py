import shutil

import pytest
import torch

from nas.evaluators.train import make_loaders, make_sources
from nas.study.budget import BudgetGate
from nas.study.config import Budget, ProxyTrainConfig
from nas.supernet.calibrate import recalibrate
from nas.supernet.network import Supernet, SupernetError
from nas.supernet.sampling import SandwichSampler
from nas.supernet.train import format_report, train_supernet
from search_spaces import MobileViTSpace

TINY = {"stem.width": {"high": 24}, "s1.width": {"high": 32}, "s2.width": {"high": 40},
        "s2.depth": {"high": 2}, "block": ["v2", "v3_v1"], "norm": ["group_norm", "layer_norm"],
        **{f"s{i}.width": {"low": 32, "high": 48} for i in (3, 4, 5)},
        **{f"s{i}.dim": {"low": 32, "high": 40} for i in (3, 4, 5)},
        **{f"s{i}.depth": {"high": 2} for i in (3, 4, 5)},
        **{f"s{i}.ffn_ratio": [1, 2] for i in (3, 4, 5)},
        **{f"s{i}.patch": [2] for i in (3, 4, 5)}}
BUDGET = Budget(max_params=400_000)  # the space reaches 460 k


@pytest.fixture(scope="module")
def space():
    return MobileViTSpace(TINY, num_classes=10, resolution=256)


@pytest.fixture(scope="module")
def sampler(space):
    return SandwichSampler(space, BudgetGate(BUDGET), seed=0)


def test_the_sandwich_draws_only_subnets_inside_the_budget_largest_and_smallest_first(sampler):
    gate = sampler.gate
    for step in range(5):
        subnets = sampler.step(step, 3)
        assert subnets[0] == sampler.largest and subnets[1] == sampler.smallest
        assert all(gate.check(s).feasible for s in subnets)
    assert sampler.step(3, 3) == sampler.step(3, 3)  # a function of (seed, step)
    assert sampler.step(3, 3)[2:] != sampler.step(4, 3)[2:]
    params = [gate.counts(s)[0] for s in (sampler.largest, sampler.smallest)]
    assert params[0] > 0.8 * BUDGET.max_params > params[1]
    counting = MobileViTSpace(TINY, num_classes=BUDGET.count_classes)
    smallest, _ = counting.smallest(BUDGET.resolution)["params"]
    assert params[1] == smallest


def test_the_largest_cannot_grow_any_dimension_within_the_budget(sampler):
    space = sampler.space
    values = space.params_for(sampler.largest)
    for name, p in space.params.items():
        if not p.monotone:
            continue
        choices = sorted(p.values)
        at = choices.index(values[name])
        if at + 1 < len(choices):
            bigger = space.build({**values, name: choices[at + 1]})
            assert not sampler.fits(bigger), name


def test_a_budget_nothing_meets_is_a_one_line_error(space):
    tight = SandwichSampler(space, BudgetGate(Budget(max_params=1_000)))
    with pytest.raises(SupernetError, match="smallest network is over it"):
        tight.step(0, 0)


def _loaders(epochs=2):
    cfg = ProxyTrainConfig(kind="proxy_train", train_images=64, val_images=32, resolution=32,
                           epochs=epochs, batch_size=16).as_train()
    train_src, val_src = make_sources(cfg.dataset)
    return cfg, *make_loaders(cfg, train_src, val_src, seed=0)


def test_recalibration_replaces_the_statistics_and_is_deterministic(space, sampler):
    supernet = Supernet(space, seed=0)  # specs designed at 256 px run on 32 px images
    _, train_loader, _ = _loaders()
    train_loader.batch_sampler.set_epoch(0)
    batches = [x.float() / 255 for x, _ in list(train_loader)[:2]]
    spec = sampler.smallest
    nets = [supernet.extract(spec) for _ in range(2)]
    before = {k: v.clone() for k, v in nets[0].state_dict().items() if "running" in k}
    assert recalibrate(nets[0], batches) == 32 and recalibrate(nets[1], batches) == 32
    after = [{k: v for k, v in n.state_dict().items() if "running" in k} for n in nets]
    assert any(not torch.equal(before[k], after[0][k]) for k in before)
    assert all(torch.equal(after[0][k], after[1][k]) for k in before)
    assert not nets[0].training


def _train(space, sampler, checkpoint, on_epoch=None):
    cfg, train_loader, val_loader = _loaders()
    supernet = Supernet(space, seed=0)
    torch.manual_seed(0)
    result = train_supernet(supernet, sampler, cfg.recipe, 2, train_loader, subnets=1,
                            checkpoint=checkpoint, val_loader=val_loader, calibration_batches=1,
                            on_epoch=on_epoch)
    return supernet, result


def test_a_resumed_training_equals_an_uninterrupted_one(space, sampler, tmp_path):
    def keep_first_epoch(report):
        # Called before the epoch's checkpoint is written: whole.pt still holds epoch 1's, the
        # file a training killed during its second epoch leaves.
        if report.epoch == 1:
            shutil.copyfile(tmp_path / "whole.pt", tmp_path / "killed.pt")

    whole, done = _train(space, sampler, tmp_path / "whole.pt", keep_first_epoch)
    resumed, again = _train(space, sampler, tmp_path / "killed.pt")
    assert again.resumed_from_epoch == 1 and done.resumed_from_epoch == 0
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.top1 for r in done.history] == [r.top1 for r in again.history]
    report = done.history[-1]
    assert report.steps == 8 and set(report.top1) == {"largest", "smallest"}
    assert format_report(report).startswith("supernet epoch 2/2: loss ")
