"""Cells read back from the results store: one record per (row, seed) of each dataset.

A record holds the row, the seed, the final stage's id (`stage`: its folder in the store), its
status and reason, the code version and data fingerprint it ran on, and when it succeeded its
test metrics and the validation metrics of the checkpoint it kept (`val_srcc`, ...). Tables,
figures, the claim checker and `bench.dev.choose` read runs through this function only.
"""

from __future__ import annotations

import pandas as pd

from bench.run.grid import Cell
from bench.run.store import Store, read_json

VALIDATION = ("srcc", "plcc", "mae_l", "mae_m", "mae_h")


def record(cell: Cell, store: Store) -> dict:
    final = cell.final
    status = store.status(final.id) or {"status": "missing", "reason": "not run"}
    out = {"row": cell.row, "seed": cell.seed, "status": status["status"]}
    out["reason"] = status.get("reason", "")
    versions = store.path(final.id) / "versions.json"
    out["code"] = read_json(versions)["code"] if versions.exists() else None
    data = store.path(final.id) / "data.json"
    out["data"] = read_json(data)["fingerprint"] if data.exists() else None
    if status["status"] == "ok":
        metrics = store.metrics(final.id)
        out.update(metrics["test"])
        out.update({f"val_{key}": metrics["val"].get(key) for key in VALIDATION})
    out["stage"] = final.id
    return out


def records(cells: list[Cell], store: Store) -> dict[str, pd.DataFrame]:
    """Dataset -> one record per cell of it, in the cells' order."""
    by_dataset: dict[str, list[dict]] = {}
    for cell in cells:
        by_dataset.setdefault(cell.dataset, []).append(record(cell, store))
    return {dataset: pd.DataFrame(rows) for dataset, rows in by_dataset.items()}
