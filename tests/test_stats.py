"""tables.stats: every expected value is worked out by hand here (the arithmetic in comments),
or, for power, computed independently of the module (a noncentral t written as an integral).

With 3 seeds (2 degrees of freedom) Student's t has a closed-form CDF,
F_2(t) = 1/2 + t / (2 sqrt(t^2 + 2)), so a two-sided p-value is p = 1 - |t| / sqrt(t^2 + 2).
"""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy import stats as sps

from tables.stats import (
    DOES_NOT_HOLD,
    HOLDS,
    IDENTICAL,
    NO_SPREAD,
    NO_TEST,
    NOT_SHOWN,
    benjamini_hochberg,
    best,
    detectable_difference,
    holm,
    judge_family,
    paired,
    seeds_needed,
    surviving,
    with_q,
)

ELTA = [0.70, 0.72, 0.71]


def _minus(values: list[float], differences: list[float]) -> list[float]:
    """The reference whose paired differences with `values` are `differences`."""
    return [v - d for v, d in zip(values, differences, strict=True)]


def _p2(t: float) -> float:
    """Two-sided p-value of t with 2 degrees of freedom, from the closed-form CDF."""
    return 1 - abs(t) / math.sqrt(t * t + 2)


def _power(delta: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided one-sample t-test, independently of scipy's noncentral t: with
    T = (Z + delta sqrt(n)) / sqrt(V / df), Z normal, V chi-square(df), df = n - 1,
    P(|T| > c) = E_V[Phi(nc - c sqrt(V / df)) + Phi(-nc - c sqrt(V / df))], integrated over V."""
    df = n - 1
    c = sps.t.ppf(1 - alpha / 2, df)
    nc = delta * math.sqrt(n)

    def integrand(v: float) -> float:
        s = c * math.sqrt(v / df)
        return (sps.norm.cdf(nc - s) + sps.norm.cdf(-nc - s)) * sps.chi2.pdf(v, df)

    return sum(integrate.quad(integrand, a, b)[0] for a, b in [(0, df), (df, math.inf)])


def test_holm_by_hand():
    # sorted: 0.005 (#3), 0.01 (#0), 0.03 (#2), 0.04 (#1); m = 4, multipliers 4, 3, 2, 1:
    # 0.02, 0.03, 0.06, 0.04 -> running maximum 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_benjamini_hochberg_by_hand():
    # sorted p_(k) * m / k: 0.005 * 4/1 = 0.02, 0.01 * 4/2 = 0.02, 0.03 * 4/3 = 0.04,
    # 0.04 * 4/4 = 0.04 -> running minimum from the largest: 0.02, 0.02, 0.04, 0.04
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_a_missing_p_value_is_not_a_test_and_not_counted():
    # m = 2. Holm: 0.02 * 2 = 0.04, then max(0.04, 0.03 * 1) = 0.04.
    # BH: 0.02 * 2/1 = 0.04, 0.03 * 2/2 = 0.03 -> minimum from the largest: 0.03, 0.03
    h, q = holm([0.02, math.nan, 0.03]), benjamini_hochberg([0.02, math.nan, 0.03])
    assert h[0] == pytest.approx(0.04) and h[2] == pytest.approx(0.04) and math.isnan(h[1])
    assert q[0] == pytest.approx(0.03) and q[2] == pytest.approx(0.03) and math.isnan(q[1])


def test_interval_test_and_not_shown_by_hand():
    # differences 0.1, 0.2, 0.3: mean 0.2; deviations -0.1, 0, 0.1: sum of squares 0.02,
    # / (n - 1 = 2) = 0.01, sd 0.1; se = 0.1 / sqrt(3); t = 0.2 / se = 2 sqrt(3), t^2 = 12;
    # p = 1 - sqrt(12 / 14) = 0.0742 >= 0.05: not shown
    c = paired([0.5, 0.6, 0.9], [0.4, 0.4, 0.6], "plcc", "base")
    se = 0.1 / math.sqrt(3)
    half = sps.t.ppf(0.975, 2) * se  # 4.3027 * 0.057735 = 0.24841
    assert c.n == 3 and c.mean_diff == pytest.approx(0.2) and c.sd == pytest.approx(0.1)
    assert c.t == pytest.approx(2 * math.sqrt(3))
    assert c.p == pytest.approx(1 - math.sqrt(12 / 14))
    assert (c.ci_low, c.ci_high) == pytest.approx((0.2 - half, 0.2 + half))
    assert c.ci_low == pytest.approx(-0.04841, abs=1e-5)
    assert c.verdict == NOT_SHOWN and c.seeds_for_paper is None  # no paper difference given


def test_the_detectable_difference_has_80_percent_power():
    # sd 0.1, 3 seeds: at detectable / sd the power must be 0.80 (solved, not looked up)
    detectable = detectable_difference(0.1, 3)
    assert _power(detectable / 0.1, 3) == pytest.approx(0.80, abs=1e-3)
    # the same through scipy's noncentral t, both tails: P(T > c) + P(T < -c)
    c, nc = sps.t.ppf(0.975, 2), detectable / 0.1 * math.sqrt(3)
    assert sps.nct.sf(c, 2, nc) + sps.nct.cdf(-c, 2, nc) == pytest.approx(0.80, abs=1e-3)
    # it scales with the spread, and 2 seeds (1 dof, where statsmodels' own power is NaN at
    # large effects) still solve to 80 %
    assert detectable_difference(0.2, 3) == pytest.approx(2 * detectable)
    assert _power(detectable_difference(1.0, 2), 2) == pytest.approx(0.80, abs=1e-3)
    # more seeds detect less: 5 seeds at sd 0.02
    five = detectable_difference(0.02, 5)
    assert _power(five / 0.02, 5) == pytest.approx(0.80, abs=1e-3) and five / 0.02 < 2
    # a not-shown comparison carries the detectable difference of its own sd and n
    c = paired([0.5, 0.6, 0.9], [0.4, 0.4, 0.6])
    assert _power(c.detectable / c.sd, 3) == pytest.approx(0.80, abs=1e-3)
    # where statsmodels' solver answers wrongly (2 seeds at 90 %: 10.00001, power 0.73; 4 seeds
    # at alpha 0.01: 3.59, power 0.77) the answer is checked and solved again
    assert _power(detectable_difference(1.0, 2, power=0.9), 2) == pytest.approx(0.9, abs=1e-3)
    at_1 = detectable_difference(1.0, 4, alpha=0.01)
    assert _power(at_1, 4, alpha=0.01) == pytest.approx(0.80, abs=1e-3)
    with pytest.raises(ValueError):
        detectable_difference(0.1, 1)


def test_seeds_needed_is_the_fewest_with_80_percent_power():
    # paper difference 0.2 at sd 0.1: standardized 2; power with 4 seeds 0.755, with 5 0.909
    assert _power(2.0, 4) < 0.8 <= _power(2.0, 5)
    assert seeds_needed(0.2, 0.1) == 5
    # standardized 11: 2 seeds give 0.778 < 0.8 (statsmodels' solver answers 2.0 here), 3 do
    assert _power(11.0, 2) < 0.8 <= _power(11.0, 3)
    assert seeds_needed(11.0, 1.0) == 3
    # standardized 12: 2 seeds already give 0.817 (statsmodels' solver fails here: NaN)
    assert _power(12.0, 2) >= 0.8 and seeds_needed(12.0, 1.0) == 2
    # standardized 0.5: 33 seeds 0.795, 34 seeds 0.808
    assert _power(0.5, 33) < 0.8 <= _power(0.5, 34) and seeds_needed(0.05, 0.1) == 34
    # other levels: the fewest seeds n with power(n - 1) < target <= power(n), scanned here
    for delta, alpha, power in [(1.5, 0.01, 0.8), (3.0, 0.05, 0.95), (0.8, 0.01, 0.9)]:
        n = seeds_needed(delta, 1.0, alpha, power)
        assert _power(delta, n - 1, alpha) < power <= _power(delta, n, alpha)
    # a difference of 0, or in the other direction, is never detected in the claim's favour
    assert seeds_needed(0.0, 0.1) == math.inf and seeds_needed(-0.2, 0.1) == math.inf


def test_a_not_shown_comparison_counts_seeds_for_the_papers_own_difference():
    # differences 0.1, 0.2, 0.3 (sd 0.1, not shown, above); the paper's 0.2 needs 5 seeds
    c = paired([0.5, 0.6, 0.9], [0.4, 0.4, 0.6], paper_diff=0.2)
    assert c.verdict == NOT_SHOWN and c.seeds_for_paper == 5
    # a lower-is-better metric claimed better: the paper's -0.2 goes the claimed way (5 seeds),
    # the paper's +0.2 goes the other way (never)
    down = paired([0.4, 0.4, 0.6], [0.5, 0.6, 0.9], higher_is_better=False, paper_diff=-0.2)
    assert down.expected == -1 and down.verdict == NOT_SHOWN and down.seeds_for_paper == 5
    up = paired([0.4, 0.4, 0.6], [0.5, 0.6, 0.9], higher_is_better=False, paper_diff=0.2)
    assert up.seeds_for_paper == math.inf


def test_directions_lower_is_better_and_a_worse_claim():
    # differences -0.10, -0.09, -0.11: mean -0.1, sd 0.01, |t| = 10 sqrt(3), t^2 = 300,
    # p = 1 - sqrt(300 / 302) = 0.0033
    lower, higher = [0.40, 0.42, 0.41], [0.50, 0.51, 0.52]
    c = paired(lower, higher, "mae_l", higher_is_better=False)
    assert c.p == pytest.approx(1 - math.sqrt(300 / 302)) and c.verdict == HOLDS
    assert math.isnan(c.detectable) and c.seeds_for_paper is None  # only for a not shown
    assert paired(higher, lower, "mae_l", higher_is_better=False).verdict == DOES_NOT_HOLD
    worse = paired(higher, lower, "mae_m", higher_is_better=False, better=False)
    assert worse.verdict == HOLDS


def test_a_best_claim_with_a_rival_above_does_not_hold():
    # vs a: differences 0.09, 0.10, 0.11 -> p = 1 - sqrt(300/302) = 0.0033168
    # vs b: differences -0.11, -0.10, -0.09 -> the same p, the other way
    # vs c: differences 0.05, -0.03, 0.01: mean 0.01, sd 0.04, t = sqrt(3)/4, t^2 = 0.1875,
    #       p = 1 - sqrt(0.1875 / 2.1875) = 0.70723
    # Holm, m = 3: 0.0033168 * 3 = 0.0099504, * 2 = 0.0066336 -> 0.0099504; c: 0.70723
    a, b, c = (
        _minus(ELTA, [0.09, 0.10, 0.11]),
        _minus(ELTA, [-0.11, -0.10, -0.09]),
        _minus(ELTA, [0.05, -0.03, 0.01]),
    )
    family = [
        paired(ELTA, rival, "plcc", name) for name, rival in zip("abc", (a, b, c), strict=True)
    ]
    (result,) = best(family)
    p = 1 - math.sqrt(300 / 302)
    assert [x.p_holm for x in result.comparisons] == pytest.approx([3 * p, 3 * p, 0.70723], 1e-4)
    assert [x.verdict for x in result.comparisons] == [HOLDS, DOES_NOT_HOLD, NOT_SHOWN]
    assert result.verdict == DOES_NOT_HOLD and result.beaten_by == ("b",)
    assert result.strongest == "b" and result.against.mean_diff == pytest.approx(-0.10)
    # without b: a holds, c is not shown -> not shown as the best; Holm, m = 2:
    # 0.0033168 * 2 = 0.0066336; max(0.0066336, 0.70723) = 0.70723
    (without_b,) = best([family[0], family[2]])
    assert [x.p_holm for x in without_b.comparisons] == pytest.approx([2 * p, 0.70723], 1e-4)
    assert without_b.verdict == NOT_SHOWN and without_b.strongest == "c"


def test_a_best_claim_holds_over_every_rival_and_names_the_closest():
    # vs a: differences 0.09, 0.10, 0.11 (p 0.0033168); vs b: 0.19, 0.20, 0.21 (sd 0.01,
    # t = 20 sqrt(3), t^2 = 1200, p = 1 - sqrt(1200 / 1202) = 0.000832); Holm, m = 2:
    # 0.000832 * 2 = 0.001664, then max(0.001664, 0.0033168) = 0.0033168: both hold
    a, b = _minus(ELTA, [0.09, 0.10, 0.11]), _minus(ELTA, [0.19, 0.20, 0.21])
    (result,) = best([paired(ELTA, a, "srcc", "a"), paired(ELTA, b, "srcc", "b")])
    assert result.verdict == HOLDS and result.beaten_by == ()
    assert result.strongest == "a"  # the smaller advantage, 0.10 < 0.20
    assert result.comparisons[1].p_holm == pytest.approx(2 * (1 - math.sqrt(1200 / 1202)))


def test_holm_within_a_best_claim_turns_two_marginal_wins_into_not_shown():
    # vs a: differences 0.02, 0.03, 0.04 (mean 0.03, sd 0.01); vs b: 0.04, 0.06, 0.08 (mean
    # 0.06, sd 0.02): both t = 3 sqrt(3), t^2 = 27, p = 1 - sqrt(27 / 29) = 0.0351 < 0.05 alone;
    # Holm, m = 2: 0.0351 * 2 = 0.0702 and max(0.0702, 0.0351) = 0.0702: neither holds
    a, b = _minus(ELTA, [0.02, 0.03, 0.04]), _minus(ELTA, [0.04, 0.06, 0.08])
    alone = paired(ELTA, a, "plcc", "a")
    assert alone.p == pytest.approx(1 - math.sqrt(27 / 29)) and alone.verdict == HOLDS
    (result,) = best([alone, paired(ELTA, b, "plcc", "b")])
    p_holm = 2 * (1 - math.sqrt(27 / 29))
    assert [x.p_holm for x in result.comparisons] == pytest.approx([p_holm, p_holm])
    assert result.verdict == NOT_SHOWN and result.strongest == "a"


def test_a_family_spans_metrics_and_rivals():
    # the same two marginal comparisons (p 0.0351 each), one per metric, one family: m = 2
    a = _minus(ELTA, [0.02, 0.03, 0.04])
    judged = judge_family([paired(ELTA, a, "plcc", "a"), paired(ELTA, a, "srcc", "a")])
    assert [c.p_holm for c in judged] == pytest.approx([2 * (1 - math.sqrt(27 / 29))] * 2)
    assert [c.verdict for c in judged] == [NOT_SHOWN, NOT_SHOWN]
    assert judge_family(judged) == judged  # idempotent
    results = best([paired(ELTA, a, "plcc", "a"), paired(ELTA, a, "srcc", "a")])
    assert [r.metric for r in results] == ["plcc", "srcc"]


def test_zero_spread_is_never_significant():
    # 0.7 - 0.6, 0.8 - 0.7, 0.9 - 0.8 are 0.1 up to rounding (spread ~1e-17): no spread
    c = paired([0.7, 0.8, 0.9], [0.6, 0.7, 0.8], "plcc")
    assert c.verdict == NO_SPREAD and c.mean_diff == pytest.approx(0.1)
    assert math.isnan(c.t) and math.isnan(c.p) and math.isnan(c.ci_low)
    same = paired([0.7, 0.8, 0.9], [0.7, 0.8, 0.9])
    assert same.verdict == IDENTICAL and same.mean_diff == 0 and math.isnan(same.p)
    # a spread of 1e-9 is real: differences 0.1, 0.1, 0.1 + 1e-9 are tested (and hold)
    tested = paired([0.1, 0.1, 0.1 + 1e-9], [0.0, 0.0, 0.0])
    assert tested.verdict == HOLDS and tested.p < 1e-6
    # not a test, so not counted in Holm's m: the marginal p 0.0351 stays 0.0351 and holds
    a = _minus(ELTA, [0.02, 0.03, 0.04])
    judged = judge_family([c, paired(ELTA, a, "plcc", "a")])
    assert judged[0].verdict == NO_SPREAD and math.isnan(judged[0].p_holm)
    assert judged[1].p_holm == pytest.approx(1 - math.sqrt(27 / 29)) and judged[1].verdict == HOLDS


def test_q_values_over_the_report_and_the_verdicts_that_survive():
    # p: 0.0033168 (holds), 0.035099 (holds alone), 0.074180 (not shown), no spread (no p);
    # BH over m = 3: 0.0033168 * 3 = 0.0099504; 0.035099 * 3/2 = 0.052649; 0.074180 * 3/3;
    # minima from the largest leave them as they are: only the first survives q < 0.05
    report = with_q(
        [
            paired(ELTA, _minus(ELTA, [0.09, 0.10, 0.11])),
            paired(ELTA, _minus(ELTA, [0.02, 0.03, 0.04])),
            paired([0.5, 0.6, 0.9], [0.4, 0.4, 0.6]),
            paired([0.7, 0.8, 0.9], [0.6, 0.7, 0.8]),
        ]
    )
    q = [c.q_bh for c in report]
    expected = [3 * (1 - math.sqrt(300 / 302)), 1.5 * (1 - math.sqrt(27 / 29))]
    assert q[:2] == pytest.approx(expected) and q[2] == pytest.approx(1 - math.sqrt(12 / 14))
    assert math.isnan(q[3])
    assert [c.verdict for c in report[:2]] == [HOLDS, HOLDS]
    assert surviving(report) == 1


def test_pairing_by_seed_and_by_position():
    # Series pair on the seed index: seeds 1 and 2 only, differences 0.2 and 0.3 (and a NaN
    # seed is dropped)
    row = pd.Series([0.7, 0.8, 0.9, math.nan], index=[0, 1, 2, 3])
    reference = pd.Series([0.6, 0.6, 0.5], index=[1, 2, 3])
    c = paired(row, reference)
    assert c.n == 2 and c.mean_diff == pytest.approx(0.25)
    assert paired(np.array([0.7, 0.8]), [0.6, 0.6]).mean_diff == pytest.approx(0.15)
    one = paired([0.7], [0.6])
    assert one.verdict == NO_TEST and one.mean_diff == pytest.approx(0.1) and math.isnan(one.p)
    assert paired([], []).verdict == NO_TEST
    with pytest.raises(ValueError):
        paired([0.7, 0.8], [0.6])


def test_only_verdicts_count_as_surviving_not_small_q_values():
    # one family of two marginal wins (p 0.035099 each, Holm 0.070198: not shown) and two
    # families of one strong win each (p 0.0033168: holds). BH over m = 4, sorted:
    # 0.0033168 * 4/1 = 0.013267, 0.0033168 * 4/2 = 0.0066336, 0.035099 * 4/3 = 0.046799,
    # 0.035099 * 4/4 = 0.035099 -> minima from the largest: 0.0066336, 0.0066336, 0.035099,
    # 0.035099. The not-shown pair has q < 0.05 but no verdict to survive: 2 survive.
    marginal = judge_family(
        [
            paired(ELTA, _minus(ELTA, [0.02, 0.03, 0.04]), "plcc", "a"),
            paired(ELTA, _minus(ELTA, [0.04, 0.06, 0.08]), "plcc", "b"),
        ]
    )
    strong = [paired(ELTA, _minus(ELTA, [0.09, 0.10, 0.11]), "srcc", r) for r in "cd"]
    report = with_q([*marginal, *strong])
    p_weak, p_strong = 1 - math.sqrt(27 / 29), 1 - math.sqrt(300 / 302)
    assert [c.q_bh for c in report] == pytest.approx([p_weak] * 2 + [2 * p_strong] * 2)
    assert [c.verdict for c in report] == [NOT_SHOWN, NOT_SHOWN, HOLDS, HOLDS]
    assert surviving(report) == 2
