import pytest

from mobilevit import get_fixed_point
from nas.latency import LatencyCache, LatencyResult, LocalLatencyOracle, cached_latency

CONTEXT = dict(backend="torch-eager", device="test cpu", compute_units="cpu",
               versions={"torch": "x"}, resolution=64)


def test_statistics_of_samples():
    r = LatencyResult.from_samples([10, 11, 12, 13, 14, 15, 16, 17, 18, 100], **CONTEXT)
    assert r.median_ms == 14.5 and r.runs == 10
    assert r.trimmed_mean_ms == pytest.approx(14.5)  # the 100 ms outlier is trimmed
    assert r.spread > 0.5
    assert LatencyResult.from_samples([5.0], **CONTEXT).spread == 0


def test_cache_round_trip_and_keys(tmp_path):
    cache = LatencyCache(tmp_path / "lat.sqlite")
    oracle = LocalLatencyOracle(resolution=64, threads=1, runs=2, warmup=0)
    spec = get_fixed_point("mobilevitv2_050").spec
    first, hit = cached_latency(oracle, spec, cache)
    assert not hit and first.runs == 2 and first.median_ms > 0 and first.backend == "torch-eager"
    again, hit = cached_latency(oracle, spec, LatencyCache(tmp_path / "lat.sqlite"))
    assert hit and again == first  # persisted across cache objects (and processes)
    assert oracle.key(spec) != LocalLatencyOracle(resolution=128, threads=1, runs=2,
                                                  warmup=0).key(spec)
    assert oracle.key(spec) != oracle.key(spec.replace(num_classes=10))
    assert oracle.key(spec).startswith(spec.spec_id)
