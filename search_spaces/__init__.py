"""Search spaces: define-by-run maps from an Optuna-like trial to a :class:`mobilevit.ArchSpec`.

Depends on :mod:`mobilevit` only (a trial is duck-typed), never on :mod:`nas`.
"""

from search_spaces.mobilevit import DEFAULT_PARAMS, MobileViTSpace, Param, SpaceError

__all__ = ["DEFAULT_PARAMS", "MobileViTSpace", "Param", "SpaceError"]
