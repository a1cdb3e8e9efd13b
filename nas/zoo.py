"""The fixed-point table with our measured size and work next to the published figures."""

from __future__ import annotations

import dataclasses
from typing import Any

from mobilevit import FIXED_POINTS
from mobilevit.complexity import complexity


def zoo_records(resolution: int = 256) -> list[dict[str, Any]]:
    """One record per fixed point: name, paper, block family, spec id, our params and MACs at
    ``resolution``, the published figures and the full spec.

    The counts are analytic (:mod:`mobilevit.complexity`, microseconds, no network built); the
    tests check they equal fvcore's on the built networks (:func:`nas.profile.profile`)."""
    records = []
    for fp in FIXED_POINTS.values():
        prof = complexity(fp.spec, resolution)
        families = sorted({s.block.family for s in fp.spec.stages if s.block is not None})
        records.append({
            "name": fp.name,
            "paper": fp.paper,
            "block": "/".join(families),
            "spec_id": fp.spec.spec_id,
            "params": prof.params,
            "macs": prof.macs,
            "resolution": resolution,
            "macs_by_group": prof.macs_by_group,
            "published": dataclasses.asdict(fp.published),
            "spec": fp.spec.to_dict(),
        })
    return records


def zoo_table(records: list[dict[str, Any]]) -> str:
    """The table printed by ``nas zoo``: one line per fixed point, ours beside the paper's."""
    from nas.results.table import text_table

    macs = f"MACs@{records[0]['resolution']} (M)" if records else "MACs (M)"
    rows = []
    for r in records:
        pub = r["published"]
        rows.append({
            "model": r["name"],
            "block": r["block"],
            "params": r["params"],
            "paper params (M)": pub["params_m"],
            macs: round(r["macs"] / 1e6, 1),
            "paper MACs (M)": None if pub["macs_g"] is None else round(pub["macs_g"] * 1000),
            "top-1": pub["top1"],
            "iPhone 12 (ms)": pub["latency_ms"],
        })
    columns = ["model", "block", "params", "paper params (M)", macs, "paper MACs (M)", "top-1",
               "iPhone 12 (ms)"]
    return text_table(rows, columns, {"params": ",", macs: ",.1f"})
