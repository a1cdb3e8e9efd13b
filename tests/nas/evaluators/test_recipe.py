import math

import pytest
import torch

from mobilevit import MobileViT, get_fixed_point
from nas.data import ImageDataset, ProceduralSource, SingleScaleSampler, collate
from nas.evaluators.base import EvaluationError
from nas.evaluators.recipe import EMA, learning_rate, param_groups, train
from nas.study.config import RecipeConfig

V1 = RecipeConfig()  # the v1 paper's recipe


def test_learning_rate_at_chosen_steps():
    # Warm-up 2e-4 -> 2e-3 over 3000 iterations, then cosine by epoch over 300 epochs to 2e-4.
    assert learning_rate(V1, 0, 0, 300) == pytest.approx(2e-4)
    assert learning_rate(V1, 1500, 0, 300) == pytest.approx(1.1e-3)
    assert learning_rate(V1, 3000, 2, 300) == pytest.approx(2e-4 + 0.9e-3 * (1 + math.cos(math.pi * 2 / 300)))
    assert learning_rate(V1, 10_000, 150, 300) == pytest.approx(1.1e-3)  # half-way: the mean
    assert learning_rate(V1, 10_000, 300, 300) == pytest.approx(2e-4)
    # The cosine is indexed by epoch and not shifted by the warm-up (pitfall 15 of the reference).
    assert learning_rate(V1, 3000, 0, 300) == pytest.approx(2e-3)


def test_ema_update():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, momentum=0.25)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 1.5))  # 0.75 * 1 + 0.25 * 3
    ema.update(model)
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 1.875))


def test_weight_decay_groups():
    model = MobileViT(get_fixed_point("mobilevitv2_050").spec)
    one = param_groups(model, 0.05, no_decay_norm_bias=False)
    two = param_groups(model, 0.05, no_decay_norm_bias=True)
    assert len(one) == 1 and len(two) == 2 and two[1]["weight_decay"] == 0.0
    assert all(p.ndim <= 1 for p in two[1]["params"]) and all(p.ndim > 1 for p in two[0]["params"])


def _loaders(n=64, size=32, batch=16, scale=(0.08, 1.0)):
    train_set = ImageDataset(ProceduralSource(n, 48, "train"), seed=0, scale=scale)
    val_set = ImageDataset(ProceduralSource(32, 48, "val"), seed=0)
    val_sampler = SingleScaleSampler(32, size, 32, shuffle=False)
    val_sampler.set_epoch(-1)
    return (torch.utils.data.DataLoader(train_set, batch_sampler=SingleScaleSampler(n, size, batch),
                                        collate_fn=collate),
            torch.utils.data.DataLoader(val_set, batch_sampler=val_sampler, collate_fn=collate))


RECIPE = RecipeConfig(lr=3e-3, min_lr=1e-4, warmup_iters=2, warmup_init_lr=1e-4)
SPEC = get_fixed_point("mobilevitv3_xxs_l2").spec.replace(num_classes=10)


def _model(seed=0):
    torch.manual_seed(seed)
    return MobileViT(SPEC)


def test_training_lowers_the_loss(monkeypatch):
    torch.set_num_threads(1)
    import nas.evaluators.recipe

    losses = []
    real = nas.evaluators.recipe.F.cross_entropy

    def spy(*args, **kwargs):
        loss = real(*args, **kwargs)
        losses.append(loss.item())
        return loss

    monkeypatch.setattr(nas.evaluators.recipe.F, "cross_entropy", spy)
    train(_model(), RECIPE.model_copy(update={"ema_momentum": None}), 10,
          *_loaders(batch=8, scale=(0.5, 1.0)))
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8  # 8 steps per epoch
    assert first > 2.0 and last < 2.0 and last < first - 0.3, (first, last)  # chance: ln 10 = 2.30


def test_resuming_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    whole = _model()
    result = train(whole, RECIPE, 3, *_loaders(), checkpoint=tmp_path / "a.pt")

    class Interrupt(Exception):
        pass

    def crash_in_third(epoch, accuracy):  # called before the epoch's checkpoint is written
        if epoch == 2:
            raise Interrupt
        return True

    interrupted = _model()
    with pytest.raises(Interrupt):
        train(interrupted, RECIPE, 3, *_loaders(), checkpoint=tmp_path / "b.pt",
              on_epoch=crash_in_third)
    assert torch.load(tmp_path / "b.pt", weights_only=False)["epoch"] == 2
    resumed = _model(seed=99)  # a fresh process would build the model anew
    again = train(resumed, RECIPE, 3, *_loaders(), checkpoint=tmp_path / "b.pt")
    assert again.resumed_from_epoch == 2 and again.curve == result.curve
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(),
                                                 resumed.state_dict().values(), strict=True))


def test_early_stop_and_nan():
    torch.set_num_threads(1)
    stopped = train(_model(), RECIPE, 4, *_loaders(), on_epoch=lambda e, a: e < 1)
    assert stopped.stopped_early and len(stopped.curve) == 2
    bad = RECIPE.model_copy(update={"lr": 1e30, "warmup_iters": 0})
    with pytest.raises(EvaluationError, match=r"^loss is (nan|inf) at step \d+$"):
        train(_model(), bad, 3, *_loaders())


def test_step_indexed_cosine_for_short_runs():
    short = RecipeConfig(lr=1e-3, min_lr=0.0, warmup_iters=10, warmup_init_lr=0.0,
                         cosine_per="step")
    assert learning_rate(short, 5, 0, 3, total_steps=110) == pytest.approx(5e-4)
    assert learning_rate(short, 10, 0, 3, total_steps=110) == pytest.approx(1e-3)
    assert learning_rate(short, 60, 1, 3, total_steps=110) == pytest.approx(5e-4)  # half-way
    assert learning_rate(short, 110, 2, 3, total_steps=110) == pytest.approx(0.0)
