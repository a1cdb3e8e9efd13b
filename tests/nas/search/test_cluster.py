"""A study on a real multi-node Ray cluster whose device node dies mid-study (issue 12).

The cluster is started with the `ray` CLI as separate processes (tests/cluster.py): a head with one
CPU, and a node with one CPU and the custom resource ``iphone`` that `latency: {kind: ray_device}`
measurements need (the Mac with the phone, here timing PyTorch with the `local` runner). The study
(studies/smoke.yaml, the dummy evaluator at a few seconds per trial) runs as `nas run` in a
process of its own, connected through ``workers.address``. When a latency measurement is running
on the device node (its package converted, the timing rounds under way: a marker the task itself
writes), every process of that node is killed at once; a replacement device node is then started,
and the study must finish on what is left: the trials that were running on the dead node (or
waiting for its measurement) are recorded as interrupted and re-queued, not failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster import RayCluster, ray_cli

REPO = Path(__file__).resolve().parents[3]
SMOKE = REPO / "studies" / "smoke.yaml"
STUDY_TIMEOUT_S = 600

pytestmark = [pytest.mark.slow, pytest.mark.service("ray-cluster")]


@pytest.fixture
def cluster():
    """An empty cluster (no node yet); every process it started is killed afterwards."""
    ray = ray_cli()
    if ray is None:
        pytest.skip("the `ray` CLI is not installed (pip install 'ray[tune]' provides it)")
    if not Path("/proc/self/stat").exists():
        pytest.skip("finding a node's processes needs Linux's /proc")
    c = RayCluster(ray)
    try:
        yield c
    finally:
        left = c.stop()
        assert not left, f"Ray processes of the test cluster survived ray stop: {left}"


def smoke_study(tmp_path: Path, address: str) -> Path:
    """studies/smoke.yaml on the cluster, with its latency measured on the ``iphone`` node."""
    data = yaml.safe_load(SMOKE.read_text())
    # the two fixed trials and one candidate: each measurement converts the candidate to CoreML
    # first (15-40 s on a busy 2-core machine), one at a time on the single `iphone`
    data["trials"] = 3
    data["evaluator"] = {"kind": "dummy", "seconds": 2}
    # 2 x 40 timed predictions at 64 px: timing takes seconds, so the node can be killed while
    # a measurement is under way
    data["latency"] = {"kind": "ray_device", "resource": "iphone", "runner": "local",
                       "resolution": 64, "rounds": 2, "iterations": 40,
                       "cache": str(tmp_path / "latency.sqlite")}
    data["workers"] = {"address": address, "concurrent": 2}
    path = tmp_path / "smoke_cluster.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def packages(node_tmp: Path) -> list[Path]:
    """Packages on a node: `_device_job` converts the candidate into a ``nas-device-*``
    temporary folder of the node's TMPDIR, then times it there."""
    return sorted(node_tmp.glob("nas-device-*/*.mlpackage"))


def measuring(node_tmp: Path) -> str | None:
    """The spec id of a package converted in full on the node (being timed), or None."""
    from mobilevit import ArchSpec
    from nas.latency.package import package_metadata

    for package in packages(node_tmp):
        try:
            return ArchSpec.from_json(package_metadata(package)["spec_json"]).spec_id
        except Exception:  # still being written
            continue
    return None


def latency_spec_id(run_dir: Path, trial, classes: int) -> str:
    """The id of the spec whose latency a trial measures (its network, the budget's classes)."""
    from mobilevit import ArchSpec

    spec = ArchSpec.from_json((run_dir / "specs" / f"{trial.user_attrs['spec_id']}.json")
                              .read_text())
    return spec.replace(num_classes=classes).spec_id


def wait_for(condition, what: str, driver: subprocess.Popen, log: Path, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if driver.poll() is not None:
            pytest.fail(f"the study ended (rc {driver.returncode}) before {what}:\n"
                        f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def test_study_survives_the_death_of_its_device_node(cluster, tmp_path):
    pytest.importorskip("coremltools", reason="ray_device latency converts to CoreML")
    started = time.monotonic()
    cluster.start_head(num_cpus=1)
    device = cluster.add_node("device", num_cpus=1, resources={"iphone": 1})
    study = smoke_study(tmp_path, cluster.address)
    run_dir = tmp_path / "run"
    log = tmp_path / "driver.log"
    with open(log, "wb") as out:
        driver = subprocess.Popen([sys.executable, "-m", "nas.cli", "run", str(study), "--output",
                                   str(run_dir)], cwd=REPO, env=cluster.env, stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
    try:
        # the known point: a measurement under way on the device node
        measured_spec = wait_for(lambda: measuring(device.tmp), "measurement on the device node",
                                 driver, log)
        assert device.running("_device_job"), "a package is being timed but no device task runs"
        killed = cluster.kill(device)
        killed_at = time.monotonic() - started
        assert killed and not device.pids()
        assert packages(device.tmp), "the measurement ended before the node was killed"
        replacement = cluster.add_node("device2", num_cpus=1, resources={"iphone": 1})
        try:
            rc = driver.wait(timeout=STUDY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the study did not finish in {STUDY_TIMEOUT_S} s after the node died:\n"
                        f"{log.read_text()[-3000:]}")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    output = log.read_text()
    assert rc == 0, output[-3000:]
    elapsed = time.monotonic() - started

    from nas.results.outcome import TrialStatus, count_trials
    from nas.results.runs import open_run

    study_obj, config = open_run(run_dir)
    assert config.workers.address == cluster.address
    trials = study_obj.get_trials(deepcopy=False)
    counts = count_trials(trials)
    table = "\n".join(f"{t.number} {t.state.name} {t.user_attrs.get('status')} "
                      f"{t.user_attrs.get('spec_id')} requeued_from="
                      f"{t.user_attrs.get('requeued_from')} {t.user_attrs.get('fail_reason', '')}"
                      for t in trials)
    assert counts.evaluated == config.trials, table
    assert counts.running == 0 and counts.waiting == 0, table
    ok = [t for t in trials if TrialStatus.of(t) is TrialStatus.OK]
    # every latency was measured by a device task (the local runner on an `iphone` node; the
    # head has none, so none could run there), after the death on the replacement node
    assert ok and all("local runner" in t.user_attrs["latency"]["backend"] for t in ok), table
    assert packages(replacement.tmp) == []  # finished measurements clean up after themselves
    # trials ran on the cluster's nodes, latency measurements on the `iphone` nodes alone
    ran = {node.name: node.tasks_run() for node in cluster.nodes}
    assert "execute" in ran["head"] and "_device_job" not in ran["head"], ran
    assert "_device_job" in ran["device"] and "_device_job" in ran["device2"], ran
    print(f"cluster study: {elapsed:.0f} s, {len(killed)} processes of the device node killed at "
          f"{killed_at:.0f} s; tasks per node {ran}\n{table}")

    # What the runner must make of the dead node: interrupted and re-queued, not failed.
    # The trial whose measurement died with the node may itself run on the head: it then gets
    # RayTaskError(NodeDiedError) from its device task, which is a NodeDiedError as well.
    classes = config.budget.count_classes
    failed = [t for t in trials if TrialStatus.of(t) is TrialStatus.FAILED]
    assert not failed, f"trials lost with the node were recorded as failed:\n{table}"
    interrupted = [t for t in trials if t.state.name == "FAIL"
                   and TrialStatus.of(t) is TrialStatus.INTERRUPTED]
    assert any(latency_spec_id(run_dir, t, classes) == measured_spec for t in interrupted), table
    by_origin = {t.user_attrs.get("requeued_from"): t for t in trials}
    for t in interrupted:
        again = by_origin.get(t.number)
        assert again is not None, f"interrupted trial {t.number} was not re-queued:\n{table}"
        assert again.params == t.params
        assert TrialStatus.of(again) is TrialStatus.OK, table
    assert any(latency_spec_id(run_dir, t, classes) == measured_spec for t in ok), (
        f"the network measured when the node died ({measured_spec}) was not evaluated later\n"
        f"{table}")
