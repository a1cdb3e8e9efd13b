"""Does the supernet rank architectures the way standalone training does?

    python bench/supernet_ranking.py [--data ../shared/data/cifar10-jpg.tar.gz]
        [--study studies/under_6m.yaml] [--sampled 9] [--seeds 2] [--epochs 6]
        [--supernet-epochs 12] [--images-per-class 200] [--resolution 32]
        [--out bench/results/supernet_ranking.json] [--fresh]
        [--split block [...]] [--split-epochs 3] [--split-lr 2e-4]
        [--standalone-from RESULTS.json] [--device cuda] [--batch-size 32]
        [--part all|supernet|standalone] [--shard K/N] [--merge RESULTS.json ...]

On CIFAR-10, over the default study's space and budget:

1. trains the weight-sharing supernet (the study's sandwich settings, the training below) into a
   store of its own under the output's folder, timing it and its peak memory;
2. takes the study's fixed points (the published designs under its budget) and ``--sampled``
   architectures drawn at random from the space under the budget;
3. scores each with its inherited weights (cut, BatchNorm recalibrated, top-1 on the test
   images), timing each evaluation;
4. trains each standalone on the same images, ``--seeds`` seeds, the same recipe;
5. reports Kendall tau and Spearman rho of the inherited accuracy against the standalone mean,
   beside the same correlations for parameter count, MACs and NASWOT, the correlation of one
   standalone seed with the other (the reference's own noise), the same restricted to the better
   half, and the agreement on the six published same-size pairs where the papers say which is
   better (v3 over v1 for XXS, XS, S; v3 over v2 for 0.5, 0.75, 1.0).

With ``--split`` the supernet is few-shot: after the shared training, one sub-supernet per value
of the split parameters trains ``--split-epochs`` more from the shared weights, and a candidate is
scored with its part's (the study evaluator's ``split``). ``--standalone-from`` reuses another
run's standalone accuracies for the same architectures at the same fidelity.

On a GPU (``--device cuda``; the supernet then trains in one process on it, the study's
``train_gpus_per_worker: 1``) the work can be spread over processes sharing the card: one
``--part supernet`` (the supernet and the inherited scores) and N ``--part standalone --shard K/N``
(every N-th standalone training), each with its own ``--out``; ``--merge`` then combines their
files into ``--out`` and reports, training nothing. bench/gpu_checks.sh does that.

Training uses the papers' recipe loop with a step-indexed cosine, as bench/proxy_fidelity.py.
Results are written after every step, and a re-run continues from them (``--fresh`` starts over).
Skipped when the CIFAR-10 archive is absent.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _results import resume_cifar_bench

from mobilevit.complexity import complexity
from nas.evaluators.train import TrainEvaluator
from nas.evaluators.zero_cost import ZeroCostEvaluator
from nas.study.budget import BudgetGate
from nas.study.config import (
    DatasetConfig,
    RecipeConfig,
    SupernetConfig,
    TrainConfig,
    ZeroCostConfig,
)
from nas.study.prepare import load
from nas.supernet.sampling import SandwichSampler

ROOT = Path(__file__).resolve().parents[1]

# (the better one by its paper, the other) at the same size
PAPER_PAIRS = [("mobilevitv3_xxs", "mobilevit_xxs"), ("mobilevitv3_xs", "mobilevit_xs"),
               ("mobilevitv3_s", "mobilevit_s"), ("mobilevitv3_050", "mobilevitv2_050"),
               ("mobilevitv3_075", "mobilevitv2_075"), ("mobilevitv3_100", "mobilevitv2_100")]


def correlations(scores: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """Kendall tau and Spearman rho of ``scores`` against ``reference`` on their common names."""
    names = [n for n in scores if n in reference]
    frame = pd.DataFrame({"score": [scores[n] for n in names],
                          "reference": [reference[n] for n in names]})
    return {"kendall_tau": float(frame.corr(method="kendall").iloc[0, 1]),
            "spearman_rho": float(frame.corr(method="spearman").iloc[0, 1]),
            "models": len(names)}


def pair_agreement(scores: dict[str, float]) -> dict[str, object]:
    """How many of the papers' same-size pairs ``scores`` orders as the paper does."""
    pairs = [(a, b) for a, b in PAPER_PAIRS if a in scores and b in scores]
    agree = [f"{a}>{b}" for a, b in pairs if scores[a] > scores[b]]
    return {"agree": len(agree), "pairs": len(pairs), "which": agree}


def _recipe() -> RecipeConfig:
    return RecipeConfig(lr=2e-3, min_lr=0.0, cosine_per="step", warmup_iters=50,
                        warmup_init_lr=0.0, ema_momentum=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10-jpg.tar.gz"))
    parser.add_argument("--study", default=str(ROOT / "studies/under_6m.yaml"))
    parser.add_argument("--sampled", type=int, default=9)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6, help="standalone training epochs")
    parser.add_argument("--supernet-epochs", type=int, default=12)
    parser.add_argument("--images-per-class", type=int, default=200)
    parser.add_argument("--val-per-class", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=str(ROOT / "bench/results/supernet_ranking.json"))
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--split", nargs="*", default=[],
                        help="few-shot: split the supernet along these design parameters")
    parser.add_argument("--split-epochs", type=int, default=None,
                        help="epochs each sub-supernet trains on from the shared one")
    parser.add_argument("--split-lr", type=float, default=None,
                        help="peak learning rate of the split epochs (default: the training's)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where the supernet and the standalone trainings run (the inherited "
                             "scores are on the CPU, as in a study)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--part", default="all", choices=("all", "supernet", "standalone"))
    parser.add_argument("--shard", default="0/1",
                        help="K/N: with --part standalone, train every N-th (architecture, seed) "
                             "from the K-th")
    parser.add_argument("--merge", nargs="+", default=None,
                        help="results files of one run's --parts: combine them into --out and "
                             "report (their own settings apply)")
    parser.add_argument("--standalone-from", default=None,
                        help="a results file of the same architectures and fidelity whose "
                             "standalone accuracies to reuse (they do not depend on the split)")
    args = parser.parse_args()
    archive, out = Path(args.data), Path(args.out)
    shard, shards = (int(v) for v in args.shard.split("/"))
    settings = {k: getattr(args, k) for k in ("study", "sampled", "seeds", "epochs",
                                              "supernet_epochs", "images_per_class",
                                              "val_per_class", "resolution", "threads",
                                              "split", "split_epochs")}
    if args.split_lr is not None:
        settings["split_lr"] = args.split_lr
    if args.device != "cpu":  # (only when set, so that earlier results still match)
        settings["device"] = args.device
    if args.batch_size != 32:
        settings["batch_size"] = args.batch_size
    if args.merge:
        merged = merge(args.merge)
        report(merged, int(merged["settings"]["seeds"]), out)
        return
    results = resume_cifar_bench(args.data, args.out, args.fresh)
    if results is None:
        return
    if results.get("settings", settings) != settings:
        sys.exit(f"{out} holds results of other settings; add --fresh to start over")
    results["settings"] = settings
    results.setdefault("models", {})
    reused = {}
    if args.standalone_from:
        other = json.loads(Path(args.standalone_from).read_text())
        fidelity = ("epochs", "images_per_class", "val_per_class", "resolution")
        if any(other["settings"][k] != settings[k] for k in fidelity):
            sys.exit(f"{args.standalone_from}: its standalone fidelity differs from this run's")
        reused = {m["spec_id"]: m["standalone"] for m in other["models"].values()}

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))

    prepared = load(args.study)
    study = prepared.config
    # The images at a fixed path: the path is part of the supernet's store key, so a rerun (a
    # split after a one-shot run, say) reuses the stored supernet.
    images = Path(tempfile.gettempdir()) / "supernet_ranking_cifar10"
    with tempfile.TemporaryDirectory() as tmp:
        if not images.exists():
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            Path(tmp, "images").mkdir()
            for item in Path(tmp).iterdir():
                if item.name != "images":
                    item.rename(Path(tmp, "images", item.name))
            try:
                Path(tmp, "images").rename(images)
            except OSError:  # another process (another --part) unpacked them first
                if not images.exists():
                    raise
        data = DatasetConfig(kind="folder", path=str(images), val_split="test",
                             images_per_class=args.images_per_class,
                             val_images_per_class=args.val_per_class)

        def train_config(epochs: int) -> TrainConfig:
            return TrainConfig(kind="train", dataset=data, epochs=epochs,
                               resolution=args.resolution, batch_size=args.batch_size,
                               crop_scale=(0.35, 1.0),
                               eval_resize=1.0, loader_workers=1, save_weights=False,
                               recipe=_recipe())

        base = study.evaluator
        assert isinstance(base, SupernetConfig), f"{args.study}: not a supernet study"
        config = base.model_copy(update={
            "train": train_config(args.supernet_epochs), "eval_images": None, "refine": None,
            "store": str(out.parent / "supernet_ranking_store"),
            "split": args.split, "split_epochs": args.split_epochs if args.split else None,
            "split_lr": args.split_lr if args.split else None,
            "train_gpus_per_worker": 1.0 if args.device == "cuda" else 0.0})
        space = prepared.space
        # 1. the supernet
        start = time.perf_counter()
        evaluator = None
        if args.part != "standalone":
            evaluator = config.build().for_search(space, study.budget, study.seed,
                                                  label="supernet_ranking", say=print,
                                                  threads=args.threads)
        if evaluator is not None and "supernet" not in results:
            meta = json.loads((Path(evaluator.folder) / "meta.json").read_text()) \
                if (Path(evaluator.folder) / "meta.json").exists() else {}
            results["supernet"] = {
                "wall_time_s": round(meta.get("wall_time_s", time.perf_counter() - start), 1),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "history": meta.get("history"), "key": Path(evaluator.folder).name}
            parts = []
            for values, folder in evaluator.parts:
                part = json.loads((Path(folder) / "meta.json").read_text())
                parts.append({"split": list(values), "key": Path(folder).name,
                              "wall_time_s": round(part["wall_time_s"], 1),
                              "history": part.get("history")})
            if parts:  # the few-shot cost: the shared supernet and every sub-supernet
                results["supernet"]["parts"] = parts
                results["supernet"]["shared_wall_time_s"] = results["supernet"]["wall_time_s"]
                results["supernet"]["wall_time_s"] = round(
                    results["supernet"]["wall_time_s"] + sum(p["wall_time_s"] for p in parts), 1)
            save()
        # 2. the architectures
        gate = BudgetGate(study.budget)
        archs = {f.name: f.spec for f in prepared.fixed if gate.check(f.spec).feasible}
        sampler = SandwichSampler(space, gate, seed=study.seed + 7919)
        for i in range(args.sampled):
            archs[f"sampled_{i}"] = sampler.random(step=10**6, index=i)
        naswot = ZeroCostEvaluator(ZeroCostConfig(kind="zero_cost", proxy="naswot",
                                                  resolution=args.resolution, batch_size=64,
                                                  dataset=data))
        standalone = TrainEvaluator(train_config(args.epochs))
        work = Path(tmp) / "work"
        job = -1
        for name, spec in archs.items():
            row = results["models"].setdefault(name, {"spec_id": spec.spec_id})
            counted = complexity(spec.replace(num_classes=study.budget.count_classes),
                                 study.budget.resolution)
            row.update(params=counted.params, macs=counted.macs)
            if evaluator is not None and "inherited" not in row:  # 3. inherited weights
                t0 = time.perf_counter()
                r = evaluator.evaluate(spec, seed=0, workdir=work / name, threads=args.threads,
                                       device="cpu")
                row["inherited"] = r.accuracy
                row["inherited_s"] = round(time.perf_counter() - t0, 3)
                t0 = time.perf_counter()
                row["naswot"] = naswot.evaluate(spec, seed=0, workdir=work / name,
                                                threads=args.threads, device="cpu").accuracy
                row["naswot_s"] = round(time.perf_counter() - t0, 3)
                save()
            seeds = row.setdefault("standalone", {})
            for seed, value in reused.get(spec.spec_id, {}).items():
                seeds.setdefault(seed, {**value, "reused": args.standalone_from})
            for seed in range(args.seeds):  # 4. standalone
                job += 1
                if args.part == "supernet" or job % shards != shard or str(seed) in seeds:
                    continue
                t0 = time.perf_counter()
                r = standalone.evaluate(spec, seed=seed, workdir=work / f"{name}-{seed}",
                                        threads=args.threads, device=args.device)
                seeds[str(seed)] = {"top1": r.accuracy,
                                    "seconds": round(time.perf_counter() - t0, 1)}
                save()
            inherited = f"{row['inherited']:6.2f} %" if "inherited" in row else "   -"
            print(f"{name:<20} inherited {inherited}  standalone "
                  + " / ".join(f"{v['top1']:.2f}" for v in seeds.values()) + " %", flush=True)
    if args.part == "all":
        report(results, args.seeds, out)
    else:
        print(f"wrote {out} (--part {args.part}; --merge the parts to report)")


def merge(files: list[str]) -> dict[str, object]:
    """One results dict of ``--part`` runs' files (of one run's settings): the supernet and
    inherited scores from the file that has them, every file's standalone seeds."""
    parts = [json.loads(Path(file).read_text()) for file in files]
    merged: dict = {"settings": parts[0]["settings"], "models": {},
                    "merged_from": [Path(f).name for f in files]}
    def fidelity(settings: dict) -> dict:  # (a part's CPU threads change no result)
        return {k: v for k, v in settings.items() if k != "threads"}

    for file, part in zip(files, parts, strict=True):
        if fidelity(part["settings"]) != fidelity(merged["settings"]):
            sys.exit(f"{file}: its settings differ from {files[0]}'s")
        if "supernet" in part:
            merged["supernet"] = part["supernet"]
        for name, row in part["models"].items():
            mine = merged["models"].setdefault(name, {})
            seeds = {**mine.get("standalone", {}), **row.get("standalone", {})}
            mine.update({k: v for k, v in row.items() if k != "standalone"})
            mine["standalone"] = seeds
    missing = [n for n, m in merged["models"].items() if "inherited" not in m]
    if "supernet" not in merged or missing:
        sys.exit(f"no --part supernet results for {missing or 'the supernet'} in {files}")
    return merged


def report(results: dict, seeds: int, out: Path) -> None:
    """Step 5: the correlations, printed and written into ``results`` at ``out``."""
    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))

    short = [n for n, m in results["models"].items() if len(m.get("standalone", {})) < seeds]
    if short:  # a run stopped early (a deadline): report on the architectures it completed
        print(f"left out, fewer than {seeds} standalone seeds: {', '.join(short)}")
        results["left_out"] = short
    models = {n: m for n, m in results["models"].items() if n not in short}
    mean = {n: statistics.mean(v["top1"] for v in m["standalone"].values())
            for n, m in models.items()}
    scores = {"inherited (supernet)": {n: m["inherited"] for n, m in models.items()},
              "params": {n: float(m["params"]) for n, m in models.items()},
              "macs": {n: float(m["macs"]) for n, m in models.items()},
              "naswot": {n: m["naswot"] for n, m in models.items()}}
    if seeds >= 2:
        scores["standalone seed 0 vs mean"] = {n: m["standalone"]["0"]["top1"]
                                               for n, m in models.items()}
        seed0 = {n: m["standalone"]["0"]["top1"] for n, m in models.items()}
        seed1 = {n: m["standalone"]["1"]["top1"] for n, m in models.items()}
        results["seed_vs_seed"] = correlations(seed0, seed1)
    better = sorted(mean, key=mean.get, reverse=True)[:max(2, len(mean) // 2)]
    table = []
    for label, values in scores.items():
        top = correlations({n: values[n] for n in better}, mean)
        table.append({"score": label, **correlations(values, mean),
                      "top_half_kendall_tau": top["kendall_tau"],
                      "paper_pairs": pair_agreement(values)})
    table.append({"score": "standalone mean", "paper_pairs": pair_agreement(mean)})
    results["correlations"] = table
    inherited_s = [m["inherited_s"] for m in models.values()]
    standalone_s = [v["seconds"] for m in models.values() for v in m["standalone"].values()]
    results["seconds_per_candidate"] = {"inherited_median": statistics.median(inherited_s),
                                        "standalone_median": statistics.median(standalone_s)}
    save()
    print(f"\n{len(models)} architectures; supernet trained in "
          f"{results['supernet']['wall_time_s'] / 60:.1f} min, peak RSS "
          f"{results['supernet']['peak_rss_mib']} MiB; a candidate scored in "
          f"{statistics.median(inherited_s):.2f} s inherited against "
          f"{statistics.median(standalone_s):.0f} s standalone (medians)")
    print(f"{'score':<28}{'Kendall tau':>12}{'Spearman rho':>14}{'tau, top half':>15}"
          f"{'paper pairs':>13}")
    for row in table:
        pairs = row["paper_pairs"]
        if "kendall_tau" in row:
            print(f"{row['score']:<28}{row['kendall_tau']:>12.3f}{row['spearman_rho']:>14.3f}"
                  f"{row['top_half_kendall_tau']:>15.3f}{pairs['agree']:>9}/{pairs['pairs']}")
        else:
            print(f"{row['score']:<28}{'':>41}{pairs['agree']:>9}/{pairs['pairs']}")
    if "seed_vs_seed" in results:
        s = results["seed_vs_seed"]
        print(f"standalone seed 0 vs seed 1: tau {s['kendall_tau']:.3f}, "
              f"rho {s['spearman_rho']:.3f} (the reference's own noise)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
