"""Building blocks shared by every MobileViT variant: conv-norm-act, MV2, patching, norms, FFN.

Transformer tensors use one of two layouts (:data:`mobilevit.attention.LAYOUTS`), chosen by the
attention kind (see :mod:`mobilevit.attention`):

* ``"tokens"``   [B, P, N, d]: v1 style; Linear layers and per-token LayerNorm act on the last axis.
* ``"channels"`` [B, d, P, N]: v2 style; 1x1 convs and GroupNorm act on axis 1, with no transposes.

P is the number of pixels in a patch and N the number of patches. Attention mixes the N patches
separately for each of the P pixel positions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mobilevit.spec import make_divisible


class ConvNormAct(nn.Sequential):
    """k x k conv (no bias) -> BatchNorm2d -> optional SiLU, the cvnets ``ConvLayer``.

    When the BatchNorm is in eval mode it is folded into the conv on every call (its running
    statistics scale the weight and give a bias): one pass over the activation instead of two.
    The parameters and the state dict are the same in both modes. A MAC counter that must see the
    BatchNorm as its own op (the papers count it) runs inside :func:`unfolded_batchnorm`.
    """

    fold_bn: bool = True

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, *, stride: int = 1,
                 groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        bn = self.bn
        # The norm's own mode decides: recalibration trains the BatchNorms of an eval network.
        if (bn.training or not self.fold_bn or bn.running_var is None
                or bn.running_mean is None):
            return self.act(bn(self.conv(x)))
        conv = self.conv
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # [C_out]
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)  # [C_out, C_in / groups, k, k]
        bias = bn.bias - bn.running_mean * scale  # [C_out]
        return self.act(F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation,
                                 conv.groups))


@contextmanager
def unfolded_batchnorm(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the ``with`` statement, ``model``'s conv-norm-act units run their BatchNorm as its
    own op in eval mode too (the network as specified, for fvcore's count); restored on exit."""
    units = [m for m in model.modules() if isinstance(m, ConvNormAct)]
    before = [m.__dict__.get("fold_bn") for m in units]
    for m in units:
        m.fold_bn = False
    try:
        yield model
    finally:
        for m, value in zip(units, before, strict=True):
            if value is None:
                del m.fold_bn
            else:
                m.fold_bn = value


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise (carries the stride) -> 1x1 project."""

    def __init__(self, in_chs: int, out_chs: int, *, stride: int, expansion: float) -> None:
        super().__init__()
        hidden = make_divisible(int(round(in_chs * expansion)), 8)
        self.expand = (ConvNormAct(in_chs, hidden, 1) if expansion != 1 else nn.Identity())
        self.dw = ConvNormAct(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = ConvNormAct(hidden, out_chs, 1, act=False)
        self.use_residual = stride == 1 and in_chs == out_chs

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.use_residual else y


def unfold_patches(x: Tensor, patch_h: int, patch_w: int) -> Tensor:
    """[B, C, H, W] -> [B, C, P, N], P = patch_h * patch_w, N = (H / patch_h) * (W / patch_w).

    Pixel (y, x) = (i_h * patch_h + p_h, i_w * patch_w + p_w) lands at p = p_h * patch_w + p_w,
    n = i_h * n_w + i_w, the ordering of cvnets and timm. No intermediate has rank > 5, so the same
    code converts to CoreML.
    """
    b, c, h, w = x.shape
    n_h, n_w = h // patch_h, w // patch_w
    x = x.reshape(b * c, n_h, patch_h, n_w, patch_w)  # [B*C, n_h, p_h, n_w, p_w]
    x = x.permute(0, 2, 4, 1, 3)  # [B*C, p_h, p_w, n_h, n_w]
    return x.reshape(b, c, patch_h * patch_w, n_h * n_w)  # [B, C, P, N]


def fold_patches(x: Tensor, patch_h: int, patch_w: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`unfold_patches`: [B, C, P, N] -> [B, C, H, W]."""
    b, c = x.shape[:2]
    n_h, n_w = h // patch_h, w // patch_w
    x = x.reshape(b * c, patch_h, patch_w, n_h, n_w)  # [B*C, p_h, p_w, n_h, n_w]
    x = x.permute(0, 3, 1, 4, 2)  # [B*C, n_h, p_h, n_w, p_w]
    return x.reshape(b, c, h, w)


def pointwise(in_chs: int, out_chs: int, layout: str, *, bias: bool = True) -> nn.Module:
    """A per-position linear map in the given layout (Linear for tokens, 1x1 conv for channels).

    Both have the same parameters (out x in weight, out bias), so the parameter count does not
    depend on the layout.
    """
    if layout == "tokens":
        return nn.Linear(in_chs, out_chs, bias=bias)
    return nn.Conv2d(in_chs, out_chs, 1, bias=bias)


class _AffineNorm(nn.Module):
    """A norm with a per-channel scale and shift, as LayerNorm and GroupNorm have."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps


class ChannelLayerNorm(_AffineNorm):
    """LayerNorm over the channel axis of a [B, d, P, N] tensor (per-token norm, channels layout)."""

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class TokenGroupNorm(_AffineNorm):
    """GroupNorm(1) of a [B, P, N, d] tensor: normalise each sample over P*N*d, affine per channel."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[1:], eps=self.eps) * self.weight + self.bias


def make_norm(kind: str, dim: int, layout: str) -> nn.Module:
    """The transformer norm ``kind`` ("layer_norm" | "group_norm") for tensors in ``layout``."""
    if kind == "layer_norm":
        return nn.LayerNorm(dim) if layout == "tokens" else ChannelLayerNorm(dim)
    return TokenGroupNorm(dim) if layout == "tokens" else nn.GroupNorm(1, dim)


class FeedForward(nn.Module):
    """fc1 -> SiLU -> dropout -> fc2 -> dropout, in either layout."""

    def __init__(self, dim: int, hidden: int, layout: str, *, ffn_dropout: float,
                 dropout: float) -> None:
        super().__init__()
        self.fc1 = pointwise(dim, hidden, layout)
        self.act = nn.SiLU()
        self.drop1 = nn.Dropout(ffn_dropout)
        self.fc2 = pointwise(hidden, dim, layout)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
