"""The MobileViT search space: a define-by-run map from an Optuna-like trial to an ArchSpec.

The space is flat: every trial suggests the same 35 parameters in the same order, which is what
Optuna's NSGA-II needs to evolve all of them (it samples parameters missing from some trials at
random). Parameters without effect in a configuration (heads under separable attention) are still
suggested; the spec canonicalises them, so such trials share a spec id and an evaluation.

Every fixed point of the model table is a point of the default space, and :meth:`params_for`
returns its parameters, so it can be enqueued by name (tested for all 19).

Widths are explicit per stage (multiples of 8; 16 for stage 1, as in v2). ``width_multiplier``
scales every width and transformer dim with the v2 rounding rules; it is fixed to 1.0 by default
because searching it together with free per-stage widths is redundant. A study that wants the v2
family's scaling fixes the widths to the v2 base (32, 64, 128, 256, 384, 512; dims 128, 192, 256)
and frees the multiplier.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from mobilevit import ArchSpec, SpecError, StageSpec, block, make_divisible
from mobilevit.attention import ATTENTIONS
from mobilevit.complexity import complexity
from mobilevit.spec import FUSION_FAMILIES


class SpaceError(ValueError):
    """A bad space override or a spec the space cannot express; one line naming the parameter."""


class TrialLike(Protocol):
    """What a space needs from a trial (optuna.Trial and optuna.trial.FixedTrial both fit)."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int: ...


@dataclass(frozen=True)
class Param:
    """One parameter: categorical ``choices`` or an integer range ``low..high`` by ``step``.

    ``kind`` is the type of its values: "name" (one of the listed names), "bool", or "int" /
    "float" (numbers; a study may list new ones within ``bounds``, low inclusive, high exclusive).
    ``monotone`` marks parameters whose larger values never make the network smaller, so the
    smallest network of a space takes their lowest value.
    """

    name: str
    kind: str
    choices: tuple[Any, ...] | None = None
    low: int | None = None
    high: int | None = None
    step: int = 1
    bounds: tuple[float, float] = (1, math.inf)
    monotone: bool = False
    help: str = ""

    @property
    def values(self) -> tuple[Any, ...]:
        """Every value the parameter can take."""
        if self.choices is not None:
            return self.choices
        return tuple(range(self.low, self.high + 1, self.step))  # type: ignore[arg-type]

    def suggest(self, trial: TrialLike) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        return trial.suggest_int(self.name, self.low, self.high, step=self.step)  # type: ignore[arg-type]

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one of this parameter's values."""
        return self._match(value) is not None

    def _match(self, value: Any) -> Any:
        if self.choices is None:
            ok = (_is_int(value) and self.low <= value <= self.high  # type: ignore[operator]
                  and (value - self.low) % self.step == 0)
            return value if ok else None
        for choice in self.choices:
            if self.kind in ("name", "bool"):
                if value is choice or (self.kind == "name" and value == choice):
                    return choice
            elif _is_number(value) and float(value) == float(choice):
                return choice
        return None

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(_fmt, self.choices))
        return f"an integer in [{self.low}, {self.high}] step {self.step}"

    def narrowed(self, override: Any) -> Param:
        """This parameter restricted by a study's override: a value (fix it), a list (these
        values) or, for integers, a mapping {low, high, step}."""
        where = f"space.{self.name}"
        if isinstance(override, Mapping):
            return self._ranged(dict(override), where)
        values = list(override) if isinstance(override, (list, tuple)) else [override]
        if not values:
            raise SpaceError(f"{where}=[]: give at least one value")
        kept = []
        for v in values:
            match = self._match(v)
            if match is None:
                if self.kind in ("name", "bool") or not self._allowed(v):
                    raise SpaceError(f"{where}={_fmt(v)}: {self._expected()}")
                match = int(v) if self.kind == "int" else float(v)
            if match in kept:
                listed = ", ".join(_fmt(x) for x in values)
                raise SpaceError(f"{where}=[{listed}]: a value is listed twice")
            kept.append(match)
        return replace(self, choices=tuple(kept), low=None, high=None, step=1)

    def _allowed(self, v: Any) -> bool:
        if self.kind == "int" and not _is_int(v):
            return False
        return _is_number(v) and self.bounds[0] <= v < self.bounds[1]

    def _expected(self) -> str:
        if self.kind in ("name", "bool"):
            return f"unknown; expected {self.describe()}"
        low, high = self.bounds
        kind = "an integer" if self.kind == "int" else "a number"
        return f"expected {kind} >= {_fmt(low)}" + (f" and < {_fmt(high)}" if high < math.inf else "")

    def _ranged(self, override: dict[str, Any], where: str) -> Param:
        if self.kind != "int":
            raise SpaceError(f"{where}={override}: a range needs an integer parameter; give a "
                             f"value or a list ({self.describe()})")
        unknown = sorted(set(override) - {"low", "high", "step"})
        if unknown:
            raise SpaceError(f"{where}.{unknown[0]}: unknown key; expected low, high, step")
        values = self.values
        low = override.get("low", min(values))
        high = override.get("high", max(values))
        step = override.get("step", self.step if self.choices is None else 1)
        for key, v in (("low", low), ("high", high), ("step", step)):
            if not _is_int(v) or v < 1:
                raise SpaceError(f"{where}.{key}={_fmt(v)}: expected a positive integer")
        if low > high:
            raise SpaceError(f"{where}: low={low} is above high={high}")
        if self.choices is not None:  # an integer categorical narrowed by a range
            kept = tuple(c for c in self.choices if low <= c <= high)
            if not kept:
                raise SpaceError(f"{where}={override}: keeps none of {self.describe()}")
            return replace(self, choices=kept)
        return replace(self, low=low, high=high - (high - low) % step, step=step)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


FAMILIES = tuple(FUSION_FAMILIES)  # v1, none, v2, v3_v1, v3_v2
MVIT_STAGES = (3, 4, 5)


def _default_params() -> tuple[Param, ...]:
    """The parameters with the attention kinds registered now (mobilevit.attention.ATTENTIONS), in
    registration order: "mhsa", "separable", then any added kinds."""
    p = [
        Param("block", "name", choices=FAMILIES,
              help="fusion design of every MobileViT block (mobilevit.spec.FUSION_FAMILIES)"),
        Param("local_conv", "name", choices=("full", "depthwise"), help="local representation conv"),
        Param("local_kernel", "int", choices=(3,), monotone=True, help="local conv kernel size n"),
        Param("attention", "name", choices=tuple(ATTENTIONS), help="attention kind"),
        Param("norm", "name", choices=("layer_norm", "group_norm"), help="transformer norm"),
        Param("width_multiplier", "float", choices=(1.0,), bounds=(0.125, 8.0),
              monotone=True, help="scales every width and dim with the v2 rounding rules"),
        Param("head_conv", "bool", choices=(True, False),
              help="1x1 expansion conv of width min(4 * C5, 960) before pooling (v1, v3-v1)"),
        Param("classifier_dropout", "float", choices=(0.0, 0.1), bounds=(0.0, 1.0),
              help="dropout before the classifier"),
        Param("dropout", "float", choices=(0.0, 0.05, 0.1), bounds=(0.0, 1.0), help="transformer dropout"),
        Param("stem.width", "int", low=16, high=64, step=8, monotone=True, help="stem width"),
        Param("s1.width", "int", low=16, high=128, step=16, monotone=True, help="stage 1 width"),
        Param("s1.mv2_expansion", "int", choices=(2, 3, 4), monotone=True, help="stage 1 MV2 expansion"),
        Param("s2.width", "int", low=24, high=256, step=8, monotone=True, help="stage 2 width"),
        Param("s2.depth", "int", low=1, high=4, monotone=True, help="stage 2 MV2 blocks"),
        Param("s2.mv2_expansion", "int", choices=(2, 3, 4), monotone=True, help="stage 2 MV2 expansion"),
    ]
    for i, (wmin, wmax) in zip(MVIT_STAGES, ((32, 512), (48, 768), (64, 1024)), strict=True):
        p += [
            Param(f"s{i}.width", "int", low=wmin, high=wmax, step=8, monotone=True,
                  help=f"stage {i} width C"),
            Param(f"s{i}.dim", "int", low=32, high=512, step=8, monotone=True,
                  help=f"stage {i} transformer dim d"),
            Param(f"s{i}.depth", "int", low=1, high=6, monotone=True,
                  help=f"stage {i} transformer layers"),
            Param(f"s{i}.ffn_ratio", "int", choices=(1, 2, 3, 4), monotone=True,
                  help=f"stage {i} FFN width / d"),
            Param(f"s{i}.heads", "int", choices=(1, 2, 4, 8), monotone=True,
                  help=f"stage {i} attention heads (kinds with heads, e.g. mhsa)"),
            Param(f"s{i}.patch", "int", choices=(2, 3, 4, 8), help=f"stage {i} square patch size"),
            Param(f"s{i}.mv2_expansion", "int", choices=(2, 3, 4), monotone=True,
                  help=f"stage {i} MV2 expansion"),
        ]
    return tuple(p)


# The default parameters as of import (the built-in attention kinds); a space reads the registry
# again when it is made, so it offers the kinds registered by then.
DEFAULT_PARAMS = _default_params()
_NO_SIZE_EFFECT = {"classifier_dropout", "dropout"}


class MobileViTSpace:
    """The MobileViT search space, optionally narrowed by a study's overrides.

    Args:
        overrides: parameter name -> a value (fix), a list (subset) or {low, high, step}.
        num_classes: classifier outputs of every sampled spec.
        resolution: design resolution of every sampled spec.

    Example:
        >>> from optuna.trial import FixedTrial
        >>> from mobilevit import get_fixed_point
        >>> space = MobileViTSpace()
        >>> params = space.params_for(get_fixed_point("mobilevit_s").spec)
        >>> space.sample(FixedTrial(params)) == get_fixed_point("mobilevit_s").spec
        True
    """

    name = "mobilevit"

    def __init__(self, overrides: Mapping[str, Any] | None = None, *, num_classes: int = 1000,
                 resolution: int = 256) -> None:
        params = {p.name: p for p in _default_params()}
        for key, value in (overrides or {}).items():
            if key not in params:
                raise SpaceError(f"space.{key}: unknown parameter; see `nas space` for the list")
            params[key] = params[key].narrowed(value)
        self.params = params
        self.num_classes = num_classes
        self.resolution = resolution

    def fixing(self, values: Mapping[str, Any]) -> MobileViTSpace:
        """This space with the parameters in ``values`` fixed to those values (each must be one
        of the parameter's values here): a part of the space, as a few-shot supernet splits it."""
        part = MobileViTSpace(num_classes=self.num_classes, resolution=self.resolution)
        part.params = dict(self.params)
        for name, value in values.items():
            if name not in self.params or not self.params[name].contains(value):
                raise SpaceError(f"space.{name}={_fmt(value)}: not a value of this space")
            part.params[name] = self.params[name].narrowed(value)
        return part

    # -- forward: parameters -> spec -----------------------------------------------------------

    def sample(self, trial: TrialLike) -> ArchSpec:
        """Suggest every parameter on ``trial`` and build the spec (SpecError if invalid)."""
        return self.build({name: p.suggest(trial) for name, p in self.params.items()})

    def build(self, values: Mapping[str, Any]) -> ArchSpec:
        """The spec for a full set of parameter values."""
        v = values
        alpha = float(v["width_multiplier"])

        def width(x: int, divisor: int = 8) -> int:
            return make_divisible(x * alpha, divisor) if alpha != 1.0 else x

        family = v["block"]
        resize = "input" if family in ("v2", "v3_v2") else "features"
        stages = [StageSpec(width(v["s1.width"], 16), num_mv2=1, stride=1,
                            mv2_expansion=v["s1.mv2_expansion"]),
                  StageSpec(width(v["s2.width"]), num_mv2=v["s2.depth"], stride=2,
                            mv2_expansion=v["s2.mv2_expansion"])]
        for i in MVIT_STAGES:
            dim = width(v[f"s{i}.dim"])
            b = block("v1", dim=dim, ffn_dim=dim * v[f"s{i}.ffn_ratio"], depth=v[f"s{i}.depth"],
                      **FUSION_FAMILIES[family], local_depthwise=v["local_conv"] == "depthwise",
                      local_kernel=v["local_kernel"], attention=v["attention"],
                      heads=v[f"s{i}.heads"], norm=v["norm"], resize=resize,
                      patch_size=(v[f"s{i}.patch"],) * 2, dropout=v["dropout"])
            stages.append(StageSpec(width(v[f"s{i}.width"]), num_mv2=1, stride=2,
                                    mv2_expansion=v[f"s{i}.mv2_expansion"], block=b))
        c5 = stages[-1].out_channels
        return ArchSpec(stem_channels=width(v["stem.width"]), stages=tuple(stages),
                        head_channels=min(4 * c5, 960) if v["head_conv"] else None,
                        classifier_dropout=v["classifier_dropout"],
                        num_classes=self.num_classes, resolution=self.resolution)

    # -- inverse: spec -> parameters -----------------------------------------------------------

    def params_for(self, spec: ArchSpec) -> dict[str, Any]:
        """Parameter values whose :meth:`build` is ``spec`` (with this space's classes and
        resolution), at width multiplier 1.

        Raises:
            SpaceError: the spec has a structure the space cannot express, or a value outside
                this space's (possibly narrowed) ranges; the message names the parameter.
        """
        if len(spec.stages) != 5 or [s.stride for s in spec.stages] != [1, 2, 2, 2, 2]:
            raise SpaceError("spec: the space has 5 stages with strides 1, 2, 2, 2, 2")
        s1, s2, *mvit = spec.stages
        if s1.num_mv2 != 1 or s1.block or s2.block or any(s.num_mv2 != 1 or s.block is None
                                                          for s in mvit):
            raise SpaceError("spec: the space has MV2-only stages 1-2 and one MV2 + one MobileViT "
                             "block in stages 3-5")
        blocks = [s.block for s in mvit]
        first = blocks[0]
        shared = ("family", "local_depthwise", "local_kernel", "attention", "norm", "dropout",
                  "resize", "attn_dropout", "ffn_dropout")
        for name in shared:
            if len({getattr(b, name) for b in blocks}) != 1:
                raise SpaceError(f"spec: block {name} differs between stages; the space uses one")
        if first.family == "custom":
            raise SpaceError("spec: the block fusion is not one of " + ", ".join(FAMILIES))
        expected_resize = "input" if first.family in ("v2", "v3_v2") else "features"
        if first.resize != expected_resize or first.attn_dropout or first.ffn_dropout:
            raise SpaceError("spec: resize / attention and FFN dropouts differ from the space's")
        v: dict[str, Any] = {
            "block": first.family,
            "local_conv": "depthwise" if first.local_depthwise else "full",
            "local_kernel": first.local_kernel,
            "attention": first.attention,
            "norm": first.norm,
            "width_multiplier": 1.0,
            "head_conv": spec.head_channels is not None,
            "classifier_dropout": spec.classifier_dropout,
            "dropout": first.dropout,
            "stem.width": spec.stem_channels,
            "s1.width": s1.out_channels, "s1.mv2_expansion": _as_int(s1.mv2_expansion),
            "s2.width": s2.out_channels, "s2.depth": s2.num_mv2,
            "s2.mv2_expansion": _as_int(s2.mv2_expansion),
        }
        for i, stage in zip(MVIT_STAGES, mvit, strict=True):
            b = stage.block
            assert b is not None
            if b.patch_size[0] != b.patch_size[1]:
                raise SpaceError(f"spec: stage {i} patch {list(b.patch_size)} is not square")
            v.update({f"s{i}.width": stage.out_channels, f"s{i}.dim": b.dim,
                      f"s{i}.depth": b.depth, f"s{i}.ffn_ratio": _as_int(b.ffn_dim / b.dim),
                      f"s{i}.heads": b.heads if ATTENTIONS[b.attention].uses_heads else
                      self.params[f"s{i}.heads"].values[0],
                      f"s{i}.patch": b.patch_size[0],
                      f"s{i}.mv2_expansion": _as_int(stage.mv2_expansion)})
        outside = self.outside(v)
        if outside:
            name, value = outside[0]
            raise SpaceError(f"space.{name}={_fmt(value)}: outside this space "
                             f"({self.params[name].describe()})")
        if self.build(v) != spec.replace(num_classes=self.num_classes,
                                         resolution=self.resolution):
            raise SpaceError("spec: not expressible in this space (the 1x1 expansion conv must be "
                             "min(4 * C5, 960) wide or absent)")
        return {k: self.params[k]._match(x) for k, x in v.items()}

    def outside(self, values: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """(name, value) pairs of ``values`` that this space does not contain."""
        return [(k, x) for k, x in values.items() if not self.params[k].contains(x)]

    # -- budgets ---------------------------------------------------------------------------------

    def smallest(self, resolution: int) -> dict[str, tuple[int, dict[str, Any]]]:
        """The smallest parameter count and the smallest MAC count of any network in the space,
        each with the parameters that reach it: {"params": (n, values), "macs": (n, values)}.

        Monotone parameters take their lowest value; the others (block design, attention, norm,
        patch sizes, ...) are enumerated, in one pass for both measures. The result is cached
        per (parameters, classes, resolutions): a study's checks and ``nas check`` share a pass.
        """
        key = (tuple(self.params.values()), self.num_classes, self.resolution, resolution)
        if key not in _SMALLEST:
            if len(_SMALLEST) >= 16:
                _SMALLEST.pop(next(iter(_SMALLEST)))
            _SMALLEST[key] = self._smallest(resolution)
        return {m: (size, dict(values)) for m, (size, values) in _SMALLEST[key].items()}

    def _smallest(self, resolution: int) -> dict[str, tuple[int, dict[str, Any]]]:
        fixed = {n: min(p.values) for n, p in self.params.items() if p.monotone}
        free = [n for n, p in self.params.items() if not p.monotone and n not in _NO_SIZE_EFFECT]
        rest = {n: self.params[n].values[0] for n in _NO_SIZE_EFFECT}
        best: dict[str, tuple[float, dict[str, Any]]] = {"params": (math.inf, {}),
                                                          "macs": (math.inf, {})}
        for combo in itertools.product(*(self.params[n].values for n in free)):
            values = {**fixed, **rest, **dict(zip(free, combo, strict=True))}
            try:
                spec = self.build(values)
            except SpecError:
                continue
            c = complexity(spec, resolution)
            for measure, size in (("params", c.params), ("macs", c.macs)):
                if size < best[measure][0]:
                    best[measure] = (size, values)
        if not best["params"][1]:
            raise SpaceError("space: no parameter combination gives a valid network")
        return {m: (int(size), values) for m, (size, values) in best.items()}


# MobileViTSpace.smallest's results by (parameters, classes, resolutions), the oldest dropped
_SMALLEST: dict[tuple[Any, ...], dict[str, tuple[int, dict[str, Any]]]] = {}


def _as_int(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x
