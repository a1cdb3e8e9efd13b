"""What the latency predictor costs per candidate, and how well it fits the iPhone 12 rows.

    python bench/latency_oracle.py [--candidates 8] [--max-params 6e6] [--refit] [--out ...]

1. Time per new candidate (networks sampled at random from the full search space, or under
   --max-params, plus the largest published design that fits), at 256x256: torch.export +
   CoreML conversion, feature extraction from the program, prediction, the whole
   PredictorOracle.measure, and a cache hit (cached_latency on the sqlite cache).
2. The predictor's leave-one-out relative error on the iPhone 12 calibration rows (median and
   worst), from the shipped calibration, or refitted from the published rows with --refit.

Targets (issue 5): a new candidate predicted in <= 3 s on this machine, a cache hit in <= 10 ms,
leave-one-out median relative error <= 15 %.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from _results import write_results

import mobilevit
from mobilevit.complexity import complexity
from nas.latency import LatencyCache, cached_latency
from nas.latency.features import convert_to_mil, program_features, spec_features
from nas.latency.predictor import (
    PredictorOracle,
    fit_calibration,
    load_calibration,
    published_points,
    terms,
)
from nas.runtime import tune_cpu_allocator
from search_spaces import MobileViTSpace


def _candidates(n: int, seed: int, max_params: float | None) -> list[mobilevit.ArchSpec]:
    """``n`` random networks of the full space (under ``max_params`` when given), then the
    largest published design that fits."""
    space = MobileViTSpace()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    specs: list[mobilevit.ArchSpec] = []
    while len(specs) < n:
        spec = space.sample(study.ask())
        if max_params is None or complexity(spec).params <= max_params:
            specs.append(spec)
    return specs + [mobilevit.get_fixed_point("mobilevit_s" if max_params else
                                              "mobilevitv2_200").spec]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--max-params", type=float, default=None,
                        help="sample candidates under this many parameters (e.g. 6e6)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refit", action="store_true",
                        help="refit the calibration from the published rows (converts 9 networks)")
    parser.add_argument("--out", default="bench/results/latency_oracle.json")
    args = parser.parse_args()
    tune_cpu_allocator()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    calibration = load_calibration()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = LatencyCache(Path(tmp) / "latency.sqlite")
        oracle = PredictorOracle(resolution=args.resolution)
        for spec in _candidates(args.candidates, args.seed, args.max_params):
            start = time.perf_counter()
            program = convert_to_mil(spec, args.resolution)
            converted = time.perf_counter()
            features = program_features(program)
            extracted = time.perf_counter()
            calibration.predict(terms(features))
            predicted = time.perf_counter()
            spec_features.cache_clear()  # the oracle converts again, as a new candidate would
            start_total = time.perf_counter()
            cached_latency(oracle, spec, cache)
            total = time.perf_counter() - start_total
            hits = []
            for _ in range(20):
                start_hit = time.perf_counter()
                _, hit = cached_latency(oracle, spec, cache)
                hits.append(time.perf_counter() - start_hit)
                assert hit
            params = complexity(spec).params
            rows.append({"spec_id": spec.spec_id, "params_m": round(params / 1e6, 2),
                         "convert_s": round(converted - start, 3),
                         "features_s": round(extracted - converted, 3),
                         "predict_ms": round((predicted - extracted) * 1e3, 4),
                         "new_candidate_s": round(total, 3),
                         "cache_hit_ms": round(statistics.median(hits) * 1e3, 3)})
            print(f"{spec.spec_id}  {rows[-1]['params_m']:>5.2f} M  convert "
                  f"{rows[-1]['convert_s']:.2f} s  features {rows[-1]['features_s']:.3f} s  "
                  f"predict {rows[-1]['predict_ms']:.3f} ms  new {rows[-1]['new_candidate_s']:.2f}"
                  f" s  hit {rows[-1]['cache_hit_ms']:.2f} ms", flush=True)
    if args.refit:
        calibration = fit_calibration(published_points(), device="iPhone 12")
    summary = {
        "candidates": len(rows), "max_params": args.max_params,
        "convert_s_median": statistics.median(r["convert_s"] for r in rows),
        "features_s_median": statistics.median(r["features_s"] for r in rows),
        "predict_ms_median": statistics.median(r["predict_ms"] for r in rows),
        "new_candidate_s_median": statistics.median(r["new_candidate_s"] for r in rows),
        "new_candidate_s_max": max(r["new_candidate_s"] for r in rows),
        "cache_hit_ms_median": statistics.median(r["cache_hit_ms"] for r in rows),
        "cache_hit_ms_max": max(r["cache_hit_ms"] for r in rows),
        "loo_median_error": calibration.loo_median, "loo_max_error": calibration.loo_max,
        "calibration_rows": len(calibration.points),
    }
    print(f"\n{'measure':<40}{'value':>12}{'target':>12}")
    for label, value, target in (
            ("new candidate, median / max (s)",
             f"{summary['new_candidate_s_median']:.2f} / {summary['new_candidate_s_max']:.2f}",
             "<= 3"),
            ("  of which conversion, median (s)", f"{summary['convert_s_median']:.2f}", ""),
            ("  of which features, median (s)", f"{summary['features_s_median']:.3f}", ""),
            ("  of which prediction, median (ms)", f"{summary['predict_ms_median']:.3f}", ""),
            ("cache hit, median / max (ms)",
             f"{summary['cache_hit_ms_median']:.2f} / {summary['cache_hit_ms_max']:.2f}", "<= 10"),
            ("leave-one-out error, median / worst",
             f"{summary['loo_median_error']:.1%} / {summary['loo_max_error']:.1%}", "<= 15 %")):
        print(f"{label:<40}{value:>12}{target:>12}")
    write_results(args.out, {"summary": summary, "candidates": rows,
                             "resolution": args.resolution})


if __name__ == "__main__":
    main()
