"""Preparing a study: the checks beyond the schema, the run folder and the Optuna storage.

``prepare`` turns a validated :class:`nas.study.config.StudyConfig` into a :class:`PreparedStudy`:
the search space with the study's overrides, the fixed trials as Optuna parameters, and the run
folder. Everything that can be known before the search starts is checked here, with one-line
errors that name the file and the field: unknown space parameters, fixed trials the space cannot
express, budgets that no network of the space can meet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilevit import ArchSpec, SpecError, get_fixed_point, load_spec
from nas.study.budget import BudgetGate
from nas.study.config import StudyConfig, StudyError, deep_merge, load_study, parse_study
from search_spaces import MobileViTSpace, SpaceError

CONFIG_FILE = "study.yaml"
JOURNAL_FILE = "journal.log"
BRUTE_FORCE_LIMIT = 100_000


@dataclass(frozen=True)
class FixedDesign:
    """A named design evaluated as a trial of the study.

    ``params`` are its values in the search space, or None for an ablation row the space cannot
    express (it is then built from ``spec`` directly); ``evaluator`` is the row's own evaluator
    section when it changes the study's (None: the study's); ``published`` the paper's figures
    for an ablation row.
    """

    name: str
    spec: ArchSpec
    params: dict[str, Any] | None
    evaluator: Any = None
    published: Any = None


@dataclass(frozen=True)
class PreparedStudy:
    """A study ready to run: its config, space, fixed trials and run folder."""

    config: StudyConfig
    source: str
    run_dir: Path
    space: MobileViTSpace
    fixed: tuple[FixedDesign, ...]
    warnings: tuple[str, ...] = ()


def evaluator_classes(config: StudyConfig, source: str) -> int:
    """The dataset's number of classes; dataset problems are errors naming the study file."""
    from nas.data import DataError

    try:
        return config.evaluator.build().num_classes
    except DataError as exc:
        raise StudyError(f"{source}: evaluator.dataset: {exc}") from None


def prepare(config: StudyConfig, source: str, *, base_dir: Path | None = None,
            run_dir: Path | None = None) -> PreparedStudy:
    """Check everything about ``config`` that can be checked before the search starts.

    Args:
        config: the validated study.
        source: where it came from (a file name), for error messages.
        base_dir: folder that relative spec files in ``fixed_trials`` are resolved against.
        run_dir: the run folder (default: ``output`` or ``runs/<name>``).
    """
    num_classes = evaluator_classes(config, source)
    resolution = config.budget.resolution
    try:
        space = MobileViTSpace(config.space, num_classes=num_classes, resolution=resolution)
    except SpaceError as exc:
        raise StudyError(f"{source}: {exc}") from None
    fixed = [_fixed_trial(config, entry, f"{source}: fixed_trials[{i}]", space, base_dir,
                          num_classes)
             for i, entry in enumerate(config.fixed_trials)]
    if config.trials is not None and config.trials < len(fixed):
        raise StudyError(f"{source}: trials={config.trials}: fewer than the {len(fixed)} fixed "
                         "trials")
    _check_budget_reachable(config, source)
    if config.sampler.kind == "brute_force":
        size = math.prod(len(p.values) for p in space.params.values())
        if size > BRUTE_FORCE_LIMIT:
            raise StudyError(f"{source}: sampler.kind=brute_force: the space has {size:.3g} "
                             f"points (limit {BRUTE_FORCE_LIMIT:,}); fix more parameters in space")
    gate = BudgetGate(config.budget)
    warnings = []
    for trial in fixed:
        verdict = gate.check(trial.spec)
        if not verdict.feasible:
            warnings.append(f"fixed trial {trial.name} exceeds the budget "
                            f"({', '.join(verdict.violated())}); it is recorded as infeasible "
                            "and not trained")
    out = run_dir or Path(config.output or Path("runs") / config.name)
    return PreparedStudy(config, source, out.resolve(), space, tuple(fixed), tuple(warnings))


def _base_spec(model: str, base_dir: Path | None) -> ArchSpec:
    if model.endswith(".json"):
        path = Path(model) if Path(model).is_absolute() else (base_dir or Path()) / model
        return load_spec(path)
    return get_fixed_point(model).spec


def _tuples(value: Any) -> Any:
    # YAML lists stand for the spec's tuples (patch_size, fusion)
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def changed_blocks(spec: ArchSpec, blocks: dict[str, Any] | list[dict[str, Any]]) -> ArchSpec:
    """``spec`` with its MobileViT blocks changed: every block (a mapping) or each block in
    order (a list of mappings, one per block)."""
    if isinstance(blocks, dict):
        return spec.with_blocks(**{k: _tuples(v) for k, v in blocks.items()}) if blocks else spec
    stages = [i for i, st in enumerate(spec.stages) if st.block is not None]
    if len(blocks) != len(stages):
        raise SpecError(f"blocks: {len(blocks)} changes for the {len(stages)} MobileViT blocks")
    for stage, changes in zip(stages, blocks, strict=True):
        spec = spec.with_block(stage, **{k: _tuples(v) for k, v in changes.items()})
    return spec


def _fixed_trial(config: StudyConfig, entry: Any, where: str, space: MobileViTSpace,
                 base_dir: Path | None, num_classes: int) -> FixedDesign:
    """One fixed trial: its spec (with the row's block changes), its place in the space, and
    the row's evaluator section."""
    from nas.study.config import FixedTrialConfig, fixed_trial_name

    row = entry if isinstance(entry, FixedTrialConfig) else None
    model = row.model if row else entry
    try:
        spec = _base_spec(model, base_dir)
        if row is not None and row.blocks:
            spec = changed_blocks(spec, row.blocks)
    except (SpecError, TypeError) as exc:
        text = str(exc).split("\n")[0]
        raise StudyError(f"{where}: {text}") from None
    spec = spec.replace(num_classes=num_classes, resolution=config.budget.resolution)
    try:
        params = space.params_for(spec)
    except SpaceError as exc:
        if config.ablation is None:
            hint = ("; only an ablation (a study with an `ablation` section) may hold fixed "
                    "trials outside the search space" if row is not None and row.blocks else "")
            raise StudyError(f"{where}={fixed_trial_name(entry)}: {exc}{hint}") from None
        params = None  # an ablation row may lie outside the search space
    evaluator = None
    if row is not None and row.evaluator:
        merged = deep_merge(config.evaluator.model_dump(mode="json"), row.evaluator)
        evaluator = parse_study({**config.model_dump(mode="json"), "evaluator": merged},
                                f"{where}.evaluator (merged into the study's)").evaluator
    return FixedDesign(fixed_trial_name(entry), spec, params, evaluator,
                      row.published if row else None)


def smallest_networks(config: StudyConfig) -> dict[str, tuple[int, dict[str, Any]]]:
    """The smallest parameter count and the smallest MAC count of the study's (narrowed) space,
    counted as the budget counts (a ``count_classes`` head at ``budget.resolution``), each with
    the parameters that reach it (see :meth:`MobileViTSpace.smallest`)."""
    budget = config.budget
    counting = MobileViTSpace(config.space, num_classes=budget.count_classes,
                              resolution=budget.resolution)
    return counting.smallest(budget.resolution)


def _check_budget_reachable(config: StudyConfig, source: str) -> None:
    budget = config.budget
    if budget.max_params is None and budget.max_macs is None:
        return
    smallest_of = smallest_networks(config)
    for measure, limit, unit in (("params", budget.max_params, "parameters"),
                                 ("macs", budget.max_macs, "MACs")):
        if limit is None:
            continue
        smallest, values = smallest_of[measure]
        if smallest > limit:
            raise StudyError(
                f"{source}: budget.max_{measure}={limit:,}: no network of the space meets it; "
                f"the smallest has {smallest:,} {unit} (block={values['block']}, "
                f"attention={values['attention']}); widen the space or raise the budget")


def load(path: str | Path, settings: Sequence[str] = ()) -> PreparedStudy:
    """Load and prepare a study file, or the stored study of a run folder, with ``--set
    KEY=VALUE`` overrides (``settings``) merged in before validation."""
    path = Path(path)
    if path.is_dir():
        stored = path / CONFIG_FILE
        if not stored.exists():
            raise StudyError(f"{path}: not a run folder (no {CONFIG_FILE}) and not a study file")
        config = load_study(stored, settings)
        return prepare(config, str(stored), base_dir=path, run_dir=path)
    config = load_study(path, settings)
    return prepare(config, str(path), base_dir=path.parent)


def stored_config(run_dir: Path) -> StudyConfig | None:
    """The config a run folder was started with, or None for a new folder."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        return None
    return load_study(path)


def write_config(config: StudyConfig, run_dir: Path) -> None:
    """Store the resolved config in the run folder (what a resumed run checks against)."""
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    data = config.model_dump(mode="json")
    (run_dir / CONFIG_FILE).write_text(
        "# The resolved study this run folder holds; `nas run` on this folder resumes it.\n"
        + yaml.safe_dump(data, sort_keys=False))


def with_overrides(config: StudyConfig, *, trials: int | None = None,
                   workers: int | None = None, seeds: int | None = None) -> StudyConfig:
    """The config with command-line overrides of ``trials``, ``workers.concurrent`` and
    ``seeds`` (an ablation's trials follow its seeds unless ``trials`` is given too)."""
    data = config.model_dump(mode="json")
    if seeds is not None:
        if config.ablation is not None and trials is None:
            data["trials"] = len(config.fixed_trials) * (
                seeds if getattr(config.evaluator, "trial_seeded", True) else 1)
        data["seeds"] = seeds
    if trials is not None:
        data["trials"] = trials
    if workers is not None:
        data["workers"]["concurrent"] = workers
    return parse_study(data, "command line")


def open_storage(config: StudyConfig, run_dir: Path, *, repair: bool = True,
                 on_stale: Any = None) -> Any:
    """The study's Optuna storage: PostgreSQL when ``storage`` is set, else the run's journal.

    ``repair`` drops a torn last journal record (see :func:`repair_journal`); only a writer that
    owns the run may do that: a reader (a report of a running study) could cut a record that
    the runner is still appending. ``on_stale`` (a driver's) turns on PostgreSQL heartbeats
    with the study's ``workers.heartbeat_*`` settings and is called with each trial failed for
    a stopped heartbeat (see :mod:`nas.search.lease`)."""
    import optuna

    if config.storage:
        beats: dict[str, Any] = {}
        if on_stale is not None:
            beats = dict(heartbeat_interval=config.workers.heartbeat_seconds,
                         grace_period=config.workers.heartbeat_grace_seconds,
                         heartbeat_stale_trial_callback=on_stale)
        try:
            return optuna.storages.RDBStorage(config.storage, **beats)
        except ImportError:
            raise StudyError("storage: a postgresql:// URL needs a driver: pip install "
                             "'mobilevit-nas[postgres]'") from None
        except Exception as exc:  # sqlalchemy raises many kinds for a bad URL or server
            raise StudyError(f"storage={config.storage}: cannot connect "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    from nas.study.journal import BatchedJournalStorage

    if repair:
        run_dir.mkdir(parents=True, exist_ok=True)
        repair_journal(run_dir / JOURNAL_FILE)
    return BatchedJournalStorage(str(run_dir / JOURNAL_FILE))


def repair_journal(path: Path) -> bool:
    """Drop an incomplete last record left by a process killed while appending to the journal.

    Optuna reads past such a record but fails once anything is appended after it. The writer
    died before finishing it, so it never took effect. Returns whether anything was dropped.
    """
    if not path.exists():
        return False
    with open(path, "rb+") as f:
        size = f.seek(0, 2)
        if size == 0:
            return False
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return False
        start = max(0, size - (1 << 20))
        f.seek(start)
        tail = f.read()
        keep = start + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        f.truncate(keep)
    return True
