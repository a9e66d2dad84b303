"""Table 5, the Section 4.4 sampling table and Figure 5, end to end on the smoke profile."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import run_all
from figures.tau_heatmap import summarise

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run_all.py", *args, "--profile", "smoke", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _methods(results: Path) -> list[dict]:
    runs = sorted((results / "runs").iterdir())
    configs = [json.loads((run / "config.json").read_text()) for run in runs]
    return [c["method"] for c in configs if c["stage"] == "round1"]


@pytest.fixture(scope="module")
def ablation_results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ablations")


def test_table5_pixel_against_feature_mixup(ablation_results):
    proc = _cli("--table", "5", "--jobs", "2", results=ablation_results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    markdown = (ablation_results / "tables" / "table5.md").read_text()
    assert markdown in proc.stdout
    for label, paper_plcc in [("TFA(pixel)", "0.731"), ("TFA(pixel)+FLSA+APDS", "0.752")]:
        line = next(x for x in markdown.splitlines() if x.startswith(f"| {label} |"))
        assert paper_plcc in line and "failed" not in line
    levels = sorted(m["tfa_level"] for m in _methods(ablation_results))
    assert levels == ["feature", "feature", "pixel", "pixel"]


def test_sampling_table_chooses_the_threshold_on_validation(ablation_results):
    proc = _cli("--table", "sampling", "--jobs", "2", results=ablation_results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    markdown = (ablation_results / "tables" / "table-sampling.md").read_text()
    rows = [x for x in markdown.splitlines() if x.startswith("| ") and "Beta" in x]
    assert len(rows) == 5  # random + four thresholds
    chosen = [x for x in rows if "(chosen on val)" in x]
    assert len(chosen) == 1 and "0.755" in chosen[0] and "0.747" in chosen[0]
    note = next(x for x in markdown.splitlines() if "Chosen on validation SRCC" in x)
    name, listing = note.split(": ", 1)[1].rstrip(").").split(" (")
    val = {row: float(v) for row, v in (item.split() for item in listing.split(", "))}
    assert len(val) == 4 and name == max(val, key=val.get)
    assert f"≥ {name.removeprefix('threshold_')} (chosen on val)" in chosen[0]
    assert "4.6 %" in markdown
    samplings = [m.get("tfa_sampling", "elta") for m in _methods(ablation_results)]
    assert samplings.count("threshold") == 4 and samplings.count("random") == 1
    # ELTA's row is Table 5's TFA(feature)+FLSA+APDS (and Table 4's): computed once, shared
    dry = _cli("--table", "5", "--dry-run", results=ablation_results).stdout.splitlines()
    shared = [x for x in dry if x.endswith("synth-ava/tfa+flsa+apds/seed0")]
    assert len(shared) == 2 and all(" cached " in x for x in shared)
    tex = (ablation_results / "tables" / "table-sampling.tex").read_text()
    assert r"$\lambda$" in tex and r"$\geq$" in tex


def test_figure5_heatmap_matches_the_stored_runs(ablation_results):
    grid = ["--tau1-grid", "0.1,0.2", "--tau2-grid", "2,4"]
    proc = _cli("--figure", "5", *grid, "--jobs", "2", results=ablation_results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = ablation_results / "figures"
    for suffix in ("png", "pdf"):
        assert (figures / f"fig5_tau.{suffix}").stat().st_size > 1000
    table = pd.read_csv(figures / "fig5_tau.csv")
    assert sorted(zip(table.tau1, table.tau2, strict=True)) == [
        (0.1, 2.0),
        (0.1, 4.0),
        (0.2, 2.0),
        (0.2, 4.0),
    ]
    assert (table.n_ok == 1).all() and (table.n_failed == 0).all()
    stored = {}
    for run in (ablation_results / "runs").iterdir():
        config = json.loads((run / "config.json").read_text())
        method = config.get("method", {})
        if config["stage"] == "round1" and method.get("tfa") and method["flsa_weight"] == 0:
            if method.get("tfa_level") == "feature" and "tfa_sampling" not in method:
                metrics = json.loads((run / "metrics.json").read_text())
                stored[(method["tau1"], method["tau2"])] = metrics["test"]["srcc"]
    for row in table.itertuples():
        assert row.srcc_mean == pytest.approx(stored[(row.tau1, row.tau2)], abs=1e-9)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--figure", "5", "--tau1-grid", "0.1,x"], "--tau1-grid takes comma-separated"),
        (["--figure", "5", "--tau2-grid", "0,4"], "--tau2-grid needs one or more values > 0"),
        (["--figure", "3"], "unknown figure '3'"),
        (["--table", "4", "--tau1-grid", "0.1"], "apply to --figure 5"),
        (["--table", "4", "--figure", "5"], "not both"),
    ],
)
def test_bad_figure_options_are_one_line_errors(args, needle, tmp_path, capsys):
    try:
        code = run_all.main([*args, "--profile", "smoke", "--results", str(tmp_path)])
    except SystemExit as exit_:  # argparse-level errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1


def test_summarise_averages_ok_seeds_and_counts_failures():
    runs = pd.DataFrame(
        {
            "tau1": [0.2, 0.2, 0.2, 0.5],
            "tau2": [4.0, 4.0, 4.0, 4.0],
            "seed": [0, 1, 2, 0],
            "status": ["ok", "ok", "failed", "failed"],
            "srcc": [0.6, 0.7, float("nan"), float("nan")],
            "plcc": [0.5, 0.7, float("nan"), float("nan")],
            "val_srcc": [0.61, 0.63, float("nan"), float("nan")],
        }
    )
    grid = summarise(runs).set_index(["tau1", "tau2"])
    ok = grid.loc[(0.2, 4.0)]
    assert ok.srcc_mean == pytest.approx(0.65) and ok.srcc_std == pytest.approx(0.0707107)
    assert ok.plcc_mean == pytest.approx(0.6) and (ok.n_ok, ok.n_failed) == (2, 1)
    failed = grid.loc[(0.5, 4.0)]
    assert np.isnan(failed.srcc_mean) and (failed.n_ok, failed.n_failed) == (0, 1)
