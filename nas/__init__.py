"""Hardware-aware search over MobileViT networks: studies, evaluators, latency, results, reports.

The pipeline, one package per stage::

    study file --nas.study--> prepared study --nas.search--> trials, each evaluated by
    nas.evaluators (accuracy) and nas.latency (iPhone latency) --> nas.results --> nas.report

The public API is the six calls below (``import nas`` loads none of the heavy dependencies;
each call imports what it needs)::

    import nas

    study = nas.load_study("studies/under_6m.yaml")      # validated and prepared
    summary = nas.run_study(study)                       # runs or resumes it
    frame = nas.load_trials(study.run_dir)               # one row per trial (pandas)
    optuna_study, config = nas.open_run(study.run_dir)   # the stored Optuna study
    nas.export_trial(study.run_dir, 7, output="best.mlpackage")
    nas.write_report(study.run_dir)                      # the interactive HTML report

Every error meant for a user is a :class:`NasError` (one line, naming what is wrong).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nas.errors import NasError
    from nas.report.page import write_report
    from nas.results.runs import export_trial, load_trials, open_run
    from nas.search.runner import run_study
    from nas.study.prepare import load as load_study

_API = {
    "NasError": ("nas.errors", "NasError"),
    "load_study": ("nas.study.prepare", "load"),
    "run_study": ("nas.search.runner", "run_study"),
    "load_trials": ("nas.results.runs", "load_trials"),
    "open_run": ("nas.results.runs", "open_run"),
    "export_trial": ("nas.results.runs", "export_trial"),
    "write_report": ("nas.report.page", "write_report"),
}

__all__ = ["NasError", "export_trial", "load_study", "load_trials", "open_run", "run_study",
           "write_report"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import nas` (and `nas --help`) does not import torch, Ray or Optuna.
    if name not in _API:
        raise AttributeError(f"module 'nas' has no attribute {name!r}")
    module, attr = _API[name]
    return getattr(importlib.import_module(module), attr)
