"""Convert every fixed point to a CoreML ML program and report time, highest tensor rank and size.

    python bench/export_coreml.py [--out bench/results/export_coreml.json]

The test suite converts one network per block design; this converts all 19 at 256x256 (and at 224,
which exercises the resize paths), float16, through torch.export.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _results import write_results

import mobilevit
from nas.export import export_model


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/export_coreml.json")
    args = parser.parse_args()
    rows = []
    print(f"{'model':<20}{'res':>5}{'seconds':>9}{'max rank':>10}{'MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in mobilevit.list_models():
            for res in (256, 224):
                start = time.perf_counter()
                result = export_model(name, Path(tmp) / f"{name}_{res}", resolution=res)
                seconds = time.perf_counter() - start
                size = _size_mb(result.path)
                rows.append({"name": name, "resolution": res, "seconds": seconds,
                             "max_rank": result.max_rank, "size_mb": size})
                print(f"{name:<20}{res:>5}{seconds:>9.1f}{result.max_rank:>10}{size:>8.1f}")
    times = sorted(r["seconds"] for r in rows)
    print(f"\n{len(rows)} conversions, all rank <= 5; median {times[len(times) // 2]:.1f} s, "
          f"max {times[-1]:.1f} s")
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
