"""Contracts every registered kind keeps: each evaluator kind and each latency oracle kind, built
from its study section by the section's own ``build``.

A new kind is checked by adding its smallest study section to EVALUATORS or LATENCIES; the
first test fails until it is there.
"""

import math
import pathlib

import pytest

from mobilevit import get_fixed_point
from nas.evaluators.base import EvalResult
from nas.latency import LatencyCache, LatencyResult, cached_latency
from nas.study.config import EVALUATOR_KINDS, LATENCY_KINDS, parse_study

TINY = get_fixed_point("mobilevitv3_xxs_l2").spec
OTHER = get_fixed_point("mobilevit_xxs").spec
PROCEDURAL = {"kind": "procedural", "train_images": 32, "val_images": 16, "image_size": 32}

# The smallest section of each kind that still does the real work.
EVALUATORS = {
    "train": {"kind": "train", "epochs": 1, "resolution": 32, "batch_size": 16,
              "loader_workers": 0, "dataset": PROCEDURAL, "recipe": {"ema_momentum": None}},
    "proxy_train": {"kind": "proxy_train", "train_images": 32, "val_images": 16,
                    "resolution": 32, "epochs": 1, "batch_size": 16},
    "zero_cost": {"kind": "zero_cost", "proxy": "synflow", "resolution": 32, "batch_size": 4,
                  "dataset": PROCEDURAL},
    "dummy": {"kind": "dummy"},
    "supernet": {"kind": "supernet", "calibration_batches": 1,
                 "train": {"kind": "proxy_train", "train_images": 32, "val_images": 16,
                           "resolution": 32, "epochs": 1, "batch_size": 16}},
}
LATENCIES = {
    "local": {"kind": "local", "resolution": 32, "warmup": 0, "runs": 2},
    "predictor": {"kind": "predictor", "resolution": 32},
    "agent": {"kind": "agent", "url": "http://replaced-by-the-test", "resolution": 32, "rounds": 1,
              "iterations": 2, "token_env": "NAS_TEST_AGENT_TOKEN"},
    "ray_device": {"kind": "ray_device", "runner": "local", "device": "mac", "resolution": 32,
                   "rounds": 1, "iterations": 2},
    "none": {"kind": "none"},
}


BASE = {"name": "t", "trials": 1, "objectives": [{"metric": "accuracy"}],
        "evaluator": {"kind": "dummy"}}


def _section(field, data):
    """The typed section a study file with ``field: data`` validates to."""
    study = {**BASE, field: data}
    return getattr(parse_study(study, "contract"), field)


SECTIONS = [(EVALUATOR_KINDS, EVALUATORS), (LATENCY_KINDS, LATENCIES)]


@pytest.mark.parametrize("registry,examples", SECTIONS, ids=["evaluator", "latency"])
def test_every_registered_kind_has_an_example_here(registry, examples):
    assert set(examples) == set(registry.kinds())
    for kind in registry.kinds():
        assert type(_section(registry.field, examples[kind])) is registry.member(kind)


@pytest.mark.parametrize("registry,examples", SECTIONS, ids=["evaluator", "latency"])
def test_an_error_inside_any_kind_names_the_field_path_without_the_kind_tag(registry, examples):
    from nas.study.config import StudyError

    field = registry.field
    for kind in registry.kinds():
        study = {**BASE, field: {**examples[kind], "no_such_field": 1}}
        with pytest.raises(StudyError) as caught:
            parse_study(study, "s.yaml")
        assert str(caught.value) == f"s.yaml: {field}.no_such_field: unknown field"


def test_each_section_builds_its_own_object():
    # The section's class, not a factory elsewhere, knows what it builds.
    for member in EVALUATOR_KINDS.members + LATENCY_KINDS.members:
        assert "build" in vars(member), member.__name__


@pytest.mark.parametrize("kind", EVALUATOR_KINDS.kinds())
def test_evaluator_contract(kind, tmp_path):
    data = dict(EVALUATORS[kind])
    if "store" in EVALUATOR_KINDS.member(kind).model_fields:
        data["store"] = str(tmp_path / "store")
    evaluator = _section("evaluator", data).build()
    assert isinstance(evaluator.name, str) and evaluator.num_classes >= 2
    spec = TINY.replace(num_classes=evaluator.num_classes)
    if hasattr(evaluator, "for_search"):
        # A kind that needs the study (a supernet over its space) is readied by the driver
        # first; here over a space that holds just this network.
        from nas.study.config import Budget
        from search_spaces import MobileViTSpace

        space = MobileViTSpace(MobileViTSpace().params_for(spec),
                               num_classes=evaluator.num_classes)
        evaluator = evaluator.for_search(space, Budget(), 0, say=lambda message: None)
    epochs = []

    def on_epoch(epoch, accuracy):
        epochs.append((epoch, accuracy))
        return True

    first = evaluator.evaluate(spec, seed=3, workdir=tmp_path / "a", threads=1, device="cpu",
                               on_epoch=on_epoch)
    again = evaluator.evaluate(spec, seed=3, workdir=tmp_path / "b", threads=1, device="cpu")
    assert isinstance(first, EvalResult) and math.isfinite(first.accuracy)
    assert (first.accuracy, first.curve) == (again.accuracy, again.curve)  # a function of seed
    assert not first.stopped_early
    assert first.provenance["evaluator"] == evaluator.name
    assert first.provenance["seed"] == 3
    # A training evaluator calls on_epoch after each epoch with that point of its curve (the
    # pruner and the checkpoint fence rely on it); a training-free one never does.
    trained = first.provenance.get("epochs", 0)
    assert len(epochs) == trained and len(first.curve) >= 1
    if trained:
        assert epochs == list(enumerate(first.curve))
    for path in first.artifacts.values():
        assert (tmp_path / "a") in pathlib.Path(path).parents


@pytest.fixture(scope="module")
def agent_url():
    from nas.latency.runners import LocalRunner
    from nas.latency.server import AgentServer

    server = AgentServer(LocalRunner(), port=0, token="contract", max_upload_mb=50)
    server.start()
    yield server.url
    server.stop()


@pytest.mark.coreml
@pytest.mark.parametrize("kind", LATENCY_KINDS.kinds())
def test_latency_oracle_contract(kind, tmp_path, request, monkeypatch):
    data = dict(LATENCIES[kind])
    if kind == "agent":
        data["url"] = request.getfixturevalue("agent_url")
        monkeypatch.setenv("NAS_TEST_AGENT_TOKEN", "contract")
    if kind == "ray_device":
        request.getfixturevalue("ray_with_iphone")
    oracle = _section("latency", data).build()
    if kind == "none":
        assert oracle is None
        return
    assert isinstance(oracle.name, str)
    assert oracle.key(TINY).startswith(TINY.spec_id) and oracle.key(TINY) == oracle.key(TINY)
    assert oracle.key(TINY) != oracle.key(OTHER)
    cache = LatencyCache(tmp_path / "latency.sqlite")
    result, hit = cached_latency(oracle, TINY, cache)
    assert isinstance(result, LatencyResult) and not hit
    assert result.median_ms > 0 and math.isfinite(result.median_ms)
    assert result.resolution == data["resolution"]
    assert cached_latency(oracle, TINY, cache) == (result, True)

