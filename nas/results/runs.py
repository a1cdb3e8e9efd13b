"""Reading a run folder: the trials as a table, the Pareto set, written as CSV and Parquet."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
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

    from nas.results.noise import trial_at_chance
    from nas.results.pareto import pareto_mask
    from nas.results.refined import refined_by_source, refined_estimate

    refined = refined_by_source(study)
    rows = []
    values = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        ev = a.get("eval") or {}
        again = refined.get(a.get("duplicate_of", t.number))
        retrained = refined_estimate(again) if again else None
        row = {"number": t.number, "status": TrialStatus.of(t).value,
               "fixed_point": a.get("fixed_point"), "seed_index": int(a.get("seed_index", 0)),
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
               # a top-1 a guesser reaches on this validation set: the training learned nothing
               "chance": trial_at_chance(a.get("accuracy"), ev),
               "refined_accuracy": retrained.mean if retrained else None,
               "refined_half_width": retrained.half_width if retrained else None,
               "refined_seeds": retrained.n if retrained else 0,
               "refined_fidelity": describe_fidelity(again[0].user_attrs.get("eval"))
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
    lines += noise_lines(trials, config)
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
            from nas.results.refined import refined_estimate

            refined = refined_by_source(study)
            for row, t in zip(rows, front, strict=True):
                again = refined.get(t.user_attrs.get("duplicate_of", t.number))
                row["retrained"] = refined_estimate(again).text() if again else None
            columns = (*columns[:3], "retrained", *columns[3:])
            lines.append("  accuracy: inherited from the supernet; retrained: the refine "
                         f"step's standalone training ({len(refined)} trials)")
        key = config.objectives[0].metric if config.objectives[0].metric in columns else "number"
        rows.sort(key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0))
        table = text_table(rows, columns, {"accuracy": ".2f", "retrained": "",
                                           "latency_ms": ".3f",
                                           "params": ",", "macs": ","})
        lines += [f"  Pareto set ({len(front)} trials; export one with "
                  f"`nas export {run_dir} --trial N`):", *("    " + r for r in table.splitlines())]
        floor = noise_floor(trials, config)
        if floor is not None:
            lines.append("  " + front_noise_text([t.values[0] for t in front], floor))
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


def fixed_estimates(trials: Any) -> dict[str, Any]:
    """Each fixed trial's (ablation row's) accuracy over its completed seeds, by name (an
    :class:`nas.results.noise.Estimate`); a row is its completed seeds' trials, repeats of an
    evaluated network included."""
    from nas.results.noise import estimate

    seeds: dict[str, dict[int, float]] = {}
    for t in trials:
        a = t.user_attrs
        name = a.get("fixed_point")
        if isinstance(name, str) and TrialStatus.of(t) == TrialStatus.OK \
                and a.get("accuracy") is not None:
            seeds.setdefault(name, {})[int(a.get("seed_index", 0))] = float(a["accuracy"])
    return {name: estimate([v for _, v in sorted(values.items())])
            for name, values in seeds.items()}


@dataclass(frozen=True)
class NoiseFloor:
    """The seed noise of a study's accuracies: a standard deviation (%) and where it is from."""

    sd: float
    source: str

    @property
    def difference(self) -> float:
        """Two single-seed accuracies closer than this (95 %) are not told apart."""
        return 1.96 * math.sqrt(2.0) * self.sd


def noise_floor(trials: Any, config: StudyConfig) -> NoiseFloor | None:
    """The study's seed noise: pooled over its own fixed trials of two or more seeds, else the
    measured floor of its fidelity (``nas/results/noise_floors.json``, by evaluator section),
    else None. ``trials`` are Optuna trials (see :func:`noise_floor_of` for estimates)."""
    return noise_floor_of(fixed_estimates(trials), config)


def frame_estimates(frame: Any) -> dict[str, Any]:
    """:func:`fixed_estimates` from a trials table (:func:`trials_frame`)."""
    from nas.results.noise import estimate

    if not len(frame) or "fixed_point" not in frame:
        return {}
    ok = frame[(frame["status"] == TrialStatus.OK) & frame["fixed_point"].notna()
               & frame["accuracy"].notna()].sort_values("number")
    out = {}
    for name, group in ok.groupby("fixed_point", sort=False):
        last = group.drop_duplicates("seed_index", keep="last").sort_values("seed_index")
        out[str(name)] = estimate(list(last["accuracy"].astype(float)))
    return out


def noise_floor_of(estimates: dict[str, Any], config: StudyConfig) -> NoiseFloor | None:
    """The noise floor from fixed trials' estimates (pooled sd), else the measured one."""
    rows = [e for e in estimates.values() if e.n >= 2]
    if rows:
        dof = sum(e.n - 1 for e in rows)
        pooled = math.sqrt(sum((e.n - 1) * e.sd ** 2 for e in rows) / dof)
        return NoiseFloor(pooled, f"pooled over {len(rows)} fixed trials' seeds")
    return measured_floor(config)


FLOORS_FILE = Path(__file__).with_name("noise_floors.json")


def measured_floor(config: StudyConfig) -> NoiseFloor | None:
    """The measured noise floor of ``config``'s evaluator section, if bench/noise_floor.py
    measured that fidelity (the file keys floors by the evaluator's hash)."""
    if not FLOORS_FILE.exists():
        return None
    from nas.study.config import evaluator_key

    entry = json.loads(FLOORS_FILE.read_text()).get(evaluator_key(config.evaluator))
    if entry is None:
        return None
    return NoiseFloor(float(entry["sd"]), f"measured for this fidelity: {entry['measured']}")


def front_noise_text(accuracies: list[float], floor: NoiseFloor) -> str:
    """Whether neighbouring Pareto trials differ in accuracy by less than the noise lets one
    tell apart."""
    ordered = sorted(accuracies)
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    close = sum(g < floor.difference for g in gaps)
    text = (f"noise: seed sd {floor.sd:.2f} % ({floor.source}); single seeds closer than "
            f"{floor.difference:.2f} % are not told apart")
    if not gaps:
        return text
    if close:
        return (f"{text}: {close} of {len(gaps)} neighbouring Pareto trials are that close, "
                "so their order on accuracy is within noise")
    return f"{text}: every neighbouring Pareto pair is further apart"


def noise_lines(trials: Any, config: StudyConfig) -> list[str]:
    """``nas status``'s lines on seeds and noise: each fixed trial's mean and 95 % interval over
    its seeds (when it has several), and the trials at chance level."""
    from nas.results.noise import trial_at_chance

    lines = []
    rows = fixed_estimates(trials)
    if any(e.n > 1 for e in rows.values()) or config.seeds > 1:
        lines.append(f"  fixed trials over their seeds (mean ± 95 % interval; {config.seeds} "
                     "seed(s) asked):")
        width = max(len(n) for n in rows) if rows else 0
        lines += [f"    {name:<{width}}  {e.text()}  ({e.n} seed{'s' if e.n > 1 else ''})"
                  for name, e in rows.items()]
    chance = [t for t in trials if TrialStatus.of(t) == TrialStatus.OK
              and trial_at_chance(t.user_attrs.get("accuracy"), t.user_attrs.get("eval"))]
    if chance:
        numbers = ", ".join(str(t.number) for t in chance[:10])
        more = f" and {len(chance) - 10} more" if len(chance) > 10 else ""
        lines.append(f"  at chance level: {len(chance)} trial(s) ({numbers}{more}) score no "
                     "better than guessing on their validation set, so their ranking means "
                     f"nothing; {chance_hint(chance[0].user_attrs.get('eval'))}")
    return lines


CHANCE_HINT = ("at few epochs the most likely cause is a recipe tuned for 300 (the EMA, the "
               "multi-scale sampler, small crops: bench/short_recipe.py)")


def chance_hint(provenance: dict[str, Any] | None) -> str:
    """The most likely reason a trial of this evaluation learned nothing."""
    p = provenance or {}
    if p.get("inherited"):
        epochs = p.get("supernet_epochs")
        return (f"its weights come from a supernet trained for {epochs} epoch(s), too short for "
                "its subnets to learn: train it longer (evaluator.train.epochs); the refine "
                "step retrains the front standalone")
    if p.get("ema") or p.get("multiscale"):
        return CHANCE_HINT
    return (f"{p.get('epochs', '?')} epoch(s) on {p.get('train_images', '?')} images are too "
            "few for this network (raise epochs or train_images)")
