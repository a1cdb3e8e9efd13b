"""Which subnets a supernet trains: the sandwich rule under the study's budget.

Each training step runs the largest subnet, the smallest and ``n`` random ones (BigNAS,
AttentiveNAS). "Largest" and "smallest" are those of the space *under the budget*: the subnets a
search will look at, not the space's corners (a supernet whose largest subnet has 49 M
parameters would spend its steps on networks no study may pick).

* smallest: the space's smallest network by parameter count (:meth:`MobileViTSpace.smallest`);
* largest: a budget-maximal network grown evenly from the monotone minimum (every monotone
  parameter one value up per round, in random order, while the budget allows), from the smallest
  network's design and from random designs; the one that uses the most of the budget (parameter
  and MAC fractions of the limits) is kept;
* random: every parameter uniform over its values, redrawn until the budget gate accepts it.

Draws are functions of (seed, step, index), so a resumed training draws the same subnets.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from mobilevit import ArchSpec, SpecError
from nas.study.budget import BudgetGate
from nas.supernet.network import SupernetError
from search_spaces import MobileViTSpace

_TRIES = 2000  # random draws before a budget that (nearly) nothing meets is an error


@dataclass
class SandwichSampler:
    """The subnets of one training step (see the module docstring).

    Args:
        space: the supernet's space.
        gate: the study's budget gate.
        seed: the training seed.
        restarts: random orders tried when growing the largest subnet.
    """

    space: MobileViTSpace
    gate: BudgetGate
    seed: int = 0
    restarts: int = 8
    _fits: dict[str, bool] = field(default_factory=dict, repr=False)

    def fits(self, spec: ArchSpec) -> bool:
        """Whether ``spec`` is within the budget."""
        key = spec.spec_id
        if key not in self._fits:
            self._fits[key] = self.gate.check(spec).feasible
        return self._fits[key]

    def _build(self, values: Mapping[str, Any]) -> ArchSpec | None:
        try:
            return self.space.build(values)
        except SpecError:
            return None

    def _smallest_values(self) -> dict[str, Any]:
        # Counted as the budget counts: its classifier width, at its resolution.
        counting = copy.copy(self.space)
        counting.num_classes = self.gate.budget.count_classes
        return dict(counting.smallest(self.gate.budget.resolution)["params"][1])

    @cached_property
    def smallest(self) -> ArchSpec:
        """The space's smallest network by parameters (SupernetError if over the budget)."""
        values = self._smallest_values()
        spec = self._build(values)
        if spec is None or not self.fits(spec):
            raise SupernetError("budget: even the space's smallest network is over it")
        return spec

    @cached_property
    def largest(self) -> ArchSpec:
        """A budget-maximal network with the most parameters found (see the module docstring)."""
        self.smallest  # noqa: B018  (raises when nothing of the space fits the budget)
        rng = random.Random(f"largest/{self.seed}")
        params = self.space.params
        monotone = [n for n, p in params.items() if p.monotone]
        best: tuple[float, ArchSpec] | None = None
        for restart in range(self.restarts):
            # The first restart grows the smallest network; the others start from the monotone
            # minimum with random design choices (a larger network may need another design).
            values = self._smallest_values()
            if restart:
                values.update({n: rng.choice(p.values) for n, p in params.items()
                               if not p.monotone})
                values.update({n: min(params[n].values) for n in monotone})
                spec = self._build(values)
                if spec is None or not self.fits(spec):
                    continue
            # Balanced growth: every monotone parameter one value up per round while the budget
            # allows; growing one at a time to its limit would spend the budget on one dimension.
            grown = True
            while grown:
                grown = False
                rng.shuffle(monotone)
                for name in monotone:
                    choices = sorted(params[name].values)
                    at = choices.index(values[name])
                    if at + 1 < len(choices):
                        spec = self._build({**values, name: choices[at + 1]})
                        if spec is not None and self.fits(spec):
                            values[name] = choices[at + 1]
                            grown = True
            spec = self._build(values)
            assert spec is not None and self.fits(spec)
            size = self._size(spec)
            if best is None or size > best[0]:
                best = (size, spec)
        assert best is not None  # the first restart always succeeds
        return best[1]

    def _size(self, spec: ArchSpec) -> float:
        """How much of the budget ``spec`` uses: the sum of its parameter and MAC fractions of
        the limits (its parameter count when the budget sets neither)."""
        params, macs = self.gate.counts(spec)
        budget = self.gate.budget
        if budget.max_params is None and budget.max_macs is None:
            return float(params)
        return sum(value / limit for value, limit in ((params, budget.max_params),
                                                      (macs, budget.max_macs)) if limit)

    def random(self, step: int, index: int) -> ArchSpec:
        """Random subnet ``index`` of training step ``step``, within the budget."""
        rng = random.Random(f"random/{self.seed}/{step}/{index}")
        for _ in range(_TRIES):
            spec = self._build({n: rng.choice(p.values) for n, p in self.space.params.items()})
            if spec is not None and self.fits(spec):
                return spec
        raise SupernetError(f"budget: {_TRIES} random networks of the space were all over it; "
                            "narrow the space to the budget's region")

    def step(self, step: int, count: int) -> list[ArchSpec]:
        """The subnets of training step ``step``: the largest first (the teacher), the smallest,
        then ``count`` random ones."""
        return [self.largest, self.smallest, *(self.random(step, i) for i in range(count))]
