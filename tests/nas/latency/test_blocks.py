"""Per-unit latency features: their sum equals the whole network's, the cache and its keys."""

import dataclasses
import sqlite3

import pytest

from mobilevit import get_fixed_point
from mobilevit.attention import ATTENTIONS
from mobilevit.spec import FUSION_FAMILIES, Unit, with_fusion
from nas.latency import blocks as blocks_module
from nas.latency.blocks import UnitFeatureCache, combine, unit_features, unit_key
from nas.latency.features import FEATURES, spec_features
from tests.mobilevit.test_complexity import random_specs
from tests.nas.latency.test_predictor import _with_family

pytestmark = pytest.mark.coreml

XXS = get_fixed_point("mobilevit_xxs").spec
RES = 64


def _assert_same(parts, whole):
    for name in FEATURES:  # each unit's counts are rounded to 1e-6 before they are added
        assert parts[name] == pytest.approx(whole[name], rel=1e-5, abs=1e-5), name
    assert parts.op_types == whole.op_types


@pytest.fixture
def cache(tmp_path):
    return UnitFeatureCache(tmp_path / "latency.sqlite")


@pytest.mark.parametrize("family", ["v1", "v2", "v3_v1", "v3_v2"])
@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_units_add_up_to_the_whole_network_for_each_block_design(family, attention, cache):
    spec = _with_family(XXS, family, attention)
    _assert_same(unit_features(spec, RES, cache, templates=False), spec_features(spec, RES))


def test_units_add_up_for_the_no_fusion_block_and_a_v2_network_at_an_odd_size(cache):
    none = XXS.replace(stages=tuple(
        dataclasses.replace(s, block=with_fusion(s.block, "none")) if s.block else s
        for s in XXS.stages))
    assert set(FUSION_FAMILIES) == {"v1", "none", "v2", "v3_v1", "v3_v2"}
    _assert_same(unit_features(none, RES, cache, templates=False), spec_features(none, RES))
    v2 = get_fixed_point("mobilevitv2_050").spec  # 72 px: maps resized to the patch size
    _assert_same(unit_features(v2, 72, cache, templates=False), spec_features(v2, 72))


# specs at 256, converted at RES (maps smaller than a patch are resized)
@pytest.mark.parametrize("spec", random_specs(3, seed=5, max_params=6_000_000),
                         ids=lambda s: s.spec_id)
def test_units_add_up_for_random_specs(spec, cache):
    _assert_same(unit_features(spec, RES, cache, templates=False), spec_features(spec, RES))


def test_a_candidate_whose_units_are_cached_converts_nothing(cache, monkeypatch):
    first = unit_features(XXS, RES, cache, templates=False)
    monkeypatch.setattr(blocks_module, "convert_units", _no_conversion)
    assert unit_features(XXS, RES, cache, templates=False) == first
    # A new candidate made of known units: XXS with its last MV2 stage repeated once more
    # differs from XXS only in how many times one known unit appears.
    stages = list(XXS.stages)
    stages[1] = dataclasses.replace(stages[1], num_mv2=stages[1].num_mv2 + 1)
    deeper = XXS.replace(stages=tuple(stages))
    extra = [u for u in deeper.units(RES) if u.kind == "mv2"][2]
    (extra_features,) = cache.get_many([unit_key(extra)]).values()
    _assert_same(unit_features(deeper, RES, cache, templates=False), combine([first, extra_features]))


def _no_conversion(units):
    raise AssertionError(f"converted {len(units)} units although all were cached")


def test_only_the_missing_units_are_converted(cache, monkeypatch):
    unit_features(XXS, RES, cache, templates=False)
    wider = XXS.replace(head_channels=XXS.head_channels + 8)
    converted = []
    real = blocks_module.convert_units

    def spy(units):
        converted.extend(units)
        return real(units)

    monkeypatch.setattr(blocks_module, "convert_units", spy)
    _assert_same(unit_features(wider, RES, cache, templates=False), spec_features(wider, RES))
    assert [u.kind for u in converted] == ["head"]


def test_a_unit_key_changes_with_every_field_and_with_the_versions(monkeypatch):
    mv2 = Unit("mv2", 32, 64, (16, 16), stride=2, expansion=4.0)
    block_unit = [u for u in XXS.units(RES) if u.kind == "block"][0]
    variants = [dataclasses.replace(mv2, in_channels=24), dataclasses.replace(mv2, out_channels=48),
                dataclasses.replace(mv2, size=(16, 8)), dataclasses.replace(mv2, stride=1),
                dataclasses.replace(mv2, expansion=2.0), dataclasses.replace(mv2, kind="stem"),
                dataclasses.replace(mv2, num_classes=10)]
    b = block_unit.block
    variants += [dataclasses.replace(block_unit, block=dataclasses.replace(b, **change))
                 for change in (dict(heads=1), dict(patch_size=(1, 2)), dict(norm="group_norm"),
                                dict(local_kernel=5), dict(ffn_dim=b.ffn_dim + 8),
                                dict(attention="separable"), dict(depth=b.depth + 1))]
    keys = {unit_key(u) for u in [mv2, block_unit, *variants]}
    assert len(keys) == 2 + len(variants)
    for package in ("coremltools", "torch"):
        before = unit_key(mv2)
        versions = dict(blocks_module.unit_versions())
        monkeypatch.setattr(blocks_module, "unit_versions",
                            lambda v={**versions, package: "0.0"}: v)
        assert unit_key(mv2) != before
        monkeypatch.undo()


@pytest.mark.parametrize("garbage", ["not json", '{"values": {}, "op_types": {}}',
                                     '{"values": null}', '[]'])
def test_a_corrupt_cache_entry_is_rebuilt_not_trusted(cache, garbage):
    good = unit_features(XXS, RES, cache, templates=False)
    stem = unit_key(XXS.units(RES)[0])
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE unit_features SET features = ? WHERE key = ?", (garbage, stem))
    assert cache.get_many([stem]) == {}
    assert unit_features(XXS, RES, cache, templates=False) == good
    assert cache.get_many([stem]) != {}  # rewritten
