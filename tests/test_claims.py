"""The claim checker: families under Holm, the report under Benjamini-Hochberg, intervals and
power on each line, and the store's integrity (duplicates, data fingerprints, code versions).

Hand arithmetic used throughout: with 3 seeds (2 degrees of freedom) the two-sided p of t is
p = 1 - |t| / sqrt(t^2 + 2), and F_2^-1(0.975) = 4.302653, so a 95 % interval is
d_bar -/+ 4.302653 s / sqrt(3) = d_bar -/+ 2.484138 s. 3 seeds detect 3.26404 s with 80 % power
(the standardized difference whose noncentral-t power at 2 degrees of freedom is 0.80;
tests/test_stats.py checks that solver against an independent integral).
"""

import math

import pandas as pd
import pytest

from tables import claims
from tables.claims import CLAIMS, DuplicateRun, NotRun, check
from tables.stats import DOES_NOT_HOLD, HOLDS, IDENTICAL, NO_SPREAD, NO_TEST, NOT_SHOWN, best

METRICS = ("plcc", "srcc", "mae_l", "mae_m", "mae_h")
HALF_PER_SD = 4.302653 / math.sqrt(3)  # 2.484138: the 3-seed interval's half width per unit s
DETECT_PER_SD = 3.26404  # 3 seeds, 80 % power, alpha 0.05


def _claim(text: str) -> claims.Claim:
    return next(c for c in CLAIMS if c.text.startswith(text))


def _records(rows: dict[str, dict[str, list[float]]], **fields: object) -> pd.DataFrame:
    """Ok records on synth-ava, one per row and seed; a metric not given is 0.5 on every seed;
    `fields` override columns of every record (code, data, ...)."""
    out = []
    for row, values in rows.items():
        n = len(next(iter(values.values()))) if values else 3
        for seed in range(n):
            record = {"dataset": "synth-ava", "row": row, "seed": seed, "status": "ok",
                      "code": "c1", "data": "aaa", "stage": f"{row}-{seed}",
                      **{m: values.get(m, [0.5] * n)[seed] for m in METRICS}, **fields}  # fmt: skip
            out.append(record)
    return pd.DataFrame(out)


def _minus(values: list[float], differences: list[float]) -> list[float]:
    """The reference whose paired differences with `values` are `differences`."""
    return [v - d for v, d in zip(values, differences, strict=True)]


BASE = {
    "plcc": [0.60, 0.62, 0.61],
    "srcc": [0.58, 0.57, 0.59],
    "mae_l": [0.90, 0.95, 0.85],
    "mae_m": [0.30, 0.31, 0.29],
    "mae_h": [0.70, 0.72, 0.71],
}
# ELTA - Base. per seed, and what each gives:
# P  0.09, 0.10, 0.11:  mean 0.10, s 0.01, t = 10 sqrt(3), t^2 = 300, p = 1 - sqrt(300/302)
# S  0.02, 0.03, 0.04:  mean 0.03, s 0.01, t = 3 sqrt(3),  t^2 = 27,  p = 1 - sqrt(27/29)
# L  0.05, -0.03, 0.01: mean 0.01, s 0.04, t = sqrt(3)/4, t^2 = 0.1875, p = 1 - sqrt(.1875/2.1875)
# M  0.03, 0.05, 0.07:  mean 0.05, s 0.02, t = 2.5 sqrt(3), t^2 = 18.75, p = 1 - sqrt(18.75/20.75)
# H  0, 0, 0: identical, not a test
GAIN = {
    "plcc": [0.09, 0.10, 0.11],
    "srcc": [0.02, 0.03, 0.04],
    "mae_l": [0.05, -0.03, 0.01],
    "mae_m": [0.03, 0.05, 0.07],
    "mae_h": [0.0, 0.0, 0.0],
}
P_P, P_S = 1 - math.sqrt(300 / 302), 1 - math.sqrt(27 / 29)  # 0.0033168, 0.0350989
P_L, P_M = 1 - math.sqrt(0.1875 / 2.1875), 1 - math.sqrt(18.75 / 20.75)  # 0.707228, 0.0494138
ELTA = {m: _minus(BASE[m], [-d for d in GAIN[m]]) for m in METRICS}
TABLE4 = _records({"tfa+flsa+apds": ELTA, "base": BASE})


def test_a_claim_is_one_family_holm_over_its_metrics():
    # ELTA improves P, S, L, H over Base.: one family; H is identical (no test), so m = 3.
    # Holm, sorted: P 0.0033168 * 3 = 0.0099504; S 0.0350989 * 2 = 0.0701978;
    # L max(0.0701978, 0.707228 * 1) = 0.707228.
    # S alone would hold (0.035 < 0.05); in the family it is not shown.
    checked = check(_claim("ELTA improves P, S, L, H"), TABLE4)
    p, s, lo, h = checked.family
    assert [c.p for c in (p, s, lo)] == pytest.approx([P_P, P_S, P_L], abs=1e-6)
    assert [c.p_holm for c in (p, s, lo)] == pytest.approx([3 * P_P, 2 * P_S, P_L], abs=1e-6)
    assert [c.verdict for c in checked.family] == [HOLDS, NOT_SHOWN, NOT_SHOWN, IDENTICAL]
    assert math.isnan(h.p) and h.mean_diff == 0
    assert checked.reference == "base" and checked.notes == ()


def test_each_comparison_has_its_interval_and_a_not_shown_its_power():
    checked = check(_claim("ELTA improves P, S, L, H"), TABLE4)
    p, s, lo, _ = checked.family
    # P: 0.10 -/+ 2.484138 * 0.01 = [0.075159, 0.124841]
    assert (p.ci_low, p.ci_high) == pytest.approx((0.075159, 0.124841), abs=1e-6)
    # S: 0.03 -/+ 0.024841 = [0.005159, 0.054841]: the unadjusted interval excludes 0, the
    # Holm-adjusted verdict is not shown
    assert (s.ci_low, s.ci_high) == pytest.approx((0.005159, 0.054841), abs=1e-6)
    # L: 0.01 -/+ 2.484138 * 0.04 = [-0.089366, 0.109366]
    assert (lo.ci_low, lo.ci_high) == pytest.approx((-0.089366, 0.109366), abs=1e-6)
    # detectable: 3.26404 s: S 0.0326404, L 0.130562; a holding P has none
    assert s.detectable == pytest.approx(DETECT_PER_SD * 0.01, abs=1e-6)
    assert lo.detectable == pytest.approx(DETECT_PER_SD * 0.04, abs=1e-6)
    assert math.isnan(p.detectable) and p.seeds_for_paper is None
    # The paper's Table 4 on AVA: S 0.764 - 0.735 = +0.029, 2.9 s: power 0.722 with 3 seeds,
    # 0.958 with 4 -> 4 seeds. L 0.438 - 0.616 = -0.178 (the claimed way for an error),
    # 0.178 / 0.04 = 4.45 s: power 0.379 with 2 seeds, 0.948 with 3 -> 3 seeds.
    assert s.paper_diff == pytest.approx(0.029) and s.seeds_for_paper == 4
    assert lo.paper_diff == pytest.approx(-0.178) and lo.seeds_for_paper == 3


def _report(monkeypatch, **tables: pd.DataFrame) -> list[str]:
    """The report's lines over these tables' records (others: nothing planned)."""
    monkeypatch.setattr(
        claims, "table_records", lambda stem, *args: tables.get(stem.replace("-", "_"), NOTHING)
    )
    return claims.report(None, "cpu").splitlines()


NOTHING = pd.DataFrame(columns=["dataset", "row", "seed", "status", "code", "data", "stage"])


def test_the_report_prints_intervals_holm_q_and_counts_what_survives_bh(monkeypatch):
    # Tests over the report: P, S, L (ELTA improves ...) and M (ELTA costs some M, a family of
    # one: p_Holm = p = 0.0494138 < 0.05, holds). BH over m = 4, sorted:
    # P 0.0033168 * 4/1 = 0.0132672; S 0.0350989 * 4/2 = 0.0701978; M 0.0494138 * 4/3 =
    # 0.0658851; L 0.707228 * 4/4 -> minima from the largest: L 0.707228, M 0.0658851,
    # S min(0.0701978, 0.0658851) = 0.0658851, P 0.0132672.
    # Significant: P (holds) and M (holds); P's q survives, M's 0.066 does not: 1 of 2.
    missing = _records({"tfa": {}}, status="missing")
    lines = _report(monkeypatch, table4=pd.concat([TABLE4, missing], ignore_index=True))
    assert lines[0] == "Runs read: 6 ok; their code versions: c1 (6 runs)."
    improves = next(x for x in lines if x.startswith("| ELTA improves P, S, L, H"))
    assert improves == (
        "| ELTA improves P, S, L, H over Base. (Table 4) "
        "| synth-ava: tfa+flsa+apds vs base, 3 paired seeds "
        "| P holds: +0.100 [+0.075, +0.125], p_Holm 0.010, q 0.013; "
        "S not shown: +0.030 [+0.005, +0.055], p_Holm 0.070, q 0.066 "
        "(detectable 0.033; 4 seeds would detect the paper's +0.029); "
        "L not shown: +0.010 [-0.089, +0.109], p_Holm 0.707, q 0.707 "
        "(detectable 0.131; 3 seeds would detect the paper's -0.178); "
        "H identical: +0.000 on every seed "
        "| mixed (1 holds, 2 not shown, 1 identical) |"
    )
    # M: 0.05 -/+ 2.484138 * 0.02 = [0.000317, 0.099683]
    costs = next(x for x in lines if x.startswith("| ELTA costs some majority"))
    assert "| M holds: +0.050 [+0.000, +0.100], p_Holm 0.049, q 0.066 | holds |" in costs
    assert lines[-1] == (
        "Benjamini-Hochberg over the report's 4 tests: 1 of the 2 significant comparisons "
        "(holds or does not hold after Holm) survive at q < 0.05."
    )
    tfa = next(x for x in lines if x.startswith("| TFA reduces minority"))
    assert tfa.endswith("| synth-ava: – | table4: no ok runs of row 'tfa' | not run |")


def test_zero_spread_is_identical_or_no_spread_never_significant():
    # tfa - base: L -1e-15 on every seed (up to rounding, ~1e-16): spread and mean below
    # 1e-12 -> identical (the old checker gave t = -inf, p = 0: "holds"); H -0.1 on every
    # seed: no spread, a constant difference with no noise to weigh it against -> not a test.
    tfa = {"mae_l": _minus(BASE["mae_l"], [1e-15] * 3), "mae_h": _minus(BASE["mae_h"], [0.1] * 3)}
    checked = check(_claim("TFA reduces minority"), _records({"tfa": tfa, "base": BASE}))
    low, high = checked.family
    assert (low.verdict, high.verdict) == (IDENTICAL, NO_SPREAD)
    assert all(math.isnan(c.p) and math.isnan(c.p_holm) for c in checked.family)
    assert high.mean_diff == pytest.approx(-0.1)
    line = claims.render(checked)
    assert (
        "L identical: -0.000 on every seed; H no spread: -0.100 on every seed, not a test" in line
    )
    assert line.endswith("| mixed (1 identical, 1 no spread) |")


# Table 1, synth-ava, as in the issue: Ours 0.633 on average, NIMA above (0.642), MaxViT
# nearest to 0 (-0.003). ELTA - rival per seed:
# P vs nima   -0.008, -0.009, -0.010: mean -0.009, s 0.001, t = -9 sqrt(3), t^2 = 243,
#             p = 1 - sqrt(243/245) = 0.0040900
# S vs nima   -0.019, +0.001, -0.009: mean -0.009, s 0.01, t = -0.9 sqrt(3), t^2 = 2.43,
#             p = 1 - sqrt(2.43/4.43) = 0.259370
# P, S vs maxvit +0.005, -0.003, -0.011: mean -0.003, s 0.008, t = -0.375 sqrt(3),
#             t^2 = 0.421875, p = 1 - sqrt(0.421875/2.421875) = 0.582634
OURS = [0.630, 0.633, 0.636]
TABLE1 = _records(
    {
        "elta": {"plcc": OURS, "srcc": OURS},
        "nima": {"plcc": _minus(OURS, [-0.008, -0.009, -0.010]),
                 "srcc": _minus(OURS, [-0.019, 0.001, -0.009])},
        "maxvit": {"plcc": _minus(OURS, [0.005, -0.003, -0.011]),
                   "srcc": _minus(OURS, [0.005, -0.003, -0.011])},
    }
)  # fmt: skip
P_NIMA, S_NIMA, MAXVIT = 1 - math.sqrt(243 / 245), 1 - math.sqrt(2.43 / 4.43), 0.582634


def test_a_paper_difference_against_the_claim_or_absent_is_said_so():
    # flsa - base on every metric: +0.05, -0.03, +0.01 (p 0.707228 each, Holm over m = 5: 1)
    noisy = {m: _minus(BASE[m], [-0.05, 0.03, -0.01]) for m in METRICS}
    checked = check(_claim("FLSA improves all metrics"), _records({"flsa": noisy, "base": BASE}))
    high = checked.family[-1]
    # the paper's Table 4: FLSA's H 0.520 - Base.'s 0.513 = +0.007, a larger error: no number
    # of seeds shows the claim there
    assert high.verdict == NOT_SHOWN and high.p_holm == pytest.approx(1.0)
    assert high.paper_diff == pytest.approx(0.007) and high.seeds_for_paper == math.inf
    assert "(detectable 0.131; the paper's +0.007 goes against the claim)" in claims.render(checked)
    # the paper gives no number for random pairs (Section 4.4 gives only ELTA and a threshold)
    runs = _records({"elta": noisy, "random": BASE})
    checked = check(_claim("TFA's sampling beats random pairs"), runs)
    assert [c.seeds_for_paper for c in checked.family] == [None, None]
    assert "(detectable 0.131; the paper gives no difference here)" in claims.render(checked)


def test_a_best_claim_with_a_rival_above_names_it_and_holm_runs_over_metrics_and_rivals():
    # One family, m = 4. Holm, sorted: P-nima 0.0040900 * 4 = 0.0163600; S-nima 0.259370 * 3 =
    # 0.778110; maxvit 0.582634 * 2 = 1.165 -> 1; 1.
    # P: nima significantly better -> does not hold, beaten by nima.
    # S: nothing significant -> not shown; the strongest rival by mean is nima (-0.009), not
    # maxvit (-0.003, the nearest to 0, which the old checker named).
    failed = _records({"hgcn": {}}, status="failed")  # planned, no ok run: listed as not run
    runs = pd.concat([TABLE1, failed], ignore_index=True)
    checked = check(_claim("ELTA has the best P and S"), runs)
    assert [(c.metric, c.rival) for c in checked.family] == [
        ("plcc", "nima"), ("plcc", "maxvit"), ("srcc", "nima"), ("srcc", "maxvit")
    ]  # fmt: skip
    assert [c.p for c in checked.family] == pytest.approx([P_NIMA, MAXVIT, S_NIMA, MAXVIT], 1e-4)
    assert [c.p_holm for c in checked.family] == pytest.approx([4 * P_NIMA, 1, 3 * S_NIMA, 1], 1e-4)
    plcc, srcc = best(checked.family)
    assert (plcc.verdict, plcc.beaten_by, plcc.strongest) == (DOES_NOT_HOLD, ("nima",), "nima")
    assert (srcc.verdict, srcc.strongest) == (NOT_SHOWN, "nima")
    assert srcc.against.mean_diff == pytest.approx(-0.009)
    # the paper's Table 1 on AVA: SRCC 0.764 - 0.612 = +0.152, 15.2 s: 2 seeds give power 0.908
    assert srcc.against.paper_diff == pytest.approx(0.152) and srcc.against.seeds_for_paper == 2
    assert checked.notes == ("not run: hgcn",)


def test_a_best_claim_line(monkeypatch):
    # BH over the report's m = 4 tests (L and H: every row 0.5, identical, no tests), sorted:
    # 0.0040900 * 4/1 = 0.016360; 0.259370 * 4/2 = 0.518740; 0.582634 * 4/3 = 0.776845;
    # 0.582634 * 4/4 -> minima from the largest: 0.582634, 0.582634, 0.518740, 0.016360.
    # Intervals: P-nima -0.009 -/+ 2.484138 * 0.001 = [-0.011484, -0.006516];
    # S-nima -0.009 -/+ 0.024841 = [-0.033841, 0.015841]; detectable 3.26404 * 0.01.
    lines = _report(monkeypatch, table1=TABLE1)
    line = next(x for x in lines if x.startswith("| ELTA has the best P and S"))
    assert line == (
        "| ELTA has the best P and S on AVA, AADB, PARA (Sec. 4.2) "
        "| synth-ava: elta vs every other row, 3 paired seeds "
        "| P does not hold (beaten by nima): strongest rival nima -0.009 [-0.011, -0.007], "
        "p_Holm 0.016, q 0.016; "
        "S not shown: strongest rival nima -0.009 [-0.034, +0.016], p_Holm 0.778, q 0.519 "
        "(detectable 0.033; 2 seeds would detect the paper's +0.152) "
        "| mixed (1 does not hold, 1 not shown) |"
    )
    assert lines[-1].startswith("Benjamini-Hochberg over the report's 4 tests: 1 of the 1 ")


def test_a_duplicate_row_and_seed_is_an_error_naming_both_stages(monkeypatch, tmp_path, capsys):
    twice = _records({"tfa": {"mae_l": [0.7]}}, stage="0123abcd", seed=1)
    runs = pd.concat([_records({"tfa": {}, "base": {}}), twice], ignore_index=True)
    with pytest.raises(DuplicateRun, match=r"row 'tfa' seed 1 .*stages tfa-1 and 0123abcd"):
        check(_claim("TFA reduces minority"), runs)
    monkeypatch.setattr(
        claims, "table_records", lambda stem, *args: runs if stem == "table4" else NOTHING
    )
    assert claims.main(["--results", str(tmp_path), "--profile", "cpu"]) == 2
    captured = capsys.readouterr()
    assert "stages tfa-1 and 0123abcd" in captured.err and "not run" not in captured.out


def test_runs_on_different_data_are_never_paired():
    # base's seed 2 ran on other data (bbb): only seeds 0 and 1 pair. tfa - base on L:
    # -0.10, -0.12: mean -0.11, s = 0.02 / sqrt(2), t = -0.11 / (s / sqrt(2)) = -11, one
    # degree of freedom: p = 1 - (2 / pi) atan(11) = 0.057716. On H (tfa 0.5): -0.20, -0.22,
    # t = -21, p = 1 - (2 / pi) atan(21) = 0.030309. Holm, m = 2: 0.060618 for both.
    tfa = {"mae_l": _minus(BASE["mae_l"], [0.10, 0.12, 0.30])}
    runs = _records({"tfa": tfa, "base": BASE})
    runs.loc[(runs["row"] == "base") & (runs["seed"] == 2), "data"] = "bbb"
    checked = check(_claim("TFA reduces minority"), runs)
    low = checked.family[0]
    assert low.n == 2 and low.mean_diff == pytest.approx(-0.11)
    assert low.p == pytest.approx(1 - 2 / math.pi * math.atan(11))
    p_high = 1 - 2 / math.pi * math.atan(21)
    assert [c.p_holm for c in checked.family] == pytest.approx([2 * p_high] * 2)
    assert checked.notes == ("seed 2 not paired: different data (fingerprints aaa vs bbb)",)
    # no seed on the same data: nothing paired, no test; an unknown fingerprint never pairs
    runs.loc[runs["row"] == "base", "data"] = ["bbb", "bbb", None]
    checked = check(_claim("TFA reduces minority"), runs)
    assert {c.verdict for c in checked.family} == {NO_TEST} and checked.family[0].n == 0
    assert checked.notes == (
        "seeds 0, 1 not paired: different data (fingerprints aaa vs bbb)",
        "seed 2 not paired: different data (fingerprints aaa vs none)",
    )
    line = claims.render(checked)
    assert "tfa vs base, 0 paired seeds; seeds 0, 1 not paired: different data" in line
    assert line.endswith("| L no test: no paired seed; H no test: no paired seed | no test |")


def test_mixed_code_versions_are_printed_with_the_verdicts(monkeypatch):
    runs = TABLE4.copy()
    runs.loc[runs["row"] == "base", "code"] = "c2"
    runs.loc[(runs["row"] == "base") & (runs["seed"] == 0), "code"] = "c3"
    lines = _report(monkeypatch, table4=runs)
    assert lines[0] == "Runs read: 6 ok; their code versions: c1 (3 runs), c2 (2 runs), c3 (1 run)."
    line = next(x for x in lines if x.startswith("| ELTA improves P, S, L, H"))
    assert "3 paired seeds; code versions c1 (3 runs), c2 (2 runs), c3 (1 run) |" in line


def test_failed_runs_are_left_out_and_a_row_without_ok_runs_is_not_run():
    claim = _claim("FLSA improves all metrics")
    runs = _records({"flsa": {"plcc": [0.7, 0.72, 0.71]}, "base": {"plcc": [0.6, 0.61, 0.62]}})
    failed = _records({"flsa": {"plcc": [0.99]}}, seed=3, status="failed", stage="f3")
    checked = check(claim, pd.concat([runs, failed], ignore_index=True))
    assert [c.metric for c in checked.family] == list(METRICS)
    assert checked.family[0].mean_diff == pytest.approx(0.1) and checked.family[0].n == 3
    with pytest.raises(NotRun, match="no ok runs of row 'base'"):
        check(claim, runs[runs["row"] != "base"])


def test_the_threshold_reference_is_the_row_chosen_on_validation():
    claim = _claim("TFA's sampling beats the best threshold")
    rows = {"elta": [0.7, 0.71], "threshold_0.5": [0.6, 0.6], "threshold_1.0": [0.65, 0.66]}
    runs = _records({row: {"plcc": v, "srcc": v} for row, v in rows.items()})
    runs["val_srcc"] = [0.5, 0.5, 0.4, 0.4, 0.3, 0.3]  # threshold_0.5 wins on validation
    checked = check(claim, runs)
    assert checked.reference == "threshold_0.5"
    # against threshold_0.5, not 1.0: (0.1 + 0.11) / 2
    assert checked.family[0].mean_diff == pytest.approx(0.105)
    # beside the paper's "threshold" row (Section 4.4): PLCC 0.777 - 0.755 = 0.022
    assert checked.family[0].paper_diff == pytest.approx(0.022)


TWO = ("table4", "table5")  # Table 5's claims on Table 4's rows: "not run" lines, no tests


def test_the_report_keeps_the_claims_of_the_tables_asked_for(monkeypatch):
    monkeypatch.setattr(
        claims, "table_records", lambda stem, *args: TABLE4 if stem in TWO else NOTHING
    )
    everything = claims.report(None, "cpu").splitlines()
    only4 = claims.report(None, "cpu", tables=["4"]).splitlines()
    claimed = [line for line in only4 if line.startswith("| ") and "---" not in line][1:]
    assert claimed and all("(Table 4)" in x or "Sec. 4." in x for x in claimed)
    assert not any("L&FDS" in x or "pixel-level" in x for x in only4)
    assert len(only4) < len(everything)
    assert any("pixel-level" in x and "not run" in x for x in everything)
    assert only4[-1] == everything[-1]  # Table 4's tests are every test of the full report here
    with pytest.raises(claims.UserError, match="unknown table '6'"):
        claims.report(None, "cpu", tables=["6"])


def test_figure5_is_read_as_a_table_of_its_cells_and_its_peak_claim_checked(monkeypatch):
    from figures.make import TauGrid

    assert [spec.row() for spec in claims.FIGURE5.rows] == TauGrid().rows()  # the same stages
    peak = [0.62, 0.63, 0.61]
    grid = _records(
        {
            "tau1=0.2,tau2=4": {"srcc": peak},
            "tau1=0.1,tau2=2": {"srcc": _minus(peak, [0.05, 0.06, 0.04])},
            "tau1=0.5,tau2=3": {"srcc": _minus(peak, [0.001, -0.004, 0.002])},
        }
    )
    monkeypatch.setattr(
        claims, "table_records", lambda stem, *args: grid if stem == "fig5_tau" else NOTHING
    )
    lines = claims.report(None, "cpu", tables=["fig5"]).splitlines()
    (line,) = [x for x in lines if x.startswith("| SRCC peaks at tau1 = 0.2, tau2 = 4.0")]
    assert "tau1=0.2,tau2=4 vs every other row, 3 paired seeds" in line
    # Holm over 2: vs tau1=0.1 (t 8.66, p 0.013 -> 0.026) holds, vs tau1=0.5 not: not shown
    assert "S not shown: strongest rival tau1=0.5,tau2=3 -0.000 [" in line
    assert "the paper gives no difference here" in line and line.endswith("| not shown |")
