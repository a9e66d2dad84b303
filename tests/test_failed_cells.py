"""A table whose every stage failed still renders: each cell says "failed", the reason is under
the table, the exit code is 1, and nothing raises (issue: a traceback once stopped rendering)."""

from __future__ import annotations

import run_all


def test_a_table_whose_every_run_failed_renders_its_failed_cells(tmp_path, capsys):
    args = ["--model", "swinv2", "--profile", "smoke", "--jobs", "1", "--results", str(tmp_path)]
    code = run_all.main([*args, "--recipe", "lr=nan"])  # a NaN learning rate: the loss diverges
    out = capsys.readouterr().out
    assert code == 1
    table = (tmp_path / "tables" / "run-base.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| swinv2"))
    assert row.count("failed") == 5  # P, S, L, M, H: ours failed, the paper's beside them
    assert "1/1 seeds failed" in table and "written:" in out
