"""The latency agent: HTTP protocol end to end with the local runner, as a Ray resource, its
refusals, the client's retries, and the device description each oracle object keeps."""

import io
import json
import pickle
import threading
import urllib.request
import zipfile

import pytest

from mobilevit import get_fixed_point
from nas.latency import LatencyCache, LatencyResult, cached_latency, oracles
from nas.latency import client as client_module
from nas.latency.client import AgentClient
from nas.latency.errors import AgentError
from nas.latency.oracles import AgentOracle, RayDeviceOracle
from nas.latency.package import export_archive, read_package
from nas.latency.runners import LocalRunner, device_key
from nas.latency.server import AgentServer
from nas.latency.stats import MeasureProtocol, run_protocol
from tests.nas.process_state import unchanged_process_state

pytestmark = pytest.mark.coreml

XXS = get_fixed_point("mobilevit_xxs").spec
QUICK = MeasureProtocol(rounds=2, iterations=3, attempts=1)


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

    result = run_protocol(time_round, MeasureProtocol(rounds=3, iterations=4, trim=0.25, attempts=3),
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


def _post(url, body, token="s3cret", length=None, options=None):
    request = urllib.request.Request(url + "/v1/measure", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/zip"})
    if options is not None:
        request.add_header("X-Measure-Options", json.dumps(options))
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


def test_unknown_measurement_options_are_refused_naming_them(agent, archive):
    status, body = _post(agent.url, archive, options={"rounds": 2, "warmup": 3})
    assert status == 400 and "unknown measurement option 'warmup'" in body
    assert "expected: rounds, iterations, trim, max_spread, attempts, resolution" in body
    status, body = _post(agent.url, archive, options=["rounds", 2])
    assert status == 400 and "expected a JSON object" in body
    # The client refuses them before sending anything (no agent listens on port 9).
    client = AgentClient("http://127.0.0.1:9", attempts=1)
    with pytest.raises(AgentError, match=r"unknown measurement options 'iters', 'warmup'"):
        client.measure_options(archive, {"iters": 3, "warmup": 1, "rounds": 2})
    assert agent.served == 0
    good = AgentClient(agent.url, token="s3cret").measure_options(
        archive, {"rounds": 2, "iterations": 3, "attempts": 1, "resolution": 64})
    assert good.runs == 6 and agent.served == 1


def test_an_unreachable_agent_is_retried_then_a_clear_error(monkeypatch):
    waits, tries = [], []
    real = urllib.request.urlopen
    monkeypatch.setattr(client_module, "_sleep", waits.append)
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda *a, **k: tries.append(1) or real(*a, **k))
    client = AgentClient("http://127.0.0.1:9", attempts=3, backoff_s=0.05, timeout_s=2)
    with pytest.raises(AgentError, match=r"unreachable after 3 attempts"):
        client.info()
    assert len(tries) == 3 and waits == [0.05, 0.1]  # the backoff between the tries


def test_the_agent_description_belongs_to_each_oracle_object(agent, archive, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(oracles, "export_archive", lambda spec, resolution: archive)
    oracle = AgentOracle(agent.url, resolution=64, token="s3cret", protocol=QUICK)
    before = oracle.key(XXS)
    agent.runner = LocalRunner(threads=2)  # the agent restarts on another device, same URL
    after = AgentOracle(agent.url, resolution=64, token="s3cret", protocol=QUICK).key(XXS)
    assert after != before  # a new object asks again: nothing is remembered per process
    assert pickle.loads(pickle.dumps(oracle)).key(XXS) == after  # so does a copy for a worker
    # The old object still has the old description: its measurement comes from the new device
    # and is stored under the new device's key, never the stale one; then the object asks again.
    cache = LatencyCache(tmp_path / "latency.sqlite")
    result, hit = cached_latency(oracle, XXS, cache)
    assert not hit and "2 threads" in result.device
    assert cache.get(after) == result and cache.get(before) is None
    assert oracle.key(XXS) == after and device_key(XXS, agent.runner.info(), 64) == after


def test_the_local_runner_leaves_the_process_as_it_found_it(archive, tmp_path):
    package = read_package(archive, tmp_path, 2**30)
    with unchanged_process_state():
        result = LocalRunner(threads=1).measure(package, QUICK, 64)
    assert result.runs == 6


def test_a_study_with_an_unreachable_agent_records_failures_and_finishes(tmp_path):
    import yaml

    from nas.results.runs import open_run
    from nas.search.runner import run_study
    from nas.study.config import parse_study
    from nas.study.prepare import prepare

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


def test_a_cached_candidate_does_not_wait_for_the_device(ray_with_iphone, tmp_path):
    ray = ray_with_iphone

    @ray.remote(num_cpus=0, resources={"iphone": 1})
    class Measuring:  # holds the only `iphone`, as a long measurement of another candidate does
        def ready(self):
            return True

    holder = Measuring.remote()
    ray.get(holder.ready.remote())
    cache = LatencyCache(tmp_path / "latency.sqlite")
    canned = LatencyResult.from_samples([1.5], backend="b", device="d", compute_units="c",
                                        versions={}, resolution=64)
    done, out = threading.Event(), {}

    def look_up():
        try:
            oracle = RayDeviceOracle(LocalRunner(), resolution=64, protocol=QUICK)
            cache.put(oracle.key(XXS), canned)
            out["result"] = cached_latency(
                RayDeviceOracle(LocalRunner(), resolution=64, protocol=QUICK), XXS, cache)
        except Exception as exc:  # reported below
            out["error"] = exc
        done.set()

    threading.Thread(target=look_up, daemon=True).start()
    try:
        finished = done.wait(300)  # a generous bound: a lookup waiting for the device never ends
    finally:
        ray.kill(holder)
    assert finished, "the cached lookup waited for the `iphone` resource"
    assert "error" not in out, out.get("error")
    assert out["result"] == (canned, True)


def test_measure_as_a_ray_resource(ray_with_iphone, tmp_path):
    oracle = RayDeviceOracle(LocalRunner(), resolution=64, protocol=QUICK)
    result, hit = cached_latency(oracle, XXS, LatencyCache(tmp_path / "latency.sqlite"))
    assert not hit and result.runs == 6 and "local runner" in result.backend
    assert oracle.key(XXS).startswith(XXS.spec_id)
    assert oracle.key(XXS) == device_key(XXS, LocalRunner().info(), 64)
