"""The noise floor of each shipped fidelity: top-1 over 5 seeds for three published models.

    python bench/noise_floor.py [--fidelities ablation,cifar10_cpu,default] [--seeds 5]
        [--models mobilevit_xxs,mobilevitv3_xs,mobilevit_s] [--data ../shared/data/cifar10-jpg.tar.gz]
        [--out bench/results/noise_floor.json] [--fresh] [--from-runs RUN_DIR ...]

Fidelities (each is the evaluator section of a shipped study file, unchanged):

* ``ablation``: the shared ablation fidelity (``studies/ablations/_fidelity.yaml``: 5 epochs on
  1,600 procedural images at 64 px);
* ``cifar10_cpu``: the CPU CIFAR-10 proxy rung (``studies/ablations/_cifar10_cpu.yaml``; its
  images are unpacked from ``--data`` into ``data/cifar10-jpg`` when that folder is missing;
  skipped without the archive);
* ``default``: the default study's evaluator (``studies/under_6m.yaml``: inherited weights from
  its supernet). A candidate's inherited accuracy does not depend on the trial's seed, so here a
  seed is the study's seed: one supernet trained per seed (in a store of its own under the
  output's folder).

Each seed is the one a study gives that fixed trial's k-th seed (``seeds: N``). Per model: mean,
standard deviation, range; per fidelity: the standard deviation pooled over the three models,
written to ``nas/results/noise_floors.json`` under the evaluator section's hash, where ``nas
status`` and the report find it. Results are written after every run, and a re-run continues from
them (``--fresh`` starts over). ``--from-runs`` takes run folders (an ablation's, say) whose
completed trials of the same network, evaluator section and seed are the same training: their top-1
is taken instead of training again, and the run says which trial it came from.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from _results import write_results

import mobilevit
from nas.results.ablation import with_fidelity
from nas.results.runs import FLOORS_FILE, open_run
from nas.search.runner import trial_seed
from nas.study.config import evaluator_key
from nas.study.prepare import load

ROOT = Path(__file__).resolve().parents[1]
FIDELITIES = {"ablation": ("studies/ablations/v3_block.yaml", None),
              "cifar10_cpu": ("studies/ablations/v3_block.yaml",
                              "studies/ablations/_cifar10_cpu.yaml"),
              "default": ("studies/under_6m.yaml", None)}


def _config(fidelity: str):  # the study whose evaluator section is the fidelity
    study, override = FIDELITIES[fidelity]
    prepared = load(ROOT / study)
    config = prepared.config
    if override is not None:
        config = with_fidelity(config, ROOT / override)
    return prepared, config


def _recorded(run_dirs: list[Path], key: str, spec_id: str, seed: int) -> dict | None:
    """A completed trial in ``run_dirs`` that is this training (same evaluator, network, seed)."""
    for run_dir in run_dirs:
        study, _ = open_run(run_dir)
        for trial in study.get_trials(deepcopy=False):
            attrs = trial.user_attrs
            provenance = attrs.get("eval") or {}
            if (attrs.get("evaluator_key") == key and attrs.get("spec_id") == spec_id
                    and provenance.get("seed") == seed and attrs.get("accuracy") is not None):
                return {"seed": seed, "top1": attrs["accuracy"],
                        "seconds": attrs.get("wall_time_s"),
                        "from": f"{run_dir} trial {trial.number}"}
    return None


def _unpack(archive: Path) -> bool:
    target = Path("data/cifar10-jpg")
    if (target / "train").is_dir():
        return True
    if not archive.exists():
        return False
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fidelities", default="ablation,cifar10_cpu,default")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--models", default="mobilevit_xxs,mobilevitv3_xs,mobilevit_s")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10-jpg.tar.gz"))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=str(ROOT / "bench/results/noise_floor.json"))
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--from-runs", nargs="*", default=[], type=Path,
                        help="run folders whose matching trials are reused, not retrained")
    args = parser.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() and not args.fresh else {}
    models = args.models.split(",")

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))

    for fidelity in args.fidelities.split(","):
        if fidelity == "cifar10_cpu" and not _unpack(Path(args.data)):
            print(f"{fidelity}: skipped ({args.data} is not there)")
            continue
        prepared, config = _config(fidelity)
        key = evaluator_key(config.evaluator)
        entry = results.setdefault(fidelity, {"evaluator_key": key, "models": {}})
        if entry["evaluator_key"] != key:
            raise SystemExit(f"{out}: {fidelity} was measured with another evaluator section; "
                             "add --fresh")
        classes = prepared.fixed[0].spec.num_classes
        with tempfile.TemporaryDirectory() as tmp:
            for name in models:
                spec = mobilevit.get_fixed_point(name).spec.replace(num_classes=classes)
                row = entry["models"].setdefault(name, {"spec_id": spec.spec_id, "runs": {}})
                for k in range(args.seeds):
                    if str(k) in row["runs"]:
                        continue
                    start = time.perf_counter()
                    if fidelity == "default":
                        # a seed of the supernet study is its study seed: one supernet each
                        seed = config.seed + k
                        ev = config.evaluator.model_copy(update={
                            "store": str(out.parent / "noise_floor_store"), "refine": None})
                        bound = ev.build().for_search(prepared.space, config.budget, seed,
                                                      label="noise_floor", say=print,
                                                      threads=args.threads)
                        result = bound.evaluate(spec, seed=seed, workdir=Path(tmp) / name,
                                                threads=args.threads, device="cpu")
                    else:
                        seed = trial_seed(config, spec.spec_id, k)
                        found = _recorded(args.from_runs, key, spec.spec_id, seed)
                        if found is not None:
                            row["runs"][str(k)] = found
                            print(f"{fidelity:<12}{name:<18}seed {k}{found['top1']:>9.2f} %"
                                  f"   from {found['from']}", flush=True)
                            save()
                            continue
                        result = config.evaluator.build().evaluate(
                            spec, seed=seed, workdir=Path(tmp) / f"{name}-{k}",
                            threads=args.threads, device="cpu")
                    row["runs"][str(k)] = {"seed": seed, "top1": result.accuracy,
                                           "seconds": round(time.perf_counter() - start, 1)}
                    print(f"{fidelity:<12}{name:<18}seed {k}{result.accuracy:>9.2f} %"
                          f"{row['runs'][str(k)]['seconds']:>8.0f} s", flush=True)
                    save()
        report(entry)
        save()
    print(f"\n{'fidelity':<12}{'model':<18}{'seeds':>6}{'mean':>8}{'sd':>7}{'min':>7}{'max':>7}")
    for fidelity, entry in results.items():
        for name, row in entry["models"].items():
            top1 = [r["top1"] for r in row["runs"].values()]
            sd = statistics.stdev(top1) if len(top1) > 1 else float("nan")
            print(f"{fidelity:<12}{name:<18}{len(top1):>6}{statistics.mean(top1):>8.2f}"
                  f"{sd:>7.2f}{min(top1):>7.2f}{max(top1):>7.2f}")
        if "pooled_sd" in entry:
            print(f"{fidelity:<12}{'pooled':<18}{'':>6}{'':>8}{entry['pooled_sd']:>7.2f}")
    write_floors(results)
    write_results(str(out), results)


def report(entry: dict) -> None:
    """The fidelity's pooled standard deviation over its models' seeds."""
    groups = [[r["top1"] for r in row["runs"].values()] for row in entry["models"].values()]
    groups = [g for g in groups if len(g) > 1]
    if groups:
        dof = sum(len(g) - 1 for g in groups)
        entry["pooled_sd"] = round(math.sqrt(sum((len(g) - 1) * statistics.variance(g)
                                                 for g in groups) / dof), 3)


def write_floors(results: dict) -> None:
    """The measured floors, by evaluator key, where ``nas status`` and the report look."""
    floors = json.loads(FLOORS_FILE.read_text()) if FLOORS_FILE.exists() else {}
    for fidelity, entry in results.items():
        if "pooled_sd" not in entry:
            continue
        parts = ", ".join(
            f"{name} {statistics.mean(r['top1'] for r in row['runs'].values()):.1f}"
            f" ± {statistics.stdev(r['top1'] for r in row['runs'].values()):.1f}"
            for name, row in entry["models"].items() if len(row["runs"]) > 1)
        seeds = max(len(row["runs"]) for row in entry["models"].values())
        floors[entry["evaluator_key"]] = {
            "sd": entry["pooled_sd"], "fidelity": fidelity,
            "measured": f"bench/noise_floor.py, {len(entry['models'])} models x {seeds} seeds "
                        f"(mean ± sd: {parts})"}
    FLOORS_FILE.write_text(json.dumps(floors, indent=2) + "\n")


if __name__ == "__main__":
    main()
