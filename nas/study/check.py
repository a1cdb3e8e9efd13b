"""``nas check``: validate a study and say what running it would do, without running it.

:func:`check_study` loads the study exactly as ``nas run`` does (:func:`nas.study.prepare.load`, with the
same ``--set`` overrides and the same one-line errors) and then collects what can be known
without Ray, without the storage and without creating the run folder: the resolved settings, the
size of the search space, the smallest network against the budget, every fixed trial's size,
where results would go, and what the evaluator and the latency oracle would cost. Costs are
counted (images, forward passes, MACs from :mod:`mobilevit.complexity`), never timed, and are
labelled as estimates where they are.
"""

from __future__ import annotations

import math
import os
import textwrap
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas.study.budget import BudgetGate
from nas.study.config import FREE_FIELDS, StudyConfig, StudyError
from nas.study.prepare import JOURNAL_FILE, PreparedStudy, load, smallest_networks, stored_config


def mask_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` query) replaced by ***."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={'***' if k.lower() == 'password' else v}" for k, v in pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _space_facts(prepared: PreparedStudy) -> dict[str, Any]:
    params = prepared.space.params
    sizes = {name: len(p.values) for name, p in params.items()}
    return {
        "parameters": len(params),
        "free": [name for name, n in sizes.items() if n > 1],
        "choices": sum(sizes.values()),
        # every combination of parameter values: an upper bound on distinct networks (some
        # combinations are invalid, some canonicalise to one spec, e.g. heads under separable)
        "combinations": math.prod(sizes.values()),
    }


def _budget_facts(config: StudyConfig) -> dict[str, Any]:
    budget = config.budget
    smallest = smallest_networks(config)
    out: dict[str, Any] = {
        "max_params": budget.max_params, "max_macs": budget.max_macs,
        "max_latency_ms": budget.max_latency_ms, "resolution": budget.resolution,
        "count_classes": budget.count_classes, "smallest": {}}
    for measure, limit in (("params", budget.max_params), ("macs", budget.max_macs)):
        size, values = smallest[measure]
        out["smallest"][measure] = {
            "value": size, "block": values["block"], "attention": values["attention"],
            "fraction_of_limit": None if limit is None else size / limit}
    return out


def _fixed_facts(prepared: PreparedStudy) -> list[dict[str, Any]]:
    gate = BudgetGate(prepared.config.budget)
    rows = []
    for trial in prepared.fixed:
        verdict = gate.check(trial.spec)
        rows.append({"name": trial.name, "spec_id": trial.spec.spec_id, "params": verdict.params,
                     "macs": verdict.macs, "in_budget": verdict.feasible,
                     "violated": verdict.violated(), "in_space": trial.params is not None,
                     "own_evaluator": trial.evaluator is not None})
    return rows


def _run_dir_facts(prepared: PreparedStudy) -> dict[str, Any]:
    config, run_dir = prepared.config, prepared.run_dir
    out: dict[str, Any] = {"path": str(run_dir), "exists": run_dir.exists(), "changed": []}
    try:
        stored = stored_config(run_dir)  # reads run_dir/study.yaml only, if it is there
    except StudyError as exc:
        out["state"] = f"holds a study file that does not load ({exc})"
        return out
    if stored is None:
        out["state"] = "new"
    elif stored.fingerprint() == config.fingerprint():
        out["state"] = "same study"
    else:
        out["state"] = "different study"
        out["changed"] = sorted(k for k in type(stored).model_fields
                                if getattr(stored, k) != getattr(config, k)
                                and k not in FREE_FIELDS)
    return out


def _storage_facts(prepared: PreparedStudy) -> dict[str, Any]:
    url = prepared.config.storage
    if url:
        return {"kind": "postgresql", "location": mask_url(url)}
    return {"kind": "journal", "location": str(prepared.run_dir / JOURNAL_FILE)}


def _workers_facts(config: StudyConfig) -> tuple[dict[str, Any], list[str]]:
    w = config.workers
    out: dict[str, Any] = {"ray": w.address or "local", "concurrent": w.concurrent,
                           "cpus_per_trial": w.cpus_per_trial, "gpus_per_trial": w.gpus_per_trial}
    warnings = []
    if w.address is None:
        import torch

        cpus, gpus = os.cpu_count() or 1, torch.cuda.device_count()
        out.update(machine_cpus=cpus, machine_gpus=gpus)
        if w.cpus_per_trial > cpus:
            warnings.append(f"workers.cpus_per_trial={w.cpus_per_trial:g}: more than this "
                            f"machine's {cpus} CPUs, so a local Ray instance could start no trial")
        elif w.concurrent * w.cpus_per_trial > cpus:
            warnings.append(f"workers.concurrent={w.concurrent}: this machine's {cpus} CPUs run "
                            f"at most {int(cpus // w.cpus_per_trial)} trials of "
                            f"{w.cpus_per_trial:g} CPUs at once")
        if w.gpus_per_trial > gpus:
            warnings.append(f"workers.gpus_per_trial={w.gpus_per_trial:g}: torch sees "
                            f"{gpus} GPUs here, so a local Ray instance could start no trial")
    return out, warnings


def _trial_counts(prepared: PreparedStudy, fixed: list[dict[str, Any]]) -> dict[str, Any]:
    config = prepared.config
    trained_fixed = sum(1 for f in fixed if f.get("in_budget"))
    searched = None
    if config.ablation is not None:
        searched = 0
    elif config.trials is not None:
        searched = max(0, config.trials - trained_fixed)
    return {"trials": config.trials, "fixed_evaluated": trained_fixed,
            "fixed_infeasible": len(fixed) - trained_fixed, "searched": searched}


def _training_images(config: StudyConfig) -> tuple[Any, int, int] | None:
    """(train config, training images, validation images) of a training evaluator."""
    from nas.evaluators.train import make_sources

    ev = config.evaluator
    if ev.kind not in ("train", "proxy_train"):
        return None
    cfg = ev.as_train() if ev.kind == "proxy_train" else ev
    train_src, val_src = make_sources(cfg.dataset)  # as nas run's load does; nothing is run
    return cfg, len(train_src), len(val_src)


def _cost_facts(prepared: PreparedStudy, fixed: list[dict[str, Any]],
                counts: dict[str, Any]) -> dict[str, Any]:
    """What the evaluator and the oracle would do, counted from the settings (estimates)."""
    from mobilevit.complexity import complexity

    config = prepared.config
    ev, lat, workers = config.evaluator, config.latency, config.workers.concurrent
    trials = config.trials
    lines: list[str] = []
    out: dict[str, Any] = {"estimate": True}
    if ev.kind == "dummy":
        out["seconds_per_trial"] = ev.seconds
        line = f"evaluation: {ev.seconds:g} s of CPU per trial (a busy loop)"
        if trials is not None:
            wall = math.ceil(trials / workers) * ev.seconds
            out["evaluation_wall_s"] = wall
            line += (f"; {trials} trials on {workers} worker{'s' if workers > 1 else ''}: about "
                     f"{wall:g} s of evaluation (estimate: without latency and overhead)")
        lines.append(line)
    elif ev.kind == "zero_cost":
        work = {"synflow": "a forward and a backward pass", "grad_norm":
                "a forward and a backward pass", "naswot": "a forward pass",
                "params": "no pass (counted from the spec)", "macs":
                "no pass (counted from the spec)"}[ev.proxy]
        out["images_per_trial"] = 0 if ev.proxy in ("params", "macs") else ev.batch_size
        lines.append(f"evaluation: {work} on one batch of {ev.batch_size} images at "
                     f"{ev.resolution}x{ev.resolution} per trial")
    elif ev.kind in ("train", "proxy_train"):
        cfg, n_train, n_val = _training_images(config)  # type: ignore[misc]
        per_trial = cfg.epochs * (n_train + n_val)
        out.update(epochs=cfg.epochs, train_images=n_train, val_images=n_val,
                   images_per_trial=per_trial, resolution=cfg.resolution)
        scale = " (multi-scale: sizes around it)" if cfg.multiscale else ""
        bound = "at most " if config.pruner.kind != "none" else ""
        lines.append(f"evaluation: {bound}{cfg.epochs} epochs x ({n_train:,} training + {n_val:,} "
                     f"validation images) = {per_trial:,} images per trial at "
                     f"{cfg.resolution}x{cfg.resolution}{scale}"
                     + (f"; the {config.pruner.kind} pruner may stop a searched trial after "
                        f"{config.pruner.min_epochs} epoch(s)" if bound else ""))
        trained = [t for t, f in zip(prepared.fixed, fixed, strict=True) if f["in_budget"]]
        if trained:
            # forward MACs exactly; a training step as 3 forward passes (forward + backward),
            # the usual rule of thumb: an estimate
            macs = sum(complexity(f.spec, cfg.resolution).macs for f in trained)
            total = cfg.epochs * (3 * n_train + n_val) * macs
            out["fixed_training_macs"] = total
            lines.append(f"fixed trials: about {total / 1e12:,.3g} T MACs of training for the "
                         f"{len(trained)} within budget (forward MACs at {cfg.resolution}x"
                         f"{cfg.resolution} x (3 x training + validation images); an estimate)")
    elif ev.kind == "supernet":
        entry = ev.build().stored(prepared.space, config.budget, config.seed)
        out["supernet"] = {"key": entry.key, "folder": str(entry.folder),
                           "stored": entry.complete}
        lines.append(f"evaluation: {ev.summary()}")
        lines.append(f"supernet: {entry.key} " + (
            f"is stored ({entry.folder}): reused, not trained" if entry.complete else
            f"is not stored: `nas run` trains it first ({ev.train_config().epochs} epochs), "
            f"into {entry.folder}"))
        evaluator = ev.build()
        parts = evaluator.stored_parts(prepared.space, config.budget, config.seed)
        if parts:
            stored = sum(e.complete for _, e in parts)
            out["supernet"]["parts"] = [
                {"split": dict(zip(ev.split, values, strict=True)), "key": e.key,
                 "folder": str(e.folder), "stored": e.complete} for values, e in parts]
            lines.append(f"supernet split by {', '.join(ev.split)}: {len(parts)} sub-supernets "
                         f"({stored} stored; `nas run` trains the other {len(parts) - stored} "
                         f"first, {ev.part_train_config().epochs} epochs each, from the shared "
                         "one; a part where no network fits the budget gets none)")
    else:  # a kind registered by a plugin: what it does is its own
        lines.append(f"evaluation: {ev.summary()} (its cost is not estimated)")
    if counts["searched"]:
        lines.append(f"searched trials: {counts['searched']}, each within the budget; "
                     "over-budget candidates are recorded as infeasible without evaluation")
    if lat.kind == "local":
        out["latency_runs_per_network"] = lat.warmup + lat.runs
        lines.append(f"latency: {lat.warmup + lat.runs} batch-1 forward passes at "
                     f"{lat.resolution}x{lat.resolution} per new network (cached by spec id)")
    elif lat.kind == "predictor":
        lines.append("latency: one CoreML conversion per new network (cached by spec id)")
    elif lat.kind in ("agent", "ray_device"):
        out["latency_runs_per_network"] = lat.rounds * lat.iterations
        lines.append(f"latency: {lat.rounds} x {lat.iterations} timed runs on the device per new "
                     "network, plus its CoreML conversion (cached by spec id)")
    elif lat.kind != "none":
        lines.append(f"latency: {lat.summary()} per new network (cached by spec id; its cost is "
                     "not estimated)")
    if config.timeout_minutes is not None:
        lines.append(f"time limit: no trial starts after {config.timeout_minutes:g} minutes "
                     "of search (running ones finish; training a supernet first is not "
                     "counted)")
    out["lines"] = lines
    return out


def check_study(path: str | Path, settings: Sequence[str] = ()) -> dict[str, Any]:
    """Validate the study at ``path`` (a file or a run folder) with ``--set`` overrides, and
    return what running it would use and do (JSON-serialisable). Raises StudyError (one line)
    for an invalid study, as ``nas run`` does. Starts nothing and writes nothing."""
    prepared = load(path, settings)
    config = prepared.config
    fixed = _fixed_facts(prepared)
    workers, warnings = _workers_facts(config)
    counts = _trial_counts(prepared, fixed)
    return {
        "valid": True,
        "source": prepared.source,
        "study": {
            "name": config.name, "description": config.description.strip(),
            "seed": config.seed, "space": config.space,
            "objectives": [{"metric": o.metric, "direction": o.resolved_direction}
                           for o in config.objectives],
            "evaluator": config.evaluator.model_dump(mode="json"),
            "evaluator_summary": config.evaluator.summary(),
            "latency": config.latency.model_dump(mode="json"),
            "latency_summary": config.latency.summary(),
            "sampler": config.sampler.model_dump(mode="json"),
            "pruner": config.pruner.model_dump(mode="json"),
            "trials": config.trials, "timeout_minutes": config.timeout_minutes,
            "max_infeasible": config.infeasible_limit,
            "ablation": config.ablation.paper if config.ablation else None,
            "fingerprint": config.fingerprint(),
        },
        "trial_counts": counts,
        "space": _space_facts(prepared),
        "budget": _budget_facts(config),
        "fixed_trials": fixed,
        "run_dir": _run_dir_facts(prepared),
        "storage": _storage_facts(prepared),
        "workers": workers,
        "cost": _cost_facts(prepared, fixed, counts),
        "warnings": [*prepared.warnings, *warnings],
    }


def _limit(name: str, value: int | float | None, unit: str = "") -> str:
    return f"{name}: no limit" if value is None else f"{name} <= {value:,}{unit}"


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}{'' if n == 1 else 's'}"


def check_text(facts: dict[str, Any]) -> str:
    """``nas check``'s report of :func:`check_study`'s facts."""
    s, b, sp = facts["study"], facts["budget"], facts["space"]
    counts, run, workers = facts["trial_counts"], facts["run_dir"], facts["workers"]
    lines = [f"study {s['name']} ({facts['source']}): valid"]
    if s["description"]:
        lines.append(textwrap.fill(s["description"], 100, initial_indent="  ",
                                   subsequent_indent="  "))
    stop = []
    if s["trials"] is not None:
        searched = counts["searched"]
        stop.append(f"{s['trials']} trials ({counts['fixed_evaluated']} fixed, "
                    f"{searched} searched)" if searched is not None else f"{s['trials']} trials")
    if s["timeout_minutes"] is not None:
        stop.append(f"{s['timeout_minutes']:g} minutes")
    stop.append(f"or {s['max_infeasible']:,} infeasible candidates in a session")
    sampler = s["sampler"]
    pruner = s["pruner"]
    rows = [
        ("objectives", ", ".join(f"{o['direction']} {o['metric']}" for o in s["objectives"])),
        ("evaluator", s["evaluator_summary"]),
        ("latency", s["latency_summary"]),
        ("sampler", f"{sampler['kind']}"
                    + (f" (population {sampler['population_size']})"
                       if sampler["kind"] == "nsga2" else "") + f", seed {s['seed']}"),
        ("pruner", pruner["kind"] if pruner["kind"] == "none" else
         f"{pruner['kind']} (after {pruner['min_epochs']} epoch(s), factor "
         f"{pruner['reduction_factor']})"),
        ("stops after", ", ".join(stop)),
        ("space", f"{sp['parameters']} parameters, {len(sp['free'])} free, {sp['choices']} "
                  f"values in all; {sp['combinations']:,.4g} combinations (an upper bound on "
                  "distinct networks)"),
        ("budget", f"{_limit('params', b['max_params'])}, {_limit('MACs', b['max_macs'])}, "
                   f"{_limit('latency', b['max_latency_ms'], ' ms')} (counted with a "
                   f"{b['count_classes']}-class head at {b['resolution']}x{b['resolution']})"),
    ]
    smallest = []
    for measure, unit in (("params", "params"), ("macs", "MACs")):
        m = b["smallest"][measure]
        share = ("" if m["fraction_of_limit"] is None
                 else f", {m['fraction_of_limit']:.1%} of the limit")
        smallest.append(f"{m['value']:,} {unit} (block={m['block']}, attention={m['attention']}"
                        f"{share})")
    rows.append(("smallest", "; ".join(smallest)))
    fixed_lines = []
    if facts["fixed_trials"]:
        rows.append(("fixed trials", f"{len(facts['fixed_trials'])}, params and MACs counted as "
                                     "the budget counts:"))
        name_w = max(len(f["name"]) for f in facts["fixed_trials"])
        for f in facts["fixed_trials"]:
            verdict = ("within budget" if f["in_budget"]
                       else f"over budget ({', '.join(f['violated'])}): infeasible, not trained")
            extra = ("" if f["in_space"] else ", outside the space") + (
                ", own evaluator" if f["own_evaluator"] else "")
            fixed_lines.append(f"  {f['name']:<{name_w}}  {f['params']:>11,} params  "
                               f"{f['macs'] / 1e6:>9,.1f} M MACs  {verdict}{extra}")
    state = {"new": "new: nas run creates it",
             "same study": "holds this study: nas run continues it",
             "different study": "holds a different study (changed: "
                                f"{', '.join(run['changed'])}): nas run refuses it without "
                                "--resume"}.get(run["state"], run["state"])
    storage = facts["storage"]
    if workers["ray"] == "local":
        ray = (f"a local Ray instance on this machine ({workers['machine_cpus']} CPUs, "
               f"{workers['machine_gpus']} GPUs)")
    else:
        ray = f"the Ray cluster at {workers['ray']}"
    tail = [
        ("run folder", f"{run['path']} ({state})"),
        ("storage", f"{'Optuna journal' if storage['kind'] == 'journal' else 'PostgreSQL'} "
                    f"{storage['location']}"),
        ("ray", f"{ray}; {_plural(workers['concurrent'], 'trial')} at once, "
                f"{_plural(workers['cpus_per_trial'], 'CPU')} and "
                f"{_plural(workers['gpus_per_trial'], 'GPU')} each"),
        ("cost", "counted from the settings, nothing was run; estimates where they say so:"),
    ]
    width = max(len(k) for k, _ in rows + tail)
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    lines += fixed_lines
    lines += [f"{k:<{width}}  {v}" for k, v in tail]
    lines += [f"  {line}" for line in facts["cost"]["lines"]]
    if facts["warnings"]:
        lines.append("warnings")
        lines += [f"  {w}" for w in facts["warnings"]]
    return "\n".join(lines)
