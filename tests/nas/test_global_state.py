"""Library calls leave process-wide state as they found it: torch's thread count, the levels of
fvcore's, coremltools', torch's and Optuna's loggers, Optuna's verbosity, sys.stdout and
sys.stderr, the warning filters; also when they raise. (CoreML conversion itself: test_export.py;
the agent's local runner: test_latency_agent.py.)"""

import math
import sys
import threading

import pytest
import torch

from mobilevit import get_fixed_point
from nas.runtime import torch_threads
from tests.nas.process_state import SENTINEL_THREADS, unchanged_process_state

TINY = get_fixed_point("mobilevitv3_xxs_l2").spec.replace(num_classes=10)


def test_profile_restores_fvcore_logging_and_warning_filters():
    from nas.profile import profile

    with unchanged_process_state():
        assert profile(TINY, 64).macs > 0


def test_a_failing_conversion_restores_streams_loggers_and_filters(monkeypatch, tmp_path):
    import nas.export

    streams = {}

    def broken(model, resolution):
        streams["during"] = sys.stdout, sys.stderr
        raise RuntimeError("torch.export failed")

    monkeypatch.setattr(nas.export, "exported_program", broken)
    with unchanged_process_state(), pytest.raises(RuntimeError, match="torch.export failed"):
        streams["before"] = sys.stdout, sys.stderr
        nas.export.export_model(TINY, tmp_path / "m", resolution=64)
    assert all(d is not b for d, b in zip(streams["during"], streams["before"], strict=True))


@pytest.mark.parametrize("proxy", ["params", "synflow"])
def test_zero_cost_evaluator_restores_the_thread_count(tmp_path, monkeypatch, proxy):
    from nas.evaluators import zero_cost
    from nas.study.config import ZeroCostConfig

    seen = []
    real = zero_cost.synflow

    def spy(model, resolution):
        seen.append(torch.get_num_threads())
        return real(model, resolution)

    monkeypatch.setattr(zero_cost, "synflow", spy)
    evaluator = zero_cost.ZeroCostEvaluator(ZeroCostConfig(kind="zero_cost", proxy=proxy,
                                                           resolution=32))
    with unchanged_process_state():
        evaluator.evaluate(TINY, seed=0, workdir=tmp_path, threads=1, device="cpu")
    assert seen == ([1] if proxy == "synflow" else [])  # it scored with the count it was given


def test_zero_cost_evaluator_restores_the_thread_count_when_it_raises(tmp_path, monkeypatch):
    from nas.evaluators import zero_cost
    from nas.evaluators.base import EvaluationError
    from nas.study.config import ZeroCostConfig

    monkeypatch.setattr(zero_cost, "synflow", lambda model, resolution: -math.inf)
    evaluator = zero_cost.ZeroCostEvaluator(ZeroCostConfig(kind="zero_cost", proxy="synflow",
                                                           resolution=32))
    with unchanged_process_state(), pytest.raises(EvaluationError, match="synflow score"):
        evaluator.evaluate(TINY, seed=0, workdir=tmp_path, threads=1, device="cpu")


def _proxy_training():
    from nas.evaluators.train import TrainEvaluator
    from nas.study.config import ProxyTrainConfig

    config = ProxyTrainConfig(kind="proxy_train", train_images=16, val_images=8, epochs=1,
                              batch_size=8, resolution=32, save_weights=False)
    return TrainEvaluator(config.as_train(), name="proxy_train")


def test_training_evaluator_restores_the_thread_count(tmp_path):
    seen = []

    def on_epoch(epoch, accuracy):
        seen.append(torch.get_num_threads())
        return True

    with unchanged_process_state():
        _proxy_training().evaluate(TINY, seed=0, workdir=tmp_path, threads=1, device="cpu",
                                   on_epoch=on_epoch)
    assert seen == [1]  # it trained with the count it was given


def test_training_evaluator_restores_the_thread_count_when_it_raises(tmp_path):
    def on_epoch(epoch, accuracy):
        raise KeyboardInterrupt  # what a driver's stop looks like to the evaluator

    with unchanged_process_state(), pytest.raises(KeyboardInterrupt):
        _proxy_training().evaluate(TINY, seed=0, workdir=tmp_path, threads=1, device="cpu",
                                   on_epoch=on_epoch)


def test_local_latency_oracle_restores_the_thread_count():
    from nas.latency import LocalLatencyOracle

    with unchanged_process_state():
        LocalLatencyOracle(resolution=32, threads=1, warmup=0, runs=1).measure(TINY)


def _run_folder(tmp_path):
    import optuna
    import yaml

    from nas.study.config import parse_study
    from nas.study.prepare import open_storage, write_config

    config = parse_study(yaml.safe_load(open("studies/smoke.yaml")), "smoke.yaml")
    run_dir = tmp_path / "run"
    write_config(config, run_dir)
    storage = open_storage(config, run_dir)
    optuna.create_study(study_name=config.name, storage=storage,
                        directions=config.directions)
    shadow = optuna.create_study(study_name=f"{config.name}.accuracy", storage=storage,
                                 direction="maximize")
    return run_dir, config, shadow


def test_reading_a_run_and_reporting_an_epoch_leave_optunas_verbosity(tmp_path):
    import optuna

    from nas.results.runs import open_run
    from nas.search.pruning import EpochReporter
    from nas.study.config import PrunerConfig

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # quiet while the folder is made
    run_dir, config, shadow = _run_folder(tmp_path)
    trial = shadow.ask()
    address = f"journal:{run_dir / 'journal.log'}"
    with unchanged_process_state():
        study, _ = open_run(run_dir)
        assert study.study_name == config.name
        reporter = EpochReporter(shadow.study_name, address, trial._trial_id,
                                 PrunerConfig(kind="median"), max_epochs=3)
        assert reporter(0, 50.0) is True


def test_torch_threads_restores_the_count_also_on_an_exception():
    torch.set_num_threads(SENTINEL_THREADS)
    try:
        with pytest.raises(ValueError), torch_threads(1):
            assert torch.get_num_threads() == 1
            raise ValueError
        assert torch.get_num_threads() == SENTINEL_THREADS
    finally:
        torch.set_num_threads(1)


def test_quiet_blocks_overlapping_in_two_threads_restore_everything_exactly():
    # Thread a enters a block that quiets fvcore, then b a conversion's; a leaves first, then b.
    # With nested catch_warnings / redirect_stdout blocks, b would put back a's filters and
    # replacement streams for good; shared changes restore each thing once, when the last one out
    # leaves.
    from nas.export import quiet_converters
    from nas.runtime import quiet

    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with quiet(("fvcore",)):
            seen["a"] = sys.stdout
            a_in.set()
            b_in.wait(60)
        seen["after a"] = sys.stdout
        a_out.set()

    def b():
        a_in.wait(60)
        with quiet_converters():
            b_in.set()
            a_out.wait(60)

    with unchanged_process_state():
        threads = [threading.Thread(target=f) for f in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert seen["a"] is sys.stdout  # a alone does not touch the streams
        assert seen["after a"] is not sys.stdout  # b was still converting: still quiet
