"""The report of a real (smoke) run: files, figures, every trial, the command line."""

import json
import re

import pandas as pd

from nas.cli import main
from nas.report.data import load_report_data
from nas.report.figures import FAMILY_NAMES, all_figures
from nas.report.page import csv_tables, write_report
from nas.results.outcome import TrialStatus
from nas.results.runs import open_run


def _trials(run_dir):
    study, _ = open_run(run_dir)
    return study.get_trials(deepcopy=False)


def test_the_report_of_the_smoke_study_contains_every_trial(smoke_run, tmp_path):
    files = write_report(smoke_run, output=tmp_path / "report")
    trials = _trials(smoke_run)
    numbers = sorted(t.number for t in trials)
    ok = sorted(t.number for t in trials if TrialStatus.of(t) is TrialStatus.OK)
    assert len(ok) == open_run(smoke_run)[1].trials  # the smoke study asks no more of its trials

    table = pd.read_csv(files.data["accuracy_latency"])
    assert sorted(table.query("series == 'trial'")["number"].astype(int)) == numbers
    # every completed trial is a point of the accuracy/latency figure, with its hover text
    fig = all_figures(load_report_data(smoke_run))["accuracy_latency"]
    drawn = [c[0] for tr in fig.data if tr.name in FAMILY_NAMES.values() for c in tr.customdata]
    assert sorted(int(re.match(r"trial (\d+)", d).group(1)) for d in drawn) == ok
    page = files.html.read_text()
    figures = json.loads(re.search(r"const NAS_FIGURES = (.*?);\n", page).group(1)
                         .replace("<\\/", "</"))
    assert list(figures) == list(all_figures(load_report_data(smoke_run)))  # the registry's
    # the Pareto table offers an export command for each Pareto trial
    pareto = pd.read_csv(files.data["pareto_trials"])
    assert len(pareto) >= 1
    for n in pareto["number"]:
        assert f"nas export {smoke_run} --trial {n}" in page
    # the fixed points are labelled and the published models are there
    assert "v1-XXS" in page and "v3-XXS" in page and "published, v2 block" in page
    assert "<script src=" not in page  # self-contained: opens offline


def test_hypervolume_and_progress_tables_follow_the_trials(smoke_run, tmp_path):
    files = write_report(smoke_run, output=tmp_path / "report")
    hv = pd.read_csv(files.data["hypervolume"])
    assert len(hv) == len(_trials(smoke_run))
    assert hv["hypervolume"].is_monotonic_increasing and hv["hypervolume"].iloc[-1] > 0
    progress = pd.read_csv(files.data["progress"])
    assert progress["evaluated"].iloc[-1] + progress["rejected"].iloc[-1] == len(_trials(smoke_run))
    assert progress["elapsed_min"].is_monotonic_increasing


def test_nas_report_command_line(smoke_run, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", str(smoke_run), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = sorted(f"{name}.csv" for name in csv_tables(load_report_data(smoke_run)))
    assert sorted(p.name for p in (out / "data").iterdir()) == expected
    assert f"wrote {out / 'index.html'}" in printed and f"({len(expected)} CSV files)" in printed
    assert main(["report", str(tmp_path), "-o", str(out)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["report", str(smoke_run), "--reference", "accuracy=0"]) == 2
    assert "give one value for each objective: accuracy, latency_ms" in capsys.readouterr().err


def test_static_figures_for_papers(smoke_run, tmp_path, chromium, capsys):
    out = tmp_path / "r"
    assert main(["report", str(smoke_run), "-o", str(out), "--static", "svg"]) == 0
    svgs = sorted(p.name for p in (out / "figures").iterdir())
    assert svgs == sorted(f"{fid}.svg" for fid in all_figures(load_report_data(smoke_run)))
    text = (out / "figures" / "accuracy_latency.svg").read_text()
    assert text.startswith("<svg") and "Pareto front (ours)" in text
