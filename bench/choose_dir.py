"""Choose RankSim's gamma and LDS's reweighting for Table 2 on the validation split (never test).

The official defaults (RankSim gamma 100, LDS "sqrt_inv") were tuned for age regression with an
L1 loss of several years; the EMD of a 10-bin distribution is about 0.1, so the regulariser's
weight must be chosen anew. The grid was fixed before any RankSim or LDS run had been seen:

    RankSim (on Base.)  gamma in {0.1, 1, 10, 100}, lambda 2 (official)
    L&FDS (on Base.)    LDS reweighting in {sqrt_inv, inverse}, windows ks 5, sigma 2 (official)

Each candidate trains its Table 2 row; the one with the best mean validation SRCC (at the
checkpoint kept) is chosen. Results go through the runner's cache like any table:

    python -m bench.choose_dir [--dataset synth-ava] [--profile cpu] [--seeds 1]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from bench.grid import Row, plan_grid
from bench.plan import Context
from bench.runner import execute, plan
from bench.store import Store

GAMMAS = (0.1, 1.0, 10.0, 100.0)
REWEIGHTS = ("sqrt_inv", "inverse")
METRICS = ("srcc", "plcc", "mae_l", "mae_m", "mae_h")


def candidates() -> dict[str, list[Row]]:
    """Per choice, its candidate rows (keys name the candidate's value)."""
    return {
        "ranksim_gamma": [Row(f"{g:g}", "swinv2", {"ranksim_weight": g}) for g in GAMMAS],
        "lds_reweight": [
            Row(r, "swinv2", {"lds": True, "fds": True, "lds_reweight": r}) for r in REWEIGHTS
        ],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synth-ava")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--results", type=Path, default=Path("results"))
    args = p.parse_args(argv)

    grids = {
        choice: plan_grid([args.dataset], rows, args.seeds, args.profile)
        for choice, rows in candidates().items()
    }
    store = Store(args.results)
    chains = [cell.chain for cells in grids.values() for cell in cells]
    execute(plan(chains, store, force=False), Context(args.results, "auto"), args.jobs, "loky")
    for choice, cells in grids.items():
        rows = [
            {choice: cell.row, "seed": cell.seed, **store.metrics(cell.chain[-1].id)["val"]}
            for cell in cells
            if store.is_ok(cell.chain[-1].id)
        ]
        table = pd.DataFrame(rows).groupby(choice, sort=False)[list(METRICS)].mean()
        print(f"\nvalidation metrics, {choice} ({args.dataset}, profile {args.profile}):")
        print(table.round(4).to_string())
        print(f"best validation SRCC: {choice} = {table['srcc'].idxmax()}")


if __name__ == "__main__":
    main()
