"""Paper ablations: every file loads and builds, sizes match the papers, a smoke run gives the
table with every row, and the ordering verdict is right on hand-made tables."""

import pathlib

import pandas as pd
import pytest
import torch

from mobilevit import create_model, num_params
from nas.cli import main
from nas.report.page import write_report
from nas.results.ablation import (
    ablation_files,
    ablation_table,
    ordering,
    smoke_fidelity,
    table_text,
    write_ablation,
)
from nas.results.noise import PairVerdict
from nas.results.runs import open_run, trials_frame
from nas.search.runner import run_study
from nas.study.config import StudyError, load_study
from nas.study.prepare import load, prepare

ROOT = pathlib.Path(__file__).resolve().parents[3]
ABLATIONS = ROOT / "studies" / "ablations"
FILES = ablation_files(ABLATIONS)


def test_the_issue_s_ablations_are_all_there():
    assert {p.stem for p in FILES} == {"v1_patch_size", "v1_fusion_skip", "v1_heads",
                                       "v2_attention", "v3_block", "v1_multiscale", "v1_ls_ema",
                                       "v1_weight_decay"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_ablation_loads_builds_and_matches_the_published_sizes(path):
    prepared = load(path)
    ab = prepared.config.ablation
    assert ab is not None and ab.paper and prepared.config.trials == len(prepared.fixed)
    assert ab.baseline in {f.name for f in prepared.fixed}
    for fixed in prepared.fixed:
        model = create_model(fixed.spec).eval()
        with torch.no_grad():
            out = model(torch.rand(1, 3, 64, 64))
        assert out.shape == (1, fixed.spec.num_classes)
        pub = fixed.published
        assert pub is not None and (pub.top1 is not None or pub.latency_ms is not None)
        if pub.params_m is not None:
            # counted as the papers count: a 1000-class head at 256x256
            params = num_params(create_model(fixed.spec.replace(num_classes=1000)))
            # the v1 paper prints MobileViT-S as 5.6 M (Table 3) and 5.7 M (Table 6)
            assert params / 1e6 == pytest.approx(pub.params_m, rel=0.025), fixed.name


def test_patch_sizes_change_no_parameter_and_the_rows_differ_where_they_should():
    fixed = {f.name: f for f in load(ABLATIONS / "v1_patch_size.yaml").fixed}
    counts = {n: num_params(create_model(f.spec)) for n, f in fixed.items()}
    assert len(set(counts.values())) == 1  # every patch size: the same parameters
    assert [b.patch_size for b in (s.block for s in fixed["(8,4,2)"].spec.stages) if b] == [
        (8, 8), (4, 4), (2, 2)]
    v3 = {f.name: f for f in load(ABLATIONS / "v3_block.yaml").fixed}
    ids = [f.spec.spec_id for f in v3.values()]
    assert len(set(ids)) == len(ids)  # each change is a different network
    last = next(s.block for s in v3["+ depthwise local conv"].spec.stages if s.block)
    assert last.family == "v3_v1"  # all four changes make the v3 block
    recipe = {f.name: f for f in load(ABLATIONS / "v1_weight_decay.yaml").fixed}
    assert len({f.spec.spec_id for f in recipe.values()}) == 1  # same network, other training
    assert recipe["wd 0.1"].evaluator.recipe.weight_decay == 0.1
    assert recipe["wd 0.01"].evaluator is None  # the study's own evaluator


def test_the_smoke_fidelity_drops_a_pruner_one_epoch_cannot_use():
    from nas.results.ablation import with_fidelity

    # a fidelity with early stopping after 1 of 4 epochs; the smoke fidelity trains 1 epoch
    config = with_fidelity(load_study(ABLATIONS / "v1_heads.yaml"),
                           ROOT / "studies" / "cifar10_proxy.yaml")
    assert config.pruner.kind == "successive_halving" and config.pruner.min_epochs == 1
    smoke = smoke_fidelity(config)
    assert smoke.evaluator.epochs == 1 and smoke.pruner.kind == "none"


def _smoke(name, tmp_path):
    path = ABLATIONS / f"{name}.yaml"
    config = smoke_fidelity(load(path).config)
    return prepare(config, str(path), base_dir=path.parent, run_dir=tmp_path / name)


def test_a_smoke_run_of_the_v3_block_ablation_gives_every_row(tmp_path, capsys):
    prepared = _smoke("v3_block", tmp_path)
    summary = run_study(prepared, stream=None)
    assert summary.finished
    table, text = write_ablation(prepared.run_dir)
    assert list(table["row"]) == [f.name for f in prepared.fixed]
    assert (table["status"] == "ok").all(), trials_frame(open_run(prepared.run_dir)[0])[
        ["number", "status", "fail_reason"]].to_string()
    assert table["accuracy"].notna().all()
    assert table["latency_ms"].notna().all() and table["params_m"].notna().all()
    assert table.loc[0, "accuracy_vs_baseline"] == 0
    assert table["published_top1_vs_baseline"].tolist() == pytest.approx([0, 1.1, 1.0, 1.6, 1.3])
    assert (prepared.run_dir / "ablation.csv").exists()
    for row in table["row"]:
        assert row in text
    assert "top-1: " in text and "Kendall tau" in text
    # the report page carries the same table
    files = write_report(prepared.run_dir)
    assert len(pd.read_csv(files.data["ablation"])) == 5
    assert "Ablation: MobileViT v3" in files.html.read_text()


def test_ablations_with_seeds_report_every_row_s_mean_interval_and_verdict(tmp_path, capsys):
    out = tmp_path / "abl"
    assert main(["ablations", "--run", "--smoke", "--seeds", "2", "--quiet", "v1_patch_size",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "95 % interval" in text and "vs baseline" in text
    table = pd.read_csv(out / "v1_patch_size" / "ablation.csv")
    assert (table["seeds"] == 2).all() and table["accuracy_low"].notna().all()
    assert table.loc[0, "verdict"] == "baseline"
    assert set(table["verdict"][1:]) <= {"same order as the paper", "opposite order",
                                         "within noise"}
    study, config = open_run(out / "v1_patch_size")
    assert config.seeds == 2 and config.trials == 8
    files = write_report(out / "v1_patch_size")
    rows = pd.read_csv(files.data["ablation_rows"])
    assert (rows["seeds"] == 2).all()
    assert "fig-ablation_rows" in files.html.read_text()


def test_recipe_rows_are_trained_separately_even_on_the_same_network(tmp_path):
    prepared = _smoke("v1_ls_ema", tmp_path)
    run_study(prepared, stream=None)
    study, _ = open_run(prepared.run_dir)
    trials = study.get_trials(deepcopy=False)
    assert [t.user_attrs.get("status") for t in trials] == ["ok"] * 3, \
        [t.user_attrs.get("fail_reason") for t in trials]
    assert len({t.user_attrs["spec_id"] for t in trials}) == 1
    assert len({t.user_attrs["evaluator_key"] for t in trials}) == 3
    assert not any("duplicate_of" in t.user_attrs for t in trials)
    ema = {t.user_attrs["fixed_point"]: t.user_attrs["eval"]["ema"] for t in trials}
    assert ema == {"neither": False, "LS": False, "LS + EMA": True}


def _table(paper, ours, status="ok"):
    return pd.DataFrame({"row": [f"r{i}" for i in range(len(paper))], "published_top1": paper,
                         "accuracy": ours, "status": status, "published_latency_ms": None,
                         "latency_ms": None})


def test_ordering_verdicts():
    same = ordering(_table([78.4, 77.6, 77.3], [40.0, 35.0, 30.0]))
    assert same.same and same.kendall_tau == 1.0 and same.paper == ("r0", "r1", "r2")
    flipped = ordering(_table([78.4, 77.6, 77.3], [30.0, 35.0, 40.0]))
    assert not flipped.same and flipped.kendall_tau == -1.0 and flipped.ours == ("r2", "r1", "r0")
    tied = ordering(_table([78.4, 78.4, 77.0], [41.0, 40.0, 30.0]))
    assert tied.same  # a tie in the paper constrains nothing
    assert ordering(_table([78.4, None], [40.0, 41.0])).same is None  # one row: nothing to order


def _seeded(paper, seeds):
    table = _table(paper, [sum(v) / len(v) for v in seeds])
    table["seed_accuracies"] = [" ".join(str(x) for x in v) for v in seeds]
    return table


def test_ordering_verdicts_know_the_seeds_noise():
    clear = ordering(_seeded([78.4, 77.6, 77.3], [[40, 41, 39], [35, 36, 34], [30, 31, 29]]))
    assert {v for _, _, v in clear.pairs} == {PairVerdict.SAME} and len(clear.pairs) == 3
    assert clear.tau_interval == (1.0, 1.0)
    assert "of 3 pairs the paper orders, 3 same order as the paper" in clear.text()
    overlap = ordering(_seeded([78.4, 77.6], [[40, 30, 35], [36, 34, 38]]))
    assert [v for _, _, v in overlap.pairs] == [PairVerdict.NOISE]
    low, high = overlap.tau_interval
    assert low == -1.0 and high == 1.0
    opposite = ordering(_seeded([78.4, 77.6], [[30, 31, 29], [40, 41, 39]]))
    assert [v for _, _, v in opposite.pairs] == [PairVerdict.OPPOSITE]
    tie = ordering(_seeded([78.4, 77.6], [[35, 35, 35], [35, 35, 35]]))
    assert [v for _, _, v in tie.pairs] == [PairVerdict.NOISE]
    one = ordering(_table([78.4, 77.6], [40.0, 35.0]))
    assert [v for _, _, v in one.pairs] == [PairVerdict.SAME_ONE_SEED]
    assert one.tau_interval is None


def test_an_ablation_row_is_the_mean_and_interval_of_its_seeds():
    prepared = load(ABLATIONS / "v1_patch_size.yaml")
    names = [f.name for f in prepared.fixed]
    accuracy = {names[0]: [50.0, 51.0, 52.0], names[1]: [60.0, 61.0, 59.0],
                names[2]: [50.0, 58.0, 43.0], names[3]: [45.0]}
    rows, number = [], 0
    for name, values in accuracy.items():
        for k, v in enumerate(values):
            rows.append({"number": number, "status": "ok", "fixed_point": name,
                         "seed_index": k, "accuracy": v, "params": 5_600_000,
                         "macs": 2_000_000_000, "latency_ms": 9.0, "fidelity": "f",
                         "oracle": "o", "spec_id": name, "chance": k == 0 and v == 45.0})
            number += 1
    rows.append({**rows[0], "number": number, "status": "failed", "seed_index": 3})  # not counted
    table = ablation_table(pd.DataFrame(rows), prepared.config, prepared.fixed)
    first = table.iloc[0]
    assert first.accuracy == pytest.approx(51.0) and first.seeds == 3
    assert first.accuracy_low == pytest.approx(51.0 - 2.4841, abs=1e-3)
    assert first.seed_accuracies == "50.00 51.00 52.00"
    # the paper: (2,2,2) 78.4, (3,3,3) 78.5, (4,4,4) 77.6, (8,4,2) 77.3
    assert list(table.verdict) == ["baseline", PairVerdict.SAME.value,
                                   PairVerdict.NOISE.value, PairVerdict.SAME_ONE_SEED.value]
    assert table.iloc[3].seeds == 1 and table.iloc[3].at_chance == 1
    text = table_text(table, prepared.config)
    assert "95 % interval" in text and "51.00" in text and "[48.52, 53.48]" in text
    assert f"at chance level (scored no better than guessing): {names[3]};" in text


def test_ablation_files_fail_in_one_line(tmp_path):
    base = tmp_path / "_base.yaml"
    base.write_text((ABLATIONS / "_fidelity.yaml").read_text())

    def study(body):
        path = tmp_path / "a.yaml"
        path.write_text("extends: _base.yaml\nname: a\nablation: {paper: p, baseline: r0}\n"
                        + body)
        return path

    bad_field = study("fixed_trials:\n  - {name: r0, model: mobilevit_s, blocks: {hedas: 2}}\n")
    with pytest.raises(StudyError, match=r"fixed_trials\[0\]: .*hedas"):
        load(bad_field)
    bad_recipe = study("fixed_trials:\n  - {name: r0, model: mobilevit_s, "
                       "evaluator: {recipe: {weight_decay: -1}}}\n")
    with pytest.raises(StudyError, match=r"fixed_trials\[0\].evaluator.*weight_decay=-1"):
        load(bad_recipe)
    no_baseline = tmp_path / "b.yaml"
    no_baseline.write_text("extends: _base.yaml\nablation: {paper: p, baseline: zz}\n"
                           "fixed_trials: [mobilevit_s]\n")
    with pytest.raises(StudyError, match="ablation.baseline=zz: not one of the fixed trials"):
        load_study(no_baseline)
    loop = tmp_path / "c.yaml"
    loop.write_text("extends: c.yaml\n")
    with pytest.raises(StudyError, match="extend each other"):
        load_study(loop)
    # outside an ablation, a row must lie in the search space (the sampler learns from it)
    search = tmp_path / "d.yaml"
    search.write_text("extends: _base.yaml\ntrials: 3\nfixed_trials:\n"
                      "  - {name: r0, model: mobilevit_s, blocks: {fusion_kernel: 1}}\n")
    with pytest.raises(StudyError, match=r"fixed_trials\[0\]=r0: .*only an ablation .* may hold fixed trials outside"):
        load(search)


def test_nas_ablations_lists_them(capsys):
    assert main(["ablations", "--dir", str(ABLATIONS)]) == 0
    out = capsys.readouterr().out
    for path in FILES:
        assert path.stem in out
    assert "Table 6" in out
    assert main(["ablations", "--dir", str(ABLATIONS), "--run", "nope"]) == 2
    assert "nope: no such ablation" in capsys.readouterr().err


def test_another_fidelity_replaces_the_evaluator_and_keeps_the_rows_changes(tmp_path):
    from nas.results.ablation import with_fidelity

    config = load(ABLATIONS / "v1_weight_decay.yaml").config
    cifar = with_fidelity(config, ABLATIONS / "_cifar10_proxy.yaml")
    assert cifar.evaluator.dataset.kind == "cifar10" and cifar.workers.gpus_per_trial == 1
    assert cifar.fixed_trials == config.fixed_trials and cifar.ablation == config.ablation
    # the rows' recipe changes are merged into the new evaluator when the study is prepared
    data = tmp_path / "data"
    from tests.nas.study.test_config import _cifar_archive

    _cifar_archive(data, "cifar10")
    local = cifar.model_copy(update={"evaluator": cifar.evaluator.model_copy(update={
        "dataset": cifar.evaluator.dataset.model_copy(update={"path": str(data)})})})
    rows = {f.name: f for f in prepare(local, "t", run_dir=tmp_path / "run").fixed}
    assert rows["wd 0.1"].evaluator.recipe.weight_decay == 0.1
    assert rows["wd 0.1"].evaluator.dataset.kind == "cifar10"
    not_a_study = tmp_path / "x.yaml"
    not_a_study.write_text("foo: 1\n")
    with pytest.raises(StudyError, match="--fidelity .*x.yaml: expected a study file"):
        with_fidelity(config, not_a_study)
