"""Shared by the benchmarks: where and how results are written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` (folders created) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    print(f"wrote {out}")


def resume_cifar_bench(archive: str, out: str, fresh: bool) -> dict[str, Any] | None:
    """The results so far of a benchmark that trains on the CIFAR-10 archive: those in ``out``
    (an empty dict with ``fresh``), or None, after saying so, when the archive is absent. Tunes
    the CPU allocator for training as it goes."""
    from nas.runtime import tune_cpu_allocator

    if not Path(archive).exists():
        print(f"skipped: {archive} is not there (this benchmark needs CIFAR-10)")
        return None
    tune_cpu_allocator()
    path = Path(out)
    return json.loads(path.read_text()) if path.exists() and not fresh else {}
