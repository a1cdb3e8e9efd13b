import math

import pytest
import torch

from mobilevit import get_fixed_point
from nas.evaluators import procedural
from nas.evaluators.base import EvaluationError
from nas.evaluators.dummy import DummyEvaluator
from nas.evaluators.train import TrainEvaluator
from nas.study.config import DummyConfig, ProxyTrainConfig

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

    import nas.evaluators.recipe

    original = nas.evaluators.recipe.F.cross_entropy
    nas.evaluators.recipe.F.cross_entropy = spy
    try:
        evaluator.evaluate(TINY, seed=0, workdir=tmp_path, threads=1, device="cpu")
    finally:
        nas.evaluators.recipe.F.cross_entropy = original
    assert sum(losses[:4]) / 4 > 2.0 and sum(losses[-4:]) / 4 < 1.6


def test_nan_loss_stops_the_trial_with_its_reason(tmp_path, monkeypatch):
    import nas.evaluators.recipe

    monkeypatch.setattr(nas.evaluators.recipe.F, "cross_entropy", lambda *a, **k: torch.tensor(math.nan))
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


@pytest.mark.parametrize("proxy", ["synflow", "naswot", "grad_norm", "params", "macs"])
def test_zero_cost_proxies_are_finite_and_seeded(tmp_path, proxy):
    from nas.evaluators.zero_cost import ZeroCostEvaluator
    from nas.study.config import ZeroCostConfig

    evaluator = ZeroCostEvaluator(ZeroCostConfig(kind="zero_cost", proxy=proxy, batch_size=8,
                                                 resolution=32))
    a = evaluator.evaluate(TINY, seed=1, workdir=tmp_path, threads=1, device="cpu")
    b = evaluator.evaluate(TINY, seed=1, workdir=tmp_path, threads=1, device="cpu")
    assert math.isfinite(a.accuracy) and a.accuracy == pytest.approx(b.accuracy, rel=1e-6)
    assert a.provenance["metric"] == proxy
    if proxy == "params":
        assert a.accuracy == pytest.approx(math.log10(1_145_288 - 513_000 + 5_130))


def test_naswot_kernel_counts_agreeing_units():
    from nas.evaluators.zero_cost import naswot

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.act = torch.nn.ReLU()

        def forward(self, x):
            return self.act(x)

    # Codes [1, 0] and [0, 1]: they agree on no unit, each agrees with itself on 2: K = 2 I.
    assert naswot(Two(), torch.tensor([[1.0, -1.0], [-1.0, 1.0]])) == pytest.approx(math.log(4))


def _folder_dataset(root, classes=3, per_class=6):
    from PIL import Image

    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (40, 36), (80 * c, 20 * i, 60)).save(folder / f"{i}.png")


def test_train_evaluator_on_a_folder_dataset_with_the_multiscale_sampler(tmp_path):
    from nas.study.config import DatasetConfig, MultiScaleConfig, RecipeConfig, TrainConfig

    _folder_dataset(tmp_path / "data")
    config = TrainConfig(kind="train", epochs=2, resolution=32, batch_size=6,
                         dataset=DatasetConfig(kind="folder", path=str(tmp_path / "data")),
                         multiscale=MultiScaleConfig(rule="v0.1"), loader_workers=1,
                         recipe=RecipeConfig(warmup_iters=2))
    evaluator = TrainEvaluator(config)
    assert evaluator.num_classes == 3
    spec = TINY.replace(num_classes=3)
    result = evaluator.evaluate(spec, seed=0, workdir=tmp_path / "work", threads=1, device="cpu")
    assert len(result.curve) == 2 and result.provenance["multiscale"] == "v0.1"
    assert result.provenance["train_images"] == 18 and result.provenance["ema"]
    assert (tmp_path / "work" / "weights.pt").exists()


def test_dataset_problems_are_errors_before_training(tmp_path):
    from nas.study.config import StudyError, parse_study
    from nas.study.prepare import prepare

    data = {"name": "t", "trials": 2, "evaluator": {
        "kind": "train", "epochs": 1, "dataset": {"kind": "folder", "path": str(tmp_path / "no")}}}
    with pytest.raises(StudyError, match=r"^s.yaml: evaluator.dataset: dataset path .*no: no such folder$"):
        prepare(parse_study(data, "s.yaml"), "s.yaml")
    missing = {**data, "evaluator": {"kind": "train", "epochs": 1, "dataset": {"kind": "cifar10"}}}
    with pytest.raises(StudyError, match="dataset kind cifar10 needs a path"):
        parse_study(missing, "s.yaml")
