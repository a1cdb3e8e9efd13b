"""Image sources (ImageFolder, CIFAR archives, procedural) and the dataset that transforms them.

A source knows its images and labels; :class:`ImageDataset` turns a sampler key
``(index, height, width, epoch)`` into a transformed uint8 tensor and a label. Augmentation is
drawn from (seed, epoch, index), so it does not depend on which worker process loads a sample.
Problems that can be seen before training (a missing path, an empty class folder, an unknown
class) are one-line errors; an image that cannot be decoded is replaced by the next one, counted,
and reported with a warning.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import pickle
import random
import tarfile
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nas.data.transforms import eval_transform, train_transform
from nas.errors import NasError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm")

CIFAR = {
    "cifar10": {"url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "md5": "c58f30108f718f92721af3b95e74349a", "folder": "cifar-10-batches-py",
                "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"],
                "labels": b"labels", "meta": ("batches.meta", b"label_names")},
    "cifar100": {"url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "md5": "eb9058c3a382ffc7106e4002c42a8d85", "folder": "cifar-100-python",
                 "train": ["train"], "test": ["test"], "labels": b"fine_labels",
                 "meta": ("meta", b"fine_label_names")},
}


class DataError(NasError):
    """A dataset that cannot be used, in one line naming the path or the value."""


class Source(Protocol):
    """Images and labels by index."""

    classes: list[str]

    def __len__(self) -> int: ...

    def item(self, index: int, draft: int | None = None) -> tuple[Image.Image, int]:
        """The RGB image and its label (OSError or UnidentifiedImageError when undecodable).
        ``draft``: the image will be resized to at least this size, so a JPEG may be decoded
        at a reduced scale."""
        ...

    def describe(self, index: int) -> str:
        """Where sample ``index`` comes from, for messages."""
        ...


def _pick(items: list[Any], count: int | None, seed: int) -> list[Any]:
    if count is None or count >= len(items):
        return items
    return sorted(random.Random(seed).sample(items, count))


def _select_classes(found: list[str], classes: int | list[str] | None, where: str) -> list[str]:
    if classes is None:
        return found
    if isinstance(classes, int):
        if classes > len(found):
            raise DataError(f"{where}: classes={classes}, but only {len(found)} are there")
        return found[:classes]
    missing = [c for c in classes if c not in found]
    if missing:
        raise DataError(f"{where}: class {missing[0]!r} is not there (found {len(found)}: "
                        f"{', '.join(found[:5])}{', ...' if len(found) > 5 else ''})")
    return list(classes)


class FolderSource:
    """The ImageNet layout: ``root/<class>/<image>``; classes in sorted order.

    Args:
        root: the split's folder (e.g. ``imagenet/train``).
        classes: keep the first N classes, or these names.
        per_class: keep this many images per class (a seeded random choice).
        seed: seed of that choice.
    """

    def __init__(self, root: str | Path, *, classes: int | list[str] | None = None,
                 per_class: int | None = None, seed: int = 0) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"dataset path {root}: no such folder")
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not found:
            raise DataError(f"dataset path {root}: no class folders in it (expected "
                            f"{root}/<class>/<image>)")
        self.classes = _select_classes(found, classes, f"dataset path {root}")
        self.files: list[Path] = []
        self.labels: list[int] = []
        for label, name in enumerate(self.classes):
            files = sorted(p for p in (root / name).iterdir()
                           if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise DataError(f"class folder {root / name}: no images "
                                f"({', '.join(IMAGE_EXTENSIONS)})")
            files = _pick(files, per_class, seed + label)
            self.files += files
            self.labels += [label] * len(files)

    def __len__(self) -> int:
        return len(self.files)

    def item(self, index: int, draft: int | None = None) -> tuple[Image.Image, int]:
        with Image.open(self.files[index]) as img:
            if draft is not None and img.format == "JPEG":
                img.draft("RGB", (draft, draft))  # decode at a reduced scale when it suffices
            return img.convert("RGB"), self.labels[index]

    def describe(self, index: int) -> str:
        return str(self.files[index])


class CifarSource:
    """CIFAR-10/100 from the official python-pickle archive (extracted or not, see
    :func:`download_cifar`)."""

    def __init__(self, root: str | Path, name: str = "cifar10", split: str = "train", *,
                 classes: int | list[str] | None = None, per_class: int | None = None,
                 seed: int = 0) -> None:
        if name not in CIFAR:
            raise DataError(f"dataset {name!r}: expected one of {', '.join(CIFAR)}")
        info = CIFAR[name]
        folder = Path(root)
        if (folder / info["folder"]).is_dir():
            folder = folder / info["folder"]
        if split not in ("train", "test"):
            raise DataError(f"{name} split {split!r}: expected train or test")
        batches = [folder / f for f in info[split]]
        for path in batches:
            if not path.exists():
                raise DataError(f"{name}: {path} is missing; download the archive with "
                                "`download: true` or point `path` at the extracted folder")
        meta_file, meta_key = info["meta"]
        with open(folder / meta_file, "rb") as f:
            names = [n.decode() for n in pickle.load(f, encoding="bytes")[meta_key]]
        data, labels = [], []
        for path in batches:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += list(batch[info["labels"]])
        images = np.concatenate(data).transpose(0, 2, 3, 1)  # [N, 32, 32, 3]
        keep_names = _select_classes(names, classes, f"{name}")
        remap = {names.index(n): i for i, n in enumerate(keep_names)}
        by_class: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            if label in remap:
                by_class.setdefault(remap[label], []).append(i)
        chosen = sorted(i for c, idx in by_class.items() for i in _pick(idx, per_class, seed + c))
        self.classes = keep_names
        self.images = images[chosen]
        self.labels = [remap[labels[i]] for i in chosen]

    def __len__(self) -> int:
        return len(self.labels)

    def item(self, index: int, draft: int | None = None) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), self.labels[index]

    def describe(self, index: int) -> str:
        return f"image {index}"


def download_cifar(name: str, root: str | Path, *, url: str | None = None) -> Path:
    """Download and check (MD5) the official archive of ``name`` into ``root``, extract it, and
    return the extracted folder. Does nothing when the folder is already there."""
    info = CIFAR[name]
    root = Path(root)
    target = root / info["folder"]
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    archive = root / Path(info["url"]).name
    try:
        urllib.request.urlretrieve(url or info["url"], archive)
    except OSError as exc:
        raise DataError(f"{name}: cannot download {url or info['url']} ({exc})") from None
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    if digest != info["md5"]:
        archive.unlink()
        raise DataError(f"{name}: the download's MD5 is {digest}, expected {info['md5']}; "
                        "deleted it")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return target


class ProceduralSource:
    """The procedural dataset (nas.evaluators.procedural), rendered once per process, on first
    use (a study's checks only need its classes and size)."""

    def __init__(self, count: int, resolution: int, split: str = "train", *, seed: int = 0,
                 classes: int | list[str] | None = None) -> None:
        from nas.evaluators import procedural

        names = [f"{shape}-{texture}" for shape in procedural.SHAPES
                 for texture in procedural.TEXTURES]
        if classes is not None and classes != len(names) and classes != names:
            raise DataError(f"procedural dataset: classes={classes}; it has these {len(names)}")
        self.classes = names
        self.split, self.start = split, 0 if split == "train" else 10_000_000
        self._args = (seed, count, resolution, "train" if split == "train" else "val")

    @functools.cached_property
    def _rendered(self) -> tuple[torch.Tensor, list[int]]:
        from nas.evaluators import procedural

        images, labels = procedural.dataset(*self._args)
        return images, labels.tolist()

    def load(self) -> None:
        """Render the images now (before data-loader workers fork, so they share them)."""
        self._rendered  # noqa: B018

    @property
    def images(self) -> torch.Tensor:
        return self._rendered[0]

    @property
    def labels(self) -> list[int]:
        return self._rendered[1]

    def __len__(self) -> int:
        return self._args[1]

    def item(self, index: int, draft: int | None = None) -> tuple[Image.Image, int]:
        image = self.images[index].permute(1, 2, 0).numpy()  # [H, W, 3] uint8
        return Image.fromarray(image), self.labels[index]

    def describe(self, index: int) -> str:
        return f"procedural image {self.start + index}"


class ImageDataset(torch.utils.data.Dataset):
    """Samples of a source, cropped per sampler key ``(index, height, width, epoch)``.

    ``epoch < 0`` asks for the evaluation transform (short side to ``eval_resize``, centre crop of
    ``height``); otherwise RandomResizedCrop + flip from a generator seeded by
    (seed, epoch, index).
    """

    def __init__(self, source: Source, *, seed: int = 0, eval_resize_ratio: float = 288 / 256,
                 scale: tuple[float, float] = (0.08, 1.0)) -> None:
        self.source, self.seed = source, seed
        self.eval_resize_ratio, self.scale = eval_resize_ratio, scale
        if hasattr(source, "load"):  # a lazily rendered source: render it in this process
            source.load()
        # Shared with forked workers, so the trainer can report how many images were bad.
        self.unreadable = multiprocessing.Value("i", 0)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int, int, int]) -> tuple[torch.Tensor, int]:
        index, height, width, epoch = key
        for attempt in range(len(self.source)):
            current = (index + attempt) % len(self.source)
            try:
                return self._load(current, height, width, epoch)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                with self.unreadable.get_lock():
                    self.unreadable.value += 1
                warnings.warn(f"skipping unreadable image {self.source.describe(current)} "
                              f"({exc})", stacklevel=2)
        raise DataError("no readable image in the dataset")

    def _load(self, index: int, height: int, width: int, epoch: int) -> tuple[torch.Tensor, int]:
        if epoch < 0:
            resize = round(height * self.eval_resize_ratio)
            image, label = self.source.item(index, draft=resize)
            return eval_transform(image, height, resize), label
        # Integer tuples hash the same in every process (only str/bytes hashing is salted).
        rng = random.Random(hash((self.seed, epoch, index)))
        image, label = self.source.item(index)
        return train_transform(image, height, width, rng, scale=self.scale), label


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a batch of (uint8 image, label) pairs: [B, 3, H, W] uint8 and [B] int64."""
    images, labels = zip(*batch, strict=True)
    return torch.stack(images), torch.tensor(labels)
