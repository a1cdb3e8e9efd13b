"""Parameter and MAC counts of a spec, with fvcore.

fvcore counts one fused multiply-add as one "flop", i.e. it counts MACs, the unit the MobileViT
papers call FLOPs. Its default handles cover conv, linear, matmul and norms; they do not cover
``aten::scaled_dot_product_attention``, which our multi-head attention uses, so we add a handle that
counts both attention matmuls (q k^T and attn v). Element-wise ops (activations, softmax, the
products of separable attention, residual adds) are not counted, like in the published v2 figures.
See docs/models.md for how this count relates to each published number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch

from mobilevit import ArchSpec, MobileViT, num_params
from mobilevit.layers import unfolded_batchnorm
from nas.runtime import quiet

# fvcore's operator keys grouped as the breakdown reports them.
_GROUPS = {"conv": "conv", "linear": "linear", "addmm": "linear", "matmul": "attention",
           "bmm": "attention", "einsum": "attention", "scaled_dot_product_attention": "attention",
           "batch_norm": "norm", "layer_norm": "norm", "group_norm": "norm",
           "instance_norm": "norm"}


@dataclass(frozen=True)
class Profile:
    """Size and work of a network at one input resolution.

    Attributes:
        params: number of parameters.
        macs: multiply-accumulates for one image (fvcore's "flops").
        resolution: square input size of the count.
        macs_by_group: ``macs`` split into conv, linear, attention (the two attention matmuls),
            norm and other (pooling, resizing).
    """

    params: int
    macs: int
    resolution: int
    macs_by_group: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "macs": self.macs, "resolution": self.resolution,
                "macs_by_group": dict(self.macs_by_group)}


def _sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    # q: [..., N, dh], k: [..., M, dh], v: [..., M, dv] -> q k^T is N*M*dh MACs, attn v N*M*dv.
    batch = prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def count_macs(model: torch.nn.Module, inputs: torch.Tensor) -> tuple[int, dict[str, int]]:
    """MACs of ``model`` (in eval mode) on ``inputs``, and their split into conv, linear,
    attention, norm and other."""
    was_training = model.training
    model.eval()
    try:
        # fvcore warns about every op it skips (activations, softmax, adds) and about its own
        # use of torch.jit; neither changes the count.
        with torch.no_grad(), quiet(("fvcore",)), unfolded_batchnorm(model):  # restored after
            from fvcore.nn import FlopCountAnalysis

            analysis = (FlopCountAnalysis(model, inputs)
                        .set_op_handle("aten::scaled_dot_product_attention", _sdpa_macs)
                        .unsupported_ops_warnings(False)
                        .uncalled_modules_warnings(False)
                        .tracer_warnings("none"))
            total = int(analysis.total())
            groups: dict[str, int] = {}
            for op, count in analysis.by_operator().items():
                key = _GROUPS.get(op, "other")
                groups[key] = groups.get(key, 0) + int(count)
    finally:
        model.train(was_training)
    return total, groups


def profile(spec: ArchSpec, resolution: int | None = None) -> Profile:
    """Parameters and MACs of ``spec`` at ``resolution`` (default: the spec's own).

    >>> from mobilevit import get_fixed_point
    >>> p = profile(get_fixed_point("mobilevitv2_050").spec)
    >>> p.params, round(p.macs / 1e9, 2)
    (1370593, 0.48)
    """
    resolution = resolution or spec.resolution
    model = MobileViT(spec)
    macs, groups = count_macs(model, torch.zeros(1, 3, resolution, resolution))
    return Profile(params=num_params(model), macs=macs, resolution=resolution,
                   macs_by_group=groups)
