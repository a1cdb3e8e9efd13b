"""Where each weight of a candidate network lives in the supernet.

Every tensor of a network that the one builder makes for a spec (:func:`mobilevit.create_model`)
is a slice of one supernet tensor. This module says which one and which slice, for any spec; it
needs no torch, only the spec.

* The supernet tensor is named by the tensor's position in the network (``stem``,
  ``stages.2.1`` for stage 2's second MV2 block, ``stages.3.block`` for stage 3's MobileViT
  block, ``head``) and, for parts whose weights differ in shape or meaning between designs, by the
  design choice in brackets: ``stages.3.block[attention=mhsa].transformer.0.attn.qkv.weight``.
  Such parts (a *mixed op*) are the local conv (full or depthwise), each layer's attention and
  FFN (by attention kind), the norms (by attention kind and norm), the projection and fusion convs
  (by block design) and the classifier (with or without the 1x1 expansion conv).
* Each axis of a tensor is a sequence of *segments*; a candidate takes the first ``k`` entries of
  each segment (prefix slicing: first channels, rows, layers) or, on a conv's kernel axes, the
  centre ``k`` (a 3x3 kernel is the centre of the 5x5 one). A fused projection has one segment per
  part: the MHSA qkv rows are [q | k | v], the separable attention's [i | k | v], and the v1
  fusion conv's input channels [block input | global features], so that q, k and v each keep
  their own first rows when the width shrinks instead of sharing one prefix.

An attention kind registered later gets prefix slicing on every axis unless it registers the
segments of its fused tensors with :func:`register_fused_segments`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mobilevit.spec import ArchSpec, BlockSpec, Unit

PREFIX = "prefix"
CENTRE = "centre"


@dataclass(frozen=True, slots=True)
class Axis:
    """One axis of a candidate's tensor: its segment sizes, in order, and how each is taken from
    the supernet's (``prefix`` or ``centre``)."""

    segments: tuple[int, ...]
    mode: str = PREFIX

    @property
    def size(self) -> int:
        return sum(self.segments)


@dataclass(frozen=True, slots=True)
class TensorSlice:
    """A candidate's tensor as a slice of the supernet tensor ``key``."""

    key: str
    axes: tuple[Axis, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)


# attention kind -> {parameter name inside the attention module: segment sizes of its first axis
# as a function of the transformer dim d}
FusedSegments = dict[str, Callable[[int], tuple[int, ...]]]
FUSED_SEGMENTS: dict[str, FusedSegments] = {
    # one Linear d -> 3d laid out [q | k | v] (each [heads][head_dim]), as cvnets and timm
    "mhsa": {"qkv.weight": lambda d: (d, d, d), "qkv.bias": lambda d: (d, d, d)},
    # one 1x1 conv d -> 1 + 2d laid out [latent score | keys | values]
    "separable": {"qkv.weight": lambda d: (1, d, d), "qkv.bias": lambda d: (1, d, d)},
}


def register_fused_segments(kind: str, segments: FusedSegments) -> None:
    """Declare how the fused tensors of attention ``kind`` split along their first axis, so the
    supernet slices each part on its own (see the module docstring)."""
    FUSED_SEGMENTS[kind] = dict(segments)


def unit_positions(spec: ArchSpec) -> Iterator[tuple[Unit, str, str]]:
    """Each unit of ``spec`` with its module path in the built network and its position name in
    the supernet (they differ for a MobileViT block, whose index in its stage varies)."""
    units = spec.units()
    yield units[0], "stem", "stem"
    at = 1
    for i, stage in enumerate(spec.stages):
        for j in range(stage.num_mv2):
            yield units[at], f"stages.{i}.{j}", f"stages.{i}.{j}"
            at += 1
        if stage.block is not None:
            yield units[at], f"stages.{i}.{stage.num_mv2}", f"stages.{i}.block"
            at += 1
    yield units[at], "", "head"


def _tag(block: BlockSpec, key: str) -> str:
    """The design choice a MobileViT block tensor belongs to ('' when shared by all designs)."""
    part = key.split(".")[0]
    if part == "conv_kxk":
        return f"local={'depthwise' if block.local_depthwise else 'full'}"
    if part == "transformer":
        sub = key.split(".")[2]
        if sub in ("attn", "ffn"):
            return f"attention={block.attention}"
        return f"attention={block.attention},norm={block.norm}"
    if part == "norm":
        return f"attention={block.attention},norm={block.norm}"
    if part in ("conv_proj", "conv_fusion"):
        return f"design={block.family}"
    return ""


def _axes(shape: tuple[int, ...], first: tuple[int, ...] | None = None,
          second: tuple[int, ...] | None = None) -> tuple[Axis, ...]:
    axes = []
    for i, n in enumerate(shape):
        if i == 0 and first is not None:
            axes.append(Axis(first))
        elif i == 1 and second is not None:
            axes.append(Axis(second))
        elif len(shape) == 4 and i >= 2:
            axes.append(Axis((n,), CENTRE))
        else:
            axes.append(Axis((n,)))
    return tuple(axes)


def block_slice(block: BlockSpec, channels: int, position: str, key: str,
                shape: tuple[int, ...]) -> TensorSlice:
    """The supernet slice of tensor ``key`` (relative to the block) of a MobileViT block of width
    ``channels`` at ``position``."""
    tag = _tag(block, key)
    part, _, rest = key.partition(".")
    name = f"{position}.{part}[{tag}].{rest}" if tag else f"{position}.{key}"
    first = second = None
    if part == "transformer" and ".attn." in key:
        fused = FUSED_SEGMENTS.get(block.attention, {}).get(key.split(".attn.", 1)[1])
        if fused is not None:
            first = fused(block.dim)
    elif part == "conv_fusion" and key.endswith("conv.weight"):
        widths = {"input": channels, "local": block.dim,
                  "global": channels if block.project else block.dim}
        second = tuple(widths[s] for s in block.fusion)
    return TensorSlice(name, _axes(shape, first, second))


def head_slice(spec: ArchSpec, key: str, shape: tuple[int, ...]) -> TensorSlice:
    """The supernet slice of a head tensor (``head_conv.*`` or ``classifier.*``)."""
    if key.startswith("classifier."):
        tag = "expansion" if spec.head_channels else "no_expansion"
        return TensorSlice(f"head.classifier[{tag}].{key.split('.', 1)[1]}", _axes(shape))
    return TensorSlice(f"head.{key}", _axes(shape))


def unit_slice(unit: Unit, position: str, key: str, shape: tuple[int, ...]) -> TensorSlice:
    """The supernet slice of tensor ``key`` of a stem or MV2 unit at ``position``."""
    return TensorSlice(f"{position}.{key}", _axes(shape))
