"""Table 5 and the Section 4.4 sampling table, end to end on the smoke profile."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
