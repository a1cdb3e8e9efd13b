"""Study files: the YAML schema, validated once on load into frozen, typed objects.

Every error names the file, the field path and the bad value in one line, e.g.
``studies/x.yaml: budget.max_params=-5: must be greater than 0``.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nas.errors import NasError

METRICS = {"accuracy": "maximize", "latency_ms": "minimize", "params": "minimize",
           "macs": "minimize"}


class StudyError(NasError):
    """A study file that cannot be used, described in one line."""


# Seeds go to numpy, torch and Python generators; numpy takes 0 .. 2**32 - 1.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]

# 5e6 in YAML is a string (YAML 1.1 floats need a dot); an integer field reads it as a number.
_EXPONENT = re.compile(r"[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+")


def _number_kinds(annotation: Any) -> set[type]:
    """Which of int and float a field's annotation accepts (through unions and Optional)."""
    if annotation in (int, float):
        return {annotation}
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_number_kinds(a) for a in typing.get_args(annotation)))
    return set()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def summary(self) -> str:
        """One line for ``nas check``: the kind and its settings (a kind may say it better)."""
        fields = self.model_dump(exclude={"kind"})
        settings = ", ".join(f"{k} {v}" for k, v in fields.items() if v not in (None, {}, []))
        kind = getattr(self, "kind", type(self).__name__)
        return f"{kind}: {settings}" if settings else str(kind)

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data: Any) -> Any:
        # pydantic reads true/false as 1/0 in a number field: in a study file that is a mistake.
        # (A model validator, not a field one: pydantic allows none on the `kind` discriminators.)
        if not isinstance(data, dict):
            return data
        out = data
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            kinds = _number_kinds(field.annotation) if field is not None else set()
            if kinds and isinstance(value, bool):
                raise PydanticCustomError(
                    "bool_number", "expected {expected}, not true/false",
                    {"field": name, "expected": "an integer" if kinds == {int} else "a number"})
            if int in kinds and isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
                out = {**out, name: float(value)}  # then checked as an integer (5e6, not 5.5e0)
        return out


# The base of every study section: unknown fields are errors, values are frozen. A new kind of
# evaluator or latency oracle subclasses it (see Kinds).
Section = _Model


class Budget(_Model):
    """Hard limits checked before a candidate is trained.

    Parameters and MACs ("FLOPs" in the papers, which count multiply-accumulates) are counted with
    a ``count_classes``-class classifier at ``resolution`` x ``resolution``, so "under 6 M" means
    what it means in the papers (ImageNet-1k head) whatever the study's dataset.
    """

    max_params: int | None = Field(None, gt=0)
    max_macs: int | None = Field(None, gt=0)
    resolution: int = Field(256, ge=32)
    count_classes: int = Field(1000, gt=0)
    max_latency_ms: float | None = Field(None, gt=0)


class Objective(_Model):
    """One objective: a metric and its direction (default: the metric's natural one)."""

    metric: Literal["accuracy", "latency_ms", "params", "macs"]
    direction: Literal["maximize", "minimize"] | None = None

    @property
    def resolved_direction(self) -> str:
        return self.direction or METRICS[self.metric]


class RecipeConfig(_Model):
    """The training recipe (defaults: the MobileViT v1 paper's, reference section 5.1).

    Learning rate: linear warm-up per iteration from ``warmup_init_lr`` to ``lr`` over
    ``warmup_iters``, then cosine to ``min_lr``, indexed by epoch and not shifted by the warm-up
    as cvnets does (``cosine_per: epoch``), or by step after the warm-up (``step``, smoother for
    runs of a few epochs). The v2 recipe: lr 0.002 (width 2.0; scaled per width), min_lr 0.0002,
    warmup_iters 20000 from 1e-6, weight_decay 0.05, no_decay_norm_bias true, grad_clip 10.
    """

    lr: float = Field(2e-3, gt=0)
    min_lr: float = Field(2e-4, ge=0)
    cosine_per: Literal["epoch", "step"] = "epoch"  # cvnets: epoch; short runs: step
    warmup_iters: int = Field(3000, ge=0)
    warmup_init_lr: float = Field(2e-4, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    no_decay_norm_bias: bool = False
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    ema_momentum: float | None = Field(0.0005, gt=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    amp: bool = True  # mixed precision on a GPU (bf16 when supported)
    channels_last: bool = True  # the weights' layout; the network runs channels-last anyway
    compile: bool = False

    @model_validator(mode="after")
    def _lrs(self) -> RecipeConfig:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr}: above lr={self.lr}")
        return self


class DatasetConfig(_Model):
    """Where training images come from.

    ``procedural`` needs no files; ``folder`` reads the ImageNet layout (``path/<split>/<class>/``);
    ``cifar10`` / ``cifar100`` read the official python archives under ``path`` (downloaded and
    checked there when ``download`` is true).
    """

    kind: Literal["procedural", "folder", "cifar10", "cifar100"] = "procedural"
    path: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    classes: int | list[str] | None = None
    images_per_class: int | None = Field(None, gt=0)
    val_images_per_class: int | None = Field(None, gt=0)
    download: bool = False
    train_images: int = Field(1600, gt=0)  # procedural only
    val_images: int = Field(400, gt=0)  # procedural only
    image_size: int = Field(64, ge=16)  # procedural only: the rendered size
    seed: Seed = 0

    @model_validator(mode="after")
    def _path(self) -> DatasetConfig:
        if self.kind in ("folder", "cifar10", "cifar100") and not self.path:
            raise ValueError(f"dataset kind {self.kind} needs a path")
        return self


class MultiScaleConfig(_Model):
    """The variable-batch multi-scale sampler; ``sizes`` default to cvnets' scaled to the
    resolution (0.625x, 0.75x, 1x, 1.125x, 1.25x)."""

    sizes: list[Annotated[int, Field(ge=16)]] | None = Field(None, min_length=1)
    rule: Literal["paper", "v0.1", "v0.2"] = "v0.1"


class TrainConfig(_Model):
    """Train on real (or procedural) images with the papers' recipe (nas.evaluators.train)."""

    kind: Literal["train"]
    dataset: DatasetConfig = DatasetConfig()
    epochs: int = Field(gt=0)
    resolution: int = Field(256, ge=16)
    batch_size: int = Field(128, gt=0)
    multiscale: MultiScaleConfig | None = None
    crop_scale: tuple[float, float] = (0.08, 1.0)
    eval_resize: float = Field(288 / 256, ge=1.0)  # short side / crop for evaluation
    recipe: RecipeConfig = RecipeConfig()
    loader_workers: int = Field(2, ge=0)
    save_weights: bool = True

    def build(self) -> Any:
        """The evaluator this section describes (nas.evaluators.train.TrainEvaluator)."""
        from nas.evaluators.train import TrainEvaluator

        return TrainEvaluator(self)

    def summary(self) -> str:
        data = self.dataset
        where = f" ({data.path})" if data.path else ""
        scales = f", multi-scale ({self.multiscale.rule})" if self.multiscale else ""
        return (f"train: {self.epochs} epochs on {data.kind}{where} at {self.resolution}x"
                f"{self.resolution}{scales}, batch {self.batch_size}, lr {self.recipe.lr:g}")

    @field_validator("crop_scale")
    @classmethod
    def _crop_scale(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high <= 1:
            raise ValueError("expected [low, high] with 0 < low <= high <= 1 (fractions of the "
                             "image area)")
        return value


class ProxyTrainConfig(_Model):
    """A short training on the procedural dataset: the offline default (nas.evaluators.train).

    A compact form of a ``train`` evaluator: the images at ``resolution`` without crops, flips
    only, AdamW with a warm-up over ``warmup_fraction`` of the steps then cosine to zero, no EMA.
    """

    kind: Literal["proxy_train"]
    train_images: int = Field(1600, gt=0)
    val_images: int = Field(400, gt=0)
    resolution: int = Field(64, ge=32)
    epochs: int = Field(3, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    data_seed: Seed = 0
    save_weights: bool = True

    def build(self) -> Any:
        """The evaluator this section describes: a training evaluator on :meth:`as_train`."""
        from nas.evaluators.train import TrainEvaluator

        return TrainEvaluator(self.as_train(), name="proxy_train")

    def summary(self) -> str:
        return (f"proxy_train: {self.epochs} epochs of {self.train_images:,} procedural images at "
                f"{self.resolution}x{self.resolution}, batch {self.batch_size}, top-1 on "
                f"{self.val_images:,}")

    def as_train(self) -> TrainConfig:
        """The equivalent ``train`` evaluator."""
        steps = -(-self.train_images // self.batch_size) * self.epochs
        return TrainConfig(
            kind="train", epochs=self.epochs, resolution=self.resolution,
            batch_size=self.batch_size, crop_scale=(1.0, 1.0), eval_resize=1.0, loader_workers=0,
            save_weights=self.save_weights,
            dataset=DatasetConfig(kind="procedural", train_images=self.train_images,
                                  val_images=self.val_images, image_size=self.resolution,
                                  seed=self.data_seed),
            recipe=RecipeConfig(lr=self.lr, min_lr=0.0, cosine_per="step",
                                warmup_iters=int(self.warmup_fraction * steps),
                                warmup_init_lr=0.0, weight_decay=self.weight_decay,
                                label_smoothing=self.label_smoothing, ema_momentum=None))


class ZeroCostConfig(_Model):
    """A training-free score (nas.evaluators.zero_cost): synflow, naswot, grad_norm, or the
    params / macs baselines."""

    kind: Literal["zero_cost"]
    proxy: Literal["synflow", "naswot", "grad_norm", "params", "macs"]
    dataset: DatasetConfig = DatasetConfig()
    resolution: int = Field(64, ge=16)
    batch_size: int = Field(64, gt=1)

    def build(self) -> Any:
        """The evaluator this section describes (nas.evaluators.zero_cost)."""
        from nas.evaluators.zero_cost import ZeroCostEvaluator

        return ZeroCostEvaluator(self)

    def summary(self) -> str:
        return (f"zero_cost: {self.proxy} on a batch of {self.batch_size} {self.dataset.kind} "
                f"images at {self.resolution}x{self.resolution}")


class DummyConfig(_Model):
    """A fixed-cost stand-in for benchmarks and tests (nas.evaluators.dummy)."""

    kind: Literal["dummy"]
    seconds: float = Field(0.0, ge=0)
    classes: int = Field(10, ge=2)
    faults: dict[str, Literal["raise", "nan", "exit"]] = {}
    record: str | None = None
    hold: str | None = None  # tests: every evaluation waits until this file exists
    # tests of repeated seeds: the score moves by up to +-seed_noise with the trial's seed
    seed_noise: float = Field(0.0, ge=0)
    # tests of the chance flag: these spec ids score what guessing does (100 / classes)
    chance: list[str] = []
    val_images: int = Field(200, ge=1)  # the validation set a score is said to be over

    def build(self) -> Any:
        """The evaluator this section describes (nas.evaluators.dummy)."""
        from nas.evaluators.dummy import DummyEvaluator

        return DummyEvaluator(**self.model_dump(exclude={"kind"}))

    def summary(self) -> str:
        return f"dummy: {self.seconds:g} s of CPU per trial, {self.classes} classes"


class RefineConfig(_Model):
    """Retrain the final Pareto front's best ``top_k`` (by the first objective) standalone with a
    training evaluator, so the front a user acts on is measured, not inherited."""

    top_k: int = Field(4, ge=1)
    evaluator: Annotated[TrainConfig | ProxyTrainConfig, Field(discriminator="kind")] = \
        ProxyTrainConfig(kind="proxy_train")


# Design parameters a supernet may be split along (their values give tensors of their own).
SplitParam = Literal["block", "local_conv", "attention", "norm", "head_conv"]


class SupernetConfig(_Model):
    """Score candidates with weights inherited from a weight-sharing supernet
    (nas.evaluators.supernet): the supernet over the study's space is trained once under the
    study's budget (sandwich rule, in-place distillation) before the search, and stored by a
    content hash so studies over the same space reuse it; a candidate is then cut from it, its
    BatchNorms recalibrated on ``calibration_batches`` training batches, and scored by top-1 on
    the first ``eval_images`` validation images (all when unset)."""

    kind: Literal["supernet"]
    # A candidate's inherited accuracy is the same whatever the trial's seed (no training).
    trial_seeded: ClassVar[bool] = False
    train: Annotated[TrainConfig | ProxyTrainConfig, Field(discriminator="kind")] = \
        ProxyTrainConfig(kind="proxy_train", epochs=8)
    subnets: int = Field(2, ge=0)  # random subnets per step beside the largest and smallest
    distill: bool = True
    calibration_batches: int = Field(2, ge=0)
    eval_images: int | None = Field(None, gt=0)
    store: str | None = None  # default: supernets/ in the cache folder
    refine: RefineConfig | None = None
    # Data-parallel training through Ray Train (nas.supernet.distributed): 1 trains in the
    # driver's process (on its GPU with train_gpus_per_worker: 1); more split every batch over
    # that many Ray Train workers, on the Ray instance of workers.address (or a local one), each
    # with this many GPUs (0: CPUs, gloo).
    train_workers: int = Field(1, ge=1)
    train_gpus_per_worker: float = Field(0.0, ge=0)
    # Few-shot NAS (nas.evaluators.supernet): one sub-supernet per combination of these design
    # parameters' values, each starting from the shared supernet's weights and trained
    # ``split_epochs`` more (default: the training's epochs) on its part of the space only.
    split: list[SplitParam] = []
    split_epochs: int | None = Field(None, ge=1)
    # The split epochs' peak learning rate (default: the training's): they start from weights
    # the shared training's schedule has already cooled.
    split_lr: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _gpus_need_workers(self) -> SupernetConfig:
        if self.train_workers == 1 and self.train_gpus_per_worker not in (0, 1):
            raise ValueError(f"train_gpus_per_worker={self.train_gpus_per_worker}: with "
                             "train_workers=1 the driver's process trains the supernet, on its "
                             "CPU (0) or one GPU (1)")
        for name in ("split_epochs", "split_lr"):
            if getattr(self, name) is not None and not self.split:
                raise ValueError(f"{name}={getattr(self, name)}: needs split (the design "
                                 "parameters to split the supernet along)")
        if len(set(self.split)) != len(self.split):
            raise ValueError(f"split={self.split}: a parameter is listed twice")
        return self

    def build(self) -> Any:
        """The evaluator this section describes; it scores nothing until the driver has called
        its ``for_search`` with the study's space (which trains or loads the supernet)."""
        from nas.evaluators.supernet import SupernetEvaluator

        return SupernetEvaluator(self)

    def train_config(self) -> TrainConfig:
        """The training section as a ``train`` evaluator's (a ``proxy_train`` one expanded)."""
        return self.train.as_train() if isinstance(self.train, ProxyTrainConfig) else self.train

    def part_train_config(self) -> TrainConfig:
        """The training of each sub-supernet of a split: the shared one's, for ``split_epochs``
        and at ``split_lr``."""
        shared = self.train_config()
        recipe = shared.recipe
        if self.split_lr is not None:
            lr = self.split_lr
            recipe = recipe.model_copy(update={"lr": lr, "min_lr": min(recipe.min_lr, lr),
                                               "warmup_init_lr": min(recipe.warmup_init_lr, lr)})
        return shared.model_copy(update={"epochs": self.split_epochs or shared.epochs,
                                         "recipe": recipe})

    def summary(self) -> str:
        t = self.train_config()
        refine = (f"; refine top {self.refine.top_k} with {self.refine.evaluator.kind}"
                  if self.refine else "")
        part = self.part_train_config()
        split = (f", then split by {', '.join(self.split)} (one sub-supernet per value, "
                 f"{part.epochs} epochs each at lr {part.recipe.lr:g})" if self.split else "")
        return (f"supernet: trained {t.epochs} epochs on {t.dataset.kind} at {t.resolution}x"
                f"{t.resolution} ({self.subnets + 2} subnets a step){split}, candidates scored with "
                f"inherited weights after {self.calibration_batches} recalibration batches"
                f"{refine}")


def union_tag(member: Any) -> str:
    """The tag pydantic puts in an error's path for one alternative of a tagged union."""
    if typing.get_origin(member) is Annotated:
        return next(m.tag for m in typing.get_args(member)[1:] if isinstance(m, Tag))
    (kind,) = typing.get_args(member.model_fields["kind"].annotation)
    return kind


class Kinds:
    """The kinds one study section can take: config classes, each with a one-value ``kind``
    literal and a ``build()`` that makes the object the section describes.

    This is the seam for a new evaluator or latency oracle: :meth:`register` its config class
    and study files accept ``kind: <its kind>`` (the schema is rebuilt), errors name its
    fields, ``nas check`` and ``nas run`` build it. Pydantic validates the section as a union
    tagged by ``kind``.
    """

    def __init__(self, field: str, members: Sequence[type[_Model]]) -> None:
        self.field = field
        self.members: list[type[_Model]] = []
        for member in members:
            self._check(member)
            self.members.append(member)

    def _check(self, member: type[_Model]) -> None:
        kind = member.model_fields.get("kind")
        values = typing.get_args(kind.annotation) if kind is not None else ()
        if len(values) != 1 or not callable(getattr(member, "build", None)):
            raise TypeError(f"{member.__name__}: a {self.field} kind needs a one-value `kind` "
                            "Literal field and a build() method")
        if values[0] in self.kinds():
            raise ValueError(f"{self.field} kind {values[0]!r} is registered already")

    def union(self) -> Any:
        """The section's type: the members, tagged by ``kind``."""
        return Annotated[typing.Union[tuple(self.members)], Field(discriminator="kind")]  # noqa: UP007

    def kinds(self, *, standalone: bool = False) -> tuple[str, ...]:
        """The registered ``kind`` values in order; with ``standalone``, only those that work
        outside a study's cluster (``nas latency --backend``)."""
        return tuple(union_tag(m) for m in self.members
                     if not standalone or getattr(m, "standalone", True))

    def member(self, kind: str) -> type[_Model]:
        """The config class of ``kind``."""
        return self.members[self.kinds().index(kind)]

    def register(self, member: type[_Model]) -> type[_Model]:
        """Accept ``member`` as one more kind of this section (usable as a class decorator)."""
        self._check(member)
        self.members.append(member)
        self._rebuild()
        return member

    def unregister(self, member: type[_Model]) -> None:
        """Undo :meth:`register`."""
        self.members.remove(member)
        self._rebuild()

    def _rebuild(self) -> None:
        field = StudyConfig.model_fields[self.field]
        field.annotation = typing.get_args(self.union())[0]
        field.discriminator = "kind"
        StudyConfig.model_rebuild(force=True)


EVALUATOR_KINDS = Kinds("evaluator", [TrainConfig, ProxyTrainConfig, ZeroCostConfig, DummyConfig,
                                       SupernetConfig])
EvaluatorConfig = EVALUATOR_KINDS.union()


class PrunerConfig(_Model):
    """Early stopping of trials whose accuracy lags after some epochs (Optuna's pruners, applied
    to accuracy alone; see nas/search/pruning.py)."""

    kind: Literal["none", "successive_halving", "hyperband", "median"] = "none"
    min_epochs: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)

    def build(self, max_epochs: int) -> Any:
        """The Optuna pruner (None for ``none``) for trainings of ``max_epochs`` epochs."""
        import optuna

        rate = self.reduction_factor
        return {
            "none": lambda: None,
            "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
                min_resource=self.min_epochs, reduction_factor=rate),
            "hyperband": lambda: optuna.pruners.HyperbandPruner(
                min_resource=self.min_epochs, max_resource=max_epochs, reduction_factor=rate),
            "median": lambda: optuna.pruners.MedianPruner(
                n_startup_trials=5, n_warmup_steps=self.min_epochs - 1),
        }[self.kind]()


class LocalLatencyConfig(_Model):
    """Wall-clock latency of batch-1 inference on this machine (nas.latency.local)."""

    kind: Literal["local"]
    resolution: int = Field(256, ge=32)
    threads: int = Field(1, gt=0)
    warmup: int = Field(2, ge=0)
    runs: int = Field(10, gt=0)
    cache: str | None = None  # sqlite file; default ~/.cache/mobilevit-nas/latency.sqlite

    def build(self, device: str = "cpu") -> Any:
        """Wall clock on this machine's ``device`` (nas.latency.local)."""
        from nas.latency.local import LocalLatencyOracle

        return LocalLatencyOracle(**self.model_dump(exclude={"kind", "cache"}), device=device)

    def summary(self) -> str:
        return (f"local: median of {self.runs} runs after {self.warmup} warm-up, at "
                f"{self.resolution}x{self.resolution}, {self.threads} "
                f"thread{'s' if self.threads > 1 else ''} (this machine)")


class PredictorLatencyConfig(_Model):
    """CoreML latency predicted from the converted program (nas.latency.predictor): the offline
    iPhone oracle. ``calibration``: a file from ``nas latency calibrate`` (default: iPhone 12).
    ``features``: ``templates`` (each block's program written down from its fields, no
    conversion; the default), ``units`` (each block converted once and cached) or ``network``
    (the whole network converted for every candidate, the reference path); all three read the
    same features."""

    kind: Literal["predictor"]
    resolution: int = Field(256, ge=32)
    calibration: str | None = None
    features: Literal["templates", "units", "network"] = "templates"
    cache: str | None = None

    def build(self, device: str = "cpu") -> Any:
        """The calibrated predictor (device-independent: it reads the converted program)."""
        from nas.latency.predictor import PredictorOracle

        return PredictorOracle(resolution=self.resolution, calibration=self.calibration,
                               features=self.features, unit_cache=self.cache)

    def summary(self) -> str:
        how = {"templates": "per-block features from written-down programs",
               "units": "per-block features, each block converted once",
               "network": "the whole network converted per candidate"}[self.features]
        return (f"predictor: CoreML latency predicted at {self.resolution}x{self.resolution} from "
                f"{self.calibration or 'the shipped iPhone 12 calibration'} ({how})")

    @field_validator("calibration")
    @classmethod
    def _calibration(cls, value: str | None) -> str | None:
        if value is not None:
            from nas.latency.predictor import Calibration, CalibrationError

            try:
                Calibration.load(value)
            except CalibrationError as exc:
                raise ValueError(str(exc)) from None
        return value


class _DeviceMeasurement:
    """For the oracles that measure on a device: their ``rounds`` x ``iterations`` protocol."""

    @property
    def protocol(self) -> Any:
        """The measurement protocol asked of the device."""
        from nas.latency.stats import MeasureProtocol

        return MeasureProtocol(rounds=self.rounds, iterations=self.iterations)  # type: ignore[attr-defined]


class AgentLatencyConfig(_Model, _DeviceMeasurement):
    """CoreML latency measured by a latency agent over HTTP (nas.latency.oracles). The token is
    read from the environment variable ``token_env`` (never stored in the study)."""

    kind: Literal["agent"]
    url: str
    resolution: int = Field(256, ge=32)
    token_env: str = "NAS_AGENT_TOKEN"
    rounds: int = Field(5, gt=0)
    iterations: int = Field(20, gt=0)
    attempts: int = Field(4, gt=0)
    backoff_s: float = Field(1.0, ge=0)
    cache: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value

    def build(self, device: str = "cpu", *, token: str | None = None) -> Any:
        """A client of the agent at ``url``; its token is ``token`` or else ``$token_env``."""
        import os

        from nas.latency.oracles import AgentOracle

        return AgentOracle(self.url, resolution=self.resolution,
                           token=token or os.environ.get(self.token_env), protocol=self.protocol,
                           attempts=self.attempts, backoff_s=self.backoff_s)

    def summary(self) -> str:
        return (f"agent: {self.url}, {self.rounds} rounds x {self.iterations} iterations at "
                f"{self.resolution}x{self.resolution}")



class RayDeviceLatencyConfig(_Model, _DeviceMeasurement):
    """CoreML latency measured on the Ray node that has the custom resource ``resource`` (a Mac
    with a tethered iPhone), one job at a time (nas.latency.oracles.RayDeviceOracle)."""

    kind: Literal["ray_device"]
    resource: str = "iphone"
    runner: Literal["coreml", "local"] = "coreml"
    device: Literal["mac", "iphone"] = "iphone"
    compute_units: Literal["ALL", "CPU_AND_NE", "CPU_AND_GPU", "CPU_ONLY"] = "ALL"
    resolution: int = Field(256, ge=32)
    rounds: int = Field(5, gt=0)
    iterations: int = Field(20, gt=0)
    cache: str | None = None
    # A device behind a cluster's custom resource: `nas latency` on its own cannot reach it.
    standalone: ClassVar[bool] = False

    def build(self, device: str = "cpu") -> Any:
        """A Ray task per measurement on the node that holds ``resource``."""
        from nas.latency.oracles import RayDeviceOracle
        from nas.latency.runners import CoreMLRunner, LocalRunner

        runner = LocalRunner() if self.runner == "local" else CoreMLRunner(
            compute_units=self.compute_units, device="iphone" if self.device == "iphone" else None)
        return RayDeviceOracle(runner, resolution=self.resolution, resource=self.resource,
                               protocol=self.protocol)

    def summary(self) -> str:
        return (f"ray_device: the Ray node with resource {self.resource!r} ({self.runner} on "
                f"{self.device}), {self.rounds} rounds x {self.iterations} iterations at "
                f"{self.resolution}x{self.resolution}")


class NoLatencyConfig(_Model):
    """No latency oracle (for single-objective studies on accuracy, params or MACs)."""

    kind: Literal["none"]
    standalone: ClassVar[bool] = False

    def build(self, device: str = "cpu") -> None:
        """No oracle."""
        return None

    def summary(self) -> str:
        return "none"


LATENCY_KINDS = Kinds("latency", [LocalLatencyConfig, PredictorLatencyConfig, AgentLatencyConfig,
                                  RayDeviceLatencyConfig, NoLatencyConfig])
LatencyConfig = LATENCY_KINDS.union()


class SamplerConfig(_Model):
    """The Optuna sampler: NSGA-II (default), TPE, random, or brute force (ablation grids)."""

    kind: Literal["nsga2", "tpe", "random", "brute_force"] = "nsga2"
    population_size: int = Field(16, ge=2)

    def build(self, seed: int) -> Any:
        """The Optuna sampler seeded with ``seed``."""
        import optuna

        from nas.search.samplers import GridSampler

        return {
            "nsga2": lambda: optuna.samplers.NSGAIISampler(
                population_size=self.population_size, seed=seed),
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
            "brute_force": lambda: GridSampler(seed),
        }[self.kind]()


class WorkersConfig(_Model):
    """Where trials run: a local Ray instance (``address`` null) or a cluster, and how many."""

    address: str | None = Field(None, min_length=1)
    concurrent: int = Field(2, ge=1)
    cpus_per_trial: float = Field(1, gt=0)
    gpus_per_trial: float = Field(0, ge=0)
    # Niceness of the trials' worker processes on a local Ray instance. Ray's own default is 15,
    # which lets any other busy process on the machine slow trials 10-20 times; 0 runs them as
    # the driver runs. (On a cluster, each node's `ray start` decides: RAY_worker_niceness.)
    niceness: int = Field(0, ge=0, le=19)
    # Several drivers on one PostgreSQL study: each records a heartbeat for its running trials
    # every heartbeat_seconds; a trial whose heartbeat is older than heartbeat_grace_seconds
    # belongs to a driver that died, and another driver re-queues it.
    heartbeat_seconds: int = Field(10, ge=1)
    heartbeat_grace_seconds: int = Field(60, ge=2)

    @model_validator(mode="after")
    def _grace(self) -> WorkersConfig:
        if self.heartbeat_grace_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(f"heartbeat_grace_seconds={self.heartbeat_grace_seconds}: give at "
                             f"least two heartbeats ({2 * self.heartbeat_seconds} s)")
        return self


class PublishedFigures(_Model):
    """What a paper published for one row of an ablation (any may be missing)."""

    params_m: float | None = Field(None, gt=0)
    macs_g: float | None = Field(None, gt=0)
    latency_ms: float | None = Field(None, gt=0)
    latency_device: str | None = None
    top1: float | None = None
    note: str = ""  # e.g. "derived from -0.7 vs the baseline", other published figures


class FixedTrialConfig(_Model):
    """A fixed trial written out: a model, changes to its MobileViT blocks and to the evaluator.

    ``blocks`` changes every block's fields (a mapping) or each block in order (a list of
    mappings), with the names of :class:`mobilevit.spec.BlockSpec` (``patch_size``, ``heads``,
    ``attention``, ``fusion``, ``fusion_kernel``, ``residual``, ``local_depthwise``, ...).
    ``evaluator`` is merged into the study's evaluator section (e.g. ``{recipe: {weight_decay:
    0.1}}``), so a row can vary the architecture, the training, or both.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.,:()+= -]+$")
    model: str
    blocks: dict[str, Any] | list[dict[str, Any]] = {}
    evaluator: dict[str, Any] = {}
    published: PublishedFigures | None = None


class AblationConfig(_Model):
    """What makes a study an ablation: its rows are its fixed trials, nothing is searched, and
    the result is a table of the paper's figures beside ours."""

    paper: str  # the source of the published figures, e.g. "MobileViT v1 (arXiv 2110.02178), Table 6"
    baseline: str  # the row the deltas are taken against
    setting: str = ""  # how the paper trained, e.g. "ImageNet-1k, 300 epochs"
    question: str = ""  # what the ablation asks


def _entry_tag(value: Any) -> str:
    return "fixed_name" if isinstance(value, str) else "fixed_row"


# A fixed trial is a name (a published design or a spec file) or a written-out row; tagging the
# two keeps error messages about the branch the user wrote.
FixedTrialEntry = Annotated[Annotated[str, Tag("fixed_name")]
                            | Annotated[FixedTrialConfig, Tag("fixed_row")],
                            Discriminator(_entry_tag)]


def fixed_trial_name(entry: FixedTrialEntry) -> str:
    """The name a fixed trial is recorded under."""
    if isinstance(entry, FixedTrialConfig):
        return entry.name
    return Path(entry).stem if entry.endswith(".json") else entry


# Fields that may change on an existing run folder without making it another study: how long
# and how wide a study runs, and what it is called, not what it searches.
FREE_FIELDS = ("trials", "timeout_minutes", "workers", "description", "output",
               "max_infeasible", "max_repeats", "seeds")


class StudyConfig(_Model):
    """A whole study file. See studies/under_6m.yaml for an annotated example."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: Seed = 0
    space: dict[str, Any] = {}
    budget: Budget = Budget()
    objectives: list[Objective] = [Objective(metric="accuracy"), Objective(metric="latency_ms")]
    evaluator: EvaluatorConfig = ProxyTrainConfig(kind="proxy_train")
    latency: LatencyConfig = LocalLatencyConfig(kind="local")
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    trials: int | None = Field(None, gt=0)
    timeout_minutes: float | None = Field(None, gt=0)
    max_infeasible: int | None = Field(None, gt=0)
    max_repeats: int = Field(200, gt=0)
    fixed_trials: list[FixedTrialEntry] = []
    # Seeds of every fixed trial (ablation row) and of every candidate the refine step retrains:
    # each seed is a trial of its own, and a row reports their mean and 95 % interval. An
    # evaluator whose result does not depend on the trial's seed (a supernet's inherited
    # weights) evaluates a fixed trial once.
    seeds: int = Field(1, ge=1, le=100)
    ablation: AblationConfig | None = None
    workers: WorkersConfig = WorkersConfig()
    storage: str | None = None
    output: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _ablation_trials(cls, data: Any) -> Any:
        # an ablation evaluates its rows: that is its number of trials unless it says otherwise
        if (isinstance(data, dict) and data.get("ablation") is not None
                and data.get("trials") is None and isinstance(data.get("fixed_trials"), list)):
            seeds = data.get("seeds", 1)
            data = {**data, "trials": len(data["fixed_trials"])
                    * (seeds if isinstance(seeds, int) and seeds > 0 else 1) or None}
        return data

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: list[Objective]) -> list[Objective]:
        if not value:
            raise ValueError("list at least one objective")
        metrics = [o.metric for o in value]
        if len(set(metrics)) != len(metrics):
            raise ValueError("an objective is listed twice")
        return value

    @field_validator("fixed_trials")
    @classmethod
    def _fixed(cls, value: list[FixedTrialEntry]) -> list[FixedTrialEntry]:
        names = [fixed_trial_name(v) for v in value]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"a fixed trial is listed twice: {', '.join(twice)}")
        return value

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgresql+")):
            raise ValueError("expected a postgresql:// URL (leave it out for the journal file in "
                             "the run folder)")
        return value

    @model_validator(mode="after")
    def _stop_condition(self) -> StudyConfig:
        if self.trials is None and self.timeout_minutes is None:
            raise ValueError("set trials, timeout_minutes or both")
        if any(o.metric == "latency_ms" for o in self.objectives) and self.latency.kind == "none":
            raise ValueError("objective latency_ms needs a latency oracle (latency.kind)")
        if self.budget.max_latency_ms is not None and self.latency.kind == "none":
            raise ValueError("budget.max_latency_ms needs a latency oracle (latency.kind)")
        if self.pruner.kind != "none":
            epochs = getattr(self.evaluator, "epochs", None)
            if epochs is None:
                raise ValueError(f"pruner.kind={self.pruner.kind}: the {self.evaluator.kind} "
                                 "evaluator does not train in epochs, so there is nothing to stop "
                                 "early (pruner.kind: none)")
            if self.pruner.min_epochs >= epochs:
                raise ValueError(f"pruner.min_epochs={self.pruner.min_epochs}: not below "
                                 f"evaluator.epochs={epochs}, so no trial could be stopped early")
        if self.ablation is not None:
            names = [fixed_trial_name(v) for v in self.fixed_trials]
            if self.ablation.baseline not in names:
                raise ValueError(f"ablation.baseline={self.ablation.baseline}: not one of the "
                                 f"fixed trials ({', '.join(names) or 'none'})")
            if self.trials is not None and self.trials > len(names) * self.fixed_seeds:
                raise ValueError(f"trials={self.trials}: an ablation evaluates its "
                                 f"{len(names)} fixed trials ({self.fixed_seeds} seed(s) each) "
                                 "and searches nothing")
        return self

    @property
    def fixed_seeds(self) -> int:
        """Seeds of each fixed trial: ``seeds``, or 1 where the evaluator ignores the seed."""
        return self.seeds if getattr(self.evaluator, "trial_seeded", True) else 1

    @property
    def directions(self) -> list[str]:
        return [o.resolved_direction for o in self.objectives]

    @property
    def infeasible_limit(self) -> int:
        """Infeasible candidates after which the study stops and says the budget is too tight."""
        if self.max_infeasible is not None:
            return self.max_infeasible
        return 50 * (self.trials or 100)

    def fingerprint(self) -> str:
        """A hash of everything that defines the search (not how long or how wide it runs)."""
        data = self.model_dump(mode="json", exclude=set(FREE_FIELDS))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _union_tags():
            continue  # the tag of a discriminated union, not a field
        else:
            out += f".{part}" if out else str(part)
    return out


def _union_tags() -> set[str]:
    entries = typing.get_args(typing.get_args(FixedTrialEntry)[0])
    return {*EVALUATOR_KINDS.kinds(), *LATENCY_KINDS.kinds(), *map(union_tag, entries)}


def _format_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, str, bool)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: dict[str, Any]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "missing"
    if kind == "union_tag_not_found":
        return "missing kind"
    if kind == "union_tag_invalid":
        expected = err.get("ctx", {}).get("expected_tags", "")
        return f"unknown kind; expected one of {expected}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return msg[0].lower() + msg[1:] if msg else msg


def parse_study(data: Any, source: str,
                settings: Sequence[tuple[str, str]] = ()) -> StudyConfig:
    """Validate a study given as a dict (from YAML); errors are one line naming ``source``.

    ``settings`` are the ``(KEY, KEY=VALUE)`` command-line overrides merged into ``data``
    (:func:`apply_settings`): an error in a field one of them set names that ``--set``.
    """
    if not isinstance(data, dict):
        raise StudyError(f"{source}: expected a mapping of study fields, got "
                         f"{type(data).__name__}")
    try:
        return StudyConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        err = errors[0]
        loc, value = err["loc"], err["input"]
        if err["type"] == "bool_number":  # raised by the model, about one of its fields
            loc, value = (*loc, err["ctx"]["field"]), True
        loc = _format_loc(loc)
        where = f"{loc}={_format_value(value)}" if loc and err["type"] not in (
            "missing", "extra_forbidden") else loc
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        prefix = f"{where}: " if where else ""
        for key, text in reversed(settings):
            if loc and (loc == key or loc.startswith((key + ".", key + "["))
                        or key.startswith(loc + ".")):
                prefix = f"--set {text}: " + ("" if loc == key else prefix)
                break
        raise StudyError(f"{source}: {prefix}{_message(err)}{more}") from None


def parse_setting(text: str, source: str) -> tuple[list[str], Any]:
    """A ``--set KEY=VALUE`` override: the field path and the value (parsed as YAML, so
    ``3``, ``5e6``, ``null``, ``[mobilevit_xxs]`` and ``{high: 128}`` mean what they mean in a
    study file). Keys are dotted paths; under ``space`` the parameter names keep their dot
    (``space.s3.width.high``)."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep:
        raise StudyError(f"{source}: --set {text}: expected KEY=VALUE, e.g. "
                         "--set evaluator.epochs=3")
    parts = key.split(".")
    if not all(parts):
        raise StudyError(f"{source}: --set {text}: {'empty key' if not key else 'empty field'}"
                         "; expected KEY=VALUE, e.g. --set evaluator.epochs=3")
    if parts[0] == "extends":
        raise StudyError(f"{source}: --set {text}: extends is resolved before --set applies; "
                         "write it in the study file")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StudyError(f"{source}: --set {text}: invalid YAML value ({problem})") from None
    if parts[0] == "space" and len(parts) > 2:
        from search_spaces.mobilevit import DEFAULT_PARAMS

        names = {p.name for p in DEFAULT_PARAMS}
        rest = parts[1:]
        split = next((j for j in range(len(rest), 0, -1) if ".".join(rest[:j]) in names),
                     len(rest))
        parts = ["space", ".".join(rest[:split]), *rest[split:]]
    return parts, value


def _get(data: Any, parts: Sequence[str]) -> Any:
    """The value at the field path ``parts`` of ``data`` (None where there is none)."""
    for part in parts:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _put(data: dict[str, Any], parts: Sequence[str], value: Any) -> dict[str, Any]:
    """``data`` with ``value`` at the field path ``parts``, replacing what was there."""
    head, *rest = parts
    inner = data.get(head)
    return {**data, head: _put(inner if isinstance(inner, dict) else {}, rest, value)
            if rest else value}


def latency_from_flags(kind: str, flags: dict[str, tuple[str, Any]]) -> Any:
    """The latency section that command-line flags describe (``nas latency --backend KIND``).

    ``flags`` maps a field of the section to ``(flag, value)``; a value of None is not given.
    A flag the kind has no field for, and a bad value, are errors naming the flag.
    """
    cls = LATENCY_KINDS.member(kind)
    data: dict[str, Any] = {"kind": kind}
    for name, (flag, value) in flags.items():
        if value is None:
            continue
        if name not in cls.model_fields:
            users = [k for k in LATENCY_KINDS.kinds() if name in LATENCY_KINDS.member(k).model_fields]
            raise StudyError(f"{flag}: only with --backend {' or '.join(users)}")
        data[name] = value
    try:
        return cls.model_validate(data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        flag = flags.get(field, (f"--backend {kind}",))[0]
        if err["type"] == "missing":
            raise StudyError(f"{flag}: required by --backend {kind}") from None
        raise StudyError(f"{flag}={_format_value(err['input'])}: {_message(err)}") from None


def apply_settings(data: dict[str, Any], settings: Sequence[str],
                   source: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``data`` (a study file's, ``extends`` resolved) with ``--set KEY=VALUE`` overrides
    merged in order by :func:`deep_merge`, the merge ``extends`` uses (a mapping value merges
    key by key, anything else replaces); and the ``(KEY, KEY=VALUE)`` pairs for
    :func:`parse_study`'s error messages. Setting ``evaluator.kind`` or ``latency.kind`` to
    another kind starts that section afresh."""
    applied = []
    for text in settings:
        parts, value = parse_setting(text, source)
        top = StudyConfig.model_fields.get(parts[0])
        if len(parts) > 1 and parts[0] not in data and top is not None and isinstance(
                top.default, BaseModel):
            # a nested key into a section the file leaves at its default: start from that
            # default (its kind, for the evaluator and latency sections)
            data = {**data, parts[0]: top.default.model_dump(mode="json", exclude_unset=True)}
        section = _get(data, parts[:-1])
        if (parts in (["evaluator", "kind"], ["latency", "kind"]) and isinstance(section, dict)
                and section.get("kind") != value):
            # another kind of evaluator or oracle: the section starts afresh, since the old
            # kind's fields do not belong to the new one
            parts = parts[:-1]
            data = _put(data, parts, {"kind": value})
        else:
            for part in reversed(parts):
                value = {part: value}
            data = deep_merge(data, value)
        applied.append((".".join(parts), text))
    return data, applied


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied: mappings merge key by key, anything else replaces; a
    mapping with another ``kind`` (an evaluator of another kind) replaces, as its fields are
    another section's."""
    out = dict(base)
    for key, value in changes.items():
        old = out.get(key)
        merge = (isinstance(value, dict) and isinstance(old, dict)
                 and value.get("kind", old.get("kind")) == old.get("kind"))
        out[key] = deep_merge(old, value) if merge else value  # type: ignore[arg-type]
    return out


def read_study_data(path: Path, chain: tuple[Path, ...] = ()) -> Any:
    """A study file's data, with the file it ``extends`` (a path relative to it) merged under."""
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StudyError(f"{chain[-1] if chain else path}: "
                         f"{'extends=' if chain else ''}{path}: no such study file") from None
    except OSError as exc:
        raise StudyError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StudyError(f"{path}{where}: invalid YAML ({problem})") from None
    if data is None:
        raise StudyError(f"{path}: empty study file")
    if isinstance(data, dict) and "extends" in data:
        parent = path.parent / str(data.pop("extends"))
        if parent.resolve() in {p.resolve() for p in (*chain, path)}:
            raise StudyError(f"{path}: extends={parent}: the files extend each other")
        base = read_study_data(parent, (*chain, path))
        if not isinstance(base, dict):
            raise StudyError(f"{parent}: expected a mapping of study fields")
        data = deep_merge(base, data)
    return data


def load_study(path: str | Path, settings: Sequence[str] = ()) -> StudyConfig:
    """Read and validate a study YAML file (schema only; see nas.study.prepare.prepare for the rest).

    A file may start from another: ``extends: _common.yaml`` (relative to the file) merges the
    file's fields over that one's, mappings key by key. ``settings`` (``KEY=VALUE``, from
    ``--set``) are merged over the result, then everything is validated together.
    """
    path = Path(path)
    data = read_study_data(path)
    applied: list[tuple[str, str]] = []
    if settings and isinstance(data, dict):
        data, applied = apply_settings(data, settings, str(path))
    if isinstance(data, dict) and "name" not in data:
        data = {"name": path.stem, **data}
    return parse_study(data, str(path), applied)


# Evaluator fields added after studies were run, with their defaults (see evaluator_key).
LATER_FIELDS: dict[str, Any] = {"train_workers": 1, "train_gpus_per_worker": 0.0,
                                 "split": [], "split_epochs": None,
                                 "split_lr": None}


def evaluator_key(evaluator: Any) -> str:
    """A short hash of an evaluator section: trials share results only under the same one."""
    # Fields added after studies were run count only when set, so a resumed run keeps its keys.
    unset = {name for name, default in LATER_FIELDS.items()
             if name in type(evaluator).model_fields and getattr(evaluator, name) == default}
    return hashlib.sha256(evaluator.model_dump_json(exclude=unset).encode()).hexdigest()[:8]
