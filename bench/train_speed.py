"""Training speed, with the data loader's own throughput alongside.

    python bench/train_speed.py [--out bench/results/train_speed.json]

Writes 256 ImageNet-like JPEGs (500x375, the ImageNet mean size) to a temporary ImageFolder, then
measures (1) the loader alone: decode, RandomResizedCrop to 256 and flip, collate, with 0, 1 and 2
worker processes; (2) training images/s (forward, backward, AdamW, EMA) of MobileViT-XXS and -S at
256x256, batch 32, on the CPU (and on CUDA with AMP and channels-last when available), fed from
memory so the two numbers are independent. The loader must deliver more images/s than training
consumes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _results import write_results
from PIL import Image

import mobilevit
from nas.data import FolderSource, ImageDataset, SingleScaleSampler, collate
from nas.evaluators import procedural
from nas.evaluators.recipe import EMA, param_groups
from nas.runtime import tune_cpu_allocator
from nas.study.config import RecipeConfig


def write_images(root: Path, count: int = 256) -> None:
    images, labels = procedural.generate(0, 0, count, 375)
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / f"class{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(img.permute(1, 2, 0).numpy()).resize((500, 375))
        picture.save(folder / f"{i}.jpg", quality=90)


def loader_speed(root: Path, workers: int, epochs: int = 2) -> float:
    source = FolderSource(root)
    sampler = SingleScaleSampler(len(source), 256, 32, seed=0)
    loader = torch.utils.data.DataLoader(ImageDataset(source), batch_sampler=sampler,
                                         num_workers=workers, collate_fn=collate,
                                         persistent_workers=workers > 0)
    for _ in loader:  # warm-up: worker start, file cache
        pass
    start, n = time.perf_counter(), 0
    for epoch in range(epochs):
        sampler.set_epoch(epoch + 1)
        for images, _ in loader:
            n += len(images)
    return n / (time.perf_counter() - start)


def train_speed(name: str, device: str, steps: int) -> float:
    recipe = RecipeConfig()
    model = mobilevit.create_model(name).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(param_groups(model, 0.01, False), lr=1e-3)
    ema = EMA(model, recipe.ema_momentum)
    x = torch.randint(0, 255, (32, 3, 256, 256), dtype=torch.uint8)
    y = torch.randint(0, 1000, (32,))
    amp = device == "cuda"
    sync = torch.cuda.synchronize if amp else (lambda: None)

    def step() -> None:
        batch = x.to(device).float().div_(255).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(batch), y.to(device),
                                                     label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)

    step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return 32 * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/train_speed.json")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    tune_cpu_allocator()
    results: dict[str, object] = {"threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        write_images(Path(tmp))
        results["loader_img_s"] = {w: loader_speed(Path(tmp), w) for w in (0, 1, 2)}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results["train_img_s"] = {d: {n: train_speed(n, d, args.steps if d == "cpu" else 20)
                                  for n in ("mobilevit_xxs", "mobilevit_s")} for d in devices}
    print(f"{'loader (decode 500x375 JPEG, RandomResizedCrop 256, flip)':<62}{'images/s':>10}")
    for w, v in results["loader_img_s"].items():  # type: ignore[union-attr]
        print(f"  {w} worker process{'es' if w != 1 else ''}{'':<43}{v:>10.0f}")
    for d, models in results["train_img_s"].items():  # type: ignore[union-attr]
        for n, v in models.items():
            print(f"{f'training {n}, 256x256, batch 32, {d}':<62}{v:>10.1f}")
    write_results(args.out, results)


if __name__ == "__main__":
    main()
