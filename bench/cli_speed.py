"""How long the commands that only read specs or a run folder take, start to finish.

    python bench/cli_speed.py [--repeats 5] [--out bench/results/cli_speed.json]

Each command runs as a user runs it (a fresh ``python -m nas.cli`` process, so imports count),
``--repeats`` times; the table gives the median and the fastest wall time and which heavy
libraries the command imported. ``nas status`` and ``nas trials`` read a run folder of the
smoke study, made first. Target (issue 14): at most 1.5 s each on a 2-core laptop.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import write_results

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "fvcore", "optuna", "ray", "pandas", "plotly", "coremltools")
TARGET_S = 1.5


def _smoke_run(folder: Path) -> Path:
    import nas

    study = dataclasses.replace(nas.load_study(ROOT / "studies" / "smoke.yaml"),
                                run_dir=folder / "smoke")
    nas.run_study(study, stream=None)
    return study.run_dir


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nas.cli", *argv], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _imports(argv: list[str]) -> list[str]:
    code = ("import sys; from nas.cli import main; main(sys.argv[1:]); "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, *argv], check=True, cwd=ROOT,
                         capture_output=True, text=True)
    return out.stderr.strip().splitlines()[-1].split() if out.stderr.strip() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "cli_speed.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = str(_smoke_run(Path(tmp)))
        commands = [["--help"], ["zoo"], ["zoo", "--json"], ["spec", "mobilevit_s"], ["space"],
                    ["status", run], ["trials", run]]
        rows = []
        for argv in commands:
            times = [_timed(argv) for _ in range(args.repeats)]
            shown = " ".join(a if a != run else "RUN" for a in argv)
            rows.append({"command": f"nas {shown}", "median_s": round(statistics.median(times), 3),
                         "min_s": round(min(times), 3), "imports": _imports(argv)})
    print(f"{'command':<22} {'median s':>9} {'min s':>7}  heavy imports")
    for r in rows:
        mark = "" if r["median_s"] <= TARGET_S else "  (over the target)"
        print(f"{r['command']:<22} {r['median_s']:>9.2f} {r['min_s']:>7.2f}  "
              f"{' '.join(r['imports']) or '-'}{mark}")
    write_results(args.out, {"target_s": TARGET_S, "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
