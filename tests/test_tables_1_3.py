"""Tables 1 and 3, Figure 1, the tail figure and --table all, end to end on the smoke profile
(on synth-ava only, to keep the suite short; the four datasets take the same code path as
Table 2's blocks, tested in test_tables.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--profile", "smoke", "--dataset", "synth-ava"]


def _cli(*args: str, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run_all.py", *args, "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Table 1 then Table 3 on synth-ava at smoke, in one store."""
    store = tmp_path_factory.mktemp("tables13")
    for table in ("1", "3"):
        proc = _cli("--table", table, *SMOKE, "--jobs", "2", results=store)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return store


def test_table1_has_every_model_and_elta_beside_the_paper(results):
    markdown = (results / "tables" / "table1.md").read_text()
    names = ["NIMA", "HGCN", "BIAA", "TANet", "MaxViT", "MUSIQ", "EAT", "Base.", "Ours"]
    rows = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[1] for row in rows] == names
    assert "0.770" in rows[6] and "0.777" in rows[8]  # the paper's EAT and ELTA P on AVA
    records = pd.read_csv(results / "tables" / "table1.csv")
    assert len(records) == 9 and (records["status"] == "ok").all()
    assert r"\midrule" in (results / "tables" / "table1.tex").read_text()


def test_table3_reuses_table1s_plain_runs_and_shows_the_change(results):
    dry = _cli("--table", "3", *SMOKE, "--dry-run", results=results)
    assert "24 stages: 24 cached, 0 to run" in dry.stdout  # BIAA and EAT also in official form
    markdown = (results / "tables" / "table3.md").read_text()
    nima = [line for line in markdown.splitlines() if line.startswith("| ")][1:4]
    assert nima[0].startswith("| NIMA | plain |") and "(" not in nima[0]
    assert "0.658 (+0.022)" in nima[2]  # the paper's change for NIMA+TFA+FLSA+APDS, P
    plain = float(nima[0].split(" | ")[2])
    ours = nima[2].split(" | ")[2].strip("*")
    value, change = ours.split(" (")
    assert float(change.rstrip(")")) == pytest.approx(float(value) - plain, abs=1.5e-3)


def test_tail_figure_and_figure1_from_the_store(results):
    dry = _cli("--figure", "tail", *SMOKE, "--dry-run", results=results)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "9 of 9 Table 1 runs and 14 of 14 Table 3 runs stored" in dry.stdout
    dry1 = _cli("--figure", "1", "--profile", "smoke", "--dry-run", results=results)
    assert dry1.returncode == 0 and "trains nothing" in dry1.stdout, dry1.stderr[-2000:]
    assert not (results / "figures").exists()  # a dry run draws nothing
    tail = _cli("--figure", "tail", *SMOKE, results=results)
    assert tail.returncode == 0, tail.stderr[-2000:]
    assert "9 of 9 Table 1 runs and 14 of 14 Table 3 runs stored" in tail.stdout
    data = pd.read_csv(results / "figures" / "fig_tail.csv")
    by_bin = data[data["panel"] == "mae_by_bin"]
    assert set(by_bin["model"]) == {"NIMA", "HGCN", "BIAA", "TANet", "MaxViT", "MUSIQ", "EAT",
                                    "Base.", "Ours"}  # fmt: skip
    assert (by_bin["n_images"] > 0).all() and by_bin["mae"].notna().all()
    plug_in = data[data["panel"] == "plug_in"]
    assert len(plug_in) == 7 * 2 * 3  # models x (plain, ELTA) x (L, M, H)
    figure1 = _cli("--figure", "1", "--profile", "smoke", results=results)
    assert figure1.returncode == 0, figure1.stderr[-2000:]
    counts = pd.read_csv(results / "figures" / "fig1_histograms.csv")
    assert sorted(counts["dataset"].unique()) == [
        "synth-aadb", "synth-ava", "synth-para", "synth-tad66k"
    ]  # fmt: skip
    shares = counts.groupby("dataset")[["proportion", "paper_proportion"]].sum()
    assert (shares.round(6) == 1).all().all()
    for suffix in (".png", ".pdf"):
        assert (results / "figures" / f"fig_tail{suffix}").stat().st_size > 0


def test_table_all_cached_only_renders_everything_and_writes_the_report(results):
    proc = _cli("--table", "all", *SMOKE, "--cached-only", results=results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stem in ("table1", "table2", "table3", "table4", "table5", "table-sampling"):
        assert (results / "tables" / f"{stem}.md").exists(), stem
    report = (results / "report.md").read_text()
    assert (
        report.index("**Table 1.**") < report.index("**Table 2.**") < report.index("**Table 4.**")
    )
    assert "not run" in report  # Table 4's APDS-only rows were never trained here
    assert "![fig5_tau](figures/fig5_tau.png)" in report
    dry = _cli("--table", "all", *SMOKE, "--dry-run", results=results)
    assert "estimated wall time" in dry.stdout
