"""Published iPhone latencies of designs the search space can express: the default calibration.

Each row is a measured CoreML latency from a paper, with the network it measured rebuilt as a spec.
Sources disagree by more than architecture effects (conversion path, iOS and coremltools versions),
so each row names its source and the predictor fits one scale per source. Rows that are not
MobileViT-family classifiers at a square input (detectors, segmenters, other families), CPU-only
columns, and rows the reference flags as doubtful are not used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mobilevit import ArchSpec, get_fixed_point

V1_PAPER = "MobileViT v1 paper (arXiv 2110.02178), iPhone 12, Neural Engine"
V2_PAPER = "MobileViT v2 paper (arXiv 2206.02680), iPhone 12"


def with_patches(spec: ArchSpec, sizes: tuple[int, ...]) -> ArchSpec:
    """``spec`` with square patch ``sizes[i]`` in its i-th MobileViT stage."""
    stages = [i for i, s in enumerate(spec.stages) if s.block is not None]
    for stage, size in zip(stages, sizes, strict=True):
        spec = spec.with_block(stage, patch_size=(size, size))
    return spec


def _fixed(name: str, patches: tuple[int, ...] | None = None) -> Callable[[], ArchSpec]:
    def build() -> ArchSpec:
        spec = get_fixed_point(name).spec
        return with_patches(spec, patches) if patches else spec
    return build


@dataclass(frozen=True)
class PublishedRow:
    """One published latency: what was measured, at which input size, by whom, and where."""

    label: str
    build: Callable[[], ArchSpec]
    resolution: int
    source: str
    latency_ms: float | None  # None: withheld, only predicted
    citation: str

    @property
    def spec(self) -> ArchSpec:
        return self.build()


IPHONE12_ROWS: tuple[PublishedRow, ...] = (
    PublishedRow("MobileViT-XS", _fixed("mobilevit_xs"), 256, V1_PAPER, 7.28, "Table 3 / 11"),
    PublishedRow("MobileViT-S", _fixed("mobilevit_s"), 256, V1_PAPER, 9.85,
                 "Table 6, patches (2,2,2)"),
    PublishedRow("MobileViT-S (MHSA)", _fixed("mobilevit_s"), 256, V2_PAPER, 9.9, "Table 1"),
    PublishedRow("MobileViT-XXS", _fixed("mobilevit_xxs"), 256, V2_PAPER, 4.8, "Table 2"),
    PublishedRow("MobileViTv2-0.5", _fixed("mobilevitv2_050"), 256, V2_PAPER, 1.6, "Table 2"),
    PublishedRow("MobileViTv2-1.0", _fixed("mobilevitv2_100"), 256, V2_PAPER, 3.4,
                 "Tables 1 and 2"),
    PublishedRow("MobileViTv2-1.5", _fixed("mobilevitv2_150"), 256, V2_PAPER, 5.1, "Table 2"),
    PublishedRow("MobileViTv2-2.0", _fixed("mobilevitv2_200"), 256, V2_PAPER, 7.5, "Table 2"),
    PublishedRow("MobileViTv2-2.0 at 384", _fixed("mobilevitv2_200"), 384, V2_PAPER, 17.0,
                 "Table 2 (ImageNet-21k-P row)"),
)
"""The calibration rows. Left out: MobileViT-S at 3.4 ms in the v2 paper's Table 2 (it conflicts
with the same paper's Table 1, 9.9 ms, and the v1 paper's 9.85 ms)."""

WITHHELD_ROWS: tuple[PublishedRow, ...] = (
    PublishedRow("MobileViT-S, patches (8,4,2)", _fixed("mobilevit_s", (8, 4, 2)), 256, V1_PAPER,
                 None, "Table 6 (faster than (2,2,2), per the text)"),
    PublishedRow("MobileViT-S, patches (4,4,4)", _fixed("mobilevit_s", (4, 4, 4)), 256, V1_PAPER,
                 None, "Table 6"),
    PublishedRow("MobileViT-S, patches (3,3,3)", _fixed("mobilevit_s", (3, 3, 3)), 256, V1_PAPER,
                 None, "Table 6 (needs resizing; the slowest, per the text)"),
    PublishedRow("MobileViT-XS, patches (8,4,2)", _fixed("mobilevit_xs", (8, 4, 2)), 256,
                 V1_PAPER, None, "Tables 9/10 (faster than (2,2,2), per the text)"),
)
"""The patch-size variants whose published latencies are withheld to validate the predictor:
only what it predicts for them is reported."""
