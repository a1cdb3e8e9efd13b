"""What the study runner itself costs: overhead per trial, the budget gate, and parallel speed-up.

    python bench/search_overhead.py [--out bench/results/search_overhead.json]

1. Framework overhead per trial: a study on a local Ray instance whose evaluator does nothing and
   which has no latency oracle, one worker; the wall time per trial is everything but evaluation
   (ask, search space, budget gate, Ray task round trip, tell, progress bookkeeping). Reported as
   the median over trials of (tell time - ask time - the worker's own time), and as wall time per
   trial.
2. Budget gate: time to check a new spec (analytic params and MACs) and a cached one.
3. Throughput with a fixed-cost evaluator (a CPU-bound busy loop of --seconds) at 1 and 2 workers.
4. Scale (--scale 100,1000,10000): one zero-cost study grown to each size in turn (each size a
   resumed session of the same study), on the journal file and, with --postgres URL, on a
   PostgreSQL database. For the last tenth of the trials before each size: the driver's time per
   evaluated trial (between two recorded results; infeasible candidates asked on the way
   included) with the sampler's own time (its Optuna hooks) split out. With --optuna-journal
   SIZES, the same on Optuna's own journal file backend (every record appended and synced on its
   own, as before nas.study.journal), side by side in the same run.

Targets (issue 3): overhead <= 100 ms per trial, gate <= 50 ms new and <= 1 ms cached, 2 workers
>= 1.8x the throughput of 1; (issue 14) at most 25 ms per trial at 10,000 trials without the
sampler, and the sampler's cost per trial stated at each size.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from _results import write_results

from nas.results.runs import open_run
from nas.search import runner
from nas.search.runner import run_study
from nas.study.budget import BudgetGate
from nas.study.config import Budget, parse_study
from nas.study.prepare import prepare
from search_spaces import MobileViTSpace


def _study(run_dir: Path, *, trials: int, seconds: float, workers: int) -> dict:
    data = {"name": "overhead", "trials": trials, "seed": 0,
            "budget": {"max_params": 6_000_000},
            "objectives": [{"metric": "accuracy"}, {"metric": "params"}],
            "evaluator": {"kind": "dummy", "seconds": seconds},
            "latency": {"kind": "none"}, "workers": {"concurrent": workers},
            "sampler": {"kind": "nsga2", "population_size": 16}}
    prepared = prepare(parse_study(data, "bench"), "bench", run_dir=run_dir)
    start = time.perf_counter()
    run_study(prepared, stream=None)
    wall = time.perf_counter() - start
    study, _ = open_run(run_dir)
    trials_ = [t for t in study.trials if t.user_attrs.get("status") == "ok"]
    per_trial = [(t.datetime_complete - t.datetime_start).total_seconds()
                 - t.user_attrs.get("wall_time_s", 0.0) for t in trials_
                 if t.user_attrs.get("duplicate_of") is None]
    infeasible = sum(t.user_attrs.get("status") == "infeasible" for t in study.trials)
    return {"wall_s": wall, "trials": len(trials_), "infeasible": infeasible,
            "median_overhead_ms": 1e3 * statistics.median(per_trial),
            "trials_per_hour": 3600 * len(trials_) / wall}


def gate_timing(n: int = 300) -> dict:
    space = MobileViTSpace()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    specs = []
    for _ in range(n):
        trial = study.ask()
        specs.append(space.sample(trial))
        study.tell(trial, 0.0)
    gate = BudgetGate(Budget(max_params=6_000_000, max_macs=2_000_000_000))
    new, cached = [], []
    for spec in specs:
        t = time.perf_counter()
        gate.check(spec)
        new.append(time.perf_counter() - t)
    for spec in specs:
        t = time.perf_counter()
        gate.check(spec)
        cached.append(time.perf_counter() - t)
    return {"specs": n, "new_median_ms": 1e3 * statistics.median(new),
            "new_max_ms": 1e3 * max(new), "cached_median_ms": 1e3 * statistics.median(cached),
            "cached_max_ms": 1e3 * max(cached)}


SAMPLER_HOOKS = ("infer_relative_search_space", "sample_relative", "sample_independent",
                 "before_trial", "after_trial")


class _Clock:
    """Wraps each driver's sampler hooks and settle step to time them (this process only)."""

    def __init__(self) -> None:
        self.sampler_s = 0.0
        self.results: list[tuple[float, float]] = []  # (time of a recorded result, sampler_s)

    def install(self) -> None:
        clock, init, settle = self, runner._Driver.__init__, runner._Driver.settle

        def timed(fn):  # type: ignore[no-untyped-def]
            def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    clock.sampler_s += time.perf_counter() - start
            return wrapper

        def patched_init(driver, *args, **kwargs):  # type: ignore[no-untyped-def]
            init(driver, *args, **kwargs)
            for hook in SAMPLER_HOOKS:
                setattr(driver.sampler, hook, timed(getattr(driver.sampler, hook)))

        def patched_settle(driver, *args, **kwargs):  # type: ignore[no-untyped-def]
            settle(driver, *args, **kwargs)
            clock.results.append((time.perf_counter(), clock.sampler_s))

        runner._Driver.__init__ = patched_init  # type: ignore[method-assign]
        runner._Driver.settle = patched_settle  # type: ignore[method-assign]


@contextlib.contextmanager
def _optuna_journal():  # type: ignore[no-untyped-def]
    """Run folders opened on Optuna's own file backend (a record per append) meanwhile."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    import nas.study.journal as journal

    batched = journal.BatchedJournalStorage
    journal.BatchedJournalStorage = lambda path: JournalStorage(JournalFileBackend(path))
    try:
        yield
    finally:
        journal.BatchedJournalStorage = batched


def scale_timing(root: Path, sizes: list[int], storage: str | None,
                 label: str | None = None) -> list[dict]:
    """Grow one zero-cost study to each of ``sizes`` and time the last tenth before each."""
    clock = _Clock()
    clock.install()
    data = {"name": "scale", "seed": 0, "budget": {"max_params": 6_000_000},
            "objectives": [{"metric": "accuracy"}, {"metric": "params"}],
            "evaluator": {"kind": "dummy", "seconds": 0.0}, "latency": {"kind": "none"},
            "workers": {"concurrent": 1}, "sampler": {"kind": "nsga2", "population_size": 16},
            "max_infeasible": 10**9}
    if storage:
        data["storage"] = storage
    rows = []
    for size in sizes:
        prepared = prepare(parse_study({**data, "trials": size}, "bench"), "bench",
                           run_dir=root / "scale")
        clock.results.clear()
        summary = run_study(prepared, stream=None)
        window = clock.results[-max(2, size // 10):]
        steps = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(window, window[1:], strict=False)]
        total = statistics.median(t for t, _ in steps)
        sampler = statistics.median(s for _, s in steps)
        framework = statistics.median(t - s for t, s in steps)
        rows.append({"storage": label or ("postgresql" if storage else "journal"), "trials": size,
                     "infeasible": summary.counts.infeasible,
                     "per_trial_ms": round(1e3 * total, 2),
                     "sampler_ms": round(1e3 * sampler, 2),
                     "framework_ms": round(1e3 * framework, 2)})
        print(f"  {rows[-1]['storage']:<10} {size:>6} trials: {rows[-1]['per_trial_ms']:.1f} ms "
              f"per trial, sampler {rows[-1]['sampler_ms']:.1f} ms, framework "
              f"{rows[-1]['framework_ms']:.1f} ms ({summary.counts.infeasible} infeasible)",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/search_overhead.json")
    parser.add_argument("--seconds", type=float, default=2.0, help="fixed evaluation cost")
    parser.add_argument("--trials", type=int, default=40, help="trials of the overhead study")
    parser.add_argument("--throughput-trials", type=int, default=16)
    parser.add_argument("--scale", default="100,1000,10000",
                        help="study sizes for the scale section (comma-separated; empty: skip)")
    parser.add_argument("--postgres", default=None,
                        help="a PostgreSQL URL for the scale section (a database to fill)")
    parser.add_argument("--optuna-journal", default="",
                        help="sizes to run also on Optuna's own journal backend (comma-separated)")
    parser.add_argument("--only-scale", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {}
    sizes = [int(x) for x in args.scale.split(",") if x]
    plain = [int(x) for x in args.optuna_journal.split(",") if x]
    if args.only_scale:
        with tempfile.TemporaryDirectory() as tmp:
            results["scale"] = _scale(Path(tmp), sizes, args.postgres, plain)
        _print_scale(results["scale"])
        write_results(args.out, results)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Warm Ray up so its start-up is not charged to the first study.
        _study(root / "warmup", trials=2, seconds=0.0, workers=1)
        overhead = _study(root / "overhead", trials=args.trials, seconds=0.0, workers=1)
        results["overhead"] = overhead
        results["gate"] = gate_timing()
        one = _study(root / "one", trials=args.throughput_trials, seconds=args.seconds, workers=1)
        two = _study(root / "two", trials=args.throughput_trials, seconds=args.seconds, workers=2)
        results["throughput"] = {"seconds_per_evaluation": args.seconds, "one_worker": one,
                                 "two_workers": two,
                                 "speedup": two["trials_per_hour"] / one["trials_per_hour"]}
        results["scale"] = _scale(root, sizes, args.postgres, plain)
    o, g, t = results["overhead"], results["gate"], results["throughput"]
    wall_per_trial = 1e3 * o["wall_s"] / o["trials"]
    print(f"{'measure':<52}{'value':>12}  target")
    print(f"{'framework overhead per trial, median (ms)':<52}{o['median_overhead_ms']:>12.1f}  <= 100")
    print(f"{'  wall time per zero-cost trial, 1 worker (ms)':<52}{wall_per_trial:>12.1f}")
    print(f"{'  infeasible candidates recorded on the way':<52}{o['infeasible']:>12}")
    print(f"{'budget gate, new spec, median / max (ms)':<52}"
          f"{g['new_median_ms']:>6.2f} /{g['new_max_ms']:>4.1f}  <= 50")
    print(f"{'budget gate, cached spec, median / max (ms)':<52}"
          f"{g['cached_median_ms']:>6.3f} /{g['cached_max_ms']:>4.2f}  <= 1")
    print(f"{f'trials/hour at {args.seconds:g} s per trial, 1 worker':<52}"
          f"{t['one_worker']['trials_per_hour']:>12.0f}")
    print(f"{'  2 workers':<52}{t['two_workers']['trials_per_hour']:>12.0f}")
    print(f"{'  speed-up of 2 workers over 1':<52}{t['speedup']:>12.2f}  >= 1.8")
    _print_scale(results["scale"])
    write_results(args.out, results)


def _scale(root: Path, sizes: list[int], postgres: str | None, plain: list[int]) -> list[dict]:
    rows = []
    if plain:
        with _optuna_journal():
            rows += scale_timing(root / "optuna-journal", plain, None, label="journal (Optuna)")
    rows += scale_timing(root / "journal", sizes, None) if sizes else []
    if sizes and postgres:
        rows += scale_timing(root / "postgres", sizes, postgres)
    return rows


def _print_scale(rows: list[dict]) -> None:
    if not rows:
        return
    print(f"\n{'storage':<18}{'trials':>8}{'per trial (ms)':>16}{'sampler (ms)':>14}"
          f"{'framework (ms)':>16}  target")
    for r in rows:
        target = "<= 25" if r["trials"] >= 10_000 else ""
        print(f"{r['storage']:<18}{r['trials']:>8}{r['per_trial_ms']:>16.1f}"
              f"{r['sampler_ms']:>14.1f}{r['framework_ms']:>16.1f}  {target}")


if __name__ == "__main__":
    main()
