"""Trained supernets stored by what they were trained on, so studies over the same space share one.

A supernet is stored in ``<store>/<key>/`` where the key is a content hash of everything that
changes its weights: the (narrowed) space, the budget its sandwich rule samples under, the
training section (dataset, recipe, epochs, resolution), the sandwich settings and the seed. The
folder holds ``checkpoint.pt`` while it trains (a killed training resumes from it, bit-exact),
then ``supernet.pt`` (the weights) and ``meta.json`` (what it was trained on and how that went),
written last, so a folder with ``meta.json`` is complete. A lock file makes a second study that
needs the same supernet wait for the first to finish training it instead of training it again.

The default store is ``supernets/`` in the cache folder (``$NAS_CACHE_DIR``, else
``~/.cache/mobilevit-nas``); a study sets another with ``evaluator.store``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.latency.base import default_cache_dir
from search_spaces import MobileViTSpace

# Bump when training or the weight layout changes what a stored supernet would hold.
REVISION = 1
WEIGHTS = "supernet.pt"
META = "meta.json"
CHECKPOINT = "checkpoint.pt"


def default_store() -> Path:
    """The folder supernets are stored in when a study does not name one."""
    return default_cache_dir() / "supernets"


def space_description(space: MobileViTSpace) -> dict[str, Any]:
    """The space as data: each parameter's values, the classes and the resolution."""
    return {"params": {name: [v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
                              for v in p.values] for name, p in space.params.items()},
            "num_classes": space.num_classes, "resolution": space.resolution}


def supernet_key(space: MobileViTSpace, budget: dict[str, Any], train: dict[str, Any],
                 sandwich: dict[str, Any], seed: int) -> str:
    """The content hash that names a supernet in the store (24 hex digits)."""
    text = json.dumps({"space": space_description(space), "budget": budget, "train": train,
                       "sandwich": sandwich, "seed": seed, "revision": REVISION},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class StoredSupernet:
    """One entry of the store: its folder and, when it is complete, what it was trained on."""

    key: str
    folder: Path
    meta: dict[str, Any] | None

    @property
    def complete(self) -> bool:
        return self.meta is not None

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS

    @property
    def checkpoint(self) -> Path:
        return self.folder / CHECKPOINT

    def summary(self) -> str:
        """One line for ``nas supernet info``."""
        if self.meta is None:
            state = "training or interrupted" if self.checkpoint.exists() else "empty"
            return f"{self.key}  {state}"
        m = self.meta
        train = m.get("train", {})
        history = m.get("history") or [{}]
        top1 = history[-1].get("top1", {})
        scores = ", ".join(f"{k} {v:.1f} %" for k, v in top1.items())
        part = f" ({m['part']}, from {m['from']})" if m.get("part") else ""
        return (f"{self.key}  {m.get('study', '?')}{part}: {m.get('epochs')} epochs at "
                f"{train.get('resolution')} px, {m.get('tensor_values', 0) / 1e6:.1f} M values, "
                f"{m.get('wall_time_s', 0) / 60:.1f} min{'; ' + scores if scores else ''}; "
                f"trained {m.get('finished', '?')}")


class SupernetStore:
    """The folders of stored supernets under ``root``."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root else default_store()

    def entry(self, key: str) -> StoredSupernet:
        folder = self.root / key
        meta = None
        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, ValueError):
            pass
        if meta is not None and not (folder / WEIGHTS).exists():
            meta = None
        return StoredSupernet(key, folder, meta)

    def entries(self) -> list[StoredSupernet]:
        """Every stored supernet, complete or not, newest first."""
        if not self.root.is_dir():
            return []
        folders = [p for p in self.root.iterdir() if p.is_dir()]
        folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        return [self.entry(p.name) for p in folders]

    @contextmanager
    def training(self, key: str) -> Iterator[StoredSupernet]:
        """Hold the entry ``key`` for training: waits while another process trains it (an flock
        that the kernel releases if that process dies)."""
        folder = self.root / key
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self.entry(key)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def finish(entry: StoredSupernet, state: dict[str, Any], meta: dict[str, Any]) -> None:
        """Write the trained weights, then ``meta.json`` (which marks the entry complete)."""
        import torch

        tmp = entry.folder / (WEIGHTS + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, entry.weights)
        meta = {**meta, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = entry.folder / (META + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, default=str))
        os.replace(tmp, entry.folder / META)
        entry.checkpoint.unlink(missing_ok=True)

