"""The figure registry: a figure added there is on the page, in data/ and in --static, with
nothing else edited; the page escapes what it shows."""

import json
import re

import pandas as pd
import pytest

from nas.report.data import build_report_data
from nas.report.figures import FIGURES, Figure, all_figures
from nas.report.page import write_report
from tests.nas.report.test_data import _config, _frame


def _trials_per_family(data):
    return data.trials.groupby("family").size().rename("trials").reset_index()


def _draw_trials_per_family(data):
    import plotly.graph_objects as go

    table = _trials_per_family(data)
    return go.Figure(go.Bar(x=table["family"], y=table["trials"]))


TOY = Figure("toy_trials_per_family", "Trials per block family <toy>",
             caption="How many trials each block family has, <b>all</b> outcomes & kinds.",
             draw=_draw_trials_per_family, table=_trials_per_family)


def _data():
    frame, specs = _frame()
    return build_report_data(frame, _config(), run_dir="runs/x", specs=specs)


def _page_figures(page):
    return json.loads(re.search(r"const NAS_FIGURES = (.*?);\n", page).group(1))


def test_a_registered_figure_is_on_the_page_and_in_the_csvs(tmp_path, monkeypatch):
    data = _data()
    with monkeypatch.context() as m:
        m.setitem(FIGURES, TOY.id, TOY)
        files = write_report("runs/x", output=tmp_path / "with", data=data)
        page = files.html.read_text()
        assert "<h2>Trials per block family &lt;toy&gt;</h2>" in page
        assert ("How many trials each block family has, &lt;b&gt;all&lt;/b&gt; outcomes &amp; "
                "kinds.") in page
        assert f'<div class="figure" id="fig-{TOY.id}"></div>' in page
        assert f'<a href="data/{TOY.id}.csv">' in page
        drawn = _page_figures(page)[TOY.id]
        assert drawn["data"][0]["type"] == "bar"
        table = pd.read_csv(tmp_path / "with" / "data" / f"{TOY.id}.csv")
        pd.testing.assert_frame_equal(table, _trials_per_family(data), check_dtype=False)
        assert files.data[TOY.id] == tmp_path / "with" / "data" / f"{TOY.id}.csv"
        assert TOY.id in all_figures(data)  # what --static writes
    # gone again with the registry's entry
    assert TOY.id not in FIGURES
    files = write_report("runs/x", output=tmp_path / "without", data=data)
    assert TOY.id not in files.html.read_text()
    assert not (tmp_path / "without" / "data" / f"{TOY.id}.csv").exists()


def test_a_registered_figure_is_a_static_image(tmp_path, monkeypatch, chromium):
    monkeypatch.setitem(FIGURES, TOY.id, TOY)
    data = _data()
    files = write_report("runs/x", output=tmp_path / "r", data=data, static="svg")
    assert list(files.static) == list(all_figures(data))
    assert sorted(p.name for p in (tmp_path / "r" / "figures").iterdir()) == sorted(
        f"{fid}.svg" for fid in all_figures(data))
    assert files.static[TOY.id].read_text().startswith("<svg")


def test_every_shown_figure_has_a_card_in_the_registry_order(tmp_path):
    data = _data()
    page = write_report("runs/x", output=tmp_path / "r", data=data).html.read_text()
    shown = list(all_figures(data))
    assert re.findall(r'id="fig-([a-z0-9_]+)"', page) == shown
    assert list(_page_figures(page)) == shown
    for fid in shown:
        assert f"<h2>{FIGURES[fid].title}</h2>" in page


def test_a_figure_not_shown_for_the_data_keeps_its_csv(tmp_path):
    data = _data()  # fewer trials than parameter importances need
    hidden = [f for f in FIGURES.values() if not f.shown(data)]
    assert hidden, "the hand-made data shows every figure; this test needs one it hides"
    files = write_report("runs/x", output=tmp_path / "r", data=data)
    page = files.html.read_text()
    for figure in hidden:
        assert f'id="fig-{figure.id}"' not in page
        assert files.data[figure.id].exists()


def test_the_page_escapes_what_it_shows(tmp_path):
    frame, specs = _frame()
    config = _config(name="evil", description="<script>alert(1)</script> & more")
    data = build_report_data(frame, config, run_dir="runs/<x>", specs=specs)
    page = write_report("runs/x", output=tmp_path / "r", data=data).html.read_text()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    # the export command is shown and copied as written
    assert "<code>nas export runs/&lt;x&gt; --trial 3</code>" in page
    assert 'data-cmd="nas export runs/&lt;x&gt; --trial 3"' in page


@pytest.mark.parametrize("fid", ["Accuracy", "a-b", "a b", "../x", ""])
def test_a_figure_id_names_a_file_and_an_element(fid):
    with pytest.raises(ValueError, match="figure id"):
        Figure(fid, "t", caption="c", draw=_draw_trials_per_family, table=_trials_per_family)
