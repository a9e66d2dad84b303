"""Reproduce the ELTA paper's Tables 1-5 and Figures 1 and 5: `python run_all.py --table 4`.

Without --data-root the embedded long-tailed benchmark stands in for the paper's datasets
(synth-ava for AVA, ...); with it, the real datasets are read in their official formats.
Every stage is cached under results/runs/; a rerun reuses them, --force recomputes.

One model, one run:   python run_all.py --model nima [--methods tfa,flsa,apds]
A table on a model:   python run_all.py --table 4 --model tanet
A released model:     python run_all.py --model tanet --weights tanet=SRCC_758_LCC_765.pth \\
                          --eval-only --profile paper --dataset ava --data-root /data/iaa
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


# MethodOptions field -> the command-line option that sets it for every row of a grid
COMMON_OPTIONS = {
    "tfa_pairs": "tfa_pairs",
    "tau1": "tau1",
    "tau2": "tau2",
    "emd_form": "emd",
    **{f"{m}_{k}": f"{m}_{k}" for m in ("lds", "fds") for k in ("kernel", "ks", "sigma")},
    "lds_reweight": "lds_reweight",
    "fds_momentum": "fds_momentum",
    "ranksim_lambda": "ranksim_lambda",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", help="which table to reproduce (see --list)")
    p.add_argument(
        "--figure",
        help="which figure: 1 (score histograms), 5 (the tau1 x tau2 heatmap), tail (the long "
        "tail's errors per model, from stored results)",
    )
    p.add_argument(
        "--model", help="a table on this model instead of its own, or alone: one run of it"
    )
    p.add_argument("--methods", help="with --model alone: the run's methods, e.g. tfa,flsa,apds")
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="with --model alone: evaluate its --weights (a trained model) without training",
    )
    p.add_argument("--dataset", help="run on this dataset instead of the table's default")
    p.add_argument("--profile", default="cpu", help="smoke | cpu (default) | paper")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1; cells show mean ± std")
    p.add_argument(
        "--jobs",
        type=int,
        help="stages run in parallel (default: one per CPU core, one thread each; 1 on a GPU)",
    )
    p.add_argument("--backend", default="loky", help="joblib backend: loky (default) or ray")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, ...")
    p.add_argument("--data-root", type=Path, help="folder holding AVA/, AADB/, TAD66K/, PARA/")
    p.add_argument(
        "--unlabeled",
        type=Path,
        help="an image folder for a real dataset's APDS pool (default: the other datasets)",
    )
    p.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="MODEL[.PART]=FILE",
        help="weights from a local file, e.g. swinv2=/ckpt/swinv2_base_window8_256.pth; a model "
        "with several pretrained parts takes one per part (tanet.theme=resnet18_places365.pth.tar)",
    )
    p.add_argument("--results", type=Path, default=Path("results"), help="results store")
    p.add_argument("--force", action="store_true", help="recompute stored stages")
    p.add_argument("--dry-run", action="store_true", help="list the stages, cached or not")
    p.add_argument(
        "--cached-only",
        action="store_true",
        help="render from the results store without training; a cell not run is marked so",
    )
    p.add_argument("--list", action="store_true", help="models, datasets, tables, profiles")
    m = p.add_argument_group("method options (the paper's defaults)")
    m.add_argument("--tfa-pairs", type=int, help="mixed pairs appended per batch")
    m.add_argument("--tau1", type=float, help="TFA temperature of eq. 2 and 4 (0.2)")
    m.add_argument("--tau2", type=float, help="TFA temperature of eq. 3 (4.0)")
    m.add_argument("--tau1-grid", help="Figure 5's tau1 values, e.g. 0.1,0.2,0.5")
    m.add_argument("--tau2-grid", help="Figure 5's tau2 values, e.g. 2,4,6")
    m.add_argument("--flsa-weight", type=float, help="weight of the FLSA loss (1.0)")
    m.add_argument(
        "--emd", choices=["per_sample", "batch_rms"], help="EMD form (batch_rms: official code)"
    )
    d = p.add_argument_group("deep imbalanced regression options (LDS, FDS, RankSim)")
    d.add_argument("--lds-kernel", help="LDS window: gaussian (default), triang, laplace")
    d.add_argument("--lds-ks", type=int, help="LDS window size, odd (5)")
    d.add_argument("--lds-sigma", type=float, help="LDS window width (2.0)")
    d.add_argument("--lds-reweight", help="LDS reweighting: sqrt_inv (default) or inverse")
    d.add_argument("--fds-kernel", help="FDS window: gaussian (default), triang, laplace")
    d.add_argument("--fds-ks", type=int, help="FDS window size, odd (5)")
    d.add_argument("--fds-sigma", type=float, help="FDS window width (2.0)")
    d.add_argument("--fds-momentum", type=float, help="FDS running-statistics momentum (0.9)")
    d.add_argument("--ranksim-gamma", type=float, help="weight of the RankSim term")
    d.add_argument("--ranksim-lambda", type=float, help="RankSim interpolation lambda (2.0)")
    args = p.parse_args(argv)
    if not args.list and not (args.table or args.figure or args.model):
        p.error("give --table, --figure or --model (or --list)")
    if args.table and args.figure:
        p.error("give --table or --figure, not both")
    if (args.tau1_grid or args.tau2_grid) and not args.figure:
        p.error("--tau1-grid and --tau2-grid apply to --figure 5")
    if (args.methods or args.eval_only) and (args.table or args.figure):
        p.error("--methods and --eval-only go with --model alone (one run), not a table")
    if args.table == "all" and args.model:
        p.error("--table all has tables of every model: it takes no --model")
    if args.eval_only and args.methods:
        p.error("--eval-only evaluates trained weights: it takes no --methods")
    return args


def print_list() -> None:
    from baselines import list_models
    from baselines.registry import describe_model
    from bench.data.registry import dataset_names
    from bench.profiles import PROFILES
    from tables.specs import TABLES

    print("models:")
    for name, description in list_models().items():
        print(f"  {name:10s} {description}")
        for line in describe_model(name):
            print(f"  {'':10s}   {line}")
    print(
        "  (one run: --model NAME [--methods tfa,flsa,apds]; a table on it: --table 4 --model NAME)"
    )
    print("methods: tfa (feature|pixel level; elta|random|threshold sampling), flsa, apds;")
    print("         lds, fds, ranksim (deep imbalanced regression, baselines/dir)")
    print("datasets:", ", ".join(dataset_names()))
    print("tables:")
    for key, spec in TABLES.items():
        print(f"  {key:10s} {spec.title}: {spec.caption} ({', '.join(spec.paper_datasets)})")
    print("figures:")
    print("  1          score histograms of the datasets beside the paper's Figure 1")
    print("  5          test SRCC of TFA over a tau1 x tau2 grid (--tau1-grid, --tau2-grid)")
    print("  tail       MAE per score bin of Table 1's models; L/M/H with and without ELTA")
    print("profiles:")
    for name, profile in PROFILES.items():
        print(f"  {name:10s} {profile.description}")


def _weights(pairs: list[str]) -> dict[str, dict[str, str]]:
    """--weights MODEL[.PART]=FILE -> {model: {part: absolute path}}; part "auto" without one."""
    from baselines import list_models

    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        target, sep, path = pair.partition("=")
        model, dot, part = target.partition(".")
        if not sep or not path or not model or (dot and not part):
            raise UserError(f"--weights takes MODEL[.PART]=FILE, got '{pair}'")
        if model not in list_models():
            raise UserError(
                f"--weights: unknown model '{model}'; valid: {', '.join(list_models())}"
            )
        if not Path(path).is_file():
            raise UserError(f"{path}: weights file not found")
        out.setdefault(model, {})[part or "auto"] = str(Path(path).resolve())
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.reproducible import pin_cpu_kernels

    pin_cpu_kernels()  # before torch loads: the same kernels on every x86-64 machine
    args = parse_args(argv)
    try:
        if args.results.exists() and not args.results.is_dir():
            raise UserError(f"{args.results}: --results is not a folder")
        if args.list:
            print_list()
            return 0
        if args.figure:
            return run_figure(args)
        if args.table == "all":
            return run_everything(args)
        return run_table(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: completed stages are stored; rerun to resume", file=sys.stderr)
        return 130


ALL_TABLES = ("1", "2", "3", "4", "5", "sampling")
ALL_FIGURES = ("1", "5", "tail")


def run_everything(args: argparse.Namespace) -> int:
    """--table all: every table and figure from one plan (shared stages computed once, the
    cheap and widely shared ones first), then each rendered from the store, and
    results/report.md gathering them."""
    import contextlib
    import io

    from bench.data.registry import load_dataset
    from bench.estimate import StageCosts
    from bench.grid import describe
    from bench.plan import Context
    from bench.runner import check_settings, default_jobs, execute, plan
    from bench.store import Store
    from tables.report import write_report
    from tables.specs import get_table

    store = Store(args.results)
    cells = []
    for key in ALL_TABLES:
        spec = get_table(key)
        rows = [row.row() for row in spec.rows]
        cells += _plan_cells(args, rows, spec.paper_datasets)[3]
    cells += _plan_cells(args, _figure5_rows(args), ["AVA"])[3]
    serves = describe(cells)
    # The most widely shared chains first, and among equally shared ones the cheapest.
    cost = StageCosts(store)
    chains = sorted(
        (cell.chain for cell in cells),
        key=lambda chain: (-len(serves[chain[0].id]), sum(map(cost, chain))),
    )
    the_plan = plan(chains, store, args.force)
    if args.dry_run:
        print_plan(the_plan, serves, store, args.jobs)
        return 0
    if len(the_plan.cached) < len(the_plan.stages) and not args.cached_only:
        check_settings(args.device, args.backend)
        ctx = Context(results=args.results, device=args.device)
        profile = _plan_cells(args, [], ["AVA"])[0]
        datasets = {cell.dataset for cell in cells}
        root = args.data_root.resolve() if args.data_root else None
        for dataset in sorted(datasets):  # fail early on bad data; generates the benchmark
            load_dataset(dataset, profile, root, ctx.cache_dir, args.unlabeled)
        execute(the_plan, ctx, args.jobs or default_jobs(args.device), args.backend)

    code = 0
    for kind, key in [*(("table", k) for k in ALL_TABLES), *(("figure", k) for k in ALL_FIGURES)]:
        one = argparse.Namespace(**{**vars(args), "table": None, "figure": None, kind: key})
        one.cached_only = True  # everything ran above
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            code = max(code, run_figure(one) if kind == "figure" else run_table(one))
        written = [line for line in printed.getvalue().splitlines() if line.startswith("written")]
        print(f"{kind} {key}: {'; '.join(written)}")
    print(f"written: {write_report(args.results)}")
    return code


def run_table(args: argparse.Namespace) -> int:
    """A table of the paper, or (--model alone) a one-row table of a single run."""
    from baselines import model_entry
    from bench.data.registry import paper_dataset
    from tables.make import caption, write_blocks, write_table
    from tables.specs import get_table, single_run

    if args.table:
        spec = get_table(args.table)
        if args.model and len({row.model for row in spec.rows}) > 1:
            raise UserError(f"--model: {spec.title}'s rows name their own models")
        rows = [row.row(args.model) for row in spec.rows]
    else:
        model_entry(args.model)  # UserError for an unknown name
        methods = [m.strip() for m in (args.methods or "").split(",") if m.strip()]
        spec = single_run(args.model, methods)
        rows = [row.row() for row in spec.rows]
    done = _run_rows(args, rows, spec.paper_datasets)
    if done is None:
        return 0
    profile, per_dataset = done
    tables = args.results / "tables"
    if spec.layout == "blocks":
        datasets = list(per_dataset)
        paper_names = [paper_dataset(dataset) for dataset in datasets]
        codes = sorted({c for r in per_dataset.values() for c in r["code"].dropna()})
        data = [f for r in per_dataset.values() for f in dict.fromkeys(r["data"].dropna())]
        text = caption(spec, datasets, paper_names, profile.name, args.seeds, codes, data)
        print(write_blocks(spec, per_dataset, paper_names, text, tables / spec.stem))
        print(f"written: {tables / spec.stem}.md, .tex, .csv (per seed)")
        return _exit_code(per_dataset)
    for dataset, results in per_dataset.items():
        paper_name = paper_dataset(dataset)
        codes = sorted(results["code"].dropna().unique())
        data = list(dict.fromkeys(results["data"].dropna()))
        text = caption(spec, [dataset], [paper_name], profile.name, args.seeds, codes, data)
        out = tables / _stem(spec.stem, dataset, per_dataset)
        print(write_table(spec, results, paper_name, text, out))
        print(f"written: {out}.md, {out}.tex, {out}.csv (per seed)")
    return _exit_code(per_dataset)


def _stem(base: str, dataset: str, per_dataset: dict) -> str:
    """An output's file stem: `base`, suffixed with the dataset when there are several."""
    return base if len(per_dataset) == 1 else f"{base}-{dataset}"


def _exit_code(per_dataset: dict) -> int:
    """1 if any run failed (its cell shows it), else 0 (cells not run, --cached-only, are not
    failures)."""
    return int(any((results["status"] == "failed").any() for results in per_dataset.values()))


def _grid(text: str | None, default: tuple[float, ...], flag: str) -> list[float]:
    if text is None:
        return list(default)
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated numbers, got '{text}'") from None
    if not values or min(values) <= 0:
        raise UserError(f"{flag} needs one or more values > 0, got '{text}'")
    return sorted(set(values))


def run_figure(args: argparse.Namespace) -> int:
    figures = {"1": figure_histograms, "5": figure_tau, "tail": figure_tail}
    if args.figure not in figures:
        raise UserError(f"unknown figure '{args.figure}'; valid figures: {', '.join(figures)}")
    return figures[args.figure](args)


def _datasets(
    args: argparse.Namespace, paper_datasets: list[str], datasets: list[str] | None = None
) -> list[str]:
    """`datasets`, else --dataset, else the paper's datasets (real ones with --data-root, else
    embedded); every name checked."""
    from bench.data.registry import check_name

    if args.data_root is not None and not args.data_root.is_dir():
        raise UserError(f"{args.data_root}: data root not found")
    if datasets is None:
        datasets = (
            [args.dataset]
            if args.dataset
            else [d.lower() if args.data_root else f"synth-{d.lower()}" for d in paper_datasets]
        )
    for name in datasets:
        check_name(name)
    return datasets


def figure_histograms(args: argparse.Namespace) -> int:
    """Figure 1: score histograms of the datasets beside the paper's Figure 1 counts."""
    import numpy as np

    from bench.data.registry import load_dataset, paper_dataset
    from bench.profiles import get_profile
    from figures.histograms import draw, table
    from tables.specs import FOUR_DATASETS

    profile = get_profile(args.profile)
    names = _datasets(args, FOUR_DATASETS)
    root = args.data_root.resolve() if args.data_root else None
    scores = {}
    for name in names:
        data = load_dataset(name, profile, root, args.results / "cache")
        scores[name] = np.concatenate([data.train.scores, data.val.scores, data.test.scores])
    counts = table(scores, {name: paper_dataset(name) for name in names})
    title = (
        "Figure 1: share of images per score bin, ours beside the paper's Figure 1 "
        f"(profile {profile.name}; train, validation and test together)"
    )
    paths = draw(counts, args.results / "figures" / "fig1_histograms", title)
    shown = counts.pivot(index="bin", columns="dataset", values="proportion")
    print(shown.reindex(list(dict.fromkeys(counts["bin"]))).to_string(float_format="{:.3f}".format))
    print("written:", ", ".join(str(p) for p in paths))
    return 0


def figure_tail(args: argparse.Namespace) -> int:
    """What the long tail does to each model, from stored results only: MAE per score bin of
    Table 1's models on one dataset; L/M/H of Table 3's models with and without ELTA."""
    import pandas as pd

    from bench.store import Store
    from figures.histograms import BIN_LABELS
    from figures.tail_errors import draw, mae_by_bin, plug_in_groups
    from tables.specs import IAA_MODELS, get_table

    store = Store(args.results)
    dataset = args.dataset or ("ava" if args.data_root else "synth-ava")
    table1, table3 = get_table("1"), get_table("3")
    plans = {}
    for spec in (table1, table3):
        rows = [row.row() for row in spec.rows]
        profile, _, _, plans[spec.key] = _plan_cells(args, rows, ["AVA"], [dataset])
    labels = {row.key: row.descriptors[0] for row in table1.rows}
    predictions: dict[str, list[pd.DataFrame]] = {}
    for cell in plans["1"]:
        if store.is_ok(cell.chain[-1].id):
            frame = pd.read_csv(store.path(cell.chain[-1].id) / "predictions.csv")
            predictions.setdefault(labels[cell.row], []).append(frame)
    variants = {model: "plain" for model, _ in IAA_MODELS}
    variants |= {f"{model}+tfa+flsa+apds": "ELTA" for model, _ in IAA_MODELS}
    wanted = [cell for cell in plans["3"] if cell.row in variants]
    runs = [
        {
            "model": cell.row.partition("+")[0],
            "variant": variants[cell.row],
            **store.metrics(cell.chain[-1].id)["test"],
        }
        for cell in wanted
        if store.is_ok(cell.chain[-1].id)
    ]
    by_bin = mae_by_bin(predictions)
    plug_in = plug_in_groups(pd.DataFrame(runs)) if runs else pd.DataFrame()
    n_table1 = sum(map(len, predictions.values()))
    stored = (
        f"{n_table1} of {len(plans['1'])} Table 1 runs and {len(runs)} of {len(wanted)} "
        "Table 3 runs stored"
    )
    title = f"The long tail on {dataset}: profile {profile.name}, {args.seeds} seed(s); {stored}"
    paths = draw(by_bin, plug_in, args.results / "figures" / "fig_tail", title, dataset)
    if not by_bin.empty:
        wide = by_bin.pivot(index="model", columns="bin", values="mae")
        wide = wide.reindex(columns=[label for label in BIN_LABELS if label in wide])
        print(wide.to_string(float_format="{:.3f}".format))
    print(f"{stored}; written:", ", ".join(str(p) for p in paths))
    return 0


def _figure5_rows(args: argparse.Namespace) -> list:
    """Figure 5's grid: a TFA row per (tau1, tau2)."""
    from bench.grid import Row
    from tables.specs import TAU1_GRID, TAU2_GRID

    tau1s = _grid(args.tau1_grid, TAU1_GRID, "--tau1-grid")
    tau2s = _grid(args.tau2_grid, TAU2_GRID, "--tau2-grid")
    model = args.model or "swinv2"
    return [
        Row(f"tau1={t1:g},tau2={t2:g}", model, {"tfa": True, "tau1": t1, "tau2": t2})
        for t1 in tau1s
        for t2 in tau2s
    ]


def figure_tau(args: argparse.Namespace) -> int:
    """Figure 5: test SRCC of TFA over a tau1 x tau2 grid."""
    from figures.tau_heatmap import draw, summarise

    rows = _figure5_rows(args)
    cells = {row.key: (row.options["tau1"], row.options["tau2"]) for row in rows}
    done = _run_rows(args, rows, ["AVA"])
    if done is None:
        return 0
    profile, per_dataset = done
    for dataset, results in per_dataset.items():
        results[["tau1", "tau2"]] = [cells[row] for row in results["row"]]
        grid = summarise(results)
        codes = ", ".join(sorted(results["code"].dropna().unique()))
        data = ", ".join(dict.fromkeys(results["data"].dropna()))
        title = (
            f"Figure 5: test SRCC of TFA on {dataset} (mean ± std over seeds)\nprofile "
            f"{profile.name}, {args.seeds} seed{'s' if args.seeds > 1 else ''}, code {codes}, "
            f"data {data}"
        )
        stem = _stem("fig5_tau", dataset, per_dataset)
        paths = draw(grid, args.results / "figures" / stem, title)
        print(grid.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print("written:", ", ".join(str(p) for p in paths))
    return _exit_code(per_dataset)


def _plan_cells(
    args: argparse.Namespace, rows: list, paper_datasets: list[str], datasets=None
) -> tuple:
    """Validate the command line and plan every (dataset, row, seed) of the rows
    (`bench.grid.Row`): (profile, datasets, weights, cells). The datasets are `datasets`,
    else --dataset, else the paper's (real with --data-root, embedded otherwise). The command
    line's method options apply under each row's own."""
    from bench.grid import FLSA_WEIGHT_DEFAULT, RANKSIM_GAMMA_DEFAULT, plan_grid
    from bench.methods import MethodOptions
    from bench.profiles import get_profile

    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be >= 1 (got {args.jobs})")
    profile = get_profile(args.profile)
    weights = _weights(args.weights)
    if args.eval_only and args.model not in weights:
        raise UserError(f"--eval-only needs the trained model's file: --weights {args.model}=FILE")
    datasets = _datasets(args, paper_datasets, datasets)
    if args.unlabeled is not None and not args.unlabeled.is_dir():
        raise UserError(f"{args.unlabeled}: --unlabeled folder not found")
    common = {
        key: getattr(args, flag)
        for key, flag in COMMON_OPTIONS.items()
        if getattr(args, flag) is not None
    }
    flsa_weight = FLSA_WEIGHT_DEFAULT if args.flsa_weight is None else args.flsa_weight
    ranksim = RANKSIM_GAMMA_DEFAULT if args.ranksim_gamma is None else args.ranksim_gamma
    # Validate every setting before anything runs, each module on.
    MethodOptions(**common, flsa_weight=flsa_weight, lds=True, fds=True, ranksim_weight=ranksim)
    cells = plan_grid(
        datasets,
        rows,
        args.seeds,
        profile.name,
        common,
        flsa_weight,
        ranksim,
        args.data_root,
        weights,
        args.eval_only,
        args.unlabeled,
    )
    return profile, datasets, weights, cells


def _run_rows(args: argparse.Namespace, rows: list, paper_datasets: list[str]) -> tuple | None:
    """Plan the rows' runs (`_plan_cells`), run what the store lacks (nothing with
    --cached-only), and return the profile and, per dataset, one record per (row, seed) of its
    final stage (`tables.make.collect`); None after a dry run."""
    from baselines import create_model
    from bench.data.registry import load_dataset
    from bench.grid import describe
    from bench.plan import Context
    from bench.runner import check_settings, default_jobs, execute, plan
    from bench.store import Store
    from tables.make import collect

    profile, datasets, weights, cells = _plan_cells(args, rows, paper_datasets)
    store = Store(args.results)
    the_plan = plan([cell.chain for cell in cells], store, args.force)
    if args.dry_run:
        print_plan(the_plan, describe(cells), store, args.jobs)
        return None

    if len(the_plan.cached) < len(the_plan.stages) and not args.cached_only:
        if profile.name == "paper" and not args.eval_only:
            for model in sorted({row.model for row in rows} - set(weights)):
                print(
                    f"warning: profile paper without --weights {model}=FILE trains {model} "
                    "from random initialisation (the paper starts from ImageNet weights)",
                    file=sys.stderr,
                )
        check_settings(args.device, args.backend)
        jobs = args.jobs or default_jobs(args.device)
        ctx = Context(results=args.results, device=args.device)
        for dataset in datasets:  # fail early on bad data; generates the embedded benchmark
            root = args.data_root.resolve() if args.data_root else None
            load_dataset(dataset, profile, root, ctx.cache_dir, args.unlabeled)
        for model, parts in weights.items():  # fail early on bad weight files
            if any(row.model == model for row in rows):
                create_model(model, profile.name, parts)
        execute(the_plan, ctx, jobs, args.backend)
    per_dataset = {
        dataset: collect(
            [(cell.row, cell.seed, cell.chain[-1]) for cell in cells if cell.dataset == dataset],
            store,
        )
        for dataset in datasets
    }
    return profile, per_dataset


def print_plan(the_plan, serves: dict[str, list[str]], store, jobs: int | None) -> None:
    """Each stage, cached or to run, with the runs it serves; the count; the time to run."""
    from bench.estimate import estimate

    for stage in the_plan.stages:
        state = "cached" if stage.id in the_plan.cached else "to run"
        print(f"{stage.id}  {stage.kind:9s}  {state:6s}  {', '.join(serves[stage.id])}")
    n_all, n_cached = len(the_plan.stages), len(the_plan.cached)
    print(f"{n_all} stages: {n_cached} cached, {n_all - n_cached} to run")
    todo = [stage for stage in the_plan.stages if stage.id not in the_plan.cached]
    if todo:
        jobs = jobs or os.cpu_count() or 1  # the default on a CPU: one stage per core
        print(estimate(todo, store, jobs).describe(jobs))


if __name__ == "__main__":
    sys.exit(main())
