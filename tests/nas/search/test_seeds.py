"""Repeated seeds: each seed of a fixed trial is a trial of its own with its own seed and the same
network, timed once; a resumed study repeats none and loses none; raising ``seeds`` adds the
missing ones; a trial at chance level is flagged."""

import io
import pathlib

import pytest
import yaml

import mobilevit
from nas.results.outcome import TrialStatus
from nas.results.runs import open_run, status_text, trials_frame
from nas.search.runner import run_study, seed_index, trial_seed
from nas.study.config import parse_study
from nas.study.prepare import prepare

ROOT = pathlib.Path(__file__).resolve().parents[3]
SMOKE = ROOT / "studies" / "smoke.yaml"
FIXED = ["mobilevit_xxs", "mobilevitv3_xxs"]


def _data(**changes):
    data = yaml.safe_load(SMOKE.read_text())
    data["evaluator"] = {**data["evaluator"], "seconds": 0.05, "seed_noise": 3.0}
    data.update({"fixed_trials": FIXED, **changes})
    return data


def _study(tmp_path, **changes):
    return prepare(parse_study(_data(**changes), "test"), "test", run_dir=tmp_path / "run")


def _fixed_id(name):
    return mobilevit.get_fixed_point(name).spec.replace(num_classes=10).spec_id


def _seeds_by_row(trials):
    rows = {}
    for t in trials:
        if t.user_attrs.get("fixed_point") and TrialStatus.of(t) is TrialStatus.OK:
            rows.setdefault(t.user_attrs["fixed_point"], []).append(seed_index(t.user_attrs))
    return {name: sorted(v) for name, v in rows.items()}


def test_each_seed_is_a_trial_of_its_own_with_the_same_network_timed_once(tmp_path):
    prepared = _study(tmp_path, seeds=3, trials=6)
    summary = run_study(prepared, stream=None)
    assert summary.finished and summary.counts.evaluated == 6
    study, config = open_run(tmp_path / "run")
    assert config.seeds == 3
    trials = study.get_trials(deepcopy=False)
    assert _seeds_by_row(trials) == {name: [0, 1, 2] for name in FIXED}
    for name in FIXED:
        mine = [t for t in trials if t.user_attrs.get("fixed_point") == name]
        assert {t.user_attrs["spec_id"] for t in mine} == {_fixed_id(name)}
        seeds = [t.user_attrs["eval"]["seed"] for t in mine]
        assert len(set(seeds)) == 3  # distinct seeds, derived from the study, network, index
        assert sorted(seeds) == sorted(trial_seed(config, _fixed_id(name), k) for k in range(3))
        assert len({t.user_attrs["accuracy"] for t in mine}) == 3
        assert len({t.user_attrs["latency_ms"] for t in mine}) == 1  # one timing per network
        assert not any("duplicate_of" in t.user_attrs for t in mine)
    # Seed 0 is the seed a study without repeats gives, so earlier results still match.
    assert trial_seed(config, "abc", 0) == trial_seed(config, "abc")
    text = status_text(tmp_path / "run")
    assert "fixed trials over their seeds" in text and "±" in text and "(3 seeds)" in text
    assert "noise: seed sd" in text  # the study's own seeds give its noise floor


def test_raising_seeds_on_a_run_folder_adds_the_missing_seeds_and_keeps_the_rest(tmp_path):
    prepared = _study(tmp_path, trials=2)
    run_study(prepared, stream=None)
    study, _ = open_run(tmp_path / "run")
    first = {t.number: t.values for t in study.get_trials() if t.state.name == "COMPLETE"}
    assert _seeds_by_row(study.get_trials()) == {name: [0] for name in FIXED}
    summary = run_study(prepared, seeds=2, trials=4, stream=None)
    assert summary.finished and summary.new_trials == 2
    study, config = open_run(tmp_path / "run")
    assert config.seeds == 2
    trials = study.get_trials()
    assert _seeds_by_row(trials) == {name: [0, 1] for name in FIXED}
    assert all(trials[n].values == v for n, v in first.items())


@pytest.mark.slow
def test_a_study_killed_between_seeds_resumes_without_repeating_or_losing_one(tmp_path,
                                                                             cpu_hog):
    from tests.nas.search.test_runner import _cli_run, _killed_at, _snapshot

    data = _data(seeds=3, trials=6, name="smoke")
    data["evaluator"]["record"] = str(tmp_path / "evaluated.txt")
    run_dir, command = _cli_run(tmp_path, data)
    _killed_at("returned@3", command, tmp_path)  # two seeds recorded, a third in hand
    before = _snapshot(run_dir)
    done = {(t.user_attrs["fixed_point"], seed_index(t.user_attrs)): t.values
            for t in before if TrialStatus.of(t) is TrialStatus.OK}
    assert len(done) == 2
    in_hand = [t for t in before if t.state.name == "RUNNING"]
    assert in_hand
    import subprocess

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    trials = _snapshot(run_dir)
    ok = [(t.user_attrs["fixed_point"], seed_index(t.user_attrs)) for t in trials
          if TrialStatus.of(t) is TrialStatus.OK]
    assert sorted(ok) == sorted((name, k) for name in FIXED for k in range(3))  # each once
    after = {(t.user_attrs["fixed_point"], seed_index(t.user_attrs)): t.values
             for t in trials if TrialStatus.of(t) is TrialStatus.OK}
    assert all(after[key] == v for key, v in done.items())  # nothing recorded was redone
    # Every seed was evaluated for its recorded trial, plus once for each trial running at the
    # kill (the one with its result in hand was never recorded, so it is evaluated again).
    assert len((tmp_path / "evaluated.txt").read_text().split()) <= 6 + len(in_hand)


def test_a_trial_at_chance_level_is_flagged_in_progress_status_and_table(tmp_path):
    chance = _fixed_id("mobilevit_xxs")
    prepared = _study(tmp_path, trials=2, evaluator={"kind": "dummy", "seconds": 0.05,
                                                     "chance": [chance]})
    stream = io.StringIO()
    run_study(prepared, stream=stream)
    progress = stream.getvalue()
    assert "at chance level" in progress and "AT CHANCE 1" in progress
    study, _ = open_run(tmp_path / "run")
    frame = trials_frame(study)
    flagged = frame[frame.chance]
    assert list(flagged.spec_id) == [chance]
    assert "at chance level: 1 trial(s)" in status_text(tmp_path / "run")


def test_only_the_first_trials_at_chance_are_warned_about_one_by_one(tmp_path):
    both = [_fixed_id(name) for name in FIXED]
    prepared = _study(tmp_path, trials=6, seeds=3, evaluator={"kind": "dummy", "seconds": 0.05,
                                                              "chance": both})
    stream = io.StringIO()
    run_study(prepared, stream=stream)
    progress = stream.getvalue()
    assert progress.count("scored 10.0 %, at chance level") == 3
    assert progress.count("more trials at chance level") == 1 and "AT CHANCE 6" in progress


def test_an_ablation_s_trials_follow_its_seeds():
    data = yaml.safe_load((ROOT / "studies/ablations/v3_block.yaml").read_text())
    data.pop("extends")
    base = yaml.safe_load((ROOT / "studies/ablations/_fidelity.yaml").read_text())
    config = parse_study({**base, **data, "seeds": 3}, "test")
    assert config.trials == 3 * len(data["fixed_trials"])
    from nas.study.prepare import with_overrides

    assert with_overrides(config, seeds=2).trials == 2 * len(data["fixed_trials"])
    supernet = parse_study(yaml.safe_load((ROOT / "studies/under_6m.yaml").read_text())
                           | {"seeds": 3}, "test")
    assert supernet.fixed_seeds == 1  # inherited weights: the trial seed changes nothing


def test_a_front_closer_than_the_measured_noise_floor_says_so(tmp_path, monkeypatch):
    import json

    import nas.results.runs as runs
    from nas.study.config import evaluator_key

    prepared = _study(tmp_path, trials=3, fixed_trials=[])
    run_study(prepared, stream=None)
    assert "noise:" not in status_text(tmp_path / "run")  # no seeds, no measured floor
    floors = tmp_path / "floors.json"
    floors.write_text(json.dumps({evaluator_key(prepared.config.evaluator): {
        "sd": 50.0, "fidelity": "test", "measured": "by hand"}}))
    monkeypatch.setattr(runs, "FLOORS_FILE", floors)
    text = status_text(tmp_path / "run")
    assert "noise: seed sd 50.00 % (measured for this fidelity: by hand)" in text
    assert "their order on accuracy is within noise" in text
    floors.write_text(json.dumps({evaluator_key(prepared.config.evaluator): {
        "sd": 1e-6, "fidelity": "test", "measured": "by hand"}}))
    text = status_text(tmp_path / "run")
    assert "noise: seed sd 0.00 %" in text and "are that close" not in text
