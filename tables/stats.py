"""Paired comparisons over seeds for the claim checker: tests, intervals, multiplicity, power.

Two rows run with the same seed share the data order, the initial weights and the pool, so a
comparison pairs them seed by seed. For the n seeds both rows have (pandas Series: aligned on
the index; other sequences: by position; a pair with a NaN is dropped), d_i = row_i - ref_i and
  mean     d_bar = sum_i d_i / n
  spread   s     = sqrt(sum_i (d_i - d_bar)^2 / (n - 1))
  test     t     = d_bar / (s / sqrt(n)),   p = 2 (1 - F_{n-1}(|t|))     (= scipy.stats.ttest_rel)
  interval d_bar -/+ F_{n-1}^-1(1 - (1 - level) / 2) s / sqrt(n),   level = 0.95
where F_k is the CDF of Student's t with k degrees of freedom. The interval is per comparison
(not adjusted), so it can exclude 0 while the Holm-adjusted verdict is "not shown".

Zero spread. With s <= SPREAD_TOL * scale, scale = max(1, max_i |row_i|, max_i |ref_i|), the
differences are equal up to the rounding of the subtraction (about 1e-16 * scale each), and t
would be d_bar / 0: not a test result, however many seeds. Such a comparison has no t, p or
interval. It is "identical" when also |d_bar| <= SPREAD_TOL * scale (the rows agree on every
seed), and "no spread" otherwise: a constant nonzero difference is reported with its size but
never as significant, since a t-test cannot weigh it (with n - 1 degrees of freedom and no
observed variation there is no estimate of the noise it should be compared with).
Fewer than 2 paired seeds: "no test" (mean_diff is the single difference, or NaN without one).

Verdicts. A claim says which way d_bar should go: expected = +1 when it predicts row > ref
(higher is better and the claim says better, or lower is better and it says worse), else -1.
Each claim is one family: its metrics x its rivals. Within a family the p-values are adjusted
by Holm's step-down method (over the comparisons that have a p-value; those without one are
not tests and do not count in m), and a comparison
  holds          when p_holm < ALPHA and sign(d_bar) = expected,
  does not hold  when p_holm < ALPHA and sign(d_bar) = -expected,
  is not shown   otherwise (not shown with these seeds, not absent).
  Holm:  p_(1) <= ... <= p_(m);   p_holm_(k) = max_{j <= k} min(1, (m - j + 1) p_(j)).
Over all the tests of a report, Benjamini-Hochberg q-values bound the false discovery rate; the
report counts the verdicts ("holds" or "does not hold") that survive at q < ALPHA:
  BH:    q_(k) = min_{j >= k} min(1, m p_(j) / j).
Both come from statsmodels.stats.multitest.multipletests ("holm", "fdr_bh").

"Best" claims (a row against every other row of a table): per metric, the row is best
("holds") when every rival comparison holds after Holm over the claim's family, it "does not
hold" when some rival is significantly better (those rivals are named), it is "no test" when
no comparison has one, and "not shown" otherwise. The line names the strongest rival by mean:
the one with the smallest expected * d_bar.

Power, for a "not shown" (two-sided ALPHA = 0.05, power 0.8, one-sample t on the differences;
the noise is taken to be the observed s). With c = F_{n-1}^-1(1 - ALPHA / 2) and T ~ noncentral
t with n - 1 degrees of freedom and noncentrality delta sqrt(n),
  power(delta, n) = P(T > c) + P(T < -c),
  detectable      = delta* s  with power(delta*, n) = 0.8   (the smallest difference these
                    seeds detect 4 times in 5 at the observed spread),
  seeds_for_paper = the smallest n >= 2 with power(e / s, n) >= 0.8, where e is the paper's
                    own difference in the claimed direction (expected * paper_diff); inf when
                    e <= 0 (the paper's difference is 0 or goes the other way) or past 1e15
                    seeds; None when no paper difference was given.
Both solve with statsmodels.stats.power.TTestPower().solve_power, and its answer is kept only
when t_power below gives the target power there within 1e-6. With few seeds and large effects
scipy's noncentral t CDF returns NaN for the lower tail, and statsmodels then returns NaN or,
silently, a wrong root (2 seeds at power 0.9: delta 10.00001, whose power is 0.73; 4 seeds at
alpha 0.01: 3.59, power 0.77; the nobs for delta 11: 2.0, power 0.78). A bracketing root
finder on t_power (which writes P(T < -c) as its mirror image, the upper tail at -delta,
finite there) then takes over. Seeds are rounded up, then checked at n - 1 and n.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import optimize, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.tools import sm_exceptions  # noqa: F401  its warning filters, before ours

ALPHA = 0.05  # two-sided, for verdicts (Holm), q-values (BH) and power
POWER = 0.8  # for the detectable difference and the seeds needed
LEVEL = 0.95  # confidence intervals
SPREAD_TOL = 1e-12  # relative to the values' scale: below it the differences have no spread
MAX_SEEDS = 1e15  # seeds_needed: beyond this, inf

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_SHOWN = "not shown"
IDENTICAL = "identical"
NO_SPREAD = "no spread"
NO_TEST = "no test"

Values = Sequence[float] | np.ndarray | pd.Series


@dataclass(frozen=True)
class Comparison:
    """One metric of a row against one reference row over paired seeds (floats: NaN when not
    applicable). p_holm and the verdict are within a family (paired: a family of one)."""

    metric: str
    rival: str  # the reference row
    n: int  # paired seeds
    mean_diff: float  # d_bar, row - reference, in the metric's units
    sd: float  # s, the spread of the differences
    ci_low: float
    ci_high: float
    t: float
    p: float  # two-sided, unadjusted
    p_holm: float  # Holm-adjusted within the claim's family
    q_bh: float  # Benjamini-Hochberg over the report (with_q); NaN until then
    verdict: str  # holds | does not hold | not shown | identical | no spread | no test
    detectable: float  # "not shown" only: smallest difference detected at POWER
    seeds_for_paper: int | float | None  # "not shown" only: int, inf, or None (no paper diff)
    expected: int = 1  # +1: the claim predicts row > reference; -1: row < reference
    paper_diff: float = math.nan  # the paper's own row - reference, if given


@dataclass(frozen=True)
class Best:
    """A "has the best ..." claim on one metric: the verdict over all rivals."""

    metric: str
    verdict: str  # holds | does not hold | not shown | no test
    strongest: str  # the rival with the smallest expected * mean_diff
    against: Comparison  # the comparison with that rival
    beaten_by: tuple[str, ...]  # rivals significantly better than the row
    comparisons: tuple[Comparison, ...]  # this metric's, after Holm over the family


def _pairs(row: Values, reference: Values) -> tuple[np.ndarray, np.ndarray]:
    """The paired values as float arrays, NaN pairs dropped."""
    if isinstance(row, pd.Series) and isinstance(reference, pd.Series):
        joined = pd.concat([row, reference], axis=1, keys=["row", "ref"], join="inner")
        a, b = joined["row"].to_numpy(float), joined["ref"].to_numpy(float)
    else:
        a, b = np.asarray(row, dtype=float).ravel(), np.asarray(reference, dtype=float).ravel()
        if a.shape != b.shape:
            raise ValueError(f"paired by position, but {a.size} values against {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def paired(
    row: Values,
    reference: Values,
    metric: str = "",
    rival: str = "",
    *,
    higher_is_better: bool = True,
    better: bool = True,
    paper_diff: float | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
    level: float = LEVEL,
) -> Comparison:
    """Compare `row` with `reference` seed by seed (see the module docstring for every rule).

    The claim says `row` is better (`better`) or worse than `reference` on a metric where
    higher (`higher_is_better`) or lower is better. `paper_diff`: the paper's own row -
    reference, for seeds_for_paper. The verdict is that of a family of one; pass the claim's
    comparisons to judge_family for Holm over the family."""
    a, b = _pairs(row, reference)
    d = a - b
    n = int(d.size)
    expected = 1 if higher_is_better == better else -1
    nan = math.nan
    base = Comparison(
        metric=metric,
        rival=rival,
        n=n,
        mean_diff=float(d.mean()) if n else nan,
        sd=nan,
        ci_low=nan,
        ci_high=nan,
        t=nan,
        p=nan,
        p_holm=nan,
        q_bh=nan,
        verdict=NO_TEST,
        detectable=nan,
        seeds_for_paper=None,
        expected=expected,
        paper_diff=nan if paper_diff is None else float(paper_diff),
    )
    if n < 2:
        return base
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    tol = SPREAD_TOL * max(1.0, float(np.abs(a).max()), float(np.abs(b).max()))
    if sd <= tol:
        return replace(base, sd=sd, verdict=IDENTICAL if abs(mean) <= tol else NO_SPREAD)
    se = sd / math.sqrt(n)
    t = mean / se
    p = float(2 * stats.t.sf(abs(t), n - 1))
    half = float(stats.t.ppf(1 - (1 - level) / 2, n - 1)) * se
    tested = replace(base, sd=sd, ci_low=mean - half, ci_high=mean + half, t=t, p=p)
    return _judged(tested, p, alpha, power)


def _judged(c: Comparison, p_holm: float, alpha: float, power: float) -> Comparison:
    """`c` with its family-adjusted p-value, its verdict, and for a "not shown" its power."""
    if math.isnan(c.p):  # no test, identical, no spread: as paired left it
        return c
    if p_holm < alpha:
        going = HOLDS if np.sign(c.mean_diff) == c.expected else DOES_NOT_HOLD
        return replace(c, p_holm=p_holm, verdict=going, detectable=math.nan, seeds_for_paper=None)
    seeds = (
        None
        if math.isnan(c.paper_diff)
        else seeds_needed(c.expected * c.paper_diff, c.sd, alpha, power)
    )
    return replace(
        c,
        p_holm=p_holm,
        verdict=NOT_SHOWN,
        detectable=detectable_difference(c.sd, c.n, alpha, power),
        seeds_for_paper=seeds,
    )


def _adjusted(ps: Sequence[float] | np.ndarray, method: str) -> np.ndarray:
    ps = np.asarray(ps, dtype=float)
    out = np.full(ps.shape, math.nan)
    tested = ~np.isnan(ps)
    if tested.any():
        out[tested] = multipletests(ps[tested], method=method)[1]
    return out


def holm(ps: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input's order; NaN (no test) stays NaN and is
    not counted in m."""
    return _adjusted(ps, "holm")


def benjamini_hochberg(ps: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values, in the input's order; NaN (no test) stays NaN and is not
    counted in m."""
    return _adjusted(ps, "fdr_bh")


def judge_family(
    comparisons: Sequence[Comparison], alpha: float = ALPHA, power: float = POWER
) -> tuple[Comparison, ...]:
    """One claim's comparisons (its metrics x its rivals) with Holm-adjusted p-values and the
    verdicts they give. Idempotent: the verdicts depend only on the unadjusted p-values."""
    adjusted = holm([c.p for c in comparisons])
    return tuple(
        _judged(c, float(q), alpha, power) for c, q in zip(comparisons, adjusted, strict=True)
    )


def with_q(comparisons: Sequence[Comparison]) -> tuple[Comparison, ...]:
    """Every comparison of a report with its Benjamini-Hochberg q-value over all of them."""
    qs = benjamini_hochberg([c.p for c in comparisons])
    return tuple(replace(c, q_bh=float(q)) for c, q in zip(comparisons, qs, strict=True))


def surviving(comparisons: Sequence[Comparison], q: float = ALPHA) -> int:
    """How many significant verdicts (holds, does not hold) have q_bh < q (after with_q)."""
    return sum(c.verdict in (HOLDS, DOES_NOT_HOLD) and c.q_bh < q for c in comparisons)


def best(
    family: Sequence[Comparison], alpha: float = ALPHA, power: float = POWER
) -> tuple[Best, ...]:
    """A "has the best ..." claim: `family` holds the row's comparisons with every rival on
    each of the claim's metrics; Holm runs over all of them, then one Best per metric (in the
    order the metrics first appear)."""
    judged = judge_family(family, alpha, power)
    results = []
    for metric in dict.fromkeys(c.metric for c in judged):
        these = tuple(c for c in judged if c.metric == metric)
        verdicts = [c.verdict for c in these]
        beaten_by = tuple(c.rival for c in these if c.verdict == DOES_NOT_HOLD)
        if beaten_by:
            verdict = DOES_NOT_HOLD
        elif all(v == HOLDS for v in verdicts):
            verdict = HOLDS
        elif all(v == NO_TEST for v in verdicts):
            verdict = NO_TEST
        else:
            verdict = NOT_SHOWN
        with_mean = [c for c in these if not math.isnan(c.mean_diff)] or list(these)
        strongest = min(with_mean, key=lambda c: c.expected * c.mean_diff)
        results.append(Best(metric, verdict, strongest.rival, strongest, beaten_by, these))
    return tuple(results)


def t_power(effect_size: float, n: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided one-sample t-test at the standardized effect `effect_size`
    (difference / sd) with n observations: P(T > c) + P(T < -c), T ~ nct(n - 1, delta sqrt(n)).
    P(T < -c) is computed as the upper tail at -delta (the same number; scipy's lower tail is
    NaN at df 1-2 and large noncentrality)."""
    df = n - 1
    c = stats.t.isf(alpha / 2, df)
    nc = abs(effect_size) * math.sqrt(n)
    return float(stats.nct.sf(c, df, nc) + stats.nct.sf(c, df, -nc))


def _check(alpha: float, power: float) -> None:
    if not (0 < alpha < 1 and alpha < power < 1):
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")


def _solve(**kwargs: float | None) -> float:
    """statsmodels' solve_power for the one unknown, NaN where it fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = TTestPower().solve_power(alternative="two-sided", **kwargs)
        except (ValueError, RuntimeError, ArithmeticError):
            return math.nan
    value = float(np.asarray(value).squeeze())
    return value if math.isfinite(value) else math.nan


def _root(f: Callable[[float], float], low: float, high: float, limit: float) -> float:
    """The root of increasing `f` above `low`, doubling `high` until it brackets it (NaN past
    `limit`)."""
    while not f(high) >= 0:
        if high >= limit:
            return math.nan
        low, high = high, min(2 * high, limit)
    return float(optimize.brentq(f, low, high, xtol=1e-12, rtol=1e-12))


def detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest difference that n paired seeds detect with probability `power` (two-sided
    test at `alpha`) when the differences spread by `sd`: delta* sd, power(delta*, n) = power."""
    _check(alpha, power)
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 seeds, got {n}")
    if math.isnan(sd):
        return math.nan
    if sd <= 0:
        raise ValueError(f"no spread (sd = {sd}): every difference is detected or none")
    delta = _solve(effect_size=None, nobs=n, alpha=alpha, power=power)
    if math.isnan(delta) or abs(t_power(delta, n, alpha) - power) > 1e-6:
        delta = _root(lambda x: t_power(x, n, alpha) - power, 0.0, 1.0, 1e12)
    return delta * sd


def seeds_needed(
    effect: float, sd: float, alpha: float = ALPHA, power: float = POWER
) -> int | float:
    """The fewest paired seeds (at least 2) whose two-sided test at `alpha` detects `effect`
    with probability `power` when the differences spread by `sd`. `effect` counts positive in
    the claimed direction: math.inf when it is 0, negative or NaN (no number of seeds would
    show the claim), or when more than MAX_SEEDS would be needed."""
    _check(alpha, power)
    if not sd > 0:
        raise ValueError(f"seeds_needed needs a positive spread, got sd = {sd}")
    delta = effect / sd
    if not delta > 0:
        return math.inf
    if t_power(delta, 2, alpha) >= power:
        return 2
    nobs = _solve(effect_size=delta, nobs=None, alpha=alpha, power=power)
    if math.isnan(nobs) or nobs < 2 or abs(t_power(delta, nobs, alpha) - power) > 1e-6:
        nobs = _root(lambda m: t_power(delta, m, alpha) - power, 2.0, 4.0, MAX_SEEDS)
    if math.isnan(nobs):
        return math.inf
    n = max(2, math.ceil(nobs))
    if n <= 10**6:  # the solver's tolerance: settle the integer exactly
        while n > 2 and t_power(delta, n - 1, alpha) >= power:
            n -= 1
        while t_power(delta, n, alpha) < power:
            n += 1
    return n
