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
import sys
from pathlib import Path

from iaa_common import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


# MethodOptions fields that the command line sets for every row of a grid (--tfa-pairs, ...)
COMMON_OPTIONS = ("tfa_pairs", "tau1", "tau2", "lds_reweight", "fds_momentum", "ranksim_lambda")
COMMON_OPTIONS += tuple(f"{m}_{k}" for m in ("lds", "fds") for k in ("kernel", "ks", "sigma"))
DIR_FLAGS = [  # (flag, type, help)
    (f"--{m}-{key}", kind, f"{m.upper()} window {text}")
    for m in ("lds", "fds")
    for key, kind, text in (("kernel", str, "kernel: gaussian (default), triang, laplace"),
                            ("ks", int, "size, odd (5)"), ("sigma", float, "width (2.0)"))
]  # fmt: skip
DIR_FLAGS += [
    ("--lds-reweight", str, "LDS reweighting: sqrt_inv (default) or inverse"),
    ("--fds-momentum", float, "FDS running-statistics momentum (0.9)"),
    ("--ranksim-gamma", float, "weight of the RankSim term"),
    ("--ranksim-lambda", float, "RankSim interpolation lambda (2.0)"),
]


MAIN_FLAGS = [  # (flag, add_argument's keyword arguments)
    ("--table", dict(help="which table to reproduce (see --list)")),
    ("--figure", dict(help="which figure: 1 (score histograms), 5 (the tau1 x tau2 heatmap), "
                           "tail (the long tail's errors per model, from stored results)")),
    ("--model", dict(help="a table on this model instead of its own, or alone: one run of it")),
    ("--methods", dict(help="with --model alone: the run's methods, e.g. tfa,flsa,apds")),
    ("--eval-only", dict(action="store_true", help="with --model alone: evaluate its --weights "
                                                   "(a trained model) without training")),
    ("--dataset", dict(help="run on this dataset instead of the table's default")),
    ("--profile", dict(default="cpu", help="smoke | cpu (default) | paper")),
    ("--seeds", dict(type=int, default=1, help="seeds 0..N-1; cells show mean ± std")),
    ("--jobs", dict(type=int, help="stages run in parallel (default: one per CPU core, one "
                                   "thread each; one per GPU)")),
    ("--backend", dict(default="loky", help="joblib backend: loky (default) or ray")),
    ("--device", dict(default="auto", help="auto (cuda when present), cpu, cuda, ...")),
    ("--data-root", dict(type=Path, help="folder holding AVA/, AADB/, TAD66K/, PARA/")),
    ("--unlabeled", dict(type=Path, help="an image folder for a real dataset's APDS pool "
                                         "(default: the other datasets)")),
    ("--weights", dict(action="append", default=[], metavar="MODEL[.PART]=FILE", help="weights "
                       "from a local file, e.g. swinv2=/ckpt/swinv2_base_window8_256.pth; one per "
                       "part: tanet.theme=resnet18_places365.pth.tar")),
    ("--recipe", dict(action="append", default=[], metavar="[MODEL.]KEY=VALUE", help="a recipe "
                      "key over the models' recipes, e.g. musiq.batch_size=64 with "
                      "musiq.batch_fit=accumulate (keys: bench/train/settings.py)")),
    ("--variant", dict(action="append", default=[], metavar="MODEL=NAME[,NAME]",
                       help="a named variant of a model instead of its default form (--list)")),
    ("--results", dict(type=Path, default=Path("results"), help="results store")),
    ("--force", dict(action="store_true", help="recompute stored stages")),
    ("--dry-run", dict(action="store_true", help="list the stages, cached or not")),
    ("--cached-only", dict(action="store_true", help="render from the results store without "
                                                     "training; a cell not run is marked so")),
    ("--list", dict(action="store_true", help="models, datasets, tables, profiles")),
    ("--rehearse", dict(action="store_true", help="with --profile paper: its code path on "
                        "fixture data, capped steps (bench/run/rehearsal.py); not a result")),
    ("--verify-store", dict(action="store_true", help="check every stored stage (sizes, "
                                                      "SHA-256): the damaged go to quarantine")),
    ("--write-manifests", dict(action="store_true", help="with --verify-store: a manifest for "
                                                         "each stage stored before manifests")),
]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, options in MAIN_FLAGS:
        p.add_argument(flag, **options)
    s = p.add_argument_group("scoring new images (README: Scoring new images)")
    s.add_argument("--score", type=Path, metavar="DIR", help="score DIR's images (and subfolders')")
    s.add_argument("--stage", metavar="ID", help="a stored stage's id (--dry-run names them)")
    s.add_argument("--out", type=Path, metavar="FILE.csv", help="file, score, bin1..bin10")
    m = p.add_argument_group("method options (the paper's defaults)")
    m.add_argument("--tfa-pairs", type=int, help="mixed pairs appended per batch")
    m.add_argument("--tau1", type=float, help="TFA temperature of eq. 2 and 4 (0.2)")
    m.add_argument("--tau2", type=float, help="TFA temperature of eq. 3 (4.0)")
    m.add_argument("--tau1-grid", help="Figure 5's tau1 values, e.g. 0.1,0.2,0.5")
    m.add_argument("--tau2-grid", help="Figure 5's tau2 values, e.g. 2,4,6")
    m.add_argument("--flsa-weight", type=float, help="weight of the FLSA loss (1.0)")
    m.add_argument("--emd", choices=["per_sample", "batch_rms"], help="EMD form of every model "
                   "(default: each model's recipe; paper: its official code's)")  # fmt: skip
    d = p.add_argument_group("deep imbalanced regression options (LDS, FDS, RankSim)")
    for flag, kind, text in DIR_FLAGS:
        d.add_argument(flag, type=kind, help=text)
    args = p.parse_args(argv)
    if not args.list and not (args.table or args.figure or args.model or args.verify_store):
        p.error("give --table, --figure or --model (or --list, --verify-store)")
    if args.write_manifests and not args.verify_store:
        p.error("--write-manifests goes with --verify-store")
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
    if (args.stage or args.out) and not args.score or args.score and (not args.out or args.table
            or args.figure or args.methods or args.eval_only):  # fmt: skip
        p.error("--score DIR takes --model M and --out FILE.csv, no table, figure or --methods")
    return args


def main(argv: list[str] | None = None) -> int:
    from bench.run.reproducible import pin_cpu_kernels

    pin_cpu_kernels()  # before torch loads: the same kernels on every x86-64 machine
    args = parse_args(argv)
    try:
        if args.list:
            from tables.listing import listing

            print(listing())
            return 0
        if args.verify_store:
            from bench.run.store import verify_store

            summary, code = verify_store(args.results, args.write_manifests)
            print(summary)
            return code
        request, how = settings(args)
        if args.score:
            from bench.run.score import score_images

            return score_images(args.score, args.out, args.model, args.stage, request, how)
        if args.figure:
            return run_figure(args, request, how)
        if args.table == "all":
            return run_everything(args, request, how)
        return run_table(args, request, how)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: completed stages are stored; rerun to resume", file=sys.stderr)
        return 130


def settings(args: argparse.Namespace):
    """The command line as a `Request` (what every grid runs) and an `Execution` (how)."""
    from bench.run.grid import (
        DataSource,
        GridOptions,
        Request,
        parse_recipe,
        parse_variants,
        parse_weights,
    )
    from bench.run.pipeline import Execution

    how = Execution(
        results=args.results, device=args.device, jobs=args.jobs, backend=args.backend,
        force=args.force, cached_only=args.cached_only, dry_run=args.dry_run,
    )  # fmt: skip
    options = GridOptions(
        common={key: getattr(args, key) for key in COMMON_OPTIONS
                if getattr(args, key) is not None},
        **{key: getattr(args, flag) for key, flag in (("flsa_weight", "flsa_weight"),
           ("ranksim_weight", "ranksim_gamma")) if getattr(args, flag) is not None},
    )  # fmt: skip
    options.check()
    weights = parse_weights(args.weights)
    if args.eval_only and args.model not in weights:
        raise UserError(f"--eval-only needs the trained model's file: --weights {args.model}=FILE")
    request = Request(
        profile=args.profile, seeds=args.seeds, dataset=args.dataset,
        options=options, data=DataSource(args.data_root, args.unlabeled),
        weights=weights, eval_only=args.eval_only, variants=parse_variants(args.variant),
        recipe=parse_recipe([*args.recipe, *([f"emd={args.emd}"] if args.emd else [])]),
    )  # fmt: skip
    if args.rehearse:
        from bench.run.rehearsal import rehearsal

        if args.profile != "paper":
            raise UserError("--rehearse rehearses the paper protocol: give --profile paper")
        request = rehearsal(request, args.results)
    return request, how


def _show(made, how, heading: str = "") -> int:
    """Print what a table or figure made (a dry run: its stages); its exit code: 3 when the
    store held damaged stages (bench/run/store.py), else 1 when a run failed."""
    from bench.run.pipeline import Outcome
    from bench.run.store import EXIT_DAMAGED, damage_found

    damaged = EXIT_DAMAGED if damage_found() else 0
    if isinstance(made, Outcome):
        print(made.describe(how))  # with the runner's stages at once on how.device
        return damaged
    written = ", ".join(str(path) for path in made.paths)
    if not made.paths:  # a dry run of a figure that trains nothing
        print(f"{heading}{made.text}")
    else:
        print(f"{heading}written: {written}" if heading else f"{made.text}\nwritten: {written}")
    return max(damaged, int(made.failed))


def run_table(args: argparse.Namespace, request, how) -> int:
    """A table of the paper, or (--model alone) a one-row table of a single run."""
    from baselines import model_entry
    from tables.make import make_table
    from tables.specs import get_table, single_run

    if args.table:
        spec = get_table(args.table)
        if args.model and len({row.model for row in spec.rows}) > 1:
            raise UserError(f"--model: {spec.title}'s rows name their own models")
        return _show(make_table(spec, request, how, args.model), how)
    model_entry(args.model)  # UserError for an unknown name
    methods = [m.strip() for m in (args.methods or "").split(",") if m.strip()]
    return _show(make_table(single_run(args.model, methods), request, how), how)


def _taus(args: argparse.Namespace):
    """Figure 5's grid: --tau1-grid, --tau2-grid, a rehearsal's corners, or the default."""
    from bench.run import rehearsal
    from figures.make import TauGrid, parse_grid
    from tables.specs import TAU1_GRID, TAU2_GRID

    taus = (rehearsal.TAU1_GRID, rehearsal.TAU2_GRID) if args.rehearse else (TAU1_GRID, TAU2_GRID)
    model = args.model or (rehearsal.SUBSTITUTE if args.rehearse else "swinv2")
    tau1 = parse_grid(args.tau1_grid, taus[0], "--tau1-grid")
    return TauGrid(tau1, parse_grid(args.tau2_grid, taus[1], "--tau2-grid"), model)


def run_figure(args: argparse.Namespace, request, how) -> int:
    from figures.make import make_figure

    return _show(make_figure(args.figure, request, how, _taus(args)), how)


def run_everything(args: argparse.Namespace, request, how) -> int:
    """--table all: every table and figure (figures.make.make_everything), results/report.md
    gathering them; a rehearsal also evaluates a model it trained (an evaluate stage)."""
    from figures.make import make_everything
    from tables.report import write_report

    made = make_everything(request, how, _taus(args))
    if not isinstance(made, dict):
        return _show(made, how)
    if args.rehearse:  # and an evaluate stage: a model it trained, from its stored weights
        from bench.run.rehearsal import stored_model
        from tables.make import make_table
        from tables.specs import single_run

        evaluate = stored_model(request, args.results)
        made["evaluate"] = make_table(single_run("tanet", []), evaluate, how)
    code = max(_show(one, how, f"{heading}: ") for heading, one in made.items())
    print(f"written: {write_report(args.results)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
