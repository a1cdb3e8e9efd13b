import itertools
import re

import optuna
import pytest
from optuna.trial import FixedTrial

from mobilevit import ArchSpec, get_fixed_point, list_models, v2_channels
from mobilevit.complexity import complexity
from search_spaces import DEFAULT_PARAMS, MobileViTSpace, SpaceError


@pytest.mark.parametrize("name", list_models())
def test_every_fixed_point_is_in_the_default_space_and_round_trips(name):
    space = MobileViTSpace()
    spec = get_fixed_point(name).spec
    params = space.params_for(spec)
    assert set(params) == set(space.params)
    assert not space.outside(params)
    assert space.sample(FixedTrial(params)) == spec
    # ... and through a real Optuna study, as an enqueued trial.
    study = optuna.create_study()
    study.enqueue_trial(params)
    trial = study.ask()
    assert space.sample(trial) == spec


def test_sampling_is_valid_and_deterministic_under_a_seed():
    def draw(seed):
        space = MobileViTSpace(num_classes=10)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        ids = []
        for _ in range(60):
            trial = study.ask()
            ids.append(space.sample(trial).spec_id)  # raises on an invalid spec
            study.tell(trial, 0.0)
        return ids

    first = draw(7)
    assert first == draw(7) and first != draw(8)
    assert len(set(first)) > 55


def test_parameters_are_flat_and_named_by_stage():
    names = [p.name for p in DEFAULT_PARAMS]
    assert len(names) == len(set(names)) == 36
    assert {"s3.dim", "s4.heads", "s5.patch", "s2.depth", "block", "width_multiplier"} <= set(names)


def test_overrides_fix_narrow_and_range():
    space = MobileViTSpace({"attention": "mhsa", "block": ["v1", "v3_v1"],
                            "s3.dim": {"low": 64, "high": 120, "step": 16},
                            "s5.patch": [2, 4], "width_multiplier": [0.75, 1.0, 1.5]})
    assert space.params["attention"].values == ("mhsa",)
    assert space.params["block"].values == ("v1", "v3_v1")
    assert space.params["s3.dim"].values == (64, 80, 96, 112)
    assert space.params["s5.patch"].values == (2, 4)
    assert space.params["width_multiplier"].values == (0.75, 1.0, 1.5)
    with pytest.raises(SpaceError, match=r"outside this space"):
        space.params_for(get_fixed_point("mobilevitv2_050").spec)


BAD_OVERRIDES = [
    ({"s9.dim": 3}, "space.s9.dim: unknown parameter"),
    ({"block": "v9"}, "space.block=v9: unknown; expected one of v1, none, v2, v3_v1, v3_v2"),
    ({"s3.dim": {"low": 200, "high": 100}}, "space.s3.dim: low=200 is above high=100"),
    ({"s3.dim": {"lo": 8}}, "space.s3.dim.lo: unknown key"),
    ({"s3.dim": -8}, "space.s3.dim=-8: expected an integer >= 1"),
    ({"dropout": 1.5}, "space.dropout=1.5: expected a number >= 0.0 and < 1.0"),
    ({"attention": {"low": 1}}, "space.attention={'low': 1}: a range needs an integer parameter"),
    ({"head_conv": "yes"}, "space.head_conv=yes: unknown; expected one of true, false"),
    ({"s4.heads": [2, 2]}, "space.s4.heads=[2, 2]: a value is listed twice"),
    ({"s4.heads": []}, "space.s4.heads=[]: give at least one value"),
]


@pytest.mark.parametrize("override,message", BAD_OVERRIDES, ids=[m for _, m in BAD_OVERRIDES])
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(SpaceError) as info:
        MobileViTSpace(override)
    assert str(info.value).startswith(message), str(info.value)


def test_width_multiplier_reproduces_the_v2_family():
    base = {"stem.width": 32, "s1.width": 64, "s2.width": 128, "s3.width": 256, "s4.width": 384,
            "s5.width": 512, "s3.dim": 128, "s4.dim": 192, "s5.dim": 256}
    space = MobileViTSpace({**base, "width_multiplier": [0.5, 0.75, 1.25, 1.5, 1.75, 2.0]})
    v2_base = MobileViTSpace().params_for(get_fixed_point("mobilevitv2_100").spec)
    assert all(v2_base[k] == v for k, v in base.items())
    for alpha in (0.5, 0.75, 1.25, 1.5, 1.75, 2.0):
        params = {**v2_base, "width_multiplier": alpha}
        assert not space.outside(params)
        spec = space.sample(FixedTrial(params))
        name = f"mobilevitv2_{int(alpha * 100):03d}"
        assert spec == get_fixed_point(name).spec, name
        assert spec.stages[2].block.dim == v2_channels(alpha).dims[0]


def test_smallest_network_is_a_lower_bound():
    space = MobileViTSpace({"s3.width": {"high": 96}, "s4.width": {"high": 128},
                            "s5.width": {"high": 160}})
    smallest = space.smallest(256)
    (params, p_values), (macs, m_values) = smallest["params"], smallest["macs"]
    assert complexity(space.build(p_values), 256).params == params
    assert complexity(space.build(m_values), 256).macs == macs
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(200):
        trial = study.ask()
        c = complexity(space.sample(trial))
        assert c.params >= params and c.macs >= macs
        study.tell(trial, 0.0)


def test_smallest_is_shared_by_equal_spaces_and_keyed_by_what_it_depends_on(monkeypatch):
    overrides = {"s3.width": {"high": 96}, "block": ["v1", "v2"]}
    first = MobileViTSpace(overrides).smallest(256)
    first["params"][1]["block"] = "changed"  # a caller's copy: the cache keeps its own
    calls = []
    monkeypatch.setattr(MobileViTSpace, "_smallest",
                        lambda self, resolution: calls.append(resolution) or {})
    again = MobileViTSpace(dict(overrides)).smallest(256)  # another instance, same space
    assert calls == [] and again["params"][1]["block"] in ("v1", "v2")
    assert again["params"][0] == first["params"][0]
    MobileViTSpace(overrides).smallest(224)  # another resolution
    MobileViTSpace(overrides, num_classes=10).smallest(256)  # another classifier
    MobileViTSpace({**overrides, "block": ["v1"]}).smallest(256)  # another space
    assert calls == [224, 256, 256]


def test_specs_the_space_cannot_express_are_rejected_by_name():
    space = MobileViTSpace()
    s = get_fixed_point("mobilevit_s").spec
    cases = [
        (s.replace(stages=s.stages[:4]), "the space has 5 stages"),
        (s.with_block(3, heads=2), "space.s4.heads=2"),  # fine: heads are per stage
        (s.with_block(2, attention="separable"), "block attention differs between stages"),
        (s.with_blocks(fusion_kernel=1), "block fusion is not one of"),
        (s.with_blocks(patch_size=(2, 4)), "patch [2, 4] is not square"),
        (s.replace(head_channels=512), "not expressible in this space"),
    ]
    for spec, message in cases:
        if message.startswith("space.s4.heads"):
            assert space.params_for(spec)["s4.heads"] == 2
            continue
        with pytest.raises(SpaceError, match=re.escape(message)):
            space.params_for(spec)


def test_parameters_without_effect_share_the_spec():
    space = MobileViTSpace()
    params = space.params_for(get_fixed_point("mobilevitv2_050").spec)
    specs = {space.sample(FixedTrial({**params, "s3.heads": h})).spec_id for h in (1, 2, 4, 8)}
    assert len(specs) == 1  # heads mean nothing for separable attention
    assert isinstance(space.build(params), ArchSpec)


def test_default_space_covers_every_categorical_combination_validly():
    space = MobileViTSpace()
    params = space.params_for(get_fixed_point("mobilevit_xs").spec)
    names = ["block", "local_conv", "attention", "norm", "head_conv"]
    for combo in itertools.product(*(space.params[n].values for n in names)):
        space.build({**params, **dict(zip(names, combo, strict=True))})


# Ids of space points off the fixed points, computed with the space as it was before the attention
# choices came from the registry (issue 13): the same values must keep giving the same networks.
SPACE_POINT_IDS = [
    ("mobilevit_s", {"attention": "separable"}, "11dd4374e97f"),
    ("mobilevitv2_050", {"attention": "mhsa", "s3.heads": 2, "s4.heads": 4, "s5.heads": 8},
     "aab2163d9a4c"),
    ("mobilevitv3_xs", {"attention": "separable", "norm": "group_norm", "block": "v2"},
     "1f4027bbf3d8"),
    ("mobilevitv3_100", {"attention": "mhsa", "norm": "layer_norm", "s3.patch": 4}, "2af553bdd3f8"),
]


@pytest.mark.parametrize("name,edits,spec_id", SPACE_POINT_IDS, ids=[p[0] for p in SPACE_POINT_IDS])
def test_space_points_keep_their_ids(name, edits, spec_id):
    space = MobileViTSpace(num_classes=10)
    values = {**space.params_for(get_fixed_point(name).spec), **edits}
    assert space.sample(FixedTrial(values)).spec_id == spec_id


def test_attention_choices_are_the_registered_kinds_in_a_stable_order():
    # Same choices in the same order: an existing study samples exactly as before under its seed.
    assert MobileViTSpace().params["attention"].values == ("mhsa", "separable")
    assert [p for p in DEFAULT_PARAMS if p.name == "attention"][0].values == ("mhsa", "separable")


def test_fixing_parameters_gives_the_part_of_the_space_with_those_values():
    space = MobileViTSpace({"block": ["v1", "v2", "v3_v1"], "norm": ["layer_norm", "group_norm"]})
    part = space.fixing({"block": "v2"})
    assert tuple(part.params["block"].values) == ("v2",)
    assert tuple(space.params["block"].values) == ("v1", "v2", "v3_v1")
    assert part.params["norm"].values == space.params["norm"].values
    assert (part.num_classes, part.resolution) == (space.num_classes, space.resolution)
    for name, value in [("block", "v3_v2"), ("no_such", 1)]:
        with pytest.raises(SpaceError) as info:
            space.fixing({name: value})
        assert str(info.value).startswith(f"space.{name}=") and "\n" not in str(info.value)
