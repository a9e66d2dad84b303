"""Does each claim of the paper hold on our results? A paired t-test per claim and metric.

    python -m tables.claims [--results results] [--profile cpu] [--data-root DIR]

Reads every seed stored in the results store for each table the claims are about (its rows
planned for seeds 0..MAX_SEEDS-1, the default options, the tables' datasets: embedded, or real
with --data-root), not the last rendered CSV. Two rows run with the same seed share the data
order, the initial weights and the pool, so a claim compares them seed by seed: the differences
row - reference over the seeds both have, and a paired t-test on them (scipy.stats.ttest_rel,
n - 1 degrees of freedom). A claim "holds" when the mean difference goes its way with p < ALPHA
(two-sided), "does not hold" when it goes the other way with p < ALPHA, and is "not shown"
otherwise: with 3 to 5 seeds only large, consistent effects reach it, so "not shown" means not
shown here, not absent. With fewer than two paired seeds there is no test.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from scipy import stats

from bench.data.registry import paper_dataset
from bench.run.grid import DataSource, Request
from bench.run.pipeline import Execution, run
from bench.run.store import Store
from iaa_common import UserError
from tables.make import choose_on_val
from tables.specs import TABLES

ALPHA = 0.05  # two-sided; "holds" only at 95 %
NO_TEST = "no test (fewer than 2 paired seeds)"
MAX_SEEDS = 20  # seeds looked for in the store
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
    difference: float  # mean over paired seeds of row - reference, in the metric's units
    t: float  # the paired t statistic; nan without a test
    p: float  # its two-sided p-value; nan without a test
    n: int  # paired seeds
    verdict: str  # holds | does not hold | not shown | no test (fewer than 2 paired seeds)
    against: str = ""  # the closest rival of a "has the best" claim


def judge(row: pd.Series, reference: pd.Series, metric: str, better: bool) -> Verdict:
    """Compare one metric of two rows over the seeds both have (Series indexed by seed)."""
    paired = pd.concat([row, reference], axis=1, keys=["row", "ref"], join="inner").dropna()
    n = len(paired)
    differences = paired["row"] - paired["ref"]
    difference = float(differences.mean()) if n else math.nan
    if n < 2:
        return Verdict(metric, difference, math.nan, math.nan, n, NO_TEST)
    if differences.std(ddof=1) < 1e-12:  # identical differences (up to rounding): no spread
        t, p = (math.copysign(math.inf, difference), 0.0) if difference else (0.0, 1.0)
    else:
        t, p = (float(v) for v in stats.ttest_rel(paired["row"], paired["ref"]))
    if p >= ALPHA:
        return Verdict(metric, difference, t, p, n, "not shown")
    improved = (difference > 0) == HIGHER_IS_BETTER[metric]
    return Verdict(metric, difference, t, p, n, "holds" if improved == better else "does not hold")


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


def _by_seed(runs: pd.DataFrame, key: str, metric: str) -> pd.Series:
    return runs.loc[runs["row"] == key].set_index("seed")[metric]


def check(claim: Claim, runs: pd.DataFrame) -> list[Verdict]:
    ok = runs[runs["status"] == "ok"]
    key = resolve(claim.table, claim.row, ok)
    if claim.reference == BEST:
        others = [other for other in dict.fromkeys(ok["row"]) if other != key]
        return [best_of(ok, key, others, m, claim.better) for m in claim.metrics]
    keys = [key, resolve(claim.table, claim.reference, ok)]
    for name in keys:
        if not (ok["row"] == name).any():
            raise ValueError(f"{claim.table}: no ok runs of row '{name}'")
    return [
        judge(_by_seed(ok, keys[0], m), _by_seed(ok, keys[1], m), m, claim.better)
        for m in claim.metrics
    ]


def best_of(ok: pd.DataFrame, key: str, others: list[str], metric: str, better: bool) -> Verdict:
    """`key` is the best of all rows on `metric` if it beats each other row: the verdict
    against one rival, which is "does not hold" (against the clearest winner, smallest p) as
    soon as any row is significantly better, and "holds" only when every comparison holds
    (against the closest rival otherwise)."""
    if not (ok["row"] == key).any() or not others:
        raise ValueError(f"no ok runs of row '{key}', or no other row to compare it with")
    row = _by_seed(ok, key, metric)
    verdicts = [
        replace(judge(row, _by_seed(ok, other, metric), metric, better), against=other)
        for other in others
    ]
    losing = [v for v in verdicts if v.verdict == "does not hold"]
    if losing:
        return min(losing, key=lambda v: v.p)
    strength = {NO_TEST: 0, "not shown": 1, "holds": 2}
    return min(verdicts, key=lambda v: (strength[v.verdict], abs(v.difference)))


def _summary(verdicts: list[Verdict]) -> str:
    kinds = {v.verdict for v in verdicts}
    if len(kinds) == 1:
        return kinds.pop()
    return "mixed"


def table_records(
    stem: str, store: Store, profile: str, data_root: Path | None = None
) -> pd.DataFrame:
    """Every stored ok or failed run of a table's rows (default options, seeds up to
    MAX_SEEDS) on its datasets, one record per (dataset, row, seed), as `tables.make.collect`."""
    spec = next(spec for spec in TABLES.values() if spec.stem == stem)
    request = Request(profile=profile, seeds=MAX_SEEDS, data=DataSource(data_root))
    grid = request.grid([row.row() for row in spec.rows], spec.paper_datasets)
    outcome = run([grid], Execution(results=store.root, cached_only=True))
    frames = [runs.assign(dataset=d) for d, runs in outcome.records[0].items()]
    records = pd.concat(frames, ignore_index=True)
    return records[records["status"] != "missing"]


def report(store: Store, profile: str, data_root: Path | None = None) -> str:
    """A Markdown table: one line per claim (and dataset) with its verdicts per metric."""
    lines = [
        "| claim | compared | per metric: mean difference (paired t, p) | verdict |",
        "|---|---|---|---|",
    ]
    records: dict[str, pd.DataFrame] = {}
    for claim in CLAIMS:
        if claim.table not in records:
            records[claim.table] = table_records(claim.table, store, profile, data_root)
        runs = records[claim.table]
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
    low, high = min(v.n for v in verdicts), max(v.n for v in verdicts)
    seeds = f"{low}-{high} paired seeds" if low != high else f"{low} paired seed" + "s" * (low != 1)
    details = "; ".join(
        f"{LABELS[v.metric]} {v.difference:+.3f}"
        + (f" vs {v.against}" if v.against else "")
        + ("" if math.isnan(v.p) else f" (t {v.t:+.1f}, p {v.p:.3f})")
        + f": {v.verdict}"
        for v in verdicts
    )
    reference = (
        "every other row"
        if claim.reference == BEST
        else resolve(claim.table, claim.reference, runs[runs["status"] == "ok"])
    )
    compared = f"{where}{claim.row} vs {reference}, {seeds}"
    return f"| {claim.text} | {compared} | {details} | {_summary(verdicts)} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tables.claims", description=__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"), help="results store")
    parser.add_argument("--profile", default="cpu", help="the profile the tables ran at (cpu)")
    parser.add_argument("--data-root", type=Path, help="the real datasets' folder, if any")
    args = parser.parse_args(argv)
    try:
        print(report(Store(args.results), args.profile, args.data_root))
    except (ValueError, UserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
