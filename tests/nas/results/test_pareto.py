"""Pareto sets and hypervolume against values worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from nas.results.pareto import (
    default_reference,
    front_rows,
    hypervolume,
    hypervolume_history,
    pareto_mask,
)

OBJ = [("accuracy", "maximize"), ("latency_ms", "minimize")]

# A: 70 % at 10 ms; B: 75 % at 12 ms; C is worse than B on both; D: 65 % at 8 ms; E repeats B
# (the same network evaluated twice); F is worse than everything; G has no latency.
TRIALS = pd.DataFrame({
    "number": [0, 1, 2, 3, 4, 5, 6],
    "accuracy": [70.0, 75.0, 72.0, 65.0, 75.0, 60.0, 99.0],
    "latency_ms": [10.0, 12.0, 15.0, 8.0, 12.0, 20.0, float("nan")],
})


def test_pareto_mask_keeps_the_non_dominated_rows_and_their_duplicates():
    values = TRIALS[["accuracy", "latency_ms"]].to_numpy()[:6]
    assert pareto_mask(values, [True, False]).tolist() == [True, True, False, True, True, False]
    # minimising both turns the question around: D (8 ms) and F (60 %) are then best
    assert pareto_mask(values, [False, False]).tolist() == [False, False, False, True, False, True]


def test_front_rows_skips_rows_with_a_missing_objective():
    assert front_rows(TRIALS, OBJ)["number"].tolist() == [0, 1, 3, 4]


def test_one_objective_front_is_the_best_value():
    assert pareto_mask(np.array([[3.0], [5.0], [5.0]]), [True]).tolist() == [False, True, True]
    assert pareto_mask(np.empty((0, 2)), [True, False]).tolist() == []


def test_hypervolume_matches_the_area_worked_by_hand():
    # Reference (50 %, 20 ms). Sweeping latency: 8-10 ms only D counts (65 - 50) * 2 = 30;
    # 10-12 ms A (70 - 50) * 2 = 40; 12-20 ms B (75 - 50) * 8 = 200. Total 270.
    ref = {"accuracy": 50.0, "latency_ms": 20.0}
    values = TRIALS[["accuracy", "latency_ms"]].to_numpy()[:6]
    assert hypervolume(values, OBJ, ref) == pytest.approx(270.0)
    assert hypervolume(values[[0]], OBJ, ref) == pytest.approx(200.0)  # (70-50) * (20-10)
    # points beyond the reference add nothing
    assert hypervolume(np.array([[40.0, 5.0], [80.0, 25.0]]), OBJ, ref) == 0.0


def test_hypervolume_history_grows_only_when_the_front_does():
    ref = {"accuracy": 50.0, "latency_ms": 20.0}
    history = hypervolume_history(TRIALS, OBJ, ref)
    assert history["number"].tolist() == list(range(7))
    # A alone 200; A+B: 40 + 200 = 240; C dominated; D adds 30; E repeats B; F dominated;
    # G has no latency.
    assert history["hypervolume"].tolist() == pytest.approx([200, 240, 240, 270, 270, 270, 270])


def test_default_reference_is_the_worst_value_pushed_out_by_a_tenth_of_the_range():
    ref = default_reference(TRIALS.iloc[:6], OBJ)
    assert ref["accuracy"] == pytest.approx(60 - 1.5)
    assert ref["latency_ms"] == pytest.approx(20 + 1.2)
    single = default_reference(pd.DataFrame({"accuracy": [50.0], "latency_ms": [4.0]}), OBJ)
    assert single["accuracy"] < 50 and single["latency_ms"] > 4
    assert all(math.isfinite(v) for v in single.values())
