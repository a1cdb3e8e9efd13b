"""Generic tests over every fixed point of the model table, plus specs that are not fixed points."""

import pytest
import torch

import mobilevit
from mobilevit import MobileViT, create_model, get_fixed_point, list_models, num_params
from mobilevit.model import build_unit
from tests.reference import PARAMS

MODELS = list_models()


def _parts(model: MobileViT) -> tuple[int, ...]:
    stages = tuple(num_params(s) for s in model.stages)
    return (num_params(model.stem), *stages, num_params(model.head_conv),
            num_params(model.classifier), num_params(model))


@pytest.mark.parametrize("name", MODELS)
def test_parameter_counts_match_the_reference_exactly(name):
    assert _parts(create_model(name)) == PARAMS[name]


def _expected_size(res: int, reduction: int) -> int:
    return -(-res // reduction)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("res", [256, 224])
def test_stage_shapes(name, res):
    model = create_model(name).eval()
    spec = model.spec
    with torch.no_grad():
        maps = model.forward_intermediates(torch.randn(1, 3, res, res))
        features = model.forward_features(torch.randn(1, 3, res, res))
    assert len(maps) == len(model.feature_info) == 5
    for i, (fmap, info) in enumerate(zip(maps, model.feature_info, strict=True)):
        side = _expected_size(res, info["reduction"])
        block = spec.stages[i].block
        if block is not None and block.resize == "input":
            # v2 / v3-on-v2 enlarge a map that is not a multiple of the patch and keep it.
            side = -(-side // block.patch_size[0]) * block.patch_size[0]
        assert tuple(fmap.shape) == (1, info["num_chs"], side, side), (i, fmap.shape)
    assert features.shape[1] == model.num_features


def test_reference_shapes_at_224():
    # Reference section 3.6: v1/v3-v1 end at 7x7, v2/v3-v2 blocks return 8x8 at layer5.
    expected = {"mobilevit_s": (640, 7, 7), "mobilevitv3_s": (960, 7, 7),
                "mobilevitv2_100": (512, 8, 8), "mobilevitv3_100": (512, 8, 8)}
    for name, shape in expected.items():
        with torch.no_grad():
            out = create_model(name).eval().forward_features(torch.randn(1, 3, 224, 224))
        assert tuple(out.shape[1:]) == shape, name


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).train()
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7)
    logits.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing[:5]
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("res", [256, 160, 193])
def test_any_resolution_runs(res):
    model = create_model("mobilevit_xxs").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, res, res))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()


def test_batch_elements_are_independent_in_eval():
    # The v2 GroupNorm and v1 attention must not mix samples of a batch.
    for name in ("mobilevit_xxs", "mobilevitv2_050"):
        model = create_model(name).eval()
        x = torch.randn(3, 3, 64, 64)
        with torch.no_grad():
            together = model(x)
            alone = torch.cat([model(x[i:i + 1]) for i in range(3)])
        torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_num_classes_override_and_head_api():
    model = create_model("mobilevitv2_050", num_classes=10)
    assert model.spec.num_classes == 10 and model.classifier.out_features == 10
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        pooled = model.eval().forward_head(model.forward_features(x), pre_logits=True)
    assert pooled.shape == (1, model.num_features)


ODD_SPECS = {
    "v1-S patch 3x3": get_fixed_point("mobilevit_s").spec.with_blocks(patch_size=(3, 3)),
    "v1-S patch 8,4,2": mobilevit.v1_spec((16, 32, 64, 96, 128, 160), (144, 192, 240),
                                          expansion=4, dropout=0.1, patch_sizes=(8, 4, 2)),
    "v1-S separable": get_fixed_point("mobilevit_s").spec.with_blocks(attention="separable"),
    "v2 with mhsa + layer norm": get_fixed_point("mobilevitv2_050").spec.with_blocks(
        attention="mhsa", heads=2, norm="layer_norm"),
    "v1 with group norm": get_fixed_point("mobilevit_xxs").spec.with_blocks(norm="group_norm"),
    "v2 with layer norm": get_fixed_point("mobilevitv2_050").spec.with_blocks(norm="layer_norm"),
    "v1 no fusion": get_fixed_point("mobilevit_xxs").spec.with_blocks(
        **mobilevit.spec.FUSION_FAMILIES["none"]),
    "v3 patch 3 x 2 kernel 5": get_fixed_point("mobilevitv3_xxs").spec.with_blocks(
        patch_size=(3, 2), local_kernel=5),
}


@pytest.mark.parametrize("name", list(ODD_SPECS))
def test_specs_beyond_the_table_build_and_train(name):
    spec = ODD_SPECS[name]
    model = MobileViT(spec).train()
    for res in (64, 96, 100):
        out = model(torch.randn(2, 3, res, res))
        assert out.shape == (2, 1000) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_patch_size_does_not_change_parameters():
    # v1 paper Table 6: every patch configuration of MobileViT-S has the same parameters.
    counts = {num_params(MobileViT(ODD_SPECS[k])) for k in ("v1-S patch 3x3", "v1-S patch 8,4,2")}
    assert counts == {PARAMS["mobilevit_s"][-1]}


def test_weights_are_deterministic_under_a_seed():
    torch.manual_seed(3)
    a = create_model("mobilevit_xxs").state_dict()
    torch.manual_seed(3)
    b = create_model("mobilevit_xxs").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", [*list_models(), *ODD_SPECS])
@pytest.mark.parametrize("res", [64, 97])
def test_units_chain_into_the_network(name, res):
    spec = ODD_SPECS.get(name) or get_fixed_point(name).spec
    units = spec.units(res)
    assert [u.kind for u in units[:1] + units[-1:]] == ["stem", "head"]
    assert sum(num_params(build_unit(u)) for u in units) == num_params(MobileViT(spec))
    x = torch.zeros(1, 3, res, res)
    with torch.no_grad():
        for unit in units:
            assert tuple(x.shape[1:]) == (unit.in_channels, *unit.size), unit
            x = build_unit(unit).eval()(x)
    assert x.shape == (1, spec.num_classes)


@pytest.mark.parametrize("name", MODELS)
def test_eval_logits_with_folded_batchnorm_equal_the_specified_network(name):
    # Eval mode folds each BatchNorm into its conv and runs channels-last; the logits are the
    # network's as specified (norms as their own ops) up to rounding, for any input layout.
    model = create_model(name).eval()
    for m in model.modules():  # statistics a trained network would have, not the initial ones
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        with mobilevit.layers.unfolded_batchnorm(model):
            specified = model(x)
        folded = model(x)
        from_channels_last = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(folded, specified, rtol=1e-4, atol=1e-4)
    assert torch.equal(folded, from_channels_last)
    assert all(p.is_contiguous() for p in model.parameters())  # the weights keep their layout
    features = model.forward_features(x)
    assert features.is_contiguous(memory_format=torch.channels_last)

