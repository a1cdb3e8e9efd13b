"""The study runner: one Optuna ask/tell driver, trials executed as Ray tasks.

Why ask/tell over plain Ray tasks rather than Ray Tune's Tuner with an Optuna searcher: the
Optuna storage stays the single record of the study (Tune keeps a second ledger of its own, and
its restore path has repeatedly lost searcher state), the driver can gate candidates by budget
before anything is scheduled and record them with Optuna's constraint API (Tune's OptunaSearch
sets no constraints), and the overhead per trial is tens of milliseconds instead of ~0.1-2 s
(reference measurements in ../shared/reference/nas_anchors.md section 3). Ray still does what it
is best at: per-trial CPU/GPU resources, a local instance or a cluster, crash isolation. Ray Tune's
early-stopping schedulers are for the multi-fidelity evaluator (a later issue).

A study is resumable at any point: the storage holds every trial; trials left RUNNING by a killed
session are marked failed ("interrupted") and their parameters re-queued; fixed trials are
enqueued once, by name. One driver holds a run folder at a time (nas.search.lease); several drivers in
their own folders cooperate on one PostgreSQL study through heartbeats and an advisory lock, and a
worker writes its trial's checkpoint only while the storage says its attempt is current
(nas.search.worker). A run is finished when it has ``trials`` evaluated trials (trained, or
failed while training); candidates rejected by the budget gate are recorded as infeasible
constraint violations and do not count, so the sampler learns from them at no training cost.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

from mobilevit import SpecError
from nas.results.outcome import Counts, Outcome, TrialStatus, count_trials
from nas.search.faults import kill_point
from nas.search.lease import RunLock
from nas.search.ledger import Ledger
from nas.search.pruning import EpochReporter
from nas.search.refine import refine_front, refine_pending
from nas.search.worker import AttemptFence, TrialTask, execute
from nas.study.budget import BudgetGate, Verdict, invalid_verdict
from nas.study.config import FREE_FIELDS, StudyConfig, StudyError, evaluator_key
from nas.study.prepare import (
    PreparedStudy,
    stored_config,
    with_overrides,
    write_config,
)


@dataclass
class RunSummary:
    """What a call of :func:`run_study` did."""

    run_dir: Path
    counts: Counts
    pareto: list[int] = field(default_factory=list)
    finished: bool = False
    stopped_by: str = ""
    new_trials: int = 0


def init_ray(config: StudyConfig) -> Any:
    """Connect to the configured Ray cluster, or start (or reuse) a local instance."""
    import logging

    import ray

    if not ray.is_initialized():
        options: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                       logging_level=logging.ERROR)
        address = config.workers.address
        if address:
            _check_reachable(address)
            try:
                ray.init(address=address, **options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                first = str(exc).splitlines()[0]
                hint = ("; Ray >= 2.59 clusters also need RAY_AUTH_MODE=token and their token "
                        "in RAY_AUTH_TOKEN (`ray get-auth-token` on the head)"
                        if first.startswith("Failed to connect") else "")
                raise StudyError(f"workers.address={address}: cannot connect to the Ray cluster "
                                 f"({first}){hint}") from None
        else:
            ray.init(object_store_memory=512 * 1024 * 1024,
                     _system_config={"worker_niceness": config.workers.niceness}, **options)
    if not config.workers.address:
        _check_fits(config, ray.cluster_resources())
    return ray


def _check_fits(config: StudyConfig, resources: dict[str, float]) -> None:
    """On this machine (no autoscaler to add nodes), a trial that needs more CPUs or GPUs than
    there are would wait forever: say so instead."""
    for name, kind in (("cpus_per_trial", "CPU"), ("gpus_per_trial", "GPU")):
        need = getattr(config.workers, name)
        if need > resources.get(kind, 0):
            raise StudyError(f"workers.{name}={need:g}: this machine's Ray instance has "
                             f"{resources.get(kind, 0):g} {kind}s, so no trial could start; "
                             "lower it or set workers.address to a cluster")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a host:port nobody listens on (Ray itself waits two minutes)."""
    import socket

    target = address.removeprefix("ray://")
    if target == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StudyError(f"workers.address={address}: nothing answers there ({reason}); start "
                         "the cluster with `ray start --head` or fix the address") from None


def trial_seed(config: StudyConfig, spec_id: str, index: int = 0) -> int:
    """Evaluation seed: a function of the study seed, the architecture and the seed's index
    (``seeds``), so an architecture is trained identically whenever and wherever it is
    evaluated, and a resumed study repeats no seed and loses none."""
    text = f"{config.seed}:{spec_id}" + (f":{index}" if index else "")  # index 0: as before
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def seed_index(attrs: dict[str, Any]) -> int:
    """Which of its row's seeds a trial is (0 for a searched trial)."""
    return int(attrs.get("seed_index", 0))


class Progress:
    """A one-line live status (redrawn on a terminal, one line per event otherwise)."""

    def __init__(self, stream: TextIO | None, target: int | None, start_done: int) -> None:
        self.stream = stream
        self.tty = bool(stream and stream.isatty())
        self.target = target
        self.start = time.monotonic()
        self.start_done = start_done
        self.last: tuple[Any, ...] = ()
        self.chance = 0  # trials of this session that scored at chance level

    def update(self, counts: Counts, pareto: int, best: str, force: bool = False) -> None:
        if self.stream is None:
            return
        elapsed = time.monotonic() - self.start
        done = counts.counted
        eta = "?"
        new = done - self.start_done
        if self.target and new > 0:
            eta = _duration(elapsed / new * max(0, self.target - done))
        total = f"/{self.target}" if self.target else ""
        pruned = f"pruned {counts.pruned} | " if counts.pruned else ""
        repeated = f"repeats {counts.repeated} | " if counts.repeated else ""
        chance = f"AT CHANCE {self.chance} | " if self.chance else ""
        line = (f"trials {done}{total} | running {counts.running} | {pruned}{repeated}{chance}"
                f"failed {counts.failed} | "
                f"infeasible {counts.infeasible} | Pareto {pareto}{best} | "
                f"{_duration(elapsed)} elapsed, ETA {eta}")
        # On a terminal the line is redrawn; in a log, a line is written when something changed.
        state = (done, counts.running, counts.repeated, counts.failed, counts.infeasible, pareto,
                 best, self.chance)
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif state != self.last or force:
            print(line, file=self.stream, flush=True)
        self.last = state

    def close(self) -> None:
        if self.tty and self.stream:
            self.stream.write("\n")
            self.stream.flush()

    def say(self, message: str) -> None:
        if self.stream is None:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        print(message, file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _SharedResults:
    """Results shared between trials of the same network under the same evaluator: done ones
    (recorded in the study) and ones being evaluated right now (their trials wait for them)."""

    def __init__(self, trials: list[Any], default_evaluator_key: str) -> None:
        self.done: dict[str, dict[str, Any]] = {}
        self.latency: dict[str, tuple[Any, Any]] = {}  # spec id -> (latency_ms, latency)
        for t in trials:
            if TrialStatus.of(t) == TrialStatus.OK:
                key = _result_key(t.user_attrs["spec_id"],
                                  t.user_attrs.get("evaluator_key", default_evaluator_key),
                                  seed_index(t.user_attrs))
                self.done.setdefault(key, _result_attrs(t))
                if t.user_attrs.get("latency_ms") is not None:
                    self.latency.setdefault(t.user_attrs["spec_id"],
                                            (t.user_attrs["latency_ms"],
                                             t.user_attrs.get("latency")))
        self.inflight: set[str] = set()
        self.attached: dict[str, list[tuple[Any, Verdict]]] = {}

    def attach(self, key: str, trial: Any, verdict: Verdict) -> None:
        self.attached.setdefault(key, []).append((trial, verdict))

    def finish(self, key: str) -> list[tuple[Any, Verdict]]:
        """The evaluation of ``key`` ended: the trials that waited for it."""
        self.inflight.discard(key)
        return self.attached.pop(key, [])

    def waiting(self) -> list[Any]:
        return [t for group in self.attached.values() for t, _ in group]


def _now() -> float:
    """The runner's clock for its time limit (a test replaces it to stand for a slow machine)."""
    return time.monotonic()


class _Tasks:
    """Turns an asked trial into the Ray task that evaluates it: the evaluator of its row (an
    ablation row may change the training), the latency oracle, the pruner's reporter, the
    fence and the checkpoint folder."""

    def __init__(self, config: StudyConfig, ledger: Ledger, prepared: PreparedStudy) -> None:
        self.config = config
        self.ledger = ledger
        self.prepared = prepared
        self.run_dir = prepared.run_dir
        self.evaluator_key = evaluator_key(config.evaluator)
        self.evaluators: dict[str, Any] = {}  # evaluator key -> evaluator (rows may differ)
        self.setup_seconds = 0.0  # spent making evaluators ready (training a supernet)
        self.say: Any = lambda message: print(message, file=sys.stderr, flush=True)

    @cached_property
    def oracle(self) -> Any:
        device = "cuda" if self.config.workers.gpus_per_trial > 0 else "cpu"
        return self.config.latency.build(device)

    def evaluator_of(self, ev_config: Any) -> Any:
        key = evaluator_key(ev_config)
        if key not in self.evaluators:
            evaluator = ev_config.build()
            if hasattr(evaluator, "for_search"):
                # An evaluator that needs the study itself (a supernet over its space, trained
                # under its budget) is made ready here, in the driver, before its first trial.
                start = _now()
                evaluator = evaluator.for_search(
                    self.prepared.space, self.config.budget, self.config.seed,
                    label=self.config.name, say=self.say,
                    threads=max(1, int(self.config.workers.concurrent
                                       * self.config.workers.cpus_per_trial)))
                self.setup_seconds += _now() - start
            self.evaluators[key] = evaluator
        return self.evaluators[key]

    def checkpoints(self, spec: Any, ev_key: str, index: int = 0) -> Path:
        return self.run_dir / "checkpoints" / (f"{spec.spec_id}-{ev_key}"
                                               + (f"-seed{index}" if index else ""))

    def task(self, trial: Any, spec: Any, ev_config: Any, ev_key: str,
             latency_known: bool = False) -> TrialTask:
        config = self.config
        reporter = None
        shadow_trial = self.ledger.ask_shadow(trial)
        if shadow_trial is not None:
            reporter = EpochReporter(self.ledger.shadow.study_name,  # type: ignore[union-attr]
                                     self.ledger.address, shadow_trial._trial_id, config.pruner,
                                     getattr(ev_config, "epochs", 1),
                                     prunable="fixed_point" not in trial.user_attrs)
        latency_spec = spec.replace(num_classes=config.budget.count_classes)
        return TrialTask(
            number=trial.number, spec_json=spec.to_json(),
            latency_spec_json=latency_spec.to_json(),
            seed=trial_seed(config, spec.spec_id, seed_index(trial.user_attrs)),
            # another seed of this network was timed: the oracle is asked once per network
            evaluator=self.evaluator_of(ev_config), oracle=None if latency_known else self.oracle,
            latency_cache=getattr(config.latency, "cache", None),
            max_latency_ms=config.budget.max_latency_ms,
            threads=max(1, int(config.workers.cpus_per_trial)),
            device="cuda" if config.workers.gpus_per_trial > 0 else "cpu",
            workdir=str(self.checkpoints(spec, ev_key, seed_index(trial.user_attrs))),
            reporter=reporter,
            fence=AttemptFence(self.ledger.address, trial._trial_id),
            driver_host=socket.gethostname(), driver_pid=os.getpid())


class _Driver:
    """One session of a study: asks for trials, gates them, starts their tasks, records their
    outcomes (through the ledger), shares results between trials of one network."""

    def __init__(self, prepared: PreparedStudy, config: StudyConfig) -> None:
        self.prepared = prepared
        self.config = config
        self.run_dir = prepared.run_dir
        self.space = prepared.space
        self.gate = BudgetGate(config.budget)
        self.ledger = Ledger(prepared, config)
        self.fixed_by_name = {f.name: f for f in prepared.fixed}
        existing = self.ledger.trials()
        # Re-seed per session so a resumed study does not replay its first samples (an Optuna
        # pitfall); the first session uses the study seed itself. Drivers that start together
        # on one PostgreSQL study see the same trials: their index tells their seeds apart.
        self.sampler_seed = (config.seed + len(existing)
                             + 1_000_003 * self.ledger.register()) % 2**32
        self.sampler = config.sampler.build(self.sampler_seed)
        self.ledger.study.sampler = self.sampler
        self.tasks = _Tasks(config, self.ledger, prepared)
        self.shared = _SharedResults(existing, self.tasks.evaluator_key)
        # task -> trial, spec, verdict, checkpoint folder
        self.running: dict[Any, tuple[Any, Any, Verdict, Path]] = {}
        self.messages: list[str] = []  # for the progress stream
        self.chance = 0  # trials of this session at chance level

    def close(self) -> None:
        self.ledger.close()

    def best_text(self) -> str:
        front = self.ledger.front
        if not front:
            return ""
        metric0 = self.config.objectives[0]
        _, values = (max if metric0.resolved_direction == "maximize" else min)(
            front, key=lambda member: member[1][0])
        parts = [f"{_fmt_metric(o.metric, v)}" for o, v in zip(self.config.objectives,
                                                               values, strict=True)]
        return f" (best {' @ '.join(parts)})"

    def save_spec(self, spec: Any) -> None:
        path = self.run_dir / "specs" / f"{spec.spec_id}.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(spec.to_json(indent=2))

    def dispatch(self, ray: Any, remote: Any) -> bool:
        """Ask for one trial and start it (or settle it at once)."""
        # The asking is written in one batch, before the task starts: its worker checks that
        # its trial is running in the storage.
        with self.ledger.batch():
            start = self._ask()
        if start is None:
            return True
        trial, spec, verdict, task, ev_key, index = start
        kill_point("dispatched")
        ref = remote.options(num_cpus=self.config.workers.cpus_per_trial,
                             num_gpus=self.config.workers.gpus_per_trial,
                             max_retries=0).remote(task)
        self.running[ref] = (trial, spec, verdict, self.tasks.checkpoints(spec, ev_key, index))
        self.shared.inflight.add(_result_key(spec.spec_id, ev_key, index))
        return True

    def _ask(self) -> tuple[Any, Any, Verdict, TrialTask, str, int] | None:
        """Ask for a trial and gate it; the trial, its network and verdict, the task that
        evaluates it, its evaluator key and seed index, or None when it was settled at once."""
        ledger = self.ledger
        trial = ledger.ask()
        fixed = self.fixed_by_name.get(trial.user_attrs.get("fixed_point"))
        try:
            # an ablation row outside the space is built from its spec, not from parameters
            spec = fixed.spec if fixed is not None and fixed.params is None else \
                self.space.sample(trial)
        except SpecError as exc:
            trial.set_user_attr("spec_id", None)
            ledger.tell_infeasible(trial, invalid_verdict(), {}, f"invalid network: {exc}")
            return None
        verdict = self.gate.check(spec)
        self.save_spec(spec)
        trial.set_user_attr("spec_id", spec.spec_id)
        trial.set_user_attr("params", verdict.params)
        trial.set_user_attr("macs", verdict.macs)
        if not verdict.feasible:
            ledger.tell_infeasible(trial, verdict, {"params": verdict.params,
                                                    "macs": verdict.macs},
                                   "over budget: " + ", ".join(verdict.violated()))
            return None
        ev_config = fixed.evaluator if fixed is not None and fixed.evaluator else \
            self.config.evaluator
        ev_key = evaluator_key(ev_config)
        trial.set_user_attr("evaluator_key", ev_key)
        index = seed_index(trial.user_attrs)
        key = _result_key(spec.spec_id, ev_key, index)
        previous = self.shared.done.get(key)
        if previous is not None:  # the same network (e.g. heads under separable attention)
            verdict = self._with_latency(verdict, previous.get("latency_ms"))
            ledger.tell_ok(trial, verdict, _duplicate_attrs(previous))
            return None
        if key in self.shared.inflight:  # being evaluated right now: share that result
            self.shared.attach(key, trial, verdict)
            return None
        known = self.shared.latency.get(spec.spec_id)
        if known is not None and known[0] > (self.config.budget.max_latency_ms or math.inf):
            ledger.tell_infeasible(trial, self._with_latency(verdict, known[0]),
                                   {"params": verdict.params, "macs": verdict.macs,
                                    "latency_ms": known[0]}, "over budget: latency")
            return None
        task = self.tasks.task(trial, spec, ev_config, ev_key, latency_known=known is not None)
        return trial, spec, verdict, task, ev_key, index

    def _with_latency(self, verdict: Verdict, latency_ms: float | None) -> Verdict:
        if latency_ms is None:
            return verdict
        constraints = dict(verdict.constraints, latency=self.gate.latency_violation(latency_ms))
        return Verdict(verdict.params, verdict.macs, constraints)

    def settle(self, ray: Any, ref: Any) -> None:
        """Record the outcome of a finished task (and of the trials attached to it); remove
        the trial's checkpoint once its outcome is recorded, never before."""
        import optuna

        ledger = self.ledger
        trial, spec, verdict, workdir = self.running.pop(ref)
        key = _result_key(spec.spec_id, trial.user_attrs["evaluator_key"],
                          seed_index(trial.user_attrs))
        attached = self.shared.finish(key)
        reason, out = None, None
        try:
            out = ray.get(ref)
        except _node_lost(ray):
            # The machine went away, not the candidate's fault: run it again on what is left
            # (the checkpoint stays for the new attempt). Before RayTaskError: a task whose own
            # sub-task (a device measurement) died with its node raises a RayTaskError that is
            # also a NodeDiedError.
            lost = "interrupted: NodeDiedError: the node running it died"
            with ledger.batch():
                for other in (trial, *(t for t, _ in attached)):
                    ledger.requeue(other.number, other.params, other.user_attrs, other,
                                   reason=lost)
            self.messages.append(f"trial {trial.number}: its node died; re-queued")
            return
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            text = str(cause).strip().splitlines()
            reason = f"{type(cause).__name__}: {text[0] if text else ''}"
        except ray.exceptions.RayError as exc:
            reason = f"{type(exc).__name__}: the worker died (out of memory or killed)"
        kill_point("returned")
        try:
            with ledger.batch():
                self._outcome(trial, spec, verdict, out, reason, attached, key)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another driver decided this driver was dead and re-queued the trial: its new
            # attempt owns the result now (and the checkpoint).
            self.messages.append(f"trial {trial.number} was re-queued by another driver while "
                                 "it ran; this attempt's result is dropped")
            return
        shutil.rmtree(workdir, ignore_errors=True)  # once the outcome is on disk, never before

    def _outcome(self, trial: Any, spec: Any, verdict: Verdict, out: Any, reason: str | None,
                 attached: list[tuple[Any, Verdict]], key: str) -> None:
        """Record a finished task's outcome (a failure when ``reason`` is set)."""
        ledger = self.ledger
        if reason is not None:
            ledger.tell_failed(trial, reason)
            for other, _ in attached:
                ledger.tell_failed(other, f"the same network failed in trial "
                                   f"{trial.number}: {reason}")
        else:
            self._record(trial, spec, verdict, out)
            self._settle_attached(attached, out, key)

    def _settle_attached(self, attached: list[tuple[Any, Verdict]], out: Outcome,
                         key: str) -> None:
        result = self.shared.done.get(key)
        for other, other_verdict in attached:
            if result is None:  # infeasible by latency
                self.ledger.tell_infeasible(
                    other, self._with_latency(other_verdict, out.latency_ms),
                    {"params": other_verdict.params, "macs": other_verdict.macs,
                     "latency_ms": out.latency_ms}, "over budget: latency")
            else:
                self.ledger.tell_ok(other, self._with_latency(other_verdict,
                                                              result.get("latency_ms")),
                                    _duplicate_attrs(result))

    def _record(self, trial: Any, spec: Any, verdict: Verdict, out: Outcome) -> None:
        latency, latency_ms = out.latency, out.latency_ms
        if spec.spec_id in self.shared.latency:
            # Timed with another seed: that first timing is the network's (two seeds that start
            # together are both timed; the later timing is dropped, so each network has one).
            latency_ms, latency = self.shared.latency[spec.spec_id]
        elif latency_ms is not None:
            self.shared.latency.setdefault(spec.spec_id, (latency_ms, _without_samples(latency)))
        verdict = self._with_latency(verdict, latency_ms)
        trial.set_user_attr("latency_ms", latency_ms)
        trial.set_user_attr("latency", _without_samples(latency))
        if out.status == TrialStatus.INFEASIBLE:
            self.ledger.tell_infeasible(trial, verdict, {"params": verdict.params,
                                                         "macs": verdict.macs,
                                                         "latency_ms": latency_ms},
                                        "over budget: latency")
            return
        self._save_artifacts(trial.number, out.artifacts)
        ev = out.evaluation
        assert ev is not None  # an evaluated outcome
        attrs = {"accuracy": ev.accuracy, "curve": ev.curve, "eval": ev.provenance,
                 "latency_ms": latency_ms, "latency": _without_samples(latency),
                 "wall_time_s": round(out.wall_time_s, 2)}
        if out.status == TrialStatus.PRUNED:
            self.ledger.tell_pruned(trial, attrs)
            return
        self.ledger.tell_ok(trial, verdict, attrs)
        self._flag_chance(trial.number, ev)
        self.shared.done.setdefault(_result_key(spec.spec_id, trial.user_attrs["evaluator_key"],
                                                seed_index(trial.user_attrs)),
                                    {**attrs, "trial": trial.number})

    def _flag_chance(self, number: int, ev: Any) -> None:
        """Say so when a trial's top-1 is no better than guessing on its validation set."""
        from nas.results.noise import chance_ceiling, trial_at_chance
        from nas.results.runs import chance_hint

        p = ev.provenance
        if not trial_at_chance(ev.accuracy, p):
            return
        self.chance += 1
        if self.chance <= _CHANCE_WARNINGS:
            self.messages.append(
                f"warning: trial {number} scored {ev.accuracy:.1f} %, at chance level (guessing "
                f"among {p['classes']} classes reaches up to "
                f"{chance_ceiling(p['classes'], p['val_images']):.1f} % on {p['val_images']} "
                f"images): it learned nothing; {chance_hint(p)}")
        elif self.chance == _CHANCE_WARNINGS + 1:
            self.messages.append("warning: more trials at chance level; the progress line "
                                 "counts them (AT CHANCE), `nas status` lists them")

    def _save_artifacts(self, number: int, artifacts: dict[str, bytes]) -> None:
        if artifacts:
            folder = self.run_dir / "trials" / str(number)
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in artifacts.items():
                (folder / f"{name}.pt").write_bytes(data)


_CHANCE_WARNINGS = 3  # trials at chance level warned about one by one; the rest are counted


def _node_lost(ray: Any) -> tuple[type[BaseException], ...]:
    """Ray's errors for a task whose node died (its worker process alone dying is another)."""
    return (ray.exceptions.NodeDiedError,)


def _result_key(spec_id: str, evaluator_key: str, index: int = 0) -> str:
    return f"{spec_id}/{evaluator_key}" + (f"/seed{index}" if index else "")


def _duplicate_attrs(result: dict[str, Any]) -> dict[str, Any]:
    """User attributes of a trial whose network was evaluated in trial ``result["trial"]``."""
    return {**{k: v for k, v in result.items() if k != "trial"}, "duplicate_of": result["trial"]}


def _without_samples(latency: dict[str, Any] | None) -> dict[str, Any] | None:
    if latency is None:
        return None
    return {k: v for k, v in latency.items() if k != "samples_ms"}


def _result_attrs(trial: Any) -> dict[str, Any]:
    keys = ("accuracy", "curve", "eval", "latency_ms", "latency", "wall_time_s")
    return {**{k: trial.user_attrs.get(k) for k in keys},
            "trial": trial.user_attrs.get("duplicate_of", trial.number)}


def _fmt_metric(metric: str, value: float) -> str:
    if metric == "accuracy":
        return f"{value:.1f}%"
    if metric == "latency_ms":
        return f"{value:.1f} ms"
    return f"{value / 1e6:.2f} M {metric}"


def check_run_folder(prepared: PreparedStudy, config: StudyConfig, resume: bool) -> StudyConfig:
    """The config to run: ``config`` for a new or matching run folder; the stored one with
    ``resume``; an error when the folder holds a different study."""
    stored = stored_config(prepared.run_dir)
    if stored is None or stored.fingerprint() == config.fingerprint():
        return config
    if resume:
        return with_overrides(stored, trials=config.trials, workers=config.workers.concurrent,
                              seeds=config.seeds).model_copy(
            update={"timeout_minutes": config.timeout_minutes})
    changed = sorted(k for k in type(stored).model_fields
                     if getattr(stored, k) != getattr(config, k)
                     and k not in FREE_FIELDS)
    raise StudyError(f"{prepared.run_dir}: holds a run of a different study (changed: "
                     f"{', '.join(changed)}); add --resume to continue it as stored, or set "
                     "another output folder")


def run_study(prepared: PreparedStudy, *, trials: int | None = None, workers: int | None = None,
              seeds: int | None = None, resume: bool = False,
              stream: TextIO | None = sys.stderr) -> RunSummary:
    """Run (or continue) a study until it has its trials, hits its time limit, or is stopped.

    Args:
        prepared: the study (see :func:`nas.study.prepare.load`).
        trials: override the study's number of trials.
        workers: override the number of concurrent trials.
        seeds: override the study's seeds per fixed trial and refined candidate.
        resume: continue the run folder's stored study even if the study file has changed.
        stream: where progress goes (None for silence).

    Raises:
        StudyError: bad input, or another driver holds the run folder (one line naming it).
    """
    config = prepared.config
    if trials is not None or workers is not None or seeds is not None:
        config = with_overrides(config, trials=trials, workers=workers, seeds=seeds)
    config = check_run_folder(prepared, config, resume)
    new_run = stored_config(prepared.run_dir) is None
    ray = init_ray(config) if new_run else None  # reach Ray before creating the run folder
    with RunLock(prepared.run_dir):  # before the storage is opened (and a torn record cut)
        driver = _Driver(prepared, config)
        try:
            return _drive(driver, prepared, config, ray, stream)
        finally:
            driver.close()


def _drive(driver: _Driver, prepared: PreparedStudy, config: StudyConfig, ray: Any,
           stream: TextIO | None) -> RunSummary:
    ledger = driver.ledger
    progress = Progress(stream, config.trials, 0)
    counts = count_trials(ledger.trials())
    summary = RunSummary(prepared.run_dir, counts)
    target = config.trials
    if (target is not None and counts.counted >= target and counts.running == 0
            and not refine_pending(ledger, config)):
        summary.finished = True
        summary.pareto = [t.number for t in ledger.pareto()]
        progress.say(f"study {config.name} is finished: {counts.counted} of {target} trials "
                     f"evaluated ({counts.failed} failed, {counts.infeasible} infeasible); "
                     f"nothing to do. Results: {prepared.run_dir}")
        return summary
    ray = ray or init_ray(config)  # before anything is written: a bad address leaves no trace
    write_config(config, prepared.run_dir)
    _log_session(prepared.run_dir, config, len(ledger.trials()), driver.sampler_seed)
    ledger.study.set_user_attr("fingerprint", config.fingerprint())
    for warning in prepared.warnings:
        progress.say(f"warning: {warning}")
    requeued = ledger.reap_interrupted()
    if requeued:
        progress.say(f"re-queued {requeued} trial(s) interrupted in an earlier session")
    ledger.enqueue_fixed()
    counts = ledger.recount()
    if counts.counted:
        progress.say(f"resuming study {config.name}: {counts.counted} of {target or '?'} "
                     "trials already evaluated")
    progress.start_done = counts.counted
    remote = ray.remote(execute)
    # The time limit is of the search: the time spent making an evaluator ready (a supernet
    # trained first, which takes minutes and several times longer on a busy machine) is not
    # in it, or a slow machine would stop a study before its first trial.
    started = _now()
    limit_s = config.timeout_minutes * 60 if config.timeout_minutes else math.inf
    driver.tasks.say = progress.say
    driver.tasks.evaluator_of(config.evaluator)  # a supernet is trained (or loaded) first
    progress.start = time.monotonic()  # the ETA is of the trials
    stopping = ""
    last_draw = 0.0
    ledger.heartbeat.start()
    try:
        while True:
            if (ledger.heartbeat.enabled and time.monotonic() - ledger.last_reap
                    > config.workers.heartbeat_seconds):
                requeued = ledger.reap_interrupted()
                if requeued:
                    progress.say(f"re-queued {requeued} trial(s) of a driver that stopped "
                                 "heart-beating")
            while not stopping and len(driver.running) < config.workers.concurrent:
                if _now() - started - driver.tasks.setup_seconds > limit_s:
                    stopping = "time limit"
                    break
                if ledger.session_infeasible >= config.infeasible_limit:
                    stopping = (f"{ledger.session_infeasible} infeasible candidates in this "
                                "session; the budget may be too tight for the space")
                    break
                if getattr(driver.sampler, "exhausted", False):
                    stopping = "every point of the grid was evaluated"
                    break
                if ledger.repeats_in_row >= config.max_repeats:
                    stopping = (f"the sampler proposed {ledger.repeats_in_row} evaluated networks "
                                "in a row; the space may be exhausted (max_repeats)")
                    break
                # Counting and asking are one step: another driver may be asking right now.
                with ledger.lock.held():
                    counts = ledger.sync()
                    if target is not None and counts.counted + counts.running >= target:
                        break
                    driver.dispatch(ray, remote)
                if stream is not None and time.monotonic() - last_draw > 0.5:
                    progress.update(ledger.counts, len(ledger.front), "")
                    last_draw = time.monotonic()
            if not driver.running:
                counts = ledger.sync()
                # Other drivers' trials are still running: wait for them (or reap them if their
                # driver dies) so that the study ends with its trials, then end together.
                if (stopping or not counts.running or not ledger.heartbeat.enabled
                        or (target is not None and counts.counted >= target)):
                    break
                time.sleep(1.0)
                continue
            done, _ = ray.wait(list(driver.running), num_returns=1, timeout=1.0)
            for ref in done:
                driver.settle(ray, ref)
            for message in driver.messages:
                progress.say(message)
            driver.messages.clear()
            counts = ledger.counts
            progress.chance = driver.chance
            if stream is not None:
                progress.update(counts, len(ledger.front),
                                driver.best_text() if done else "", force=bool(done))
    except KeyboardInterrupt:
        waiting = driver.shared.waiting()
        for ref, (trial, *_) in list(driver.running.items()):
            ray.cancel(ref, force=True)
            waiting.append(trial)
        with ledger.lock.held():
            for trial in waiting:
                ledger.requeue(trial.number, trial.params, trial.user_attrs, trial)
        driver.running.clear()
        progress.close()
        progress.say("interrupted: running trials were re-queued; run the same command to "
                     "continue")
        summary.stopped_by = "interrupted"
        summary.counts = count_trials(ledger.trials())
        return summary
    progress.close()
    refine_front(driver, ray, remote, progress)
    counts = count_trials(ledger.trials())
    summary.counts = counts
    summary.pareto = [t.number for t in ledger.pareto()]
    summary.new_trials = ledger.new_trials
    summary.finished = target is not None and counts.counted >= target
    summary.stopped_by = stopping
    from nas.results.runs import write_results

    write_results(ledger.study, config, prepared.run_dir)
    verb = "finished" if summary.finished else f"stopped ({stopping})" if stopping else "ended"
    repeats = f" ({counts.repeated} repeats of them not counted)" if counts.repeated else ""
    progress.say(f"study {config.name} {verb}: {counts.evaluated} trials evaluated{repeats}, "
                 f"{counts.failed} failed, {counts.infeasible} infeasible, Pareto set "
                 f"{len(summary.pareto)}. Results: {prepared.run_dir} (trials.csv, "
                 f"trials.parquet); see `nas report {_short(prepared.run_dir)}` or "
                 f"`nas status {_short(prepared.run_dir)}`")
    return summary


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def environment() -> dict[str, str]:
    """Versions and machine facts recorded with every session of a run."""
    import optuna
    import ray
    import torch

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "optuna": optuna.__version__, "ray": ray.__version__,
            "cpus": str(os.cpu_count()), "argv": " ".join(sys.argv)}


def _log_session(run_dir: Path, config: StudyConfig, existing: int, sampler_seed: int) -> None:
    record = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "existing_trials": existing,
              "sampler_seed": sampler_seed, "fingerprint": config.fingerprint(),
              **environment()}
    with open(run_dir / "sessions.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
