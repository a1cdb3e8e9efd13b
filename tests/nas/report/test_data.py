"""The report's tables from a hand-made table of trials (no run folder, no browser)."""

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mobilevit import FIXED_POINTS, get_fixed_point
from nas.errors import NasError
from nas.report.data import (
    MIN_TRIALS_FOR_IMPORTANCE,
    build_report_data,
    published_frame,
    short_name,
    spec_family,
)
from nas.report.figures import FIGURES
from nas.study.config import parse_study

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 1, 1, 9, 0)


def _config(**changes):
    data = yaml.safe_load((ROOT / "studies" / "smoke.yaml").read_text())
    data.update(changes)
    return parse_study(data, "test")


def _row(number, status, accuracy=None, latency=None, *, params=1_000_000, fixed=None,
         spec_id=None, reason=None, block="v1", width=64, minutes=1.0):
    return {"number": number, "status": status, "fixed_point": fixed, "accuracy": accuracy,
            "latency_ms": latency, "params": params, "macs": params * 300, "spec_id": spec_id,
            "fail_reason": reason, "latency_spread": 0.1 if latency else None,
            "fidelity": "dummy" if accuracy is not None else "",
            "oracle": "torch-eager, CPU" if latency else "",
            "started": T0 + timedelta(minutes=number), "finished":
                T0 + timedelta(minutes=number + minutes),
            "param.block": block, "param.s3.width": width, "param.norm": "layer_norm"}


def _frame():
    xxs = get_fixed_point("mobilevit_xxs").spec
    rows = [
        _row(0, "ok", 70.0, 10.0, fixed="mobilevit_xxs", spec_id=xxs.spec_id),
        _row(1, "ok", 75.0, 12.0, block="v2", width=96),
        _row(2, "ok", 72.0, 15.0, width=80),
        _row(3, "ok", 65.0, 8.0, block="v3_v1", width=48),
        _row(4, "infeasible", params=9_000_000, reason="over budget: params"),
        _row(5, "failed", reason="RuntimeError: out of memory"),
        _row(6, "pruned", 40.0, 9.0),
    ]
    frame = pd.DataFrame(rows)
    frame["pareto"] = [True, True, False, True, False, False, False]
    return frame, {xxs.spec_id: xxs}


def test_tables_hold_every_trial_the_front_and_the_hypervolume():
    frame, specs = _frame()
    data = build_report_data(frame, _config(), run_dir="runs/x", specs=specs,
                             reference={"accuracy": 50.0, "latency_ms": 20.0})
    assert data.front["number"].tolist() == [3, 0, 1]  # by latency; 2 dominated; 6 pruned
    assert data.hypervolume["hypervolume"].tolist() == pytest.approx(
        [200, 240, 240, 270, 270, 270, 270])  # the hand-worked values of tests/nas/results/test_pareto
    points = FIGURES["accuracy_latency"].table(data)
    assert sorted(points.query("series == 'trial'")["number"]) == list(range(7))
    assert len(points.query("series == 'published'")) == len(FIXED_POINTS)
    assert data.pareto_table["export"].tolist() == [
        "nas export runs/x --trial 3", "nas export runs/x --trial 0", "nas export runs/x --trial 1"]
    # the spec gives the fixed point's family and summary; the search parameter the others'
    row0 = data.trials.set_index("number").loc[0]
    assert row0["label"] == "v1-XXS" and row0["family"] == "v1"
    assert row0["summary"] == get_fixed_point("mobilevit_xxs").spec.summary()
    assert data.trials.set_index("number").loc[3, "family"] == "v3_v1"
    assert data.trials.set_index("number").loc[0, "latency_err_ms"] == pytest.approx(0.5)


def test_progress_counts_trials_in_the_order_they_finished():
    frame, specs = _frame()
    data = build_report_data(frame, _config(), specs=specs)
    p = data.progress
    assert p["evaluated"].tolist() == [1, 2, 3, 4, 4, 5, 6]  # infeasible trial 4 not trained
    assert p["rejected"].tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert p["elapsed_min"].iloc[-1] == pytest.approx(7.0)
    assert p["best_accuracy"].tolist() == [70, 75, 75, 75, 75, 75, 75]  # pruned 40 % not counted


def test_parallel_coordinates_drop_constant_choices_and_importance_needs_trials():
    frame, specs = _frame()
    data = build_report_data(frame, _config(), specs=specs)
    assert list(data.parallel.columns) == ["number", "block", "s3.width", "accuracy",
                                           "latency_ms"]
    assert sorted(data.parallel["number"]) == [0, 1, 2, 3]  # completed trials only
    assert str(MIN_TRIALS_FOR_IMPORTANCE) in data.notes["importance"]


def test_published_axes_depend_on_what_was_measured():
    frame, specs = _frame()
    data = build_report_data(frame, _config(), specs=specs)
    # dummy accuracies and CPU latencies are not the papers' ImageNet top-1 and iPhone ms
    assert data.published_accuracy_on_own_axis and data.published_latency_on_own_axis
    frame["oracle"] = frame["oracle"].where(frame["oracle"] == "", "coreml-predictor, iPhone 12")
    assert not build_report_data(frame, _config(), specs=specs).published_latency_on_own_axis


def test_a_reference_must_name_each_objective():
    frame, specs = _frame()
    with pytest.raises(NasError, match="--reference accuracy: give one value for each objective"):
        build_report_data(frame, _config(), reference={"accuracy": 0.0})


def test_an_empty_run_gives_empty_tables():
    frame = pd.DataFrame([_row(0, "running")]).assign(finished=None, pareto=False)
    data = build_report_data(frame, _config())
    assert data.front.empty and data.pareto_table.empty
    assert data.notes["hypervolume"] == "no completed trials yet"


def test_published_frame_and_short_names_cover_the_model_table():
    pub = published_frame()
    assert list(pub["name"]) == list(FIXED_POINTS)
    assert pub.set_index("name").loc["mobilevit_s", "latency_ms"] == pytest.approx(9.85)
    assert pub["label"].is_unique
    assert [short_name(n) for n in ("mobilevit_xxs", "mobilevitv2_075", "mobilevitv2_100",
                                    "mobilevitv3_xs_l2", "mobilevitv3_050")] == [
        "v1-XXS", "v2-0.75", "v2-1.0", "v3-XS-L2", "v3-0.5"]
    assert {spec_family(fp.spec) for fp in FIXED_POINTS.values()} == {"v1", "v2", "v3_v1",
                                                                       "v3_v2"}
