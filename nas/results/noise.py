"""Seed noise: a row's accuracy over repeated seeds, ordering verdicts that know their error, and
the chance band of a training that learned nothing.

Pure Python (no scipy, no pandas), so that ``nas status`` can use it and still answer at once.

* :func:`estimate` summarises one row's seeds: mean, standard deviation, and a 95 % interval of
  the mean (Student's t with n - 1 degrees of freedom).
* :func:`separated` says whether two rows' accuracies differ beyond their seeds' noise: Welch's
  t-test at 5 % (two-sided), the test for two means of unequal, estimated variances.
* :func:`pair_verdict` turns that into "same order as the paper", "opposite order" or "within
  noise"; rows of one seed have no noise estimate, so their verdict says so.
* :func:`kendall_tau` and :func:`bootstrap_tau`: rank agreement with the paper, with an
  interval from resampling each row's seeds.
* :func:`chance_ceiling`: the best top-1 a network that guesses would reach on a validation set
  of that size (the 99.5 % quantile of the binomial), below which a trial is flagged.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

# Student's t, 97.5 % quantile (two-sided 95 %), for 1-30 degrees of freedom, rounded up.
_T975 = (12.7063, 4.3027, 3.1825, 2.7765, 2.5706, 2.4470, 2.3647, 2.3061, 2.2622, 2.2282,
         2.2010, 2.1789, 2.1604, 2.1448, 2.1315, 2.1200, 2.1099, 2.1010, 2.0931, 2.0860,
         2.0797, 2.0739, 2.0687, 2.0639, 2.0596, 2.0556, 2.0519, 2.0485, 2.0453, 2.0423)


def t975(df: float) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (a fractional ``df``,
    as Welch's test gives, is rounded down: the conservative side)."""
    if df < 1:
        raise ValueError(f"df={df}: at least 1 degree of freedom")
    k = int(df)
    if k <= len(_T975):
        return _T975[k - 1]
    return 1.95996 + 2.4 / k + 2.8 / k**2  # at most 0.001 above the exact quantile beyond 30


@dataclass(frozen=True)
class Estimate:
    """One row's accuracy over its seeds.

    Attributes:
        values: the seeds' accuracies, in seed order.
    """

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

    @property
    def sd(self) -> float | None:
        """Sample standard deviation; None for fewer than two seeds."""
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def half_width(self) -> float | None:
        """Half the 95 % interval of the mean; None for fewer than two seeds."""
        sd = self.sd
        return None if sd is None else t975(self.n - 1) * sd / math.sqrt(self.n)

    @property
    def interval(self) -> tuple[float, float] | None:
        h = self.half_width
        return None if h is None else (self.mean - h, self.mean + h)

    def text(self, digits: int = 2) -> str:
        """``57.21 ± 1.30`` (the 95 % half-width), or the value alone for one seed."""
        h = self.half_width
        return f"{self.mean:.{digits}f}" + ("" if h is None else f" ± {h:.{digits}f}")


def estimate(values: Sequence[float]) -> Estimate:
    """The estimate of a row from its seeds' accuracies (at least one)."""
    if not values:
        raise ValueError("an estimate needs at least one value")
    return Estimate(tuple(float(v) for v in values))


def separated(a: Estimate, b: Estimate) -> bool | None:
    """Whether ``a`` and ``b`` differ beyond their noise (Welch's t-test, 5 %, two-sided);
    None when either has fewer than two seeds."""
    if a.n < 2 or b.n < 2:
        return None
    va, vb = a.sd ** 2 / a.n, b.sd ** 2 / b.n  # type: ignore[operator]
    diff = abs(a.mean - b.mean)
    if va + vb == 0:  # both without spread: any difference is real
        return diff > 0
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    return diff > t975(max(1.0, df)) * math.sqrt(va + vb)


class PairVerdict(StrEnum):
    """How our order of two rows compares with the paper's."""

    SAME = "same order as the paper"
    OPPOSITE = "opposite order"
    NOISE = "within noise"
    SAME_ONE_SEED = "same order (one seed: noise unknown)"
    OPPOSITE_ONE_SEED = "opposite order (one seed: noise unknown)"


def pair_verdict(paper_a: float, paper_b: float, ours_a: Estimate, ours_b: Estimate, *,
                 higher_is_better: bool = True) -> PairVerdict | None:
    """Our order of rows a and b against the paper's; None when the paper ties them."""
    if paper_a == paper_b:
        return None
    sign = 1 if higher_is_better else -1
    paper_says_a = sign * (paper_a - paper_b) > 0
    we_say_a = sign * (ours_a.mean - ours_b.mean) > 0
    apart = separated(ours_a, ours_b)
    if apart is None:
        return PairVerdict.SAME_ONE_SEED if paper_says_a == we_say_a else \
            PairVerdict.OPPOSITE_ONE_SEED
    if not apart:
        return PairVerdict.NOISE
    return PairVerdict.SAME if paper_says_a == we_say_a else PairVerdict.OPPOSITE


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two equally long sequences; None when either is constant or shorter
    than two."""
    n = len(x)
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx * dy > 0:
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return None if denom == 0 else (concordant - discordant) / denom


def bootstrap_tau(paper: Sequence[float], rows: Sequence[Estimate], *, resamples: int = 2000,
                  seed: int = 0, higher_is_better: bool = True) -> tuple[float, float] | None:
    """A 95 % interval of Kendall's tau between ``paper`` and the rows' means, from resampling
    each row's seeds with replacement (percentile bootstrap, seeded); None unless every row has
    at least two seeds."""
    if len(rows) < 2 or any(r.n < 2 for r in rows):
        return None
    rng = random.Random(seed)
    sign = 1 if higher_is_better else -1
    taus = []
    for _ in range(resamples):
        means = [sum(rng.choices(r.values, k=r.n)) / r.n for r in rows]
        tau = kendall_tau([sign * p for p in paper], [sign * m for m in means])
        taus.append(0.0 if tau is None else tau)
    taus.sort()
    return taus[int(0.025 * (resamples - 1))], taus[int(math.ceil(0.975 * (resamples - 1)))]


def chance_ceiling(classes: int, images: int, quantile: float = 0.995) -> float:
    """Top-1 (%) that a network guessing uniformly among ``classes`` stays at or below with
    probability ``quantile`` on ``images`` validation images (binomial quantile)."""
    if classes < 2 or images < 1:
        raise ValueError(f"classes={classes}, images={images}: need >= 2 classes and an image")
    p = 1.0 / classes
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for k in range(images + 1):
        total += math.exp(math.lgamma(images + 1) - math.lgamma(k + 1)
                          - math.lgamma(images - k + 1) + k * log_p + (images - k) * log_q)
        if total >= quantile:
            return 100.0 * k / images
    return 100.0


def trial_at_chance(accuracy: float | None, provenance: dict | None) -> bool:
    """Whether a trial's accuracy is a top-1 within the chance band of the validation set its
    evaluator's provenance records (``metric``, ``classes``, ``val_images``)."""
    p = provenance or {}
    return p.get("metric", "top1") == "top1" and at_chance(accuracy, p.get("classes"),
                                                           p.get("val_images"))


def at_chance(accuracy: float | None, classes: int | None, images: int | None) -> bool:
    """Whether a top-1 (%) is within the chance band of its validation set (False when the
    class count or the image count is unknown)."""
    if accuracy is None or not classes or classes < 2 or not images:
        return False
    return accuracy <= chance_ceiling(classes, images)
