import math

import pytest
import torch

from mobilevit import get_fixed_point
from nas.config import DummyConfig, ProxyTrainConfig
from nas.evaluators import procedural
from nas.evaluators.base import EvaluationError
from nas.evaluators.dummy import DummyEvaluator
from nas.evaluators.train import TrainEvaluator

TINY = get_fixed_point("mobilevitv3_xxs_l2").spec.replace(num_classes=10)


def test_procedural_images_are_a_function_of_seed_and_index():
    a_img, a_lab = procedural.generate(3, 100, 8, 64)
    b_img, b_lab = procedural.generate(3, 104, 4, 64)
    assert torch.equal(a_img[4:], b_img) and torch.equal(a_lab[4:], b_lab)
    c_img, _ = procedural.generate(4, 100, 8, 64)
    assert not torch.equal(a_img, c_img)
    assert a_img.dtype == torch.uint8 and a_img.shape == (8, 3, 64, 64)


def test_procedural_labels_cover_every_class_and_splits_differ():
    images, labels = procedural.generate(0, 0, 400, 32)
    counts = torch.bincount(labels, minlength=procedural.NUM_CLASSES)
    assert len(counts) == 10 and counts.min() > 20
    train, _ = procedural.dataset(0, 16, 32, "train")
    val, _ = procedural.dataset(0, 16, 32, "val")
    assert not torch.equal(train, val)


def _proxy(**changes):
    config = ProxyTrainConfig(kind="proxy_train", **{
        "train_images": 64, "val_images": 32, "epochs": 2, "batch_size": 16, **changes})
    return TrainEvaluator(config.as_train(), name="proxy_train")


def test_proxy_training_is_seeded_and_saves_its_weights(tmp_path):
    evaluator = _proxy()
    first = evaluator.evaluate(TINY, seed=5, workdir=tmp_path / "a", threads=1, device="cpu")
    again = evaluator.evaluate(TINY, seed=5, workdir=tmp_path / "b", threads=1, device="cpu")
    assert first.accuracy == again.accuracy and first.curve == again.curve
    assert len(first.curve) == 2 and 0 <= first.accuracy <= 100
    assert first.provenance["dataset"] == "procedural" and first.provenance["epochs"] == 2
    assert first.provenance["train_images"] == 64 and first.provenance["classes"] == 10
    state = torch.load(first.artifacts["weights"], weights_only=True)
    assert state["classifier.weight"].shape == (10, 512)


def test_proxy_training_lowers_the_loss(tmp_path):
    # Overfit 64 images: the training loss must fall well below chance (ln 10 = 2.30).
    evaluator = _proxy(epochs=8, lr=3e-3)
    losses = []
    real = torch.nn.functional.cross_entropy

    def spy(*args, **kwargs):
        loss = real(*args, **kwargs)
        losses.append(loss.item())
        return loss

    import nas.train

    original = nas.train.F.cross_entropy
    nas.train.F.cross_entropy = spy
    try:
        evaluator.evaluate(TINY, seed=0, workdir=tmp_path, threads=1, device="cpu")
    finally:
        nas.train.F.cross_entropy = original
    assert sum(losses[:4]) / 4 > 2.0 and sum(losses[-4:]) / 4 < 1.6


def test_nan_loss_stops_the_trial_with_its_reason(tmp_path, monkeypatch):
    import nas.train

    monkeypatch.setattr(nas.train.F, "cross_entropy", lambda *a, **k: torch.tensor(math.nan))
    with pytest.raises(EvaluationError, match=r"^loss is nan at step 0$"):
        _proxy().evaluate(TINY, seed=0, workdir=tmp_path, threads=1, device="cpu")


def test_dummy_evaluator_is_deterministic_and_injects_faults(tmp_path):
    config = DummyConfig(kind="dummy")
    evaluator = DummyEvaluator(**config.model_dump(exclude={"kind"}))
    a = evaluator.evaluate(TINY, seed=0, workdir=tmp_path, threads=1, device="cpu")
    b = evaluator.evaluate(TINY, seed=1, workdir=tmp_path, threads=1, device="cpu")
    assert a.accuracy == b.accuracy  # a function of the network only
    bigger = get_fixed_point("mobilevit_s").spec.replace(num_classes=10)
    assert evaluator.evaluate(bigger, seed=0, workdir=tmp_path, threads=1,
                              device="cpu").accuracy > a.accuracy
    faulty = DummyEvaluator(seconds=0, classes=10, faults={TINY.spec_id: "raise"})
    with pytest.raises(RuntimeError, match="injected failure"):
        faulty.evaluate(TINY, seed=0, workdir=tmp_path, threads=1, device="cpu")
    nan = DummyEvaluator(seconds=0, classes=10, faults={TINY.spec_id: "nan"})
    assert math.isnan(nan.evaluate(TINY, seed=0, workdir=tmp_path, threads=1, device="cpu").accuracy)
