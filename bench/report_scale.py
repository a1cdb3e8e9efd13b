"""How long a report of a large study takes to build and to render in headless Chromium.

    python bench/report_scale.py [--trials 5000 500] [--loads 3] [--out ...]

For each size, a run folder is filled with that many trials of the default study
(studies/under_6m_scratch.yaml): the 15 published designs as fixed trials, then networks drawn at random
from the search space, counted by the budget gate exactly as in a study (infeasible ones kept as
such); accuracy and latency are synthetic (a noisy function of MACs and parameters, no training),
a few trials failed or pruned. Then ``nas report`` builds the page, and Chromium (via playwright)
loads it ``--loads`` times: the time from navigation start until every figure is drawn.

Target (issue 6): 5,000 trials render in under 5 s.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from _results import write_results

from mobilevit import get_fixed_point
from mobilevit.spec import SpecError
from nas.report.browser import check_page, find_chromium
from nas.report.page import write_report
from nas.study.budget import BudgetGate
from nas.study.prepare import load, write_config
from search_spaces.mobilevit import SpaceError

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "under_6m_scratch.yaml"
NARROW = {"s3.width": {"high": 128}, "s4.width": {"high": 192}, "s5.width": {"high": 256},
          "s3.dim": {"high": 144}, "s4.dim": {"high": 192}, "s5.dim": {"high": 240},
          "s4.depth": {"high": 4}, "s5.depth": {"high": 3}}


def _inside(space: Any, name: str) -> bool:
    try:
        space.params_for(get_fixed_point(name).spec)
    except SpaceError:
        return False
    return True


def synthetic_run(run_dir: Path, trials: int, seed: int = 0) -> dict[str, int]:
    """Fill ``run_dir`` with ``trials`` trials of the default study; returns counts by status."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    from nas.study.prepare import prepare

    base = load(STUDY).config
    # A narrower space than the default study's, so that about half of random draws fit the
    # budget, as in a search that has learnt where the budget lies.
    config = base.model_copy(update={"trials": trials, "space": NARROW, "fixed_trials": []})
    space = prepare(config, str(STUDY), run_dir=run_dir).space
    fixed = [n for n in base.fixed_trials if _inside(space, n)]
    config = config.model_copy(update={"fixed_trials": fixed})
    prepared = prepare(config, str(STUDY), run_dir=run_dir)
    write_config(config, run_dir)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(run_dir / "journal.log")))
    study = optuna.create_study(study_name=config.name, storage=storage,
                                directions=["maximize", "minimize"])
    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    for name in config.fixed_trials:
        draw.enqueue_trial(prepared.space.params_for(get_fixed_point(name).spec),
                           user_attrs={"fixed_point": name})
    gate = BudgetGate(config.budget)
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, 9, 0, 0)
    made, counts = [], {}
    (run_dir / "specs").mkdir(exist_ok=True)
    for number in range(trials):
        t = draw.ask()
        began = start + timedelta(seconds=20 * number)
        attrs = dict(t.user_attrs)
        try:
            spec = prepared.space.sample(t)
        except SpecError as exc:
            status, verdict = "infeasible", None
            attrs.update(spec_id=None, fail_reason=f"invalid network: {exc}")
        else:
            (run_dir / "specs" / f"{spec.spec_id}.json").write_text(spec.to_json())
            verdict = gate.check(spec)
            attrs.update(spec_id=spec.spec_id, params=verdict.params, macs=verdict.macs)
            roll = rng.random()
            status = ("infeasible" if not verdict.feasible else
                      "failed" if roll < 0.01 else "pruned" if roll < 0.06 else "ok")
        values = [-math.inf, math.inf]
        if status == "infeasible" and verdict is not None:
            attrs["fail_reason"] = "over budget: " + ", ".join(verdict.violated())
        if status == "failed":
            attrs["fail_reason"] = "RuntimeError: synthetic failure"
        if status in ("ok", "pruned"):
            gmacs, mparams = verdict.macs / 1e9, verdict.params / 1e6
            accuracy = min(95.0, max(5.0, 52 + 9 * math.log(gmacs) + rng.gauss(0, 3)))
            latency = (1.2 + 3.1 * gmacs + 0.25 * mparams) * math.exp(rng.gauss(0, 0.08))
            if status == "pruned":
                accuracy *= 0.6
            values = [round(accuracy, 2), round(latency, 3)]
            attrs.update(accuracy=values[0], latency_ms=values[1],
                         latency={"median_ms": values[1], "spread": 0.0,
                                  "backend": "coreml-predictor", "device": "iPhone 12"},
                         eval={"evaluator": "proxy_train", "epochs": 3, "resolution": 64,
                               "dataset": "procedural", "train_images": 1600})
        attrs["status"] = status
        state = (optuna.trial.TrialState.FAIL if status == "failed" else
                 optuna.trial.TrialState.PRUNED if status == "pruned" else
                 optuna.trial.TrialState.COMPLETE)
        trial = optuna.trial.create_trial(
            state=state, values=values if state == optuna.trial.TrialState.COMPLETE else None,
            params=t.params, distributions=t.distributions, user_attrs=attrs,
            constraints=verdict.constraints if verdict else {"valid": 1.0})
        trial.datetime_start = began
        trial.datetime_complete = began + timedelta(seconds=15 + 10 * rng.random())
        made.append(trial)
        counts[status] = counts.get(status, 0) + 1
        draw.tell(t, state=optuna.trial.TrialState.FAIL)  # the draw study only proposes
    study.add_trials(made)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[5000, 500])
    parser.add_argument("--loads", type=int, default=3, help="page loads per size")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "report_scale.json"))
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium: apt-get install chromium (or set NAS_CHROMIUM)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.trials:
            run_dir = Path(tmp) / f"run_{n}"
            t0 = time.perf_counter()
            counts = synthetic_run(run_dir, n)
            t1 = time.perf_counter()
            files = write_report(run_dir)
            t2 = time.perf_counter()
            checks = [check_page(files.html, executable=chromium) for _ in range(args.loads)]
            ms = [c.render_ms for c in checks]
            errors = sorted({e for c in checks for e in c.errors})
            missing = sorted(set(checks[0].figures) - set(checks[0].rendered))
            rows.append({"trials": n, "statuses": counts, "generate_s": round(t1 - t0, 2),
                         "build_report_s": round(t2 - t1, 2),
                         "html_mb": round(files.html.stat().st_size / 1e6, 2),
                         "render_ms_median": round(statistics.median(ms)),
                         "render_ms_all": [round(m) for m in ms],
                         "figures": len(checks[0].figures), "figures_missing": missing,
                         "js_errors": errors})
    print(f"{'trials':>7} {'build report (s)':>17} {'HTML (MB)':>10} {'render median (ms)':>19} "
          f"{'loads (ms)':>22} {'figures':>8} {'JS errors':>10}")
    for r in rows:
        print(f"{r['trials']:>7} {r['build_report_s']:>17} {r['html_mb']:>10} "
              f"{r['render_ms_median']:>19} {str(r['render_ms_all']):>22} "
              f"{r['figures'] - len(r['figures_missing'])}/{r['figures']:<6} "
              f"{len(r['js_errors']):>10}")
    write_results(args.out, {"chromium": chromium, "rows": rows,
                             "target": "5000 trials render in < 5000 ms"})


if __name__ == "__main__":
    main()
