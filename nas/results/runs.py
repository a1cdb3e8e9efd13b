"""Reading a run folder: the trials as a table, the Pareto set, written as CSV and Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas.results.outcome import TrialStatus, count_trials, is_repeat
from nas.study.config import StudyConfig, StudyError
from nas.study.prepare import CONFIG_FILE, open_storage, stored_config

# Columns first in the table, in this order; the search parameters follow as param.<name>.
LEAD_COLUMNS = ["number", "status", "fixed_point", "accuracy", "latency_ms", "params", "macs",
                "spec_id", "fail_reason", "duplicate_of", "wall_time_s"]


def open_run(run_dir: str | Path) -> tuple[Any, StudyConfig]:
    """The Optuna study and the config of a run folder."""
    import optuna

    run_dir = Path(run_dir)
    config = stored_config(run_dir)
    if config is None:
        raise StudyError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    storage = open_storage(config, run_dir, repair=False)
    try:
        study = optuna.load_study(study_name=config.name, storage=storage)
    except KeyError:
        raise StudyError(f"{run_dir}: the storage has no study named {config.name!r}") from None
    return study, config


def describe_fidelity(provenance: dict[str, Any] | None) -> str:
    """One line saying how an accuracy was obtained, e.g. ``proxy_train, 3 epochs at 64 px on
    procedural (1600 images)``; empty when the trial was not evaluated."""
    if not provenance:
        return ""
    p = provenance
    text = str(p.get("evaluator", "?"))
    if p.get("metric") and p.get("metric") != "top1":
        text += f" {p['metric']}"
    if p.get("inherited"):
        text += f" (trained {p.get('supernet_epochs', '?')} epochs), inherited weights"
    if p.get("epochs") is not None:
        run = p.get("epochs_run")
        done = f"{run} of {p['epochs']}" if run is not None and run != p["epochs"] else p["epochs"]
        text += f", {done} epoch{'' if p['epochs'] == 1 else 's'}"
    if p.get("resolution"):
        text += f" at {p['resolution']} px"
    if p.get("dataset"):
        text += f" on {p['dataset']}"
        if p.get("train_images"):
            text += f" ({p['train_images']} images)"
    return text


def describe_oracle(latency: dict[str, Any] | None) -> str:
    """One line naming what produced a latency, e.g. ``coreml-predictor, iPhone 12``."""
    if not latency:
        return ""
    return ", ".join(str(latency[k]) for k in ("backend", "device") if latency.get(k))


def trials_frame(study: Any) -> Any:
    """One row per trial: outcome, objectives, size, spec id, reasons and the parameters."""
    import pandas as pd

    from nas.results.pareto import pareto_mask
    from nas.results.refined import refined_by_source

    refined = refined_by_source(study)
    rows = []
    values = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        ev = a.get("eval") or {}
        again = refined.get(a.get("duplicate_of", t.number))
        row = {"number": t.number, "status": TrialStatus.of(t).value,
               "fixed_point": a.get("fixed_point"),
               "accuracy": a.get("accuracy"), "latency_ms": a.get("latency_ms"),
               "params": a.get("params"), "macs": a.get("macs"), "spec_id": a.get("spec_id"),
               "fail_reason": a.get("fail_reason"), "duplicate_of": a.get("duplicate_of"),
               "requeued_from": a.get("requeued_from"), "repeat": is_repeat(a),
               "wall_time_s": a.get("wall_time_s"), "pareto": False,
               "evaluator": ev.get("evaluator"), "eval_epochs": ev.get("epochs"),
               "eval_resolution": ev.get("resolution"),
               "latency_device": (a.get("latency") or {}).get("device"),
               "latency_spread": (a.get("latency") or {}).get("spread"),
               "accuracy_source": _accuracy_source(a.get("accuracy"), ev),
               "refined_accuracy": again.user_attrs.get("accuracy") if again else None,
               "refined_fidelity": describe_fidelity(again.user_attrs.get("eval"))
               if again else None,
               "fidelity": describe_fidelity(ev), "oracle": describe_oracle(a.get("latency")),
               "started": t.datetime_start, "finished": t.datetime_complete}
        for key, value in t.constraints.items():
            row[f"constraint.{key}"] = value
        for key, value in t.params.items():
            row[f"param.{key}"] = value
        rows.append(row)
        # A repeat carries its original's values: the original alone stands on the front.
        if row["status"] == TrialStatus.OK and t.values is not None and not row["repeat"]:
            values.append((len(rows) - 1, t.values))
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=LEAD_COLUMNS)
    if values:  # the Pareto set of the study's own objectives, among trials that completed
        maximise = [d.name == "MAXIMIZE" for d in study.directions]
        mask = pareto_mask([v for _, v in values], maximise)
        frame.loc[[i for (i, _), on in zip(values, mask, strict=True) if on], "pareto"] = True
    return frame


def _accuracy_source(accuracy: float | None, provenance: dict[str, Any]) -> str | None:
    """``inherited`` (weights cut from a supernet), ``trained`` or ``proxy`` (a zero-cost
    score); None when the trial has no accuracy."""
    if accuracy is None:
        return None
    if provenance.get("inherited"):
        return "inherited"
    return "trained" if provenance.get("metric", "top1") == "top1" else "proxy"


def load_trials(run_dir: str | Path) -> Any:
    """The trials of a run folder as a DataFrame, one row per trial (see :func:`trials_frame`)."""
    study, _ = open_run(run_dir)
    return trials_frame(study)


def write_results(study: Any, config: StudyConfig, run_dir: Path) -> Any:
    """Write trials.csv, trials.parquet and pareto.json into ``run_dir``; returns the table."""
    frame = trials_frame(study)
    frame.to_csv(run_dir / "trials.csv", index=False)
    # Parquet needs one type per column; the parameter columns can mix numbers and names.
    frame.astype({c: str for c in frame.columns if c.startswith("param.")}).to_parquet(
        run_dir / "trials.parquet", index=False)
    pareto = frame[frame["pareto"]] if "pareto" in frame else frame.iloc[0:0]
    keep = [c for c in ("number", "fixed_point", "accuracy", "latency_ms", "params", "macs",
                        "spec_id") if c in pareto]
    (run_dir / "pareto.json").write_text(json.dumps(
        json.loads(pareto[keep].to_json(orient="records")), indent=2))
    return frame


def status_text(run_dir: str | Path) -> str:
    """A run's progress and Pareto set, as printed by ``nas status``."""
    from nas.results.pareto import pareto_mask
    from nas.results.table import text_table

    study, config = open_run(run_dir)
    trials = study.get_trials(deepcopy=False)
    c = count_trials(trials)
    target = config.trials
    state = ("finished" if target and c.counted >= target and not c.running else
             "running or stopped")
    repeats = (f" and {c.repeated} repeats of evaluated networks (not counted)"
               if c.repeated else "")
    lines = [f"study {config.name} ({Path(run_dir)}): {state}",
             f"  evaluated {c.counted}{f' of {target}' if target else ''}{repeats}: {c.ok} ok, "
             f"{c.pruned} pruned, {c.failed} failed; {c.infeasible} infeasible (over budget, "
             "not trained); "
             f"{c.interrupted} interrupted and re-queued; {c.running} running; "
             f"{c.waiting} waiting",
             "  objectives: " + ", ".join(f"{o.metric} ({o.resolved_direction})"
                                            for o in config.objectives)]
    failed = [t for t in trials if TrialStatus.of(t) == TrialStatus.FAILED]
    for t in failed[:5]:
        lines.append(f"  failed trial {t.number}: {t.user_attrs.get('fail_reason')}")
    # The same Pareto set as trials_frame's, without building the whole table (pandas' import
    # alone is most of this command's time).
    done = [t for t in trials if TrialStatus.of(t) == TrialStatus.OK and t.values is not None
            and not is_repeat(t.user_attrs)]
    maximise = [d.name == "MAXIMIZE" for d in study.directions]
    mask = pareto_mask([t.values for t in done], maximise)
    front = [t for t, on in zip(done, mask, strict=True) if on]
    if front:
        from nas.results.refined import refined_by_source

        columns: tuple[str, ...] = ("number", "fixed_point", "accuracy", "latency_ms", "params",
                                    "macs", "spec_id")
        rows = [{"number": t.number, **{k: t.user_attrs.get(k) for k in columns[1:]}}
                for t in front]
        if any((t.user_attrs.get("eval") or {}).get("inherited") for t in front):
            # Inherited accuracies rank the candidates; the retrained ones are what they score.
            refined = refined_by_source(study)
            for row, t in zip(rows, front, strict=True):
                again = refined.get(t.user_attrs.get("duplicate_of", t.number))
                row["retrained"] = again.user_attrs.get("accuracy") if again else None
            columns = (*columns[:3], "retrained", *columns[3:])
            lines.append("  accuracy: inherited from the supernet; retrained: the refine "
                         f"step's standalone training ({len(refined)} trials)")
        key = config.objectives[0].metric if config.objectives[0].metric in columns else "number"
        rows.sort(key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0))
        table = text_table(rows, columns, {"accuracy": ".2f", "retrained": ".2f",
                                           "latency_ms": ".3f",
                                           "params": ",", "macs": ","})
        lines += [f"  Pareto set ({len(front)} trials; export one with "
                  f"`nas export {run_dir} --trial N`):", *("    " + r for r in table.splitlines())]
    else:
        lines.append("  Pareto set: empty so far")
    return "\n".join(lines)


def export_trial(run_dir: str | Path, number: int, *, to: str = "coreml",
                 output: str | Path | None = None, resolution: int | None = None,
                 precision: str = "float16") -> dict[str, Path]:
    """Export trial ``number`` of a run: its spec JSON, its trained weights when the evaluator
    saved them, and a CoreML package (or ONNX file) built from both."""
    import shutil

    from mobilevit import load_spec
    from nas.export import export_model

    run_dir = Path(run_dir)
    study, config = open_run(run_dir)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise StudyError(f"--trial {number}: {run_dir} has trials 0 to {len(trials) - 1}")
    trial = trials[number]
    spec_id = trial.user_attrs.get("spec_id")
    if not spec_id:
        reason = trial.user_attrs.get("fail_reason", "not started")
        raise StudyError(f"--trial {number}: it has no network ({reason})")
    out = Path(output) if output else run_dir / "exports" / f"trial_{number}"
    out.mkdir(parents=True, exist_ok=True)
    spec = load_spec(run_dir / "specs" / f"{spec_id}.json")
    written = {"spec": out / "spec.json"}
    written["spec"].write_text(spec.to_json(indent=2))
    source = trial.user_attrs.get("duplicate_of", number)
    folder = run_dir / "trials" / str(source)
    # The trial's own trained weights; for a candidate scored with inherited weights, its
    # retrained weights when the refine step trained it, else the weights cut from the supernet.
    weights = folder / "weights.pt"
    if not weights.exists() and (folder / "refined_weights.pt").exists():
        weights = folder / "refined_weights.pt"
    if weights.exists():
        written["weights"] = out / "weights.pt"
        shutil.copyfile(weights, written["weights"])
    elif (trial.user_attrs.get("eval") or {}).get("inherited"):
        from nas.evaluators.supernet import save_inherited_weights

        written["weights"] = save_inherited_weights(config, trial.user_attrs["eval"], spec,
                                                    out / "weights.pt")
        weights = written["weights"]
    name = "model.mlpackage" if to == "coreml" else "model.onnx"
    result = export_model(spec, out / name, to=to, resolution=resolution,
                          weights=weights if weights.exists() else None, precision=precision)
    written[to] = result.path
    return written
