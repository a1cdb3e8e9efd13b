"""Does a cheap rung rank the published models the way ImageNet does?

    python bench/proxy_fidelity.py [--data ../shared/data/cifar10-jpg.tar.gz] [--rungs ...]
                                   [--out bench/results/proxy_fidelity.json]

Scores every fixed point of the model table at each rung of the fidelity ladder on CIFAR-10 and
reports Kendall's tau and Spearman's rho between the rung's scores and the published ImageNet
top-1, next to the same correlations for parameter count and MACs alone, and the wall time of
each rung. Rungs:

* zero-cost: synflow, naswot, grad_norm (one batch of 64 CIFAR-10 images at 64x64), and the
  params / macs baselines;
* proxy: a short training on a CIFAR-10 subset (``--proxy-images`` per class, 64x64, ``--epochs``
  epochs, the papers' recipe with a step-indexed cosine and crops of 35-100 % of the image), top-1
  on 100 test images per class. On a GPU, raise the subset and epochs (the target is a rung that
  fits in 10 GPU-minutes per model).

Skipped when the CIFAR-10 archive is absent. Results are written after every model, and a re-run
continues from them (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _results import resume_cifar_bench

import mobilevit
from nas.evaluators.train import TrainEvaluator
from nas.evaluators.zero_cost import ZeroCostEvaluator
from nas.study.config import DatasetConfig, RecipeConfig, TrainConfig, ZeroCostConfig

ZERO_COST = ("synflow", "naswot", "grad_norm", "params", "macs")


def correlations(scores: dict[str, float], published: dict[str, float]) -> dict[str, float]:
    names = [n for n in scores if n in published]
    frame = pd.DataFrame({"score": [scores[n] for n in names],
                          "top1": [published[n] for n in names]})
    return {"kendall_tau": float(frame.corr(method="kendall").iloc[0, 1]),
            "spearman_rho": float(frame.corr(method="spearman").iloc[0, 1]), "models": len(names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10-jpg.tar.gz")
    parser.add_argument("--rungs", default="zero_cost,proxy")
    parser.add_argument("--proxy-images", type=int, default=300, help="training images / class")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64, help="the proxy rung's batch")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="bench/results/proxy_fidelity.json")
    parser.add_argument("--models", default=None,
                        help="comma-separated fixed points (default: all of the model table)")
    parser.add_argument("--label", default="proxy_train",
                        help="the proxy rung's name in the results (to keep several settings)")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--merge", nargs="+", default=None,
                        help="results files of runs on other machines or model subsets (--models):"
                             " add their rungs to --out's and report, training nothing")
    args = parser.parse_args()
    archive, out = Path(args.data), Path(args.out)
    if args.merge:
        results = json.loads(out.read_text()) if out.exists() else {}
        for file in args.merge:
            part = json.loads(Path(file).read_text())
            for rung, scores in part["scores"].items():
                results.setdefault("scores", {}).setdefault(rung, {}).update(scores)
            results.setdefault("settings", {}).update(part["settings"])
        report(results, out)
        return
    results = resume_cifar_bench(args.data, args.out, args.fresh)
    if results is None:
        return
    results.setdefault("scores", {})
    results.setdefault("settings", {})[args.label] = {
        "proxy_images_per_class": args.proxy_images, "epochs": args.epochs,
        "resolution": args.resolution, "device": args.device, "threads": args.threads,
        "batch_size": args.batch_size}
    rungs = args.rungs.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        data = DatasetConfig(kind="folder", path=tmp, val_split="test",
                             images_per_class=args.proxy_images, val_images_per_class=100)
        evaluators = {}
        if "zero_cost" in rungs:
            for proxy in ZERO_COST:
                evaluators[proxy] = ZeroCostEvaluator(ZeroCostConfig(
                    kind="zero_cost", proxy=proxy, resolution=args.resolution, batch_size=64,
                    dataset=data))
        if "proxy" in rungs:
            evaluators[args.label] = TrainEvaluator(TrainConfig(
                kind="train", dataset=data, epochs=args.epochs, resolution=args.resolution,
                batch_size=args.batch_size, crop_scale=(0.35, 1.0), eval_resize=1.0, loader_workers=1,
                save_weights=False,
                recipe=RecipeConfig(lr=2e-3, min_lr=0.0, cosine_per="step", warmup_iters=50,
                                    warmup_init_lr=0.0, ema_momentum=None)))
        names = args.models.split(",") if args.models else mobilevit.list_models()
        for name in names:
            spec = mobilevit.get_fixed_point(name).spec.replace(num_classes=10)
            for rung, evaluator in evaluators.items():
                done = results["scores"].setdefault(rung, {})
                if name in done:
                    continue
                start = time.perf_counter()
                result = evaluator.evaluate(spec, seed=0, workdir=Path(tmp) / "work" / name,
                                            threads=args.threads, device=args.device)
                done[name] = {"score": result.accuracy,
                              "seconds": round(time.perf_counter() - start, 2)}
                print(f"{name:<20}{rung:<12}{result.accuracy:>10.3f}"
                      f"{done[name]['seconds']:>9.1f} s", flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=2))
    report(results, out)


def report(results: dict, out: Path) -> None:
    """The correlations of every rung in ``results``, printed and written to ``out``."""
    published = {n: fp.published.top1 for n, fp in mobilevit.FIXED_POINTS.items()}
    table = []
    full = max(len(done) for done in results["scores"].values())
    for rung, done in results["scores"].items():
        corr = correlations({n: v["score"] for n, v in done.items()}, published)
        seconds = [v["seconds"] for v in done.values()]
        table.append({"rung": rung, **corr, "seconds_per_model": sum(seconds) / len(seconds)})
        if len(done) < full:  # a rung run on a subset: its baselines on the same models
            for other in ("macs", "proxy_train"):
                scores = results["scores"].get(other, {})
                if other != rung and all(n in scores for n in done):
                    corr = correlations({n: scores[n]["score"] for n in done}, published)
                    table.append({"rung": f"  {other} on these", **corr,
                                  "seconds_per_model": sum(scores[n]["seconds"] for n in done)
                                  / len(done)})
    results["correlations"] = table
    print(f"\n{'rung':<22}{'models':>7}{'Kendall tau':>13}{'Spearman rho':>14}{'s / model':>11}")
    for row in table:
        print(f"{row['rung']:<22}{row['models']:>7}{row['kendall_tau']:>13.3f}"
              f"{row['spearman_rho']:>14.3f}{row['seconds_per_model']:>11.1f}")
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
