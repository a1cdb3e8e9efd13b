"""Do two sets of run folders hold the same trials? The check that a refactor changed no result.

    python bench/compare_runs.py BEFORE_DIR AFTER_DIR [--out bench/results/compare_runs.json]

Every run folder under each directory (a ``study.yaml`` beside its storage) is read with
``nas.load_trials`` and compared trial by trial on every column but the timestamps and wall
times; runs timed by the ``local`` oracle (wall clock on this machine, different on every run)
also leave out their latency and the Pareto flags drawn from it. Prints one line per run and
writes the differences as JSON.
"""

from __future__ import annotations

import argparse
import math
import pathlib
from typing import Any

from _results import write_results

import nas

UNTIMED = {"started", "finished", "wall_time_s"}
WALL_CLOCK = {"latency_ms", "latency_spread", "pareto"}


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float):
        return round(value, 6)
    return value if isinstance(value, (int, str, bool)) else str(value)


def _trials(run: pathlib.Path) -> tuple[list[str], dict[int, dict[str, Any]], bool]:
    frame = nas.load_trials(run)
    timed = bool(frame["oracle"].astype(str).str.contains("torch-eager").any())
    columns = [c for c in frame.columns if c not in UNTIMED | (WALL_CLOCK if timed else set())]
    rows = {int(r["number"]): {c: _cell(r[c]) for c in columns}
            for r in frame.to_dict("records")}
    return columns, rows, timed


def _runs(root: str) -> dict[str, pathlib.Path]:
    base = pathlib.Path(root)
    return {p.parent.relative_to(base).as_posix(): p.parent for p in base.rglob("study.yaml")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--out", default="bench/results/compare_runs.json")
    args = parser.parse_args()
    before, after = _runs(args.before), _runs(args.after)
    report: dict[str, Any] = {"only_before": sorted(set(before) - set(after)),
                              "only_after": sorted(set(after) - set(before)), "runs": {}}
    for name in sorted(set(before) & set(after)):
        cols_a, rows_a, timed = _trials(before[name])
        cols_b, rows_b, _ = _trials(after[name])
        cols = [c for c in cols_a if c in cols_b]
        diffs = [(n, c, rows_a[n][c], rows_b[n][c] if n in rows_b else "(no such trial)")
                 for n in rows_a for c in cols if n not in rows_b or rows_a[n][c] != rows_b[n][c]]
        same = not diffs and set(rows_a) == set(rows_b)
        report["runs"][name] = {"trials": [len(rows_a), len(rows_b)], "identical": same,
                                "wall_clock_left_out": timed,
                                "differences": [[str(x) for x in d] for d in diffs[:50]]}
        print(f"{name:28s} trials {len(rows_a):4d} vs {len(rows_b):4d}  "
              f"{'identical' if same else 'DIFFERENT'}"
              + ("  (wall-clock latency left out)" if timed else ""))
        for number, column, a, b in diffs[:5]:
            print(f"    trial {number} {column}: {a!r} vs {b!r}")
    identical = all(r["identical"] for r in report["runs"].values())
    print("all identical" if identical and not report["only_before"] + report["only_after"]
          else "DIFFERENCES")
    write_results(args.out, report)


if __name__ == "__main__":
    main()
