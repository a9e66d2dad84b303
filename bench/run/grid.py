"""A grid of runs: datasets x rows x seeds -> cells, each a chain of stages. Pure Python (no
torch), the one planner behind every table, figure and a user's own script:

    from bench.run.grid import Grid, Request, Row
    from bench.run.pipeline import Execution, run
    rows = [Row("nima", "nima", {"tfa": True, "flsa": True})]
    grid = Grid(["synth-ava"], rows, Request(seeds=3))
    outcome = run([grid], Execution())  # trains what the store lacks; records per dataset

A row is a model and the method options it runs with (`bench.train.methods.MethodOptions`
fields; `flsa: True` / `ranksim: True` turn those modules on at the grid's weights). Options
common to the grid (the command line's --tau1, --emd, ...) apply under each row's own.

A `Request` is what a command asks of every grid it runs (profile, seeds, datasets, data,
weight files): `request.grid(rows, paper_datasets)` makes a table's or a figure's grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.data.registry import check_name
from bench.run.dag import RunRequest, Stage, stages_for
from bench.train.methods import MethodOptions
from iaa_common import UserError

FLSA_WEIGHT_DEFAULT = 1.0  # the official README's example (--simloss_weight 1)
# RankSim's gamma, chosen on synth-ava's validation split (python -m bench.dev.choose dir;
# README); the official recommendation, 100, was tuned for age regression with an L1 loss.
RANKSIM_GAMMA_DEFAULT = 0.001


@dataclass(frozen=True)
class Row:
    key: str  # names the row in tables and in the paper's numbers
    model: str  # a registered model (baselines/models.toml)
    # MethodOptions fields; flsa / ranksim: True turn them on at the grid's weight
    options: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)  # over the model's recipe (e.g. lr candidates)
    variants: tuple[str, ...] = ()  # the model's named variants (baselines/models.toml)


@dataclass(frozen=True)
class GridOptions:
    """Method options common to every row (`common`: MethodOptions fields), and the weights at
    which a row's `flsa: True` / `ranksim: True` turn those modules on."""

    common: Mapping[str, object] = field(default_factory=dict)
    flsa_weight: float = FLSA_WEIGHT_DEFAULT
    ranksim_weight: float = RANKSIM_GAMMA_DEFAULT

    def for_row(self, row: Row) -> MethodOptions:
        """The row's options over the common ones (UserError for bad values)."""
        options = {**self.common, **row.options}
        if options.pop("flsa", False):
            options.setdefault("flsa_weight", self.flsa_weight)
        if options.pop("ranksim", False):
            options.setdefault("ranksim_weight", self.ranksim_weight)
        return MethodOptions(**options)

    def check(self) -> None:
        """UserError for a bad setting, checked with every module on, before anything runs."""
        MethodOptions(
            **self.common, flsa_weight=self.flsa_weight, lds=True, fds=True,
            ranksim_weight=self.ranksim_weight,
        )  # fmt: skip


@dataclass(frozen=True)
class DataSource:
    """Where the real datasets are read (None: the embedded benchmark only), and an image folder
    for a real dataset's APDS pool (None: drawn from the other datasets under the root)."""

    root: Path | None = None
    unlabeled: Path | None = None

    def __post_init__(self) -> None:
        if self.root is not None and not self.root.is_dir():
            raise UserError(f"{self.root}: data root not found")
        if self.unlabeled is not None and not self.unlabeled.is_dir():
            raise UserError(f"{self.unlabeled}: --unlabeled folder not found")


@dataclass(frozen=True)
class Cell:
    """One run of the grid and its chain of stages (the last one holds its metrics)."""

    dataset: str
    row: str
    seed: int
    chain: list[Stage]

    @property
    def final(self) -> Stage:
        return self.chain[-1]


@dataclass(frozen=True)
class Request:
    """What a command asks of every grid it runs: profile, seeds, method options, data, weight
    files (a model -> part -> path; `eval_only` evaluates them instead of training), and
    `recipe` and `variants`, which map a model (or "*", every model) to recipe keys over its
    recipe and to its named variants, under each row's own. `dataset`: one dataset instead of
    a table's own; without it a table runs on the paper's datasets, real ones under
    `data.root`, else their embedded stand-ins (synth-ava for AVA, ...)."""

    profile: str = "cpu"
    seeds: int = 1
    dataset: str | None = None
    options: GridOptions = GridOptions()
    data: DataSource = DataSource()
    weights: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    eval_only: bool = False
    recipe: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    variants: Mapping[str, Sequence[str]] = field(default_factory=dict)
    note: str = ""  # said in every caption and figure title (a rehearsal says so)
    kept: tuple[str, ...] | None = None  # of a table's paper datasets, only these (a rehearsal)
    substitute: str | None = None  # the model of tables whose rows share one (a rehearsal)

    def datasets(self, paper_datasets: Sequence[str]) -> list[str]:
        """--dataset, else the paper's datasets (real with a data root, else embedded); every
        name checked."""
        if self.kept is not None:
            paper_datasets = [name for name in paper_datasets if name in self.kept]
        if self.dataset:
            names = [self.dataset]
        elif self.data.root is not None:
            names = [name.lower() for name in paper_datasets]
        else:
            names = [f"synth-{name.lower()}" for name in paper_datasets]
        for name in names:
            check_name(name)
        return names

    def recipe_for(self, row: Row) -> dict:
        """Recipe keys over a row's model's recipe: every model's, the model's, the row's."""
        return {**self.recipe.get("*", {}), **self.recipe.get(row.model, {}), **row.recipe}

    def variants_for(self, row: Row) -> tuple[str, ...]:
        named = [*self.variants.get(row.model, ()), *row.variants]
        return tuple(dict.fromkeys(named))

    def grid(self, rows: Sequence[Row], paper_datasets: Sequence[str]) -> Grid:
        return Grid(self.datasets(paper_datasets), rows, self)


@dataclass(frozen=True)
class Grid:
    """Every (dataset, row, seed) of `datasets` x `rows` x seeds 0..seeds-1, as `request` asks
    (profile, seeds, options, data, weights, recipes, variants)."""

    datasets: Sequence[str]
    rows: Sequence[Row]
    request: Request = Request()

    def cells(self) -> list[Cell]:
        ask = self.request
        if ask.seeds < 1:
            raise UserError(f"--seeds must be >= 1 (got {ask.seeds})")
        root, pool = ask.data.root, ask.data.unlabeled
        cells = []
        for dataset in self.datasets:
            for row in self.rows:
                opts = ask.options.for_row(row)
                for seed in range(ask.seeds):
                    run = RunRequest(
                        dataset=dataset,
                        model=row.model,
                        profile=ask.profile,
                        seed=seed,
                        options=opts,
                        data_root=str(root.resolve()) if root else None,
                        weights=ask.weights.get(row.model),
                        eval_only=ask.eval_only,
                        recipe=ask.recipe_for(row) or None,
                        unlabeled=str(pool.resolve()) if pool else None,
                        variants=ask.variants_for(row),
                    )
                    cells.append(Cell(dataset, row.key, seed, stages_for(run)))
        return cells


def parse_weights(pairs: Sequence[str]) -> dict[str, dict[str, str]]:
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


def parse_recipe(pairs: Sequence[str]) -> dict[str, dict[str, object]]:
    """--recipe [MODEL.]KEY=VALUE -> {model or "*": {key: value}}; the value read as TOML
    (numbers, true / false, [lists]) or else as a string."""
    import tomllib

    from baselines import list_models
    from bench.train.settings import RECIPE_KEYS

    out: dict[str, dict[str, object]] = {}
    for pair in pairs:
        target, sep, text = pair.partition("=")
        model, dot, key = target.rpartition(".")
        if not sep or not key or not text or (dot and not model):
            raise UserError(f"--recipe takes [MODEL.]KEY=VALUE, got '{pair}'")
        if model and model not in list_models():
            raise UserError(f"--recipe: unknown model '{model}'; valid: {', '.join(list_models())}")
        if key not in RECIPE_KEYS:
            raise UserError(f"--recipe: unknown key '{key}'; valid: {', '.join(RECIPE_KEYS)}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out.setdefault(model or "*", {})[key] = value
    return out


def parse_variants(pairs: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """--variant MODEL=NAME[,NAME] -> {model: names}, each a variant the model has."""
    from baselines.registry import model_entry

    out: dict[str, tuple[str, ...]] = {}
    for pair in pairs:
        model, sep, names = pair.partition("=")
        if not sep or not model or not names:
            raise UserError(f"--variant takes MODEL=NAME[,NAME], got '{pair}'")
        known = model_entry(model).get("variants", {})
        for name in names.split(","):
            if name not in known:
                raise UserError(
                    f"--variant: {model} has no variant '{name}'; its variants: "
                    f"{', '.join(known) or 'none'}"
                )
        out[model] = (*out.get(model, ()), *names.split(","))
    return out


def describe(cells: list[Cell]) -> dict[str, list[str]]:
    """Stage id -> the runs it serves ("dataset/row/seedN"), for dry runs."""
    serves: dict[str, list[str]] = {}
    for cell in cells:
        for stage in cell.chain:
            serves.setdefault(stage.id, []).append(f"{cell.dataset}/{cell.row}/seed{cell.seed}")
    return serves
