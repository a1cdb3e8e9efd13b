"""The numbers behind every figure of a run's report, computed apart from drawing them.

:func:`build_report_data` works on a trials table (as :func:`nas.results.runs.trials_frame` makes it)
and a study config, so a hand-made table gives the same figures as a real run;
:func:`load_report_data` reads both from a run folder.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mobilevit import FIXED_POINTS, ArchSpec, load_spec
from nas.errors import NasError
from nas.results.outcome import TrialStatus
from nas.results.pareto import default_reference, front_rows, hypervolume_history
from nas.study.config import StudyConfig

# Parameter importances (PED-ANOVA) need this many completed trials to mean anything.
MIN_TRIALS_FOR_IMPORTANCE = 10
# Axes of the parallel-coordinates figure beyond which it stops being readable, and lines
# beyond which a browser without a GPU takes seconds to draw it (bench/report_scale.py).
MAX_PARALLEL_AXES = 12
MAX_PARALLEL_LINES = 1000
# Statuses of trials that trained a network (pruned ones only partly).
TRAINED = tuple(s.value for s in TrialStatus if s.trained)


@dataclasses.dataclass
class ReportData:
    """Everything a report shows, as tables and a few facts about the study (which figure
    draws which table: the registry, :data:`nas.report.figures.FIGURES`).

    Attributes:
        trials: every trial, with the derived columns the figures use (``label``, ``family``,
            ``summary``, ``latency_err_ms``, ``front``, ``elapsed_min``, ...).
        published: the published designs with their published figures (the model table).
        front: the accuracy/latency Pareto front of completed trials, by latency.
        hypervolume: the hypervolume of the study's objectives after each trial.
        reference: the hypervolume's reference point, per objective column.
        progress: one row per finished trial in time order: elapsed minutes, trials evaluated
            (trained or failed, as ``nas status`` counts them), trials rejected by the budget,
            best accuracy so far.
        parallel: the search choices of completed trials and their accuracy and latency.
        importance: PED-ANOVA importance of each search parameter for accuracy.
        pareto_table: the Pareto trials of the study's objectives with an export command each.
        notes: sentences the page prints under figures (why a figure is empty, axis caveats).
    """

    run_dir: Path | None
    config: StudyConfig
    trials: Any
    published: Any
    front: Any
    hypervolume: Any
    reference: dict[str, float]
    progress: Any
    parallel: Any
    importance: Any
    pareto_table: Any
    accuracy_label: str
    published_accuracy_on_own_axis: bool
    published_latency_on_own_axis: bool
    notes: dict[str, str]
    generated: str
    ablation: Any = None  # the ablation table (nas.results.ablation.ablation_table), for an ablation
    orderings: list[Any] = dataclasses.field(default_factory=list)


# The trials' columns in the CSV of the accuracy figures (nas.report.figures.trial_points).
FIGURE_COLUMNS = ["number", "status", "label", "family", "accuracy", "latency_ms",
                  "latency_err_ms", "params", "macs", "front", "pareto", "fidelity", "oracle",
                  "spec_id", "summary", "fail_reason", "chance", "seed_index"]


def short_name(name: str) -> str:
    """A fixed point's name as papers print it: ``mobilevitv2_075`` -> ``v2-0.75``,
    ``mobilevitv3_xs_l2`` -> ``v3-XS-L2``, ``mobilevit_s`` -> ``v1-S``."""
    m = re.fullmatch(r"mobilevit(v\d)?_(.+)", name)
    if not m:
        return name
    version, rest = m.group(1) or "v1", m.group(2)
    if rest.isdigit():
        width = f"{int(rest) / 100:.2f}".rstrip("0")
        return f"{version}-{width}0" if width.endswith(".") else f"{version}-{width}"
    return f"{version}-{rest.upper().replace('_', '-')}"


def spec_family(spec: ArchSpec) -> str:
    """The block family of a network (``v1``, ``v2``, ``v3_v1``, ...; ``mixed`` when its stages
    differ, ``none`` without transformer blocks)."""
    families = {s.block.family for s in spec.stages if s.block is not None}
    if not families:
        return "none"
    return families.pop() if len(families) == 1 else "mixed"


def published_frame() -> Any:
    """The published designs with the figures their papers give (params and MACs as printed,
    ImageNet-1k top-1, CoreML latency where published)."""
    import pandas as pd

    rows = []
    for fp in FIXED_POINTS.values():
        p = fp.published
        rows.append({"name": fp.name, "label": short_name(fp.name), "paper": fp.paper,
                     "family": spec_family(fp.spec), "params": p.params_m * 1e6,
                     "macs": None if p.macs_g is None else p.macs_g * 1e9,
                     "accuracy": p.top1, "latency_ms": p.latency_ms,
                     "latency_device": p.latency_device, "source": p.source})
    return pd.DataFrame(rows)


def _objective_columns(config: StudyConfig) -> list[tuple[str, str]]:
    return [(o.metric, o.resolved_direction) for o in config.objectives]


def _derive(frame: Any, specs: Mapping[str, ArchSpec]) -> Any:
    """The trials table with the columns the figures draw from."""
    import pandas as pd

    trials = frame.copy()
    for column in ("accuracy", "latency_ms", "params", "macs", "latency_spread"):
        if column not in trials:
            trials[column] = float("nan")
        trials[column] = pd.to_numeric(trials[column], errors="coerce")
    for column in ("fixed_point", "spec_id", "fidelity", "oracle", "fail_reason", "started",
                   "finished"):
        if column not in trials:
            trials[column] = None

    def lookup(spec_id: Any, attr: str, default: str) -> str:
        spec = specs.get(spec_id) if isinstance(spec_id, str) else None
        if spec is None:
            return default
        return spec_family(spec) if attr == "family" else spec.summary()

    block = trials["param.block"] if "param.block" in trials else pd.Series(None, trials.index)
    trials["family"] = [lookup(s, "family", b if isinstance(b, str) else "unknown")
                        for s, b in zip(trials["spec_id"], block, strict=True)]
    trials["summary"] = [lookup(s, "summary", "") for s in trials["spec_id"]]
    trials["label"] = [short_name(f) if isinstance(f, str) else "" for f in trials["fixed_point"]]
    trials["latency_err_ms"] = trials["latency_spread"].fillna(0) * trials["latency_ms"] / 2
    started = pd.to_datetime(trials["started"])
    finished = pd.to_datetime(trials["finished"])
    origin = started.min()
    trials["elapsed_min"] = (finished - origin).dt.total_seconds() / 60
    if "pareto" not in trials:
        trials["pareto"] = False
    trials["pareto"] = trials["pareto"].fillna(False).astype(bool)
    if "repeat" not in trials:  # a table written before repeats were marked
        trials["repeat"] = (trials["duplicate_of"].notna() & trials["fixed_point"].isna()
                            if "duplicate_of" in trials else False)
    trials["repeat"] = trials["repeat"].fillna(False).astype(bool)
    if "chance" not in trials:  # a table written before chance-level trials were flagged
        trials["chance"] = False
    trials["chance"] = trials["chance"].fillna(False).astype(bool)
    if "seed_index" not in trials:
        trials["seed_index"] = 0
    return trials


def _front(trials: Any) -> Any:
    ok = trials[(trials["status"] == TrialStatus.OK) & ~trials["repeat"]]
    front = front_rows(ok, [("accuracy", "maximize"), ("latency_ms", "minimize")])
    return front.sort_values(["latency_ms", "accuracy"])


def _progress(trials: Any) -> Any:
    import pandas as pd

    done = trials[trials["elapsed_min"].notna()].sort_values("elapsed_min", kind="stable")
    ok = done["status"] == TrialStatus.OK
    rejected = done["status"] == TrialStatus.INFEASIBLE
    best = done["accuracy"].where(ok).cummax().ffill()
    return pd.DataFrame({"elapsed_min": done["elapsed_min"].to_numpy(),
                         "number": done["number"].to_numpy(),
                         "status": done["status"].to_numpy(),
                         "evaluated": (~rejected).cumsum().to_numpy(),
                         "rejected": rejected.cumsum().to_numpy(),
                         "best_accuracy": best.to_numpy()})


def _parallel(trials: Any, importance: Any) -> tuple[Any, str]:
    import pandas as pd

    ok = trials[trials["status"] == TrialStatus.OK]
    # Choices every completed trial made (a conditional one cannot be drawn as an axis) and
    # that varied.
    params = [c for c in trials.columns if c.startswith("param.") and ok[c].notna().all()
              and ok[c].nunique() > 1]
    note = ""
    if len(importance):
        ranked = [f"param.{p}" for p in importance["param"] if f"param.{p}" in params]
        chosen = ranked[:MAX_PARALLEL_AXES]
        if len(params) > len(chosen):
            note = (f"the {len(chosen)} most important of {len(params)} search choices that "
                    "varied")
    else:
        chosen = params[:MAX_PARALLEL_AXES]
        if len(params) > len(chosen):
            note = (f"the first {len(chosen)} of {len(params)} search choices that varied "
                    f"(importances need {MIN_TRIALS_FOR_IMPORTANCE} completed trials)")
    keep = ["number", *chosen, "accuracy", "latency_ms"]
    table = ok[keep].rename(columns=lambda c: c.removeprefix("param."))
    if len(table) > MAX_PARALLEL_LINES:  # every Pareto trial, then an even sample of the rest
        on_front = ok["pareto"].to_numpy()
        rest = table[~on_front]
        room = max(MAX_PARALLEL_LINES - int(on_front.sum()), 0)
        sample = rest.iloc[[int(i * len(rest) / room) for i in range(room)]] if room else rest[:0]
        shown = len(table)
        table = pd.concat([table[on_front], sample]).sort_values("number")
        note = (note + "; " if note else "") + (
            f"{len(table)} of {shown} completed trials drawn (every Pareto trial and an even "
            "sample of the rest), so the page stays quick")
    return table, note


def _pareto_table(trials: Any, run_dir: str) -> Any:
    pareto = trials[trials["pareto"]].sort_values(["latency_ms", "accuracy"])
    inherited = "accuracy_source" in pareto and (pareto["accuracy_source"] == "inherited").any()
    extra = ["accuracy_source", "refined_accuracy"] if inherited else []
    table = pareto[["number", "label", "family", "accuracy", *extra, "latency_ms", "params",
                    "macs", "fidelity", "oracle", "summary", "spec_id"]].copy()
    table["params_m"] = table.pop("params") / 1e6
    table["macs_g"] = table.pop("macs") / 1e9
    table["export"] = [f"nas export {run_dir} --trial {n}" for n in table["number"]]
    return table.reset_index(drop=True)


def _accuracy_label(config: StudyConfig) -> str:
    if config.evaluator.kind == "zero_cost":
        return f"zero-cost score ({config.evaluator.proxy})"
    if config.evaluator.kind == "supernet":
        return "top-1 accuracy, inherited from the supernet (%)"
    return "top-1 accuracy (%)"


def _comparable_accuracy(config: StudyConfig) -> bool:
    """Whether our accuracies are ImageNet-1k top-1 from full training (the papers' metric)."""
    ev = config.evaluator
    if ev.kind != "train":
        return False
    whole = ev.dataset.classes is None and ev.dataset.images_per_class is None
    return ev.dataset.kind == "folder" and whole and ev.epochs >= 100


def _iphone_latency(trials: Any) -> bool:
    devices = trials["oracle"].dropna()
    devices = devices[devices != ""]
    return bool(len(devices)) and devices.str.contains("iPhone").all()


def build_report_data(frame: Any, config: StudyConfig, *, run_dir: str | Path | None = None,
                      specs: Mapping[str, ArchSpec] | None = None, importance: Any = None,
                      importance_note: str = "",
                      reference: Mapping[str, float] | None = None) -> ReportData:
    """The report's tables from a trials table and the study's config.

    ``specs`` maps spec ids to specs (for summaries and block families), ``importance`` is a
    ``param``/``importance`` table (see :func:`param_importances`), ``reference`` the
    hypervolume's reference point (default: :func:`nas.results.pareto.default_reference` over the
    completed trials).
    """
    import pandas as pd

    trials = _derive(frame, specs or {})
    objectives = _objective_columns(config)
    if reference is not None and set(reference) != {c for c, _ in objectives}:
        raise NasError(f"--reference {', '.join(sorted(reference)) or '(none)'}: give one value "
                       f"for each objective: {', '.join(c for c, _ in objectives)}")
    ok = trials[trials["status"] == TrialStatus.OK]
    notes: dict[str, str] = {}
    usable = ok.dropna(subset=[c for c, _ in objectives])
    if len(objectives) < 2:
        notes["hypervolume"] = "one objective: the hypervolume is its best value so far"
    if usable.empty:
        reference = dict(reference or {})
        history = pd.DataFrame(columns=["number", "hypervolume"])
        notes["hypervolume"] = "no completed trials yet"
    else:
        reference = dict(reference or default_reference(usable, objectives))
        # every trial gets a point (infeasible and failed ones leave the volume as it was)
        scored = trials[["number"]].join(usable[[c for c, _ in objectives]])
        history = hypervolume_history(scored, objectives, reference)
    if importance is None:
        importance = pd.DataFrame(columns=["param", "importance"])
    if not len(importance) and not importance_note:
        importance_note = (f"parameter importances need {MIN_TRIALS_FOR_IMPORTANCE} completed "
                           f"search trials; this run has {len(ok)}")
    if importance_note:
        notes["importance"] = importance_note
    parallel, note = _parallel(trials, importance)
    if note:
        notes["parallel_coordinates"] = note
    shown_dir = str(run_dir) if run_dir is not None else "RUN_DIR"
    return ReportData(
        run_dir=Path(run_dir) if run_dir is not None else None, config=config, trials=trials,
        published=published_frame(), front=_front(trials), hypervolume=history,
        reference=reference, progress=_progress(trials), parallel=parallel,
        importance=importance, pareto_table=_pareto_table(trials, shown_dir),
        accuracy_label=_accuracy_label(config),
        published_accuracy_on_own_axis=not _comparable_accuracy(config),
        published_latency_on_own_axis=not _iphone_latency(trials),
        notes=notes,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def param_importances(study: Any, *, objective: int = 0) -> tuple[Any, str]:
    """PED-ANOVA importance of each search parameter for objective ``objective`` over the trials
    that completed (``param``/``importance`` table, largest first), or an empty table and why."""
    import optuna
    import pandas as pd

    empty = pd.DataFrame(columns=["param", "importance"])
    trials = [t for t in study.get_trials(deepcopy=False)
              if TrialStatus.of(t) == TrialStatus.OK and t.values is not None]
    if len(trials) < MIN_TRIALS_FOR_IMPORTANCE:
        return empty, (f"parameter importances need {MIN_TRIALS_FOR_IMPORTANCE} completed trials;"
                       f" this run has {len(trials)}")
    # A single-objective study of the completed trials alone: infeasible ones carry placeholder
    # values, and PED-ANOVA (no scikit-learn needed, unlike fANOVA) ranks one direction.
    view = optuna.create_study(direction=study.directions[objective])
    view.add_trials([optuna.trial.create_trial(
        params=t.params, distributions=t.distributions, value=t.values[objective])
        for t in trials])
    try:
        scores = optuna.importance.get_param_importances(
            view, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (RuntimeError, ValueError) as exc:  # e.g. no parameter varied
        return empty, f"parameter importances unavailable: {exc}"
    table = pd.DataFrame(list(scores.items()), columns=["param", "importance"])
    return table, ""


def load_report_data(run_dir: str | Path, *,
                     reference: Mapping[str, float] | None = None) -> ReportData:
    """The report's tables for a run folder (read-only: safe while the study runs)."""
    from nas.results.runs import open_run, trials_frame

    study, config = open_run(run_dir)
    frame = trials_frame(study)
    specs = {}
    for spec_id in frame["spec_id"].dropna().unique() if "spec_id" in frame else ():
        path = Path(run_dir) / "specs" / f"{spec_id}.json"
        if path.exists():
            specs[spec_id] = load_spec(path)
    importance, note = param_importances(study)
    data = build_report_data(frame, config, run_dir=run_dir, specs=specs, importance=importance,
                             importance_note=note, reference=reference)
    if config.ablation is not None:
        from nas.results.ablation import ablation_table, orderings
        from nas.study.prepare import load

        data.ablation = ablation_table(frame, config, load(run_dir).fixed)
        data.orderings = orderings(data.ablation)
    return data
