"""Pareto sets and hypervolume of a study's objectives (moocore does the geometry).

Objectives are given as ``(column, direction)`` pairs, direction ``"maximize"`` or ``"minimize"``,
so the same functions serve a study's objectives and any 2-D view of them (accuracy vs latency).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Objectives = Sequence[tuple[str, str]]


def _maximise(objectives: Objectives) -> list[bool]:
    return [direction == "maximize" for _, direction in objectives]


def pareto_mask(values: Any, maximise: Sequence[bool]) -> np.ndarray:
    """Which rows of ``values`` (n x m) no other row dominates; equal rows are all kept (a network
    evaluated twice is on the front twice)."""
    import moocore

    points = np.asarray(values, dtype=float)
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    if points.ndim != 2 or points.shape[1] < 1:
        raise ValueError(f"values: expected an n x m array, got shape {points.shape}")
    if points.shape[1] == 1:  # one objective: the best value(s)
        column = points[:, 0] if maximise[0] else -points[:, 0]
        return column == column.max()
    return np.asarray(moocore.is_nondominated(points, maximise=list(maximise), keep_weakly=True))


def front_rows(frame: Any, objectives: Objectives) -> Any:
    """The rows of ``frame`` on the Pareto front of ``objectives`` (rows with a missing value are
    not candidates), in the frame's order."""
    columns = [c for c, _ in objectives]
    usable = frame.dropna(subset=columns)
    mask = pareto_mask(usable[columns].to_numpy(float), _maximise(objectives))
    return usable[mask]


def default_reference(frame: Any, objectives: Objectives, margin: float = 0.1) -> dict[str, float]:
    """A reference point for the hypervolume: each objective's worst value in ``frame`` moved
    ``margin`` of its range further out (so the worst points still add volume)."""
    reference = {}
    for column, direction in objectives:
        values = frame[column].dropna().astype(float)
        if values.empty:
            raise ValueError(f"{column}: no values to place a hypervolume reference at")
        low, high = float(values.min()), float(values.max())
        pad = margin * (high - low) or margin * abs(high) or margin
        reference[column] = low - pad if direction == "maximize" else high + pad
    return reference


def hypervolume(values: Any, objectives: Objectives, reference: Mapping[str, float]) -> float:
    """Hypervolume dominated by ``values`` (n x m, columns in the order of ``objectives``) and
    bounded by ``reference``; points on the wrong side of the reference add nothing."""
    import moocore

    maximise = _maximise(objectives)
    ref = np.array([reference[c] for c, _ in objectives], dtype=float)
    points = np.asarray(values, dtype=float).reshape(-1, len(objectives))
    better = np.where(maximise, points > ref, points < ref).all(axis=1)
    points = points[better]
    if len(points) == 0:
        return 0.0
    if len(objectives) == 1:  # a segment: from the reference to the best value
        return float(np.abs(points[:, 0] - ref[0]).max())
    return float(moocore.hypervolume(points, ref=ref, maximise=maximise))


def hypervolume_history(frame: Any, objectives: Objectives, reference: Mapping[str, float],
                        order: str = "number") -> Any:
    """The hypervolume of the front after each row of ``frame`` (in ``order``), one row per input
    row: ``order`` value and ``hypervolume``. Rows with a missing objective add nothing."""
    import pandas as pd

    columns = [c for c, _ in objectives]
    maximise = _maximise(objectives)
    rows = frame.sort_values(order)
    front = np.empty((0, len(columns)))
    current = 0.0
    history = []
    for key, point in zip(rows[order], rows[columns].to_numpy(float), strict=True):
        if not np.isnan(point).any():
            candidate = np.vstack([front, point])
            keep = pareto_mask(candidate, maximise)
            if keep[-1]:  # the new point is on the front: the volume may have grown
                front = candidate[keep]
                current = hypervolume(front, objectives, reference)
        history.append((key, current))
    return pd.DataFrame(history, columns=[order, "hypervolume"])
