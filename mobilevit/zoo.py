"""The fixed points: every published MobileViT v1/v2/v3 design as a named spec, with the figures the
papers published for it.

Each entry is built by the same constructors a search space uses (:func:`v1_spec`, :func:`v2_spec`),
so the published models are points of the search space, not separate code.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from mobilevit.spec import ArchSpec, SpecError, StageSpec, block, v2_channels

V1_PAPER = "Mehta & Rastegari, MobileViT, ICLR 2022 (arXiv 2110.02178)"
V2_PAPER = ("Mehta & Rastegari, Separable Self-attention for Mobile Vision Transformers, TMLR 2023 "
            "(arXiv 2206.02680)")
V3_README = "Wadekar & Chaurasia, MobileViTv3 (arXiv 2209.15159), micronDLA/MobileViTv3 README"


@dataclass(frozen=True, slots=True)
class Published:
    """Figures a paper published for a model.

    Attributes:
        params_m: parameters in millions, as printed.
        macs_g: the paper's "FLOPs" in G; they are multiply-accumulates (MACs).
        macs_resolution: input size of ``macs_g`` (None when the source does not say).
        macs_counter: how the source counted (see docs/models.md).
        top1: ImageNet-1k top-1 (%) at 256x256.
        latency_ms: on-device CoreML latency, where published.
        latency_device: device of ``latency_ms``.
        source: where the figures come from.
    """

    params_m: float
    macs_g: float | None
    macs_resolution: int | None
    macs_counter: str
    top1: float
    latency_ms: float | None
    latency_device: str | None
    source: str


@dataclass(frozen=True, slots=True)
class FixedPoint:
    """A named published design: its spec, its paper family and its published figures."""

    name: str
    paper: str  # "v1" | "v2" | "v3"
    spec: ArchSpec
    published: Published


def v1_spec(widths: tuple[int, int, int, int, int, int], dims: tuple[int, int, int], *,
            expansion: float, dropout: float, family: str = "v1",
            depths: tuple[int, int, int] = (2, 4, 3), heads: int = 4,
            patch_sizes: tuple[int, int, int] = (2, 2, 2)) -> ArchSpec:
    """A MobileViT v1-style network (v1 or v3-on-v1 blocks).

    Args:
        widths: stem, layer1, layer2 and the three MobileViT stage widths.
        dims: transformer width d of each MobileViT stage (FFN = 2d).
        expansion: MV2 expansion ratio of every stage.
        dropout: transformer dropout.
        family: block design, ``"v1"`` or ``"v3_v1"``.
        depths: transformer layers per MobileViT stage.
        heads: attention heads in every block.
        patch_sizes: square patch size per MobileViT stage.

    The 1x1 expansion conv is min(4 * C5, 960) wide, with dropout 0.1 before the classifier.
    """
    stem, layer1, layer2, *mvit = widths
    stages = [StageSpec(layer1, num_mv2=1, stride=1, mv2_expansion=expansion),
              StageSpec(layer2, num_mv2=3, stride=2, mv2_expansion=expansion)]
    for channels, dim, depth, patch in zip(mvit, dims, depths, patch_sizes, strict=True):
        stages.append(StageSpec(channels, num_mv2=1, stride=2, mv2_expansion=expansion,
                                block=block(family, dim=dim, ffn_dim=2 * dim, depth=depth,
                                            heads=heads, patch_size=(patch, patch),
                                            dropout=dropout)))
    return ArchSpec(stem_channels=stem, stages=tuple(stages), head_channels=min(4 * mvit[-1], 960),
                    classifier_dropout=0.1)


def v2_spec(width_multiplier: float, *, family: str = "v2",
            depths: tuple[int, int, int] = (2, 4, 3)) -> ArchSpec:
    """A MobileViT v2-style network (v2 or v3-on-v2 blocks) at a width multiplier.

    Widths follow the cvnets rounding rules (:func:`mobilevit.spec.v2_channels`); MV2 expansion is
    2, there is no expansion conv and no classifier dropout.
    """
    ch = v2_channels(width_multiplier)
    stages = [StageSpec(ch.layer1, num_mv2=1, stride=1, mv2_expansion=2),
              StageSpec(ch.layer2, num_mv2=2, stride=2, mv2_expansion=2)]
    for channels, dim, ffn, depth in zip(ch.stages, ch.dims, ch.ffn_dims, depths, strict=True):
        stages.append(StageSpec(channels, num_mv2=1, stride=2, mv2_expansion=2,
                                block=block(family, dim=dim, ffn_dim=ffn, depth=depth)))
    return ArchSpec(stem_channels=ch.stem, stages=tuple(stages))


_V1_XXS = dict(widths=(16, 16, 24, 48, 64, 80), dims=(64, 80, 96), expansion=2, dropout=0.05)
_V1_XS = dict(widths=(16, 32, 48, 64, 80, 96), dims=(96, 120, 144), expansion=4, dropout=0.1)
_V1_S = dict(widths=(16, 32, 64, 96, 128, 160), dims=(144, 192, 240), expansion=4, dropout=0.1)
_V3_XXS = dict(_V1_XXS, widths=(16, 16, 24, 64, 80, 128), family="v3_v1")
_V3_XS = dict(_V1_XS, widths=(16, 32, 48, 96, 160, 160), family="v3_v1")
_V3_S = dict(_V1_S, widths=(16, 32, 64, 128, 256, 320), family="v3_v1")
_L2 = dict(depths=(2, 2, 3))

# All Apple figures except v1-XS match the cvnets profiler: conv + linear MACs, multi-head attention
# counted as 2*N*d^2*P, norms not counted (bench/macs_vs_published.py).
_CVNETS = "cvnets profiler, 256x256"


def _v1(params: float, macs: float, res: int | None, counter: str, top1: float, latency: float,
        source: str) -> Published:
    return Published(params, macs, res, counter, top1, latency, "iPhone 12", source)


def _v2(params: float, macs: float, top1: float, latency: float | None) -> Published:
    return Published(params, macs, 256, _CVNETS, top1, latency,
                     "iPhone 12" if latency is not None else None,
                     f"{V2_PAPER}, Tables 2 and 6")


def _v3(params: float, macs_m: float, top1: float) -> Published:
    return Published(params, macs_m / 1000, 256, _CVNETS, top1, None, None, V3_README)


_TABLE: tuple[FixedPoint, ...] = (
    FixedPoint("mobilevit_xxs", "v1", v1_spec(**_V1_XXS),
               _v1(1.3, 0.4, 256, _CVNETS, 69.0, 4.8,
                   f"{V1_PAPER} (top-1); {V2_PAPER} Table 2 (MACs, latency)")),
    FixedPoint("mobilevit_xs", "v1", v1_spec(**_V1_XS),
               _v1(2.3, 0.7, None, "resolution unstated; equals conv+linear MACs at 224x224",
                   74.8, 7.28, f"{V1_PAPER}, Tables 3 and 11")),
    FixedPoint("mobilevit_s", "v1", v1_spec(**_V1_S),
               _v1(5.6, 2.0, 256, _CVNETS, 78.4, 9.85,
                   f"{V1_PAPER}, Table 6 (latency); {V2_PAPER} Table 2 (MACs)")),
    FixedPoint("mobilevitv2_050", "v2", v2_spec(0.5), _v2(1.4, 0.5, 70.2, 1.6)),
    FixedPoint("mobilevitv2_075", "v2", v2_spec(0.75), _v2(2.9, 1.0, 75.6, None)),
    FixedPoint("mobilevitv2_100", "v2", v2_spec(1.0), _v2(4.9, 1.8, 78.1, 3.4)),
    FixedPoint("mobilevitv2_125", "v2", v2_spec(1.25), _v2(7.5, 2.8, 79.6, None)),
    FixedPoint("mobilevitv2_150", "v2", v2_spec(1.5), _v2(10.6, 4.0, 80.4, 5.1)),
    FixedPoint("mobilevitv2_175", "v2", v2_spec(1.75), _v2(14.3, 5.5, 80.8, None)),
    FixedPoint("mobilevitv2_200", "v2", v2_spec(2.0), _v2(18.5, 7.2, 81.2, 7.5)),
    FixedPoint("mobilevitv3_xxs", "v3", v1_spec(**_V3_XXS), _v3(1.2, 289, 70.98)),
    FixedPoint("mobilevitv3_xs", "v3", v1_spec(**_V3_XS), _v3(2.5, 927, 76.7)),
    FixedPoint("mobilevitv3_s", "v3", v1_spec(**_V3_S), _v3(5.8, 1841, 79.3)),
    FixedPoint("mobilevitv3_xxs_l2", "v3", v1_spec(**_V3_XXS, **_L2), _v3(1.1, 256, 70.23)),
    FixedPoint("mobilevitv3_xs_l2", "v3", v1_spec(**_V3_XS, **_L2), _v3(2.3, 853, 76.10)),
    FixedPoint("mobilevitv3_s_l2", "v3", v1_spec(**_V3_S, **_L2), _v3(5.2, 1651, 79.06)),
    FixedPoint("mobilevitv3_050", "v3", v2_spec(0.5, family="v3_v2"), _v3(1.4, 481, 72.33)),
    FixedPoint("mobilevitv3_075", "v3", v2_spec(0.75, family="v3_v2"), _v3(3.0, 1064, 76.55)),
    FixedPoint("mobilevitv3_100", "v3", v2_spec(1.0, family="v3_v2"), _v3(5.1, 1876, 78.64)),
)

FIXED_POINTS: dict[str, FixedPoint] = {fp.name: fp for fp in _TABLE}
_BY_ID: dict[str, str] = {fp.spec.spec_id: fp.name for fp in _TABLE}


def list_models() -> list[str]:
    """Names of the fixed points, in table order (v1, v2, v3).

    >>> list_models()[:3], len(list_models())
    (['mobilevit_xxs', 'mobilevit_xs', 'mobilevit_s'], 19)
    """
    return list(FIXED_POINTS)


def get_fixed_point(name: str) -> FixedPoint:
    """The table entry ``name``; unknown names raise :class:`SpecError` with suggestions.

    >>> get_fixed_point("mobilevitv3_s").published.top1
    79.3
    >>> get_fixed_point("mobilevit_ss")
    Traceback (most recent call last):
    ...
    mobilevit.spec.SpecError: model 'mobilevit_ss': ... did you mean mobilevit_s, mobilevit_xs, ...?
    """
    try:
        return FIXED_POINTS[name]
    except KeyError:
        raise SpecError(_unknown(name)) from None


def fixed_point_name(spec: ArchSpec) -> str | None:
    """The name of the fixed point equal to ``spec``, or None."""
    return _BY_ID.get(spec.spec_id)


def load_spec(path: str | PathLike[str]) -> ArchSpec:
    """Read a spec JSON file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file ({exc.strerror})") from None
    try:
        return ArchSpec.from_json(text)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def resolve_spec(model: str | PathLike[str] | ArchSpec) -> ArchSpec:
    """An ArchSpec from a fixed-point name, a spec JSON file path, or an ArchSpec itself."""
    if isinstance(model, ArchSpec):
        return model
    if isinstance(model, str) and model in FIXED_POINTS:
        return FIXED_POINTS[model].spec
    if os.path.exists(model):
        return load_spec(model)
    raise SpecError(_unknown(str(model)))


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, list(FIXED_POINTS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `nas zoo` for the names"
    return f"model {name!r}: neither a fixed-point name nor a spec JSON file{hint}"
