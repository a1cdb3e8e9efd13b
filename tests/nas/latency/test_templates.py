"""Written-down unit programs: the same features as converting, and trusted only where checked."""

import dataclasses

import pytest

from mobilevit import get_fixed_point
from mobilevit.spec import Unit
from nas.latency import blocks as blocks_module
from nas.latency.blocks import UnitFeatureCache, convert_units, templates_trusted, unit_features
from nas.latency.features import spec_features
from nas.latency.templates import has_template, probe_units, template_features, template_program
from tests.mobilevit.test_attention_kinds import LINEAR, registered
from tests.mobilevit.test_complexity import random_specs
from tests.nas.latency.test_blocks import _assert_same

pytestmark = pytest.mark.coreml

XXS = get_fixed_point("mobilevit_xxs").spec
FIXED = ["mobilevit_s", "mobilevitv2_050", "mobilevitv3_xs", "mobilevitv3_050"]


def _units():
    """Every probe design, four fixed points at 256 and at an odd size, and random specs of the
    whole space (each unit once); bench/latency_oracle.py compares many more."""
    units = {u.to_json(): u for u in probe_units()}
    for spec, sizes in [*((get_fixed_point(n).spec, (256, 97)) for n in FIXED),
                        *((s, (256,)) for s in random_specs(4, seed=7))]:
        for res in sizes:
            units.update((u.to_json(), u) for u in spec.units(res))
    return list(units.values())


UNITS = _units()


@pytest.fixture(scope="module")
def converted():
    return dict(zip((u.to_json() for u in UNITS), convert_units(UNITS), strict=True))


@pytest.mark.parametrize("index", range(len(UNITS)))
def test_a_written_program_counts_what_the_converted_one_does(index, converted):
    unit = UNITS[index]
    assert has_template(unit)
    written, real = template_features(unit), converted[unit.to_json()]
    assert written.op_types == real.op_types
    assert written.values == real.values


def test_a_network_from_templates_equals_the_whole_network_conversion(tmp_path, monkeypatch):
    def no_conversion(units):
        raise AssertionError(f"converted {len(units)} units")

    monkeypatch.setattr(blocks_module, "convert_units", no_conversion)
    cache = UnitFeatureCache(tmp_path / "latency.sqlite")
    written = unit_features(XXS, 64, cache)
    monkeypatch.undo()
    _assert_same(written, spec_features(XXS, 64))


def test_the_program_follows_the_fields():
    # one more transformer layer adds the same ops again; a stride-2 MV2 has no residual add
    block_unit = next(u for u in XXS.units(256) if u.kind == "block")

    def ops(depth):
        return len(template_program(dataclasses.replace(
            block_unit, block=dataclasses.replace(block_unit.block, depth=depth))).ops)

    assert ops(3) - ops(2) == ops(2) - ops(1) > 20
    stride2 = Unit("mv2", 32, 32, (16, 16), stride=2, expansion=2.0)
    assert "add" not in template_features(stride2).op_types
    assert template_features(dataclasses.replace(stride2, stride=1)).op_types["add"] == 1


def test_an_attention_kind_without_a_template_is_converted(tmp_path):
    with registered(LINEAR):
        block_unit = next(u for u in XXS.units(64) if u.kind == "block")
        unit = dataclasses.replace(block_unit, block=dataclasses.replace(
            block_unit.block, attention="linear"))
        spec = XXS.replace(stages=tuple(
            dataclasses.replace(s, block=dataclasses.replace(s.block, attention="linear"))
            if s.block else s for s in XXS.stages))
        assert not has_template(unit)
        cache = UnitFeatureCache(tmp_path / "latency.sqlite")
        _assert_same(unit_features(spec, 64, cache), spec_features(spec, 64))


def _unverified(monkeypatch):
    """Pretend coremltools is a version the templates were not compared with; the check's probe
    units are cut to three (one of each kind: the check, not the probe set, is under test)."""
    versions = {**blocks_module.unit_versions(), "coremltools": "0.0"}
    monkeypatch.setattr(blocks_module, "unit_versions", lambda: versions)
    probes = [u for u in probe_units() if u.kind in ("stem", "head")][:2] + [
        next(u for u in probe_units() if u.kind == "block")]
    monkeypatch.setattr(blocks_module, "probe_units", lambda: probes)
    return probes


def test_under_unverified_versions_templates_are_checked_once_then_trusted(tmp_path, monkeypatch):
    cache = UnitFeatureCache(tmp_path / "latency.sqlite")
    assert templates_trusted(cache)  # the installed versions are verified: no check
    assert cache.template_check('{}') is None
    probes = _unverified(monkeypatch)
    calls = []
    real = blocks_module.convert_units
    monkeypatch.setattr(blocks_module, "convert_units",
                        lambda units: calls.append(len(units)) or real(units))
    assert templates_trusted(cache) and calls == [len(probes)]
    assert templates_trusted(UnitFeatureCache(cache.path)) and len(calls) == 1  # stored


def test_templates_that_disagree_with_the_converter_are_not_used(tmp_path, monkeypatch):
    _unverified(monkeypatch)
    cache = UnitFeatureCache(tmp_path / "latency.sqlite")
    wrong = blocks_module.template_features
    monkeypatch.setattr(blocks_module, "template_features",
                        lambda unit: dataclasses.replace(wrong(unit), op_types={}))
    assert not templates_trusted(cache)
    _assert_same(unit_features(XXS, 64, cache), spec_features(XXS, 64))
