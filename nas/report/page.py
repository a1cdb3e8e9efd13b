"""The report page: one self-contained HTML file (plotly.js inline, opens offline), the CSV
behind every figure, and optionally the figures as PNG or SVG files."""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas.errors import NasError
from nas.report import figures as figs
from nas.report.data import ReportData, load_report_data
from nas.results import format_cell

STATIC_FORMATS = ("png", "svg")

CAPTIONS = {
    "accuracy_latency": (
        "Every evaluated network; the black step line is the Pareto front (no network is both "
        "more accurate and faster than a point on it). Filled circles are our trials coloured by "
        "block family, labelled when they are a published design; open diamonds joined by dotted "
        "lines are the papers' published models. Horizontal bars: the latency oracle's 10-90 % "
        "spread, where it measures one. Grey crosses on the floor: trials over the budget (not "
        "trained); grey rings: trials stopped early."),
    "accuracy_params": "Parameters counted with a 1000-class classifier, as the papers count.",
    "accuracy_macs": "Multiply-accumulates (the papers' \"FLOPs\"), counted by fvcore.",
    "hypervolume": "Volume of objective space dominated by the front, after each trial.",
    "progress": ("Trials evaluated (trained or failed), candidates the budget rejected before "
                 "training, and the best accuracy so far."),
    "parallel_coordinates": ("One line per completed trial through its search choices, coloured "
                             "by accuracy; drag along an axis to filter."),
    "importance": ("How much each search choice explains accuracy among the better trials "
                   "(Optuna's PED-ANOVA)."),
}


@dataclasses.dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    html: Path
    data: dict[str, Path]
    static: dict[str, Path]


def _counts(trials: Any) -> dict[str, int]:
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    return {k: int(counts.get(k, 0)) for k in ("ok", "pruned", "infeasible", "failed",
                                                "interrupted", "running", "waiting")}


def _status_line(data: ReportData) -> list[tuple[str, str]]:
    """(label, value) pairs of the header: progress, ETA, best so far, set-up."""
    t, cfg = data.trials, data.config
    c = _counts(t)
    evaluated = c["ok"] + c["pruned"] + c["failed"]  # as `nas status` counts: trained or failed
    target = cfg.trials
    elapsed = float(t["elapsed_min"].max()) if t["elapsed_min"].notna().any() else 0.0
    items = [("trials", f"{evaluated}" + (f" of {target}" if target else "")
              + f" evaluated ({c['ok']} ok, {c['pruned']} pruned, {c['failed']} failed), "
              f"{c['running']} running, {c['infeasible']} rejected by the budget"),
             ("elapsed", f"{elapsed:.1f} min")]
    if target and evaluated < target and evaluated and elapsed > 0:
        eta = (target - evaluated) * elapsed / evaluated
        items.append(("ETA", f"~{eta:.0f} min"))
    ok = t[t["status"] == "ok"]
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
    b = cfg.budget
    budget = [f"{b.max_params / 1e6:g} M params" if b.max_params else "",
              f"{b.max_macs / 1e9:g} G MACs" if b.max_macs else "",
              f"{b.max_latency_ms:g} ms" if b.max_latency_ms else ""]
    if any(budget):
        items.append(("budget", ", ".join(x for x in budget if x)))
    return items


def _caption(data: ReportData, fid: str) -> str:
    text = CAPTIONS.get(fid, "")
    if fid == "hypervolume" and data.reference:
        ref = ", ".join(f"{k} {v:.4g}" for k, v in data.reference.items())
        text += f" Reference point: {ref}."
    if fid in ("accuracy_latency", "accuracy_params", "accuracy_macs"):
        if data.published_accuracy_on_own_axis:
            text += (" Our accuracies are at the study's fidelity, not ImageNet-1k top-1, so the "
                     "published models use the right-hand axis.")
        if fid == "accuracy_latency" and data.published_latency_on_own_axis:
            text += (" Our latencies are not iPhone latencies, so the published ones use the top "
                     "axis.")
        if fid != "accuracy_latency":
            text += " Published models beyond the plotted range: double-click the plot to see all."
    if fid in data.notes:
        text += f" Note: {data.notes[fid]}."
    return text


def _table(frame: Any, columns: list[tuple[str, str, str]], *, table_id: str,
           copy_column: str | None = None) -> str:
    """A sortable HTML table: ``columns`` are (column, header, number format)."""
    head = "".join(f'<th data-col="{i}" title="sort">{html.escape(h)}</th>'
                   for i, (_, h, _) in enumerate(columns))
    if copy_column:
        head += "<th>export</th>"
    body = []
    for row in frame.to_dict("records"):
        cells = []
        for column, _, spec in columns:
            value = row.get(column)
            shown = format_cell(value, spec)
            sort = value if isinstance(value, (int, float)) and value == value else shown
            cells.append(f'<td data-sort="{html.escape(str(sort))}">{html.escape(shown)}</td>')
        if copy_column:
            cmd = html.escape(str(row[copy_column]))
            cells.append(f'<td class="cmd"><code>{cmd}</code>'
                         f'<button class="copy" data-cmd="{cmd}" title="copy">copy</button></td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


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
                    ("accuracy_vs_baseline", "our Δ", "+.2f"), ("status", "status", ""),
                    ("note", "note", "")]
PROBLEM_COLUMNS = [("number", "trial", "d"), ("status", "outcome", ""),
                   ("fail_reason", "reason", "")]


def _json_for_script(value: Any) -> str:
    # "</" would end the <script> element early.
    return value.replace("</", "<\\/")


def render_html(data: ReportData, figures: Mapping[str, Any], *, refresh_s: float | None = None,
                version: str = "") -> str:
    """The report page as one HTML string. ``refresh_s``: poll ``version.json`` that often and
    reload when the study has changed (for ``nas report --serve``)."""
    from plotly.offline import get_plotlyjs

    cfg = data.config
    status = "".join(f"<div><span>{html.escape(k)}</span>{html.escape(v)}</div>"
                     for k, v in _status_line(data))
    cards = []
    for fid in figures:
        wide = "wide" if fid in ("accuracy_latency", "parallel_coordinates") else ""
        cards.append(
            f'<section class="card {wide}"><h2>{html.escape(figs.TITLES[fid])}</h2>'
            f'<div class="figure" id="fig-{fid}"></div>'
            f'<p class="caption">{html.escape(_caption(data, fid))} '
            f'<a href="data/{fid}.csv">data (CSV)</a></p></section>')
    ablation = ""
    if data.ablation is not None:
        ab = cfg.ablation
        verdicts = "".join(f"<li>{html.escape(o.text())}</li>" for o in data.orderings)
        fidelity = next((f for f in data.ablation["fidelity"] if f), "the study's fidelity")
        ablation = (
            f'<section class="card wide" id="ablation"><h2>Ablation: {html.escape(ab.paper)}'
            f'</h2><p class="caption">{html.escape(ab.question)} Paper: {html.escape(ab.setting)}'
            f'. Ours: exact parameter counts, latency from the study\'s oracle, accuracy at '
            f'{html.escape(fidelity)}. Δ: against the baseline row '
            f'({html.escape(ab.baseline)}).</p><div class="scroll">'
            + _table(data.ablation, ABLATION_COLUMNS, table_id="ablation-table")
            + f'</div><ul class="verdicts">{verdicts}</ul><p class="caption">'
            '<a href="data/ablation.csv">data (CSV)</a></p></section>')
    pareto = data.pareto_table
    problems = data.trials[data.trials["status"].isin(("failed", "interrupted"))]
    infeasible = data.trials[data.trials["status"] == "infeasible"]
    payload = "{" + ",".join(f"{json.dumps(fid)}:{fig.to_json()}"
                             for fid, fig in figures.items()) + "}"
    script_data = _json_for_script(payload)
    return PAGE.format(
        title=html.escape(f"{cfg.name}: MobileViT NAS report"),
        name=html.escape(cfg.name),
        description=html.escape(cfg.description.strip()),
        status=status, cards=ablation + "".join(cards),
        pareto_count=len(pareto),
        pareto_table=_table(pareto, PARETO_COLUMNS, table_id="pareto", copy_column="export")
        if len(pareto) else "<p>No completed trials yet.</p>",
        failed_count=len(problems),
        failed_table=_table(problems, PROBLEM_COLUMNS, table_id="failed")
        if len(problems) else "<p>None.</p>",
        infeasible_count=len(infeasible),
        infeasible_table=_table(infeasible, PROBLEM_COLUMNS, table_id="infeasible")
        if len(infeasible) else "<p>None.</p>",
        generated=html.escape(data.generated),
        plotlyjs=get_plotlyjs(), figures=script_data,
        refresh=json.dumps(refresh_s), version=json.dumps(version))


def write_report(run_dir: str | Path, *, output: str | Path | None = None,
                 static: str | None = None, reference: Mapping[str, float] | None = None,
                 refresh_s: float | None = None, data: ReportData | None = None) -> ReportFiles:
    """Write the report of a run folder: ``index.html``, ``data/<figure>.csv`` and, with
    ``static`` ("png" or "svg"), ``figures/<figure>.<static>``. Default folder: RUN_DIR/report."""
    if static is not None and static not in STATIC_FORMATS:
        raise NasError(f"--static {static}: choose one of {', '.join(STATIC_FORMATS)}")
    data = data or load_report_data(run_dir, reference=reference)
    out = Path(output) if output else Path(run_dir) / "report"
    (out / "data").mkdir(parents=True, exist_ok=True)
    figures = figs.all_figures(data)
    written = {}
    for name, table in data.tables().items():
        written[name] = out / "data" / f"{name}.csv"
        table.to_csv(written[name], index=False)
    version = study_version(data)
    page = render_html(data, figures, refresh_s=refresh_s, version=version)
    _atomic_write(out / "index.html", page)
    _atomic_write(out / "version.json", json.dumps({"version": version}))
    images = write_static(figures, out / "figures", static) if static else {}
    return ReportFiles(html=out / "index.html", data=written, static=images)


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


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
:root {{ --ink: #1d1d1f; --muted: #6e6e73; --line: #e3e3e8; --bg: #f5f5f7; }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; font: 14px/1.45 Inter, -apple-system, "Segoe UI", Roboto, Helvetica, Arial,
       sans-serif; color: var(--ink); background: var(--bg); }}
header {{ background: #fff; border-bottom: 1px solid var(--line); padding: 18px 28px 12px; }}
header h1 {{ margin: 0 0 4px; font-size: 22px; font-weight: 650; }}
header p {{ margin: 0 0 10px; color: var(--muted); max-width: 110ch; }}
.status {{ display: flex; flex-wrap: wrap; gap: 6px 22px; font-size: 13px; }}
.status span {{ color: var(--muted); margin-right: 6px; }}
main {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 18px;
       padding: 18px 28px; max-width: 1800px; margin: 0 auto; }}
.card {{ background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px;
        min-width: 0; }}
.card.wide {{ grid-column: 1 / -1; }}
.card h2 {{ margin: 0 0 6px; font-size: 16px; font-weight: 600; }}
.caption {{ color: var(--muted); font-size: 12.5px; margin: 6px 0 0; }}
table {{ border-collapse: collapse; width: 100%; font-size: 12.5px; }}
th, td {{ text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }}
th {{ cursor: pointer; user-select: none; white-space: nowrap; background: #fafafa;
     position: sticky; top: 0; }}
th.asc::after {{ content: " \\25B2"; font-size: 10px; }}
th.desc::after {{ content: " \\25BC"; font-size: 10px; }}
td.cmd {{ white-space: nowrap; }}
code {{ font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f2f2f5;
       padding: 2px 5px; border-radius: 4px; }}
button.copy {{ margin-left: 6px; font-size: 11px; padding: 2px 8px; border: 1px solid #ccc;
              border-radius: 4px; background: #fff; cursor: pointer; }}
.scroll {{ max-height: 420px; overflow: auto; }}
details summary {{ cursor: pointer; font-weight: 600; margin: 4px 0; }}
footer {{ color: var(--muted); font-size: 12px; padding: 0 28px 24px; }}
</style>
</head>
<body>
<header>
<h1>{name}</h1>
<p>{description}</p>
<div class="status">{status}</div>
</header>
<main>
{cards}
<section class="card wide" id="pareto-trials"><h2>Pareto trials ({pareto_count})</h2>
<div class="scroll">{pareto_table}</div>
<p class="caption">Click a header to sort. <a href="data/pareto_trials.csv">data (CSV)</a></p>
</section>
<section class="card wide"><h2>Failed and interrupted trials ({failed_count})</h2>
<div class="scroll">{failed_table}</div>
<details><summary>Infeasible trials ({infeasible_count}): over budget, never trained</summary>
<div class="scroll">{infeasible_table}</div></details>
</section>
</main>
<footer>Generated {generated} by <code>nas report</code>. Figures are interactive (zoom, hover,
legend toggles); the camera icon saves one as SVG.</footer>
<script>{plotlyjs}</script>
<script>
const NAS_FIGURES = {figures};
const NAS_REFRESH_S = {refresh};
const NAS_VERSION = {version};
const PLOT_CONFIG = {{displaylogo: false, responsive: true,
  toImageButtonOptions: {{format: "svg", scale: 1}}}};
window.nasReport = {{figures: Object.keys(NAS_FIGURES), rendered: false}};
window.nasReport.done = Promise.all(Object.entries(NAS_FIGURES).map(([id, fig]) => {{
  const config = Object.assign({{}}, PLOT_CONFIG,
    {{toImageButtonOptions: {{format: "svg", filename: id}}}});
  return Plotly.newPlot("fig-" + id, fig.data, fig.layout, config);
}})).then(() => {{
  window.nasReport.rendered = true;
  window.nasReport.ms = performance.now();
  document.body.dataset.rendered = "true";
  const y = sessionStorage.getItem("nas-scroll");
  if (y !== null) {{ window.scrollTo(0, +y); sessionStorage.removeItem("nas-scroll"); }}
}});

document.querySelectorAll("table.sortable th[data-col]").forEach(th => {{
  th.addEventListener("click", () => {{
    const table = th.closest("table"), body = table.tBodies[0], col = +th.dataset.col;
    const asc = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(h => h.classList.remove("asc", "desc"));
    th.classList.add(asc ? "asc" : "desc");
    const key = tr => tr.children[col].dataset.sort;
    const rows = Array.from(body.rows).sort((a, b) => {{
      const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      const c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    }});
    rows.forEach(r => body.appendChild(r));
  }});
}});

document.querySelectorAll("button.copy").forEach(b => {{
  b.addEventListener("click", () => {{
    const text = b.dataset.cmd, done = () => {{ b.textContent = "copied"; }};
    const fallback = () => {{  // no clipboard API (a page opened from disk, say)
      const area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      document.execCommand("copy"); area.remove(); done();
    }};
    if (navigator.clipboard && window.isSecureContext) {{
      navigator.clipboard.writeText(text).then(done, fallback);
    }} else {{
      fallback();
    }}
  }});
}});

if (NAS_REFRESH_S && location.protocol.startsWith("http")) {{
  setInterval(() => {{
    fetch("version.json", {{cache: "no-store"}}).then(r => r.json()).then(v => {{
      if (v.version !== NAS_VERSION) {{
        sessionStorage.setItem("nas-scroll", String(window.scrollY));
        location.reload();
      }}
    }}).catch(() => {{}});
  }}, NAS_REFRESH_S * 1000);
}}
</script>
</body>
</html>
"""
