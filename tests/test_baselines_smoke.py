"""Every registered model trains a smoke round with ELTA's three modules, through the runner."""

from __future__ import annotations

import pytest

import run_all
from baselines import list_models
from bench.run.store import Store


@pytest.mark.parametrize("model", sorted(list_models()))
def test_smoke_round_with_tfa_flsa_apds(model, tmp_path, capsys):
    args = ["--model", model, "--methods", "tfa,flsa,apds", "--profile", "smoke", "--jobs", "1"]
    assert run_all.main([*args, "--results", str(tmp_path)]) == 0
    store = Store(tmp_path)
    stages = [d for d in (tmp_path / "runs").iterdir() if not d.name.startswith(".")]
    assert stages and all(store.is_ok(d.name) for d in stages)
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith(f"| {model} "))
    assert "failed" not in row and "nan" not in row.lower()
