"""Choose a setting on the validation split, never on test: train each candidate through the
runner and its cache, compare the validation metrics of the checkpoint each keeps (the best
validation SRCC), and pick the best mean validation SRCC over seeds.

    python -m bench.dev.choose lr [--models nima,tanet] [--dataset synth-ava] [--profile cpu]
    python -m bench.dev.choose dir
    python -m bench.dev.choose tfa-pairs

Each grid was fixed before any of its runs was looked at:

    lr         each baseline's learning rate at the cpu profile, in {2.5e-4, 5e-4, 1e-3, 2e-3,
               4e-3} (the profile's 5e-4 and factors of 2 around it; Swin V2 keeps the profile's,
               on which Tables 4, 5 and Figure 5 stand). The grid first stopped at 2e-3; on the
               embedded benchmark's previous generator version TANet and BIAA were best at 2e-3,
               its edge, so 4e-3 was added for every model before the choice was made again.
               The choice goes into the model's cpu `recipe` in baselines/models.toml.
    dir        RankSim's gamma in {0.1, 1, 10, 100} (on Base.) and LDS's reweighting in
               {sqrt_inv, inverse} (L&FDS on Base.) for Table 2: the official gamma 100 was tuned
               for an L1 loss of several years of age, the EMD of a 10-bin distribution is ~0.1.
               The best of that grid was its smallest gamma (validation SRCC 0.38, falling with
               gamma), so the grid was then extended downward, to 0.001 and 0.01, still judged
               on validation only.
    tfa-pairs  the number of TFA pairs per batch in {1, 4, 8, 16} (the TFA row of Table 4).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from baselines import list_models
from bench.run.grid import Grid, Request, Row
from bench.run.pipeline import Execution, run
from bench.run.reproducible import pin_cpu_kernels

METRICS = ("srcc", "plcc", "mae_l", "mae_m", "mae_h")
LEARNING_RATES = (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3)  # 4e-3 added: see the docstring
GAMMAS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)  # 0.001, 0.01 added: see the docstring
REWEIGHTS = ("sqrt_inv", "inverse")
TFA_PAIRS = (1, 4, 8, 16)


def lr_grids(models: list[str]) -> dict[str, list[Row]]:
    """Per model, a row per learning rate (over the model's recipe)."""
    return {
        f"{model} lr": [Row(f"{lr:g}", model, recipe={"lr": lr}) for lr in LEARNING_RATES]
        for model in models
    }


def dir_grids() -> dict[str, list[Row]]:
    return {
        "ranksim gamma": [Row(f"{g:g}", "swinv2", {"ranksim_weight": g}) for g in GAMMAS],
        "lds reweight": [
            Row(r, "swinv2", {"lds": True, "fds": True, "lds_reweight": r}) for r in REWEIGHTS
        ],
    }


def tfa_pairs_grids() -> dict[str, list[Row]]:
    return {"tfa pairs": [Row(str(n), "swinv2", {"tfa": True, "tfa_pairs": n}) for n in TFA_PAIRS]}


def choose(
    grids: dict[str, list[Row]], dataset: str, profile: str, seeds: int, jobs: int, results: Path
) -> dict[str, pd.DataFrame]:
    """Train every candidate of every grid (cached); per grid, the mean validation metrics per
    candidate, best validation SRCC first."""
    outcome = run(
        [Grid([dataset], rows, Request(profile, seeds)) for rows in grids.values()],
        Execution(results=results, jobs=jobs),
    )
    tables = {}
    for name, per_dataset in zip(grids, outcome.records, strict=True):
        runs = per_dataset[dataset]
        ok = runs[runs["status"] == "ok"].rename(columns={"row": "candidate"})
        table = ok.groupby("candidate", sort=False)[[f"val_{m}" for m in METRICS]].mean()
        tables[name] = table.set_axis(list(METRICS), axis=1).sort_values("srcc", ascending=False)
    return tables


def main(argv: list[str] | None = None) -> None:
    pin_cpu_kernels()  # before torch's kernels are chosen (bench/run/reproducible.py)
    p = argparse.ArgumentParser(
        prog="python -m bench.dev.choose", description=__doc__.split("\n")[0]
    )
    p.add_argument("what", choices=["lr", "dir", "tfa-pairs"])
    p.add_argument("--models", help="with lr: comma-separated models (default: the baselines)")
    p.add_argument("--dataset", default="synth-ava")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--results", type=Path, default=Path("results"))
    args = p.parse_args(argv)
    if args.what == "lr":
        baselines = [m for m in list_models() if m != "swinv2"]
        grids = lr_grids(args.models.split(",") if args.models else baselines)
    else:
        grids = dir_grids() if args.what == "dir" else tfa_pairs_grids()
    tables = choose(grids, args.dataset, args.profile, args.seeds, args.jobs, args.results)
    for name, table in tables.items():
        print(f"\n{name}: validation metrics ({args.dataset}, profile {args.profile}, "
              f"{args.seeds} seed{'s' if args.seeds > 1 else ''}), best SRCC first")  # fmt: skip
        print(table.round(4).to_string())
        print(f"chosen: {name} = {table.index[0]}")


if __name__ == "__main__":
    main()
