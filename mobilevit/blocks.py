"""The MobileViT block, configured by a :class:`~mobilevit.spec.BlockSpec`.

x -> local (k x k conv + BN + SiLU, 1x1 conv C -> d) -> unfold -> L transformer layers -> norm
-> fold -> projection (1x1 d -> C + BN [+ SiLU]) -> fusion (concat of sources, conv + BN [+ SiLU])
-> [+ x]. v1, v2 and both v3 blocks are settings of this one module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mobilevit.attention import ATTENTIONS
from mobilevit.layers import ConvNormAct, FeedForward, fold_patches, make_norm, unfold_patches
from mobilevit.spec import BlockSpec


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: x + drop(attn(norm(x))), then x + ffn(norm(x))."""

    def __init__(self, dim: int, ffn_dim: int, *, attention: str, heads: int, norm: str,
                 dropout: float, attn_dropout: float, ffn_dropout: float) -> None:
        super().__init__()
        kind = ATTENTIONS[attention]
        layout = kind.layout
        self.norm1 = make_norm(norm, dim, layout)
        self.attn = kind.build(dim, heads=heads, attn_dropout=attn_dropout)
        self.drop = nn.Dropout(dropout)
        self.norm2 = make_norm(norm, dim, layout)
        self.ffn = FeedForward(dim, ffn_dim, layout, ffn_dropout=ffn_dropout, dropout=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.ffn(self.norm2(x))


def _resize_to_multiple(x: Tensor, patch_h: int, patch_w: int, *, align_corners: bool) -> Tensor:
    h, w = x.shape[-2:]
    new_h, new_w = -(-h // patch_h) * patch_h, -(-w // patch_w) * patch_w
    if (new_h, new_w) == (h, w):
        return x
    return F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=align_corners)


def _layout_of(x: Tensor) -> torch.memory_format:
    return (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous() else torch.contiguous_format)


class MobileViTBlock(nn.Module):
    """One MobileViT block of width ``channels`` (input and output) configured by ``spec``."""

    def __init__(self, channels: int, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        self.patch_h, self.patch_w = spec.patch_size
        self.layout = ATTENTIONS[spec.attention].layout
        groups = channels if spec.local_depthwise else 1
        self.conv_kxk = ConvNormAct(channels, channels, spec.local_kernel, groups=groups)
        # The 1x1 into the transformer has no norm, activation or bias in every reference.
        self.conv_1x1 = nn.Conv2d(channels, spec.dim, 1, bias=False)
        self.transformer = nn.Sequential(*[
            TransformerLayer(spec.dim, spec.ffn_dim, attention=spec.attention, heads=spec.heads,
                             norm=spec.norm, dropout=spec.dropout, attn_dropout=spec.attn_dropout,
                             ffn_dropout=spec.ffn_dropout)
            for _ in range(spec.depth)])
        self.norm = make_norm(spec.norm, spec.dim, self.layout)
        self.conv_proj = (ConvNormAct(spec.dim, channels, 1, act=spec.project_act)
                          if spec.project else None)
        self.conv_fusion = (ConvNormAct(spec.fusion_in_channels(channels), channels,
                                        spec.fusion_kernel, act=spec.fusion_act)
                            if spec.fusion else None)

    def forward(self, x: Tensor) -> Tensor:
        spec = self.spec
        if spec.resize == "input":  # v2: enlarge the block input and keep the enlarged size
            x = _resize_to_multiple(x, self.patch_h, self.patch_w, align_corners=True)
        local = self.conv_1x1(self.conv_kxk(x))  # [B, d, H, W]
        h, w = local.shape[-2:]
        g = local
        if spec.resize == "features":  # v1: enlarge the features, shrink back after folding
            g = _resize_to_multiple(g, self.patch_h, self.patch_w, align_corners=False)
        gh, gw = g.shape[-2:]
        g = unfold_patches(g, self.patch_h, self.patch_w)  # [B, d, P, N]
        if self.layout == "tokens":
            g = g.permute(0, 2, 3, 1)  # [B, P, N, d]
        g = self.norm(self.transformer(g))
        if self.layout == "tokens":
            g = g.permute(0, 3, 1, 2)  # [B, d, P, N]
        g = fold_patches(g, self.patch_h, self.patch_w, gh, gw)  # [B, d, H', W']
        # The fold returns a contiguous map; a channels-last input keeps its layout through the
        # block, so that every later conv and norm (and their backward passes) stays on the
        # channels-last kernels instead of switching layouts after the first block.
        g = g.contiguous(memory_format=_layout_of(x))
        if (gh, gw) != (h, w):
            g = F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False)
        if self.conv_proj is not None:
            g = self.conv_proj(g)  # [B, C, H, W]
        out = g
        if self.conv_fusion is not None:
            sources = {"input": x, "local": local, "global": g}
            out = self.conv_fusion(torch.cat([sources[s] for s in spec.fusion], dim=1))
        return out + x if spec.residual else out
