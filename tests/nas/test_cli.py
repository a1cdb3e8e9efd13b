import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from mobilevit import ArchSpec, get_fixed_point, list_models
from nas.cli import main
from tests.reference import PARAMS

SMOKE = pathlib.Path(__file__).resolve().parents[2] / "studies" / "smoke.yaml"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def zoo_json():
    # One zoo computation shared by the tests below (it profiles 19 networks).
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
