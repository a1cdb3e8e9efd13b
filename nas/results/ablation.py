"""Paper ablations as fixed trials: the table of the papers' figures beside ours.

An ablation is a study with an ``ablation`` section whose fixed trials are its rows
(``studies/ablations/``). After it ran, :func:`ablation_table` puts each row's published figures
(params, MACs, latency, top-1, with their source) next to ours (exact params and MACs, latency from
the study's oracle, accuracy at the study's fidelity), with the deltas, and
:func:`ordering` says whether our rows come in the paper's order.

A row run with ``seeds: N`` is N trials; its accuracy is their mean with a 95 % interval, and
each verdict against the paper knows that noise (:mod:`nas.results.noise`): a row is in the
paper's order against the baseline, in the opposite order, or within noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas.results.noise import Estimate, PairVerdict, bootstrap_tau, estimate, pair_verdict
from nas.results.outcome import TrialStatus
from nas.results.table import format_cell
from nas.study.config import StudyConfig, StudyError, deep_merge, parse_study

ABLATIONS_DIR = Path("studies") / "ablations"


def ablation_files(folder: str | Path = ABLATIONS_DIR) -> list[Path]:
    """The ablation study files of ``folder`` (files starting with ``_`` are shared parts)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StudyError(f"{folder}: no such folder of ablation studies (run from the project "
                         "root, or pass --dir)")
    return sorted(p for p in folder.glob("*.yaml") if not p.name.startswith("_"))


def smoke_fidelity(config: StudyConfig) -> StudyConfig:
    """``config`` at the smallest fidelity that still trains: one epoch of 64 procedural images
    at 32x32 and a few CPU timings instead of the study's oracle. For trying an ablation end to
    end in seconds; its numbers mean nothing."""
    data = config.model_dump(mode="json")
    evaluator = data["evaluator"]
    if evaluator["kind"] == "train":
        evaluator = deep_merge(evaluator, {
            "epochs": 1, "resolution": 32, "batch_size": 16, "eval_resize": 1.0,
            "dataset": {"kind": "procedural", "path": None, "train_images": 64,
                        "val_images": 32, "image_size": 32, "classes": None,
                        "images_per_class": None, "val_images_per_class": None},
            "recipe": {"warmup_iters": 2}})
    data.update(evaluator=evaluator, name=f"{config.name}.smoke",
                latency={"kind": "local", "resolution": 64, "runs": 3, "warmup": 1},
                pruner={"kind": "none"},  # one epoch: nothing to stop early
                output=None)
    return parse_study(data, f"{config.name} (smoke fidelity)")


FIDELITY_FIELDS = ("evaluator", "latency", "workers", "pruner", "seed")


def with_fidelity(config: StudyConfig, path: str | Path) -> StudyConfig:
    """``config`` measured as the study file ``path`` measures: its evaluator, latency oracle,
    workers, pruner and seed replace the ablation's (the rows' own changes still apply)."""
    from nas.study.config import read_study_data

    data = read_study_data(Path(path))
    if not isinstance(data, dict) or not any(k in data for k in FIDELITY_FIELDS):
        raise StudyError(f"--fidelity {path}: expected a study file with some of "
                         f"{', '.join(FIDELITY_FIELDS)}")
    merged = {**config.model_dump(mode="json"),
              **{k: data[k] for k in FIDELITY_FIELDS if k in data}}
    return parse_study(merged, f"{config.name} with --fidelity {path}")


def _pct(ours: Any, published: Any) -> float | None:
    if ours is None or published is None or ours != ours or not published:
        return None
    return round(100 * (ours - published) / published, 2)


def ablation_table(frame: Any, config: StudyConfig, fixed: Sequence[Any]) -> Any:
    """One row per ablation row, in the file's order: published figures, ours, deltas.

    ``frame`` is the run's trials table (:func:`nas.results.runs.trials_frame`), ``fixed`` the
    prepared fixed trials (names, published figures). Parameters and MACs are ours exactly
    (1000-class head at the budget's resolution, as the papers count); ``accuracy`` is at the
    study's fidelity, so it is compared with the paper through deltas against the baseline row,
    not directly.
    """
    import pandas as pd

    if config.ablation is None:
        raise StudyError(f"{config.name}: not an ablation (no ablation section)")
    by_name: dict[str, dict[int, Any]] = {}
    if len(frame) and "fixed_point" in frame:
        seed_col = "seed_index" in frame
        for row in frame.sort_values("number").itertuples(index=False):
            if isinstance(row.fixed_point, str) and TrialStatus(row.status).final:
                index = int(row.seed_index) if seed_col else 0
                # the last attempt of a re-queued row
                by_name.setdefault(row.fixed_point, {})[index] = row
    rows = []
    estimates: dict[str, Estimate | None] = {}
    for f in fixed:
        pub = f.published
        seeds = [by_name.get(f.name, {})[k] for k in sorted(by_name.get(f.name, {}))]
        ok = [r for r in seeds if r.status == TrialStatus.OK and r.accuracy is not None
              and r.accuracy == r.accuracy]
        t = ok[0] if ok else (seeds[0] if seeds else None)
        est = estimate([r.accuracy for r in ok]) if ok else None
        estimates[f.name] = est

        def get(key: str, trial: Any = t) -> Any:
            return getattr(trial, key, None)

        params, macs, latency = get("params"), get("macs"), get("latency_ms")
        accuracy = est.mean if est is not None else get("accuracy")
        interval = est.interval if est is not None else None
        rows.append({
            "row": f.name,
            "status": get("status") or "not run",
            "trial": get("number"),
            "published_params_m": pub.params_m if pub else None,
            "params_m": None if params is None else round(params / 1e6, 3),
            "params_delta_pct": _pct(params / 1e6 if params else None,
                                     pub.params_m if pub else None),
            "published_macs_g": pub.macs_g if pub else None,
            "macs_g": None if macs is None else round(macs / 1e9, 3),
            "macs_delta_pct": _pct(macs / 1e9 if macs else None, pub.macs_g if pub else None),
            "published_latency_ms": pub.latency_ms if pub else None,
            "latency_ms": latency,
            "latency_delta_pct": _pct(latency, pub.latency_ms if pub else None),
            "published_top1": pub.top1 if pub else None,
            "accuracy": accuracy,
            "accuracy_sd": est.sd if est is not None else None,
            "accuracy_low": interval[0] if interval else None,
            "accuracy_high": interval[1] if interval else None,
            "interval": f"[{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "",
            "seeds": est.n if est is not None else 0,
            "seed_accuracies": " ".join(f"{v:.2f}" for v in est.values) if est else "",
            "at_chance": sum(bool(getattr(r, "chance", False)) for r in ok),
            "note": pub.note if pub else "",
            "fidelity": get("fidelity") or "",
            "oracle": get("oracle") or "",
            "spec_id": get("spec_id"),
        })
    table = pd.DataFrame(rows)
    base = table[table["row"] == config.ablation.baseline].iloc[0]
    table["published_top1_vs_baseline"] = (table["published_top1"] - base["published_top1"]
                                           ).round(2)
    table["accuracy_vs_baseline"] = (pd.to_numeric(table["accuracy"]) - base["accuracy"]
                                     if base["accuracy"] is not None else float("nan"))
    table["accuracy_vs_baseline"] = pd.to_numeric(table["accuracy_vs_baseline"]).round(2)
    base_est = estimates.get(config.ablation.baseline)
    verdicts = []
    for f, published in zip(fixed, table["published_top1"], strict=True):
        est = estimates.get(f.name)
        if f.name == config.ablation.baseline:
            verdicts.append("baseline")
        elif est is None or base_est is None or published is None or published != published \
                or base["published_top1"] is None or base["published_top1"] != base["published_top1"]:
            verdicts.append("")
        else:
            v = pair_verdict(float(published), float(base["published_top1"]), est, base_est)
            verdicts.append(v.value if v is not None else "the paper ties them")
    table["verdict"] = verdicts  # against the baseline, knowing the seeds' noise
    table["source"] = config.ablation.paper
    return table


@dataclasses.dataclass(frozen=True)
class Ordering:
    """How our rows' order compares with the paper's on one metric.

    Attributes:
        metric: "top-1" or "latency".
        rows: the rows both sides have a value for.
        paper: those rows, best first, by the paper's figures.
        ours: the same rows, best first, by ours (means over seeds).
        kendall_tau: rank agreement (1 same order, -1 reversed); None for fewer than 2 rows.
        same: whether every pair the paper orders strictly we order the same way.
        pairs: for top-1, each pair the paper orders strictly with our verdict on it, which
            knows the seeds' noise (same order, opposite order, within noise).
        tau_interval: for top-1 with two or more seeds per row, a 95 % bootstrap interval of
            Kendall tau over the seeds.
    """

    metric: str
    rows: tuple[str, ...]
    paper: tuple[str, ...]
    ours: tuple[str, ...]
    kendall_tau: float | None
    same: bool | None
    pairs: tuple[tuple[str, str, PairVerdict], ...] = ()
    tau_interval: tuple[float, float] | None = None

    def counts(self) -> dict[PairVerdict, int]:
        """How many of the pairs got each verdict."""
        out: dict[PairVerdict, int] = {}
        for _, _, verdict in self.pairs:
            out[verdict] = out.get(verdict, 0) + 1
        return out

    def text(self) -> str:
        if len(self.rows) < 2:
            return f"{self.metric}: fewer than two rows with both figures; no order to compare"
        tau = "undefined: all ours equal" if self.kendall_tau is None else \
            f"{self.kendall_tau:+.2f}"
        if self.tau_interval is not None:
            tau += f", 95 % interval [{self.tau_interval[0]:+.2f}, {self.tau_interval[1]:+.2f}]"
        if self.pairs:
            counts = self.counts()
            verdict = "; ".join(f"{n} {v.value}" for v, n in counts.items())
            verdict = f"of {len(self.pairs)} pairs the paper orders, {verdict}"
        else:
            verdict = "same order as the paper" if self.same else "order differs from the paper"
        return (f"{self.metric}: {verdict} (Kendall tau {tau}); paper "
                f"{' > '.join(self.paper)}; ours {' > '.join(self.ours)}")


def _row_estimate(row: Any) -> Estimate:
    values = str(row.get("seed_accuracies") or "").split()
    return estimate([float(v) for v in values] if values else [float(row["accuracy"])])


def ordering(table: Any, metric: str = "top-1") -> Ordering:
    """Compare the paper's ordering of the rows with ours (higher top-1 first, or lower latency
    first); ties in the paper's figures constrain nothing. On top-1, each pair's verdict and the
    tau's interval come from the rows' seeds."""
    from scipy.stats import kendalltau

    paper_col, ours_col, higher = {"top-1": ("published_top1", "accuracy", True),
                                   "latency": ("published_latency_ms", "latency_ms", False)}[metric]
    both = table.dropna(subset=[paper_col, ours_col])
    both = both[both["status"] == TrialStatus.OK]
    names = tuple(both["row"])
    if len(both) < 2:
        return Ordering(metric, names, names, names, None, None)
    sign = -1 if higher else 1
    paper = tuple(both.sort_values(paper_col, key=lambda s: sign * s, kind="stable")["row"])
    ours = tuple(both.sort_values(ours_col, key=lambda s: sign * s, kind="stable")["row"])
    p = both[paper_col].astype(float).to_numpy()
    o = both[ours_col].astype(float).to_numpy()
    agree = all((p[i] - p[j]) * (o[i] - o[j]) > 0
                for i in range(len(p)) for j in range(i + 1, len(p)) if p[i] != p[j])
    tau = kendalltau(p, o).statistic
    pairs: list[tuple[str, str, PairVerdict]] = []
    interval = None
    if metric == "top-1":
        records = both.to_dict("records")
        ests = [_row_estimate(r) for r in records]
        for i in range(len(records)):
            for j in range(i + 1, len(records)):
                v = pair_verdict(p[i], p[j], ests[i], ests[j])
                if v is not None:
                    pairs.append((records[i]["row"], records[j]["row"], v))
        interval = bootstrap_tau(list(p), ests)
    return Ordering(metric, names, paper, ours, None if tau != tau else round(float(tau), 3),
                    agree, tuple(pairs), interval)


def orderings(table: Any) -> list[Ordering]:
    """Orderings on top-1 and on latency."""
    return [ordering(table, "top-1"), ordering(table, "latency")]


TERMINAL_COLUMNS = [("row", "row", ""), ("published_params_m", "paper M", ".1f"),
                    ("params_m", "ours M", ".3f"), ("published_latency_ms", "paper ms", ".2f"),
                    ("latency_ms", "ours ms", ".2f"), ("published_top1", "paper top-1", ".1f"),
                    ("published_top1_vs_baseline", "paper Δ", "+.1f"),
                    ("accuracy", "ours acc", ".2f"), ("interval", "95 % interval", ""),
                    ("seeds", "seeds", ""), ("accuracy_vs_baseline", "ours Δ", "+.2f"),
                    ("verdict", "vs baseline", ""), ("status", "status", "")]


def table_text(table: Any, config: StudyConfig) -> str:
    """The table as printed in the terminal, with its source and the ordering verdicts."""
    import pandas as pd

    shown = pd.DataFrame({header: [format_cell(v, spec) for v in table[col]]
                          for col, header, spec in TERMINAL_COLUMNS})
    ab = config.ablation
    fidelity = next((f for f in table["fidelity"] if f), "")
    oracle = next((o for o in table["oracle"] if o), "")
    lines = [f"{config.name}: {ab.paper}" + (f" ({ab.setting})" if ab.setting else ""),
             *shown.to_string(index=False).splitlines(),
             f"Δ: against the baseline row ({ab.baseline}). Paper: published figures. Ours: "
             f"exact params, latency from {oracle or 'the oracle'}, accuracy at "
             f"{fidelity or 'the study fidelity'}.",
             *(o.text() for o in orderings(table))]
    if (table["seeds"] > 1).any():
        lines.append("95 % interval: of a row's mean over its seeds. vs baseline: our order of the "
                     "row and the baseline is the paper's, the opposite, or within noise (Welch's "
                     "t-test at 5 % cannot separate them).")
    elif (table["seeds"] == 1).any():
        lines.append("One seed per row: no verdict knows its noise; rerun with --seeds 3.")
    chance = [r for r, n in zip(table["row"], table["at_chance"], strict=True) if n]
    if chance:
        lines.append(f"at chance level (scored no better than guessing): {', '.join(chance)}; "
                     "their order means nothing")
    notes = [f"  {r}: {n}" for r, n in zip(table["row"], table["note"], strict=True) if n]
    if notes:
        lines += ["notes:", *notes]
    return "\n".join(lines)


def write_ablation(run_dir: str | Path) -> tuple[Any, str]:
    """Compute a finished (or partly run) ablation's table from its run folder, write it as
    ``ablation.csv`` there, and return it with its terminal text."""
    from nas.results.runs import open_run, trials_frame
    from nas.study.prepare import load

    run_dir = Path(run_dir)
    prepared = load(run_dir)
    study, _ = open_run(run_dir)
    config = prepared.config
    table = ablation_table(trials_frame(study), config, prepared.fixed)
    table.to_csv(run_dir / "ablation.csv", index=False)
    return table, table_text(table, config)
