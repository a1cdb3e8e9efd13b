import pytest

from mobilevit import get_fixed_point, list_models
from nas.profile import profile
from tests.reference import ATTENTION_MACS, FVCORE_MACS, FVCORE_MACS_224, PARAMS

V1_V2 = [n for n in list_models() if get_fixed_point(n).paper in ("v1", "v2")]
V3 = [n for n in list_models() if get_fixed_point(n).paper == "v3"]


@pytest.mark.parametrize("name", V1_V2)
def test_v1_v2_macs_within_1_percent_of_fvcore_reference(name):
    prof = profile(get_fixed_point(name).spec, 256)
    assert prof.params == PARAMS[name][-1]
    assert abs(prof.macs - FVCORE_MACS[name]) / FVCORE_MACS[name] < 0.01


@pytest.mark.parametrize("name", V3)
def test_v3_macs_match_the_reference_count(name):
    prof = profile(get_fixed_point(name).spec, 256)
    assert abs(prof.macs - FVCORE_MACS[name]) / FVCORE_MACS[name] < 0.01


@pytest.mark.parametrize("name", list(FVCORE_MACS_224))
def test_macs_at_224_exercise_the_resize_paths(name):
    prof = profile(get_fixed_point(name).spec, 224)
    assert abs(prof.macs - FVCORE_MACS_224[name]) / FVCORE_MACS_224[name] < 0.01


@pytest.mark.parametrize("name", list(ATTENTION_MACS))
def test_fused_attention_matmuls_are_counted(name):
    # fvcore alone misses scaled_dot_product_attention; our handle must count both matmuls.
    groups = profile(get_fixed_point(name).spec).macs_by_group
    assert abs(groups["attention"] - ATTENTION_MACS[name]) / ATTENTION_MACS[name] < 0.01


def test_breakdown_sums_to_total_and_v2_has_no_attention_matmul():
    prof = profile(get_fixed_point("mobilevitv2_050").spec)
    assert sum(prof.macs_by_group.values()) == prof.macs
    assert "attention" not in prof.macs_by_group  # separable attention is element-wise
    assert prof.to_dict()["resolution"] == 256


def test_macs_scale_with_resolution():
    spec = get_fixed_point("mobilevitv2_050").spec
    assert profile(spec, 512).macs > 3.9 * profile(spec, 256).macs
