"""A latency predictor calibrated on measured iPhone latencies: the offline default oracle.

The model is a roofline-like sum over the candidate's converted CoreML program
(:mod:`nas.latency.features`), with one scale per source of measurements::

    latency_ms = scale[source] * (w_work * GMACs + w_attn * attention MB + w_layout * layout MB)

GMACs count every convolution, linear and matmul; attention MB is the memory traffic of the
attention matmuls and softmaxes; layout MB that of reshapes, transposes, splits, concatenations
and resizes. The weights are non-negative (more work or traffic never makes a network faster), so
predictions are monotone in each term. They are fitted by least squares on log latency, so every
row weighs by its relative error. The terms were chosen before fitting, from what the CoreML
literature says dominates Neural Engine latency (reference: coreml_latency_methods.md section 3):
compute, attention data movement, and layout changes, not FLOPs alone.

Predictions are given for the calibration's reference source (its device and software stack).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mobilevit import ArchSpec
from nas.errors import NasError
from nas.latency.base import LatencyResult, context_key
from nas.latency.features import ProgramFeatures, spec_features

TERMS: dict[str, tuple[str, ...]] = {
    "work_gmacs": ("conv_gmacs", "dwconv_gmacs", "matmul_gmacs"),
    "attention_mb": ("attention_mb",),
    "layout_mb": ("layout_mb",),
}
DEFAULT_CALIBRATION = Path(__file__).with_name("calibrations") / "iphone12.json"


class CalibrationError(NasError):
    """A calibration that cannot be fitted or read."""


def terms(features: ProgramFeatures | dict[str, float]) -> dict[str, float]:
    """The predictor's terms from a program's features."""
    values = features.values if isinstance(features, ProgramFeatures) else features
    return {name: round(sum(values[k] for k in parts), 6) for name, parts in TERMS.items()}


@dataclass(frozen=True)
class CalibrationPoint:
    """One measured latency to fit: the network, its input size, who measured it, the value."""

    label: str
    spec_id: str
    resolution: int
    source: str
    latency_ms: float
    terms: dict[str, float]


@dataclass(frozen=True)
class Calibration:
    """Fitted weights per term and scales per source, with the rows they came from.

    Attributes:
        device: the device the latencies describe (e.g. "iPhone 12").
        compute_units: CoreML compute units of the measurements ("all" when not stated).
        reference_source: the source whose scale is 1; predictions are for it.
        weights: ms per unit of each term.
        scales: per source, its latencies over the reference source's.
        points: the calibration rows, each with its leave-one-out prediction.
        loo_median, loo_max: leave-one-out relative errors (None with fewer than 3 rows).
        versions: software the features depend on (coremltools, torch).
    """

    device: str
    compute_units: str
    reference_source: str
    weights: dict[str, float]
    scales: dict[str, float]
    points: tuple[dict[str, Any], ...]
    loo_median: float | None
    loo_max: float | None
    versions: dict[str, str] = field(default_factory=dict)

    def predict(self, term_values: dict[str, float], source: str | None = None) -> float:
        """Predicted latency (ms) for a program's terms, for ``source`` (default: the
        reference)."""
        base = sum(self.weights[t] * term_values[t] for t in self.weights)
        return self.scales.get(source or self.reference_source, 1.0) * base

    @property
    def digest(self) -> str:
        """A short hash of the fitted values (part of every cache key)."""
        data = json.dumps({"w": self.weights, "s": self.scales, "d": self.device,
                           "u": self.compute_units, "v": self.versions}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:12]

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, default=list) + "\n"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        try:
            data = json.loads(Path(path).read_text())
            data["points"] = tuple(data["points"])
            calibration = cls(**data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise CalibrationError(f"{path}: not a latency calibration ({exc})") from None
        if set(calibration.weights) != set(TERMS):
            raise CalibrationError(f"{path}: terms {sorted(calibration.weights)}, expected "
                                   f"{sorted(TERMS)}")
        return calibration


def _solve(points: Sequence[CalibrationPoint],
           reference: str) -> tuple[dict[str, float], dict[str, float]]:
    from scipy.optimize import least_squares

    names = list(TERMS)
    others = sorted({p.source for p in points} - {reference})
    x = np.array([[p.terms[t] for t in names] for p in points])
    y = np.log([p.latency_ms for p in points])
    which = np.array([others.index(p.source) if p.source in others else -1 for p in points])

    def residuals(theta: np.ndarray) -> np.ndarray:
        w = np.exp(theta[:len(names)])
        log_scale = np.where(which >= 0, np.append(theta[len(names):], 0.0)[which], 0.0)
        return np.log(np.maximum(x @ w, 1e-12)) + log_scale - y

    # Start with each term explaining an equal share of the mean latency.
    start = np.log(np.exp(y).mean() / len(names) / np.maximum(x.mean(axis=0), 1e-9))
    fit = least_squares(residuals, np.concatenate([start, np.zeros(len(others))]))
    weights = {t: float(np.exp(v)) for t, v in zip(names, fit.x[:len(names)], strict=True)}
    scales = {reference: 1.0, **{s: float(np.exp(v))
                                 for s, v in zip(others, fit.x[len(names):], strict=True)}}
    return weights, scales


def fit_calibration(points: Sequence[CalibrationPoint], *, device: str,
                    compute_units: str = "all", reference_source: str | None = None,
                    versions: dict[str, str] | None = None) -> Calibration:
    """Fit the predictor to measured ``points`` and measure its leave-one-out error.

    A source's scale needs at least one other row of that source, so in the leave-one-out a row
    that is its source's only one is predicted with the reference scale (noted in its row).
    """
    if len(points) < len(TERMS):
        raise CalibrationError(f"{len(points)} measurements: at least {len(TERMS)} are needed "
                               f"(one per term: {', '.join(TERMS)})")
    for p in points:
        if not p.latency_ms > 0:
            raise CalibrationError(f"{p.label}: latency_ms={p.latency_ms}: must be positive")
    sources = [p.source for p in points]
    reference = reference_source or max(sorted(set(sources)), key=sources.count)
    if reference not in sources:
        raise CalibrationError(f"reference source {reference!r}: no measurement comes from it")
    weights, scales = _solve(points, reference)
    rows, errors = [], []
    for i, p in enumerate(points):
        rest = [q for j, q in enumerate(points) if j != i]
        row: dict[str, Any] = {"label": p.label, "spec_id": p.spec_id,
                               "resolution": p.resolution, "source": p.source,
                               "latency_ms": p.latency_ms, "terms": p.terms}
        if len(rest) >= len(TERMS) and any(q.source == reference for q in rest):
            w, s = _solve(rest, reference)
            scale = s.get(p.source)
            if scale is None:
                scale, row["loo_note"] = 1.0, "only row of its source: reference scale"
            predicted = scale * sum(w[t] * p.terms[t] for t in w)
            row["loo_ms"] = round(predicted, 4)
            errors.append(abs(predicted - p.latency_ms) / p.latency_ms)
            row["loo_error"] = round(errors[-1], 4)
        rows.append(row)
    return Calibration(device=device, compute_units=compute_units, reference_source=reference,
                       weights={k: round(v, 6) for k, v in weights.items()},
                       scales={k: round(v, 6) for k, v in scales.items()}, points=tuple(rows),
                       loo_median=round(statistics.median(errors), 4) if len(errors) >= 3
                       else None,
                       loo_max=round(max(errors), 4) if len(errors) >= 3 else None,
                       versions=versions or feature_versions())


def feature_versions() -> dict[str, str]:
    """The versions the features depend on."""
    import coremltools
    import torch

    return {"coremltools": coremltools.__version__, "torch": torch.__version__.split("+")[0]}


def point_for(label: str, spec: ArchSpec, resolution: int, source: str,
              latency_ms: float) -> CalibrationPoint:
    """A calibration row for ``spec`` measured at ``latency_ms`` (converts it for its terms)."""
    return CalibrationPoint(label, spec.spec_id, resolution, source, latency_ms,
                            terms(spec_features(spec, resolution)))


def published_points() -> list[CalibrationPoint]:
    """The default calibration's rows: published iPhone 12 latencies (nas.latency.published)."""
    from nas.latency.published import IPHONE12_ROWS

    return [point_for(r.label, r.spec, r.resolution, r.source, r.latency_ms)  # type: ignore[arg-type]
            for r in IPHONE12_ROWS]


@lru_cache(maxsize=8)
def load_calibration(path: str | None = None) -> Calibration:
    """A calibration file, or the shipped iPhone 12 calibration."""
    return Calibration.load(path or DEFAULT_CALIBRATION)


@dataclass(frozen=True)
class PredictorOracle:
    """Predicts CoreML latency from the converted program of a spec (no device needed).

    ``calibration`` is a file written by ``nas latency calibrate`` (default: the shipped iPhone
    12 calibration). ``features`` says how the program's features are read, all three giving the
    same features: ``"templates"`` writes each unit's program down from its fields and converts
    only a unit no template describes (:mod:`nas.latency.templates`); ``"units"`` sums the
    features of the network's units, each converted once and kept in the sqlite file
    ``unit_cache`` (default: the latency cache; :mod:`nas.latency.blocks`); ``"network"``
    converts the whole network, the reference path.
    """

    resolution: int
    calibration: str | None = None
    features: str = "templates"
    unit_cache: str | None = None
    name: str = "predictor"

    def _context(self) -> dict[str, Any]:
        cal = load_calibration(self.calibration)
        return {"backend": "coreml-predictor", "device": f"{cal.device} (predicted)",
                "compute_units": cal.compute_units,
                "versions": {**cal.versions, "calibration": cal.digest},
                "resolution": self.resolution}

    def key(self, spec: ArchSpec) -> str:
        return context_key(spec, {**self._context(), "features": self.features})

    def program_features(self, spec: ArchSpec) -> ProgramFeatures:
        """The features the prediction is made from."""
        if self.features == "network":
            return spec_features(spec, self.resolution)
        from nas.latency.blocks import UnitFeatureCache, unit_features

        return unit_features(spec, self.resolution, UnitFeatureCache(self.unit_cache),
                             templates=self.features == "templates")

    def measure(self, spec: ArchSpec) -> LatencyResult:
        cal = load_calibration(self.calibration)
        values = terms(self.program_features(spec))
        predicted = round(cal.predict(values), 4)
        return LatencyResult(median_ms=predicted, trimmed_mean_ms=predicted, spread=0.0, runs=0,
                             details={"terms": values, "loo_median_error": cal.loo_median,
                                      "features": self.features},
                             **self._context())
