"""Batch samplers: single-scale, and MobileViT's multi-scale variable-batch sampler.

Every batch is a list of ``(index, height, width, epoch)``: the dataset crops each image to the
batch's size, so one batch has one resolution and the batch size grows as the resolution shrinks;
the epoch lets the dataset draw its augmentation from (seed, epoch, index), so results do not
depend on which worker process loads a sample or on a resumed run.

Batch-size rules (reference section 5.4; ``b0`` is the batch at the base size, ``n`` the GPUs):

* ``"paper"`` (v1 paper, section 3.2): ``b0`` is the batch at the *largest* size and
  ``b_t = floor(H_max * W_max * b0 / (H_t * W_t))``.
* ``"v0.1"`` (cvnets v0.1, used for v1 and v3-XXS/XS/S): ``b0`` is the batch at the base size,
  ``b_t = max(b0, floor(base^2 * b0 / (H_t * W_t)))`` (never reduced), then rounded to a multiple
  of ``n`` with make_divisible.
* ``"v0.2"`` (cvnets v0.2): as v0.1 with lower bound 1 instead of ``b0``.

The reference's text writes ``int(round(...))`` for the code; its worked values (327 and 227 at
b0 = 128 on one GPU, 101 and 81 for v0.2 without rounding) are those of truncation, which is what
is implemented (and tested against those values).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

from mobilevit import make_divisible

RULES = ("paper", "v0.1", "v0.2")
Batch = list[tuple[int, int, int, int]]


def cvnets_sizes(low: int = 160, high: int = 320, base: int = 256, count: int = 5,
                 divisor: int = 32) -> tuple[int, ...]:
    """The multi-scale sizes of cvnets v0.1: ``linspace(low, high, count)`` plus ``base``, each
    rounded with make_divisible(., divisor): {160, 192, 256, 288, 320} by default."""
    steps = [low + (high - low) * i / (count - 1) for i in range(count)] + [base]
    return tuple(sorted({make_divisible(s, divisor) for s in steps}))


def batch_sizes(sizes: Sequence[int], base_size: int, base_batch: int, rule: str,
                n_gpus: int = 1) -> dict[int, int]:
    """Batch size per square size under ``rule`` (per GPU)."""
    if rule not in RULES:
        raise ValueError(f"sampler rule {rule!r}: expected one of {', '.join(RULES)}")
    out = {}
    for size in sizes:
        if rule == "paper":
            largest = max(sizes)
            out[size] = max(1, math.floor(largest * largest * base_batch / (size * size)))
            continue
        batch = math.floor(base_size * base_size * base_batch / (size * size))
        batch = max(base_batch if rule == "v0.1" else 1, batch)
        out[size] = make_divisible(batch, n_gpus) if n_gpus > 1 else batch
    return out


class SingleScaleSampler:
    """Shuffled batches of ``batch_size`` at one ``size`` (a new order every epoch)."""

    def __init__(self, num_samples: int, size: int, batch_size: int, *, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False) -> None:
        self.num_samples, self.size, self.batch_size = num_samples, size, batch_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        order = list(range(self.num_samples))
        if self.shuffle:
            random.Random(self.seed * 100_003 + self.epoch).shuffle(order)
        for i in range(0, self.num_samples, self.batch_size):
            chunk = order[i:i + self.batch_size]
            if self.drop_last and len(chunk) < self.batch_size:
                break
            yield [(j, self.size, self.size, self.epoch) for j in chunk]

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


class MultiScaleSampler:
    """MobileViT's variable-batch sampler: each batch draws one size (and its batch size).

    The index order is shuffled per epoch from ``seed`` and ``epoch``; each batch picks a size
    uniformly from ``sizes``; the last batch wraps around to the start of the order, as in
    cvnets, so every batch is full.
    """

    def __init__(self, num_samples: int, *, sizes: Sequence[int] | None = None,
                 base_size: int = 256, base_batch: int = 128, rule: str = "v0.1",
                 n_gpus: int = 1, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.sizes = tuple(sizes) if sizes else cvnets_sizes(base=base_size)
        self.batches = batch_sizes(self.sizes, base_size, base_batch, rule, n_gpus)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(self.num_samples))
        rng.shuffle(order)
        start = 0
        while start < self.num_samples:
            size = rng.choice(self.sizes)
            count = self.batches[size]
            picked = [order[(start + k) % self.num_samples] for k in range(count)]
            start += count
            yield [(j, size, size, self.epoch) for j in picked]

    def __len__(self) -> int:
        # The expected number of batches; the exact count depends on the sizes drawn.
        mean = sum(self.batches.values()) / len(self.batches)
        return max(1, math.ceil(self.num_samples / mean))
