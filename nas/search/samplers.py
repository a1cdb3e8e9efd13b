"""Samplers beyond Optuna's own that a study's ``sampler`` section can name."""

from __future__ import annotations

from typing import Any


class GridSampler:
    """Optuna's BruteForceSampler, which under ask/tell cannot call ``study.stop()`` when the
    grid is done: this records that instead (``exhausted``)."""

    def __new__(cls, seed: int) -> Any:
        import optuna

        class Exhaustible(optuna.samplers.BruteForceSampler):
            exhausted = False

            def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
                try:
                    super().after_trial(study, trial, state, values)
                except RuntimeError:  # raised by study.stop() outside optimize()
                    self.exhausted = True

        return Exhaustible(seed=seed)
