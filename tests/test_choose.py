"""Choosing on validation: the candidates' grids, and the choice from stored validation metrics."""

from __future__ import annotations

from bench.dev import choose
from bench.run.dag import RunRequest, stages_for
from bench.run.grid import Grid, Request
from bench.train.methods import MethodOptions


def test_lr_candidates_override_the_recipe_and_a_chosen_value_reuses_its_run(monkeypatch):
    from baselines import registry

    rows = choose.lr_grids(["nima"])["nima lr"]
    assert [row.recipe["lr"] for row in rows] == list(choose.LEARNING_RATES)
    cells = Grid(["synth-ava"], rows, Request("cpu", 1)).cells()
    assert len({cell.chain[-1].id for cell in cells}) == len(rows)
    # Writing the chosen lr into the model's cpu recipe gives the candidate's stage id.
    entry = registry.model_entry("nima")
    chosen = {**entry["configs"]["cpu"], "recipe": {"lr": 1e-3}}
    entries = {
        **registry._registry(),
        "nima": {**entry, "configs": {**entry["configs"], "cpu": chosen}},
    }
    monkeypatch.setattr(registry, "_registry", lambda: entries)
    plain = stages_for(RunRequest("synth-ava", "nima", "cpu", 0, MethodOptions()))
    assert plain[-1].id == cells[2].chain[-1].id


def test_tfa_pairs_candidates_are_table4s_tfa_rows():
    cells = Grid(["synth-ava"], choose.tfa_pairs_grids()["tfa pairs"], Request("cpu", 1)).cells()
    default = stages_for(RunRequest("synth-ava", "swinv2", "cpu", 0, MethodOptions(tfa=True)))
    assert cells[1].chain[-1].id == default[-1].id  # 4 pairs: the default, cached by Table 4


def test_the_best_mean_validation_srcc_comes_first(tmp_path, monkeypatch):
    from bench.run.store import Store

    rows = choose.dir_grids()["lds reweight"]
    cells = Grid(["synth-ava"], rows, Request("smoke", 2)).cells()
    val_srcc = {
        ("sqrt_inv", 0): 0.50,
        ("sqrt_inv", 1): 0.60,
        ("inverse", 0): 0.52,
        ("inverse", 1): 0.54,
    }
    metrics = {cell.chain[-1].id: val_srcc[(cell.row, cell.seed)] for cell in cells}
    # Every stage stored as ok (so nothing runs), with these validation metrics.
    monkeypatch.setattr(Store, "status", lambda self, stage_id: {"status": "ok", "reason": ""})
    monkeypatch.setattr(
        Store,
        "metrics",
        lambda self, stage_id: {
            "test": {},
            "val": {m: metrics.get(stage_id, 0.0) for m in choose.METRICS},
        },
    )
    table = choose.choose({"lds reweight": rows}, "synth-ava", "smoke", 2, 1, tmp_path)[
        "lds reweight"
    ]
    assert list(table.index) == ["sqrt_inv", "inverse"]  # means 0.55 and 0.53
    assert table.loc["inverse", "srcc"] == 0.53
