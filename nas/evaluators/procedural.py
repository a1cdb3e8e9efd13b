"""A procedurally generated image classification dataset that needs no files.

Each image shows one textured target shape among solid-coloured distractor shapes on a noisy,
colour-graded background. The class is the target's (shape, texture) pair: 5 shapes (disc, square,
triangle, ring, cross) x 2 textures (stripes, checks) = 10 classes. Position, size, rotation,
colours, texture frequency and phase, distractors and noise are random, so a classifier has to
find the one textured object and read both its outline and its pattern; small networks do
measurably worse than large ones.

Images are a pure function of (seed, index), generated in batches with torch, so every worker on
every machine produces the same data.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

SHAPES = ("disc", "square", "triangle", "ring", "cross")
TEXTURES = ("stripes", "checks")
NUM_CLASSES = len(SHAPES) * len(TEXTURES)


def _shape_mask(kind: Tensor, u: Tensor, v: Tensor, size: Tensor) -> Tensor:
    """Soft masks [B, H, W] of shapes of ``kind`` [B] in local coordinates u, v [B, H, W]."""
    s = size[:, None, None]
    r = torch.sqrt(u * u + v * v)
    sdf = torch.stack([
        r - s,  # disc
        torch.maximum(u.abs(), v.abs()) - 0.85 * s,  # square
        torch.maximum(v * 0.5 + u.abs() * 0.866, -v) - 0.55 * s,  # triangle
        (r - 0.75 * s).abs() - 0.25 * s,  # ring
        torch.minimum(torch.maximum(u.abs() - s, v.abs() - 0.3 * s),
                      torch.maximum(u.abs() - 0.3 * s, v.abs() - s)),  # cross
    ], dim=1)  # [B, 5, H, W]
    chosen = sdf.gather(1, kind[:, None, None, None].expand(-1, 1, *u.shape[1:]))[:, 0]
    return torch.sigmoid(-chosen * 40.0)


def generate(seed: int, start: int, count: int, resolution: int, *, distractors: int = 2,
             noise: float = 0.1) -> tuple[Tensor, Tensor]:
    """Images [count, 3, R, R] (uint8) and labels [count] for indices start .. start + count - 1,
    with up to ``distractors`` distractor shapes and background noise of std ``noise``."""
    images, labels = [], []
    for index in range(start, start + count):
        g = torch.Generator().manual_seed(seed * 1_000_003 + index)
        img, label = _render(g, resolution, distractors, noise)
        images.append(img)
        labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def _render(g: torch.Generator, res: int, distractors: int, noise: float) -> tuple[Tensor, int]:
    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=g)

    ys, xs = torch.meshgrid(torch.linspace(-1, 1, res), torch.linspace(-1, 1, res), indexing="ij")
    # Background: a colour gradient plus noise.
    c0, c1 = rand(3, 1, 1), rand(3, 1, 1)
    angle = rand(1) * 2 * math.pi
    t = (xs * torch.cos(angle) + ys * torch.sin(angle) + 1) / 2
    img = c0 * (1 - t) + c1 * t + noise * torch.randn(3, res, res, generator=g)
    n_distractors = int(torch.randint(0, distractors + 1, (1,), generator=g))
    n = n_distractors + 1  # the last object is the target
    kind = torch.randint(0, len(SHAPES), (n,), generator=g)
    size = torch.cat([0.12 + 0.18 * rand(n_distractors), 0.35 + 0.25 * rand(1)])
    reach = 1 - size  # keep each object inside the frame
    cx, cy = (rand(n) * 2 - 1) * reach, (rand(n) * 2 - 1) * reach
    rot = rand(n) * 2 * math.pi
    dx, dy = xs[None] - cx[:, None, None], ys[None] - cy[:, None, None]
    cos, sin = torch.cos(rot)[:, None, None], torch.sin(rot)[:, None, None]
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos  # object-local coordinates [n, H, W]
    masks = _shape_mask(kind, u, v, size)  # [n, H, W]
    for i in range(n_distractors):
        img = img * (1 - masks[i]) + rand(3, 1, 1) * masks[i]
    texture = int(torch.randint(0, len(TEXTURES), (1,), generator=g))
    # At least three periods across the target, in two clearly different colours.
    period = float(size[-1]) * (0.28 + 0.12 * float(rand(1)))
    tu = u[-1] * 2 * math.pi / period + float(rand(1)) * 2 * math.pi
    tv = v[-1] * 2 * math.pi / period
    pattern = (torch.sin(tu) > 0).float() if texture == 0 else \
        ((torch.sin(tu) * torch.sin(tv)) > 0).float()
    fg = rand(3, 1, 1)
    bg = (fg + 0.5) % 1.0
    target = fg * pattern + bg * (1 - pattern)
    img = img * (1 - masks[-1]) + target * masks[-1]
    img = (img + 0.03 * torch.randn(3, res, res, generator=g)).clamp(0, 1)
    label = int(kind[-1]) * len(TEXTURES) + texture
    return (img * 255).round().to(torch.uint8), label


@lru_cache(maxsize=4)
def dataset(seed: int, count: int, resolution: int, split: str, distractors: int = 2,
            noise: float = 0.1) -> tuple[Tensor, Tensor]:
    """A cached split ("train" or "val"; disjoint index ranges) of the procedural dataset."""
    start = 0 if split == "train" else 10_000_000
    return generate(seed, start, count, resolution, distractors=distractors, noise=noise)
