"""The report's figures, drawn with plotly from :class:`nas.report.data.ReportData` tables.

One colour per block family everywhere (the Okabe-Ito palette, safe for colour-blind readers);
our trials are filled circles, the papers' published models open diamonds joined per family,
infeasible and pruned trials grey.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from nas.report.data import FIGURE_COLUMNS, TRAINED, ReportData
from nas.results.outcome import TrialStatus

FAMILY_COLORS = {
    "v1": "#0072B2",
    "v2": "#E69F00",
    "v3_v1": "#009E73",
    "v3_v2": "#CC79A7",
    "none": "#56B4E9",
    "mixed": "#D55E00",
    "custom": "#D55E00",
    "unknown": "#7F7F7F",
}
FAMILY_NAMES = {
    "v1": "v1 block",
    "v2": "v2 block",
    "v3_v1": "v3 block (v1 layout)",
    "v3_v2": "v3 block (v2 layout)",
    "none": "v1 block, no fusion",
    "mixed": "mixed blocks",
    "custom": "custom block",
    "unknown": "unknown block",
}
GREY = "#A0A0A0"
# The right-hand axis of the published models when our accuracy is not ImageNet-1k top-1.
_PUBLISHED_TOP1_AXIS = dict(title="published ImageNet-1k top-1 (%)", overlaying="y", side="right",
                            showgrid=False, ticks="outside", tickmode="auto")
MAX_IMPORTANCE_BARS = 15  # the rest are in the CSV
FONT = "Inter, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"

def _layout(fig: Any, *, height: int = 520, **extra: Any) -> Any:
    legend = dict(bgcolor="rgba(255,255,255,0.85)", bordercolor="#ddd", borderwidth=1,
                  **extra.pop("legend", {}))
    margin = {**dict(l=70, r=30, t=40, b=60), **extra.pop("margin", {})}
    fig.update_layout(
        template="plotly_white", height=height, font=dict(family=FONT, size=13),
        margin=margin, hoverlabel=dict(font_size=12, align="left"), legend=legend, **extra)
    fig.update_xaxes(showline=True, linecolor="#444", mirror=False, ticks="outside",
                     gridcolor="#eee")
    fig.update_yaxes(showline=True, linecolor="#444", ticks="outside", gridcolor="#eee")
    return fig


def _hover(frame: Any, *, full: bool = True) -> tuple[list[list[Any]], str]:
    """Custom data and hover template naming a trial's network, size, latency and, when
    ``full``, its architecture, fidelity and oracle (the main figure's hover; the others stay
    light so a page of thousands of trials loads quickly)."""
    custom = []
    for row in frame.itertuples(index=False):
        name = f"trial {row.number}" + (f" · {row.label}" if row.label else "")
        latency = "-" if row.latency_ms != row.latency_ms else f"{row.latency_ms:.2f} ms"
        item = [name, round((row.params or 0) / 1e6, 3), round((row.macs or 0) / 1e9, 4),
                latency]
        if full:
            summary = "<br>".join(str(row.summary).split(" | ")) if row.summary else ""
            item += [summary, row.fidelity or "", row.oracle or ""]
        custom.append(item)
    template = ("<b>%{customdata[0]}</b><br>accuracy %{y:.2f}<br>latency %{customdata[3]}"
                "<br>%{customdata[1]:.2f} M params · %{customdata[2]:.3f} G MACs")
    if full:
        template += ("<br><span style='font-size:11px'>%{customdata[4]}</span>"
                     "<br>fidelity: %{customdata[5]}<br>oracle: %{customdata[6]}")
    return custom, template + "<extra></extra>"


def _trial_traces(data: ReportData, x: str, *, error_x: bool = False) -> list[Any]:
    """Our completed trials, one trace per block family, then the published designs' names
    as one text-only trace (a text node per point of thousands would slow the page)."""
    import plotly.graph_objects as go

    traces = []
    ok = data.trials[(data.trials["status"] == TrialStatus.OK) & data.trials[x].notna()
                     & data.trials["accuracy"].notna()]
    for family, group in ok.groupby("family", sort=True):
        custom, template = _hover(group, full=x == "latency_ms")
        color = FAMILY_COLORS.get(family, FAMILY_COLORS["unknown"])
        spread = error_x and bool((group["latency_err_ms"] > 0).any())
        traces.append(go.Scatter(
            x=group[x], y=group["accuracy"], mode="markers",
            name=FAMILY_NAMES.get(family, family), legendgroup=family,
            marker=dict(color=color, size=9, line=dict(color="white", width=0.8), opacity=0.9),
            error_x=dict(type="data", array=group["latency_err_ms"], visible=True,
                         color=color, thickness=1, width=0) if spread else None,
            customdata=custom, hovertemplate=template))
    chance = ok[ok["chance"].fillna(False).astype(bool)] if "chance" in ok else ok.iloc[0:0]
    if len(chance):  # learned nothing: its place in the ranking means nothing
        traces.append(go.Scatter(
            x=chance[x], y=chance["accuracy"], mode="markers", name="at chance level",
            marker=dict(symbol="x-thin-open", size=15, color="#000000",
                        line=dict(width=2, color="#000000")),
            hovertemplate="trial %{customdata}: at chance level (learned nothing)<extra></extra>",
            customdata=chance["number"]))
    named = ok[ok["label"] != ""]
    if len(named):
        traces.append(go.Scatter(
            x=named[x], y=named["accuracy"], mode="text", text=named["label"],
            textposition="top center", showlegend=False, hoverinfo="skip",
            name="published designs (ours)",
            textfont=dict(size=10, color=[FAMILY_COLORS.get(f, FAMILY_COLORS["unknown"])
                                          for f in named["family"]])))
    return traces


def _grey_traces(data: ReportData, x: str) -> list[Any]:
    """Pruned trials (partial training) and infeasible ones (never trained; drawn on the
    floor of the plot, where their size or latency put them)."""
    import plotly.graph_objects as go

    t = data.trials
    traces = []
    pruned = t[(t["status"] == TrialStatus.PRUNED) & t[x].notna() & t["accuracy"].notna()]
    if len(pruned):
        custom, template = _hover(pruned, full=x == "latency_ms")
        traces.append(go.Scatter(
            x=pruned[x], y=pruned["accuracy"], mode="markers", name="pruned (partly trained)",
            marker=dict(color="rgba(0,0,0,0)", size=8, line=dict(color=GREY, width=1.2)),
            customdata=custom, hovertemplate=template.replace("<b>", "<b>pruned · ")))
    infeasible = t[(t["status"] == TrialStatus.INFEASIBLE) & t[x].notna()]
    if len(infeasible):
        trained = t.loc[t["status"].isin(TRAINED), "accuracy"].dropna()
        floor = float(trained.min()) if len(trained) else 0.0
        reasons = infeasible["fail_reason"].fillna("over budget").astype(str)
        traces.append(go.Scatter(
            x=infeasible[x], y=[floor] * len(infeasible), mode="markers",
            name="infeasible (not trained)",
            marker=dict(symbol="x-thin", color=GREY, size=9, line=dict(color=GREY, width=1.5)),
            customdata=list(zip(infeasible["number"], reasons, strict=True)),
            hovertemplate="<b>trial %{customdata[0]}</b> · %{customdata[1]}<br>"
                          + x.replace("_ms", " (ms)") + " %{x:,.3s}<extra>not trained</extra>"))
    return traces


def _published_traces(data: ReportData, x: str, *, xaxis: str = "x", yaxis: str = "y",
                      labels: bool = True) -> list[Any]:
    """The papers' models, joined per block family: the published curve."""
    import plotly.graph_objects as go

    pub = data.published.dropna(subset=[x, "accuracy"])
    traces = []
    for family, group in pub.groupby("family", sort=True):
        group = group.sort_values(x)
        color = FAMILY_COLORS.get(family, FAMILY_COLORS["unknown"])
        traces.append(go.Scatter(
            x=group[x], y=group["accuracy"], mode="lines+markers+text" if labels else
            "lines+markers", xaxis=xaxis,
            yaxis=yaxis, name=f"published, {FAMILY_NAMES.get(family, family)}",
            legendgroup=f"published {family}", text=group["label"],
            textposition="bottom right", textfont=dict(size=10, color=color),
            line=dict(color=color, dash="dot", width=1.2),
            marker=dict(symbol="diamond-open", color=color, size=10, line=dict(width=1.6)),
            customdata=list(zip(group["name"], group["params"] / 1e6,
                                group["macs"].fillna(0) / 1e9, group["latency_ms"].fillna(0),
                                group["latency_device"].fillna("-"), group["source"],
                                strict=True)),
            hovertemplate="<b>%{customdata[0]}</b> (published)<br>ImageNet-1k top-1 %{y:.1f} %"
                          "<br>%{customdata[1]:.1f} M params · %{customdata[2]:.2f} G MACs"
                          "<br>latency %{customdata[3]:.2f} ms on %{customdata[4]}"
                          "<br><span style='font-size:11px'>%{customdata[5]}</span>"
                          "<extra></extra>"))
    return traces


def accuracy_latency(data: ReportData) -> Any:
    """Every trial's accuracy against its latency, the Pareto front as a step line, the papers'
    published models beside them (on their own axes when the units differ)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    front = data.front
    if len(front):
        fig.add_trace(go.Scatter(
            x=front["latency_ms"], y=front["accuracy"], mode="lines", line_shape="hv",
            name="Pareto front (ours)", line=dict(color="#222", width=2),
            hoverinfo="skip"))
    for trace in (*_grey_traces(data, "latency_ms"), *_trial_traces(data, "latency_ms",
                                                                    error_x=True)):
        fig.add_trace(trace)
    own_x = data.published_latency_on_own_axis
    own_y = data.published_accuracy_on_own_axis
    for trace in _published_traces(data, "latency_ms", xaxis="x2" if own_x else "x",
                                   yaxis="y2" if own_y else "y"):
        fig.add_trace(trace)
    extra: dict[str, Any] = {}
    if own_x:
        extra["xaxis2"] = dict(title="published iPhone 12 latency (ms)", overlaying="x",
                               side="top", showgrid=False, ticks="outside", rangemode="tozero",
                               tickmode="auto")
    if own_y:
        extra["yaxis2"] = _PUBLISHED_TOP1_AXIS
    device = oracle_label(data)
    _layout(fig, height=580, xaxis_title=f"latency (ms){', ' + device if device else ''}",
            yaxis_title=data.accuracy_label,
            legend=dict(orientation="v", x=1.08 if own_y else 1.0, xanchor="left", y=1),
            **extra)
    fig.update_layout(margin=dict(t=70 if own_x else 40, r=80 if own_y else 30))
    return fig


def oracle_label(data: ReportData) -> str:
    """The latency oracle of the trials (backend and device) when they share one, else ""."""
    oracles = data.trials["oracle"].dropna()
    oracles = oracles[oracles != ""].unique()
    return oracles[0] if len(oracles) == 1 else ""


def accuracy_size(data: ReportData, x: str) -> Any:
    """Accuracy against parameters (``x="params"``) or MACs, with the budget line."""
    import plotly.graph_objects as go

    budget = data.config.budget
    limit = budget.max_params if x == "params" else budget.max_macs
    unit = 1e6 if x == "params" else 1e9
    fig = go.Figure()
    for trace in (*_grey_traces(data, x), *_trial_traces(data, x)):
        fig.add_trace(trace)
    own_y = data.published_accuracy_on_own_axis
    for trace in _published_traces(data, x, yaxis="y2" if own_y else "y", labels=False):
        fig.add_trace(trace)
    # Trained trials and the budget set the range; far-off infeasible ones would squash them.
    trained = data.trials.loc[data.trials["status"].isin(TRAINED), x].dropna()
    top = max(float(trained.max()) * 1.1 if len(trained) else 0.0, float(limit or 0) * 1.5)
    if top > 0:
        fig.update_xaxes(range=[0, top])
    if limit:
        fig.add_vline(x=limit, line=dict(color="#C00000", dash="dash", width=1.5),
                      annotation_text=f"budget {limit / unit:g} {'M' if x == 'params' else 'G'}",
                      annotation_position="top left", annotation_font_color="#C00000")
    extra: dict[str, Any] = {}
    if own_y:
        extra["yaxis2"] = _PUBLISHED_TOP1_AXIS
    title = ("parameters (1000-class head)" if x == "params"
             else f"MACs at {budget.resolution}x{budget.resolution}")
    _layout(fig, height=560, xaxis_title=title, yaxis_title=data.accuracy_label,
            legend=dict(orientation="h", x=0, y=-0.18, yanchor="top", font=dict(size=11)),
            margin=dict(r=80 if own_y else 30, b=150), **extra)
    fig.update_xaxes(tickformat="~s")
    return fig


def hypervolume(data: ReportData) -> Any:
    """The hypervolume of the study's front after each trial."""
    import plotly.graph_objects as go

    h = data.hypervolume
    fig = go.Figure(go.Scatter(x=h["number"], y=h["hypervolume"], mode="lines",
                               line_shape="hv", line=dict(color="#0072B2", width=2),
                               name="hypervolume",
                               hovertemplate="after trial %{x}: %{y:.4g}<extra></extra>"))
    units = " × ".join(_unit(c) for c in data.reference)
    return _layout(fig, height=380, xaxis_title="trial number",
                   yaxis_title=f"hypervolume ({units})" if units else "hypervolume",
                   showlegend=False)


def _unit(column: str) -> str:
    return {"accuracy": "%", "latency_ms": "ms", "params": "params", "macs": "MACs"}.get(column,
                                                                                          column)


def progress(data: ReportData) -> Any:
    """Trials evaluated and the best accuracy so far against wall-clock time."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    p = data.progress
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=p["elapsed_min"], y=p["evaluated"], mode="lines",
                             line_shape="hv", name="trials evaluated",
                             line=dict(color="#444", width=2),
                             hovertemplate="%{x:.1f} min: %{y} trials<extra></extra>"),
                  secondary_y=False)
    if p["rejected"].iloc[-1:].sum() > 0:
        fig.add_trace(go.Scatter(x=p["elapsed_min"], y=p["rejected"], mode="lines",
                                 line_shape="hv", name="rejected by the budget (not trained)",
                                 line=dict(color=GREY, width=1.5, dash="dot"),
                                 hovertemplate="%{x:.1f} min: %{y} rejected<extra></extra>"),
                      secondary_y=False)
    fig.add_trace(go.Scatter(x=p["elapsed_min"], y=p["best_accuracy"], mode="lines",
                             line_shape="hv", name="best accuracy so far",
                             line=dict(color="#009E73", width=2),
                             hovertemplate="%{x:.1f} min: %{y:.2f}<extra></extra>"),
                  secondary_y=True)
    _layout(fig, height=380, xaxis_title="time since the first trial started (min)",
            legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
            margin=dict(t=70))
    fig.update_yaxes(title_text="trials", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text=data.accuracy_label, secondary_y=True, showgrid=False,
                     tickmode="auto")
    return fig


def parallel_coordinates(data: ReportData) -> Any:
    """The search choices of completed trials, one line each, coloured by accuracy."""
    import plotly.graph_objects as go

    frame = data.parallel
    dims = []
    for column in frame.columns:
        if column == "number":
            continue
        values = frame[column]
        label = {"accuracy": "accuracy", "latency_ms": "latency (ms)"}.get(column, column)
        numeric = values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
        if numeric.all():
            dim = dict(label=label, values=values.astype(float))
            if column not in ("accuracy", "latency_ms") and values.nunique() <= 8:
                dim["tickvals"] = sorted(values.unique())  # e.g. depths: no 2.5 ticks
            dims.append(dim)
        else:  # categories: evenly spaced ticks named by their values
            text = values.map(str)
            names = sorted(text.unique())
            codes = text.map({n: i for i, n in enumerate(names)})
            dims.append(dict(label=label, values=codes, tickvals=list(range(len(names))),
                             ticktext=names))
    fig = go.Figure(go.Parcoords(
        dimensions=dims, labelangle=-25, labelside="top",
        line=dict(color=frame["accuracy"] if len(frame) else [], colorscale="Viridis",
                  showscale=True, colorbar=dict(title=dict(text="accuracy", side="right")))))
    return _layout(fig, height=480, margin=dict(l=60, r=60, t=110, b=40))


def importance(data: ReportData) -> Any:
    """Each search parameter's importance for accuracy (PED-ANOVA)."""
    import plotly.graph_objects as go

    imp = data.importance.nlargest(MAX_IMPORTANCE_BARS, "importance").sort_values("importance")
    fig = go.Figure(go.Bar(x=imp["importance"], y=imp["param"], orientation="h",
                           marker_color="#0072B2",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    return _layout(fig, height=max(300, 24 * len(imp) + 100),
                   xaxis_title="importance (all parameters sum to 1)",
                   showlegend=False, margin=dict(l=160, r=30, t=30, b=60))


def trial_points(data: ReportData) -> Any:
    """Every trial (``series=trial``) and every published model (``series=published``): the
    table the three accuracy figures draw from."""
    import pandas as pd

    own = data.trials[[c for c in FIGURE_COLUMNS if c in data.trials]]
    return pd.concat([own.assign(series="trial"), data.published.assign(series="published")],
                     ignore_index=True, sort=False)


def _always(data: ReportData) -> bool:
    return True


def refined_points(data: ReportData) -> Any:
    """The refined trials: inherited accuracy, retrained accuracy, and what each one is."""
    t = data.trials
    if "refined_accuracy" not in t:
        return t.iloc[0:0][["number"]].assign(inherited=[], retrained=[])
    rows = t[t["refined_accuracy"].notna() & t["duplicate_of"].isna()]
    if "refined_half_width" not in rows:
        rows = rows.assign(refined_half_width=None, refined_seeds=1)
    return rows[["number", "label", "accuracy", "refined_accuracy", "refined_half_width",
                 "refined_seeds", "params", "latency_ms",
                 "spec_id"]].rename(columns={"accuracy": "inherited",
                                             "refined_accuracy": "retrained",
                                             "refined_half_width": "retrained_95_half_width",
                                             "refined_seeds": "retrained_seeds"})


def inherited_retrained(data: ReportData) -> Any:
    """Supernet (inherited-weight) accuracy against standalone retrained accuracy."""
    import plotly.graph_objects as go

    rows = refined_points(data)
    fig = go.Figure()
    values = [*rows["inherited"], *rows["retrained"]]
    if values:
        low, high = min(values), max(values)
        pad = max(1.0, 0.05 * (high - low))
        fig.add_trace(go.Scatter(x=[low - pad, high + pad], y=[low - pad, high + pad],
                                 mode="lines", line=dict(color="#999999", dash="dot"),
                                 name="equal", hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=rows["inherited"], y=rows["retrained"], mode="markers+text",
        text=[f"#{n}" if not label else str(label) for n, label in zip(rows["number"],
                                                                        rows["label"],
                                                                        strict=True)],
        textposition="top center", marker=dict(size=10, color="#0072B2"), name="refined",
        error_y=dict(type="data", array=rows["retrained_95_half_width"].fillna(0.0),
                     visible=True, color="#0072B2", thickness=1)
        if rows["retrained_95_half_width"].notna().any() else None,
        hovertemplate="trial %{text}: inherited %{x:.1f} %, retrained %{y:.1f} %<extra></extra>"))
    return _layout(fig, height=420, xaxis_title="inherited top-1 from the supernet (%)",
                   yaxis_title="retrained top-1, standalone (%)", showlegend=False)


def ablation_rows(data: ReportData) -> Any:
    """An ablation's rows: our accuracy (mean over seeds, 95 % interval as error bars) beside
    the paper's top-1."""
    import plotly.graph_objects as go

    table = ablation_points(data)
    fig = go.Figure()
    half = (table["accuracy_high"] - table["accuracy"]).where(table["seeds"] > 1)
    fig.add_trace(go.Scatter(
        x=table["row"], y=table["accuracy"], mode="markers", name="ours (mean over seeds)",
        marker=dict(size=11, color="#0072B2"),
        error_y=dict(type="data", array=half.fillna(0.0), visible=True, color="#0072B2",
                     thickness=1.5, width=6),
        customdata=table[["seeds", "verdict"]].to_numpy(),
        hovertemplate="%{x}: %{y:.2f} % over %{customdata[0]} seed(s); %{customdata[1]}"
                      "<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=table["row"], y=table["published_top1"], mode="markers", yaxis="y2",
        name="paper (ImageNet-1k top-1)",
        marker=dict(symbol="diamond-open", size=11, color="#D55E00", line=dict(width=2)),
        hovertemplate="%{x}: paper %{y:.1f} %<extra></extra>"))
    return _layout(fig, height=440, yaxis_title="our top-1 (%) at the study's fidelity",
                   yaxis2=dict(title="paper top-1 (%)", overlaying="y", side="right",
                               showgrid=False))


def ablation_points(data: ReportData) -> Any:
    """The numbers behind :func:`ablation_rows`."""
    import pandas as pd

    if data.ablation is None:
        return pd.DataFrame(columns=["row", "accuracy", "accuracy_low", "accuracy_high",
                                     "seeds", "verdict", "published_top1"])
    return data.ablation[["row", "accuracy", "accuracy_low", "accuracy_high", "seeds",
                          "verdict", "published_top1"]]


def _rank_agreement(data: ReportData) -> list[str]:
    rows = refined_points(data)
    if len(rows) < 3:
        return []
    from scipy.stats import kendalltau

    tau = kendalltau(rows["inherited"], rows["retrained"]).statistic
    return [f"Kendall tau between the two on these {len(rows)} trials: {tau:.2f} (few points: "
            "docs/supernet.md measures the ranking on many)."]


def _no_caveats(data: ReportData) -> list[str]:
    return []


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure of the report: all that the page, the CSV export and ``--static`` need.

    Attributes:
        id: names the figure everywhere: the page's ``fig-<id>`` element, ``data/<id>.csv``,
            ``figures/<id>.<png|svg>`` (lower-case letters, digits and ``_``).
        title: the heading of its card.
        caption: what it shows, printed under it.
        draw: the plotly figure of a report's data.
        table: the numbers behind it, written as ``data/<id>.csv``.
        wide: whether its card spans the width of the page.
        shown: whether the page and ``--static`` draw it for this data (its CSV is written
            either way, empty but for the header when there is nothing to draw).
        caveats: sentences added to the caption that depend on the data (axes, reference
            points). A note of ``ReportData.notes`` under the figure's id is added after them.
    """

    id: str
    title: str
    caption: str
    draw: Callable[[ReportData], Any]
    table: Callable[[ReportData], Any]
    wide: bool = False
    shown: Callable[[ReportData], bool] = _always
    caveats: Callable[[ReportData], list[str]] = _no_caveats

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.id):
            raise ValueError(f"figure id {self.id!r}: use lower-case letters, digits and _ (it "
                             "names a file and an HTML element)")

    def caption_for(self, data: ReportData) -> str:
        """The caption under the figure for this data."""
        parts = [self.caption, *self.caveats(data)]
        if self.id in data.notes:
            parts.append(f"Note: {data.notes[self.id]}.")
        return " ".join(p for p in parts if p)


def _published_caveats(data: ReportData, *, size: bool) -> list[str]:
    text = []
    if data.published_accuracy_on_own_axis:
        text.append("Our accuracies are at the study's fidelity, not ImageNet-1k top-1, so the "
                    "published models use the right-hand axis.")
    if not size and data.published_latency_on_own_axis:
        text.append("Our latencies are not iPhone latencies, so the published ones use the top "
                    "axis.")
    if size:
        text.append("Published models beyond the plotted range: double-click the plot to see all.")
    return text


def _reference_point(data: ReportData) -> list[str]:
    if not data.reference:
        return []
    return ["Reference point: " + ", ".join(f"{k} {v:.4g}" for k, v in data.reference.items())
            + "."]


def _registry(*figures: Figure) -> dict[str, Figure]:
    ids = [f.id for f in figures]
    if len(set(ids)) != len(ids):
        raise ValueError(f"figure ids repeat: {ids}")
    return {f.id: f for f in figures}


# Every figure of the report, in the order of the page. Adding a figure is adding an entry here
# (and the function that draws it): the page, data/<id>.csv and --static follow this registry.
FIGURES: dict[str, Figure] = _registry(
    Figure(
        "accuracy_latency", "Accuracy vs latency", wide=True,
        caption=("Every evaluated network; the black step line is the Pareto front (no network "
                 "is both more accurate and faster than a point on it). Filled circles are our "
                 "trials coloured by block family, labelled when they are a published design; "
                 "open diamonds joined by dotted lines are the papers' published models. "
                 "Horizontal bars: the latency oracle's 10-90 % spread, where it measures one. "
                 "Grey crosses on the floor: trials over the budget (not trained); grey rings: "
                 "trials stopped early."),
        draw=accuracy_latency, table=trial_points,
        caveats=lambda d: _published_caveats(d, size=False)),
    Figure(
        "accuracy_params", "Accuracy vs parameters",
        caption="Parameters counted with a 1000-class classifier, as the papers count.",
        draw=lambda d: accuracy_size(d, "params"), table=trial_points,
        caveats=lambda d: _published_caveats(d, size=True)),
    Figure(
        "accuracy_macs", "Accuracy vs MACs",
        caption="Multiply-accumulates (the papers' \"FLOPs\"), counted by fvcore.",
        draw=lambda d: accuracy_size(d, "macs"), table=trial_points,
        caveats=lambda d: _published_caveats(d, size=True)),
    Figure(
        "hypervolume", "Hypervolume of the Pareto front",
        caption="Volume of objective space dominated by the front, after each trial.",
        draw=hypervolume, table=lambda d: d.hypervolume, caveats=_reference_point),
    Figure(
        "progress", "Study progress",
        caption=("Trials evaluated (trained or failed), candidates the budget rejected before "
                 "training, and the best accuracy so far."),
        draw=progress, table=lambda d: d.progress),
    Figure(
        "parallel_coordinates", "Search choices", wide=True,
        caption=("One line per completed trial through its search choices, coloured by "
                 "accuracy; drag along an axis to filter."),
        draw=parallel_coordinates, table=lambda d: d.parallel),
    Figure(
        "inherited_retrained", "Supernet accuracy vs retrained accuracy",
        caption=("The refine step's trials: the accuracy each scored with weights inherited "
                 "from the supernet (what the search ranked) against the accuracy of the same "
                 "network trained standalone. The dotted line is equality."),
        draw=inherited_retrained, table=refined_points,
        shown=lambda d: len(refined_points(d)) > 0, caveats=_rank_agreement),
    Figure(
        "ablation_rows", "Ablation rows with their seed noise",
        caption=("Each row of the ablation: our accuracy, the mean over its seeds with the 95 % "
                 "interval of that mean as error bars (none for one seed), and the paper's "
                 "top-1 on the right-hand axis. Rows whose bars overlap the baseline's are "
                 "usually within noise; the table's verdicts use Welch's t-test."),
        draw=ablation_rows, table=ablation_points,
        shown=lambda d: d.ablation is not None),
    Figure(
        "importance", "Parameter importance for accuracy",
        caption=("How much each search choice explains accuracy among the better trials "
                 "(Optuna's PED-ANOVA)."),
        draw=importance, table=lambda d: d.importance, shown=lambda d: len(d.importance) > 0),
)


def register_figure(figure: Figure) -> Figure:
    """Add ``figure`` at the end of the report (a figure of a plugin; the built-in ones are the
    entries above). Its card, ``data/<id>.csv`` and ``--static`` image follow."""
    if figure.id in FIGURES:
        raise ValueError(f"figure id {figure.id!r} is registered already")
    FIGURES[figure.id] = figure
    return figure


def unregister_figure(figure_id: str) -> None:
    """Undo :func:`register_figure`."""
    del FIGURES[figure_id]


def shown_figures(data: ReportData) -> list[Figure]:
    """The registered figures this data draws, in the order of the page."""
    return [f for f in FIGURES.values() if f.shown(data)]


def all_figures(data: ReportData) -> dict[str, Any]:
    """The drawn figures of the report, by id (the order of the page; what ``--static``
    writes)."""
    return {f.id: f.draw(data) for f in shown_figures(data)}
