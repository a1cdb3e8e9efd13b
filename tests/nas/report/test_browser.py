"""The report page in headless Chromium: every figure drawn, no JavaScript errors."""

from datetime import datetime, timedelta

import pandas as pd
import yaml

from nas.report.browser import check_page
from nas.report.data import build_report_data, load_report_data
from nas.report.figures import shown_figures
from nas.report.page import write_report
from nas.study.config import parse_study
from tests.nas.report.test_data import ROOT, _frame


def _assert_clean(check):
    assert check.errors == ()
    assert set(check.rendered) == set(check.figures)
    assert check.screenshot.stat().st_size > 50_000  # a drawn page, not a blank one


def test_the_smoke_report_renders_without_errors(smoke_run, tmp_path, chromium):
    data = load_report_data(smoke_run)
    files = write_report(smoke_run, output=tmp_path / "report", data=data)
    check = check_page(files.html, screenshot=tmp_path / "smoke.png", executable=chromium)
    assert list(check.figures) == [f.id for f in shown_figures(data)]
    _assert_clean(check)


def test_a_report_with_every_outcome_renders(tmp_path, chromium):
    # pruned, infeasible and failed trials, duplicated fixed points, enough trials for
    # parameter importances (a real study of this many takes minutes; the table is the same)
    frame, specs = _frame()
    more = frame[frame["status"] == "ok"].copy()
    rows = [frame]
    for k in range(1, 4):
        extra = more.copy()
        extra["number"] += 10 * k
        extra["accuracy"] -= k
        extra["param.s3.width"] += 8 * k
        extra["started"] = extra["started"] + timedelta(minutes=10 * k)
        extra["finished"] = extra["finished"] + timedelta(minutes=10 * k)
        rows.append(extra)
    table = pd.concat(rows, ignore_index=True)
    config = parse_study(yaml.safe_load((ROOT / "studies" / "smoke.yaml").read_text()), "t")
    data = build_report_data(table, config, run_dir="runs/x", specs=specs)
    data.generated = datetime(2026, 1, 1).isoformat()
    files = write_report("runs/x", output=tmp_path / "report", data=data)
    check = check_page(files.html, screenshot=tmp_path / "all.png", executable=chromium)
    _assert_clean(check)


def test_the_pareto_table_sorts_and_copies_export_commands(smoke_run, tmp_path, chromium):
    from playwright.sync_api import sync_playwright

    files = write_report(smoke_run, output=tmp_path / "report")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page()
            page.goto(files.html.resolve().as_uri())
            page.wait_for_function("window.nasReport && window.nasReport.rendered === true")

            def column(i):
                return [float(x) for x in page.eval_on_selector_all(
                    f"#pareto tbody tr td:nth-child({i + 1})",
                    "cells => cells.map(c => c.dataset.sort)")]

            accuracy = 3  # the table's accuracy column
            page.click(f"#pareto th[data-col='{accuracy}']")
            assert column(accuracy) == sorted(column(accuracy))
            page.click(f"#pareto th[data-col='{accuracy}']")
            assert column(accuracy) == sorted(column(accuracy), reverse=True)
            button = page.locator("#pareto button.copy").first
            command = button.get_attribute("data-cmd")
            assert command.startswith(f"nas export {smoke_run} --trial ")
            button.click()
            page.wait_for_function(
                "() => document.querySelector('#pareto button.copy').textContent === 'copied'",
                timeout=10_000)
        finally:
            browser.close()
