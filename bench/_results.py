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
