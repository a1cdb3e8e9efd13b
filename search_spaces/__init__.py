"""Search spaces: define-by-run maps from an Optuna-like trial to a :class:`mobilevit.ArchSpec`.

Depends on :mod:`mobilevit` only (a trial is duck-typed), never on :mod:`nas`.
"""
