"""Study files: the shipped ones load; malformed ones give one clear line each."""

import pathlib
import subprocess
import sys

import pytest
import yaml

from nas.config import StudyError
from nas.study import load
from tests.nas.test_data import _cifar_archive, _write_folder

ROOT = pathlib.Path(__file__).resolve().parents[2]
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
