"""Attention kinds: one torch-free record per kind, in one registry.

An :class:`AttentionKind` is everything the framework knows about a kind of attention: its name (the
value of ``BlockSpec.attention``), the tensor layout it works in, whether it has heads, how it
appears in :meth:`ArchSpec.summary`, its parameters and MACs as a function of its input's size, and
where its ``nn.Module`` is. Specs, the analytic counter (:mod:`mobilevit.complexity`, the budget
gate's source), the builder and the search space all read this record, so adding a kind is one
:func:`register_attention` call and nothing else:

* the module: an ``nn.Module`` with the constructor ``(dim, *, heads, attn_dropout)`` whose
  ``forward`` maps a tensor of the kind's layout to the same shape (the built-in ones are in
  :mod:`mobilevit.attention_modules`);
* the record: ``AttentionKind(name, layout, uses_heads, count, module)`` with ``count`` following
  fvcore's conventions (see :mod:`mobilevit.complexity`), so that it equals fvcore on the module.

This module imports no torch: specs validate and count without it, and ``module`` may be given as
an import path that is resolved only when a network is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

LAYOUTS = ("tokens", "channels")
# The groups MACs are reported in, as nas.profile groups fvcore's operators: conv; linear (linear,
# addmm); attention (matmul, bmm, einsum, scaled_dot_product_attention); norm; other.
MAC_GROUPS = ("conv", "linear", "attention", "norm", "other")


@dataclass(frozen=True, slots=True)
class AttentionInput:
    """What one attention unit sees in one transformer layer, for one image.

    Attributes:
        dim: channels d.
        heads: heads (1 for kinds without heads).
        pixels: P, pixels per patch; attention mixes the patches separately for each of them.
        patches: N, patches per pixel position.
    """

    dim: int
    heads: int
    pixels: int
    patches: int

    @property
    def tokens(self) -> int:
        """P * N, the positions a per-position linear map acts on."""
        return self.pixels * self.patches


class AttentionCount(NamedTuple):
    """Parameters (biases included) and MACs by group (keys from :data:`MAC_GROUPS`)."""

    params: int
    macs: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class AttentionKind:
    """One kind of attention, registered under ``name`` with :func:`register_attention`.

    Attributes:
        name: the value of ``BlockSpec.attention`` (and of the search space's ``attention``).
        layout: ``"tokens"`` ([B, P, N, d]) or ``"channels"`` ([B, d, P, N]); the block's norms and
            FFN follow it (see :mod:`mobilevit.layers`).
        uses_heads: whether ``heads`` means anything; specs canonicalise it to 1 when it does not,
            and check that ``dim`` divides by it when it does.
        count: parameters and MACs of one attention unit for an :class:`AttentionInput`, counted
            as fvcore counts the module: convs and linears out * in per position, matmuls m*k*n,
            biases, element-wise ops, activations and softmax not counted.
        module: the ``nn.Module`` class (constructor ``(dim, *, heads, attn_dropout)``), or its
            import path ``"package.module:Class"``, imported when a network is built.
        label: the kind in :meth:`ArchSpec.summary`, a format string with ``{name}`` and
            ``{heads}``; by default the name, followed by the heads when the kind uses them
            (``mhsa4``, ``separable``).
    """

    name: str
    layout: str
    uses_heads: bool
    count: Callable[[AttentionInput], tuple[int, Mapping[str, int]]]
    module: type | str
    label: str | None = None

    def summary(self, heads: int) -> str:
        """The kind as :meth:`ArchSpec.summary` shows it."""
        label = self.label or ("{name}{heads}" if self.uses_heads else "{name}")
        return label.format(name=self.name, heads=heads)

    def module_class(self) -> Any:
        """The ``nn.Module`` class, imported on first use when given as a path."""
        if not isinstance(self.module, str):
            return self.module
        path, _, attr = self.module.partition(":")
        return getattr(importlib.import_module(path), attr)

    def build(self, dim: int, *, heads: int, attn_dropout: float) -> Any:
        """The attention module for width ``dim``."""
        return self.module_class()(dim, heads=heads, attn_dropout=attn_dropout)

    def count_for(self, x: AttentionInput) -> AttentionCount:
        """``count(x)`` as an :class:`AttentionCount`."""
        params, macs = self.count(x)
        return AttentionCount(params, macs)


# Every registered kind by name, in registration order (the built-in ones first), which is the
# order of the search space's choices.
ATTENTIONS: dict[str, AttentionKind] = {}


def register_attention(kind: AttentionKind) -> AttentionKind:
    """Add ``kind`` to :data:`ATTENTIONS`: specs, the builder, the counter and search spaces built
    from now on accept it. Checks the record (and its ``count`` on a small input); a name is
    registered once (``del ATTENTIONS[name]`` removes a kind, e.g. after a test)."""
    where = f"attention {kind.name!r}"
    if not isinstance(kind.name, str) or not kind.name:
        raise TypeError(f"{where}: name must be a non-empty string")
    if kind.name in ATTENTIONS:
        raise ValueError(f"{where}: already registered")
    if kind.layout not in LAYOUTS:
        raise TypeError(f"{where}: layout={kind.layout!r}; expected one of {', '.join(LAYOUTS)}")
    if not isinstance(kind.uses_heads, bool):
        raise TypeError(f"{where}: uses_heads={kind.uses_heads!r}; expected true or false")
    if isinstance(kind.module, str) and (":" not in kind.module or kind.module.startswith(":")):
        raise TypeError(f"{where}: module={kind.module!r}; expected a class or 'package.module:Class'")
    params, macs = kind.count_for(AttentionInput(dim=16, heads=2 if kind.uses_heads else 1,
                                                 pixels=4, patches=9))
    if isinstance(params, bool) or not isinstance(params, int) or params < 0 or not all(
            group in MAC_GROUPS and isinstance(n, int) and n >= 0 for group, n in macs.items()):
        raise TypeError(f"{where}: count must return (params, {{group: macs}}) with non-negative "
                        f"integers and groups from {', '.join(MAC_GROUPS)}; got {(params, macs)!r}")
    ATTENTIONS[kind.name] = kind
    return kind


def _mhsa_count(x: AttentionInput) -> AttentionCount:
    d, tokens = x.dim, x.tokens
    # fused qkv Linear d -> 3d and the output Linear d -> d; q k^T and attn v, each P * N^2 * d.
    return AttentionCount(3 * d * d + 3 * d + d * d + d,
                          {"linear": tokens * d * 3 * d + tokens * d * d,
                           "attention": 2 * x.pixels * x.patches * x.patches * d})


def _separable_count(x: AttentionInput) -> AttentionCount:
    d, tokens = x.dim, x.tokens
    # 1x1 convs d -> 1 + 2d and d -> d; the context vector and its gating are element-wise.
    return AttentionCount(d * (1 + 2 * d) + 1 + 2 * d + d * d + d,
                          {"conv": tokens * d * (1 + 2 * d) + tokens * d * d})


register_attention(AttentionKind(
    "mhsa", layout="tokens", uses_heads=True, count=_mhsa_count,
    module="mobilevit.attention_modules:MultiHeadSelfAttention"))
register_attention(AttentionKind(
    "separable", layout="channels", uses_heads=False, count=_separable_count,
    module="mobilevit.attention_modules:SeparableSelfAttention"))
