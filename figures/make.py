"""The figures, made from the results store (Figure 5 runs its grid through the pipeline first,
nothing with --cached-only); each returns what it printed and the files it wrote.

    1     score histograms of the datasets beside the paper's Figure 1 (no runs)
    5     test SRCC of TFA over a tau1 x tau2 grid (runs the grid)
    tail  MAE per score bin of Table 1's models; L/M/H of Table 3's models with and without
          ELTA (stored results only)
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from bench.data.registry import load_dataset, paper_dataset
from bench.profiles import get_profile
from bench.run.grid import Request, Row
from bench.run.pipeline import Execution, Outcome, run
from iaa_common import UserError
from tables.make import Made
from tables.specs import (
    FIGURES,
    FOUR_DATASETS,
    IAA_MODELS,
    TAU1_GRID,
    TAU2_GRID,
    get_table,
    tau_rows,
)


@dataclass(frozen=True)
class TauGrid:
    """Figure 5's axes and model (--tau1-grid, --tau2-grid, --model)."""

    tau1: Sequence[float] = TAU1_GRID
    tau2: Sequence[float] = TAU2_GRID
    model: str = "swinv2"

    def rows(self) -> list[Row]:
        """A TFA row per (tau1, tau2)."""
        return tau_rows(self.tau1, self.tau2, self.model)


def parse_grid(text: str | None, default: Sequence[float], flag: str) -> list[float]:
    """--tau1-grid / --tau2-grid: comma-separated values > 0, sorted, duplicates dropped."""
    if text is None:
        return list(default)
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated numbers, got '{text}'") from None
    if not values or min(values) <= 0:
        raise UserError(f"{flag} needs one or more values > 0, got '{text}'")
    return sorted(set(values))


def _noted(title: str, request: Request) -> str:
    """A figure's title under the request's note (a rehearsal says so), wrapped."""
    return f"{textwrap.fill(request.note, 110)}\n{title}" if request.note else title


def make_figure(
    key: str, request: Request, how: Execution, taus: TauGrid = TauGrid()
) -> Made | Outcome:
    """Figure `key` (FIGURES); a dry run of Figure 5 returns the Outcome, of Figure 1 and the
    tail figure (which train nothing) what they would be drawn from, drawing nothing."""
    if key == "1":
        return histograms(request, how)
    if key == "5":
        return tau_heatmap(request, how, taus)
    if key == "tail":
        return tail(request, how)
    raise UserError(f"unknown figure '{key}'; valid figures: {', '.join(FIGURES)}")


def histograms(request: Request, how: Execution) -> Made:
    """Figure 1: score histograms of the datasets beside the paper's Figure 1 counts."""
    from figures.histograms import draw, table

    if how.dry_run:
        return Made(
            "Figure 1 trains nothing: the datasets' score histograms (a dry run draws nothing)"
        )

    profile = get_profile(request.profile)
    names = request.datasets(FOUR_DATASETS)
    root = request.data.root.resolve() if request.data.root else None
    scores = {}
    for name in names:
        data = load_dataset(name, profile, root, how.results / "cache")
        scores[name] = np.concatenate([data.train.scores, data.val.scores, data.test.scores])
    counts = table(scores, {name: paper_dataset(name) for name in names})
    title = (
        "Figure 1: share of images per score bin, ours beside the paper's Figure 1 "
        f"(profile {profile.name}; train, validation and test together)"
    )
    paths = draw(counts, how.results / "figures" / "fig1_histograms", _noted(title, request))
    shown = counts.pivot(index="bin", columns="dataset", values="proportion")
    shown = shown.reindex(list(dict.fromkeys(counts["bin"])))
    return Made(shown.to_string(float_format="{:.3f}".format), tuple(paths))


def tau_heatmap(request: Request, how: Execution, taus: TauGrid) -> Made | Outcome:
    """Figure 5: test SRCC of TFA over a tau1 x tau2 grid, one heatmap per dataset."""
    from figures.tau_heatmap import draw, summarise

    rows = taus.rows()
    cells = {row.key: (row.options["tau1"], row.options["tau2"]) for row in rows}
    outcome = run([request.grid(rows, ["AVA"])], how)
    if how.dry_run:
        return outcome
    per_dataset = outcome.records[0]
    texts, paths, failed = [], [], False
    for dataset, runs in per_dataset.items():
        runs[["tau1", "tau2"]] = [cells[row] for row in runs["row"]]
        grid = summarise(runs)
        codes = ", ".join(sorted(runs["code"].dropna().unique()))
        data = ", ".join(dict.fromkeys(runs["data"].dropna()))
        seeds = f"{request.seeds} seed{'s' if request.seeds > 1 else ''}"
        title = (
            f"Figure 5: test SRCC of TFA on {dataset} (mean ± std over seeds)\nprofile "
            f"{request.profile}, {seeds}, code {codes}, data {data}"
        )
        stem = "fig5_tau" if len(per_dataset) == 1 else f"fig5_tau-{dataset}"
        paths += draw(grid, how.results / "figures" / stem, _noted(title, request))
        texts.append(grid.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        failed |= bool((runs["status"] == "failed").any())
    return Made("\n".join(texts), tuple(paths), failed)


def tail(request: Request, how: Execution) -> Made:
    """What the long tail does to each model, from stored results only: MAE per score bin of
    Table 1's models on one dataset; L/M/H of Table 3's models with and without ELTA."""
    from figures.histograms import BIN_LABELS
    from figures.tail_errors import draw, mae_by_bin, plug_in_groups

    dataset = request.dataset or ("ava" if request.data.root else "synth-ava")
    one = replace(request, dataset=dataset)
    table1, table3 = get_table("1"), get_table("3")
    stored = replace(how, cached_only=True, dry_run=False)
    grids = [one.grid([row.row() for row in spec.rows], ["AVA"]) for spec in (table1, table3)]
    runs1, runs3 = (records[dataset] for records in run(grids, stored).records)
    labels = {row.key: row.descriptors[0] for row in table1.rows}
    predictions: dict[str, list[pd.DataFrame]] = {}
    for record in runs1[runs1["status"] == "ok"].itertuples():
        frame = pd.read_csv(how.results / "runs" / record.stage / "predictions.csv")
        predictions.setdefault(labels[record.row], []).append(frame)
    variants = {model: "plain" for model, _ in IAA_MODELS}
    variants |= {f"{model}+tfa+flsa+apds": "ELTA" for model, _ in IAA_MODELS}
    wanted = runs3[runs3["row"].isin(list(variants))]
    done = wanted[wanted["status"] == "ok"]
    plug_in = pd.DataFrame(
        {
            "model": done["row"].str.partition("+")[0],
            "variant": done["row"].map(variants),
            **{metric: done[metric] for metric in ("mae_l", "mae_m", "mae_h")},
        }
    )
    by_bin = mae_by_bin(predictions)
    plug_in = plug_in_groups(plug_in) if len(plug_in) else pd.DataFrame()
    n_table1 = sum(map(len, predictions.values()))
    summary = (
        f"{n_table1} of {len(runs1)} Table 1 runs and {len(done)} of {len(wanted)} "
        "Table 3 runs stored"
    )
    if how.dry_run:
        return Made(f"the tail figure trains nothing: {summary} (a dry run draws nothing)")
    title = (
        f"The long tail on {dataset}: profile {request.profile}, {request.seeds} seed(s); {summary}"
    )
    path = how.results / "figures" / "fig_tail"
    paths = draw(by_bin, plug_in, path, _noted(title, request), dataset)
    text = ""
    if not by_bin.empty:
        wide = by_bin.pivot(index="model", columns="bin", values="mae")
        wide = wide.reindex(columns=[label for label in BIN_LABELS if label in wide])
        text = wide.to_string(float_format="{:.3f}".format) + "\n"
    return Made(f"{text}{summary}", tuple(paths))


def make_everything(
    request: Request, how: Execution, taus: TauGrid = TauGrid()
) -> dict[str, Made] | Outcome:
    """--table all: every table's grid and Figure 5's run in one pipeline call (shared stages
    computed once, the widely shared and cheap ones first), then each table and figure rendered
    from the store: {"table 4": Made, ..., "figure tail": Made}; a dry run returns the Outcome."""
    from tables.make import make_table, rows_of
    from tables.specs import TABLES

    grids = [request.grid(rows_of(spec, request), spec.paper_datasets) for spec in TABLES.values()]
    outcome = run([*grids, request.grid(taus.rows(), ["AVA"])], how)
    if how.dry_run:
        return outcome
    stored = replace(how, cached_only=True)  # everything ran above
    made = {f"table {key}": make_table(spec, request, stored) for key, spec in TABLES.items()}
    made |= {f"figure {key}": make_figure(key, request, stored, taus) for key in FIGURES}
    return made
