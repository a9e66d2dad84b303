"""A grid of runs: datasets x rows x seeds -> stage chains. Pure Python (no torch), the one
planner behind every table, figure and a user's own script:

    from bench.grid import Row, plan_grid
    cells = plan_grid(["synth-ava"], [Row("nima", "nima", {"tfa": True, "flsa": True})],
                      seeds=3, profile="cpu")
    # -> bench.runner.plan([c.chain for c in cells], store, force=False), then execute

A row is a model and the method options it runs with (`bench.methods.MethodOptions` fields;
`flsa: True` turns FLSA on at the grid's FLSA weight). Options common to the grid (the command
line's --tau1, --emd, ...) apply under each row's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import UserError
from bench.methods import MethodOptions
from bench.plan import RunRequest, Stage, stages_for

FLSA_WEIGHT_DEFAULT = 1.0  # the official README's example (--simloss_weight 1)
# RankSim's gamma, chosen on synth-ava's validation split (python -m bench.choose dir; README);
# the official recommendation, 100, was tuned for age regression with an L1 loss.
RANKSIM_GAMMA_DEFAULT = 0.001


@dataclass(frozen=True)
class Row:
    key: str  # names the row in tables and in the paper's numbers
    model: str  # a registered model (baselines/models.toml)
    # MethodOptions fields; flsa / ranksim: True turn them on at the grid's weight
    options: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)  # over the model's recipe (e.g. lr candidates)


@dataclass(frozen=True)
class Cell:
    """One run of the grid and its chain of stages (the last one holds its metrics)."""

    dataset: str
    row: str
    seed: int
    chain: list[Stage]


def method_options(
    row: Row, common: dict, flsa_weight: float, ranksim_weight: float = RANKSIM_GAMMA_DEFAULT
) -> MethodOptions:
    """The row's options over the grid's common ones (UserError for bad values). `flsa` and
    `ranksim` turn those modules on at the grid's weights, unless the row sets its own."""
    options = {**common, **row.options}
    if options.pop("flsa", False):
        options.setdefault("flsa_weight", flsa_weight)
    if options.pop("ranksim", False):
        options.setdefault("ranksim_weight", ranksim_weight)
    return MethodOptions(**options)


def plan_grid(
    datasets: list[str],
    rows: list[Row],
    seeds: int,
    profile: str,
    common: dict | None = None,
    flsa_weight: float = FLSA_WEIGHT_DEFAULT,
    ranksim_weight: float = RANKSIM_GAMMA_DEFAULT,
    data_root: Path | None = None,
    weights: dict[str, dict[str, str]] | None = None,
    eval_only: bool = False,
    unlabeled: Path | None = None,
) -> list[Cell]:
    """Every (dataset, row, seed) of a grid with its stage chain. `weights` maps a model to
    its weight files (part -> path); `eval_only` evaluates them instead of training."""
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1 (got {seeds})")
    common = common or {}
    weights = weights or {}
    cells = []
    for dataset in datasets:
        for row in rows:
            opts = method_options(row, common, flsa_weight, ranksim_weight)
            for seed in range(seeds):
                request = RunRequest(
                    dataset=dataset,
                    model=row.model,
                    profile=profile,
                    seed=seed,
                    options=opts,
                    data_root=str(data_root.resolve()) if data_root else None,
                    weights=weights.get(row.model),
                    eval_only=eval_only,
                    recipe=row.recipe or None,
                    unlabeled=str(unlabeled.resolve()) if unlabeled else None,
                )
                cells.append(Cell(dataset, row.key, seed, stages_for(request)))
    return cells


def describe(cells: list[Cell]) -> dict[str, list[str]]:
    """Stage id -> the runs it serves ("dataset/row/seedN"), for dry runs."""
    serves: dict[str, list[str]] = {}
    for cell in cells:
        for stage in cell.chain:
            serves.setdefault(stage.id, []).append(f"{cell.dataset}/{cell.row}/seed{cell.seed}")
    return serves
