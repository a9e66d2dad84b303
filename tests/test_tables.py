"""Tests for the transcribed paper numbers and the Markdown/LaTeX table renderer."""

import math
import os
import shutil
import subprocess

import pandas as pd
import pytest

from tables.make import choose_on_val
from tables.paper import load_paper_numbers, paper_value
from tables.render import (
    METRICS,
    TableView,
    build_view,
    render_latex,
    render_latex_document,
    render_markdown,
)
from tables.specs import get_table

METRIC_KEYS = [m.key for m in METRICS]
T1_ROWS = {"nima", "hgcn", "biaa", "tanet", "maxvit", "musiq", "eat", "base", "elta"}
T3_MODELS = ["nima", "hgcn", "biaa", "musiq", "maxvit", "tanet", "eat"]
T4_ROWS = ["base", "tfa", "flsa", "apds", "tfa+flsa", "tfa+apds", "flsa+apds", "tfa+flsa+apds"]


# --- transcribed paper numbers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "dataset", "row", "metric", "expected"),
    [
        # Values read off the paper by hand, one cell per table at least.
        ("1", "AVA", "eat", "mae_l", 0.490),
        ("1", "PARA", "elta", "mae_m", 0.251),
        ("1", "AADB", "musiq", "mae_h", 1.159),
        ("1", "TAD66K", "nima", "plcc", 0.405),
        ("2", "TAD66K", "ranksim", "mae_l", 1.560),
        ("2", "AADB", "lds_fds", "srcc", 0.735),
        ("3", "AVA", "tanet+tfa+flsa+apds", "mae_h", 0.585),
        ("3", "AVA", "maxvit+tfa+flsa", "mae_h", 0.426),
        ("4", "AVA", "flsa+apds", "srcc", 0.757),
        ("4", "AVA", "flsa", "plcc", 0.758),
        ("5", "AVA", "tfa_pixel", "plcc", 0.731),
        ("5", "AVA", "tfa_pixel+flsa+apds", "mae_m", 0.340),
        ("sampling", "AVA", "threshold", "srcc", 0.747),
    ],
)
def test_sampled_cells_match_the_paper(table, dataset, row, metric, expected):
    assert paper_value(table, dataset, row, metric) == pytest.approx(expected, abs=1e-9)


def test_cell_counts_per_table():
    counts = load_paper_numbers().groupby("table").size().to_dict()
    assert counts == {"1": 180, "2": 80, "3": 105, "4": 40, "5": 20, "sampling": 4}


def test_keys_are_the_expected_ones_and_values_plausible():
    frame = load_paper_numbers()
    assert list(frame.columns) == ["table", "dataset", "row", "metric", "value"]
    assert not frame.duplicated(["table", "dataset", "row", "metric"]).any()
    assert set(frame["metric"]) == set(METRIC_KEYS)
    assert frame["value"].between(0, 2).all()
    rows = frame.groupby("table")["row"].agg(set).to_dict()
    assert rows["1"] == T1_ROWS
    assert rows["2"] == {"lds_fds", "ranksim", "base", "elta"}
    assert rows["3"] == {f"{m}{s}" for m in T3_MODELS for s in ("", "+tfa+flsa", "+tfa+flsa+apds")}
    assert rows["4"] == set(T4_ROWS)
    assert rows["5"] == {"tfa_pixel", "tfa", "tfa_pixel+flsa+apds", "tfa+flsa+apds"}
    assert rows["sampling"] == {"threshold", "elta"}  # Section 4.4 gives PLCC and SRCC only
    datasets = frame.groupby("table")["dataset"].agg(set).to_dict()
    assert datasets["1"] == datasets["2"] == {"AVA", "AADB", "TAD66K", "PARA"}
    assert datasets["3"] == datasets["4"] == datasets["5"] == {"AVA"}


def _paper_row(table: str, dataset: str, row: str) -> list[float | None]:
    return [paper_value(table, dataset, row, m) for m in METRIC_KEYS]


def test_rows_the_paper_repeats_across_tables_agree():
    assert _paper_row("1", "AVA", "base") == _paper_row("4", "AVA", "base")
    assert _paper_row("1", "AVA", "elta") == _paper_row("4", "AVA", "tfa+flsa+apds")
    assert _paper_row("4", "AVA", "tfa") == _paper_row("5", "AVA", "tfa")
    assert _paper_row("sampling", "AVA", "elta")[:2] == _paper_row("1", "AVA", "elta")[:2]
    for model in T3_MODELS:
        assert _paper_row("1", "AVA", model) == _paper_row("3", "AVA", model)


def test_missing_cell_is_none():
    assert paper_value("3", "PARA", "nima", "plcc") is None
    assert paper_value("4", "AVA", "elta", "plcc") is None


# --- renderer --------------------------------------------------------------------------------


def _run(row: str, seed: int, values: list[float], status: str = "ok", reason: str = "") -> dict:
    return {
        "row": row,
        "seed": seed,
        "status": status,
        "reason": reason,
        **dict(zip(METRIC_KEYS, values, strict=True)),
    }


def _failed(row: str, seed: int, reason: str) -> dict:
    return _run(row, seed, [math.nan] * len(METRIC_KEYS), status="failed", reason=reason)


def _view(runs: list[dict], rows: list[str], paper: dict | None = None) -> TableView:
    return build_view(
        title="Table 4",
        caption="Ablation on AVA",
        row_labels=[(row, [row]) for row in rows],
        header_columns=["Model"],
        results=pd.DataFrame(runs),
        paper=paper or {},
    )


def _ours(view: TableView, row: int, metric: int):
    return view.rows[row].cells[2 * metric]


def _theirs(view: TableView, row: int, metric: int):
    return view.rows[row].cells[2 * metric + 1]


def test_mean_and_sample_std_over_seeds():
    # plcc over three seeds: 0.1, 0.2, 0.6 -> mean 0.3; squared deviations 0.04 + 0.01 + 0.09
    # = 0.14, / (3 - 1) = 0.07, sqrt -> 0.2646 (ddof=0 would give 0.216).
    runs = [
        _run("a", 0, [0.1, 0.5, 0.3, 0.3, 0.3]),
        _run("a", 1, [0.2, 0.5, 0.3, 0.3, 0.3]),
        _run("a", 2, [0.6, 0.5, 0.3, 0.3, 0.3]),
        _run("b", 0, [0.6504, 0.5, 0.3, 0.3, 0.3]),
    ]
    view = _view(runs, ["a", "b"])
    assert _ours(view, 0, 0).text == "0.300 ± 0.265"
    assert _ours(view, 0, 1).text == "0.500 ± 0.000"
    assert _ours(view, 1, 0).text == "0.650"


def test_bold_is_max_for_correlations_and_min_for_errors_with_ties():
    runs = [
        _run("a", 0, [0.70, 0.60, 0.50, 0.30, 0.40]),
        _run("b", 0, [0.80, 0.60, 0.40, 0.35, 0.40]),
    ]
    view = _view(runs, ["a", "b"])
    plcc, srcc, mae_l, mae_m, mae_h = range(5)
    assert [_ours(view, r, plcc).bold for r in (0, 1)] == [False, True]
    assert [_ours(view, r, srcc).bold for r in (0, 1)] == [True, True]
    assert [_ours(view, r, mae_l).bold for r in (0, 1)] == [False, True]
    assert [_ours(view, r, mae_m).bold for r in (0, 1)] == [True, False]
    assert [_ours(view, r, mae_h).bold for r in (0, 1)] == [True, True]
    markdown = render_markdown(view)
    assert "**0.800**" in markdown and "**0.700**" not in markdown
    assert r"\textbf{0.400}" in render_latex(view)


def test_paper_column_is_bolded_on_its_own():
    runs = [_run("a", 0, [0.9] * 5), _run("b", 0, [0.1] * 5)]
    paper = {("a", "plcc"): 0.5, ("b", "plcc"): 0.7, ("a", "mae_l"): 0.5, ("b", "mae_l"): 0.7}
    view = _view(runs, ["a", "b"], paper)
    assert [_ours(view, r, 0).bold for r in (0, 1)] == [True, False]
    assert [_theirs(view, r, 0).bold for r in (0, 1)] == [False, True]
    assert [_theirs(view, r, 2).bold for r in (0, 1)] == [True, False]
    assert [_theirs(view, r, 0).text for r in (0, 1)] == ["0.500", "0.700"]
    assert _theirs(view, 0, 1).text == "–"


def test_failed_rows_show_failed_and_the_reason():
    runs = [
        _run("ok", 0, [0.7] * 5),
        _failed("broken", 0, "CUDA out of memory while allocating 2 GiB\nTraceback ..."),
        _failed("broken", 1, "CUDA out of memory while allocating 2 GiB\nTraceback ..."),
        _run("flaky", 0, [0.6] * 5),
        _run("flaky", 1, [0.8] * 5),
        _failed("flaky", 2, "loss became NaN"),
    ]
    view = _view(runs, ["ok", "broken", "flaky", "absent"])
    assert [_ours(view, 1, m).text for m in range(5)] == ["failed"] * 5
    assert _ours(view, 2, 0).text == "0.700 ± 0.141"
    assert [_ours(view, 3, m).text for m in range(5)] == ["–"] * 5
    markdown = render_markdown(view)
    assert "| broken | failed |" in markdown
    assert "broken: 2/2 seeds failed: CUDA out of memory while allocating 2 GiB" in markdown
    assert "Traceback" not in markdown
    assert "flaky: 1/3 seeds failed: loss became NaN" in markdown
    assert "CUDA out of memory" in render_latex(view)


def test_long_reasons_are_shortened():
    view = _view([_failed("a", 0, "x" * 500)], ["a"])
    assert len(view.notes[0]) < 120
    assert view.notes[0].endswith("…")


def test_markdown_layout():
    view = build_view(
        title="Table 4",
        caption="Ablation of modules",
        row_labels=[("base", ["", ""]), ("tfa+flsa", ["✓", "✓"])],
        header_columns=["TFA", "FLSA"],
        results=pd.DataFrame([_run("base", 0, [0.7] * 5)]),
        paper={},
    )
    lines = render_markdown(view).splitlines()
    assert lines[0] == "**Table 4.** Ablation of modules"
    header, rule, base, tfa_flsa = lines[2:6]
    assert header.startswith("| TFA | FLSA | P ↑ ours | P ↑ paper | S ↑ ours")
    assert header.count("|") == rule.count("|") == base.count("|") == tfa_flsa.count("|") == 13
    assert tfa_flsa.startswith("| ✓ | ✓ | – | – |")


def test_latex_escapes_specials_and_labels_from_title():
    view = build_view(
        title="Table 4",
        caption="Gain of 5% on AVA_v2 & TAD66K #1 ± std ↑",
        row_labels=[("tfa", ["✓"])],
        header_columns=["TFA"],
        results=pd.DataFrame([_run("tfa", 0, [0.7] * 5), _run("tfa", 1, [0.7] * 5)]),
        paper={},
    )
    latex = render_latex(view)
    assert r"\caption{Gain of 5\% on AVA\_v2 \& TAD66K \#1 $\pm$ std $\uparrow$}" in latex
    assert r"\label{tab:table-4}" in latex
    assert r"$\checkmark$" in latex and "✓" not in latex
    assert r"\textbf{0.700 $\pm$ 0.000}" in latex
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){2-3}"):
        assert rule in latex


def test_unknown_result_rows_are_rejected():
    with pytest.raises(ValueError, match="typo"):
        _view([_run("typo", 0, [0.7] * 5)], ["a"])


def test_latex_document_compiles(tmp_path):
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is not on PATH, but CI is meant to install texlive")
        pytest.skip("pdflatex is not on PATH")
    runs = [
        _run("base", 0, [0.74, 0.73, 0.61, 0.29, 0.51]),
        _run("base", 1, [0.75, 0.74, 0.62, 0.30, 0.52]),
        _failed("tfa", 0, "out of memory: 100% of 80 GiB & more_than_that #3 {x} ~ ^ \\ | <>"),
    ]
    view = build_view(
        title="Table 4",
        caption="Ablation of modules on AVA (50% & more_x #1).",
        row_labels=[("base", ["", "", ""]), ("tfa", ["✓", "", ""]), ("apds", ["", "", "✓"])],
        header_columns=["TFA", "FLSA", "APDS"],
        results=pd.DataFrame(runs),
        paper={("base", m): paper_value("4", "AVA", "base", m) for m in METRIC_KEYS},
    )
    (tmp_path / "table.tex").write_text(render_latex_document(view), encoding="utf-8")
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "table.pdf").stat().st_size > 0


# --- the threshold chosen on validation (sampling table) -------------------------------------


def _sampling_runs(val_by_row: dict[str, list[float]]) -> pd.DataFrame:
    records = []
    for row, values in val_by_row.items():
        for seed, val in enumerate(values):
            status = "failed" if val is None else "ok"
            records.append({"row": row, "seed": seed, "status": status, "val_srcc": val})
    return pd.DataFrame(records)


def test_the_best_mean_validation_srcc_is_chosen_and_said():
    spec = get_table("sampling")
    runs = _sampling_runs(
        {"threshold_0.5": [0.60, 0.70], "threshold_1.0": [0.66, 0.66], "elta": [0.9, 0.9]}
    )
    chosen, notes = choose_on_val(spec, runs)
    assert chosen == {"threshold": "threshold_1.0"}  # mean 0.66 beats 0.65; elta is no candidate
    assert notes == [
        "Chosen on validation SRCC: threshold_1.0 (threshold_0.5 0.650, threshold_1.0 0.660)."
    ]


def test_no_choice_without_ok_candidates_or_defined_validation_srcc():
    spec = get_table("sampling")
    failed = pd.DataFrame([{"row": "threshold_0.5", "seed": 0, "status": "failed"}])
    assert choose_on_val(spec, failed) == ({}, [])
    assert choose_on_val(spec, _sampling_runs({"threshold_0.5": [math.nan]})) == ({}, [])
    partly = _sampling_runs({"threshold_0.5": [None, 0.5], "threshold_1.0": [math.nan]})
    assert choose_on_val(spec, partly)[0] == {"threshold": "threshold_0.5"}


def test_blocks_bold_the_best_within_each_dataset_and_rule_between_them():
    runs = [
        _run("ava/a", 0, [0.70, 0.6, 0.5, 0.3, 0.4]),
        _run("ava/b", 0, [0.60, 0.6, 0.4, 0.3, 0.4]),
        _run("para/a", 0, [0.20, 0.6, 0.5, 0.3, 0.4]),
        _run("para/b", 0, [0.30, 0.6, 0.6, 0.3, 0.4]),
    ]
    view = build_view(
        "Table 2", "DIR", [("ava/a", ["ava", "a"]), ("ava/b", ["", "b"]),
                           ("para/a", ["para", "a"]), ("para/b", ["", "b"])],
        ["Dataset", "Method"], pd.DataFrame(runs), {}, blocks=["ava", "ava", "para", "para"],
    )  # fmt: skip
    assert [_ours(view, r, 0).bold for r in range(4)] == [True, False, False, True]  # per block
    assert [_ours(view, r, 2).bold for r in range(4)] == [False, True, True, False]
    assert [row.rule_before for row in view.rows] == [False, False, True, False]
    assert render_latex(view).count(r"\midrule") == 2  # under the header, between the blocks


def test_a_block_table_writes_one_file_with_every_dataset(tmp_path):
    from tables.make import write_blocks
    from tables.specs import get_table

    spec = get_table("2")
    keys = [row.key for row in spec.rows]
    runs = [_run(key, 0, [0.5 + k / 10, 0.5, 0.5, 0.3, 0.4]) for k, key in enumerate(keys)]
    per_dataset = {name: pd.DataFrame(runs) for name in ("synth-ava", "synth-para")}
    out = tmp_path / "table2"
    markdown = write_blocks(spec, per_dataset, ["AVA", "PARA"], "caption", out)
    lines = [
        line
        for line in markdown.splitlines()
        if line.startswith("| synth-") or line.startswith("|  |")
    ]
    assert len(lines) == 8 and lines[0].startswith("| synth-ava | L&FDS |")
    assert lines[4].startswith("| synth-para | L&FDS |")
    assert "0.743" in lines[2] and "0.925" in lines[6]  # the paper's Base. P on AVA and PARA
    records = pd.read_csv(out.with_suffix(".csv"))
    assert sorted(records["dataset"].unique()) == ["synth-ava", "synth-para"]
    assert set(records["row"]) == set(keys)  # rows keep their keys beside the dataset


def test_a_row_compared_with_another_shows_the_change_of_its_mean():
    runs = [
        _run("plain", 0, [0.60, 0.5, 0.5, 0.3, 0.4]),
        _run("plain", 1, [0.62, 0.5, 0.5, 0.3, 0.4]),
        _run("elta", 0, [0.65, 0.5, 0.4, 0.3, 0.4]),
    ]
    paper = {("plain", "plcc"): 0.700, ("elta", "plcc"): 0.710}
    view = build_view("Table 3", "plug-in", [("plain", ["plain"]), ("elta", ["+ELTA"])], ["Model"],
                      pd.DataFrame(runs), paper, change_against={"elta": "plain"})  # fmt: skip
    assert _ours(view, 0, 0).text == "0.610 ± 0.014"  # the reference row itself: no change
    assert _ours(view, 1, 0).text == "0.650 (+0.040)"  # 0.65 - mean(0.60, 0.62)
    assert _theirs(view, 1, 0).text == "0.710 (+0.010)"
    assert _ours(view, 1, 2).text == "0.400 (-0.100)"
    assert _theirs(view, 1, 2).text == "–"  # no paper value: no change either


def test_caption_names_the_recipe_keys_a_command_set():
    from bench.run.grid import Request
    from tables.make import caption

    record = {**_run("base", 0, [0.6] * 5), "model": "swinv2", "code": "c0de", "data": "d474"}
    runs = {"synth-ava": pd.DataFrame([{**record, "variants": None}])}
    plain = caption(get_table("4"), ["synth-ava"], ["AVA"], Request(), runs)
    assert "--recipe" not in plain
    asked = Request(
        recipe={"musiq": {"batch_size": 64, "batch_fit": "accumulate"}, "*": {"emd": "per_sample"}}
    )
    text = caption(get_table("4"), ["synth-ava"], ["AVA"], asked, runs)
    assert (
        "(--recipe, --emd): musiq.batch_size=64, musiq.batch_fit=accumulate, emd=per_sample."
        in text
    )
