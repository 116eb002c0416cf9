"""A/B statistics against independent computations: the chi-square of the 2x2 table, Evan Miller's
closed form for P(B > A), simulated experiments for power, Monte Carlo draws for prob_best."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adserve.abtest import Arm, allocation, needed_impressions, prob_best, two_proportion_p, verdicts


def chi_square_p(clicks_a, shown_a, clicks_b, shown_b):
    """Pearson's chi-square of the 2x2 table (1 degree of freedom), by hand: the same test as z^2."""
    table = [[clicks_a, shown_a - clicks_a], [clicks_b, shown_b - clicks_b]]
    total = shown_a + shown_b
    cols = [clicks_a + clicks_b, total - clicks_a - clicks_b]
    chi2 = sum((table[r][c] - [shown_a, shown_b][r] * cols[c] / total) ** 2 / ([shown_a, shown_b][r] * cols[c] / total)
               for r in range(2) for c in range(2))
    return math.erfc(math.sqrt(chi2 / 2))  # survival of chi-square(1)


def miller_b_beats_a(a: Arm, b: Arm) -> float:
    """Exact P(p_B > p_A) for Beta(1+clicks, 1+misses) posteriors (Evan Miller's sum over B's clicks)."""
    alpha_a, beta_a = 1 + a.clicks, 1 + a.impressions - a.clicks
    alpha_b, beta_b = 1 + b.clicks, 1 + b.impressions - b.clicks

    def log_beta(x, y):
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    return sum(math.exp(log_beta(alpha_a + i, beta_a + beta_b) - math.log(beta_b + i)
                        - log_beta(1 + i, beta_b) - log_beta(alpha_a, beta_a)) for i in range(alpha_b))


@pytest.mark.parametrize("counts", [(100, 1000, 130, 1000), (3, 250, 9, 300), (40, 5000, 41, 5100)])
def test_p_value_matches_the_chi_square_of_the_table(counts):
    assert two_proportion_p(*counts) == pytest.approx(chi_square_p(*counts), rel=1e-9)


def test_p_value_is_none_without_anything_to_compare():
    assert two_proportion_p(0, 0, 5, 100) is None
    assert two_proportion_p(0, 100, 0, 200) is None  # no click anywhere: no variance


@pytest.mark.parametrize("a,b", [(Arm(100, 3), Arm(120, 7)), (Arm(5000, 60), Arm(5000, 45)),
                                 (Arm(20, 0), Arm(30, 1)), (Arm(100_000, 2010), Arm(100_000, 2000))])
def test_prob_best_of_two_matches_the_closed_form(a, b):
    assert prob_best([a, b])[1] == pytest.approx(miller_b_beats_a(a, b), abs=2e-4)


def test_prob_best_of_three_matches_monte_carlo_and_sums_to_one():
    arms = [Arm(800, 20), Arm(900, 31), Arm(700, 22)]
    rng = np.random.default_rng(7)
    draws = np.stack([rng.beta(1 + a.clicks, 1 + a.impressions - a.clicks, 400_000) for a in arms])
    simulated = np.bincount(draws.argmax(axis=0), minlength=3) / draws.shape[1]
    best = prob_best(arms)
    assert sum(best) == pytest.approx(1.0, abs=1e-12)
    assert best == pytest.approx(list(simulated), abs=4e-3)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_identical_variants_share_equally(k):
    assert prob_best([Arm(1000, 25)] * k) == pytest.approx([1 / k] * k, abs=1e-5)
    assert prob_best([Arm(0, 0)] * k) == pytest.approx([1 / k] * k, abs=1e-5)


def test_needed_impressions_is_the_textbook_size_and_gives_80_percent_power():
    assert needed_impressions(0.10, 0.12) == 3841  # 10% vs 12%: the usual calculators' 3,841
    n = needed_impressions(0.02, 0.026)
    rng = np.random.default_rng(11)
    a, b = rng.binomial(n, 0.02, 4000), rng.binomial(n, 0.026, 4000)
    power = np.mean([two_proportion_p(x, n, y, n) < 0.05 for x, y in zip(a, b)])
    assert power == pytest.approx(0.80, abs=0.03)
    assert needed_impressions(0.05, 0.05) is None


def test_verdicts_say_what_is_needed_only_while_too_small_to_tell():
    small = verdicts([Arm(200, 4), Arm(200, 6)])
    assert all(v.p_value > 0.05 and v.needed_impressions > 200 for v in small)
    assert small[0].needed_impressions == needed_impressions(4 / 200, 6 / 200)
    clear = verdicts([Arm(20_000, 200), Arm(20_000, 320)])
    assert all(v.p_value < 0.05 and v.needed_impressions is None for v in clear)
    assert clear[1].prob_best > 0.99


def test_allocation_floors_every_variant_and_sums_to_one():
    shares = allocation([Arm(20_000, 200), Arm(20_000, 320), Arm(20_000, 100)], min_share=0.1)
    assert min(shares) >= 0.1 - 1e-12 and sum(shares) == pytest.approx(1.0)
    assert shares[1] == pytest.approx(0.8, abs=1e-3)
    assert allocation([Arm(0, 0), Arm(0, 0)], min_share=0.5) == pytest.approx([0.5, 0.5])
