"""The latency agent: HTTP protocol end to end with the local runner, as a Ray resource, its
refusals, and the client's retries."""

import io
import time
import urllib.request
import zipfile

import pytest

from mobilevit import get_fixed_point
from nas.latency import LatencyCache, cached_latency
from nas.latency.agent import (
    AgentClient,
    AgentError,
    AgentOracle,
    AgentServer,
    LocalRunner,
    Protocol,
    RayDeviceOracle,
    export_archive,
    run_protocol,
)

pytestmark = pytest.mark.coreml

XXS = get_fixed_point("mobilevit_xxs").spec
QUICK = Protocol(rounds=2, iterations=3, attempts=1)


@pytest.fixture(scope="module")
def archive():
    return export_archive(XXS, 64)


@pytest.fixture
def agent():
    server = AgentServer(LocalRunner(), port=0, token="s3cret", max_upload_mb=5)
    server.start()
    yield server
    server.stop()


def test_modelbench_protocol_statistics_and_re_measurement():
    calls = []

    def time_round(n):
        calls.append(n)
        first_attempt = len(calls) <= 3
        # Round 1 of the first attempt is slow: the rounds disagree, so all are measured again.
        base = 20.0 if first_attempt and len(calls) == 1 else 10.0
        return [base, base + 1, base + 2, base + 100]  # one outlier per round, trimmed

    result = run_protocol(time_round, Protocol(rounds=3, iterations=4, trim=0.25, attempts=3),
                          backend="b", device="d", compute_units="c", versions={}, resolution=8)
    assert calls == [4] * 6 and result.details["attempts"] == 2
    assert result.trimmed_mean_ms == pytest.approx(11.5)  # mean of 11, 12 per round
    assert result.runs == 12 and result.details["round_spread"] == 0.0


def test_measure_over_http_with_the_local_runner_and_cache(agent, tmp_path):
    oracle = AgentOracle(agent.url, resolution=64, token="s3cret", protocol=QUICK)
    cache = LatencyCache(tmp_path / "latency.sqlite")
    result, hit = cached_latency(oracle, XXS, cache)
    assert not hit and result.runs == 6 and result.median_ms > 0
    assert "local runner, not CoreML" in result.backend and result.resolution == 64
    again, hit = cached_latency(oracle, XXS, cache)
    assert hit and again.median_ms == result.median_ms and agent.served == 1


def _post(url, body, token="s3cret", length=None):
    request = urllib.request.Request(url + "/v1/measure", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/zip"})
    if length is not None:
        request.add_header("Content-Length", str(length))
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _zip(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_refusals_are_clear_and_the_agent_keeps_serving(agent, archive):
    client = AgentClient(agent.url, token="wrong", attempts=1)
    with pytest.raises(AgentError, match="missing or wrong token"):
        client.info()
    assert _post(agent.url, archive, token="")[0] == 401
    status, body = _post(agent.url, b"x" * (6 * 2**20))
    assert status == 413 and "over the agent's limit of 5 MB" in body
    status, body = _post(agent.url, b"not a zip")
    assert status == 400 and "not a zip archive" in body
    status, body = _post(agent.url, _zip({"readme.txt": "hello"}))
    assert status == 400 and "one .mlpackage folder" in body
    broken = _zip({"m.mlpackage/Manifest.json": "{broken",
                   "m.mlpackage/Data/com.apple.CoreML/model.mlmodel": "garbage"})
    status, body = _post(agent.url, broken)
    assert status == 400 and "corrupt CoreML package" in body
    status, body = _post(agent.url, _zip({"../evil.mlpackage/Manifest.json": "{}"}))
    assert status == 400 and "unsafe path" in body
    # ... and a good request still gets measured.
    good = AgentClient(agent.url, token="s3cret").measure(archive, QUICK, 64)
    assert good.runs == 6 and agent.served == 1


def test_an_agent_off_loopback_needs_a_token():
    with pytest.raises(AgentError, match="needs a token"):
        AgentServer(LocalRunner(), host="0.0.0.0", port=0)


def test_an_unreachable_agent_is_retried_then_a_clear_error():
    client = AgentClient("http://127.0.0.1:9", attempts=3, backoff_s=0.05, timeout_s=2)
    start = time.perf_counter()
    with pytest.raises(AgentError, match=r"unreachable after 3 attempts"):
        client.info()
    assert time.perf_counter() - start >= 0.05 + 0.1  # the backoff between the tries


def test_a_study_with_an_unreachable_agent_records_failures_and_finishes(tmp_path):
    import yaml

    from nas.config import parse_study
    from nas.results import open_run
    from nas.runner import run_study
    from nas.study import prepare

    data = yaml.safe_load(open("studies/smoke.yaml"))
    data.update(trials=2, fixed_trials=["mobilevit_xxs"],
                latency={"kind": "agent", "url": "http://127.0.0.1:9", "resolution": 64,
                         "attempts": 2, "backoff_s": 0.0})
    prepared = prepare(parse_study(data, "agent.yaml"), "agent.yaml", run_dir=tmp_path / "run")
    summary = run_study(prepared, stream=None)
    assert summary.finished and summary.counts.failed == 2
    study, _ = open_run(tmp_path / "run")
    reasons = [t.user_attrs.get("fail_reason", "") for t in study.trials]
    assert all("unreachable after 2 attempts" in r for r in reasons), reasons


def test_measure_as_a_ray_resource(tmp_path):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, resources={"iphone": 1}, include_dashboard=False,
             object_store_memory=256 * 2**20)
    oracle = RayDeviceOracle(LocalRunner(), resolution=64, protocol=QUICK)
    result, hit = cached_latency(oracle, XXS, LatencyCache(tmp_path / "latency.sqlite"))
    assert not hit and result.runs == 6 and "local runner" in result.backend
    assert oracle.key(XXS).startswith(XXS.spec_id)
