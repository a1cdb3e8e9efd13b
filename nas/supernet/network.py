"""The weight-sharing supernet: one set of tensors from which every candidate of a space is cut.

:class:`Supernet` holds, for each position and design choice of a (narrowed)
:class:`~search_spaces.MobileViTSpace`, the largest tensor any candidate needs there (see
:mod:`nas.supernet.layout` for the naming and slicing). It runs a candidate in two ways that give
the same output:

* ``supernet(x, spec)``: each unit of the candidate (stem, MV2 blocks, MobileViT blocks) is the
  module the one builder makes for it (:func:`mobilevit.model.build_unit`, kept on the meta device
  and cached by unit), called with slices of the supernet's tensors, so gradients reach the shared
  weights. No unit code is written twice, and an attention kind registered later works as is.
* :meth:`Supernet.extract`: the plain network ``mobilevit.create_model(spec)`` with the slices
  copied in, for evaluation, latency, export and everything downstream.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mobilevit import ArchSpec, SpecError, create_model
from mobilevit.layers import ConvNormAct
from mobilevit.model import MobileViT, build_unit, channels_last
from mobilevit.spec import Unit
from nas.errors import NasError
from nas.supernet.layout import CENTRE, Axis, TensorSlice, block_slice, head_slice, unit_positions, unit_slice
from search_spaces import MobileViTSpace, SpaceError

# The parameters whose values change which tensors a candidate uses (a mixed op), grouped as
# the tensors depend on them (see layout._tag): a norm's tensors exist per attention kind and norm.
DESIGN_GROUPS = (("block",), ("local_conv",), ("attention", "norm"), ("head_conv",))
_MODULE_CACHE = 256


class SupernetError(NasError):
    """A spec the supernet cannot run (outside its space); one line naming the parameter."""


@dataclass(frozen=True)
class _Entry:
    """One tensor of a candidate: its key in the unit module and its supernet slice."""

    key: str
    where: TensorSlice
    buffer: bool


# How a candidate tensor is cut from its supernet tensor: per axis, a narrow (start, length) or
# an index tensor (an axis of several segments).
_Cut = tuple[tuple[int, int | Tensor, int], ...]


def _index(candidate: Axis, full: Axis, key: str) -> slice | list[int]:
    """Indices of ``candidate`` along one axis of the supernet tensor laid out as ``full``."""
    if len(candidate.segments) != len(full.segments):
        raise SupernetError(f"{key}: {len(candidate.segments)} segments, the supernet has "
                            f"{len(full.segments)}")
    picks: list[range] = []
    offset = 0
    for size, room in zip(candidate.segments, full.segments, strict=True):
        if size > room:
            raise SupernetError(f"{key}: needs {size} along an axis where the supernet has {room}")
        start = offset + ((room - size) // 2 if candidate.mode == CENTRE else 0)
        picks.append(range(start, start + size))
        offset += room
    if len(picks) == 1:
        return slice(picks[0].start, picks[0].stop)
    return [i for r in picks for i in r]


def _init(module: nn.Module, name: str, tensor: Tensor, generator: torch.Generator) -> None:
    """Initialise a supernet tensor as :mod:`mobilevit.model` initialises the network (cvnets)."""
    with torch.no_grad():
        if name == "weight" and isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(tensor, mode="fan_out", generator=generator)
        elif name == "weight" and isinstance(module, nn.Linear):
            nn.init.trunc_normal_(tensor, std=0.02, generator=generator)
        elif name in ("weight", "running_var"):
            tensor.fill_(1.0)
        else:  # biases, running means, batch counters
            tensor.zero_()


class Supernet(nn.Module):
    """The supernet of ``space``: every candidate of the space is a slice of it.

    Args:
        space: the (narrowed) search space; its ``num_classes`` is the classifier's width.
        seed: seeds the initial weights (the global random state is left alone).
    """

    def __init__(self, space: MobileViTSpace, *, seed: int = 0) -> None:
        super().__init__()
        self.space = space
        self._modules_by_unit: OrderedDict[str, nn.Module] = OrderedDict()
        self._entries: dict[tuple[str, str], list[_Entry]] = {}
        full: dict[str, tuple[TensorSlice, bool, nn.Module, str]] = {}
        for spec in self.extremes():
            for entries, owners in self._walk(spec):
                for entry, (module, name) in zip(entries, owners, strict=True):
                    seen = full.get(entry.where.key)
                    axes = entry.where.axes
                    if seen is not None:
                        axes = tuple(Axis(tuple(max(a, b) for a, b in zip(x.segments, y.segments,
                                                                           strict=True)), x.mode)
                                     for x, y in zip(seen[0].axes, axes, strict=True))
                    full[entry.where.key] = (TensorSlice(entry.where.key, axes), entry.buffer,
                                             module, name)
        generator = torch.Generator().manual_seed(seed)
        self.layout = {key: where for key, (where, _, _, _) in sorted(full.items())}
        self.weights = nn.ParameterDict()
        self._homes: dict[str, tuple[bool, str]] = {}  # key -> (is a buffer, attribute name)
        for i, (key, (where, buffer, module, name)) in enumerate(sorted(full.items())):
            dtype = torch.long if name == "num_batches_tracked" else torch.float32
            tensor = torch.empty(where.shape, dtype=dtype)
            _init(module, name, tensor, generator)
            if buffer:
                self.register_buffer(f"stat{i}", tensor)
            else:
                self.weights[str(i)] = nn.Parameter(tensor)
            self._homes[key] = (buffer, f"stat{i}" if buffer else str(i))
        self._cuts: dict[TensorSlice, _Cut] = {}

    # -- the space's extremes ------------------------------------------------------------------

    def extremes(self) -> list[ArchSpec]:
        """Networks that together need the largest tensor of every position and design: every
        monotone parameter at its largest value, and each combination of values of each group of
        :data:`DESIGN_GROUPS` once (the other design parameters at their first value)."""
        params = self.space.params
        base = {n: max(p.values) if p.monotone else p.values[0] for n, p in params.items()}
        patches = [n for n in params if n.endswith(".patch")]
        specs: list[ArchSpec] = []
        for group in DESIGN_GROUPS:
            names = [n for n in group if n in params]
            for combo in itertools.product(*(params[n].values for n in names)):
                values = {**base, **dict(zip(names, combo, strict=True))}
                spec = self._valid(values, patches)
                if spec is not None and spec not in specs:
                    specs.append(spec)
        if not specs:
            raise SupernetError("space: no combination of its largest values is a valid network")
        return specs

    def _valid(self, values: dict[str, Any], patches: list[str]) -> ArchSpec | None:
        # Patch sizes have no weights; take the first combination the map sizes allow.
        params = self.space.params
        for patch in itertools.product(*(sorted(params[n].values) for n in patches)):
            try:
                return self.space.build({**values, **dict(zip(patches, patch, strict=True))})
            except SpecError:
                continue
        return None

    # -- per-candidate layout --------------------------------------------------------------------

    def _unit_module(self, unit: Unit) -> nn.Module:
        key = unit.to_json()
        module = self._modules_by_unit.get(key)
        if module is None:
            # Built by the one builder on the meta device: only its structure is kept, its
            # tensors come from the supernet. The random stream is restored after building, so a
            # training never depends on which units happened to be cached.
            with torch.random.fork_rng(devices=[]), torch.device("meta"):
                module = (build_unit(unit) if unit.kind != "head" else
                          ConvNormAct(unit.in_channels, unit.out_channels, 1))
            if len(self._modules_by_unit) >= _MODULE_CACHE:
                self._modules_by_unit.popitem(last=False)
            self._modules_by_unit[key] = module
        else:
            self._modules_by_unit.move_to_end(key)
        return module

    def _unit_entries(self, spec: ArchSpec, unit: Unit, position: str) -> list[_Entry]:
        """The slices of one unit's tensors (cached: a unit's layout depends only on it)."""
        cache_key = (unit.to_json(), position)
        entries = self._entries.get(cache_key)
        if entries is None:
            module = self._unit_module(unit)
            buffers = {k for k, _ in module.named_buffers()}
            entries = []
            for key, tensor in module.state_dict(keep_vars=True).items():
                shape = tuple(tensor.shape)
                if unit.kind == "block":
                    assert unit.block is not None
                    where = block_slice(unit.block, unit.in_channels, position, key, shape)
                elif unit.kind == "head":
                    where = head_slice(spec, f"head_conv.{key}", shape)
                else:
                    where = unit_slice(unit, position, key, shape)
                entries.append(_Entry(key, where, key in buffers))
            self._entries[cache_key] = entries
        return entries

    def _steps(self, spec: ArchSpec) -> Iterator[tuple[Unit, str, list[_Entry]]]:
        """The candidate's units in order, each with its module path in the built network and
        its tensors' slices; the head's expansion conv (when the spec has one) is a unit, the
        classifier is the last step (path ``classifier``)."""
        for unit, path, position in unit_positions(spec):
            if unit.kind == "head":
                if unit.out_channels:
                    yield unit, "head_conv", self._unit_entries(spec, unit, position)
                break
            yield unit, path, self._unit_entries(spec, unit, position)
        classes, features = spec.num_classes, spec.out_channels
        yield unit, "classifier", [
            _Entry("weight", head_slice(spec, "classifier.weight", (classes, features)), False),
            _Entry("bias", head_slice(spec, "classifier.bias", (classes,)), False)]

    def _walk(self, spec: ArchSpec) -> Iterator[tuple[list[_Entry], list[tuple[nn.Module, str]]]]:
        """Per step of :meth:`_steps`: the slices and, for each, the module and name owning it
        (what the supernet's initialisation needs to know)."""
        linear = nn.Linear(1, 1, device="meta")
        for unit, path, entries in self._steps(spec):
            if path == "classifier":
                yield entries, [(linear, "weight"), (linear, "bias")]
                continue
            module = self._unit_module(unit)
            owners = []
            for e in entries:
                owner, _, name = e.key.rpartition(".")
                owners.append((module.get_submodule(owner) if owner else module, name))
            yield entries, owners

    def check(self, spec: ArchSpec) -> None:
        """Raise :class:`SupernetError` naming the parameter when ``spec`` is not a candidate of
        this supernet's space (another classifier width, or a value outside its ranges)."""
        if spec.num_classes != self.space.num_classes:
            raise SupernetError(f"spec {spec.spec_id}: num_classes={spec.num_classes}; the "
                                f"supernet classifies {self.space.num_classes} classes")
        try:
            self.space.params_for(spec)
        except SpaceError as exc:
            raise SupernetError(f"spec {spec.spec_id}: {exc}") from None

    def _cut(self, where: TensorSlice) -> _Cut:
        cut = self._cuts.get(where)
        if cut is None:
            full = self.layout.get(where.key)
            if full is None:
                raise SupernetError(f"{where.key}: the supernet has no such tensor (a design "
                                    "outside its space)")
            ops: list[tuple[int, int | Tensor, int]] = []
            for dim, (axis, room) in enumerate(zip(where.axes, full.axes, strict=True)):
                index = _index(axis, room, where.key)
                if isinstance(index, list):
                    ops.append((dim, torch.tensor(index), 0))
                elif (index.start, index.stop) != (0, room.size):
                    ops.append((dim, index.start, index.stop - index.start))
            cut = self._cuts[where] = tuple(ops)
        return cut

    def _take(self, where: TensorSlice) -> Tensor:
        """The candidate's tensor: a view of the supernet tensor (a copy when an axis has
        several segments), through which gradients reach the supernet."""
        cut = self._cut(where)
        buffer, name = self._homes[where.key]
        tensor = self._buffers[name] if buffer else self.weights[name]
        for dim, start, length in cut:
            if isinstance(start, Tensor):
                tensor = tensor.index_select(dim, start.to(tensor.device))
            else:
                tensor = tensor.narrow(dim, start, length)
        # A strided weight sends conv and norm kernels down slow paths (several times slower on
        # the CPU); the copy costs little next to the activations and gradients still flow.
        return tensor.contiguous()

    # -- running a candidate -----------------------------------------------------------------------

    def forward(self, x: Tensor, spec: ArchSpec) -> Tensor:
        """Logits of candidate ``spec`` for images ``x`` [B, 3, H, W], computed with the shared
        weights (equal to ``self.extract(spec)(x)`` in the same mode)."""
        x = channels_last(x)  # as MobileViT.forward: the same kernels, so the same output
        for unit, path, entries in self._steps(spec):
            tensors = {e.key: self._take(e.where) for e in entries}
            if path == "classifier":
                # MobileViT.forward_head: pool, dropout, classifier.
                x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # [B, C]
                x = F.dropout(x, spec.classifier_dropout, self.training)
                return F.linear(x, tensors["weight"], tensors["bias"])
            module = self._unit_module(unit).train(self.training)
            x = functional_call(module, tensors, (x,))
        raise AssertionError("a network ends with its classifier")

    @torch.no_grad()
    def extract(self, spec: ArchSpec) -> MobileViT:
        """The candidate as the plain network the builder makes for ``spec``, with its slice of
        the supernet's weights and running statistics copied in."""
        self.check(spec)
        with torch.random.fork_rng(devices=[]):
            net = create_model(spec)
        state = {f"{path}.{e.key}": self._take(e.where).clone()
                 for _, path, entries in self._steps(spec) for e in entries}
        net.load_state_dict(state)
        return net.train(self.training)

    @classmethod
    def load(cls, weights: str | Path, space: MobileViTSpace, seed: int = 0) -> Supernet:
        """A stored supernet over ``space`` (its ``supernet.pt``), loaded on the CPU."""
        net = cls(space, seed=seed)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return net

    @torch.no_grad()
    def inherit(self, parent: Supernet) -> None:
        """Start from ``parent``'s weights and statistics: every tensor of this supernet is cut
        from the parent's tensor of the same name (a sub-supernet of a few-shot split starts from
        the shared supernet; its space must be part of the parent's)."""
        for key, where in self.layout.items():
            buffer, name = self._homes[key]
            mine = self._buffers[name] if buffer else self.weights[name]
            mine.copy_(parent._take(where))

    def tensor_count(self) -> int:
        """Number of values the supernet holds (parameters and running statistics)."""
        return sum(t.numel() for t in self.state_dict().values())
