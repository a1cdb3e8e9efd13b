import random

import pytest
import torch

from mobilevit import get_fixed_point
from nas.supernet.network import Supernet, SupernetError
from search_spaces import MobileViTSpace

# A small space with every design choice, two kernel sizes (centre-cropped) and free widths,
# dims, depths, FFN ratios, heads and expansions: every mixed op and every sliced dimension.
SMALL = {"stem.width": {"high": 24}, "s1.width": {"high": 32}, "s2.width": {"high": 40},
         "s2.depth": {"high": 2}, "local_kernel": [3, 5],
         **{f"s{i}.width": {"low": 32, "high": 56} for i in (3, 4, 5)},
         **{f"s{i}.dim": {"low": 32, "high": 48} for i in (3, 4, 5)},
         **{f"s{i}.depth": {"high": 2} for i in (3, 4, 5)},
         **{f"s{i}.ffn_ratio": [1, 2] for i in (3, 4, 5)},
         **{f"s{i}.patch": [2] for i in (3, 4, 5)}}
RES = 64


@pytest.fixture(scope="module")
def supernet():
    return Supernet(MobileViTSpace(SMALL, num_classes=10, resolution=RES), seed=0)


def random_specs(space, n, seed):
    rng = random.Random(seed)
    specs = []
    while len(specs) < n:
        values = {name: rng.choice(p.values) for name, p in space.params.items()}
        specs.append(space.build(values))
    return specs


def images(n=2, seed=0):
    return torch.randn(n, 3, RES, RES, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", range(8))
def test_the_supernet_runs_a_candidate_exactly_as_its_extracted_network(supernet, seed):
    (spec,) = random_specs(supernet.space, 1, seed)
    net = supernet.extract(spec).eval()
    supernet.eval()
    x = images()
    with torch.no_grad():
        assert torch.equal(supernet(x, spec), net(x)), spec.summary()
    supernet.train()
    net.train()
    torch.manual_seed(seed)  # the same dropout masks in both
    shared = supernet(x, spec)
    torch.manual_seed(seed)
    assert torch.equal(shared, net(x)), spec.summary()


@pytest.mark.parametrize("fixed", [{"block": "v2"}, {"block": "v3_v1", "local_kernel": 5}])
def test_a_sub_supernet_inherits_exactly_its_parts_weights(supernet, fixed):
    part = Supernet(supernet.space.fixing(fixed), seed=1)  # a different start, overwritten
    part.inherit(supernet)
    specs = random_specs(part.space, 4, seed=len(fixed))
    assert all(part.space.params_for(spec)[k] == v for spec in specs for k, v in fixed.items())
    part.eval()
    supernet.eval()
    x = images()
    with torch.no_grad():
        for spec in specs:
            mine, theirs = part.extract(spec).state_dict(), supernet.extract(spec).state_dict()
            assert mine.keys() == theirs.keys()
            assert all(torch.equal(mine[k], theirs[k]) for k in mine), spec.summary()
            assert torch.equal(part(x, spec), supernet(x, spec)), spec.summary()
    assert part.tensor_count() < supernet.tensor_count()  # the other designs' tensors are not


def test_every_design_choice_has_its_own_weights_and_the_rest_is_shared(supernet):
    space = supernet.space
    keys = set(supernet.layout)
    for design in ("v1", "v2", "v3_v1", "v3_v2", "none"):
        assert any(f"[design={design}]" in k for k in keys), design
    for tag in ("local=full", "local=depthwise", "attention=mhsa,norm=layer_norm",
                "attention=separable,norm=group_norm", "classifier[expansion]",
                "classifier[no_expansion]"):
        assert any(tag in k for k in keys), tag
    params = space.params_for(random_specs(space, 1, 3)[0])
    full = space.build({**params, "local_conv": "full"})
    depthwise = space.build({**params, "local_conv": "depthwise"})
    a, b = supernet.extract(full).state_dict(), supernet.extract(depthwise).state_dict()
    shared = [k for k in a if ".conv_kxk." not in k]
    assert all(torch.equal(a[k], b[k]) for k in shared)  # stem, MV2s, transformers, head
    channels = full.stages[2].out_channels
    assert a["stages.2.1.conv_kxk.conv.weight"].shape[1] == channels  # full: C -> C
    assert b["stages.2.1.conv_kxk.conv.weight"].shape[1] == 1  # depthwise


def _weights(supernet, key_part):
    (key,) = [k for k in supernet.layout if key_part in k]
    buffer, name = supernet._homes[key]
    return supernet._buffers[name] if buffer else supernet.weights[name]


def test_widths_depths_and_kernels_are_prefixes_and_centres_of_the_largest(supernet):
    space = supernet.space
    base = space.params_for(random_specs(space, 1, 5)[0])
    spec = space.build({**base, "stem.width": 16, "local_conv": "full", "local_kernel": 3,
                        "s3.width": 40, "s3.dim": 32, "s3.depth": 1, "s3.ffn_ratio": 1})
    net = supernet.extract(spec).state_dict()
    stem = _weights(supernet, "stem.conv.weight")
    assert torch.equal(net["stem.conv.weight"], stem[:16])
    local = _weights(supernet, "stages.2.block.conv_kxk[local=full].conv.weight")
    assert local.shape[-2:] == (5, 5)  # the largest kernel; a 3x3 is its centre
    assert torch.equal(net["stages.2.1.conv_kxk.conv.weight"], local[:40, :40, 1:4, 1:4])
    fc1 = _weights(supernet, f"stages.2.block.transformer[attention={spec.stages[2].block.attention}].0.ffn.fc1.weight")
    assert torch.equal(net["stages.2.1.transformer.0.ffn.fc1.weight"], fc1[:32, :32])
    assert "stages.2.1.transformer.1.norm1.weight" not in net  # depth 1: the first layer only


def test_fused_qkv_keeps_each_of_q_k_and_v_own_first_rows(supernet):
    space = supernet.space
    base = space.params_for(random_specs(space, 1, 7)[0])
    for attention, parts in (("mhsa", (0, 48, 96)), ("separable", None)):
        spec = space.build({**base, "attention": attention, "s4.dim": 40})
        net = supernet.extract(spec).state_dict()
        qkv = _weights(supernet, f"stages.3.block.transformer[attention={attention}].0.attn.qkv.weight")
        got = net["stages.3.1.transformer.0.attn.qkv.weight"]
        if attention == "mhsa":  # [q | k | v], each 48 rows in the supernet
            want = torch.cat([qkv[start:start + 40, :40] for start in parts])
        else:  # [latent score (1) | keys (48) | values (48)]
            want = torch.cat([qkv[:1, :40], qkv[1:41, :40], qkv[49:89, :40]])
        assert torch.equal(got.reshape(want.shape), want), attention


def test_gradients_reach_only_the_candidates_slice(supernet):
    space = supernet.space
    base = space.params_for(random_specs(space, 1, 9)[0])
    spec = space.build({**base, "stem.width": 16})
    supernet.train()
    supernet.zero_grad()
    supernet(images(), spec).sum().backward()
    grad = _weights(supernet, "stem.conv.weight").grad
    assert grad[:16].abs().sum() > 0 and grad[16:].abs().sum() == 0
    supernet.zero_grad()


def test_a_spec_outside_the_space_is_one_line_naming_the_parameter(supernet):
    spec = get_fixed_point("mobilevit_s").spec.replace(num_classes=10, resolution=RES)
    with pytest.raises(SupernetError, match=r"space\.\S+=\S+: outside this space") as info:
        supernet.extract(spec)
    assert "\n" not in str(info.value)
    with pytest.raises(SupernetError, match="num_classes=1000"):
        supernet.extract(get_fixed_point("mobilevit_xxs").spec)


def test_running_a_candidate_leaves_the_global_random_stream_alone(supernet):
    spec = random_specs(supernet.space, 1, 11)[0]
    supernet.eval()
    state = torch.get_rng_state()
    with torch.no_grad():
        supernet(images(), spec)
        supernet.extract(spec)
    assert torch.equal(state, torch.get_rng_state())


def test_the_initial_weights_follow_the_seed():
    space = MobileViTSpace({**SMALL, "block": ["v3_v2"], "local_conv": ["depthwise"],
                            "attention": ["separable"], "norm": ["group_norm"],
                            "head_conv": [False]}, num_classes=10, resolution=RES)
    a, b, c = (Supernet(space, seed=s).state_dict() for s in (0, 0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
