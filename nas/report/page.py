"""The report page: one self-contained HTML file (plotly.js inline, opens offline), the CSV
behind every figure, and optionally the figures as PNG or SVG files.

The page is ``templates/page.html.j2`` (Jinja2, autoescaped) filled with a :class:`Page`; the
figures, their CSVs and their static images all come from :data:`nas.report.figures.FIGURES`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from markupsafe import Markup

from nas.errors import NasError
from nas.report import figures as figs
from nas.report.data import ReportData, load_report_data
from nas.results.outcome import Counts, TrialStatus
from nas.results.runs import CHANCE_HINT, chance_hint, frame_estimates, front_noise_text, noise_floor_of
from nas.results.table import format_cell

STATIC_FORMATS = ("png", "svg")


@dataclasses.dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    html: Path
    data: dict[str, Path]
    static: dict[str, Path]


@dataclasses.dataclass(frozen=True)
class Cell:
    """A table cell: its text and the key the page sorts its column by."""

    text: str
    sort: str


@dataclasses.dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...]
    command: str = ""  # a shell command shown with a copy button (tables with ``commands``)


@dataclasses.dataclass(frozen=True)
class Table:
    """A sortable table of the page (HTML id ``id``)."""

    id: str
    headers: tuple[str, ...]
    rows: tuple[Row, ...]
    commands: bool = False  # whether each row ends with its command and a copy button


@dataclasses.dataclass(frozen=True)
class FigureCard:
    """A figure's card: the page draws the plotly figure of the same id into it."""

    id: str
    title: str
    caption: str
    wide: bool


@dataclasses.dataclass(frozen=True)
class AblationCard:
    paper: str
    question: str
    setting: str
    fidelity: str
    baseline: str
    table: Table
    verdicts: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Page:
    """Everything ``templates/page.html.j2`` shows, as plain values (the template escapes them)."""

    title: str
    name: str
    description: str
    status: tuple[tuple[str, str], ...]  # (label, value) of the header
    ablation: AblationCard | None  # shown first
    figures: tuple[FigureCard, ...]
    pareto: Table
    failed: Table
    infeasible: Table
    generated: str
    figures_json: str  # {id: plotly figure JSON}, in the order of ``figures``
    plotlyjs: str  # plotly.js itself, inlined so the page opens offline
    refresh_s: float | None
    version: str


def _counts(trials: Any) -> Counts:
    counts = Counts()
    for status, n in (trials["status"].value_counts().items() if len(trials) else ()):
        counts.add(TrialStatus(status), int(n))
    if len(trials):
        counts.repeated = int(((trials["status"] == TrialStatus.OK) & trials["repeat"]).sum())
    return counts


def _status_line(data: ReportData) -> list[tuple[str, str]]:
    """(label, value) pairs of the header: progress, ETA, best so far, set-up."""
    t, cfg = data.trials, data.config
    c = _counts(t)
    evaluated = c.counted  # as `nas status` counts: trained or failed, repeats aside
    target = cfg.trials
    elapsed = float(t["elapsed_min"].max()) if t["elapsed_min"].notna().any() else 0.0
    repeats = f", {c.repeated} repeats" if c.repeated else ""
    items = [("trials", f"{evaluated}" + (f" of {target}" if target else "")
              + f" evaluated ({c.ok} ok, {c.pruned} pruned, {c.failed} failed{repeats}), "
              f"{c.running} running, {c.infeasible} rejected by the budget"),
             ("elapsed", f"{elapsed:.1f} min")]
    if target and evaluated < target and evaluated and elapsed > 0:
        eta = (target - evaluated) * elapsed / evaluated
        items.append(("ETA", f"~{eta:.0f} min"))
    ok = t[t["status"] == TrialStatus.OK]
    if ok["accuracy"].notna().any():
        best = ok.loc[ok["accuracy"].idxmax()]
        items.append(("best accuracy", f"{best['accuracy']:.2f} (trial {int(best['number'])}"
                                       f"{', ' + best['label'] if best['label'] else ''})"))
    if ok["latency_ms"].notna().any():
        fast = ok.loc[ok["latency_ms"].idxmin()]
        items.append(("fastest", f"{fast['latency_ms']:.2f} ms (trial {int(fast['number'])})"))
    items.append(("objectives", ", ".join(f"{o.metric} ({o.resolved_direction})"
                                          for o in cfg.objectives)))
    fidelity = t["fidelity"].dropna()
    fidelity = fidelity[fidelity != ""]
    if len(fidelity):
        items.append(("fidelity", str(fidelity.mode().iloc[0])))
    oracle = figs.oracle_label(data)
    if oracle:
        items.append(("latency oracle", oracle))
    chance = t[(t["status"] == TrialStatus.OK) & t["chance"].fillna(False).astype(bool)] \
        if "chance" in t else t.iloc[0:0]
    if len(chance):
        inherited = "evaluator" in chance and (chance["evaluator"] == "supernet").any()
        train = getattr(cfg.evaluator, "train", None)
        hint = chance_hint({"inherited": True, "supernet_epochs": train.epochs}) \
            if inherited and train is not None else CHANCE_HINT
        items.append(("AT CHANCE", f"{len(chance)} trial(s) scored no better than guessing "
                                   f"(marked ✕ in the figures): {hint}"))

    floor = noise_floor_of(frame_estimates(t), cfg)
    front = t[t["pareto"].fillna(False).astype(bool)] if "pareto" in t else t.iloc[0:0]
    if floor is not None:
        items.append(("noise", front_noise_text(list(front["accuracy"].dropna()), floor)))
    b = cfg.budget
    budget = [f"{b.max_params / 1e6:g} M params" if b.max_params else "",
              f"{b.max_macs / 1e9:g} G MACs" if b.max_macs else "",
              f"{b.max_latency_ms:g} ms" if b.max_latency_ms else ""]
    if any(budget):
        items.append(("budget", ", ".join(x for x in budget if x)))
    return items


PARETO_COLUMNS = [("number", "trial", "d"), ("label", "design", ""), ("family", "block", ""),
                  ("accuracy", "accuracy", ".2f"), ("latency_ms", "latency (ms)", ".2f"),
                  ("params_m", "params (M)", ".3f"), ("macs_g", "MACs (G)", ".3f"),
                  ("summary", "architecture", "")]
ABLATION_COLUMNS = [("row", "row", ""), ("published_params_m", "paper params (M)", ".1f"),
                    ("params_m", "our params (M)", ".3f"),
                    ("published_latency_ms", "paper latency (ms)", ".2f"),
                    ("latency_ms", "our latency (ms)", ".2f"),
                    ("latency_delta_pct", "latency Δ (%)", "+.1f"),
                    ("published_top1", "paper top-1", ".1f"),
                    ("published_top1_vs_baseline", "paper Δ", "+.1f"),
                    ("accuracy", "our accuracy", ".2f"),
                    ("interval", "95 % interval", ""), ("seeds", "seeds", "d"),
                    ("accuracy_vs_baseline", "our Δ", "+.2f"),
                    ("verdict", "vs baseline (knowing the noise)", ""),
                    ("status", "status", ""), ("note", "note", "")]
PROBLEM_COLUMNS = [("number", "trial", "d"), ("status", "outcome", ""),
                   ("fail_reason", "reason", "")]


def _pareto_columns(table: Any) -> list[tuple[str, str, str]]:
    """The Pareto table's columns; with inherited accuracies, where each came from and the
    refine step's retrained accuracy."""
    if "accuracy_source" not in table:
        return PARETO_COLUMNS
    at = [c for c, _, _ in PARETO_COLUMNS].index("accuracy") + 1
    extra = [("accuracy_source", "accuracy is", "")]
    if "refined_accuracy" in table:
        extra.append(("refined_accuracy", "retrained", ".2f"))
    return [*PARETO_COLUMNS[:at], *extra, *PARETO_COLUMNS[at:]]


def _table(frame: Any, columns: list[tuple[str, str, str]], *, table_id: str,
           command_column: str | None = None) -> Table:
    """A sortable table of ``frame``: ``columns`` are (column, header, number format)."""
    rows = []
    for record in frame.to_dict("records"):
        cells = []
        for column, _, spec in columns:
            value = record.get(column)
            shown = format_cell(value, spec)
            sort = value if isinstance(value, (int, float)) and value == value else shown
            cells.append(Cell(text=shown, sort=str(sort)))
        rows.append(Row(tuple(cells), str(record[command_column]) if command_column else ""))
    return Table(id=table_id, headers=tuple(h for _, h, _ in columns), rows=tuple(rows),
                 commands=command_column is not None)


def page_tables(data: ReportData) -> dict[str, Any]:
    """The CSV tables of the page that are not a figure's (those are in the figure registry),
    by file name: the accuracy/latency front, the Pareto trials and, for an ablation, its
    table."""
    tables = {"pareto_front": data.front, "pareto_trials": data.pareto_table}
    if data.ablation is not None:
        tables["ablation"] = data.ablation
    return tables


def _script_json(text: str) -> Markup:
    """JSON text made safe inside a <script> element: "<", ">" and "&" as JSON escapes, so no
    "</script>" or "<!--" ends it early (the same characters Jinja's ``tojson`` escapes)."""
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


@functools.cache
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("nas.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["script_json"] = _script_json
    return env.get_template("page.html.j2")


def page_values(data: ReportData, figures: Mapping[str, Any], *, refresh_s: float | None = None,
                version: str = "") -> Page:
    """What the page shows: ``figures`` are drawn figures by registry id."""
    from plotly.offline import get_plotlyjs

    cfg = data.config
    ablation = None
    if data.ablation is not None:
        ab = cfg.ablation
        ablation = AblationCard(
            paper=ab.paper, question=ab.question, setting=ab.setting, baseline=ab.baseline,
            fidelity=next((f for f in data.ablation["fidelity"] if f), "the study's fidelity"),
            table=_table(data.ablation, ABLATION_COLUMNS, table_id="ablation-table"),
            verdicts=tuple(o.text() for o in data.orderings))
    cards = []
    for fid in figures:
        figure = figs.FIGURES[fid]
        cards.append(FigureCard(id=fid, title=figure.title, caption=figure.caption_for(data),
                                wide=figure.wide))
    problems = data.trials[data.trials["status"].isin((TrialStatus.FAILED,
                                                       TrialStatus.INTERRUPTED))]
    infeasible = data.trials[data.trials["status"] == TrialStatus.INFEASIBLE]
    return Page(
        title=f"{cfg.name}: MobileViT NAS report", name=cfg.name,
        description=cfg.description.strip(), status=tuple(_status_line(data)),
        ablation=ablation, figures=tuple(cards),
        pareto=_table(data.pareto_table, _pareto_columns(data.pareto_table), table_id="pareto",
                      command_column="export"),
        failed=_table(problems, PROBLEM_COLUMNS, table_id="failed"),
        infeasible=_table(infeasible, PROBLEM_COLUMNS, table_id="infeasible"),
        generated=data.generated,
        figures_json="{" + ",".join(f"{json.dumps(fid)}:{fig.to_json()}"
                                    for fid, fig in figures.items()) + "}",
        plotlyjs=get_plotlyjs(), refresh_s=refresh_s, version=version)


def render_html(data: ReportData, figures: Mapping[str, Any], *, refresh_s: float | None = None,
                version: str = "") -> str:
    """The report page as one HTML string; ``figures`` are drawn figures by registry id (see
    :func:`nas.report.figures.all_figures`). ``refresh_s``: poll ``version.json`` that often and
    reload when the study has changed (for ``nas report --serve``)."""
    page = page_values(data, figures, refresh_s=refresh_s, version=version)
    return _template().render({f.name: getattr(page, f.name) for f in dataclasses.fields(page)})


def write_report(run_dir: str | Path, *, output: str | Path | None = None,
                 static: str | None = None, reference: Mapping[str, float] | None = None,
                 refresh_s: float | None = None, data: ReportData | None = None) -> ReportFiles:
    """Write the report of a run folder: ``index.html``, ``data/<name>.csv`` (one per registered
    figure, and the page's tables) and, with ``static`` ("png" or "svg"),
    ``figures/<figure>.<static>``. Default folder: RUN_DIR/report."""
    if static is not None and static not in STATIC_FORMATS:
        raise NasError(f"--static {static}: choose one of {', '.join(STATIC_FORMATS)}")
    data = data or load_report_data(run_dir, reference=reference)
    out = Path(output) if output else Path(run_dir) / "report"
    (out / "data").mkdir(parents=True, exist_ok=True)
    figures = figs.all_figures(data)
    written = {}
    for name, table in csv_tables(data).items():
        written[name] = out / "data" / f"{name}.csv"
        table.to_csv(written[name], index=False)
    version = study_version(data)
    page = render_html(data, figures, refresh_s=refresh_s, version=version)
    _atomic_write(out / "index.html", page)
    _atomic_write(out / "version.json", json.dumps({"version": version}))
    images = write_static(figures, out / "figures", static) if static else {}
    return ReportFiles(html=out / "index.html", data=written, static=images)


def csv_tables(data: ReportData) -> dict[str, Any]:
    """Every CSV of the report by file name: each registered figure's table, then the page's."""
    tables = {f.id: f.table(data) for f in figs.FIGURES.values()}
    clash = set(tables) & set(page_tables(data))
    if clash:
        raise ValueError(f"figure ids {sorted(clash)} are also tables of the page: rename them")
    return {**tables, **page_tables(data)}


def study_version(data: ReportData) -> str:
    """A short hash of the trials' outcomes: it changes when the page would."""
    t = data.trials
    keys = [c for c in ("number", "status", "accuracy", "latency_ms") if c in t]
    text = t[keys].to_csv(index=False) if len(t) else ""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_static(figures: Mapping[str, Any], folder: Path, fmt: str) -> dict[str, Path]:
    """Each figure as ``folder/<id>.<fmt>`` at paper size (kaleido; needs Chrome or Chromium)."""
    import plotly.io as pio

    folder.mkdir(parents=True, exist_ok=True)
    paths = {fid: folder / f"{fid}.{fmt}" for fid in figures}
    try:
        pio.write_images(list(figures.values()), [str(p) for p in paths.values()], format=fmt,
                         width=1100, height=650, scale=2 if fmt == "png" else 1)
    except Exception as exc:  # kaleido's errors for a missing browser vary by version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NasError(f"--static {fmt}: plotly's image export (kaleido) failed: {first}. It "
                       "needs Chrome or Chromium: install one (Debian: apt-get install chromium)"
                       " or run `plotly_get_chrome`") from None
    return paths
