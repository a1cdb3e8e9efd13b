"""Study files: the shipped ones load; malformed ones give one clear line each."""

import pathlib
import subprocess
import sys

import pytest
import yaml

from nas.study.config import StudyError
from nas.study.prepare import load
from tests.nas.data.test_data import _cifar_archive, _write_folder

ROOT = pathlib.Path(__file__).resolve().parents[3]
# shared parts (`_*.yaml`, merged into others with `extends`) are not studies of their own
STUDIES = sorted(p for p in (ROOT / "studies").rglob("*.yaml") if not p.name.startswith("_"))

GOOD = {
    "name": "t", "trials": 4,
    "evaluator": {"kind": "dummy"},
    "fixed_trials": ["mobilevit_xxs"],
}


def _with_local_data(path, tmp_path):
    """A copy of a shipped study whose dataset path points at a tiny generated dataset of the
    same kind (the real ones are not here, and tests stay offline)."""
    data = yaml.safe_load(path.read_text())
    dataset = data.get("evaluator", {}).get("dataset", {})
    kind = dataset.get("kind", "procedural")
    if kind == "procedural":
        return path
    if kind == "folder":
        for split in (dataset.get("train_split", "train"), dataset.get("val_split", "val")):
            _write_folder(tmp_path / "data" / split)
    else:
        _cifar_archive(tmp_path / "data", kind)
    dataset["path"] = str(tmp_path / "data")
    copy = tmp_path / path.name
    copy.write_text(yaml.safe_dump(data))
    return copy


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_shipped_studies_load(path, tmp_path):
    prepared = load(_with_local_data(path, tmp_path))
    assert prepared.fixed or prepared.config.trials
    assert not prepared.warnings  # every shipped fixed trial fits its study's budget


def _write(tmp_path, text):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def _with(**changes):
    data = {**GOOD, **changes}
    return yaml.safe_dump({k: v for k, v in data.items() if v is not None})


MALFORMED = [
    ("name: t\ntrials: [1, 2\n", r"study.yaml:3:1: invalid YAML"),
    ("", "study.yaml: empty study file"),
    ("- a\n- b\n", "study.yaml: expected a mapping of study fields, got list"),
    (_with(trails=5), "study.yaml: trails: unknown field"),
    (_with(budget={"max_params": -5}), "study.yaml: budget.max_params=-5: input should be greater than 0"),
    (_with(evaluator={"kind": "imagenet"}), 'study.yaml: evaluator={"kind": "imagenet"}: unknown kind; expected one of'),
    (_with(evaluator={"kind": "proxy_train", "epochs": "three"}), 'study.yaml: evaluator.epochs="three": input should be a valid integer'),
    (_with(space={"s9.width": 64}), "study.yaml: space.s9.width: unknown parameter"),
    (_with(space={"block": "v4"}), "study.yaml: space.block=v4: unknown; expected one of v1, none, v2, v3_v1, v3_v2"),
    (_with(space={"s3.dim": {"low": 300, "high": 100}}), "study.yaml: space.s3.dim: low=300 is above high=100"),
    (_with(fixed_trials=["mobilevit_xss"]), "study.yaml: fixed_trials[0]: model 'mobilevit_xss': neither a fixed-point name nor a spec JSON file; did you mean mobilevit_xs"),
    (_with(fixed_trials=["mobilevit_xxs"], space={"attention": "separable"}), "study.yaml: fixed_trials[0]=mobilevit_xxs: space.attention=mhsa: outside this space"),
    (_with(fixed_trials=["missing.json"]), "study.yaml: fixed_trials[0]: "),
    (_with(budget={"max_params": 50_000}), "study.yaml: budget.max_params=50,000: no network of the space meets it; the smallest has"),
    (_with(trials=1, fixed_trials=["mobilevit_xxs", "mobilevit_s"]), "study.yaml: trials=1: fewer than the 2 fixed trials"),
    (_with(storage="sqlite:///x.db"), "study.yaml: storage=\"sqlite:///x.db\": expected a postgresql:// URL"),
    (_with(trials=None), "study.yaml: set trials, timeout_minutes or both"),
    (_with(latency={"kind": "none"}), "study.yaml: objective latency_ms needs a latency oracle"),
    (_with(sampler={"kind": "brute_force"}), "study.yaml: sampler.kind=brute_force: the space has"),
    (_with(workers={"concurrent": 0}), "study.yaml: workers.concurrent=0: input should be greater than or equal to 1"),
    (_with(evaluator={"kind": "supernet", "train_gpus_per_worker": 0.5}), "study.yaml: evaluator={\"kind\": \"supernet\", \"train_gpus_per_worker\": 0.5}: train_gpus_per_worker=0.5: with train_workers=1 the driver's process trains the supernet, on its CPU (0) or one GPU (1)"),
    (_with(objectives=[{"metric": "top5"}]), 'study.yaml: objectives[0].metric="top5": input should be'),
    (_with(fixed_trials=["mobilevit_xxs", "mobilevit_xxs"]), "study.yaml: fixed_trials=[\"mobilevit_xxs\", \"mobilevit_xxs\"]: a fixed trial is listed twice"),
]


@pytest.mark.parametrize("text,message", MALFORMED, ids=[m[12:60] for _, m in MALFORMED])
def test_malformed_studies_give_one_line_naming_file_field_and_value(tmp_path, text, message):
    with pytest.raises(StudyError) as info:
        load(_write(tmp_path, text))
    error = str(info.value)
    assert "\n" not in error
    assert error.startswith(str(tmp_path)), error
    assert error[len(str(tmp_path)) + 1:].startswith(message), error


def test_missing_study_file(tmp_path):
    with pytest.raises(StudyError, match=r"no such study file$"):
        load(tmp_path / "nope.yaml")


def test_cli_reports_a_bad_study_in_one_line_without_traceback(tmp_path):
    path = _write(tmp_path, _with(budget={"max_params": 0}))
    out = subprocess.run([sys.executable, "-m", "nas.cli", "run", str(path)], capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"nas: error: {path}: budget.max_params=0: input should be "
                                  "greater than 0")
    assert not (tmp_path / "runs").exists()  # nothing created for a bad study


def test_fixed_trials_can_be_spec_files(tmp_path):
    from mobilevit import get_fixed_point

    spec = get_fixed_point("mobilevit_s").spec.with_blocks(patch_size=(3, 3))
    (tmp_path / "s333.json").write_text(spec.to_json())
    prepared = load(_write(tmp_path, _with(fixed_trials=["s333.json"])))
    assert prepared.fixed[0].name == "s333"
    assert prepared.fixed[0].params["s3.patch"] == 3


def test_fixed_trials_over_budget_are_announced(tmp_path):
    prepared = load(_write(tmp_path, _with(budget={"max_params": 2_000_000},
                                           fixed_trials=["mobilevit_s"])))
    assert "fixed trial mobilevit_s exceeds the budget (params)" in prepared.warnings[0]


# -- every field of the smoke study, mutated: each mutation is one line naming the field --------

SMOKE = ROOT / "studies" / "smoke.yaml"
DELETE = "<the field left out>"  # a mutation that removes the field
PROXY = {"kind": "proxy_train", "train_images": 64, "val_images": 32, "epochs": 2}
TRAIN = {"kind": "train", "epochs": 2,
         "dataset": {"kind": "procedural", "train_images": 64, "val_images": 32}}
NAN, INF = float("nan"), float("inf")

# (field path in the smoke study, "/"-separated as space keys hold dots; the new value; what the
# one-line error must say: the field, mostly with its value)
MUTATIONS = [
    ("name", 5, "name=5: input should be a valid string"),
    ("name", "", 'name="": string should match pattern'),
    ("name", "a/b", 'name="a/b": string should match pattern'),
    ("name", [], "name=[]: input should be a valid string"),
    ("description", ["x"], 'description=["x"]: input should be a valid string'),
    ("seed", -7, "seed=-7: input should be greater than or equal to 0"),
    ("seed", 2**32, "seed=4294967296: input should be less than or equal to 4294967295"),
    ("seed", 1.5, "seed=1.5: input should be a valid integer"),
    ("seed", True, "seed=true: expected an integer, not true/false"),
    ("seed", "x", 'seed="x": input should be a valid integer'),
    ("seed", NAN, "seed=nan: input should be a finite number"),
    ("space", [], "space=[]: input should be a valid dictionary"),
    ("space", None, "space=None: input should be a valid dictionary"),
    ("space/s3.width", {"high": 0}, "space.s3.width.high=0: expected a positive integer"),
    ("space/s3.width", {"high": -8}, "space.s3.width.high=-8: expected a positive integer"),
    ("space/s3.width", {"step": 0}, "space.s3.width.step=0: expected a positive integer"),
    ("space/s3.width", {"high": True}, "space.s3.width.high=true: expected a positive integer"),
    ("space/s3.width", {"low": 300, "high": 100}, "space.s3.width: low=300 is above high=100"),
    ("space/s3.width", {"lo": 40}, "space.s3.width.lo: unknown key"),
    ("space/s3.width", [], "space.s3.width=[]: give at least one value"),
    ("space/s3.width", True, "space.s3.width=true: expected an integer >= 1"),
    ("space/s3.width", 1.5, "space.s3.width=1.5: expected an integer >= 1"),
    ("space/s3.width", [64, 64], "space.s3.width=[64, 64]: a value is listed twice"),
    ("space/s3.depth", {"high": INF}, "space.s3.depth.high=inf: expected a positive integer"),
    ("space/block", [], "space.block=[]: give at least one value"),
    ("space/block", "v4", "space.block=v4: unknown; expected one of"),
    ("space/width_multiplier", NAN, "space.width_multiplier=nan: expected a number >= 0.125"),
    ("space/width_multiplier", 0, "space.width_multiplier=0: expected a number >= 0.125"),
    ("space/dropout", 1.0, "space.dropout=1.0: expected a number >= 0.0 and < 1.0"),
    ("space/head_conv", 1, "space.head_conv=1: unknown; expected one of true, false"),
    ("space/s9.width", 64, "space.s9.width: unknown parameter"),
    ("space/s3.heads", 3, "fixed_trials[0]=mobilevit_xxs: space.s3.heads=4: outside this space"),
    ("budget", [], "budget=[]: input should be a valid dictionary"),
    ("budget", None, "budget=None: input should be a valid dictionary"),
    ("budget/max_params", 0, "budget.max_params=0: input should be greater than 0"),
    ("budget/max_params", -1, "budget.max_params=-1: input should be greater than 0"),
    ("budget/max_params", 10, "budget.max_params=10: no network of the space meets it"),
    ("budget/max_params", 1.5, "budget.max_params=1.5: input should be a valid integer"),
    ("budget/max_params", True, "budget.max_params=true: expected an integer, not true/false"),
    ("budget/max_params", INF, "budget.max_params=inf: input should be a finite number"),
    ("budget/max_params", NAN, "budget.max_params=nan: input should be a finite number"),
    ("budget/max_params", "2M", 'budget.max_params="2M": input should be a valid integer'),
    ("budget/max_macs", 1000, "budget.max_macs=1,000: no network of the space meets it"),
    ("budget/max_macs", 0, "budget.max_macs=0: input should be greater than 0"),
    ("budget/resolution", 31, "budget.resolution=31: input should be greater than or equal to 32"),
    ("budget/resolution", True, "budget.resolution=true: expected an integer, not true/false"),
    ("budget/count_classes", 0, "budget.count_classes=0: input should be greater than 0"),
    ("budget/count_classes", True, "budget.count_classes=true: expected an integer"),
    ("budget/max_latency_ms", 0, "budget.max_latency_ms=0: input should be greater than 0"),
    ("budget/max_latency_ms", NAN, "budget.max_latency_ms=nan: input should be a finite number"),
    ("budget/max_latency_ms", True, "budget.max_latency_ms=true: expected a number, not true"),
    ("budget/max_flops", 1, "budget.max_flops: unknown field"),
    ("objectives", [], "objectives=[]: list at least one objective"),
    ("objectives", {}, "objectives={}: input should be a valid list"),
    ("objectives", "accuracy", 'objectives="accuracy": input should be a valid list'),
    ("objectives", ["accuracy"], 'objectives[0]="accuracy": input should be a valid dictionary'),
    ("objectives", [{"metric": "accuracy"}, {"metric": "accuracy"}],
     "objectives=[{\"metric\": \"accuracy\"}, {\"metric\": \"accuracy\"}]: an objective is listed "
     "twice"),
    ("objectives", [{"metric": "top5"}], 'objectives[0].metric="top5": input should be'),
    ("objectives", [{"metric": "accuracy", "direction": "up"}],
     'objectives[0].direction="up": input should be'),
    ("objectives", [{"direction": "maximize"}], "objectives[0].metric: missing"),
    ("evaluator", None, "evaluator=None: input should be a valid dictionary"),
    ("evaluator", [], "evaluator=[]: input should be a valid dictionary"),
    ("evaluator", {}, "evaluator={}: missing kind"),
    ("evaluator/kind", "imagenet", "unknown kind; expected one of 'train', 'proxy_train'"),
    ("evaluator/seconds", -1, "evaluator.seconds=-1: input should be greater than or equal to 0"),
    ("evaluator/seconds", INF, "evaluator.seconds=inf: input should be a finite number"),
    ("evaluator/seconds", NAN, "evaluator.seconds=nan: input should be a finite number"),
    ("evaluator/seconds", True, "evaluator.seconds=true: expected a number, not true/false"),
    ("evaluator/seconds", "slow", 'evaluator.seconds="slow": input should be a valid number'),
    ("evaluator/classes", 1, "evaluator.classes=1: input should be greater than or equal to 2"),
    ("evaluator/classes", True, "evaluator.classes=true: expected an integer, not true/false"),
    ("evaluator/faults", [], "evaluator.faults=[]: input should be a valid dictionary"),
    ("evaluator/faults", {"abc": "boom"}, 'evaluator.faults.abc="boom": input should be'),
    ("evaluator/record", 5, "evaluator.record=5: input should be a valid string"),
    ("evaluator/epochs", 3, "evaluator.epochs: unknown field"),
    ("evaluator", {**PROXY, "epochs": 0}, "evaluator.epochs=0: input should be greater than 0"),
    ("evaluator", {**PROXY, "resolution": 16}, "evaluator.resolution=16: input should be"),
    ("evaluator", {**PROXY, "data_seed": -1}, "evaluator.data_seed=-1: input should be greater"),
    ("evaluator", {**PROXY, "lr": NAN}, "evaluator.lr=nan: input should be a finite number"),
    ("evaluator", {**TRAIN, "crop_scale": [0.5, 0.1]},
     "evaluator.crop_scale=[0.5, 0.1]: expected [low, high] with 0 < low <= high <= 1"),
    ("evaluator", {**TRAIN, "crop_scale": [0, 1]},
     "evaluator.crop_scale=[0, 1]: expected [low, high] with 0 < low <= high <= 1"),
    ("evaluator", {**TRAIN, "multiscale": {"sizes": []}},
     "evaluator.multiscale.sizes=[]: list should have at least 1 item"),
    ("evaluator", {**TRAIN, "multiscale": {"sizes": [0, 64]}},
     "evaluator.multiscale.sizes[0]=0: input should be greater than or equal to 16"),
    ("evaluator", {**TRAIN, "recipe": {"lr": 0.001, "min_lr": 0.01}},
     "min_lr=0.01: above lr=0.001"),
    ("evaluator", {**TRAIN, "dataset": {"kind": "procedural", "seed": -1}},
     "evaluator.dataset.seed=-1: input should be greater than or equal to 0"),
    ("evaluator", {**TRAIN, "dataset": {"kind": "procedural", "classes": 3}},
     "evaluator.dataset: procedural dataset: classes=3"),
    ("evaluator", {**TRAIN, "dataset": {"kind": "folder"}}, "dataset kind folder needs a path"),
    ("latency", None, "latency=None: input should be a valid dictionary"),
    ("latency", {}, "latency={}: missing kind"),
    ("latency/kind", "gpu", "unknown kind; expected one of 'local', 'predictor'"),
    ("latency/resolution", 16, "latency.resolution=16: input should be greater than or equal"),
    ("latency/resolution", True, "latency.resolution=true: expected an integer"),
    ("latency/runs", 0, "latency.runs=0: input should be greater than 0"),
    ("latency/runs", True, "latency.runs=true: expected an integer, not true/false"),
    ("latency/runs", 2.5, "latency.runs=2.5: input should be a valid integer"),
    ("latency/warmup", -1, "latency.warmup=-1: input should be greater than or equal to 0"),
    ("latency/warmup", True, "latency.warmup=true: expected an integer, not true/false"),
    ("latency/threads", 0, "latency.threads=0: input should be greater than 0"),
    ("latency/cache", 5, "latency.cache=5: input should be a valid string"),
    ("latency", {"kind": "predictor", "resolution": 16},
     "latency.resolution=16: input should be greater than or equal to 32"),
    ("latency", {"kind": "agent"}, "latency.url: missing"),
    ("latency", {"kind": "none"}, "objective latency_ms needs a latency oracle"),
    ("sampler", [], "sampler=[]: input should be a valid dictionary"),
    ("sampler/kind", "grid", 'sampler.kind="grid": input should be'),
    ("sampler/kind", "brute_force", "sampler.kind=brute_force: the space has"),
    ("sampler/population_size", 1, "sampler.population_size=1: input should be greater than or"),
    ("sampler/population_size", True, "sampler.population_size=true: expected an integer"),
    ("pruner", [], "pruner=[]: input should be a valid dictionary"),
    ("pruner/kind", "asha", 'pruner.kind="asha": input should be'),
    ("pruner/kind", "median", "pruner.kind=median: the dummy evaluator does not train in epochs"),
    ("pruner/min_epochs", 0, "pruner.min_epochs=0: input should be greater than or equal to 1"),
    ("pruner/reduction_factor", 1, "pruner.reduction_factor=1: input should be greater than"),
    ("pruner/reduction_factor", True, "pruner.reduction_factor=true: expected an integer"),
    ("trials", 0, "trials=0: input should be greater than 0"),
    ("trials", -1, "trials=-1: input should be greater than 0"),
    ("trials", True, "trials=true: expected an integer, not true/false"),
    ("trials", 1.5, "trials=1.5: input should be a valid integer"),
    ("trials", INF, "trials=inf: input should be a finite number"),
    ("trials", [], "trials=[]: input should be a valid integer"),
    ("trials", 1, "trials=1: fewer than the 2 fixed trials"),
    ("trials", DELETE, "set trials, timeout_minutes or both"),
    ("timeout_minutes", 0, "timeout_minutes=0: input should be greater than 0"),
    ("timeout_minutes", NAN, "timeout_minutes=nan: input should be a finite number"),
    ("timeout_minutes", INF, "timeout_minutes=inf: input should be a finite number"),
    ("timeout_minutes", True, "timeout_minutes=true: expected a number, not true/false"),
    ("timeout_minutes", "soon", 'timeout_minutes="soon": input should be a valid number'),
    ("max_infeasible", 0, "max_infeasible=0: input should be greater than 0"),
    ("max_infeasible", True, "max_infeasible=true: expected an integer, not true/false"),
    ("fixed_trials", "mobilevit_xxs", 'fixed_trials="mobilevit_xxs": input should be a valid list'),
    ("fixed_trials", {}, "fixed_trials={}: input should be a valid list"),
    ("fixed_trials", None, "fixed_trials=None: input should be a valid list"),
    ("fixed_trials", [5], "fixed_trials[0]=5: input should be a valid dictionary"),
    ("fixed_trials", [True], "fixed_trials[0]=true: input should be a valid dictionary"),
    ("fixed_trials", [""], "fixed_trials[0]: model '': neither a fixed-point name"),
    ("fixed_trials", ["mobilevit_xxs", "mobilevit_xxs"], "a fixed trial is listed twice"),
    ("fixed_trials", [{}], "fixed_trials[0].name: missing"),
    ("fixed_trials", [{"name": "a", "model": "mobilevit_xxs", "blocks": {"heads": 0}}],
     "fixed_trials[0]: block.heads=0"),
    ("fixed_trials", [{"name": "a", "model": "mobilevit_xxs", "evaluator": {"seconds": -1}}],
     "fixed_trials[0].evaluator (merged into the study's): evaluator.seconds=-1"),
    ("fixed_trials", ["mobilevit_s"], "fixed_trials[0]=mobilevit_s: space.s3.dim=144: outside"),
    ("fixed_trials", ["missing.json"], "fixed_trials[0]: "),
    ("ablation", "x", 'ablation="x": input should be a valid dictionary'),
    ("ablation", {"paper": "p", "baseline": "nope"}, "ablation.baseline=nope: not one of the fixed"),
    ("workers", None, "workers=None: input should be a valid dictionary"),
    ("workers/concurrent", 0, "workers.concurrent=0: input should be greater than or equal to 1"),
    ("workers/concurrent", True, "workers.concurrent=true: expected an integer, not true/false"),
    ("workers/concurrent", 2.5, "workers.concurrent=2.5: input should be a valid integer"),
    ("workers/address", 5, "workers.address=5: input should be a valid string"),
    ("workers/address", "", 'workers.address="": string should have at least 1 character'),
    ("workers/cpus_per_trial", 0, "workers.cpus_per_trial=0: input should be greater than 0"),
    ("workers/cpus_per_trial", True, "workers.cpus_per_trial=true: expected a number"),
    ("workers/gpus_per_trial", -1, "workers.gpus_per_trial=-1: input should be greater than or"),
    ("workers/gpus_per_trial", True, "workers.gpus_per_trial=true: expected a number"),
    ("storage", 5, "storage=5: input should be a valid string"),
    ("storage", "sqlite:///x.db", 'storage="sqlite:///x.db": expected a postgresql:// URL'),
    ("output", [], "output=[]: input should be a valid string"),
    ("extends", "nope.yaml", "nope.yaml: no such study file"),
    ("trails", 6, "trails: unknown field"),
]


def _mutated(path, value):
    data = yaml.safe_load(SMOKE.read_text())
    *parents, last = path.split("/")
    section = data
    for key in parents:
        section = section.setdefault(key, {})
    if value == DELETE:
        del section[last]
    else:
        section[last] = value
    return data


def _check_cli(capsys, path):
    from nas.cli import main

    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_unmutated_smoke_study_passes_the_check(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(_mutated("seed", 0)))
    code, out, err = _check_cli(capsys, path)
    assert (code, err) == (0, "") and "valid" in out


@pytest.mark.parametrize("field,value,message", MUTATIONS,
                         ids=[f"{f}={v!r}"[:60] for f, v, _ in MUTATIONS])
def test_every_mutated_field_is_one_line_naming_it(capsys, tmp_path, monkeypatch, field, value,
                                                   message):
    monkeypatch.chdir(tmp_path)  # nothing may be created, but if it were, it would be here
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(_mutated(field, value)))
    code, out, err = _check_cli(capsys, path)
    assert code == 2 and out == "", (code, out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"nas: error: {path}: "), err
    assert message in err, err
    assert list(tmp_path.iterdir()) == [path]


def test_seed_bounds_are_numpy_s(tmp_path):
    assert load(_write(tmp_path, _with(seed=2**32 - 1))).config.seed == 2**32 - 1
    with pytest.raises(StudyError, match=r"seed=-1: input should be greater than or equal to 0"):
        load(_write(tmp_path, _with(seed=-1)))


def test_integer_fields_read_exponent_notation(tmp_path):
    # YAML 1.1 reads 5e6 as a string; an integer field takes it when it is a whole number
    path = _write(tmp_path, "name: t\ntrials: 4\nevaluator: {kind: dummy}\nbudget: "
                            "{max_params: 5e6}\n")
    assert load(path).config.budget.max_params == 5_000_000
    path = _write(tmp_path, "name: t\ntrials: 4\nevaluator: {kind: dummy}\nbudget: "
                            "{max_params: 5.5e0}\n")
    with pytest.raises(StudyError, match="budget.max_params=5.5: input should be a valid integer"):
        load(path)


def test_a_pruner_must_be_able_to_stop_a_trial(tmp_path):
    ok = _with(evaluator=PROXY, pruner={"kind": "successive_halving", "min_epochs": 1})
    assert load(_write(tmp_path, ok)).config.pruner.kind == "successive_halving"
    late = _with(evaluator=PROXY, pruner={"kind": "successive_halving", "min_epochs": 2})
    with pytest.raises(StudyError, match=r"pruner.min_epochs=2: not below evaluator.epochs=2"):
        load(_write(tmp_path, late))


# -- --set KEY=VALUE ----------------------------------------------------------------------------

def test_settings_override_fields_before_validation(tmp_path):
    path = _write(tmp_path, _with(trials=None))  # invalid alone: no stop condition
    config = load(path, ["trials=5", "evaluator.seconds=0.5", "budget.max_params=5e6",
                         "fixed_trials=[mobilevit_xxs, mobilevitv3_xxs]",
                         "space.s3.width.high=96", "space.block=[v1, v3_v1]"]).config
    assert config.trials == 5 and config.evaluator.seconds == 0.5
    assert config.budget.max_params == 5_000_000
    assert config.fixed_trials == ["mobilevit_xxs", "mobilevitv3_xxs"]
    assert config.space == {"s3.width": {"high": 96}, "block": ["v1", "v3_v1"]}
    prepared = load(path, ["trials=5", "space.s3.width.high=96"])
    assert max(prepared.space.params["s3.width"].values) == 96


def test_settings_apply_after_extends(tmp_path):
    from nas.study.config import load_study

    path = ROOT / "studies" / "ablations" / "v1_heads.yaml"
    base = load_study(path)
    config = load_study(path, ["evaluator.epochs=2", "evaluator.recipe.lr=0.001"])
    assert base.evaluator.epochs != 2 and config.evaluator.epochs == 2
    assert config.evaluator.recipe.lr == 0.001
    # the rest of the evaluator is still the one _fidelity.yaml gives
    assert config.evaluator.model_dump(exclude={"epochs", "recipe"}) == base.evaluator.model_dump(
        exclude={"epochs", "recipe"})
    assert config.evaluator.recipe.warmup_iters == base.evaluator.recipe.warmup_iters


def test_a_file_that_extends_another_with_an_evaluator_of_another_kind_replaces_it(tmp_path):
    from nas.study.config import load_study

    base = load_study(ROOT / "studies" / "under_6m_scratch.yaml")
    path = _write(tmp_path, f"extends: {ROOT / 'studies' / 'under_6m_scratch.yaml'}\n"
                  "evaluator: {kind: supernet, train: {kind: proxy_train, epochs: 1}}\n")
    config = load_study(path)
    assert base.evaluator.kind == "proxy_train" and config.evaluator.kind == "supernet"
    assert config.evaluator.train.epochs == 1 and not hasattr(config.evaluator, "val_images")
    assert config.fixed_trials == base.fixed_trials and config.budget == base.budget


def test_the_default_study_refines_as_the_scratch_study_trains():
    from nas.study.config import load_study

    scratch = load_study(ROOT / "studies" / "under_6m_scratch.yaml")
    default = load_study(ROOT / "studies" / "under_6m.yaml")
    assert default.evaluator.kind == "supernet" and scratch.evaluator.kind == "proxy_train"
    assert default.evaluator.refine.evaluator == scratch.evaluator
    assert default.fixed_trials == scratch.fixed_trials and default.budget == scratch.budget
    assert default.latency == scratch.latency and default.objectives == scratch.objectives


def test_setting_another_kind_starts_the_section_afresh(tmp_path):
    path = _write(tmp_path, _with(latency={"kind": "local", "runs": 3}))
    config = load(path, ["latency.kind=predictor"]).config
    assert config.latency.kind == "predictor"
    config = load(path, ["evaluator.kind=proxy_train", "evaluator.epochs=2"]).config
    assert (config.evaluator.kind, config.evaluator.epochs) == ("proxy_train", 2)


@pytest.mark.parametrize("setting,message", [
    ("evaluator.seconds=-1", "--set evaluator.seconds=-1: input should be greater than or equal to 0"),
    ("seed=-7", "--set seed=-7: input should be greater than or equal to 0"),
    ("trails=5", "--set trails=5: unknown field"),
    ("evaluator.epoch=3", "--set evaluator.epoch=3: unknown field"),
    ("budget={max_params: true}", "--set budget={max_params: true}: budget.max_params=true: "
                                  "expected an integer, not true/false"),
    ("workers.concurrent=0", "--set workers.concurrent=0: input should be greater than or equal"),
    ("budget.max_params=10", "budget.max_params=10: no network of the space meets it"),
    ("space.s9.width=64", "space.s9.width: unknown parameter"),
    ("epochs", "--set epochs: expected KEY=VALUE"),
    ("=3", "--set =3: empty key"),
    ("evaluator..seconds=1", "--set evaluator..seconds=1: empty field"),
    ("fixed_trials=[mobilevit_xxs", "--set fixed_trials=[mobilevit_xxs: invalid YAML value"),
    ("extends=other.yaml", "--set extends=other.yaml: extends is resolved before --set"),
])
def test_bad_settings_are_one_line_naming_the_field(tmp_path, setting, message):
    path = _write(tmp_path, _with())
    with pytest.raises(StudyError) as info:
        load(path, [setting])
    error = str(info.value)
    assert "\n" not in error and error.startswith(f"{path}: "), error
    assert error[len(str(path)) + 2:].startswith(message), error
