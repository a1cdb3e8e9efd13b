"""Seed noise: estimates, Welch separation, verdicts and the bootstrap on hand-made rows of known
spread; the chance band; all checked against scipy's exact distributions."""

import random

import pytest
from scipy import stats

from nas.results.noise import (
    PairVerdict,
    at_chance,
    bootstrap_tau,
    chance_ceiling,
    estimate,
    kendall_tau,
    pair_verdict,
    separated,
    t975,
)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 15, 30, 31, 45, 100, 1000])
def test_t_quantile_is_scipy_s_or_just_above(df):
    exact = stats.t.ppf(0.975, df)
    assert 0 <= t975(df) - exact < 1e-3


def test_estimate_of_three_seeds_is_the_t_interval():
    e = estimate([50.0, 52.0, 51.0])
    assert e.n == 3 and e.mean == pytest.approx(51.0) and e.sd == pytest.approx(1.0)
    low, high = stats.t.interval(0.95, 2, loc=51.0, scale=1.0 / 3 ** 0.5)
    assert e.interval == pytest.approx((low, high), abs=1e-3)
    assert e.text() == "51.00 ± 2.48"


def test_one_seed_has_no_interval():
    e = estimate([40.0])
    assert e.sd is None and e.interval is None and e.text() == "40.00"
    with pytest.raises(ValueError):
        estimate([])


@pytest.mark.parametrize("a, b", [
    ([50, 52, 51], [55, 56, 54]),        # a clear order
    ([50, 55, 45], [52, 57, 47]),        # overlapping spread
    ([50, 50.5, 49.5, 50.2], [50.9, 51.4, 50.6, 51.1, 51.0]),
    ([10, 30, 20], [20, 20.5, 19.5]),    # very unequal variances
])
def test_separation_is_welch_s_test_at_five_percent(a, b):
    p = stats.ttest_ind(a, b, equal_var=False).pvalue
    if abs(p - 0.05) > 0.01:  # (the df rounding may move a borderline case)
        assert separated(estimate(a), estimate(b)) == (p < 0.05)


def test_verdicts_on_known_tables():
    clear_lo, clear_hi = estimate([50, 52, 51]), estimate([55, 56, 54])
    # the paper says the second is better, and so do we, beyond noise
    assert pair_verdict(70.0, 72.0, clear_lo, clear_hi) == PairVerdict.SAME
    assert pair_verdict(72.0, 70.0, clear_lo, clear_hi) == PairVerdict.OPPOSITE
    overlap_a, overlap_b = estimate([50, 55, 45]), estimate([52, 57, 47])
    assert pair_verdict(70.0, 72.0, overlap_a, overlap_b) == PairVerdict.NOISE
    tie = estimate([51.0, 51.0, 51.0])
    assert pair_verdict(70.0, 72.0, tie, tie) == PairVerdict.NOISE
    assert pair_verdict(70.0, 70.0, clear_lo, clear_hi) is None  # the paper ties them
    one_a, one_b = estimate([50.0]), estimate([55.0])
    assert pair_verdict(70.0, 72.0, one_a, one_b) == PairVerdict.SAME_ONE_SEED
    assert pair_verdict(72.0, 70.0, one_a, one_b) == PairVerdict.OPPOSITE_ONE_SEED
    # lower is better (latency): the paper's faster row is ours too
    assert pair_verdict(9.0, 12.0, clear_lo, clear_hi, higher_is_better=False) == \
        PairVerdict.SAME


def test_kendall_tau_is_scipy_s_tau_b_with_ties():
    rng = random.Random(3)
    for _ in range(20):
        x = [rng.choice([1, 2, 3, 4]) for _ in range(7)]
        y = [rng.choice([1, 2, 3]) for _ in range(7)]
        ours, exact = kendall_tau(x, y), stats.kendalltau(x, y).statistic
        assert (ours is None and exact != exact) or ours == pytest.approx(exact)


def test_bootstrap_interval_is_narrow_for_a_clear_order_and_wide_for_noise():
    paper = [70.0, 72.0, 74.0, 76.0]
    clear = [estimate([50 + 5 * i + d for d in (-0.3, 0.0, 0.3)]) for i in range(4)]
    noisy = [estimate([50 + 0.5 * i + d for d in (-6.0, 0.0, 6.0)]) for i in range(4)]
    assert bootstrap_tau(paper, clear) == (1.0, 1.0)
    low, high = bootstrap_tau(paper, noisy)
    assert low < 0 < high
    assert bootstrap_tau(paper, noisy) == bootstrap_tau(paper, noisy)  # seeded
    assert bootstrap_tau(paper, [estimate([1.0])] * 4) is None  # one seed: no resampling
    reversed_latency = bootstrap_tau([9.0, 12.0], [estimate([1, 1.1]), estimate([5, 5.1])],
                                     higher_is_better=False)
    assert reversed_latency == (1.0, 1.0)


@pytest.mark.parametrize("classes, images", [(10, 200), (10, 10_000), (1000, 50_000), (2, 31)])
def test_chance_ceiling_is_the_binomial_quantile(classes, images):
    assert chance_ceiling(classes, images) == pytest.approx(
        100 * stats.binom.ppf(0.995, images, 1 / classes) / images)


def test_at_chance_flags_a_guesser_only():
    assert at_chance(10.0, 10, 200) and at_chance(15.5, 10, 200)
    assert not at_chance(17.0, 10, 200)  # the ceiling is 16.0 % on 200 images
    assert not at_chance(None, 10, 200) and not at_chance(10.0, None, 200)
    assert not at_chance(10.0, 10, 0)


def test_the_chance_hint_names_the_likely_cause_of_each_evaluation():
    from nas.results.runs import CHANCE_HINT, chance_hint

    inherited = chance_hint({"inherited": True, "supernet_epochs": 3, "ema": False})
    assert "supernet trained for 3 epoch(s)" in inherited and "EMA" not in inherited
    assert chance_hint({"epochs": 4, "ema": True, "multiscale": None}) == CHANCE_HINT
    plain = chance_hint({"epochs": 3, "train_images": 1600, "ema": False, "multiscale": None})
    assert "3 epoch(s) on 1600 images" in plain and "EMA" not in plain
