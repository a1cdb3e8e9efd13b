"""What the study runner itself costs: overhead per trial, the budget gate, and parallel speed-up.

    python bench/search_overhead.py [--out bench/results/search_overhead.json]

1. Framework overhead per trial: a study on a local Ray instance whose evaluator does nothing and
   which has no latency oracle, one worker; the wall time per trial is everything but evaluation
   (ask, search space, budget gate, Ray task round trip, tell, progress bookkeeping). Reported as
   the median over trials of (tell time - ask time - the worker's own time), and as wall time per
   trial.
2. Budget gate: time to check a new spec (analytic params and MACs) and a cached one.
3. Throughput with a fixed-cost evaluator (a CPU-bound busy loop of --seconds) at 1 and 2 workers.

Targets (issue 3): overhead <= 100 ms per trial, gate <= 50 ms new and <= 1 ms cached, 2 workers
>= 1.8x the throughput of 1.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from _results import write_results

from nas.results.runs import open_run
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/search_overhead.json")
    parser.add_argument("--seconds", type=float, default=2.0, help="fixed evaluation cost")
    parser.add_argument("--trials", type=int, default=40, help="trials of the overhead study")
    parser.add_argument("--throughput-trials", type=int, default=16)
    args = parser.parse_args()
    results: dict[str, object] = {}
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
    write_results(args.out, results)


if __name__ == "__main__":
    main()
