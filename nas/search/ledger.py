"""The study's record in its Optuna storage, as one driver session sees it.

:class:`Ledger` owns the storage, the study and its shadow study (the pruner's, see
:mod:`nas.search.pruning`), the cooperation with other drivers (:mod:`nas.search.lease`: advisory lock,
heartbeats, re-queuing the trials of a dead driver) and every write of a trial's outcome. The
driver decides what to evaluate; this is the only place that tells Optuna what happened.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from typing import Any

from nas.results.outcome import Counts, TrialStatus, is_repeat
from nas.search.lease import Heartbeat, StaleTrials, StudyLock
from nas.study.budget import Verdict
from nas.study.config import StudyConfig
from nas.study.journal import batch
from nas.study.prepare import PreparedStudy, open_storage


def objective_values(config: StudyConfig, metrics: dict[str, float | None]) -> list[float]:
    """The study's objective values from a trial's metrics; an unmeasured one (an infeasible
    candidate) gets the worst value."""
    values = []
    for obj in config.objectives:
        value = metrics.get(obj.metric)
        if value is None:
            value = -math.inf if obj.resolved_direction == "maximize" else math.inf
        values.append(float(value))
    return values


class Ledger:
    """See the module docstring."""

    def __init__(self, prepared: PreparedStudy, config: StudyConfig) -> None:
        import optuna

        self.config = config
        self.prepared = prepared
        self.stale = StaleTrials()
        storage = open_storage(config, prepared.run_dir, on_stale=self.stale)
        self.storage = storage
        self.address = config.storage or f"journal:{prepared.run_dir / 'journal.log'}"
        # Read-then-write steps of cooperating drivers on one PostgreSQL study run under this.
        self.lock = StudyLock(storage, config.name)
        self.study = _load_or_create(storage, config.name, directions=config.directions)
        self.shadow = None
        pruner = config.pruner.build(getattr(config.evaluator, "epochs", 1))
        if pruner is not None:
            self.shadow = _load_or_create(storage, f"{config.name}.accuracy",
                                          direction="maximize", pruner=pruner)
        self.shadow_trials: dict[int, Any] = {}  # trial number -> its shadow trial
        self._beating: dict[int, list[int]] = {}  # trial number -> storage ids to heartbeat
        self._beat_lock = threading.Lock()
        self.heartbeat = Heartbeat(storage, config.workers.heartbeat_seconds, self._beat_ids)
        self.last_reap = time.monotonic()
        self.driver = f"{socket.gethostname()}:{os.getpid()}"
        self.session_infeasible = 0
        self.repeats_in_row = 0  # searched proposals of evaluated networks since a new one
        self.new_trials = 0
        self._optuna = optuna
        # The study's counts and Pareto front, kept up to date by this driver's own steps and
        # by sync(), so that a step costs the same however many trials are stored.
        self.counts = Counts()
        self._status: dict[int, TrialStatus] = {}  # trial number -> status when last read
        self._open: set[int] = set()  # numbers last read (or set) running or waiting
        self._seen = 0  # trials below this number have been read
        self._signs = [-1.0 if o.resolved_direction == "maximize" else 1.0
                       for o in config.objectives]
        self.front: list[tuple[int, tuple[float, ...]]] = []  # (number, values)

    def batch(self) -> Any:
        """A context whose writes reach the storage at once when it ends (one synced append on
        the journal; see :mod:`nas.study.journal`); end it before another process needs them."""
        return batch(self.storage)

    def register(self) -> int:
        """This driver's index among the drivers that ran the study at once (0 on a journal,
        where the run folder's lock makes it the only one)."""
        if not self.lock.shared:
            return 0
        with self.lock.held():
            index = int(self.study.user_attrs.get("drivers", 0))
            self.study.set_user_attr("drivers", index + 1)
        return index

    def close(self) -> None:
        self.heartbeat.stop()
        self.lock.close()

    def trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)

    def pareto(self) -> list[Any]:
        """Pareto-optimal feasible evaluated trials (read from the storage), repeats left out."""
        return [t for t in self.study.best_trials
                if TrialStatus.of(t) == TrialStatus.OK and not is_repeat(t.user_attrs)]

    # -- counts -----------------------------------------------------------------------------------

    def recount(self) -> Counts:
        """Count every trial again and rebuild :attr:`front` from the storage (once per
        session); :meth:`sync` keeps both up to date after that."""
        self._status, self._open, self._seen = {}, set(), 0
        self.counts = Counts()
        self.front = []
        return self.sync()

    def sync(self) -> Counts:
        """Bring :attr:`counts` and :attr:`front` up to date with the storage, where other
        drivers (PostgreSQL) or re-queues may have added or finished trials.

        A finished trial never changes again, so only the trials not read before and those
        last read unfinished are looked at: a step costs the same however many are stored."""
        trials = self.trials()  # Optuna numbers a study's trials 0, 1, ... in this order
        fresh = trials[self._seen:]
        changed = [trials[n] for n in sorted(self._open) if n < self._seen]
        for trial in (*changed, *fresh):
            status = TrialStatus.of(trial)
            if self._status.get(trial.number) == status:
                continue
            self._set(trial.number, status)
            if status == TrialStatus.OK:
                repeat = is_repeat(trial.user_attrs)
                self.counts.repeated += repeat
                if not repeat:  # a repeat carries its original's values, already offered
                    self._offer(trial.number, list(trial.values))
        self._seen = len(trials)
        return self.counts

    def _set(self, number: int, status: TrialStatus) -> None:
        old = self._status.get(number)
        if old is not None:
            self.counts.add(old, -1)
        self._status[number] = status
        self.counts.add(status)
        if status in (TrialStatus.RUNNING, TrialStatus.WAITING):  # may still change
            self._open.add(number)
        else:
            self._open.discard(number)

    def _offer(self, number: int, values: list[float]) -> None:
        """Add an evaluated trial to :attr:`front` unless a member dominates it."""
        key = [s * v for s, v in zip(self._signs, values, strict=True)]

        def dominates(a: list[float], b: list[float]) -> bool:
            return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

        members = [(n, v, [s * x for s, x in zip(self._signs, v, strict=True)])
                   for n, v in self.front]
        if any(dominates(k, key) for _, _, k in members):
            return
        self.front = [(n, v) for n, v, k in members if not dominates(key, k)]
        self.front.append((number, tuple(values)))

    # -- heartbeats -------------------------------------------------------------------------------

    def _beat_ids(self) -> list[int]:
        with self._beat_lock:
            return [i for ids in self._beating.values() for i in ids]

    def _beat(self, number: int, trial_id: int) -> None:
        with self._beat_lock:
            self._beating.setdefault(number, []).append(trial_id)
        self.heartbeat.beat(trial_id)

    def _unbeat(self, number: int) -> None:
        with self._beat_lock:
            self._beating.pop(number, None)

    # -- asking -----------------------------------------------------------------------------------

    def ask(self) -> Any:
        """A new trial, heart-beating and naming this driver (call under ``lock.held()``)."""
        trial = self.study.ask()
        self._beat(trial.number, trial._trial_id)  # Optuna has no public accessor for the id
        trial.set_user_attr("driver", self.driver)
        self._set(trial.number, TrialStatus.RUNNING)
        return trial

    def ask_shadow(self, trial: Any) -> Any | None:
        """The shadow trial the pruner follows ``trial`` in (None without a pruner)."""
        if self.shadow is None:
            return None
        shadow_trial = self.shadow.ask()
        self.shadow_trials[trial.number] = shadow_trial
        self._beat(trial.number, shadow_trial._trial_id)
        return shadow_trial

    def reap_interrupted(self) -> int:
        """Fail the trials a dead driver left RUNNING and queue their parameters again.

        With heartbeats (PostgreSQL), only trials whose heartbeat stopped: other drivers may be
        running the rest. Without (the journal), every running trial: this driver holds the run
        folder, so no other driver is running any."""
        running = (self._optuna.trial.TrialState.RUNNING,)
        with self.lock.held():
            if self.heartbeat.enabled:
                # This driver's own trials are alive: it is the one reaping. Beat them now, so
                # that a heartbeat thread starved by a busy machine cannot make a driver reap
                # its own trials (seen in CI beside two CPU hogs, with a 2 s grace).
                for trial_id in self._beat_ids():
                    self.heartbeat.beat(trial_id)
                stale = self.stale.reap(self.study)
                shadow = self.stale.reap(self.shadow) if self.shadow is not None else []
                # A driver asks, beats and names itself under the lock that is held here: a
                # running trial that names no driver lost its driver before it ever beat (or
                # was started by a version without heartbeats).
                stale += [t for t in self.study.get_trials(deepcopy=False, states=running)
                          if "driver" not in t.user_attrs]
            else:
                stale = self.study.get_trials(deepcopy=False, states=running)
                shadow = (self.shadow.get_trials(deepcopy=False, states=running)
                          if self.shadow is not None else [])
            with self.batch():
                for t in stale:
                    self.requeue(t.number, t.params, t.user_attrs)
            for t in shadow:
                self.shadow.tell(t.number, state=self._optuna.trial.TrialState.FAIL,  # type: ignore
                                 skip_if_finished=True)
        self.last_reap = time.monotonic()
        return len(stale)

    def enqueue_fixed(self) -> int:
        """Enqueue the fixed trials (each of its seeds a trial) not enqueued by an earlier
        session or another driver; returns how many. Every row's first seed comes before any
        row's second, so a study stopped early has all its rows."""
        with self.lock.held(), self.batch():
            done = {(t.user_attrs.get("fixed_point"), int(t.user_attrs.get("seed_index", 0)))
                    for t in self.trials()}
            added = 0
            for index in range(self.config.fixed_seeds):
                for fixed in self.prepared.fixed:
                    if (fixed.name, index) not in done:
                        attrs = {"fixed_point": fixed.name, **({"seed_index": index}
                                                               if index else {})}
                        self.study.enqueue_trial(fixed.params or {}, user_attrs=attrs)
                        added += 1
        return added

    # -- telling ----------------------------------------------------------------------------------

    def requeue(self, number: int, params: dict[str, Any], attrs: dict[str, Any],
                trial: Any = None, reason: str = "interrupted: stopped by the user") -> None:
        """Fail an unfinished trial as interrupted and queue its parameters again."""
        if trial is not None:
            trial.set_user_attr("status", TrialStatus.INTERRUPTED.value)
            trial.set_user_attr("fail_reason", reason)
        self.study.tell(number, state=self._optuna.trial.TrialState.FAIL, skip_if_finished=True)
        self._set(number, TrialStatus.INTERRUPTED)
        self._unbeat(number)
        self.end_shadow(number, self._optuna.trial.TrialState.FAIL)
        keep = {k: v for k, v in attrs.items() if k in ("fixed_point", "seed_index")}
        self.study.enqueue_trial(params, user_attrs={**keep, "requeued_from": number})

    def end_shadow(self, number: int, state: Any, value: float | None = None) -> None:
        shadow_trial = self.shadow_trials.pop(number, None)
        if shadow_trial is not None:
            self.shadow.tell(shadow_trial, value, state=state)  # type: ignore[union-attr]

    def tell_infeasible(self, trial: Any, verdict: Verdict, metrics: dict[str, Any],
                        reason: str) -> None:
        for key, value in verdict.constraints.items():
            trial.set_constraint(key, value)
        trial.set_user_attr("status", TrialStatus.INFEASIBLE.value)
        trial.set_user_attr("fail_reason", reason)
        self.study.tell(trial, objective_values(self.config, metrics))
        self._set(trial.number, TrialStatus.INFEASIBLE)
        self._unbeat(trial.number)
        self.end_shadow(trial.number, self._optuna.trial.TrialState.FAIL)
        self.session_infeasible += 1

    def tell_failed(self, trial: Any, reason: str) -> None:
        trial.set_user_attr("status", TrialStatus.FAILED.value)
        trial.set_user_attr("fail_reason", reason)
        self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        self._set(trial.number, TrialStatus.FAILED)
        self.repeats_in_row = 0
        self._unbeat(trial.number)
        self.end_shadow(trial.number, self._optuna.trial.TrialState.FAIL)
        self.new_trials += 1

    def tell_pruned(self, trial: Any, attrs: dict[str, Any]) -> None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("status", TrialStatus.PRUNED.value)
        self.study.tell(trial, state=self._optuna.trial.TrialState.PRUNED)
        self._set(trial.number, TrialStatus.PRUNED)
        self.repeats_in_row = 0
        self._unbeat(trial.number)
        self.end_shadow(trial.number, self._optuna.trial.TrialState.PRUNED)
        self.new_trials += 1

    def tell_ok(self, trial: Any, verdict: Verdict, attrs: dict[str, Any]) -> None:
        for key, value in verdict.constraints.items():
            trial.set_constraint(key, value)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("status", TrialStatus.OK.value)
        metrics = {"accuracy": attrs["accuracy"], "latency_ms": attrs.get("latency_ms"),
                   "params": verdict.params, "macs": verdict.macs}
        values = objective_values(self.config, metrics)
        self.study.tell(trial, values)
        self._set(trial.number, TrialStatus.OK)
        if is_repeat({**attrs, **trial.user_attrs}):
            self.counts.repeated += 1
            self.repeats_in_row += 1
        else:
            self._offer(trial.number, values)
            self.repeats_in_row = 0
        self._unbeat(trial.number)
        self.end_shadow(trial.number, self._optuna.trial.TrialState.COMPLETE, attrs["accuracy"])
        self.new_trials += 1


def _load_or_create(storage: Any, name: str, **options: Any) -> Any:
    import optuna

    pruner = options.get("pruner")
    try:  # loading first: a journal records every create_study call, even a duplicate one
        return optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    except KeyError:
        return optuna.create_study(study_name=name, storage=storage, **options)
