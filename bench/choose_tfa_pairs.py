"""Choose the number of TFA pairs mixed per batch on the validation split (never on test).

The paper does not state it; the official code mixes 1 pair per batch of 48. This trains the
TFA row of Table 4 for each candidate and prints its validation metrics at the checkpoint kept
(best validation SRCC). Results go through the runner's cache like any table:

    python -m bench.choose_tfa_pairs [--dataset synth-ava] [--profile cpu] [--candidates 1 4 8 16]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from bench.methods import MethodOptions
from bench.plan import Context, RunRequest, stages_for
from bench.runner import execute, plan
from bench.store import Store


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synth-ava")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--candidates", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--results", type=Path, default=Path("results"))
    args = p.parse_args(argv)

    chains = {
        (n, seed): stages_for(
            RunRequest(
                args.dataset, "swinv2", args.profile, seed, MethodOptions(tfa=True, tfa_pairs=n)
            )
        )
        for n in args.candidates
        for seed in range(args.seeds)
    }
    store = Store(args.results)
    ctx = Context(args.results, "auto")
    execute(plan(list(chains.values()), store, force=False), ctx, args.jobs, "loky")
    rows = []
    for (n, seed), chain in chains.items():
        if store.is_ok(chain[-1].id):
            val = store.metrics(chain[-1].id)["val"]
            rows.append(
                {
                    "tfa_pairs": n,
                    "seed": seed,
                    **{k: val[k] for k in ("srcc", "plcc", "mae_l", "mae_m", "mae_h")},
                }
            )
    table = pd.DataFrame(rows).groupby("tfa_pairs").mean(numeric_only=True).drop(columns="seed")
    print(f"validation metrics of the TFA row ({args.dataset}, profile {args.profile}):")
    print(table.round(4).to_string())
    print(f"best validation SRCC: tfa_pairs = {table['srcc'].idxmax()}")


if __name__ == "__main__":
    main()
