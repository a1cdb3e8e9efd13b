import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from mobilevit import ArchSpec, get_fixed_point, list_models
from nas.cli import main
from nas.results.runs import open_run, trials_frame
from tests.reference import PARAMS

SMOKE = pathlib.Path(__file__).resolve().parents[2] / "studies" / "smoke.yaml"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def zoo_json():
    # One zoo computation shared by the tests below.
    from nas.zoo import zoo_records

    return zoo_records(256)


def test_zoo_json_has_every_fixed_point_with_exact_params(zoo_json):
    assert [r["name"] for r in zoo_json] == list_models()
    for record in zoo_json:
        assert record["params"] == PARAMS[record["name"]][-1]
        assert ArchSpec.from_dict(record["spec"]).spec_id == record["spec_id"]
        assert record["published"]["top1"] > 60
        assert record["macs"] > 2e8 and record["resolution"] == 256


def test_zoo_table_prints_every_model(capsys, monkeypatch, zoo_json):
    import nas.zoo

    monkeypatch.setattr(nas.zoo, "zoo_records", lambda resolution: zoo_json)
    code, out, _ = run(capsys, "zoo")
    assert code == 0
    for name in list_models():
        assert name in out
    assert "5,578,632" in out  # v1-S, exact and readable


def test_zoo_json_flag_prints_parseable_json(capsys, monkeypatch, zoo_json):
    import nas.zoo

    monkeypatch.setattr(nas.zoo, "zoo_records", lambda resolution: zoo_json)
    code, out, _ = run(capsys, "zoo", "--json")
    assert code == 0 and len(json.loads(out)) == 19


def test_spec_then_profile_a_spec_file(capsys, tmp_path):
    code, out, _ = run(capsys, "spec", "mobilevit_xs")
    assert code == 0
    edited = json.loads(out)
    edited["stages"][2]["block"]["heads"] = 1
    path = tmp_path / "xs_one_head.json"
    path.write_text(json.dumps(edited))
    code, out, _ = run(capsys, "profile", str(path), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["params"] == PARAMS["mobilevit_xs"][-1]  # heads do not change parameters
    assert result["spec_id"] != get_fixed_point("mobilevit_xs").spec.spec_id


def test_profile_human_output(capsys):
    code, out, _ = run(capsys, "profile", "mobilevitv2_050", "--resolution", "224")
    assert code == 0 and "1,370,593 parameters" in out and "224x224" in out


@pytest.mark.parametrize("argv,message", [
    (["spec", "mobilevit_xss"], "model 'mobilevit_xss': neither a fixed-point name nor a spec "
                                "JSON file; did you mean mobilevit_xs"),
    (["profile", "nothing_like_it"], "see `nas zoo` for the names"),
    (["export", "mobilevit_sm", "-o", "x"], "did you mean mobilevit_s"),
])
def test_unknown_models_give_one_line_errors(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("nas: error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,message", [
    (["--backend", "agent"], "--agent: required by --backend agent"),
    (["--backend", "agent", "--agent", "ftp://x"],
     '--agent="ftp://x": expected an http:// or https:// URL'),
    (["--backend", "predictor", "--threads", "2"], "--threads: only with --backend local"),
    (["--backend", "local", "--agent", "http://x"], "--agent: only with --backend agent"),
    (["--backend", "local", "--token", "t"], "--token: only with --backend agent"),
    (["--backend", "local", "--features", "network"], "--features: only with --backend predictor"),
    (["--resolution", "16"], "--resolution=16: input should be greater than or equal to 32"),
])
def test_bad_latency_flags_give_one_line_naming_the_flag(capsys, argv, message):
    code, out, err = run(capsys, "latency", "mobilevit_xxs", *argv)
    assert (code, out, err) == (2, "", f"nas: error: {message}\n")


def test_bad_spec_files_name_the_file_and_field(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    data = get_fixed_point("mobilevit_s").spec.to_dict()
    data["stages"][3]["block"]["heads"] = 7
    bad.write_text(json.dumps(data))
    code, _, err = run(capsys, "profile", str(bad))
    assert code == 2
    assert err.strip() == (f"nas: error: {bad}: stages[3].block.heads=7: dim=192 is not divisible "
                           "by heads")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    code, _, err = run(capsys, "export", str(broken), "-o", str(tmp_path / "x"))
    assert code == 2 and f"{broken}: spec: not valid JSON" in err


def test_bad_arguments_are_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        main(["profile", "mobilevit_s", "--resolution", "-3"])
    assert info.value.code == 2
    assert "must be positive" in capsys.readouterr().err


@pytest.mark.coreml
def test_export_command_writes_a_package(capsys, tmp_path):
    code, out, _ = run(capsys, "export", "mobilevit_xxs", "--to", "coreml", "-o",
                       str(tmp_path / "xxs"))
    assert code == 0 and "max tensor rank" in out
    assert (tmp_path / "xxs.mlpackage").is_dir()


def test_console_script_is_installed():
    exe = shutil.which("nas") or str(pathlib.Path(sys.executable).parent / "nas")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "zoo" in out.stdout and "export" in out.stdout


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke study, run once through the CLI for the run-folder commands below."""
    folder = tmp_path_factory.mktemp("cli") / "run"
    code = main(["run", str(SMOKE), "--output", str(folder), "--quiet"])
    assert code == 0
    return folder


def test_run_status_and_trials_commands(capsys, smoke_run):
    capsys.readouterr()
    code, out, _ = run(capsys, "status", str(smoke_run))
    assert code == 0 and "evaluated 6 of 6" in out and "Pareto set" in out
    code, out, _ = run(capsys, "trials", str(smoke_run))
    assert code == 0 and "mobilevit_xxs" in out and "trials.csv" in out
    code, _, err = run(capsys, "run", str(SMOKE), "--output", str(smoke_run))
    assert code == 0 and "is finished" in err and "nothing to do" in err


def test_status_prints_the_trials_tables_pareto_set_without_pandas_or_torch(smoke_run):
    frame = trials_frame(open_run(smoke_run)[0])
    expected = sorted(frame[frame["pareto"]]["number"])
    code = ("import sys; from nas.cli import main; main(sys.argv[1:]); "
            "print([m for m in ('torch', 'pandas') if m in sys.modules], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, "status", str(smoke_run)],
                         capture_output=True, text=True, check=True)
    assert out.stderr.strip().splitlines()[-1] == "[]"
    lines = out.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "Pareto set (" in line) + 2  # past header
    assert expected and sorted(int(line.split()[0]) for line in lines[start:]) == expected


def test_export_a_trial_of_a_run(capsys, smoke_run, tmp_path):
    code, out, _ = run(capsys, "export", str(smoke_run), "--trial", "0", "--to", "onnx", "-o",
                       str(tmp_path / "t0"))
    assert code == 0
    assert (tmp_path / "t0" / "spec.json").exists() and (tmp_path / "t0" / "model.onnx").exists()
    code, _, err = run(capsys, "export", str(smoke_run))
    assert code == 2 and "choose a trial with --trial N" in err
    code, _, err = run(capsys, "export", str(smoke_run), "--trial", "99")
    assert code == 2 and "--trial 99:" in err


def test_a_changed_study_on_the_same_folder_is_refused(capsys, smoke_run, tmp_path):
    import yaml

    data = yaml.safe_load(SMOKE.read_text())
    data["budget"]["max_params"] = 1_500_000
    changed = tmp_path / "smoke.yaml"
    changed.write_text(yaml.safe_dump(data))
    code, _, err = run(capsys, "run", str(changed), "--output", str(smoke_run))
    assert code == 2 and "holds a run of a different study (changed: budget)" in err


def test_space_command_lists_parameters(capsys):
    code, out, _ = run(capsys, "space")
    assert code == 0 and len(out.splitlines()) == 36 and "s5.patch" in out


# -- nas check ------------------------------------------------------------------------------------

UNDER_6M = SMOKE.parent / "under_6m_scratch.yaml"  # every candidate trained: a proxy's costs


def _budget_counts(name, budget):
    """A fixed point's params and MACs as a study's budget counts them (its source of truth:
    mobilevit.complexity with the budget's classifier and resolution)."""
    from mobilevit.complexity import complexity

    spec = get_fixed_point(name).spec.replace(num_classes=budget.get("count_classes", 1000))
    c = complexity(spec, budget.get("resolution", 256))
    return c.params, c.macs


def _smallest(data):
    from search_spaces import MobileViTSpace

    budget = data.get("budget", {})
    space = MobileViTSpace(data.get("space", {}), num_classes=budget.get("count_classes", 1000),
                           resolution=budget.get("resolution", 256))
    return space.smallest(budget.get("resolution", 256))


def test_check_smoke_prints_the_resolved_study(capsys, tmp_path, monkeypatch):
    import math

    import yaml

    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(SMOKE.read_text())
    code, out, err = run(capsys, "check", str(SMOKE))
    assert (code, err) == (0, "")
    assert out.startswith(f"study smoke ({SMOKE}): valid")
    assert f"dummy: {data['evaluator']['seconds']:g} s of CPU per trial" in out
    assert f"local: median of {data['latency']['runs']} runs" in out
    assert f"nsga2 (population {data['sampler']['population_size']}), seed {data['seed']}" in out
    fixed = data["fixed_trials"]
    assert (f"{data['trials']} trials ({len(fixed)} fixed, {data['trials'] - len(fixed)} "
            "searched)") in out
    assert f"params <= {data['budget']['max_params']:,}" in out
    smallest = _smallest(data)
    assert f"{smallest['params'][0]:,} params (block={smallest['params'][1]['block']}" in out
    assert f"{smallest['macs'][0]:,} MACs" in out
    for name in fixed:
        params, macs = _budget_counts(name, data["budget"])
        line = next(x for x in out.splitlines() if x.strip().startswith(name + " "))
        assert f"{params:,} params" in line and f"{macs / 1e6:,.1f} M MACs" in line
        assert ("within budget" in line) == (params <= data["budget"]["max_params"])
    run_dir = tmp_path / "runs" / "smoke"
    assert f"run folder    {run_dir} (new: nas run creates it)" in out
    assert f"storage       Optuna journal {run_dir / 'journal.log'}" in out
    assert f"a local Ray instance on this machine ({os.cpu_count()} CPUs" in out
    assert f"{data['workers']['concurrent']} trials at once" in out
    wall = math.ceil(data["trials"] / data["workers"]["concurrent"]) * data["evaluator"]["seconds"]
    assert f"about {wall:g} s of evaluation (estimate" in out
    assert not (tmp_path / "runs").exists()


def test_check_under_6m_json_has_every_fixed_trial_with_exact_sizes(capsys, tmp_path,
                                                                    monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(UNDER_6M.read_text())
    code, out, _ = run(capsys, "check", str(UNDER_6M), "--json")
    assert code == 0
    facts = json.loads(out)
    assert facts["study"]["name"] == "under_6m_scratch" and facts["valid"]
    assert [f["name"] for f in facts["fixed_trials"]] == data["fixed_trials"]
    for row in facts["fixed_trials"]:
        params, macs = _budget_counts(row["name"], data["budget"])
        assert (row["params"], row["macs"]) == (params, macs)
        assert row["in_budget"] == (params <= data["budget"]["max_params"]
                                    and macs <= data["budget"]["max_macs"])
    smallest = _smallest(data)
    assert facts["budget"]["smallest"]["params"]["value"] == smallest["params"][0]
    assert facts["budget"]["smallest"]["macs"]["value"] == smallest["macs"][0]
    ev = data["evaluator"]
    assert facts["cost"]["images_per_trial"] == ev["epochs"] * (ev["train_images"]
                                                                + ev["val_images"])
    assert facts["space"]["parameters"] == 36
    assert facts["storage"] == {"kind": "journal",
                                "location": str(tmp_path / data["output"] / "journal.log")}
    assert facts["workers"]["ray"] == "local"
    assert facts["study"]["latency"]["kind"] == data["latency"]["kind"]
    assert not (tmp_path / "runs").exists()


def test_check_under_6m_text(capsys, tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(UNDER_6M.read_text())
    code, out, _ = run(capsys, "check", str(UNDER_6M))
    assert code == 0
    ev = data["evaluator"]
    assert f"proxy_train: {ev['epochs']} epochs of {ev['train_images']:,} procedural images" in out
    assert "predictor: CoreML latency predicted at 256x256" in out
    assert f"{data['timeout_minutes']} minutes" in out
    assert f"MACs <= {data['budget']['max_macs']:,}" in out
    assert sum(line.endswith("M MACs  within budget") for line in out.splitlines()) == len(
        data["fixed_trials"])
    assert not (tmp_path / "runs").exists()


def test_check_the_default_study_says_its_supernet_is_trained_first(capsys, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    code, out, _ = run(capsys, "check", str(SMOKE.parent / "under_6m.yaml"), "--json")
    assert code == 0
    facts = json.loads(out)
    assert facts["study"]["name"] == "under_6m" and facts["study"]["trials"] == 515
    assert facts["study"]["evaluator"]["kind"] == "supernet"
    assert all(row["in_budget"] for row in facts["fixed_trials"])
    code, out, _ = run(capsys, "check", str(SMOKE.parent / "under_6m.yaml"))
    assert code == 0 and "is not stored: `nas run` trains it first (3 epochs)" in out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_check_starts_no_ray_and_creates_nothing(tmp_path):
    code = ("import sys\nfrom nas.cli import main\ncode = main(['check', sys.argv[1]])\n"
            "assert 'ray' not in sys.modules and 'optuna' not in sys.modules, 'imported'\n"
            "sys.exit(code)\n")
    out = subprocess.run([sys.executable, "-c", code, str(SMOKE)], capture_output=True,
                         text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "valid" in out.stdout
    assert list(tmp_path.iterdir()) == []


def test_check_an_invalid_study_is_one_line_with_status_2(capsys, tmp_path):
    import yaml

    data = yaml.safe_load(SMOKE.read_text())
    data["seed"] = -7  # was a traceback from numpy when the run started
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, err = run(capsys, "check", str(path))
    assert (code, out) == (2, "")
    assert err == f"nas: error: {path}: seed=-7: input should be greater than or equal to 0\n"


def test_check_set_reaches_the_config(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "check", str(SMOKE), "--json", "--set", "evaluator.seconds=0.5",
                         "--set", "seed=4", "--set", "budget.max_params=5e6",
                         "--set", "fixed_trials=[mobilevit_xxs]", "--set", "space.s3.width.high=96",
                         "--set", "output=elsewhere")
    assert code == 0, err
    facts = json.loads(out)
    study = facts["study"]
    assert study["seed"] == 4 and study["evaluator"]["seconds"] == 0.5
    assert facts["budget"]["max_params"] == 5_000_000
    assert [f["name"] for f in facts["fixed_trials"]] == ["mobilevit_xxs"]
    assert study["space"]["s3.width"] == {"high": 96}
    assert facts["trial_counts"]["searched"] == study["trials"] - 1
    assert facts["run_dir"]["path"] == str(tmp_path / "elsewhere")


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_bad_set_is_one_line_naming_the_field(capsys, tmp_path, command):
    code, out, err = run(capsys, command, str(SMOKE), "--set", "trials=0")
    assert (code, out) == (2, "")
    assert err == f"nas: error: {SMOKE}: --set trials=0: input should be greater than 0\n"
    code, _, err = run(capsys, command, str(SMOKE), "--set", "trials")
    assert code == 2 and err.count("\n") == 1 and "--set trials: expected KEY=VALUE" in err
    assert not (tmp_path / "runs").exists()


def test_check_masks_a_postgresql_password(capsys, tmp_path, monkeypatch):
    from nas.study.check import mask_url

    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "check", str(SMOKE), "--set",
                       "storage=postgresql://nas:s3cret@db.example:5432/studies")
    assert code == 0
    assert "PostgreSQL postgresql://nas:***@db.example:5432/studies" in out and "s3cret" not in out
    assert (mask_url("postgresql+psycopg2://db/x?user=nas&password=s3cret&sslmode=require")
            == "postgresql+psycopg2://db/x?user=nas&password=***&sslmode=require")
    assert mask_url("postgresql://db/x") == "postgresql://db/x"


def test_check_says_what_a_run_folder_holds(capsys, tmp_path, monkeypatch):
    import yaml

    from nas.study.prepare import load, write_config

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "run"
    write_config(load(SMOKE).config, folder)
    code, out, _ = run(capsys, "check", str(SMOKE), "--set", f"output={folder}")
    assert code == 0 and f"{folder} (holds this study: nas run continues it)" in out
    code, out, _ = run(capsys, "check", str(folder))  # the run folder itself
    assert code == 0 and "holds this study" in out
    data = yaml.safe_load(SMOKE.read_text())
    code, out, _ = run(capsys, "check", str(SMOKE), "--set", f"output={folder}",
                       "--set", f"budget.max_params={data['budget']['max_params'] - 1}",
                       "--set", "trials=7")  # trials may change on a run folder; the budget not
    assert code == 0 and "holds a different study (changed: budget)" in out
    assert sorted(p.name for p in folder.iterdir()) == ["study.yaml"]
