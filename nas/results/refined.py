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


def refined_by_source(study: Any) -> dict[int, Any]:
    """The refine trials of ``study`` (an Optuna study), by the number of the trial each
    retrained."""
    refine = refine_study(study._storage, study.study_name, [], create=False)
    if refine is None:
        return {}
    return {t.user_attrs["refine_of"]: t for t in refine.get_trials(deepcopy=False)
            if t.state.name == "COMPLETE" and "refine_of" in t.user_attrs}
