"""The architecture spec: one frozen, hashable, JSON-round-trippable description of a MobileViT network.

Every part of the framework speaks this language: search spaces produce an :class:`ArchSpec`, the
builder (:func:`mobilevit.create_model`) consumes it, oracles cache their results by
:attr:`ArchSpec.spec_id`, and reports show it.

Specs hold *resolved* values (explicit channels, explicit FFN widths). Width multipliers and the
paper families are constructors of specs (:func:`v2_channels`, :func:`block`), so two descriptions of
the same network always have the same id. Fields that have no effect in a given configuration (the
fusion kernel when there is no fusion, heads for an attention kind without heads) are canonicalised
for the same reason.

Invalid specs raise :class:`SpecError` at construction with a one-line message that names the field.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from mobilevit.attention import ATTENTIONS

SCHEMA_VERSION = 1

NORMS = ("layer_norm", "group_norm")
FUSION_SOURCES = ("input", "local", "global")
RESIZE_MODES = ("features", "input")

# How each paper's block combines its local and global representations. "project" is the 1x1 conv
# d -> C after folding; "fusion" lists the tensors concatenated (in order) before the fusion conv.
FUSION_FAMILIES: dict[str, dict[str, Any]] = {
    # v1: concat [input, global], 3x3 fusion conv + BN + SiLU.
    "v1": dict(project=True, project_act=True, fusion=("input", "global"), fusion_kernel=3,
               fusion_act=True, residual=False),
    # the v1 paper's "no skip-connection" ablation: the conv_proj output is the block output.
    "none": dict(project=True, project_act=True, fusion=(), fusion_kernel=1, fusion_act=False,
                 residual=False),
    # v2: conv_proj with BN and no activation; no fusion, no skip.
    "v2": dict(project=True, project_act=False, fusion=(), fusion_kernel=1, fusion_act=False,
               residual=False),
    # v3 on v1: 1x1 fusion of [local (d ch), global (C ch)] + BN + SiLU, then add the input.
    "v3_v1": dict(project=True, project_act=True, fusion=("local", "global"), fusion_kernel=1,
                  fusion_act=True, residual=True),
    # v3 on v2: no separate projection; 1x1 conv of [global (d), local (d)] + BN, then add the input.
    "v3_v2": dict(project=False, project_act=False, fusion=("global", "local"), fusion_kernel=1,
                  fusion_act=False, residual=True),
}

# The rest of each paper's block design (local conv, attention, norm, resize behaviour).
PAPER_BLOCKS: dict[str, dict[str, Any]] = {
    "v1": dict(FUSION_FAMILIES["v1"], local_depthwise=False, attention="mhsa", norm="layer_norm",
               resize="features"),
    "v2": dict(FUSION_FAMILIES["v2"], local_depthwise=True, attention="separable", heads=1,
               norm="group_norm", resize="input"),
    "v3_v1": dict(FUSION_FAMILIES["v3_v1"], local_depthwise=True, attention="mhsa",
                  norm="layer_norm", resize="features"),
    "v3_v2": dict(FUSION_FAMILIES["v3_v2"], local_depthwise=True, attention="separable", heads=1,
                  norm="group_norm", resize="input"),
}


class SpecError(ValueError):
    """An invalid architecture spec. The message is one line and starts with the field path."""


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without dropping more than 10 %.

    This is the rounding rule of MobileNetV2, cvnets, timm and the MobileViT v2 width multiplier.

    >>> make_divisible(64 * 0.75, 16)
    48
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _check_int(path: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}={value!r}: expected an integer")
    if value < minimum:
        raise SpecError(f"{path}={value}: must be >= {minimum}")
    return value


def _check_float(path: str, value: Any, low: float, high: float, *, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{path}={value!r}: expected a number")
    value = float(value)
    if not math.isfinite(value) or value < low or value > high or (high_open and value == high):
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise SpecError(f"{path}={value}: must be in {bound}")
    return value


def _check_choice(path: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    if value not in choices:
        raise SpecError(f"{path}={value!r}: unknown; expected one of {', '.join(choices)}")
    return value


def _check_bool(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{path}={value!r}: expected true or false")
    return value


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """A MobileViT block: local representation, transformer over patches, projection and fusion.

    The paper designs are presets of these fields (see :func:`block`); each field can also be set on
    its own, which is how ablations change one thing at a time.

    Attributes:
        dim: transformer width d.
        ffn_dim: hidden width of the transformer's feed-forward network.
        depth: number of transformer layers L.
        attention: a kind registered in :data:`mobilevit.attention.ATTENTIONS`: ``"mhsa"`` (v1
            multi-head self-attention), ``"separable"`` (v2 linear-complexity self-attention), ...
        heads: attention heads (canonicalised to 1 for kinds without heads, such as
            ``separable``).
        patch_size: (h, w) patch size; maps that are not a multiple are resized (see ``resize``).
        local_kernel: kernel size n of the local representation conv.
        local_depthwise: depthwise (v2, v3) instead of full (v1) local conv.
        norm: ``"layer_norm"`` (per token, v1) or ``"group_norm"`` (GroupNorm(1), over the whole
            sample, v2).
        project: 1x1 conv d -> C (+ BN) after folding (absent only in the v3-on-v2 block).
        project_act: SiLU after the projection (v1, v3-v1) or not (v2).
        fusion: tensors concatenated for the fusion conv, in order, from ``input`` (block input),
            ``local`` (the local representation after its 1x1 conv, d channels) and ``global``
            (transformer output after the projection if any); empty means no fusion.
        fusion_kernel: kernel size of the fusion conv (3 in v1, 1 in v3).
        fusion_act: SiLU after the fusion conv's BN.
        residual: add the block input to the output (v3).
        resize: how a map that is not a multiple of the patch size is handled: ``"features"`` (v1:
            resize the local features up, bilinear with align_corners=False, and back after
            folding) or ``"input"`` (v2: resize the block input up, align_corners=True, and keep
            the enlarged size).
        dropout: dropout after the attention output and after the FFN output.
        attn_dropout: dropout on the attention weights / context scores.
        ffn_dropout: dropout after the FFN activation.
    """

    dim: int
    ffn_dim: int
    depth: int
    attention: str = "mhsa"
    heads: int = 4
    patch_size: tuple[int, int] = (2, 2)
    local_kernel: int = 3
    local_depthwise: bool = False
    norm: str = "layer_norm"
    project: bool = True
    project_act: bool = True
    fusion: tuple[str, ...] = ("input", "global")
    fusion_kernel: int = 3
    fusion_act: bool = True
    residual: bool = False
    resize: str = "features"
    dropout: float = 0.0
    attn_dropout: float = 0.0
    ffn_dropout: float = 0.0

    def __post_init__(self) -> None:
        self._validate("block")

    def _validate(self, path: str) -> None:
        _check_int(f"{path}.dim", self.dim)
        _check_int(f"{path}.ffn_dim", self.ffn_dim)
        _check_int(f"{path}.depth", self.depth)
        _check_choice(f"{path}.attention", self.attention, list(ATTENTIONS))
        _check_int(f"{path}.heads", self.heads)
        if not ATTENTIONS[self.attention].uses_heads:
            _set(self, "heads", 1)
        elif self.dim % self.heads:
            raise SpecError(f"{path}.heads={self.heads}: dim={self.dim} is not divisible by heads")
        patch = self.patch_size
        if not isinstance(patch, (tuple, list)) or len(patch) != 2:
            raise SpecError(f"{path}.patch_size={patch!r}: expected [h, w]")
        _set(self, "patch_size", (_check_int(f"{path}.patch_size[0]", patch[0]),
                                  _check_int(f"{path}.patch_size[1]", patch[1])))
        _check_int(f"{path}.local_kernel", self.local_kernel)
        if self.local_kernel % 2 == 0:
            raise SpecError(f"{path}.local_kernel={self.local_kernel}: must be odd")
        _check_bool(f"{path}.local_depthwise", self.local_depthwise)
        _check_choice(f"{path}.norm", self.norm, NORMS)
        _check_bool(f"{path}.project", self.project)
        _check_bool(f"{path}.project_act", self.project_act)
        if not self.project:
            _set(self, "project_act", False)
        fusion = self.fusion
        if isinstance(fusion, str) or not isinstance(fusion, (tuple, list)):
            raise SpecError(f"{path}.fusion={fusion!r}: expected a list of {', '.join(FUSION_SOURCES)}")
        for i, source in enumerate(fusion):
            _check_choice(f"{path}.fusion[{i}]", source, FUSION_SOURCES)
        if len(set(fusion)) != len(fusion):
            raise SpecError(f"{path}.fusion={list(fusion)}: a source is listed twice")
        _set(self, "fusion", tuple(fusion))
        _check_int(f"{path}.fusion_kernel", self.fusion_kernel)
        if self.fusion_kernel % 2 == 0:
            raise SpecError(f"{path}.fusion_kernel={self.fusion_kernel}: must be odd")
        _check_bool(f"{path}.fusion_act", self.fusion_act)
        if not self.fusion:
            if not self.project:
                raise SpecError(f"{path}.project=false: a block without fusion needs the projection "
                                "back to the stage width")
            _set(self, "fusion_kernel", 1)
            _set(self, "fusion_act", False)
        elif self.fusion == ("global",) and not self.project:
            raise SpecError(f"{path}.fusion=['global']: without a projection the fusion conv would "
                            "only project; set project=true and fusion=[]")
        _check_bool(f"{path}.residual", self.residual)
        _check_choice(f"{path}.resize", self.resize, RESIZE_MODES)
        for name in ("dropout", "attn_dropout", "ffn_dropout"):
            _set(self, name, _check_float(f"{path}.{name}", getattr(self, name), 0.0, 1.0,
                                          high_open=True))

    @property
    def family(self) -> str:
        """Name of the paper block whose fusion this block uses (a key of FUSION_FAMILIES), or
        ``"custom"``."""
        for name, fields in FUSION_FAMILIES.items():
            if all(getattr(self, k) == v for k, v in fields.items()):
                return name
        return "custom"

    def fusion_in_channels(self, channels: int) -> int:
        """Channels entering the fusion conv of a block whose stage width is ``channels``."""
        widths = {"input": channels, "local": self.dim,
                  "global": channels if self.project else self.dim}
        return sum(widths[s] for s in self.fusion)


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One resolution stage: ``num_mv2`` MobileNetV2 inverted residuals (the first one carries the
    stride), then an optional MobileViT block.

    Attributes:
        out_channels: stage width C.
        num_mv2: number of inverted residual (MV2) blocks.
        stride: stride of the first MV2 block (1 or 2).
        mv2_expansion: MV2 expansion ratio; hidden width = make_divisible(round(in * ratio), 8).
        block: the MobileViT block at the end of the stage, or None for a pure MV2 stage.
    """

    out_channels: int
    num_mv2: int = 1
    stride: int = 2
    mv2_expansion: float = 4.0
    block: BlockSpec | None = None

    def __post_init__(self) -> None:
        self._validate("stage")

    def _validate(self, path: str) -> None:
        _check_int(f"{path}.out_channels", self.out_channels)
        _check_int(f"{path}.num_mv2", self.num_mv2, minimum=0)
        _check_int(f"{path}.stride", self.stride)
        if self.stride not in (1, 2):
            raise SpecError(f"{path}.stride={self.stride}: must be 1 or 2")
        _set(self, "mv2_expansion", _check_float(f"{path}.mv2_expansion", self.mv2_expansion,
                                                 0.0, 64.0))
        if self.mv2_expansion <= 0:
            raise SpecError(f"{path}.mv2_expansion={self.mv2_expansion}: must be > 0")
        if self.block is not None and not isinstance(self.block, BlockSpec):
            raise SpecError(f"{path}.block={self.block!r}: expected a BlockSpec or null")
        if self.num_mv2 == 0:
            if self.stride != 1:
                raise SpecError(f"{path}.stride={self.stride}: a stage without MV2 blocks cannot "
                                "downsample")
            if self.block is None:
                raise SpecError(f"{path}.num_mv2=0: a stage needs MV2 blocks or a MobileViT block")


UNIT_KINDS = ("stem", "mv2", "block", "head")


@dataclass(frozen=True, slots=True)
class Unit:
    """One piece of a network as the builder makes it, with the map it receives.

    A network is a chain of units (:meth:`ArchSpec.units`): the stem, each MV2 block, each
    MobileViT block, and the head (optional 1x1 expansion conv, pool, classifier). Two units with
    equal fields are the same computation, which is what per-block caches key on.

    Attributes:
        kind: one of :data:`UNIT_KINDS`.
        in_channels: channels of the input map (3 for the stem's image).
        out_channels: output channels; for the head, the 1x1 expansion width or 0 for none.
        size: (H, W) of the input map.
        stride: the MV2 block's or the stem's stride.
        expansion: the MV2 expansion ratio.
        block: the MobileViT block's settings.
        num_classes: the head's classifier outputs.
    """

    kind: str
    in_channels: int
    out_channels: int
    size: tuple[int, int]
    stride: int = 1
    expansion: float = 1.0
    block: BlockSpec | None = None
    num_classes: int = 0

    def to_json(self) -> str:
        """Canonical JSON of every field (sorted keys), the identity of the computation."""
        return json.dumps(_to_plain(self), sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=16384)
def _spec_id(spec: ArchSpec) -> str:
    # Cached by value: equal specs have equal canonical JSON (floats and ints are normalised
    # when a spec is made), and a study's driver asks a network's id a dozen times per trial.
    return hashlib.sha256(spec.to_json().encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class ArchSpec:
    """A whole MobileViT-family network.

    stem (3x3 conv, stride 2) -> stages -> optional 1x1 expansion conv (``head_channels``) ->
    global average pool -> dropout -> linear classifier.

    Attributes:
        stem_channels: width of the stem conv.
        stages: the stages, in order.
        head_channels: width of the 1x1 expansion conv before pooling (v1 and v3-on-v1), or None.
        classifier_dropout: dropout before the classifier.
        num_classes: classifier outputs.
        resolution: the input resolution the network is designed for; patch sizes are checked
            against the feature maps at this size and it is the default for profiling and export.
            The built model runs at any resolution.

    Example:
        >>> from mobilevit import ArchSpec, StageSpec, block
        >>> spec = ArchSpec(stem_channels=16, stages=(
        ...     StageSpec(32, stride=1), StageSpec(64, num_mv2=2),
        ...     StageSpec(96, block=block("v2", dim=64, ffn_dim=128, depth=2))))
        >>> ArchSpec.from_json(spec.to_json()) == spec
        True
    """

    stem_channels: int
    stages: tuple[StageSpec, ...]
    head_channels: int | None = None
    classifier_dropout: float = 0.0
    num_classes: int = 1000
    resolution: int = 256

    def __post_init__(self) -> None:
        _check_int("stem_channels", self.stem_channels)
        stages = self.stages
        if isinstance(stages, (str, bytes)) or not isinstance(stages, (tuple, list)) or not stages:
            raise SpecError(f"stages={stages!r}: expected a non-empty list of stages")
        for i, stage in enumerate(stages):
            if not isinstance(stage, StageSpec):
                raise SpecError(f"stages[{i}]={stage!r}: expected a StageSpec")
        _set(self, "stages", tuple(stages))
        if self.head_channels is not None:
            _check_int("head_channels", self.head_channels)
        _set(self, "classifier_dropout", _check_float("classifier_dropout", self.classifier_dropout,
                                                      0.0, 1.0, high_open=True))
        _check_int("num_classes", self.num_classes)
        _check_int("resolution", self.resolution, minimum=8)
        channels = self.stem_channels
        seen_sizes = self.block_input_sizes(self.resolution)
        for i, (stage, (mh, mw)) in enumerate(zip(self.stages, seen_sizes, strict=True)):
            if stage.num_mv2 == 0 and stage.out_channels != channels:
                raise SpecError(f"stages[{i}].out_channels={stage.out_channels}: a stage without "
                                f"MV2 blocks keeps the previous width {channels}")
            channels = stage.out_channels
            if stage.block is not None:
                ph, pw = stage.block.patch_size
                if ph > mh or pw > mw:
                    raise SpecError(f"stages[{i}].block.patch_size={list(stage.block.patch_size)}:"
                                    f" larger than the {mh}x{mw} feature map at resolution "
                                    f"{self.resolution}")

    # -- geometry ---------------------------------------------------------------------------------

    def _walk(self, resolution: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Per stage: (map size seen by the block, stage output size) for a square input."""
        h = w = -(-resolution // 2)  # stem: 3x3, stride 2, padding 1 gives ceil(H / 2)
        sizes = []
        for stage in self.stages:
            if stage.stride == 2:
                h, w = -(-h // 2), -(-w // 2)
            seen = (h, w)
            if stage.block is not None and stage.block.resize == "input":
                ph, pw = stage.block.patch_size
                h, w = -(-h // ph) * ph, -(-w // pw) * pw
            sizes.append((seen, (h, w)))
        return sizes

    def units(self, resolution: int | None = None) -> tuple[Unit, ...]:
        """The network as a chain of :class:`Unit` for a square input (default: the spec's
        resolution), each with the map size it receives."""
        h = w = resolution or self.resolution
        units = [Unit("stem", 3, self.stem_channels, (h, w), stride=2)]
        h, w = -(-h // 2), -(-w // 2)
        channels = self.stem_channels
        for stage in self.stages:
            for j in range(stage.num_mv2):
                stride = stage.stride if j == 0 else 1
                units.append(Unit("mv2", channels, stage.out_channels, (h, w), stride=stride,
                                  expansion=stage.mv2_expansion))
                h, w = -(-h // stride), -(-w // stride)
                channels = stage.out_channels
            if stage.block is not None:
                units.append(Unit("block", channels, channels, (h, w), block=stage.block))
                if stage.block.resize == "input":
                    ph, pw = stage.block.patch_size
                    h, w = -(-h // ph) * ph, -(-w // pw) * pw
        units.append(Unit("head", channels, self.head_channels or 0, (h, w),
                          num_classes=self.num_classes))
        return tuple(units)

    def block_input_sizes(self, resolution: int) -> list[tuple[int, int]]:
        """Spatial (H, W) of the map each stage's block (or last MV2) receives."""
        return [seen for seen, _ in self._walk(resolution)]

    def stage_sizes(self, resolution: int) -> list[tuple[int, int]]:
        """Spatial (H, W) of each stage's output for a square input of ``resolution`` pixels.

        v2-style blocks (``resize="input"``) keep the enlarged size when a map is not a multiple of
        the patch size, so the sizes are not always ``ceil(resolution / stride)``.
        """
        return [out for _, out in self._walk(resolution)]

    @property
    def reductions(self) -> list[int]:
        """Output stride of each stage (stem included)."""
        out, r = [], 2
        for stage in self.stages:
            r *= stage.stride
            out.append(r)
        return out

    @property
    def out_channels(self) -> int:
        """Channels of the feature map fed to the classifier."""
        return self.head_channels or self.stages[-1].out_channels

    # -- serialisation ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (lists for tuples), the canonical form hashed by spec_id."""
        return {"schema_version": SCHEMA_VERSION, **_to_plain(self)}

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON: sorted keys; compact unless ``indent`` is given."""
        separators = (",", ":") if indent is None else None
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=separators)

    @property
    def spec_id(self) -> str:
        """Stable content id: the first 12 hex digits of the SHA-256 of the canonical JSON."""
        return _spec_id(self)

    @classmethod
    def from_dict(cls, data: Any) -> ArchSpec:
        """Build a spec from :meth:`to_dict` output, rejecting unknown fields by path."""
        if not isinstance(data, dict):
            raise SpecError(f"spec: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise SpecError(f"schema_version={version!r}: this version reads {SCHEMA_VERSION}")
        stages = data.get("stages")
        if isinstance(stages, list):
            parsed = []
            for i, stage in enumerate(stages):
                stage = _fields(StageSpec, stage, f"stages[{i}]")
                if stage.get("block") is not None:
                    block = _fields(BlockSpec, stage["block"], f"stages[{i}].block")
                    stage["block"] = _construct(BlockSpec, block, f"stages[{i}].block")
                parsed.append(_construct(StageSpec, stage, f"stages[{i}]"))
            data["stages"] = tuple(parsed)
        return _construct(cls, _fields(cls, data, "spec"), "spec")

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        """Parse :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"spec: not valid JSON ({exc.msg} at line {exc.lineno} column "
                            f"{exc.colno})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> ArchSpec:
        """A copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes)

    def with_block(self, stage: int, **changes: Any) -> ArchSpec:
        """A copy with fields of stage ``stage``'s block changed, e.g. ``with_block(2, heads=1)``."""
        st = self.stages[stage]
        if st.block is None:
            raise SpecError(f"stages[{stage}].block: this stage has no MobileViT block")
        new_block = dataclasses.replace(st.block, **changes)
        stages = list(self.stages)
        stages[stage] = dataclasses.replace(st, block=new_block)
        return self.replace(stages=tuple(stages))

    def with_blocks(self, **changes: Any) -> ArchSpec:
        """A copy with the same block fields changed in every stage that has a block."""
        stages = tuple(dataclasses.replace(s, block=dataclasses.replace(s.block, **changes))
                       if s.block is not None else s for s in self.stages)
        return self.replace(stages=stages)

    def summary(self) -> str:
        """A one-line human summary, e.g. for hover text and tables."""
        parts = [f"stem {self.stem_channels}"]
        for stage in self.stages:
            text = f"{stage.out_channels}"
            if stage.num_mv2 != 1:
                text += f"x{stage.num_mv2}"
            if stage.block is not None:
                b = stage.block
                attn = ATTENTIONS[b.attention].summary(b.heads)
                text += (f"[{b.family} d{b.dim} f{b.ffn_dim} L{b.depth} {attn} "
                         f"p{b.patch_size[0]}x{b.patch_size[1]}]")
            parts.append(text)
        if self.head_channels:
            parts.append(f"exp {self.head_channels}")
        return " | ".join(parts)


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_to_plain(v) for v in value]
    return value


def _fields(cls: type, data: Any, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected an object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise SpecError(f"{path}.{key}: unknown field; expected one of {', '.join(sorted(names))}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for name in required:
        if name not in data:
            raise SpecError(f"{path}.{name}: missing")
    return dict(data)


def _construct(cls: type, data: dict[str, Any], path: str) -> Any:
    try:
        return cls(**data)
    except SpecError as exc:
        # Blocks and stages validate under a generic prefix; put the real path in its place.
        msg = str(exc)
        prefix = {BlockSpec: "block", StageSpec: "stage"}.get(cls)
        if prefix and msg.startswith(prefix + "."):
            msg = path + msg[len(prefix):]
        raise SpecError(msg) from None


def block(family: str, *, dim: int, ffn_dim: int, depth: int, **overrides: Any) -> BlockSpec:
    """A paper's MobileViT block (``"v1"``, ``"v2"``, ``"v3_v1"``, ``"v3_v2"``) with overrides.

    >>> block("v3_v1", dim=144, ffn_dim=288, depth=2).family
    'v3_v1'
    """
    if family not in PAPER_BLOCKS:
        raise SpecError(f"block family {family!r}: unknown; expected one of "
                        f"{', '.join(PAPER_BLOCKS)}")
    return BlockSpec(dim=dim, ffn_dim=ffn_dim, depth=depth, **{**PAPER_BLOCKS[family], **overrides})


def with_fusion(spec_block: BlockSpec, family: str) -> BlockSpec:
    """``spec_block`` with the fusion design of ``family`` (a key of FUSION_FAMILIES)."""
    if family not in FUSION_FAMILIES:
        raise SpecError(f"fusion family {family!r}: unknown; expected one of "
                        f"{', '.join(FUSION_FAMILIES)}")
    return dataclasses.replace(spec_block, **FUSION_FAMILIES[family])


@dataclass(frozen=True, slots=True)
class V2Channels:
    """Channel widths of a MobileViT v2 network at width multiplier alpha (cvnets rounding)."""

    stem: int
    layer1: int
    layer2: int
    stages: tuple[int, int, int]
    dims: tuple[int, int, int]
    ffn_dims: tuple[int, int, int]


def v2_channels(alpha: float) -> V2Channels:
    """MobileViT v2 widths for multiplier ``alpha`` with the cvnets rounding rules.

    stem = make_divisible(clip(32a, 16, 64), 8, min 16); layer1 = make_divisible(64a, 16);
    layer2 = make_divisible(128a, 8); stage widths make_divisible({256, 384, 512}a, 8);
    d = make_divisible({128, 192, 256}a, 8); ffn = floor(2d / 16) * 16.

    >>> v2_channels(0.75).dims
    (96, 144, 192)
    """
    if not 0 < alpha <= 8:
        raise SpecError(f"width_multiplier={alpha}: must be in (0, 8]")
    stem = make_divisible(min(max(32 * alpha, 16), 64), 8, min_value=16)
    dims = tuple(make_divisible(c * alpha, 8) for c in (128, 192, 256))
    return V2Channels(
        stem=stem,
        layer1=make_divisible(64 * alpha, 16),
        layer2=make_divisible(128 * alpha, 8),
        stages=tuple(make_divisible(c * alpha, 8) for c in (256, 384, 512)),  # type: ignore[arg-type]
        dims=dims,  # type: ignore[arg-type]
        ffn_dims=tuple((2 * d) // 16 * 16 for d in dims),  # type: ignore[arg-type]
    )
