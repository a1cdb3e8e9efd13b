"""A unit's ML program written down from its fields: latency features without converting it.

Converting a unit to CoreML (``torch.export``, then coremltools' ~95 passes) takes seconds, but
what comes out is fixed by the unit's fields: the builder's ops, after the converter has folded
each BatchNorm into its convolution, dropped the identity affines of freshly built norms and
merged back-to-back reshapes. This module writes that program down for each unit kind the builder
makes (stem, MV2, the MobileViT block with each registered attention kind that has a template,
head), op by op with every tensor shape, and counts it with the same
:func:`nas.latency.features.ops_features` that counts a converted program, in well under a
millisecond per unit.

A template is a claim about what a particular coremltools and torch produce, so it is trusted only
where it was checked: :data:`VERIFIED` lists the versions the tests compared it against (every op
of every block design, fixed point and random spec is the same); under other versions
:func:`nas.latency.blocks.unit_features` first converts a set of probe units and compares, once
per version pair, and converts everything if they differ. A unit whose attention kind has no
template is converted too (:data:`ATTENTION_TEMPLATES` is where a kind adds one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mobilevit.attention import ATTENTIONS
from mobilevit.spec import BlockSpec, Unit, make_divisible
from nas.latency.features import ProgramFeatures, ops_features

# coremltools and torch versions whose converted programs the templates were compared with.
VERIFIED = frozenset({("9.0", "2.13.0")})

Shape = tuple[int, ...]
# Names of an op's tensor inputs, in order (what ops_features reads: a matmul's "x", ...).
_TENSOR_NAMES = ("x", "y", "z")


@dataclass(frozen=True, slots=True)
class _Var:
    """A tensor of the program: its shape, and a value when it is a constant."""

    shape: Shape
    val: Any = None
    dtype: str = "fp32"


@dataclass(frozen=True, slots=True)
class _Op:
    """One operation as :func:`ops_features` reads it (type, named inputs, outputs)."""

    op_type: str
    inputs: dict[str, Any]
    outputs: tuple[_Var, ...]


@dataclass
class Program:
    """The ops of a unit's program, appended in order by the helpers below."""

    ops: list[_Op] = field(default_factory=list)

    def op(self, kind: str, *xs: Shape, out: Shape | list[Shape], **consts: Any) -> Shape:
        """Append an op reading tensors ``xs`` (and named constants) that makes ``out``; returns
        the (first) output's shape."""
        outs = out if isinstance(out, list) else [out]
        inputs: dict[str, Any] = {name: _Var(s) for name, s in
                                  zip(_TENSOR_NAMES[:len(xs)], xs, strict=True)}
        for name, value in consts.items():
            inputs[name] = value if isinstance(value, _Var) else _Var((), val=value)
        self.ops.append(_Op(kind, inputs, tuple(_Var(s) for s in outs)))
        return outs[0]

    def conv(self, x: Shape, cout: int, kernel: int, *, stride: int = 1, groups: int = 1,
             act: bool = False) -> Shape:
        """k x k conv with its BatchNorm folded in ([1, C, H, W] -> [1, cout, H / s, W / s]),
        then SiLU when ``act``."""
        _, cin, h, w = x
        out = (1, cout, -(-h // stride), -(-w // stride))
        weight = _Var((cout, cin // groups, kernel, kernel), val=True)
        y = self.op("conv", x, out=out, weight=weight, groups=groups)
        return self.op("silu", y, out=y) if act else y

    def linear(self, x: Shape, cout: int) -> Shape:
        """A linear map of the last axis (weight [cout, cin])."""
        return self.op("linear", x, out=(*x[:-1], cout), weight=_Var((cout, x[-1]), val=1))

    def resize(self, x: Shape, h: int, w: int) -> Shape:
        """Bilinear resize of [1, C, H, W] to (h, w); nothing when the size is already that."""
        if x[2:] == (h, w):
            return x
        return self.op("upsample_bilinear", x, out=(*x[:2], h, w))

    def features(self) -> ProgramFeatures:
        return ops_features(self.ops)


# --------------------------------------------------------------------------- norms


def _norm(p: Program, kind: str, layout: str, x: Shape, *, merge_reshape: Shape | None = None
          ) -> Shape:
    """A transformer norm of ``x`` in ``layout``, with the identity affine of a freshly built
    network elided (the converter drops a multiply by ones and an add of zeros).

    ``merge_reshape``: the shape the next op reshapes the output to; GroupNorm in the channels
    layout ends with a reshape, which the converter merges with that one.
    """
    if layout == "tokens":  # nn.LayerNorm, and GroupNorm(1) as F.layer_norm over [P, N, d]
        return p.op("layer_norm", x, out=x)
    if kind == "layer_norm":  # ChannelLayerNorm: mean and variance over axis 1 of [1, d, P, N]
        stat = (x[0], 1, *x[2:])
        mean = p.op("reduce_mean", x, out=stat)
        centred = p.op("sub", x, mean, out=x)
        p.op("pow", centred, out=x)
        var = p.op("reduce_mean", x, out=stat)
        p.op("add", var, out=stat)
        p.op("rsqrt", stat, out=stat)
        return p.op("mul", x, stat, out=x)
    # nn.GroupNorm(1): statistics over the whole sample, computed on a [1, 1, d, P, N] view.
    view = (1, 1, *x[1:])
    one = (1, 1, 1, 1, 1)
    p.op("reshape", x, out=view)
    mean = p.op("reduce_mean", view, out=one)
    p.op("sub", view, mean, out=view)
    p.op("square", view, out=view)
    p.op("reduce_mean", view, out=one)
    p.op("add", one, out=one)
    p.op("sqrt", one, out=one)
    p.op("real_div", view, one, out=view)
    return p.op("reshape", view, out=merge_reshape or x)


# --------------------------------------------------------------------------- attention kinds


def _mhsa(p: Program, x: Shape, spec: BlockSpec) -> Shape:
    """Multi-head self-attention of [1, P, N, d] (tokens layout)."""
    _, pixels, patches, d = x
    heads = spec.heads
    head_dim = d // heads
    qkv = p.linear(x, 3 * d)
    qkv = p.op("reshape", qkv, out=(pixels, patches, 3, heads, head_dim))
    qkv = p.op("transpose", qkv, out=(3, pixels, heads, patches, head_dim))
    part = (1, pixels, heads, patches, head_dim)
    p.op("split", qkv, out=[part, part, part])
    q = (pixels, heads, patches, head_dim)
    for _ in range(3):
        p.op("squeeze", part, out=q)
    p.op("mul", q, out=q)  # q / sqrt(head_dim)
    scores = p.op("matmul", q, q, out=(pixels, heads, patches, patches))  # q k^T
    p.op("softmax", scores, out=scores)
    out = p.op("matmul", scores, q, out=q)
    out = p.op("transpose", out, out=(pixels, patches, heads, head_dim))
    out = p.op("reshape", out, out=x)
    return p.linear(out, d)


def _separable(p: Program, x: Shape, spec: BlockSpec) -> Shape:
    """Separable self-attention of [1, d, P, N] (channels layout)."""
    _, d, pixels, patches = x
    qkv = p.conv(x, 1 + 2 * d, 1)
    scores = (1, 1, pixels, patches)
    p.op("split", qkv, out=[scores, x, x])
    p.op("softmax", scores, out=scores)
    p.op("mul", x, scores, out=x)
    context = p.op("reduce_sum", x, out=(1, d, pixels, 1))
    p.op("relu", x, out=x)
    p.op("mul", x, context, out=x)
    return p.conv(x, d, 1)


# Each attention kind's program, by name: (program, x, block spec) -> output shape. A kind with
# no entry is converted instead.
ATTENTION_TEMPLATES: dict[str, Callable[[Program, Shape, BlockSpec], Shape]] = {
    "mhsa": _mhsa,
    "separable": _separable,
}


# --------------------------------------------------------------------------- units


def _stem(p: Program, u: Unit) -> None:
    p.conv((1, 3, *u.size), u.out_channels, 3, stride=u.stride, act=True)


def _mv2(p: Program, u: Unit) -> None:
    x = (1, u.in_channels, *u.size)
    hidden = make_divisible(int(round(u.in_channels * u.expansion)), 8)
    y = p.conv(x, hidden, 1, act=True) if u.expansion != 1 else x
    y = p.conv(y, hidden, 3, stride=u.stride, groups=hidden, act=True)
    y = p.conv(y, u.out_channels, 1)
    if u.stride == 1 and u.in_channels == u.out_channels:
        p.op("add", x, y, out=y)


def _head(p: Program, u: Unit) -> None:
    x = (1, u.in_channels, *u.size)
    if u.out_channels:
        x = p.conv(x, u.out_channels, 1, act=True)
    pooled = p.op("reduce_mean", x, out=(1, x[1], 1, 1))
    flat = p.op("reshape", pooled, out=(1, x[1]))
    p.linear(flat, u.num_classes)


def _unfold(p: Program, x: Shape, ph: int, pw: int) -> Shape:
    """[1, d, H, W] -> [1, d, P, N] as mobilevit.layers.unfold_patches does it."""
    _, d, h, w = x
    nh, nw = h // ph, w // pw
    y = p.op("reshape", x, out=(d, nh, ph, nw, pw))
    y = p.op("transpose", y, out=(d, ph, pw, nh, nw))
    return p.op("reshape", y, out=(1, d, ph * pw, nh * nw))


def _fold(p: Program, x: Shape, d: int, ph: int, pw: int, h: int, w: int, *, reshaped: bool
          ) -> Shape:
    """[1, d, P, N] -> [1, d, H, W]; ``reshaped``: ``x`` is already [d, p_h, p_w, n_h, n_w],
    the first reshape having been merged into the op before it (see :func:`_norm`)."""
    nh, nw = h // ph, w // pw
    y = (d, ph, pw, nh, nw)
    if not reshaped:
        y = p.op("reshape", x, out=y)
    y = p.op("transpose", y, out=(d, nh, ph, nw, pw))
    return p.op("reshape", y, out=(1, d, h, w))


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _block(p: Program, u: Unit) -> None:
    spec = u.block
    assert spec is not None
    attention = ATTENTION_TEMPLATES[spec.attention]
    layout = ATTENTIONS[spec.attention].layout
    ph, pw = spec.patch_size
    c, d = u.in_channels, spec.dim
    x = (1, c, *u.size)
    if spec.resize == "input":
        x = p.resize(x, _round_up(x[2], ph), _round_up(x[3], pw))
    y = p.conv(x, c, spec.local_kernel, groups=c if spec.local_depthwise else 1, act=True)
    local = p.conv(y, d, 1)
    h, w = local[2:]
    g = local
    if spec.resize == "features":
        g = p.resize(g, _round_up(h, ph), _round_up(w, pw))
    gh, gw = g[2:]
    g = _unfold(p, g, ph, pw)  # [1, d, P, N]
    if layout == "tokens":
        g = p.op("transpose", g, out=(1, g[2], g[3], d))  # [1, P, N, d]
    for _ in range(spec.depth):
        a = _norm(p, spec.norm, layout, g)
        a = attention(p, a, spec)
        g = p.op("add", g, a, out=g)
        f = _norm(p, spec.norm, layout, g)
        if layout == "tokens":
            hidden = p.linear(f, spec.ffn_dim)
            f = p.linear(p.op("silu", hidden, out=hidden), d)
        else:
            f = p.conv(p.conv(f, spec.ffn_dim, 1, act=True), d, 1)
        g = p.op("add", g, f, out=g)
    merged = layout == "channels" and spec.norm == "group_norm"
    patches = (d, ph, pw, gh // ph, gw // pw)
    g = _norm(p, spec.norm, layout, g, merge_reshape=patches if merged else None)
    if layout == "tokens":
        g = p.op("transpose", g, out=(1, d, g[1], g[2]))  # [1, d, P, N]
    g = _fold(p, g, d, ph, pw, gh, gw, reshaped=merged)
    g = p.resize(g, h, w)
    if spec.project:
        g = p.conv(g, c, 1, act=spec.project_act)
    out = g
    if spec.fusion:
        sources = {"input": x[1], "local": d, "global": g[1]}
        cat = (1, sum(sources[s] for s in spec.fusion), h, w)
        p.op("concat", out=cat)  # its inputs are a list, which ops_features does not count
        out = p.conv(cat, c, spec.fusion_kernel, act=spec.fusion_act)
    if spec.residual:
        p.op("add", out, x, out=out)


_UNITS: dict[str, Callable[[Program, Unit], None]] = {
    "stem": _stem, "mv2": _mv2, "block": _block, "head": _head}


def has_template(unit: Unit) -> bool:
    """Whether :func:`template_features` can write ``unit``'s program down."""
    return unit.kind != "block" or (unit.block is not None
                                    and unit.block.attention in ATTENTION_TEMPLATES)


def template_program(unit: Unit) -> Program:
    """The ops of ``unit``'s converted program, written down from its fields."""
    p = Program()
    _UNITS[unit.kind](p, unit)
    return p


def template_features(unit: Unit) -> ProgramFeatures:
    """``unit``'s latency features, counted on :func:`template_program` (no conversion)."""
    return template_program(unit).features()


def probe_units() -> list[Unit]:
    """One unit of every design the templates write down (each block family with each
    attention kind and norm, resized maps, one patch per map, non-square patches, MV2 with and
    without expansion and residual, heads with and without a conv, the stem): what is compared
    with conversions before templates are trusted under unverified versions."""
    from mobilevit.spec import block

    units = [Unit("stem", 3, 16, (65, 65), stride=2),
             Unit("mv2", 24, 24, (16, 16), stride=1, expansion=1.0),
             Unit("mv2", 24, 24, (16, 16), stride=1, expansion=2.0),
             Unit("mv2", 24, 32, (15, 15), stride=2, expansion=3.0),
             Unit("head", 40, 0, (8, 8), num_classes=10),
             Unit("head", 40, 64, (1, 1), num_classes=10)]
    for family in ("v1", "v2", "v3_v1", "v3_v2"):
        for attention in ATTENTION_TEMPLATES:
            for norm in ("layer_norm", "group_norm"):
                heads = 2 if ATTENTIONS[attention].uses_heads else 1
                spec = block(family, dim=48, ffn_dim=96, depth=2, attention=attention,
                             heads=heads, norm=norm)
                units.append(Unit("block", 40, 40, (8, 8), block=spec))
                units.append(Unit("block", 40, 40, (7, 5), block=replace(spec, patch_size=(3, 2))))
                units.append(Unit("block", 40, 40, (4, 4), block=replace(spec, patch_size=(8, 8))))
    return units
