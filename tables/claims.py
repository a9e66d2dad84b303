"""Does each claim the paper's ablations make hold on our results, or is it within seed noise?

    python -m tables.claims [results/tables]

Reads the per-seed records that `run_all.py` writes beside each table (table4.csv, table5.csv,
table-sampling.csv) and checks each claim metric by metric: the difference of the two rows'
means against its standard error over seeds, sqrt(s_a^2 / n_a + s_b^2 / n_b). A difference
within `NOISE_Z` standard errors is "within seed noise"; beyond it the claim "holds" or "does
not hold" by its sign. With one seed there is no noise estimate and every verdict says so.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from bench.data.registry import paper_dataset
from tables.make import choose_on_val
from tables.specs import TABLES

NOISE_Z = 2.0
HIGHER_IS_BETTER = {"plcc": True, "srcc": True, "mae_l": False, "mae_m": False, "mae_h": False}
LABELS = {"plcc": "P", "srcc": "S", "mae_l": "L", "mae_m": "M", "mae_h": "H"}
ALL = tuple(HIGHER_IS_BETTER)


@dataclass(frozen=True)
class Claim:
    text: str  # the paper's claim, with where it is made
    table: str  # the stem of the per-seed CSV: table4, table5
    row: str  # the row the claim is about
    reference: str  # the row it is compared with
    metrics: tuple[str, ...]
    better: bool = True  # the claim says `row` is better than `reference` (False: worse)
    per_dataset: bool = False  # checked on each dataset of a multi-dataset table (Table 2)
    datasets: tuple[str, ...] | None = None  # only on these (the paper's names: AVA, ...)


BEST = "*"  # as a reference: every other row of the table ("has the best ...")
IAA = ("nima", "hgcn", "biaa", "tanet", "maxvit", "musiq", "eat")


CLAIMS = (
    Claim(
        "TFA reduces minority (L, H) errors (Sec. 4.4)", "table4", "tfa", "base", ("mae_l", "mae_h")
    ),
    Claim(
        "TFA reduces L, H errors more than FLSA alone (Sec. 4.4)",
        "table4",
        "tfa",
        "flsa",
        ("mae_l", "mae_h"),
    ),
    Claim(
        "TFA reduces L, H errors more than APDS alone (Sec. 4.4)",
        "table4",
        "tfa",
        "apds",
        ("mae_l", "mae_h"),
    ),
    Claim("FLSA improves all metrics (Sec. 4.4)", "table4", "flsa", "base", ALL),
    Claim("APDS improves all metrics (Sec. 4.4)", "table4", "apds", "base", ALL),
    Claim(
        "Removing TFA raises L and H errors (row 7 vs 8, Sec. 4.4)",
        "table4",
        "tfa+flsa+apds",
        "flsa+apds",
        ("mae_l", "mae_h"),
    ),
    Claim(
        "ELTA improves P, S, L, H over Base. (Table 4)",
        "table4",
        "tfa+flsa+apds",
        "base",
        ("plcc", "srcc", "mae_l", "mae_h"),
    ),
    Claim(
        "ELTA costs some majority (M) error (Sec. 4.2)",
        "table4",
        "tfa+flsa+apds",
        "base",
        ("mae_m",),
        better=False,
    ),
    Claim(
        "Feature-level beats pixel-level TFA, alone (Table 5)", "table5", "tfa", "tfa_pixel", ALL
    ),
    Claim(
        "Feature-level beats pixel-level TFA, with FLSA+APDS (Table 5)",
        "table5",
        "tfa+flsa+apds",
        "tfa_pixel+flsa+apds",
        ALL,
    ),
    Claim(
        "ELTA beats L&FDS on P, S, L, H (Sec. 4.2)",
        "table2",
        "elta",
        "lds_fds",
        ("plcc", "srcc", "mae_l", "mae_h"),
        per_dataset=True,
    ),
    Claim(
        "ELTA beats RankSim on P, S, L, H (Sec. 4.2)",
        "table2",
        "elta",
        "ranksim",
        ("plcc", "srcc", "mae_l", "mae_h"),
        per_dataset=True,
    ),
    Claim(
        "ELTA has the best P and S on AVA, AADB, PARA (Sec. 4.2)",
        "table1",
        "elta",
        BEST,
        ("plcc", "srcc"),
        per_dataset=True,
        datasets=("AVA", "AADB", "PARA"),
    ),
    Claim(
        "EAT has the best P and S on TAD66K (Sec. 4.2)",
        "table1",
        "eat",
        BEST,
        ("plcc", "srcc"),
        per_dataset=True,
        datasets=("TAD66K",),
    ),
    Claim(
        "ELTA has the best L and H (Sec. 4.2)",
        "table1",
        "elta",
        BEST,
        ("mae_l", "mae_h"),
        per_dataset=True,
    ),
    *(
        Claim(
            f"ELTA improves {model}'s P, S, L, H (Sec. 4.3)",
            "table3",
            f"{model}+tfa+flsa+apds",
            model,
            ("plcc", "srcc", "mae_l", "mae_h"),
        )
        for model in IAA
    ),
    Claim(
        "TFA's sampling beats random pairs (Sec. 4.4)",
        "table-sampling",
        "elta",
        "random",
        ("plcc", "srcc"),
    ),
    Claim(
        "TFA's sampling beats the best threshold (Sec. 4.4)",
        "table-sampling",
        "elta",
        "threshold",  # the threshold row chosen on validation SRCC
        ("plcc", "srcc"),
    ),
)


@dataclass(frozen=True)
class Verdict:
    metric: str
    difference: float  # mean(row) - mean(reference), in the metric's units
    z: float  # difference / standard error; nan with fewer than two seeds on a side
    verdict: str  # holds | does not hold | within seed noise | no noise estimate
    against: str = ""  # the closest rival of a "has the best" claim


def judge(row: pd.Series, reference: pd.Series, metric: str, better: bool) -> Verdict:
    """Compare one metric's per-seed values of two rows."""
    difference = float(row.mean() - reference.mean())
    if min(len(row), len(reference)) < 2:
        return Verdict(metric, difference, math.nan, "no noise estimate (one seed)")
    se = math.sqrt(row.var(ddof=1) / len(row) + reference.var(ddof=1) / len(reference))
    z = difference / se if se > 0 else math.copysign(math.inf, difference)
    if abs(z) < NOISE_Z:
        return Verdict(metric, difference, z, "within seed noise")
    improved = (difference > 0) == HIGHER_IS_BETTER[metric]
    return Verdict(metric, difference, z, "holds" if improved == better else "does not hold")


def resolve(table: str, key: str, runs: pd.DataFrame) -> str:
    """`key` itself, or, for a table spec's choose_on_val group (the sampling table's
    "threshold"), the candidate row chosen on validation SRCC, as the rendered table shows."""
    spec = next((spec for spec in TABLES.values() if spec.stem == table), None)
    if spec is None or key not in spec.choose_on_val:
        return key
    chosen, _ = choose_on_val(spec, runs)
    if key not in chosen:
        raise ValueError(f"{table}: no ok runs among the candidates for '{key}'")
    return chosen[key]


def check(claim: Claim, runs: pd.DataFrame) -> list[Verdict]:
    ok = runs[runs["status"] == "ok"]
    key = resolve(claim.table, claim.row, ok)
    if claim.reference == BEST:
        others = [other for other in dict.fromkeys(ok["row"]) if other != key]
        return [best_of(ok, key, others, m, claim.better) for m in claim.metrics]
    keys = [key, resolve(claim.table, claim.reference, ok)]
    row, reference = (ok[ok["row"] == key] for key in keys)
    if row.empty or reference.empty:
        missing = keys[0] if row.empty else keys[1]
        raise ValueError(f"{claim.table}: no ok runs of row '{missing}'")
    return [judge(row[m], reference[m], m, claim.better) for m in claim.metrics]


def best_of(ok: pd.DataFrame, key: str, others: list[str], metric: str, better: bool) -> Verdict:
    """`key` is the best of all rows on `metric` if it beats each other row: the verdict
    against the closest rival (smallest z), which is "does not hold" as soon as any row is
    significantly better, and "holds" only when every comparison holds."""
    row = ok.loc[ok["row"] == key, metric]
    if row.empty or not others:
        raise ValueError(f"no ok runs of row '{key}', or no other row to compare it with")
    verdicts = [judge(row, ok.loc[ok["row"] == other, metric], metric, better) for other in others]
    verdicts = [replace(v, against=other) for v, other in zip(verdicts, others, strict=True)]
    losing = [v for v in verdicts if v.verdict == "does not hold"]
    if losing:  # the rival that beats it most clearly
        return max(losing, key=lambda v: abs(v.z))
    strength = {"no noise estimate (one seed)": 0, "within seed noise": 1, "holds": 2}
    # the weakest verdict, and within it the closest rival
    return min(verdicts, key=lambda v: (strength[v.verdict], abs(v.difference)))


def _summary(verdicts: list[Verdict]) -> str:
    kinds = {v.verdict for v in verdicts}
    if len(kinds) == 1:
        return kinds.pop()
    return "mixed"


def report(tables_dir: Path) -> str:
    """A Markdown table: one line per claim with its per-metric differences and verdicts."""
    lines = [
        "| claim | compared | per metric: difference (z) | verdict |",
        "|---|---|---|---|",
    ]
    for claim in CLAIMS:
        csv = tables_dir / f"{claim.table}.csv"
        if not csv.exists():
            lines.append(f"| {claim.text} | – | {csv} not found | not run |")
            continue
        runs = pd.read_csv(csv)
        groups = runs.groupby("dataset", sort=False) if claim.per_dataset else [("", runs)]
        for dataset, dataset_runs in groups:
            if claim.datasets and paper_dataset(dataset) not in claim.datasets:
                continue
            where = f"{dataset}: " if dataset else ""
            try:
                lines.append(_line(claim, dataset_runs, where))
            except ValueError as err:  # a row with no ok run (not run yet, or failed)
                lines.append(f"| {claim.text} | {where}– | {err} | not run |")
    return "\n".join(lines)


def _line(claim: Claim, runs: pd.DataFrame, where: str) -> str:
    """One claim's table line on the runs of one table (or of one dataset of it)."""
    verdicts = check(claim, runs)
    n_seeds = runs.groupby("row").size().max()
    details = "; ".join(
        f"{LABELS[v.metric]} {v.difference:+.3f}"
        + (f" vs {v.against}" if v.against else "")
        + ("" if math.isnan(v.z) else f" (z {v.z:+.1f})")
        + f": {v.verdict}"
        for v in verdicts
    )
    reference = (
        "every other row"
        if claim.reference == BEST
        else resolve(claim.table, claim.reference, runs[runs["status"] == "ok"])
    )
    compared = f"{where}{claim.row} vs {reference}, {n_seeds} seed{'s' if n_seeds > 1 else ''}"
    return f"| {claim.text} | {compared} | {details} | {_summary(verdicts)} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tables.claims", description=__doc__)
    parser.add_argument("tables", nargs="?", type=Path, default=Path("results/tables"))
    args = parser.parse_args(argv)
    try:
        print(report(args.tables))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
