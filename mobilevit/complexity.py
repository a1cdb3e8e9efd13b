"""Parameters and MACs of a spec, computed from the spec alone in microseconds.

The budget gate of a search must know a candidate's size before anything is built. This walks the
spec the way :class:`mobilevit.MobileViT` builds it and counts with fvcore's conventions, so the
result equals ``nas.profile.profile`` (fvcore on the built network) exactly; the tests check that
on every fixed point and on random samples of the search space:

* conv: C_out * H_out * W_out * C_in / groups * k^2; linear: tokens * in * out; bias not counted;
* attention: each kind's own count (:class:`mobilevit.attention.AttentionKind`), e.g. mhsa's
  qkv and output linears and both attention matmuls, 2 * P * N^2 * d per layer (N patches, P
  pixels per patch), separable's two 1x1 convs;
* BatchNorm (eval) 2 per element; affine LayerNorm / GroupNorm 5, without affine 4; our
  channel-axis LayerNorm is element-wise ops, which fvcore does not count;
* bilinear resize 4 per output element; global average pool 1 per input element;
* activations, softmax, adds and element-wise products are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mobilevit.attention import ATTENTIONS, AttentionInput
from mobilevit.spec import ArchSpec, BlockSpec, make_divisible


@dataclass
class Complexity:
    """Parameters and MACs (one image) of a network at one resolution."""

    params: int = 0
    macs: int = 0
    macs_by_group: dict[str, int] = field(default_factory=dict)

    def _add(self, params: int, **macs: int) -> None:
        self.params += params
        for group, value in macs.items():
            if value:
                self.macs += value
                self.macs_by_group[group] = self.macs_by_group.get(group, 0) + value


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _conv_bn(c: Complexity, cin: int, cout: int, k: int, h: int, w: int, *, stride: int = 1,
             groups: int = 1) -> tuple[int, int]:
    h, w = _ceil_div(h, stride), _ceil_div(w, stride)
    c._add(cout * cin // groups * k * k + 2 * cout,
           conv=cout * h * w * cin // groups * k * k, norm=2 * cout * h * w)
    return h, w


def _norm(c: Complexity, kind: str, layout: str, dim: int, tokens: int) -> None:
    if kind == "layer_norm":
        per_element = 5 if layout == "tokens" else 0  # nn.LayerNorm vs element-wise ops
    else:
        per_element = 4 if layout == "tokens" else 5  # F.layer_norm + affine vs nn.GroupNorm
    c._add(2 * dim, norm=per_element * dim * tokens)


def _block(c: Complexity, channels: int, b: BlockSpec, h: int, w: int) -> tuple[int, int]:
    kind = ATTENTIONS[b.attention]
    layout = kind.layout
    ph, pw = b.patch_size
    if b.resize == "input" and (h % ph or w % pw):
        h, w = _ceil_div(h, ph) * ph, _ceil_div(w, pw) * pw
        c._add(0, other=4 * channels * h * w)
    _conv_bn(c, channels, channels, b.local_kernel, h, w,
             groups=channels if b.local_depthwise else 1)
    d = b.dim
    c._add(channels * d, conv=d * h * w * channels)  # 1x1 into the transformer
    gh, gw = h, w
    if b.resize == "features" and (h % ph or w % pw):
        gh, gw = _ceil_div(h, ph) * ph, _ceil_div(w, pw) * pw
        c._add(0, other=4 * d * gh * gw + 4 * d * h * w)  # up before unfolding, back after
    tokens = gh * gw  # P * N
    attn = kind.count_for(AttentionInput(dim=d, heads=b.heads, pixels=ph * pw,
                                         patches=tokens // (ph * pw)))
    for _ in range(b.depth):
        _norm(c, b.norm, layout, d, tokens)
        c._add(attn.params, **attn.macs)
        _norm(c, b.norm, layout, d, tokens)
        group = "linear" if layout == "tokens" else "conv"
        c._add(2 * d * b.ffn_dim + b.ffn_dim + d, **{group: 2 * tokens * d * b.ffn_dim})
    _norm(c, b.norm, layout, d, tokens)
    global_channels = d
    if b.project:
        _conv_bn(c, d, channels, 1, h, w)
        global_channels = channels
    if b.fusion:
        width = {"input": channels, "local": d, "global": global_channels}
        _conv_bn(c, sum(width[s] for s in b.fusion), channels, b.fusion_kernel, h, w)
    return h, w


def complexity(spec: ArchSpec, resolution: int | None = None) -> Complexity:
    """Parameters and MACs of ``spec`` for one square image (default: the spec's resolution).

    >>> from mobilevit import get_fixed_point
    >>> c = complexity(get_fixed_point("mobilevit_s").spec)
    >>> c.params, c.macs
    (5578632, 2033424384)
    """
    resolution = resolution or spec.resolution
    c = Complexity()
    h, w = _conv_bn(c, 3, spec.stem_channels, 3, resolution, resolution, stride=2)
    channels = spec.stem_channels
    for stage in spec.stages:
        for j in range(stage.num_mv2):
            hidden = make_divisible(int(round(channels * stage.mv2_expansion)), 8)
            if stage.mv2_expansion != 1:
                _conv_bn(c, channels, hidden, 1, h, w)
            h, w = _conv_bn(c, hidden, hidden, 3, h, w, stride=stage.stride if j == 0 else 1,
                            groups=hidden)
            _conv_bn(c, hidden, stage.out_channels, 1, h, w)
            channels = stage.out_channels
        if stage.block is not None:
            h, w = _block(c, channels, stage.block, h, w)
    if spec.head_channels:
        _conv_bn(c, channels, spec.head_channels, 1, h, w)
        channels = spec.head_channels
    c._add(0, other=channels * h * w)  # global average pool
    c._add(channels * spec.num_classes + spec.num_classes, linear=channels * spec.num_classes)
    return c
