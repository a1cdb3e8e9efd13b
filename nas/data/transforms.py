"""Image transforms on Pillow images, drawn from an explicit random generator.

Training: RandomResizedCrop (scale 0.08-1, aspect 3/4-4/3, bilinear, the papers' "basic"
augmentation) and a horizontal flip. Evaluation: resize the short side, then centre-crop (256 from
288 in the papers). Outputs are uint8 tensors [3, H, W]; scaling to [0, 1] happens on the device.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from PIL import Image

Box = tuple[int, int, int, int]  # left, top, right, bottom


def random_resized_crop_box(width: int, height: int, rng: random.Random,
                            scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Box:
    """A crop covering ``scale`` of the area with aspect ``ratio``, placed uniformly; after ten
    misses, the largest central crop with an aspect inside ``ratio``."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB Pillow image as a uint8 tensor [3, H, W]."""
    array = np.asarray(image, dtype=np.uint8)  # [H, W, 3]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)  # [3, H, W]


def train_transform(image: Image.Image, height: int, width: int, rng: random.Random, *,
                    scale: tuple[float, float] = (0.08, 1.0)) -> torch.Tensor:
    """RandomResizedCrop to ``height`` x ``width`` and a random horizontal flip."""
    box = random_resized_crop_box(image.width, image.height, rng, scale)
    out = image.resize((width, height), Image.BILINEAR, box=box)
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return to_tensor(out)


def eval_transform(image: Image.Image, crop: int, resize: int) -> torch.Tensor:
    """Resize the short side to ``resize`` and centre-crop ``crop`` x ``crop``."""
    scale = resize / min(image.width, image.height)
    w, h = max(crop, round(image.width * scale)), max(crop, round(image.height * scale))
    left, top = (w - crop) // 2, (h - crop) // 2
    # One resampling step: the crop box is given in source coordinates.
    box = (left / scale, top / scale, (left + crop) / scale, (top + crop) / scale)
    return to_tensor(image.resize((crop, crop), Image.BILINEAR, box=box))
