"""The attention seam: a kind registered with one AttentionKind is built, counted, summarised and
searched like the built-in ones, and the registry stays torch-free."""

import contextlib
import logging
import pathlib
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from optuna.trial import FixedTrial
from torch import nn

from mobilevit import MobileViT, SpecError, get_fixed_point, num_params
from mobilevit.attention import ATTENTIONS, AttentionInput, AttentionKind, register_attention
from mobilevit.complexity import complexity
from mobilevit.layers import unfolded_batchnorm
from search_spaces import MobileViTSpace, SpaceError

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILT_IN = ["mhsa", "separable"]


class LinearAttention(nn.Module):
    """Kernelised linear attention per head, tokens layout: phi(q) (phi(k)^T v) / (phi(q) sum phi(k)),
    phi = elu + 1, linear in the number of patches."""

    def __init__(self, dim, *, heads, attn_dropout):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # [B, P, N, d]
        b, p, n, d = x.shape
        qkv = self.qkv(x).reshape(b * p, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [BP, h, N, dh]
        q, k = F.elu(q) + 1, F.elu(k) + 1
        context = k.transpose(-2, -1) @ v  # [BP, h, dh, dh]
        normaliser = q @ k.sum(dim=-2).unsqueeze(-1)  # [BP, h, N, 1]
        out = (q @ context) / normaliser  # [BP, h, N, dh]
        return self.proj(out.transpose(1, 2).reshape(b, p, n, d))


def linear_count(x: AttentionInput):
    d, tokens, head_dim = x.dim, x.tokens, x.dim // x.heads
    return 4 * d * d + 4 * d, {"linear": 4 * tokens * d * d,
                               "attention": 2 * tokens * d * head_dim + tokens * d}


class MeanMixing(nn.Module):
    """Every patch gets the mean of all patches, then a 1x1 conv; channels layout, no heads."""

    def __init__(self, dim, *, heads, attn_dropout):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x):  # [B, d, P, N]
        return self.proj(x.mean(dim=-1, keepdim=True).expand_as(x))


LINEAR = AttentionKind("linear", layout="tokens", uses_heads=True, count=linear_count,
                       module=LinearAttention, label="linear/{heads}")
MEAN = AttentionKind("mean", layout="channels", uses_heads=False, module=MeanMixing,
                     count=lambda x: (x.dim * x.dim + x.dim, {"conv": x.tokens * x.dim * x.dim}))


@contextlib.contextmanager
def registered(*kinds):
    """Register ``kinds`` for the duration of the block, and remove them again whatever happens."""
    try:
        for kind in kinds:
            register_attention(kind)
        yield
    finally:
        for kind in kinds:
            if ATTENTIONS.get(kind.name) is kind:
                del ATTENTIONS[kind.name]


@pytest.fixture
def toy_kinds():
    with registered(LINEAR, MEAN):
        yield


# fvcore's operators grouped as mobilevit.complexity reports them (fvcore is called directly here,
# not through nas).
FVCORE_GROUPS = {"conv": "conv", "linear": "linear", "matmul": "attention", "batch_norm": "norm",
                 "layer_norm": "norm", "group_norm": "norm"}


def fvcore_count(model, resolution):
    model.eval()
    with torch.no_grad(), warnings.catch_warnings(), unfolded_batchnorm(model):
        warnings.simplefilter("ignore")  # fvcore's notes on skipped ops and on torch.jit
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        from fvcore.nn import FlopCountAnalysis

        analysis = (FlopCountAnalysis(model, torch.zeros(1, 3, resolution, resolution))
                    .unsupported_ops_warnings(False).uncalled_modules_warnings(False)
                    .tracer_warnings("none"))
        groups = {}
        for op, n in analysis.by_operator().items():
            group = FVCORE_GROUPS.get(op, "other")
            groups[group] = groups.get(group, 0) + int(n)
        return int(analysis.total()), groups


def _toy_spec(base, kind):
    return get_fixed_point(base).spec.replace(num_classes=10).with_blocks(attention=kind, heads=4)


# Both layouts (linear: tokens, mean: channels) with both norms (v1: layer_norm, v2: group_norm), at
# 256 and at 97, where every block resizes (v1 its features, v2 its input).
@pytest.mark.parametrize("base,kind,res", [("mobilevit_xxs", "linear", 97),
                                           ("mobilevitv2_050", "linear", 256),
                                           ("mobilevit_xxs", "mean", 256),
                                           ("mobilevitv2_050", "mean", 97)])
def test_a_registered_kind_is_built_and_counted_as_fvcore_counts_it(toy_kinds, base, kind, res):
    spec = _toy_spec(base, kind)
    model = MobileViT(spec)
    assert all(type(layer.attn) is ATTENTIONS[kind].module
               for stage in model.stages if hasattr(stage[-1], "transformer")
               for layer in stage[-1].transformer)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, res, res)).shape == (2, 10)
    analytic = complexity(spec, res)
    macs, groups = fvcore_count(model, res)
    assert analytic.params == num_params(model)
    assert analytic.macs == macs
    assert analytic.macs_by_group == groups
    assert ("attention" in groups) == (kind == "linear")  # the matmuls of linear attention


def test_the_linear_toy_equals_its_formula_written_out():
    torch.manual_seed(0)
    attn = LinearAttention(8, heads=2, attn_dropout=0.0)
    x = torch.randn(1, 2, 5, 8)  # [B, P, N, d]
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    out = torch.zeros(1, 2, 5, 8)
    for h in range(2):
        s = slice(4 * h, 4 * h + 4)
        qh, kh = F.elu(q[..., s]) + 1, F.elu(k[..., s]) + 1  # [B, P, N, dh]
        weights = qh @ kh.transpose(-2, -1)  # unnormalised kernel attention [B, P, N, N]
        out[..., s] = (weights / weights.sum(-1, keepdim=True)) @ v[..., s]
    with torch.no_grad():
        torch.testing.assert_close(attn(x), attn.proj(out), rtol=1e-5, atol=1e-5)


def test_specs_use_the_kinds_metadata(toy_kinds):
    spec = _toy_spec("mobilevit_xxs", "linear")
    assert spec.stages[2].block.heads == 4
    assert "linear/4" in spec.summary()
    assert "mean" in _toy_spec("mobilevit_xxs", "mean").summary()
    assert _toy_spec("mobilevit_xxs", "mean").stages[2].block.heads == 1  # no heads: canonical
    with pytest.raises(SpecError, match=r"heads=3: dim=64 is not divisible by heads"):
        get_fixed_point("mobilevit_xxs").spec.with_blocks(attention="linear", heads=3)


def test_the_search_space_offers_the_registered_kinds(toy_kinds):
    space = MobileViTSpace(num_classes=10)
    assert space.params["attention"].values == ("mhsa", "separable", "linear", "mean")
    params = {**space.params_for(get_fixed_point("mobilevit_xxs").spec), "attention": "linear",
              "s3.heads": 4, "s4.heads": 4, "s5.heads": 4}
    spec = space.sample(FixedTrial(params))
    assert spec == _toy_spec("mobilevit_xxs", "linear")
    assert space.params_for(spec) == params
    assert MobileViTSpace({"attention": ["linear", "mhsa"]}).params["attention"].values == (
        "linear", "mhsa")


def test_registration_is_undone_and_leaves_the_built_in_kinds():
    with registered(LINEAR):
        assert list(ATTENTIONS) == [*BUILT_IN, "linear"]
    assert list(ATTENTIONS) == BUILT_IN
    assert MobileViTSpace().params["attention"].values == tuple(BUILT_IN)
    with pytest.raises(SpaceError, match=r"space.attention=linear: unknown"):
        MobileViTSpace({"attention": "linear"})
    with pytest.raises(SpecError, match=r"block.attention='linear': unknown"):
        get_fixed_point("mobilevit_xxs").spec.with_blocks(attention="linear")


BAD_KINDS = [
    (AttentionKind("mhsa", "tokens", True, linear_count, LinearAttention), "already registered"),
    (AttentionKind("x", "rows", True, linear_count, LinearAttention), "layout='rows'"),
    (AttentionKind("x", "tokens", 1, linear_count, LinearAttention), "uses_heads=1"),
    (AttentionKind("x", "tokens", True, linear_count, "LinearAttention"), "module='LinearAttention'"),
    (AttentionKind("x", "tokens", True, lambda x: (1, {"matmul": 5}), LinearAttention),
     "groups from conv, linear, attention, norm, other"),
    (AttentionKind("x", "tokens", True, lambda x: (1.5, {}), LinearAttention), "non-negative"),
]


@pytest.mark.parametrize("kind,message", BAD_KINDS, ids=[m for _, m in BAD_KINDS])
def test_a_bad_record_is_refused_at_registration(kind, message):
    with pytest.raises((TypeError, ValueError), match=message):
        register_attention(kind)
    assert list(ATTENTIONS) == BUILT_IN


def test_built_in_kinds_resolve_their_modules_and_count_themselves():
    for name in BUILT_IN:
        kind = ATTENTIONS[name]
        module = kind.build(32, heads=4, attn_dropout=0.0)
        params, macs = kind.count_for(AttentionInput(dim=32, heads=4, pixels=4, patches=16))
        assert params == num_params(module)
        assert set(macs) <= {"linear", "attention", "conv"}


def test_specs_and_counting_load_no_torch():
    # The spec, the registry, the zoo and the counter need no torch (the package loads it when a
    # network is built).
    code = ("import sys, mobilevit; "
            "from mobilevit.zoo import get_fixed_point; from mobilevit.complexity import complexity; "
            "spec = get_fixed_point('mobilevit_s').spec; spec.summary(); "
            "spec.with_blocks(attention='separable'); complexity(spec); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "False"
