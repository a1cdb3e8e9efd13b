"""The supernet evaluator: a study trains its supernet once, scores candidates with inherited
weights, refines its front standalone, and exports an inherited candidate like any other."""

import io
import json
import pathlib

import pytest
import torch

from nas.cli import main
from nas.evaluators.base import EvaluationError
from nas.results.runs import export_trial, load_trials, status_text
from nas.search.runner import run_study
from nas.study.config import Budget, SupernetConfig, parse_study
from nas.study.prepare import prepare
from nas.supernet.store import SupernetStore
from search_spaces import MobileViTSpace

ROOT = pathlib.Path(__file__).resolve().parents[3]
TINY = {"stem.width": {"high": 24}, "s1.width": {"high": 32}, "s2.width": {"high": 40},
        "s2.depth": {"high": 2}, "block": ["v2", "v3_v1"], "norm": ["group_norm", "layer_norm"],
        **{f"s{i}.width": {"low": 32, "high": 48} for i in (3, 4, 5)},
        **{f"s{i}.dim": {"low": 32, "high": 40} for i in (3, 4, 5)},
        **{f"s{i}.depth": {"high": 2} for i in (3, 4, 5)},
        **{f"s{i}.patch": [2] for i in (3, 4, 5)}}
DATA = {"kind": "proxy_train", "train_images": 48, "val_images": 24, "resolution": 32,
        "batch_size": 16}


def _study(tmp_path, **changes):
    data = {"name": "sn", "seed": 0, "space": TINY, "budget": {"max_params": 400_000},
            "objectives": [{"metric": "accuracy"}, {"metric": "params"}],
            "evaluator": {"kind": "supernet", "train": {**DATA, "epochs": 1},
                          "store": str(tmp_path / "store"), "calibration_batches": 1,
                          "refine": {"top_k": 2, "evaluator": {**DATA, "epochs": 1}}},
            "latency": {"kind": "none"}, "sampler": {"kind": "random"}, "trials": 6,
            "fixed_trials": [], "workers": {"concurrent": 2}, **changes}
    return prepare(parse_study(data, "test"), "test", run_dir=tmp_path / "run")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished supernet study, its progress text and its run folder."""
    tmp = tmp_path_factory.mktemp("supernet_study")
    stream = io.StringIO()
    summary = run_study(_study(tmp), stream=stream)
    return tmp, summary, stream.getvalue()


def test_a_supernet_study_trains_once_scores_inherited_weights_and_refines_its_front(finished):
    tmp, summary, progress = finished
    assert summary.finished and summary.counts.evaluated == 6 and summary.counts.failed == 0
    assert "supernet epoch 1/1" in progress and "trained in" in progress
    frame = load_trials(tmp / "run")
    ok = frame[frame.status == "ok"]
    assert set(ok.accuracy_source) == {"inherited"} and ok.accuracy.between(0, 100).all()
    assert (ok.fidelity.str.startswith("supernet")).all()
    # The front's best two by accuracy are retrained; nothing else is.
    front = ok[ok.pareto].sort_values("accuracy", ascending=False).drop_duplicates("spec_id")
    refined = ok[ok.refined_accuracy.notna()]
    assert set(refined.spec_id) == set(front.spec_id[:2])
    assert "refine 2/2" in progress
    assert "retrained" in status_text(tmp / "run")
    stored = SupernetStore(tmp / "store").entries()
    assert len(stored) == 1 and stored[0].complete
    assert stored[0].meta["history"][0]["steps"] == 3  # 48 images in batches of 16


def test_a_second_study_over_the_same_space_reuses_the_stored_supernet(finished, tmp_path):
    tmp, _, _ = finished
    store = tmp / "store"
    (key,) = [e.key for e in SupernetStore(store).entries()]
    weights = (store / key / "supernet.pt").stat().st_mtime_ns
    stream = io.StringIO()
    prepared = _study(tmp_path, trials=2, evaluator={
        "kind": "supernet", "train": {**DATA, "epochs": 1}, "store": str(store),
        "calibration_batches": 1})
    summary = run_study(prepared, stream=stream)
    assert summary.finished
    assert f"supernet {key}: stored in" in stream.getvalue()
    assert "supernet epoch" not in stream.getvalue()
    assert (store / key / "supernet.pt").stat().st_mtime_ns == weights
    assert len(SupernetStore(store).entries()) == 1


def test_the_refine_step_retrains_each_candidate_with_every_seed(finished, tmp_path):
    tmp, _, _ = finished
    prepared = _study(tmp_path, trials=2, seeds=2, evaluator={
        "kind": "supernet", "train": {**DATA, "epochs": 1}, "store": str(tmp / "store"),
        "calibration_batches": 1, "refine": {"top_k": 1, "evaluator": {**DATA, "epochs": 1}}})
    stream = io.StringIO()
    run_study(prepared, stream=stream)
    assert "2 seeds each" in stream.getvalue() and "seed 1 retrained" in stream.getvalue()
    from nas.results.refined import refined_by_source
    from nas.results.runs import open_run

    study, _ = open_run(tmp_path / "run")
    (source, trials), = refined_by_source(study).items()
    assert [t.user_attrs.get("seed_index", 0) for t in trials] == [0, 1]
    assert len({t.user_attrs["eval"]["seed"] for t in trials}) == 2
    frame = load_trials(tmp_path / "run")
    row = frame[frame.number == source].iloc[0]
    assert row.refined_seeds == 2 and row.refined_half_width >= 0
    mean = sum(t.user_attrs["accuracy"] for t in trials) / 2
    assert row.refined_accuracy == pytest.approx(mean)
    assert "±" in status_text(tmp_path / "run")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_training_on_the_driver_s_gpu_without_one_is_a_one_line_error(tmp_path):
    prepared = _study(tmp_path, evaluator={
        "kind": "supernet", "train": {**DATA, "epochs": 1}, "store": str(tmp_path / "store"),
        "train_gpus_per_worker": 1})
    config = prepared.config
    with pytest.raises(EvaluationError, match="train_gpus_per_worker=1: this process sees no "
                                              "CUDA device"):
        config.evaluator.build().for_search(prepared.space, config.budget, config.seed,
                                            say=lambda _: None)
    cpu = SupernetConfig(kind="supernet", train=DATA | {"epochs": 1}).build()
    gpu = SupernetConfig(kind="supernet", train=DATA | {"epochs": 1},
                         train_gpus_per_worker=1).build()
    space = MobileViTSpace(TINY, num_classes=10)
    # other kernels train other weights: a GPU-trained supernet has a store entry of its own
    assert cpu.key(space, Budget(max_params=400_000), 0) != \
        gpu.key(space, Budget(max_params=400_000), 0)


def test_the_store_key_follows_everything_that_changes_the_weights(tmp_path):
    space = MobileViTSpace(TINY, num_classes=10)
    ev = SupernetConfig(kind="supernet", train=DATA | {"epochs": 1}).build()
    key = ev.key(space, Budget(max_params=400_000), 0)
    assert key == ev.key(MobileViTSpace(TINY, num_classes=10), Budget(max_params=400_000), 0)
    assert key != ev.key(space, Budget(max_params=400_000), 1)
    assert key != ev.key(space, Budget(max_params=300_000), 0)
    assert key != ev.key(MobileViTSpace({**TINY, "s2.depth": 1}, num_classes=10),
                         Budget(max_params=400_000), 0)
    other = SupernetConfig(kind="supernet", train=DATA | {"epochs": 2}).build()
    assert key != other.key(space, Budget(max_params=400_000), 0)
    distill = SupernetConfig(kind="supernet", train=DATA | {"epochs": 1}, distill=False).build()
    assert key != distill.key(space, Budget(max_params=400_000), 0)


def test_an_exported_inherited_candidate_scores_what_its_trial_recorded(finished, tmp_path):
    tmp, _, _ = finished
    frame = load_trials(tmp / "run")
    plain = frame[(frame.status == "ok") & frame.refined_accuracy.isna()].iloc[0]
    written = export_trial(tmp / "run", int(plain.number), output=tmp_path / "export")
    assert {"spec", "weights", "coreml"} <= set(written)
    from mobilevit import create_model, load_spec
    from nas.study.prepare import stored_config

    config = stored_config(tmp / "run")
    spec = load_spec(written["spec"])
    net = create_model(spec)
    net.load_state_dict(torch.load(written["weights"], weights_only=True))
    evaluator = config.evaluator.build()
    space = MobileViTSpace(config.space, num_classes=10, resolution=256)
    (entry,) = SupernetStore(tmp / "store").entries()
    bound = evaluator.attached(space, entry.folder, config.seed)
    _, val = bound._data()
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in val)
    assert 100 * correct / sum(len(y) for _, y in val) == pytest.approx(plain.accuracy, abs=1e-3)


def test_a_refined_trial_exports_its_retrained_weights(finished, tmp_path):
    tmp, _, _ = finished
    frame = load_trials(tmp / "run")
    refined = frame[frame.refined_accuracy.notna()].iloc[0]
    written = export_trial(tmp / "run", int(refined.number), output=tmp_path / "export")
    source = tmp / "run" / "trials" / str(int(refined.number)) / "refined_weights.pt"
    assert written["weights"].read_bytes() == source.read_bytes()


def test_an_unprepared_evaluator_and_a_spec_outside_the_space_are_one_line_errors(finished):
    tmp, _, _ = finished
    from mobilevit import get_fixed_point
    from nas.study.prepare import stored_config

    config = stored_config(tmp / "run")
    spec = get_fixed_point("mobilevit_xxs").spec.replace(num_classes=10)
    with pytest.raises(EvaluationError, match="not prepared"):
        config.evaluator.build().evaluate(spec, seed=0, workdir=tmp, threads=1, device="cpu")
    (entry,) = SupernetStore(tmp / "store").entries()
    bound = config.evaluator.build().attached(MobileViTSpace(config.space, num_classes=10),
                                              entry.folder, 0)
    with pytest.raises(EvaluationError) as info:
        bound.evaluate(spec, seed=0, workdir=tmp, threads=1, device="cpu")
    assert "\n" not in str(info.value) and "space.block=v1" in str(info.value)


def test_nas_supernet_info_lists_the_store_and_says_whether_a_study_has_one(finished, capsys,
                                                                            tmp_path):
    tmp, _, _ = finished
    assert main(["supernet", "info", "--store", str(tmp / "store")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 supernet(s) in") and "sn: 1 epochs at 32 px" in out
    study = tmp_path / "study.yaml"
    run = json.loads(json.dumps(_study(tmp).config.model_dump(mode="json")))
    import yaml

    study.write_text(yaml.safe_dump({**run, "seed": 5}))
    assert main(["supernet", "info", str(study)]) == 0
    assert "not trained yet" in capsys.readouterr().out
    assert main(["supernet", "train", str(ROOT / "studies" / "smoke.yaml")]) == 2
    assert "evaluator.kind=dummy" in capsys.readouterr().err


def test_the_report_marks_inherited_accuracies_and_draws_them_against_the_retrained(finished):
    tmp, _, _ = finished
    from nas.report.data import load_report_data
    from nas.report.figures import FIGURES, refined_points, shown_figures

    data = load_report_data(tmp / "run")
    assert "inherited_retrained" in [f.id for f in shown_figures(data)]
    rows = refined_points(data)
    assert len(rows) == 2 and rows.retrained.between(0, 100).all()
    assert "inherited" in data.accuracy_label
    assert set(data.pareto_table.accuracy_source) == {"inherited"}
    FIGURES["inherited_retrained"].draw(data)  # draws


def _split_study(tmp_path, store, **changes):
    return _study(tmp_path, **{"trials": 6, **changes}, evaluator={
        "kind": "supernet", "train": {**DATA, "epochs": 1}, "store": str(store),
        "calibration_batches": 1, "split": ["block"], "split_epochs": 1})


@pytest.fixture(scope="module")
def split(finished, tmp_path_factory):
    """A split (few-shot) study over the finished study's space and store: its shared supernet
    is the finished study's, and one sub-supernet per block design is trained from it."""
    tmp, _, _ = finished
    run = tmp_path_factory.mktemp("split_study")
    stream = io.StringIO()
    summary = run_study(_split_study(run, tmp / "store"), stream=stream)
    return tmp / "store", run / "run", summary, stream.getvalue()


def test_a_split_study_trains_a_sub_supernet_per_block_from_the_shared_one(split):
    store, run, summary, progress = split
    assert summary.finished and summary.counts.failed == 0
    entries = {e.key: e for e in SupernetStore(store).entries()}
    parts = [e for e in entries.values() if "part" in e.meta]
    (shared,) = [e for e in entries.values() if "part" not in e.meta]
    # The shared supernet is the unsplit study's (split is not in its key): reused, not retrained.
    assert f"supernet {shared.key}: stored in" in progress
    assert len(entries) == 3 and all(e.complete for e in entries.values())
    assert sorted(e.meta["part"] for e in parts) == ["block=v2", "block=v3_v1"]
    assert {e.meta["from"] for e in parts} == {shared.key}
    space = MobileViTSpace(TINY, num_classes=10)
    scored = _split_trials(run)
    assert scored and all(t.user_attrs["eval"]["inherited"] for t, _ in scored)
    for trial, spec in scored:
        provenance = trial.user_attrs["eval"]
        assert provenance["split"] == {"block": space.params_for(spec)["block"]}
        assert entries[provenance["supernet"]].meta["part"] == f"block={provenance['split']['block']}"


def _split_trials(run):
    """The split study's scored trials, each with its spec."""
    from mobilevit import load_spec
    from nas.results.runs import open_run

    study, _ = open_run(run)
    return [(t, load_spec(run / "specs" / f"{t.user_attrs['spec_id']}.json"))
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("eval") and "duplicate_of" not in t.user_attrs]


def test_a_second_split_study_reuses_every_stored_sub_supernet(split, tmp_path):
    store, _, _, _ = split
    before = {e.key: (e.weights).stat().st_mtime_ns for e in SupernetStore(store).entries()}
    stream = io.StringIO()
    assert run_study(_split_study(tmp_path, store, trials=2), stream=stream).finished
    progress = stream.getvalue()
    assert progress.count(", reused") == 3 and "supernet epoch" not in progress
    assert {e.key: e.weights.stat().st_mtime_ns for e in SupernetStore(store).entries()} == before


def test_a_split_candidates_saved_weights_score_what_its_trial_recorded(split, tmp_path):
    store, run, _, _ = split
    from mobilevit import create_model
    from nas.evaluators.supernet import save_inherited_weights
    from nas.study.prepare import stored_config

    config = stored_config(run)
    _, val = config.evaluator.build().attached(
        MobileViTSpace(config.space, num_classes=10), store, config.seed)._data()
    for trial, spec in _split_trials(run)[:2]:
        path = save_inherited_weights(config, trial.user_attrs["eval"], spec,
                                      tmp_path / f"{trial.number}.pt")
        net = create_model(spec)
        net.load_state_dict(torch.load(path, weights_only=True))
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in val)
        assert 100 * correct / sum(len(y) for _, y in val) == pytest.approx(
            trial.user_attrs["accuracy"], abs=1e-3)


def test_check_and_supernet_info_list_a_splits_sub_supernets(split, capsys, tmp_path):
    store, _, _, _ = split
    import yaml

    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(json.loads(json.dumps(
        _split_study(tmp_path, store).config.model_dump(mode="json")))))
    assert main(["supernet", "info", str(study)]) == 0
    out = capsys.readouterr().out
    assert out.count("  part ") == 2 and "part v2: " in out and "part v3_v1: " in out
    assert "not trained yet" not in out
    assert main(["check", str(study), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    parts = facts["cost"]["supernet"]["parts"]
    assert [p["split"] for p in parts] == [{"block": "v2"}, {"block": "v3_v1"}]
    assert all(p["stored"] for p in parts)


@pytest.mark.parametrize(("changes", "fault"), [
    ({"split": ["no_such"]}, "evaluator.split[0]=\"no_such\""),
    ({"split_epochs": 2}, "split_epochs=2: needs split"),
    ({"split": ["block", "block"]}, "listed twice"),
    ({"split_lr": 1e-4}, "split_lr=0.0001: needs split"),
    ({"split": ["block"], "split_lr": 0}, "evaluator.split_lr=0"),
])
def test_a_bad_split_is_a_one_line_error_naming_it(changes, fault, tmp_path):
    from nas.study.config import StudyError

    with pytest.raises(StudyError) as info:
        _study(tmp_path, evaluator={"kind": "supernet", "train": {**DATA, "epochs": 1},
                                    **changes})
    assert fault in str(info.value) and "\n" not in str(info.value)


def test_the_split_epochs_train_at_their_own_learning_rate_under_their_own_key(tmp_path):
    space = MobileViTSpace(TINY, num_classes=10)
    budget = Budget(max_params=400_000)
    base = {"kind": "supernet", "train": DATA | {"epochs": 2}, "split": ["block"]}
    plain, slow = (SupernetConfig(**base), SupernetConfig(**base, split_epochs=1, split_lr=1e-4))
    assert plain.part_train_config() == plain.train_config()
    part = slow.part_train_config()
    assert (part.epochs, part.recipe.lr) == (1, 1e-4)
    assert part.recipe.min_lr <= 1e-4 and part.recipe.warmup_init_lr <= 1e-4
    assert part.model_copy(update={"epochs": 2, "recipe": plain.train_config().recipe}) == \
        plain.train_config()
    # the shared supernet is the same; its parts are not
    assert plain.build().key(space, budget, 0) == slow.build().key(space, budget, 0)
    assert plain.build().part_key(space, budget, 0, ("v2",)) != \
        slow.build().part_key(space, budget, 0, ("v2",))
