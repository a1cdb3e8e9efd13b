"""The refine step: the final Pareto front's best candidates retrained standalone.

A study whose evaluator scores candidates with inherited weights (``evaluator.kind: supernet``)
ranks thousands of them cheaply, but an inherited accuracy is an estimate. After the search the
driver retrains the front's ``refine.top_k`` best trials (by the first objective) with the
``refine.evaluator`` training evaluator, as Ray tasks like any trial, and records each in the
study ``<name>.refine`` of the same storage: a completed trial with the source trial's
parameters, the retrained accuracy and the source's latency, and ``refine_of`` naming the source.
The main study keeps its inherited values, so its Pareto front is one ranking on one scale; the
results table, ``nas status`` and the report show both. With ``seeds: N`` each candidate is
retrained N times (seeds as for fixed trials), and its retrained accuracy is their mean with a
95 % interval.

A refine killed halfway is finished by the next session on the run folder: trials already in the
refine study are not retrained, and an interrupted training resumes from its checkpoint.
"""

from __future__ import annotations

import os
import shutil
import socket
from typing import Any

from mobilevit import ArchSpec
from nas.results.outcome import TrialStatus
from nas.results.refined import refine_study, refined_by_source


def front_to_refine(ledger: Any, top_k: int, maximise_first: bool) -> list[Any]:
    """The ``top_k`` best trials of the final Pareto front by the first objective; trials that
    share a network (duplicates) count once."""
    front = sorted(ledger.pareto(), key=lambda t: t.values[0], reverse=maximise_first)
    chosen, seen = [], set()
    for t in front:
        spec_id = t.user_attrs.get("spec_id")
        if spec_id in seen:
            continue
        seen.add(spec_id)
        chosen.append(t)
    return chosen[:top_k]


def _to_refine(ledger: Any, config: Any) -> tuple[list[Any], list[tuple[Any, int]]]:
    """The front's trials the refine step retrains, and the (trial, seed index) pairs not
    retrained yet."""
    refine = getattr(config.evaluator, "refine", None)
    if refine is None:
        return [], []
    maximise = config.objectives[0].resolved_direction == "maximize"
    chosen = front_to_refine(ledger, refine.top_k, maximise)
    done = {(number, t.user_attrs.get("seed_index", 0))
            for number, trials in refined_by_source(ledger.study).items() for t in trials}
    return chosen, [(t, k) for k in range(config.seeds) for t in chosen
                    if (t.number, k) not in done]


def refine_pending(ledger: Any, config: Any) -> bool:
    """Whether the study has a refine step with trials of its front still to retrain."""
    return bool(_to_refine(ledger, config)[1])


def refine_front(driver: Any, ray: Any, remote: Any, progress: Any) -> int:
    """Retrain the front's best trials that are not refined yet; returns how many were."""
    from nas.search.runner import trial_seed
    from nas.search.worker import TrialTask
    from nas.study.config import evaluator_key

    config = driver.config
    ledger = driver.ledger
    chosen, todo = _to_refine(ledger, config)
    if not todo:
        return 0
    study = refine_study(ledger.study._storage, config.name, config.directions, create=True)
    ev_config = config.evaluator.refine.evaluator
    ev_key = evaluator_key(ev_config)
    evaluator = ev_config.build()
    seeds = f", {config.seeds} seeds each" if config.seeds > 1 else ""
    progress.say(f"refine: retraining the Pareto front's best {len(chosen)} with "
                 f"{ev_config.summary()}{seeds} ({len(todo)} trainings to go)")
    running: dict[Any, tuple[Any, Any, int]] = {}
    for trial, index in todo:
        spec = ArchSpec.from_json(
            (driver.run_dir / "specs" / f"{trial.user_attrs['spec_id']}.json").read_text())
        workdir = driver.run_dir / "checkpoints" / (f"{spec.spec_id}-{ev_key}"
                                                    + (f"-seed{index}" if index else ""))
        task = TrialTask(
            number=trial.number, spec_json=spec.to_json(), latency_spec_json=spec.to_json(),
            seed=trial_seed(config, spec.spec_id, index), evaluator=evaluator, oracle=None,
            latency_cache=None, max_latency_ms=None,
            threads=max(1, int(config.workers.cpus_per_trial)),
            device="cuda" if config.workers.gpus_per_trial > 0 else "cpu",
            workdir=str(workdir), driver_host=socket.gethostname(), driver_pid=os.getpid())
        ref = remote.options(num_cpus=config.workers.cpus_per_trial,
                             num_gpus=config.workers.gpus_per_trial, max_retries=0).remote(task)
        running[ref] = (trial, workdir, index)
    finished = 0
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            trial, workdir, index = running.pop(ref)
            which = f"trial {trial.number}" + (f" seed {index}" if config.seeds > 1 else "")
            inherited = trial.user_attrs.get("accuracy")
            try:
                out = ray.get(ref)
            except ray.exceptions.RayError as exc:
                cause = getattr(exc, "cause", None) or exc
                first = (str(cause).strip().splitlines() or [""])[0]
                progress.say(f"refine: {which} failed ({type(cause).__name__}: "
                             f"{first}); the next session retries it")
                continue
            if out.status != TrialStatus.OK or out.evaluation is None:
                progress.say(f"refine: {which} ended {out.status.value}")
                continue
            _record(study, config, trial, out, index)
            for name, data in out.artifacts.items():  # the retrained weights, for export
                folder = driver.run_dir / "trials" / str(trial.number)
                folder.mkdir(parents=True, exist_ok=True)
                seed = f"seed{index}_" if index else ""
                (folder / f"refined_{seed}{name}.pt").write_bytes(data)
            shutil.rmtree(workdir, ignore_errors=True)
            finished += 1
            progress.say(f"refine {finished}/{len(todo)}: {which} retrained "
                         f"{out.evaluation.accuracy:.1f} % (inherited {inherited:.1f} %)")
    return finished


def _record(study: Any, config: Any, trial: Any, out: Any, index: int = 0) -> None:
    import optuna

    from nas.search.ledger import objective_values

    ev = out.evaluation
    a = trial.user_attrs
    metrics = {"accuracy": ev.accuracy, "latency_ms": a.get("latency_ms"),
               "params": a.get("params"), "macs": a.get("macs")}
    attrs = {"refine_of": trial.number, "spec_id": a.get("spec_id"),
             "fixed_point": a.get("fixed_point"), "accuracy": ev.accuracy,
             "inherited_accuracy": a.get("accuracy"), "curve": ev.curve, "eval": ev.provenance,
             "latency_ms": a.get("latency_ms"), "params": a.get("params"),
             "macs": a.get("macs"), "wall_time_s": round(out.wall_time_s, 2),
             **({"seed_index": index} if index else {})}
    study.add_trial(optuna.trial.create_trial(
        values=objective_values(config, metrics), params=trial.params,
        distributions=trial.distributions, user_attrs=attrs))
