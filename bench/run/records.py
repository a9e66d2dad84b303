"""Cells read back from the results store: one record per (row, seed) of each dataset.

A record holds the row, the seed, the final stage's id (`stage`: its folder in the store), its
status and reason, the code version and data fingerprint it ran on, and when it succeeded its
test metrics and the validation metrics of the checkpoint it kept (`val_srcc`, ...). Tables,
figures, the claim checker and `bench.dev.choose` read runs through this function only.

Statuses: ok, failed, missing (not stored), damaged (the stored stage failed its check and was
moved to quarantine, bench/run/store.py; the reason says why and where).
"""

from __future__ import annotations

import math

import pandas as pd

from bench.run.grid import Cell
from bench.run.store import Store, read_json

TEST = ("plcc", "srcc", "mae", "acc", "mae_l", "mae_m", "mae_h")  # bench.train.metrics
VALIDATION = ("srcc", "plcc", "mae_l", "mae_m", "mae_h")


def record(cell: Cell, store: Store) -> dict:
    final = cell.final
    status = store.status(final.id) or {"status": "missing", "reason": "not run"}
    try:
        stored = _stored(store, final.id, status["status"] == "ok")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        # checked intact, then changed: say so, a later check moves it aside
        problem = f"its JSON files cannot be read ({type(err).__name__}: {err})"
        status, stored = store.report_damage(final.id, problem), _stored(store, final.id, False)
    out = {"row": cell.row, "seed": cell.seed, "status": status["status"]}
    out["reason"] = status.get("reason", "")
    out.update(stored)
    config = final.config.get("parent", final.config)
    out["model"] = config["model"]
    out["variants"] = "+".join(config.get("variants", ())) or None
    out["stage"] = final.id
    return out


def _stored(store: Store, stage_id: str, ok: bool) -> dict:
    """The code version and data fingerprint a stage ran on, and its metrics if `ok`."""
    versions = store.path(stage_id) / "versions.json"
    out = {"code": read_json(versions)["code"] if versions.exists() else None}
    data = store.path(stage_id) / "data.json"
    out["data"] = read_json(data)["fingerprint"] if data.exists() else None
    metrics = store.metrics(stage_id) if ok else {"test": {}, "val": {}}
    out.update({key: metrics["test"].get(key, math.nan) for key in TEST})
    out.update({f"val_{key}": metrics["val"].get(key, math.nan) for key in VALIDATION})
    return out


def records(cells: list[Cell], store: Store) -> dict[str, pd.DataFrame]:
    """Dataset -> one record per cell of it, in the cells' order."""
    by_dataset: dict[str, list[dict]] = {}
    for cell in cells:
        by_dataset.setdefault(cell.dataset, []).append(record(cell, store))
    return {dataset: pd.DataFrame(rows) for dataset, rows in by_dataset.items()}
