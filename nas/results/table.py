"""Plain-text tables for the commands that only read specs or a run folder.

``nas zoo`` and ``nas status`` print a few dozen rows; building a pandas DataFrame for that costs
more than a second of imports (pandas, pyarrow) on a laptop, several times the work itself. This
formatter needs nothing but the standard library.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any


def format_cell(value: Any, spec: str = "") -> str:
    """A table cell: ``value`` in format ``spec``, ``-`` when missing (None or NaN)."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec) if spec else str(value)


def text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
               formats: Mapping[str, str] | None = None) -> str:
    """``rows`` as an aligned text table of ``columns``: a header line, then one line per row.

    Numbers are right-aligned and everything else left-aligned; a missing value (absent, None or
    NaN) prints as ``-``; ``formats`` maps a column to a format spec (``"{:,}"``-style specs
    without the braces, e.g. ``","`` or ``".3f"``)."""
    formats = formats or {}
    cells = [[format_cell(row.get(c), formats.get(c, "")) for c in columns] for row in rows]
    numeric = [all(isinstance(row.get(c), numbers.Number) or format_cell(row.get(c)) == "-"
                   for row in rows) for c in columns]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(list(columns)), *(line(values) for values in cells)])
