"""Layer semantics against independent references: torch's own modules and the papers' formulas."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mobilevit.attention_modules import MultiHeadSelfAttention, SeparableSelfAttention
from mobilevit.blocks import MobileViTBlock
from mobilevit.layers import (
    ChannelLayerNorm,
    ConvNormAct,
    InvertedResidual,
    TokenGroupNorm,
    fold_patches,
    make_norm,
    unfold_patches,
    unfolded_batchnorm,
)
from mobilevit.spec import block


@pytest.mark.parametrize("ph,pw", [(2, 2), (3, 3), (4, 2), (8, 8)])
def test_unfold_ordering_matches_the_reference(ph, pw):
    b, c, h, w = 2, 3, 8 * ph, 4 * pw
    x = torch.randn(b, c, h, w)
    patches = unfold_patches(x, ph, pw)
    n_w = w // pw
    assert patches.shape == (b, c, ph * pw, (h // ph) * n_w)
    for y, xx in [(0, 0), (h - 1, w - 1), (ph + 1 if ph > 1 else 1, 2 * pw)]:
        i_h, p_h, i_w, p_w = y // ph, y % ph, xx // pw, xx % pw
        torch.testing.assert_close(patches[:, :, p_h * pw + p_w, i_h * n_w + i_w], x[:, :, y, xx])
    torch.testing.assert_close(fold_patches(patches, ph, pw, h, w), x)


def test_unfold_equals_torch_im2col():
    x = torch.randn(2, 5, 12, 8)
    ours = unfold_patches(x, 2, 2)  # [B, C, P, N]
    im2col = F.unfold(x, kernel_size=2, stride=2).reshape(2, 5, 4, -1)
    torch.testing.assert_close(ours, im2col)


def test_mhsa_equals_torch_multihead_attention():
    torch.manual_seed(0)
    dim, heads = 48, 4
    ours = MultiHeadSelfAttention(dim, heads=heads, attn_dropout=0.0).eval()
    ref = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
        x = torch.randn(2, 4, 16, dim)  # [B, P, N, d]
        expected, _ = ref(*(x.reshape(8, 16, dim),) * 3, need_weights=False)
        torch.testing.assert_close(ours(x), expected.reshape(2, 4, 16, dim), rtol=1e-5,
                                   atol=1e-5)


def test_separable_attention_equals_the_paper_formula():
    torch.manual_seed(0)
    dim = 16
    attn = SeparableSelfAttention(dim, heads=1, attn_dropout=0.0).eval()
    x = torch.randn(2, dim, 4, 9)  # [B, d, P, N]
    w = attn.qkv.weight[:, :, 0, 0]
    bias = attn.qkv.bias
    xt = x.permute(0, 2, 3, 1)  # [B, P, N, d]
    proj = xt @ w.T + bias
    i, k, v = proj[..., :1], proj[..., 1:1 + dim], proj[..., 1 + dim:]
    # v2 paper Eq. 3: y = (sum_N softmax_N(x W_I) * x W_K) * ReLU(x W_V), then W_O.
    context = (i.softmax(dim=2) * k).sum(dim=2, keepdim=True)
    y = (context * F.relu(v)) @ attn.proj.weight[:, :, 0, 0].T + attn.proj.bias
    with torch.no_grad():
        torch.testing.assert_close(attn(x), y.permute(0, 3, 1, 2), rtol=1e-5, atol=1e-5)


def test_norms_equal_torch_norms_in_both_layouts():
    torch.manual_seed(0)
    tokens = torch.randn(2, 4, 9, 16)  # [B, P, N, d]
    channels = tokens.permute(0, 3, 1, 2)  # [B, d, P, N]
    for kind in ("layer_norm", "group_norm"):
        t, c = make_norm(kind, 16, "tokens"), make_norm(kind, 16, "channels")
        with torch.no_grad():
            for norm in (t, c):
                norm.weight.copy_(torch.linspace(0.5, 1.5, 16))
                norm.bias.copy_(torch.linspace(-1, 1, 16))
            torch.testing.assert_close(t(tokens).permute(0, 3, 1, 2), c(channels), rtol=1e-4,
                                       atol=1e-5)
    ref_ln = nn.LayerNorm(16)
    torch.testing.assert_close(ChannelLayerNorm(16)(channels),
                               ref_ln(tokens).permute(0, 3, 1, 2), rtol=1e-4, atol=1e-5)
    ref_gn = nn.GroupNorm(1, 16)
    torch.testing.assert_close(TokenGroupNorm(16)(tokens).permute(0, 3, 1, 2), ref_gn(channels),
                               rtol=1e-4, atol=1e-5)


def test_inverted_residual_hidden_width_and_residual():
    ir = InvertedResidual(24, 24, stride=1, expansion=4)
    assert ir.dw.conv.out_channels == 96 and ir.use_residual
    assert not InvertedResidual(24, 48, stride=2, expansion=4).use_residual


def test_v1_block_resizes_features_and_back_v2_keeps_enlarged_map():
    x = torch.randn(1, 32, 7, 7)
    v1 = MobileViTBlock(32, block("v1", dim=16, ffn_dim=32, depth=1, heads=2)).eval()
    v2 = MobileViTBlock(32, block("v2", dim=16, ffn_dim=32, depth=1)).eval()
    v3 = MobileViTBlock(32, block("v3_v2", dim=16, ffn_dim=32, depth=1)).eval()
    with torch.no_grad():
        assert v1(x).shape == (1, 32, 7, 7)
        assert v2(x).shape == (1, 32, 8, 8)
        assert v3(x).shape == (1, 32, 8, 8)


def test_v3_residual_adds_the_input():
    b = MobileViTBlock(16, block("v3_v1", dim=16, ffn_dim=32, depth=1, heads=2)).eval()
    with torch.no_grad():
        # With a zero fusion conv, the block is the identity.
        b.conv_fusion.bn.weight.zero_()
        b.conv_fusion.bn.bias.zero_()
        x = torch.randn(1, 16, 8, 8)
        # fusion output is SiLU(0) = 0, so the block returns its input.
        torch.testing.assert_close(b(x), x)


def test_fusion_sources_reach_the_fusion_conv():
    spec = block("v3_v1", dim=24, ffn_dim=48, depth=1, heads=2)
    b = MobileViTBlock(16, spec)
    assert b.conv_fusion.conv.in_channels == 24 + 16  # local (d) + global (C)
    spec2 = block("v3_v2", dim=24, ffn_dim=48, depth=1)
    b2 = MobileViTBlock(16, spec2)
    assert b2.conv_proj is None and b2.conv_fusion.conv.in_channels == 48  # global (d) + local (d)


def _with_statistics(unit: ConvNormAct, seed: int) -> ConvNormAct:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn = unit.bn
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.1)
        bn.weight.copy_(torch.randn(bn.num_features, generator=g))
        bn.bias.copy_(torch.randn(bn.num_features, generator=g))
    return unit


@pytest.mark.parametrize("kernel,stride,groups,act", [(3, 1, 1, True), (3, 2, 8, True),
                                                      (1, 1, 1, False), (5, 1, 8, True)])
def test_conv_norm_act_folds_its_batchnorm_in_eval_mode_only(kernel, stride, groups, act):
    unit = _with_statistics(ConvNormAct(8, 16, kernel, stride=stride, groups=groups, act=act), 0)
    x = torch.randn(2, 8, 12, 12)

    def reference(x):  # conv, norm and activation as torch's own modules run them
        return unit.act(unit.bn(unit.conv(x)))

    calls = []
    unit.bn.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        unit.eval()
        folded = unit(x)
        assert not calls  # the norm never ran: its statistics are in the conv's weight and bias
        torch.testing.assert_close(folded, reference(x), rtol=1e-5, atol=1e-5)
        with unfolded_batchnorm(unit):
            assert torch.equal(unit(x), reference(x))
        assert unit.fold_bn and "fold_bn" not in unit.__dict__  # restored
    unit.train()
    state = {k: v.clone() for k, v in unit.state_dict().items()}
    y = unit(x)
    assert y.requires_grad and calls  # training: batch statistics, the running ones updated
    assert not torch.equal(state["bn.running_mean"], unit.bn.running_mean)
    unit.load_state_dict(state)
    torch.testing.assert_close(y, reference(x))


def test_a_conv_norm_act_whose_batchnorm_trains_uses_batch_statistics():
    # Recalibration trains the BatchNorms of an eval network: those must not be folded.
    unit = _with_statistics(ConvNormAct(8, 8, 3), 1).eval()
    unit.bn.train()
    x = torch.randn(4, 8, 6, 6)
    before = unit.bn.running_mean.clone()
    with torch.no_grad():
        out = unit(x)
    assert not torch.equal(before, unit.bn.running_mean)
    normed = F.batch_norm(unit.conv(x), None, None, unit.bn.weight, unit.bn.bias, training=True)
    torch.testing.assert_close(out, unit.act(normed))


def test_unfolded_batchnorm_restores_an_instance_setting_after_an_error():
    unit = ConvNormAct(4, 4, 1)
    unit.fold_bn = False
    with pytest.raises(RuntimeError), unfolded_batchnorm(unit):
        raise RuntimeError
    assert unit.__dict__["fold_bn"] is False
