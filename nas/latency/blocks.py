"""A candidate's latency features as the sum of its units' features, each unit converted once.

The features of :mod:`nas.latency.features` are sums over the ops of the converted program (and
two maxima), so they can be computed per unit of the network (:meth:`mobilevit.ArchSpec.units`:
the stem, each MV2 block, each MobileViT block, the head) and added up. A unit is converted the
first time any candidate has it and its features are stored in the latency cache, keyed by every
field of the unit (which includes the map size it receives) and by the coremltools and torch
versions; a new candidate whose units are all known is predicted without converting anything.

The units of one candidate that are not cached yet are converted together: one ``torch.export``
and one coremltools conversion of a module that runs each of them on its own input, after which
each op of the program is attributed to the unit whose input it is reachable from. The program
is the one ``nas export`` writes less the joints between units, so what the converter could do
across a joint is all that can differ from converting the whole network: the tests and
``bench/latency_oracle.py`` compare the two paths (docs/latency.md gives the figures).

Most units need no conversion at all: :mod:`nas.latency.templates` writes a unit's program down
from its fields, and :func:`unit_features` uses that wherever the installed coremltools and torch
are known to produce exactly the written program (:func:`templates_trusted`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from mobilevit import ArchSpec
from mobilevit.spec import Unit
from nas.latency.base import default_cache_dir
from nas.latency.features import FEATURES, ProgramFeatures, ops_features
from nas.latency.templates import VERIFIED, has_template, probe_units, template_features

# Bump when counting or conversion changes what a unit's stored features would be.
REVISION = 1
MAXIMA = frozenset({"max_tokens", "max_rank"})


@lru_cache(maxsize=1)
def unit_versions() -> dict[str, str]:
    """The software a unit's features depend on, read without importing it."""
    return {"coremltools": metadata.version("coremltools"),
            "torch": metadata.version("torch").split("+")[0], "revision": str(REVISION)}


def unit_key(unit: Unit) -> str:
    """The cache key of a unit's features: a hash of its fields and of :func:`unit_versions`."""
    text = json.dumps({"unit": unit.to_json(), "versions": unit_versions()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def combine(parts: Iterable[ProgramFeatures]) -> ProgramFeatures:
    """The features of a program made of ``parts``: sums, and maxima for the two maxima."""
    values = dict.fromkeys(FEATURES, 0.0)
    op_types: dict[str, int] = {}
    for part in parts:
        for name in FEATURES:
            x = part.values[name]
            values[name] = max(values[name], x) if name in MAXIMA else values[name] + x
        for kind, count in part.op_types.items():
            op_types[kind] = op_types.get(kind, 0) + count
    return ProgramFeatures({k: round(x, 6) for k, x in values.items()},
                           dict(sorted(op_types.items())))


class UnitFeatureCache:
    """Unit features by :func:`unit_key`, in a table of the latency cache's sqlite file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_dir() / "latency.sqlite"
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        # The file is opened on first use, not on construction: with templates, most predictions
        # never read it.
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(self.path, timeout=30) as db:
                db.execute("CREATE TABLE IF NOT EXISTS unit_features "
                           "(key TEXT PRIMARY KEY, features TEXT)")
                db.execute("CREATE TABLE IF NOT EXISTS template_checks "
                           "(versions TEXT PRIMARY KEY, trusted INTEGER)")
            self._ready = True
        return sqlite3.connect(self.path, timeout=30)

    def get_many(self, keys: Sequence[str]) -> dict[str, ProgramFeatures]:
        """The stored features of ``keys``; a key with no entry, or an entry that does not read
        back as features, is left out (so it is converted again and overwritten)."""
        with self._connect() as db:
            rows = db.execute(f"SELECT key, features FROM unit_features WHERE key IN "
                              f"({','.join('?' * len(keys))})", list(keys)).fetchall()
        found = {}
        for key, text in rows:
            features = _parse(text)
            if features is not None:
                found[key] = features
        return found

    def put_many(self, entries: dict[str, ProgramFeatures]) -> None:
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO unit_features VALUES (?, ?)",
                           [(k, json.dumps(f.to_dict())) for k, f in entries.items()])

    def template_check(self, versions: str) -> bool | None:
        """The stored outcome of comparing templates with conversions under ``versions``."""
        with self._connect() as db:
            row = db.execute("SELECT trusted FROM template_checks WHERE versions = ?",
                             (versions,)).fetchone()
        return None if row is None else bool(row[0])

    def put_template_check(self, versions: str, trusted: bool) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO template_checks VALUES (?, ?)",
                       (versions, int(trusted)))


def _parse(text: str) -> ProgramFeatures | None:
    try:
        data = json.loads(text)
        values = {name: float(data["values"][name]) for name in FEATURES}
        op_types = {str(k): int(v) for k, v in data["op_types"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return ProgramFeatures(values, op_types)


def convert_units(units: Sequence[Unit]) -> list[ProgramFeatures]:
    """Convert ``units`` in one program and count each one's features."""
    import torch
    from torch import nn

    from mobilevit.model import build_unit
    from nas.export import quiet_converters
    from nas.latency.features import mil_program

    class Units(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.units = nn.ModuleList(build_unit(u) for u in units)

        def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(m(x) for m, x in zip(self.units, xs, strict=True))

    shapes = [(1, u.in_channels, *u.size) for u in units]
    with quiet_converters():
        import coremltools as ct

        inputs = [ct.ImageType(name=f"unit{i}", shape=shape, scale=1 / 255.0,
                               color_layout=ct.colorlayout.RGB) if u.kind == "stem"
                  else ct.TensorType(name=f"unit{i}", shape=shape)
                  for i, (u, shape) in enumerate(zip(units, shapes, strict=True))]
        with torch.no_grad():
            exported = torch.export.export(
                Units().eval(), tuple(torch.zeros(s) for s in shapes)).run_decompositions({})
        program = mil_program(exported, inputs, None)
    (function,) = program.functions.values()
    return [ops_features(_reachable(function.inputs[f"unit{i}"])) for i in range(len(units))]


def _reachable(var: Any) -> list[Any]:
    """The ops that depend on ``var``, in no particular order."""
    seen: dict[int, Any] = {}
    stack = [var]
    while stack:
        for op in stack.pop().child_ops:
            if id(op) not in seen:
                seen[id(op)] = op
                stack.extend(op.outputs)
    return list(seen.values())


def templates_trusted(cache: UnitFeatureCache) -> bool:
    """Whether :mod:`nas.latency.templates` describes what the installed coremltools and torch
    convert: yes for the :data:`~nas.latency.templates.VERIFIED` versions; for others, the
    templates of :func:`~nas.latency.templates.probe_units` (every unit design) are compared
    with their conversion once, and the outcome is kept in ``cache``."""
    versions = unit_versions()
    if (versions["coremltools"], versions["torch"]) in VERIFIED:
        return True
    label = json.dumps(versions, sort_keys=True)
    trusted = cache.template_check(label)
    if trusted is None:
        probes = probe_units()
        trusted = all(template_features(u) == converted
                      for u, converted in zip(probes, convert_units(probes), strict=True))
        cache.put_template_check(label, trusted)
    return trusted


def unit_features(spec: ArchSpec, resolution: int, cache: UnitFeatureCache | None = None, *,
                  templates: bool = True) -> ProgramFeatures:
    """The features of ``spec``'s program at ``resolution``, summed over its units.

    With ``templates`` (and :func:`templates_trusted`), a unit that has a template is counted on
    its written-down program; every other unit is read from ``cache`` (default: the latency
    cache), or converted and stored there.
    """
    cache = cache or UnitFeatureCache()
    units = spec.units(resolution)
    keys = [unit_key(u) for u in units]
    known: dict[str, ProgramFeatures] = {}
    if templates and templates_trusted(cache):
        for key, unit in zip(keys, units, strict=True):
            if key not in known and has_template(unit):
                known[key] = template_features(unit)
    rest = sorted(set(keys) - set(known))
    if rest:
        known.update(cache.get_many(rest))
    missing = {k: u for k, u in zip(keys, units, strict=True) if k not in known}
    if missing:
        new = dict(zip(missing, convert_units(list(missing.values())), strict=True))
        cache.put_many(new)
        known.update(new)
    return combine(known[k] for k in keys)
