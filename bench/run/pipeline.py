"""The one pipeline under every command: grids of runs -> stages -> the results store -> records.

    grids (bench.run.grid)   every (dataset, row, seed) and its chain of stages (bench.run.dag)
    schedule                 the stages deduplicated across every grid, parents first, the most
                             widely shared and cheapest chains first (bench.run.runner); a stored
                             stage counts only if it passes its check (bench.run.store: a damaged
                             one is moved to quarantine and run again)
    execute                  what the store lacks (nothing with `cached_only`): the data and the
                             weight files are checked first, then the runner fans out
    records                  one record per cell, read back from the store (bench.run.records);
                             with `cached_only`, a damaged stage's cells say "damaged"

The command line (run_all.py), the tables (tables/make.py), the figures (figures/make.py), the
claim checker (tables/claims.py) and `python -m bench.dev.choose` all call `run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.run.estimate import StageCosts, estimate
from bench.run.grid import Cell, Grid, describe
from bench.run.records import records
from bench.run.runner import Schedule, schedule
from bench.run.store import Store
from iaa_common import UserError


@dataclass(frozen=True)
class Execution:
    """How a command runs its grids (never part of a stage's identity)."""

    results: Path = Path("results")
    device: str = "auto"  # auto (cuda when present), cpu, cuda, ...
    jobs: int | None = None  # stages at once; None: one per core (one on a GPU)
    backend: str = "loky"  # joblib backend: loky or ray
    force: bool = False  # recompute stored stages
    cached_only: bool = False  # read the store, run nothing
    dry_run: bool = False  # schedule only

    def __post_init__(self) -> None:
        if self.jobs is not None and self.jobs < 1:
            raise UserError(f"--jobs must be >= 1 (got {self.jobs})")
        if self.results.exists() and not self.results.is_dir():
            raise UserError(f"{self.results}: --results is not a folder")


@dataclass
class Outcome:
    """The grids' cells (in the order given), the schedule, and after a run the records: one
    DataFrame per grid and dataset, a record per (row, seed) (`bench.run.records`)."""

    cells: list[list[Cell]]
    schedule: Schedule
    store: Store
    records: list[dict[str, pd.DataFrame]] = field(default_factory=list)

    @property
    def todo(self) -> list:
        return [stage for stage in self.schedule.stages if stage.id not in self.schedule.cached]

    def describe(self, how: Execution) -> str:
        """Each stage, cached or to run, with the runs it serves; the count; the time to run on
        `how.device`, as many stages at once as the runner would run (bench/run/estimate.py)."""
        serves = describe([cell for cells in self.cells for cell in cells])
        lines = []
        for stage in self.schedule.stages:
            state = "cached" if stage.id in self.schedule.cached else "to run"
            lines.append(f"{stage.id}  {stage.kind:9s}  {state:6s}  {', '.join(serves[stage.id])}")
        n_all, n_cached = len(self.schedule.stages), len(self.schedule.cached)
        lines.append(f"{n_all} stages: {n_cached} cached, {n_all - n_cached} to run")
        if self.todo:
            todo_estimate = estimate(self.todo, self.store, how.device, how.jobs, how.backend)
            lines.append(todo_estimate.describe())
        return "\n".join(lines)


def run(grids: Sequence[Grid], how: Execution) -> Outcome:
    """Plan every grid, deduplicate their stages, run those the store lacks (unless
    `how.cached_only` or `how.dry_run`), and read every cell's record back."""
    store = Store(how.results)
    cells = [grid.cells() for grid in grids]
    serves = describe([cell for grid_cells in cells for cell in grid_cells])
    cost = StageCosts(store)
    # The most widely shared chains first, and among equally shared ones the cheapest.
    chains = sorted(
        (cell.chain for grid_cells in cells for cell in grid_cells),
        key=lambda chain: (-len(serves[chain[0].id]), sum(map(cost, chain))),
    )
    the_schedule = schedule(chains, store, how.force)
    outcome = Outcome(cells, the_schedule, store)
    if how.dry_run:
        return outcome
    if outcome.todo and not how.cached_only:
        _prepare(grids, how)
        from bench.run.dag import Context
        from bench.run.runner import check_settings, default_jobs, execute

        check_settings(how.device, how.backend)
        jobs = how.jobs or default_jobs(how.device)
        ctx = Context(results=how.results, device=how.device)
        execute(the_schedule, ctx, jobs, how.backend, how.force)
    outcome.records = [records(grid_cells, store) for grid_cells in cells]
    return outcome


def _prepare(grids: Sequence[Grid], how: Execution) -> None:
    """Before anything runs: check every dataset (generating the embedded benchmark) and every
    weight file, so that bad input stops the command with one line, not stage by stage; say
    how a released model is evaluated."""
    from baselines import create_model
    from baselines.registry import model_entry
    from bench.data.registry import load_dataset
    from bench.profiles import get_profile

    checked: set[tuple] = set()
    for grid in grids:
        ask = grid.request
        profile = get_profile(ask.profile)
        models = {row.model for row in grid.rows}
        for row in grid.rows if ask.eval_only and profile.name == "paper" else ():
            released = model_entry(row.model).get("released")
            if released and not ask.variants_for(row):
                print(f"{row.model}: evaluated as released, {released}")
        root = ask.data.root.resolve() if ask.data.root else None
        for dataset in grid.datasets:
            key = (dataset, profile.name, root, ask.data.unlabeled)
            if key not in checked:
                checked.add(key)
                load_dataset(dataset, profile, root, how.results / "cache", ask.data.unlabeled)
        for model, parts in ask.weights.items():
            key = (model, profile.name, tuple(sorted(parts.items())))
            if model in models and key not in checked:
                checked.add(key)
                create_model(model, profile.models, parts)
