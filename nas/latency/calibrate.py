"""``nas latency calibrate``: fit the predictor to published or measured latencies."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from mobilevit import SpecError, resolve_spec
from nas.latency.predictor import (
    CalibrationError,
    CalibrationPoint,
    fit_calibration,
    point_for,
    published_points,
)

MEASURED = "measured"


def read_measurements(path: str | Path) -> list[CalibrationPoint]:
    """Calibration rows from a CSV with columns ``model`` (a fixed-point name or spec JSON file),
    ``latency_ms``, and optionally ``resolution`` (default: the spec's) and ``source``."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read ({exc.strerror})") from None
    missing = {"model", "latency_ms"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise CalibrationError(f"{path}: expected a header with model and latency_ms"
                               + (f" (missing {', '.join(sorted(missing))})" if rows else
                                  " and at least one row"))
    points = []
    for line, row in enumerate(rows, start=2):
        where = f"{path}:{line}"
        try:
            spec = resolve_spec(row["model"])
        except SpecError as exc:
            raise CalibrationError(f"{where}: model={row['model']}: {exc}") from None
        try:
            latency = float(row["latency_ms"])
            resolution = int(row.get("resolution") or spec.resolution)
        except ValueError:
            raise CalibrationError(f"{where}: latency_ms={row['latency_ms']!r}, resolution="
                                   f"{row.get('resolution')!r}: expected numbers") from None
        points.append(point_for(row["model"], spec, resolution, row.get("source") or MEASURED,
                                latency))
    return points


def calibrate_command(args: argparse.Namespace) -> int:
    """Fit, report every row's leave-one-out prediction, and write the calibration file."""
    if args.published:
        points, device = published_points(), args.device or "iPhone 12"
    else:
        if not args.device:
            raise CalibrationError("--device: name the device the measurements come from")
        points, device = read_measurements(args.measurements), args.device
    calibration = fit_calibration(points, device=device, compute_units=args.compute_units)
    print(f"{'row':<28}{'source':<12}{'res':>5}{'measured':>10}{'left out':>10}{'error':>8}")
    for row in calibration.points:
        short = row["source"].split(" (")[0][:11]
        loo = f"{row['loo_ms']:.2f}" if "loo_ms" in row else "-"
        err = f"{row['loo_error']:.1%}" if "loo_error" in row else "-"
        print(f"{row['label'][:27]:<28}{short:<12}{row['resolution']:>5}"
              f"{row['latency_ms']:>10.2f}{loo:>10}{err:>8}")
    if calibration.loo_median is not None:
        print(f"leave-one-out relative error: median {calibration.loo_median:.1%}, worst "
              f"{calibration.loo_max:.1%} ({len(calibration.points)} rows)")
    print("weights: " + ", ".join(f"{k} {v:.4g} ms" for k, v in calibration.weights.items()))
    if len(calibration.scales) > 1:
        print("source scales: " + "; ".join(f"{k}: {v:.3f}"
                                            for k, v in calibration.scales.items()))
    print(f"wrote {calibration.save(args.output)}")
    return 0
