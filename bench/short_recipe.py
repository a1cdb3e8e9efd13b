"""Which parts of the v1 training recipe a few-epoch run can bear.

    python bench/short_recipe.py [--model mobilevit_xxs] [--epochs 4] [--out ...]

Trains one network on the offline procedural task (1,600 images at 64x64, 10 classes) with the
short recipe of the `proxy_train` evaluator, then with each of the v1 recipe's regularisers added
alone: the multi-scale sampler (v0.1 rule), random-resized crops at scale 0.35, an EMA of the
weights (momentum 0.02, evaluated on the EMA weights), and the paper's lr 0.002. Prints the
top-1 after each epoch. It decides what studies/ablations/_fidelity.yaml shares (docs/ablations.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _results import write_results

import mobilevit
from nas.runtime import tune_cpu_allocator
from nas.study.config import MultiScaleConfig, ProxyTrainConfig, StudyConfig

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilevit_xxs")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "short_recipe.json"))
    args = parser.parse_args()
    tune_cpu_allocator()
    base = ProxyTrainConfig(kind="proxy_train", epochs=args.epochs).as_train()
    variants = {
        "short recipe (proxy_train)": {},
        "+ multi-scale sampler": {"multiscale": MultiScaleConfig(rule="v0.1")},
        "+ random-resized crops 0.35-1": {"crop_scale": (0.35, 1.0)},
        "+ EMA 0.02": {"recipe": base.recipe.model_copy(update={"ema_momentum": 0.02})},
        "+ lr 0.002 (the paper's)": {"recipe": base.recipe.model_copy(
            update={"lr": 2e-3, "min_lr": 2e-4})},
    }
    spec = mobilevit.get_fixed_point(args.model).spec.replace(num_classes=10)
    rows = []
    for name, change in variants.items():
        config = StudyConfig(name="short_recipe", trials=1,
                             evaluator=base.model_copy(update=change))
        evaluator = config.evaluator.build()
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = evaluator.evaluate(spec, seed=0, workdir=Path(tmp), threads=args.threads,
                                        device="cpu", on_epoch=None)
        rows.append({"variant": name, "top1": result.accuracy, "curve": list(result.curve),
                     "seconds": round(time.perf_counter() - start, 1)})
        print(f"{name:<32} top-1 {result.accuracy:5.1f} %  per epoch "
              f"{', '.join(f'{a:.1f}' for a in result.curve)}  ({rows[-1]['seconds']} s)",
              flush=True)
    write_results(args.out, {"model": args.model, "epochs": args.epochs, "classes": 10,
                             "chance_top1": 10.0, "rows": rows})


if __name__ == "__main__":
    main()
