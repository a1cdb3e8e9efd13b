"""The built-in attention modules; their records (layout, heads, counting) are in
:mod:`mobilevit.attention`, which is where a kind is registered.

Each maps a tensor of its kind's layout (see :mod:`mobilevit.layers`) to the same shape and takes
the constructor ``(dim, *, heads, attn_dropout)``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mobilevit.layers import pointwise


class MultiHeadSelfAttention(nn.Module):
    """MobileViT v1 attention ("mhsa", tokens layout): softmax(q k^T / sqrt(d_h)) v per head over
    the N patches.

    One fused qkv Linear d -> 3d whose output is laid out [3][heads][head_dim], as in cvnets/timm.
    """

    def __init__(self, dim: int, *, heads: int, attn_dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.attn_dropout = attn_dropout
        self.qkv = pointwise(dim, 3 * dim, "tokens")
        self.proj = pointwise(dim, dim, "tokens")

    def forward(self, x: Tensor) -> Tensor:
        b, p, n, d = x.shape  # [B, P, N, d]
        qkv = self.qkv(x).reshape(b * p, n, 3, self.heads, d // self.heads)  # [BP, N, 3, h, dh]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [BP, h, N, dh]
        drop = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # [BP, h, N, dh]
        out = out.transpose(1, 2).reshape(b, p, n, d)  # [B, P, N, d]
        return self.proj(out)


class SeparableSelfAttention(nn.Module):
    """MobileViT v2 separable self-attention ("separable", channels layout, no heads: one latent
    token, v2 paper App. E), linear in the number of patches.

    A 1x1 conv d -> 1 + 2d gives a latent score i, keys k and values v; the context vector is the
    softmax(i)-weighted sum of k over the patches, which gates ReLU(v) before the output 1x1 conv.
    """

    def __init__(self, dim: int, *, heads: int, attn_dropout: float) -> None:
        super().__init__()
        self.dim = dim
        self.qkv = pointwise(dim, 1 + 2 * dim, "channels")
        self.attn_drop = nn.Dropout(attn_dropout)
        self.proj = pointwise(dim, dim, "channels")

    def forward(self, x: Tensor) -> Tensor:
        i, k, v = self.qkv(x).split([1, self.dim, self.dim], dim=1)  # [B,1,P,N], 2 x [B,d,P,N]
        scores = self.attn_drop(i.softmax(dim=-1))  # [B, 1, P, N], over the N patches
        context = (k * scores).sum(dim=-1, keepdim=True)  # [B, d, P, 1]
        return self.proj(F.relu(v) * context)  # [B, d, P, N]
