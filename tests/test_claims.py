"""The claim checker: verdicts from per-seed records, worked out by hand."""

import math

import pandas as pd
import pytest

from tables.claims import CLAIMS, check, judge, main


def test_a_clear_improvement_holds():
    # means 0.70 vs 0.60; variances 0.0001 each over 3 seeds: se = sqrt(2 * 0.0001 / 3) = 0.00816
    v = judge(pd.Series([0.69, 0.70, 0.71]), pd.Series([0.59, 0.60, 0.61]), "srcc", better=True)
    assert v.difference == pytest.approx(0.10)
    assert v.z == pytest.approx(0.10 / math.sqrt(2 * 0.0001 / 3))
    assert v.verdict == "holds"


def test_lower_error_is_better_and_a_worse_claim_can_hold():
    lower = pd.Series([0.40, 0.41, 0.42])
    higher = pd.Series([0.50, 0.51, 0.52])
    assert judge(lower, higher, "mae_l", better=True).verdict == "holds"
    assert judge(higher, lower, "mae_l", better=True).verdict == "does not hold"
    assert judge(higher, lower, "mae_m", better=False).verdict == "holds"  # "costs some M"


def test_a_difference_inside_two_standard_errors_is_noise():
    # means 0.61 vs 0.60, sds 0.02: se = sqrt(2 * 0.0004 / 3) = 0.0163, z = 0.61
    v = judge(pd.Series([0.59, 0.61, 0.63]), pd.Series([0.58, 0.60, 0.62]), "plcc", True)
    assert v.z == pytest.approx(0.01 / math.sqrt(2 * 0.0004 / 3))
    assert v.verdict == "within seed noise"


def test_one_seed_gives_no_noise_estimate():
    v = judge(pd.Series([0.7]), pd.Series([0.6]), "plcc", True)
    assert math.isnan(v.z) and v.verdict.startswith("no noise estimate")


def _records(rows: dict[str, list[float]]) -> pd.DataFrame:
    records = []
    for row, values in rows.items():
        for seed, value in enumerate(values):
            record = {"row": row, "seed": seed, "status": "ok"}
            record.update({m: value for m in ("plcc", "srcc", "mae_l", "mae_m", "mae_h")})
            records.append(record)
    return pd.DataFrame(records)


def test_failed_runs_are_left_out_and_a_missing_row_is_an_error():
    claim = next(c for c in CLAIMS if c.row == "flsa" and c.reference == "base")
    runs = _records({"flsa": [0.7, 0.71, 0.72], "base": [0.6, 0.61, 0.62]})
    runs.loc[len(runs)] = {"row": "flsa", "seed": 3, "status": "failed"}
    verdicts = check(claim, runs)
    assert [v.metric for v in verdicts] == ["plcc", "srcc", "mae_l", "mae_m", "mae_h"]
    assert verdicts[0].difference == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no ok runs of row 'base'"):
        check(claim, runs[runs["row"] != "base"])


def test_report_from_csv_files(tmp_path, capsys):
    rows = {key: [0.6, 0.61, 0.62] for key in ("base", "tfa", "flsa", "apds", "flsa+apds")}
    rows["tfa+flsa+apds"] = [0.7, 0.71, 0.72]
    _records(rows).to_csv(tmp_path / "table4.csv", index=False)
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| FLSA improves all metrics (Sec. 4.4) | flsa vs base, 3 seeds |" in out
    assert "table5.csv not found" in out
    elta_m = next(x for x in out.splitlines() if x.startswith("| ELTA costs some majority"))
    assert elta_m.endswith("| holds |")  # 0.7 vs 0.6 M error: ELTA costs M error here
    flsa = next(x for x in out.splitlines() if x.startswith("| FLSA improves"))
    assert flsa.endswith("| within seed noise |")  # identical rows: z = 0


def test_the_threshold_reference_is_the_row_chosen_on_validation():
    claim = next(c for c in CLAIMS if c.reference == "threshold")
    rows = {"elta": [0.7, 0.71], "threshold_0.5": [0.6, 0.6], "threshold_1.0": [0.65, 0.66]}
    runs = _records(rows)
    runs["val_srcc"] = [0.5, 0.5, 0.4, 0.4, 0.3, 0.3]  # threshold_0.5 wins on validation
    verdicts = check(claim, runs)
    assert verdicts[0].difference == pytest.approx(0.105)  # against threshold_0.5, not 1.0


def test_table2_claims_are_judged_on_each_dataset(tmp_path):
    metrics = ("plcc", "srcc", "mae_l", "mae_m", "mae_h")
    records = []
    for dataset, gain in (("synth-ava", 0.1), ("synth-para", -0.1)):  # ELTA better, then worse
        for row, base in (("elta", 0.6 + gain), ("lds_fds", 0.6), ("ranksim", 0.6)):
            for seed, jitter in enumerate((-0.001, 0.0, 0.001)):
                values = {m: base + jitter if m in ("plcc", "srcc") else 1 - base for m in metrics}
                records.append(
                    {"dataset": dataset, "row": row, "seed": seed, "status": "ok", **values}
                )
    pd.DataFrame(records).to_csv(tmp_path / "table2.csv", index=False)
    from tables.claims import report

    lines = [line for line in report(tmp_path).splitlines() if "ELTA beats" in line]
    assert len(lines) == 4  # 2 claims x 2 datasets
    ava = [line for line in lines if "synth-ava:" in line]
    para = [line for line in lines if "synth-para:" in line]
    assert all(line.endswith("| holds |") for line in ava)
    assert all(line.endswith("| does not hold |") for line in para)


def test_has_the_best_holds_only_against_every_rival_and_names_the_closest():
    from tables.claims import best_of

    def runs(values: dict[str, list[float]]) -> pd.DataFrame:
        return pd.DataFrame(
            [{"row": row, "plcc": v} for row, seeds in values.items() for v in seeds]
        )

    clear = runs({"elta": [0.80, 0.81, 0.82], "a": [0.60, 0.61, 0.62], "b": [0.70, 0.71, 0.72]})
    v = best_of(clear, "elta", ["a", "b"], "plcc", better=True)
    assert v.verdict == "holds" and v.against == "b" and v.difference == pytest.approx(0.10)
    close = runs({"elta": [0.80, 0.81, 0.82], "a": [0.60, 0.61, 0.62], "b": [0.79, 0.81, 0.83]})
    v = best_of(close, "elta", ["a", "b"], "plcc", better=True)
    assert v.verdict == "within seed noise" and v.against == "b"
    beaten = runs({"elta": [0.80, 0.81, 0.82], "a": [0.90, 0.91, 0.92], "b": [0.85, 0.86, 0.87]})
    v = best_of(beaten, "elta", ["a", "b"], "plcc", better=True)
    assert v.verdict == "does not hold" and v.against == "a"  # the clearest winner
