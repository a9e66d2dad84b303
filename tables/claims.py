"""Does each claim of the paper hold on our results? Paired tests over seeds, a family per claim.

    python -m tables.claims [--results results] [--profile cpu] [--data-root DIR]
                            [--tables 4,5,sampling]

Reads every seed stored in the results store for each table the claims are about (its rows
planned for seeds 0..MAX_SEEDS-1, the default options, the tables' datasets: embedded, or real
with --data-root), not the last rendered CSV, and prints one Markdown line per claim and
dataset. --tables keeps the claims about these tables only (fig5: Figure 5's grid, read as a
table of its cells; the report, and the tests its q-values are over, are then theirs).
tables/stats.py holds every formula named here.

Pairing. Two rows run with the same seed share the data order, the initial weights and the
pool, so a claim compares them seed by seed: d_i = row_i - reference_i over the seeds where both
rows have an ok run, a value of the metric, and the same data fingerprint. A seed whose two runs
rest on different data (other fingerprints, or one unknown) is never paired; the line says
"seeds 2, 4 not paired: different data (fingerprints a vs b)".

Each comparison gives the mean difference d_bar with its 95 % confidence interval
d_bar -/+ F_{n-1}^-1(0.975) s / sqrt(n) (s: the spread of the d_i) and the two-sided p of the
paired t-test, t = d_bar / (s / sqrt(n)) with n - 1 degrees of freedom.

Families. A claim on one dataset is one family: its metrics x its rivals (the reference row;
for a "has the best" claim every other row of the table with an ok run on that dataset). Holm
adjusts the p-values within the family, p_Holm_(k) = max_{j <= k} min(1, (m - j + 1) p_(j)) over
the m tests sorted by p, and a comparison
  holds          when p_Holm < 0.05 and d_bar goes the claimed way,
  does not hold  when p_Holm < 0.05 and d_bar goes the other way,
  is not shown   otherwise: not shown with these seeds, not absent.
A claim made per dataset (Tables 1 and 2) is one family, and one line, per dataset.

"Has the best" claims, per metric: "holds" when the row beats every rival, "does not hold" when
some rival is significantly better (the line names them: beaten by ...), "no test" when no
rival comparison is a test, "not shown" otherwise. The line shows the strongest rival by mean:
the rival whose mean difference goes least the claimed way (not the one nearest to 0, which can
be a rival below the row while another is above it). A rival the table plans but that has no ok
run on the dataset is listed as not run.

Not tests. Fewer than 2 paired seeds: "no test". Differences whose spread is at most 1e-12 of
the values' scale: "identical" when their mean is that small too, "no spread" otherwise (a
constant difference has no noise to weigh it against). None of these is significant, however
many seeds, and none counts in Holm's or Benjamini-Hochberg's m.

Power, for a "not shown": the smallest difference these seeds would detect 4 times in 5 at the
observed spread (two-sided t-test at 0.05: "detectable"), and the number of seeds that would
detect the paper's own difference at that spread, so "too few seeds" reads apart from "no
effect". The paper's difference is the paper's value (tables/paper.py) of the claim's row minus
that of the rival shown, in the paper's table this one reproduces, on the paper's dataset ours
stands for (synth-ava -> AVA); the sampling ablation's threshold row chosen on validation stands
beside the paper's "threshold" row. A paper difference against the claim needs no number of
seeds; one the paper does not give is said so.

Report-wide: Benjamini-Hochberg q-values over every test of the report (every metric, every
rival of the "best" claims included), q_(k) = min_{j >= k} min(1, m p_(j) / j); the line under
the table counts the significant comparisons (holds or does not hold after Holm) with q < 0.05.

Store integrity. Two records of one (row, seed) on one dataset are an error (DuplicateRun, the
command exits 2) naming both stage ids: the checker cannot tell which to pair. A row a claim
needs with no ok run gives a "not run" line saying which. The report's header lists the code
versions of the ok runs read (distinct stages) with their counts; a line whose runs come from
more than one code version lists them too.

A line: | claim | dataset: row vs reference, n paired seeds[; notes] | per metric: verdict:
d_bar [95 % CI], p_Holm, q (and for a not shown: detectable; seeds for the paper's difference)
| the claim's verdict: the metrics' one verdict, or mixed (with their counts) |.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from bench.data.registry import paper_dataset
from bench.run.grid import DataSource, Request
from bench.run.pipeline import Execution, run
from bench.run.store import Store
from iaa_common import UserError
from tables.make import choose_on_val
from tables.paper import paper_value
from tables.specs import TABLES, RowSpec, TableSpec, tau_rows
from tables.stats import (
    ALPHA,
    DOES_NOT_HOLD,
    HOLDS,
    IDENTICAL,
    NO_SPREAD,
    NO_TEST,
    NOT_SHOWN,
    Best,
    Comparison,
    best,
    judge_family,
    paired,
    surviving,
    with_q,
)

MAX_SEEDS = 20  # seeds looked for in the store
HIGHER_IS_BETTER = {"plcc": True, "srcc": True, "mae_l": False, "mae_m": False, "mae_h": False}
LABELS = {"plcc": "P", "srcc": "S", "mae_l": "L", "mae_m": "M", "mae_h": "H"}
ALL = tuple(HIGHER_IS_BETTER)


class NotRun(Exception):
    """A row the claim needs has no ok run on the dataset: the line says "not run"."""


class DuplicateRun(Exception):
    """One (row, seed) recorded twice on a dataset: which run would be paired is unknown."""


@dataclass(frozen=True)
class Claim:
    text: str  # the paper's claim, with where it is made
    table: str  # the stem of the table's files: table4, table-sampling
    row: str  # the row the claim is about
    reference: str  # the row it is compared with
    metrics: tuple[str, ...]
    better: bool = True  # the claim says `row` is better than `reference` (False: worse)
    per_dataset: bool = False  # checked on each dataset of a multi-dataset table (Table 2)
    datasets: tuple[str, ...] | None = None  # only on these (the paper's names: AVA, ...)


BEST = "*"  # as a reference: every other row of the table ("has the best ...")
# Figure 5 read as a table: its grid's rows on AVA's stand-in, the same stages the figure runs
FIGURE5 = TableSpec(
    key="fig5",
    title="Figure 5",
    caption="test SRCC of TFA over a tau1 x tau2 grid",
    paper_datasets=["AVA"],
    header_columns=[],
    rows=[RowSpec(row.key, [], row.options, row.model) for row in tau_rows()],
    file_stem="fig5_tau",
)
SPECS = {**TABLES, "fig5": FIGURE5}  # what --tables names
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
    Claim(
        "SRCC peaks at tau1 = 0.2, tau2 = 4.0 (Sec. 4.4, Figure 5)",
        "fig5_tau",
        "tau1=0.2,tau2=4",
        BEST,
        ("srcc",),
    ),
)


@dataclass(frozen=True)
class Checked:
    """One claim on one dataset: its family of comparisons (metrics x rivals, in that order,
    Holm-judged) and what its line says besides."""

    claim: Claim
    dataset: str
    reference: str  # the reference row as resolved, or "every other row"
    family: tuple[Comparison, ...]
    notes: tuple[str, ...]  # seeds not paired, rivals not run, mixed code versions


def _spec(stem: str) -> TableSpec:
    return next(spec for spec in SPECS.values() if spec.stem == stem)


def resolve(table: str, key: str, ok: pd.DataFrame) -> str:
    """`key` itself, or, for a table spec's choose_on_val group (the sampling table's
    "threshold"), the candidate row chosen on validation SRCC, as the rendered table shows."""
    spec = _spec(table)
    if key not in spec.choose_on_val:
        return key
    chosen, _ = choose_on_val(spec, ok)
    if key not in chosen:
        raise NotRun(f"{table}: no ok runs among the candidates for '{key}'")
    return chosen[key]


def paper_difference(claim: Claim, dataset: str, rival: str, metric: str) -> float | None:
    """The paper's own value of the claim's row minus that of `rival` (a row key of the claim's
    table, or a choose_on_val group), or None where the paper gives either number."""
    spec = _spec(claim.table)
    paper_rows = {row.key: row.paper_key or row.key for row in spec.rows}
    table, name = spec.paper_table or spec.key, paper_dataset(dataset)
    mine = paper_value(table, name, paper_rows.get(claim.row, claim.row), metric)
    theirs = paper_value(table, name, paper_rows.get(rival, rival), metric)
    return None if mine is None or theirs is None else mine - theirs


def _no_duplicates(table: str, runs: pd.DataFrame) -> None:
    """Raise DuplicateRun, naming both stages, if a stored (dataset, row, seed) comes twice."""
    stored = runs[runs["status"] != "missing"]
    twice = stored[stored.duplicated(["dataset", "row", "seed"], keep=False)]
    if not twice.empty:
        first = twice.iloc[0]
        same = twice[(twice["row"] == first["row"]) & (twice["seed"] == first["seed"])]
        stages = " and ".join(same["stage"].astype(str))
        raise DuplicateRun(
            f"{table}, {first['dataset']}: row '{first['row']}' seed {first['seed']} is stored "
            f"twice (stages {stages}); remove one to pair its seeds"
        )


def _seeds(seeds: Sequence[int]) -> str:
    return f"seed{'s' * (len(seeds) > 1)} {', '.join(str(s) for s in seeds)}"


def _fingerprint(value: object) -> str:
    return "none" if pd.isna(value) else str(value)


def _same_data(row: pd.DataFrame, rival: pd.DataFrame) -> tuple[list[int], list[str]]:
    """The seeds both rows (frames indexed by seed) ran on the same known data, and a note per
    pair of fingerprints for the seeds they did not."""
    seeds = sorted(set(row.index) & set(rival.index))
    mine, theirs = row.loc[seeds, "data"], rival.loc[seeds, "data"]
    same = (mine == theirs) & mine.notna()
    apart: dict[tuple[str, str], list[int]] = {}
    for seed, a, b, paired_here in zip(seeds, mine, theirs, same, strict=True):
        if not paired_here:
            apart.setdefault((_fingerprint(a), _fingerprint(b)), []).append(seed)
    notes = [
        f"{_seeds(where)} not paired: different data (fingerprints {a} vs {b})"
        for (a, b), where in apart.items()
    ]
    return [s for s, keep in zip(seeds, same, strict=True) if keep], notes


def _codes(ok: pd.DataFrame) -> str:
    """The code versions of ok runs (distinct stages) with their counts: "a (4 runs), b (1 run)"."""
    counts = Counter(ok.drop_duplicates("stage")["code"].fillna("unknown"))
    return ", ".join(f"{code} ({n} run{'s' * (n != 1)})" for code, n in counts.most_common())


def check(claim: Claim, runs: pd.DataFrame) -> Checked:
    """The claim on one dataset's records (every status; only ok runs are compared): its
    family judged by Holm. Raises NotRun when a row it needs has no ok run, DuplicateRun when
    a (row, seed) is stored twice."""
    _no_duplicates(claim.table, runs)
    (dataset,) = runs["dataset"].unique()
    ok = runs[runs["status"] == "ok"]
    key = resolve(claim.table, claim.row, ok)
    if claim.reference == BEST:
        planned = [row for row in dict.fromkeys(runs["row"]) if row != key]
        rivals = [row for row in planned if (ok["row"] == row).any()]
        absent = [row for row in planned if row not in rivals]
    else:
        rivals, absent = [resolve(claim.table, claim.reference, ok)], []
    for name in (key, *rivals):
        if not (ok["row"] == name).any():
            raise NotRun(f"{claim.table}: no ok runs of row '{name}'")
    if not rivals:
        raise NotRun(f"{claim.table}: no ok runs of any row but '{key}'")
    by_seed = {name: ok[ok["row"] == name].set_index("seed") for name in (key, *rivals)}
    family: list[Comparison] = []
    notes: list[str] = []
    paired_seeds: dict[str, list[int]] = {}
    for rival in rivals:
        paired_seeds[rival], apart = _same_data(by_seed[key], by_seed[rival])
        notes += [f"vs {rival}: {note}" if claim.reference == BEST else note for note in apart]
    for metric in claim.metrics:
        for rival in rivals:
            seeds = paired_seeds[rival]
            paper_rival = rival if claim.reference == BEST else claim.reference
            family.append(
                paired(
                    by_seed[key].loc[seeds, metric].to_numpy(float),
                    by_seed[rival].loc[seeds, metric].to_numpy(float),
                    metric,
                    rival,
                    higher_is_better=HIGHER_IS_BETTER[metric],
                    better=claim.better,
                    paper_diff=paper_difference(claim, dataset, paper_rival, metric),
                )
            )
    if absent:
        notes.append(f"not run: {', '.join(absent)}")
    compared = ok[ok["row"].isin([key, *rivals])]
    if compared["code"].fillna("unknown").nunique() > 1:
        notes.append(f"code versions {_codes(compared)}")
    reference = "every other row" if claim.reference == BEST else rivals[0]
    return Checked(claim, dataset, reference, judge_family(family), tuple(notes))


def table_records(
    stem: str, store: Store, profile: str, data_root: Path | None = None
) -> pd.DataFrame:
    """Every planned run of a table's rows (default options, seeds up to MAX_SEEDS) on its
    datasets, one record per (dataset, row, seed) as `tables.make.collect` reads them; runs not
    in the store have the status "missing"."""
    spec = _spec(stem)
    request = Request(profile=profile, seeds=MAX_SEEDS, data=DataSource(data_root))
    grid = request.grid([row.row() for row in spec.rows], spec.paper_datasets)
    outcome = run([grid], Execution(results=store.root, cached_only=True))
    frames = [runs.assign(dataset=d) for d, runs in outcome.records[0].items()]
    return pd.concat(frames, ignore_index=True)


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _power(c: Comparison) -> str:
    """A not shown's detectable difference and the seeds the paper's own difference needs."""
    text = f"detectable {c.detectable:.3f}"
    if c.seeds_for_paper is None:
        return f"{text}; the paper gives no difference here"
    paper = f"the paper's {c.paper_diff:+.3f}"
    if c.seeds_for_paper != math.inf:
        return f"{text}; {c.seeds_for_paper} seeds would detect {paper}"
    if c.expected * c.paper_diff <= 0:
        return f"{text}; {paper} goes against the claim"
    return f"{text}; {paper} needs more than 1e15 seeds"


def _numbers(c: Comparison) -> str:
    """A comparison's mean difference, its interval, p_Holm and q; its power if not shown."""
    if c.verdict in (IDENTICAL, NO_SPREAD):
        return f"{c.mean_diff:+.3f} on every seed" + (", not a test" * (c.verdict == NO_SPREAD))
    if c.verdict == NO_TEST:
        return f"{c.mean_diff:+.3f}, {c.n} paired seed" if c.n else "no paired seed"
    text = (
        f"{c.mean_diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}], "
        f"p_Holm {_p(c.p_holm)}, q {_p(c.q_bh)}"
    )
    return f"{text} ({_power(c)})" if c.verdict == NOT_SHOWN else text


def _best_entry(b: Best) -> str:
    """A "best" metric: its verdict, the strongest rival by mean and, when the verdict is "not
    shown" but that rival's comparison is not, the strongest rival not shown."""
    head = f"{LABELS[b.metric]} {b.verdict}"
    if b.beaten_by:
        head += f" (beaten by {', '.join(b.beaten_by)})"
    c = b.against
    text = f"{head}: strongest rival {c.rival} {_numbers(c)}"
    if c.verdict != b.verdict:
        text += f" ({c.verdict})"
    unshown = [x for x in b.comparisons if x.verdict == NOT_SHOWN]
    if b.verdict == NOT_SHOWN and c.verdict != NOT_SHOWN and unshown:
        other = min(unshown, key=lambda x: x.expected * x.mean_diff)
        text += f", not shown against {other.rival} {_numbers(other)}"
    return text


def _summary(verdicts: list[str]) -> str:
    counts = Counter(verdicts)
    if len(counts) == 1:
        return verdicts[0]
    return "mixed (" + ", ".join(f"{n} {v}" for v, n in counts.items()) + ")"


def render(checked: Checked) -> str:
    """The claim's Markdown line."""
    claim = checked.claim
    low, high = min(c.n for c in checked.family), max(c.n for c in checked.family)
    seeds = f"{low}-{high} paired seeds" if low != high else f"{low} paired seed" + "s" * (low != 1)
    compared = "; ".join(
        [f"{checked.dataset}: {claim.row} vs {checked.reference}, {seeds}", *checked.notes]
    )
    if claim.reference == BEST:
        results = best(checked.family)
        details = [_best_entry(b) for b in results]
        verdicts = [b.verdict for b in results]
    else:
        details = [f"{LABELS[c.metric]} {c.verdict}: {_numbers(c)}" for c in checked.family]
        verdicts = [c.verdict for c in checked.family]
    return f"| {claim.text} | {compared} | {'; '.join(details)} | {_summary(verdicts)} |"


HEADER = (
    "| claim | compared | per metric: verdict: row - reference, mean [95 % CI], p_Holm (within "
    "the claim), q (Benjamini-Hochberg, the report) | verdict |\n|---|---|---|---|"
)


def report(
    store: Store, profile: str, data_root: Path | None = None, tables: Sequence[str] = ()
) -> str:
    """The header (the runs read and their code versions), one line per claim and dataset,
    and the Benjamini-Hochberg summary under the table. `tables` (run_all's names: 4,
    sampling): only the claims about these, and the q-values over their tests alone."""
    unknown = [name for name in tables if name not in SPECS]
    if unknown:
        raise UserError(f"--tables: unknown table {unknown[0]!r} (one of {', '.join(SPECS)})")
    stems = {SPECS[name].stem for name in tables}
    records: dict[str, pd.DataFrame] = {}
    lines: list[Checked | str] = []  # a claim checked, or the line of one not run
    for claim in [claim for claim in CLAIMS if not stems or claim.table in stems]:
        if claim.table not in records:
            records[claim.table] = table_records(claim.table, store, profile, data_root)
        for dataset, runs in records[claim.table].groupby("dataset", sort=False):
            if claim.datasets and paper_dataset(dataset) not in claim.datasets:
                continue
            try:
                lines.append(check(claim, runs))
            except NotRun as err:
                lines.append(f"| {claim.text} | {dataset}: – | {err} | not run |")
    checked = [line for line in lines if isinstance(line, Checked)]
    with_qs = iter(with_q([c for x in checked for c in x.family]))
    lines = [
        replace(x, family=tuple(next(with_qs) for _ in x.family)) if isinstance(x, Checked) else x
        for x in lines
    ]
    tested = [c for x in lines if isinstance(x, Checked) for c in x.family]
    m = sum(not math.isnan(c.p) for c in tested)
    significant = sum(c.verdict in (HOLDS, DOES_NOT_HOLD) for c in tested)
    kept = surviving(tested, ALPHA)
    ok = pd.concat(records.values(), ignore_index=True).query("status == 'ok'")
    head = f"Runs read: {ok['stage'].nunique()} ok; their code versions: {_codes(ok) or 'none'}."
    table = [render(x) if isinstance(x, Checked) else x for x in lines]
    foot = (
        f"Benjamini-Hochberg over the report's {m} tests: {kept} of the {significant} "
        f"significant comparisons (holds or does not hold after Holm) survive at q < {ALPHA}."
    )
    return "\n".join([head, "", HEADER, *table, "", foot])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tables.claims", description=__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"), help="results store")
    parser.add_argument("--profile", default="cpu", help="the profile the tables ran at (cpu)")
    parser.add_argument("--data-root", type=Path, help="the real datasets' folder, if any")
    parser.add_argument(
        "--tables", default="", help="only the claims about these tables (fig5: Figure 5), e.g. 4,5"
    )
    args = parser.parse_args(argv)
    tables = [name.strip() for name in args.tables.split(",") if name.strip()]
    try:
        print(report(Store(args.results), args.profile, args.data_root, tables))
    except (DuplicateRun, ValueError, UserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
