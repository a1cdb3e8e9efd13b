"""Reading a study's refine trials: candidates of the final front retrained standalone
(written by :mod:`nas.search.refine`), in the study ``<name>.refine`` of the same storage."""

from __future__ import annotations

from typing import Any

REFINE_SUFFIX = ".refine"


def refine_study(storage: Any, name: str, directions: list[str], *, create: bool) -> Any | None:
    """The refine study of the study ``name`` (None when it has none and ``create`` is false)."""
    import optuna

    try:
        return optuna.load_study(study_name=name + REFINE_SUFFIX, storage=storage)
    except KeyError:
        if not create:
            return None
        return optuna.create_study(study_name=name + REFINE_SUFFIX, storage=storage,
                                   directions=directions)


def refined_by_source(study: Any) -> dict[int, list[Any]]:
    """The refine trials of ``study`` (an Optuna study), by the number of the trial they
    retrained: one per seed (``seeds``), in seed order."""
    refine = refine_study(study._storage, study.study_name, [], create=False)
    if refine is None:
        return {}
    out: dict[int, list[Any]] = {}
    for t in refine.get_trials(deepcopy=False):
        if t.state.name == "COMPLETE" and "refine_of" in t.user_attrs:
            out.setdefault(t.user_attrs["refine_of"], []).append(t)
    for trials in out.values():
        trials.sort(key=lambda t: t.user_attrs.get("seed_index", 0))
    return out


def refined_estimate(trials: list[Any]) -> Any:
    """The retrained accuracy of one candidate over its refine seeds (an
    :class:`nas.results.noise.Estimate`)."""
    from nas.results.noise import estimate

    return estimate([t.user_attrs["accuracy"] for t in trials])
