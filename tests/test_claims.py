"""The claim checker: paired t-tests over seeds, worked out by hand, and its reading of a store."""

import math

import pandas as pd
import pytest

from tables import claims
from tables.claims import CLAIMS, NO_TEST, best_of, check, judge


def _seeds(values: list[float]) -> pd.Series:
    return pd.Series(values, index=range(len(values)))


def test_a_consistent_improvement_holds():
    # differences 0.10, 0.11, 0.09: mean 0.10, sd 0.01, se 0.01 / sqrt(3) = 0.00577, t = 17.32
    # with 2 degrees of freedom: two-sided p = 2 (1 - F_t2(17.32)) = 0.0033 < 0.05
    v = judge(_seeds([0.70, 0.72, 0.71]), _seeds([0.60, 0.61, 0.62]), "srcc", better=True)
    assert v.difference == pytest.approx(0.10)
    assert v.t == pytest.approx(0.10 / (0.01 / math.sqrt(3)))
    assert v.p == pytest.approx(0.0033168, abs=1e-6)
    assert (v.n, v.verdict) == (3, "holds")


def test_pairing_finds_a_small_consistent_effect_an_unpaired_test_would_miss():
    # the seeds themselves spread (0.50 to 0.90) but each pair differs by about 0.02
    v = judge(_seeds([0.50, 0.71, 0.899]), _seeds([0.48, 0.69, 0.88]), "plcc", better=True)
    assert v.t == pytest.approx(59.0) and v.verdict == "holds"


def test_an_inconsistent_difference_is_not_shown():
    # differences +0.05, -0.03, +0.01: mean 0.01, sd 0.04, t = 0.433, p = 0.707
    v = judge(_seeds([0.65, 0.58, 0.62]), _seeds([0.60, 0.61, 0.61]), "plcc", better=True)
    assert v.p == pytest.approx(0.70723, abs=1e-5) and v.verdict == "not shown"


def test_lower_error_is_better_and_a_worse_claim_can_hold():
    lower, higher = _seeds([0.40, 0.42, 0.41]), _seeds([0.50, 0.51, 0.52])
    assert judge(lower, higher, "mae_l", better=True).verdict == "holds"
    assert judge(higher, lower, "mae_l", better=True).verdict == "does not hold"
    assert judge(higher, lower, "mae_m", better=False).verdict == "holds"  # "costs some M"


def test_only_seeds_both_rows_have_are_paired():
    row = pd.Series([0.7, 0.8, 0.9], index=[0, 1, 2])
    reference = pd.Series([0.6, 0.6], index=[1, 2])
    v = judge(row, reference, "plcc", True)
    assert v.n == 2 and v.difference == pytest.approx(0.25)  # (0.2 + 0.3) / 2
    v = judge(pd.Series([0.7], index=[0]), pd.Series([0.6], index=[0]), "plcc", True)
    assert v.verdict == NO_TEST and math.isnan(v.p)


def _records(rows: dict[str, list[float]], dataset: str = "synth-ava") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"dataset": dataset, "row": row, "seed": seed, "status": "ok",
             **{m: value for m in ("plcc", "srcc", "mae_l", "mae_m", "mae_h")}}
            for row, values in rows.items()
            for seed, value in enumerate(values)
        ]
    )  # fmt: skip


def test_failed_runs_are_left_out_and_a_missing_row_is_an_error():
    claim = next(c for c in CLAIMS if c.row == "flsa" and c.reference == "base")
    runs = _records({"flsa": [0.7, 0.72, 0.71], "base": [0.6, 0.61, 0.62]})
    runs.loc[len(runs)] = {"row": "flsa", "seed": 3, "status": "failed"}
    verdicts = check(claim, runs)
    assert [v.metric for v in verdicts] == ["plcc", "srcc", "mae_l", "mae_m", "mae_h"]
    assert verdicts[0].difference == pytest.approx(0.1) and verdicts[0].n == 3
    with pytest.raises(ValueError, match="no ok runs of row 'base'"):
        check(claim, runs[runs["row"] != "base"])


def test_the_threshold_reference_is_the_row_chosen_on_validation():
    claim = next(c for c in CLAIMS if c.reference == "threshold")
    rows = {"elta": [0.7, 0.71], "threshold_0.5": [0.6, 0.6], "threshold_1.0": [0.65, 0.66]}
    runs = _records(rows)
    runs["val_srcc"] = [0.5, 0.5, 0.4, 0.4, 0.3, 0.3]  # threshold_0.5 wins on validation
    verdicts = check(claim, runs)
    assert verdicts[0].difference == pytest.approx(0.105)  # against threshold_0.5, not 1.0


def test_has_the_best_holds_only_against_every_rival_and_names_the_closest():
    def runs(values: dict[str, list[float]]) -> pd.DataFrame:
        return _records(values)

    clear = runs({"elta": [0.80, 0.82, 0.81], "a": [0.60, 0.61, 0.62], "b": [0.70, 0.71, 0.72]})
    v = best_of(clear, "elta", ["a", "b"], "plcc", better=True)
    assert v.verdict == "holds" and v.against == "b" and v.difference == pytest.approx(0.10)
    close = runs({"elta": [0.80, 0.81, 0.82], "a": [0.60, 0.61, 0.62], "b": [0.83, 0.79, 0.82]})
    v = best_of(close, "elta", ["a", "b"], "plcc", better=True)
    assert v.verdict == "not shown" and v.against == "b"
    beaten = runs({"elta": [0.80, 0.81, 0.82], "a": [0.90, 0.92, 0.91], "b": [0.84, 0.86, 0.87]})
    v = best_of(beaten, "elta", ["a", "b"], "plcc", better=True)
    assert v.verdict == "does not hold" and v.against == "a"  # the clearest winner


def test_the_report_reads_every_stored_seed_and_judges_table2_per_dataset(monkeypatch):
    metrics = ("plcc", "srcc", "mae_l", "mae_m", "mae_h")
    records = []
    for dataset, gain in (("synth-ava", 0.1), ("synth-para", -0.1)):  # ELTA better, then worse
        for row, base in (("elta", 0.6 + gain), ("lds_fds", 0.6), ("ranksim", 0.6)):
            for seed, jitter in enumerate((-0.002, 0.0, 0.001)):
                values = {m: base + jitter if m in ("plcc", "srcc") else 1 - base - jitter
                          for m in metrics}  # fmt: skip
                records.append({"dataset": dataset, "row": row, "seed": seed, "status": "ok",
                                **values})  # fmt: skip
    table2 = pd.DataFrame(records)
    empty = pd.DataFrame(columns=["dataset", "row", "seed", "status"])
    monkeypatch.setattr(
        claims, "table_records", lambda stem, *args: table2 if stem == "table2" else empty
    )
    lines = [line for line in claims.report(None, "cpu").splitlines() if "ELTA beats" in line]
    assert len(lines) == 4  # 2 claims x 2 datasets
    assert all(line.endswith("| holds |") for line in lines if "synth-ava:" in line)
    assert all(line.endswith("| does not hold |") for line in lines if "synth-para:" in line)
    assert "3 paired seeds" in lines[0]


def test_a_best_claim_over_rows_with_different_seed_counts_says_the_range(monkeypatch):
    records = [
        {"row": row, "seed": seed, "status": "ok", "plcc": value, "srcc": value,
         "mae_l": 1 - value, "mae_m": 1 - value, "mae_h": 1 - value}
        for row, values in (("elta", [0.8, 0.81, 0.82, 0.8, 0.81]), ("nima", [0.7, 0.71, 0.7]))
        for seed, value in enumerate(values)
    ]  # fmt: skip
    claim = next(c for c in CLAIMS if c.reference == claims.BEST and "L and H" in c.text)
    line = claims._line(claim, pd.DataFrame(records), "synth-aadb: ")
    assert "every other row, 3 paired seeds" in line  # elta has 5 seeds, nima only 3
    # base ties with elta on L (5 seeds) and is far worse on H, where nima (3 seeds) is closest
    records += [
        {**r, "row": "base", "mae_h": r["mae_h"] + 0.5} for r in records if r["row"] == "elta"
    ]
    line = claims._line(claim, pd.DataFrame(records), "synth-aadb: ")
    assert "every other row, 3-5 paired seeds" in line
