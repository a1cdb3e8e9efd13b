"""Features from the converted CoreML program, the calibrated predictor, its cache path and CLI."""

import csv
import dataclasses
import json

import pytest

from mobilevit import get_fixed_point
from mobilevit.attention import ATTENTIONS
from mobilevit.complexity import complexity
from mobilevit.spec import block
from nas.cli import main
from nas.latency import LatencyCache, cached_latency
from nas.latency import blocks as blocks_module
from nas.latency import predictor as predictor_module
from nas.latency.features import FEATURES, spec_features
from nas.latency.predictor import (
    DEFAULT_CALIBRATION,
    TERMS,
    Calibration,
    CalibrationError,
    CalibrationPoint,
    PredictorOracle,
    fit_calibration,
    load_calibration,
    terms,
)
from nas.latency.published import IPHONE12_ROWS, WITHHELD_ROWS

pytestmark = pytest.mark.coreml

XXS = get_fixed_point("mobilevit_xxs").spec


@pytest.mark.parametrize("family", ["v1", "v2", "v3_v1", "v3_v2"])
@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_each_block_kind_converts_and_its_features_add_up(family, attention):
    spec = _with_family(XXS, family, attention)
    features = spec_features(spec, 64)
    assert set(features.values) == set(FEATURES)
    assert features["max_rank"] <= 5  # what CoreML accepts
    # The program's multiply-accumulates are the network's (complexity counts what fvcore does,
    # which adds a little for norms and pooling).
    work = features["conv_gmacs"] + features["dwconv_gmacs"] + features["matmul_gmacs"]
    macs = complexity(spec, 64).macs / 1e9
    assert 0.9 * macs <= work <= 1.001 * macs
    assert features["layout_ops"] > 0 and features["conv_ops"] > 0
    if ATTENTIONS[attention].uses_heads:  # attention over tokens: an N x N matrix per head
        assert features.op_types["softmax"] >= 1 and features["attention_mb"] > 0
        assert features["max_tokens"] > 0


def _with_family(spec, family, attention):
    """``spec`` with every block rebuilt as ``family`` with ``attention``."""
    stages = []
    for stage in spec.stages:
        if stage.block is not None:
            b = stage.block
            stage = dataclasses.replace(stage, block=block(
                family, dim=b.dim, ffn_dim=b.ffn_dim, depth=b.depth, attention=attention))
        stages.append(stage)
    return spec.replace(stages=tuple(stages))


def test_shipped_calibration_is_the_fit_of_its_rows_and_meets_the_error_target():
    cal = load_calibration()
    assert cal.device == "iPhone 12" and set(cal.weights) == set(TERMS)
    assert len(cal.points) == len(IPHONE12_ROWS)
    points = [CalibrationPoint(p["label"], p["spec_id"], p["resolution"], p["source"],
                               p["latency_ms"], p["terms"]) for p in cal.points]
    refit = fit_calibration(points, device=cal.device, versions=cal.versions)
    assert refit.weights == pytest.approx(cal.weights, rel=1e-3)
    assert refit.scales == pytest.approx(cal.scales, rel=1e-3)
    assert refit.loo_median == pytest.approx(cal.loo_median, abs=1e-3)
    assert cal.loo_median <= 0.15  # the target for the leave-one-out median
    for row, p in zip(IPHONE12_ROWS, cal.points, strict=True):
        assert row.spec.spec_id == p["spec_id"] and row.latency_ms == p["latency_ms"]


def test_stored_terms_are_what_the_converter_gives_today():
    cal = load_calibration()
    row = next(p for p in cal.points if p["label"] == "MobileViTv2-0.5")
    spec = get_fixed_point("mobilevitv2_050").spec
    assert terms(spec_features(spec, row["resolution"])) == pytest.approx(row["terms"], rel=1e-6)


def test_predictions_are_monotone_where_they_must_be():
    oracle = PredictorOracle(resolution=128)  # the ordering holds at any size; 128 is quicker
    v2 = [oracle.measure(get_fixed_point(n).spec).median_ms
          for n in ("mobilevitv2_050", "mobilevitv2_100", "mobilevitv2_200")]
    assert v2[0] < v2[1] < v2[2]
    s = oracle.measure(get_fixed_point("mobilevit_s").spec).median_ms
    withheld = {r.label: oracle.measure(r.spec).median_ms for r in WITHHELD_ROWS[:1]}
    assert withheld["MobileViT-S, patches (8,4,2)"] < s  # larger patches are faster (v1 paper)


def test_the_cache_answers_a_second_query_without_converting(tmp_path, monkeypatch):
    oracle = PredictorOracle(resolution=64)
    cache = LatencyCache(tmp_path / "latency.sqlite")
    first, hit = cached_latency(oracle, XXS, cache)
    assert not hit and first.runs == 0 and first.backend == "coreml-predictor"
    assert first.details["terms"]["work_gmacs"] > 0

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(predictor_module, "spec_features", no_conversion)
    monkeypatch.setattr(blocks_module, "convert_units", no_conversion)
    again, hit = cached_latency(oracle, XXS, cache)
    assert hit and again == first
    other = PredictorOracle(resolution=96)  # another resolution is another key
    assert other.key(XXS) != oracle.key(XXS)


def test_template_unit_and_whole_network_predictions_agree_under_their_own_keys(tmp_path):
    cache = str(tmp_path / "units.sqlite")
    oracles = [PredictorOracle(resolution=64, unit_cache=cache),
               PredictorOracle(resolution=64, unit_cache=cache, features="units"),
               PredictorOracle(resolution=64, features="network")]
    assert oracles[0].features == "templates"
    assert len({o.key(XXS) for o in oracles}) == 3
    templates, *others = [o.measure(XXS) for o in oracles]
    for other in others:
        assert templates.median_ms == pytest.approx(other.median_ms, rel=1e-4)
        assert templates.details["terms"] == pytest.approx(other.details["terms"], rel=1e-4,
                                                           abs=1e-6)


def _synthetic_points(weights):
    points = []
    for name in ("mobilevit_xxs", "mobilevitv2_050", "mobilevitv3_xxs", "mobilevitv3_050"):
        values = terms(spec_features(get_fixed_point(name).spec, 64))
        latency = sum(weights[t] * values[t] for t in weights)
        points.append((name, latency))
    return points


def test_calibrate_from_a_measurements_file_recovers_the_device(tmp_path, capsys):
    truth = {"work_gmacs": 2.0, "attention_mb": 0.5, "layout_mb": 0.25}
    path = tmp_path / "measured.csv"
    points = _synthetic_points(truth)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "resolution", "latency_ms"])
        for name, latency in points:
            writer.writerow([name, 64, f"{latency:.6f}"])
    out = tmp_path / "cal.json"
    assert main(["latency", "calibrate", "--measurements", str(path), "--device", "Test phone",
                 "-o", str(out)]) == 0
    assert "leave-one-out relative error: median 0.0%" in capsys.readouterr().out
    cal = Calibration.load(out)
    assert cal.weights == pytest.approx(truth, rel=1e-3) and cal.device == "Test phone"
    for features in ("templates", "units", "network"):
        assert main(["latency", "mobilevit_xxs", "--resolution", "64", "--calibration", str(out),
                     "--features", features, "--cache", str(tmp_path / "cache.sqlite"),
                     "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        expected = dict(points)["mobilevit_xxs"]
        assert result["median_ms"] == pytest.approx(expected, rel=1e-3)
        assert result["device"] == "Test phone (predicted)" and not result["cached"]


@pytest.mark.parametrize("text, message", [
    ("model,latency_ms\nmobilevit_q,3\n", "measured.csv:2: model=mobilevit_q"),
    ("model,latency_ms\nmobilevit_xxs,fast\n", "measured.csv:2: latency_ms='fast'"),
    ("model,ms\nmobilevit_xxs,3\n", "missing latency_ms"),
    ("model,latency_ms\nmobilevit_xxs,3\n", "1 measurements: at least 3 are needed"),
])
def test_bad_measurement_files_are_one_line_errors(tmp_path, capsys, text, message):
    path = tmp_path / "measured.csv"
    path.write_text(text)
    assert main(["latency", "calibrate", "--measurements", str(path), "--device", "x",
                 "-o", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_broken_calibration_file_is_named(tmp_path, capsys):
    bad = tmp_path / "cal.json"
    bad.write_text("{}")
    assert main(["latency", "mobilevit_xxs", "--calibration", str(bad)]) == 2
    assert f"{bad}: not a latency calibration" in capsys.readouterr().err
    with pytest.raises(CalibrationError):
        Calibration.load(DEFAULT_CALIBRATION.with_name("missing.json"))
