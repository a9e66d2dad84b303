"""Table specs as data: which runs a table needs (rows x datasets) and how it is labelled.

Each row is a model and a set of method options on top of the command line's; the row key
matches the paper's numbers in paper_numbers.csv. Adding an ablation is adding a TableSpec here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.run.grid import Row
from iaa_common import UserError

CHECK = "✓"


@dataclass(frozen=True)
class RowSpec:
    key: str
    descriptors: list[str]
    # MethodOptions fields of this row (tfa, apds, tfa_level, tfa_sampling, ...); flsa: True
    # turns FLSA on with the command line's --flsa-weight
    options: dict = field(default_factory=dict)
    model: str = "swinv2"
    variants: tuple[str, ...] = ()  # the model's named variants (baselines/models.toml)
    paper_key: str | None = None  # the paper's row it stands beside (default: key)

    def row(self, model: str | None = None) -> Row:
        """The grid row, on `model` instead of the spec's when given (--model; the spec's
        variants are the spec's model's)."""
        if model and model != self.model:
            return Row(self.key, model, self.options)
        return Row(self.key, self.model, self.options, variants=self.variants)


@dataclass(frozen=True)
class TableSpec:
    key: str
    title: str
    caption: str
    paper_datasets: list[str]
    header_columns: list[str]
    rows: list[RowSpec]
    notes: list[str] = field(default_factory=list)  # printed under the table
    # paper row key -> candidate rows: the candidate with the best mean validation SRCC is
    # marked and shown beside that paper row's numbers (the test set never chooses)
    choose_on_val: dict[str, list[str]] = field(default_factory=dict)
    paper_table: str | None = None  # the paper's table its numbers come from (default: key)
    file_stem: str | None = None  # default: table4, table-sampling
    # "rows": one table per dataset; "blocks": every dataset in one table, a block of the
    # rows per dataset (the paper's Tables 1 and 2, transposed: methods are rows here)
    layout: str = "rows"
    # row key -> the row it is compared with: its cells add the change of the mean (Table 3)
    change_against: dict[str, str] = field(default_factory=dict)
    row_blocks: list[str] | None = None  # a block per row (Table 3: the model), for bold and rules

    @property
    def stem(self) -> str:
        """File name stem of the rendered table: table4, table-sampling."""
        if self.file_stem:
            return self.file_stem
        return f"table{self.key}" if self.key.isdigit() else f"table-{self.key}"


PAPER_ROW = {"swinv2": "base"}  # a model's row key in the paper's Table 1, where it differs
METHOD_NAMES = ("tfa", "flsa", "apds", "lds", "fds", "ranksim")


def single_run(model: str, methods: list[str]) -> TableSpec:
    """One run of one model (`run_all.py --model NAME [--methods tfa,flsa,apds]`), beside the
    paper's Table 1 numbers for that model when it runs plain."""
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHOD_NAMES)}")
    key = "+".join([PAPER_ROW.get(model, model), *methods])
    return TableSpec(
        key="run",
        title=f"Run of {model}",
        caption=f"{model}" + (f" with {'+'.join(m.upper() for m in methods)}" if methods else ""),
        paper_datasets=["AVA"],
        header_columns=["Model", "Methods"],
        rows=[RowSpec(key, [model, "+".join(methods) or "–"], dict.fromkeys(methods, True), model)],
        paper_table="1",
        file_stem=f"run-{key}",
    )


def _module_rows() -> list[RowSpec]:
    combos = [
        (0, 0, 0),
        (1, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
        (1, 1, 0),
        (1, 0, 1),
        (0, 1, 1),
        (1, 1, 1),
    ]
    rows = []
    for tfa, flsa, apds in combos:
        names = [name for name, on in (("tfa", tfa), ("flsa", flsa), ("apds", apds)) if on]
        rows.append(
            RowSpec(
                key="+".join(names) or "base",
                descriptors=[CHECK if on else "" for on in (tfa, flsa, apds)],
                options={"tfa": bool(tfa), "flsa": bool(flsa), "apds": bool(apds)},
            )
        )
    return rows


ELTA = {"tfa": True, "flsa": True, "apds": True}
MINORITY_THRESHOLDS = (0.5, 0.75, 1.0, 1.25)  # |s - s_bar| in label-score units


def _pixel_rows() -> list[RowSpec]:
    """Table 5: TFA at the pixel level (k = 0 in eq. 1) against the feature level."""
    return [
        RowSpec("tfa_pixel", ["TFA(pixel)"], {"tfa": True, "tfa_level": "pixel"}),
        RowSpec("tfa", ["TFA(feature)"], {"tfa": True}),
        RowSpec("tfa_pixel+flsa+apds", ["TFA(pixel)+FLSA+APDS"], {**ELTA, "tfa_level": "pixel"}),
        RowSpec("tfa+flsa+apds", ["TFA(feature)+FLSA+APDS"], ELTA),
    ]


def _sampling_rows() -> list[RowSpec]:
    """Section 4.4: ELTA (TFA+FLSA+APDS) with TFA's pair sampling swapped for an ablation."""
    random = RowSpec("random", ["random pairs", "Beta(1, 1)"], {**ELTA, "tfa_sampling": "random"})
    thresholds = [
        RowSpec(
            f"threshold_{delta}",
            [f"minority only, |s - mean| ≥ {delta}", "Beta(1, 1)"],
            {**ELTA, "tfa_sampling": "threshold", "tfa_threshold": delta},
        )
        for delta in MINORITY_THRESHOLDS
    ]
    elta = RowSpec("elta", ["ELTA, eqs. 2-3", "eq. 4"], ELTA)
    return [random, *thresholds, elta]


def _dir_rows() -> list[RowSpec]:
    """Table 2: the DIR methods and ELTA, each on the Swin V2 baseline."""
    return [
        RowSpec("lds_fds", ["L&FDS"], {"lds": True, "fds": True}),
        RowSpec("ranksim", ["RankSim"], {"ranksim": True}),
        RowSpec("base", ["Base."], {}),
        RowSpec("elta", ["Ours"], ELTA),
    ]


FOUR_DATASETS = ["AVA", "AADB", "TAD66K", "PARA"]
# Figure 5's grid. The paper's text does not list the figure's axes; this grid is centred on
# its optimum (0.2, 4.0) and spans the official code's defaults (function: 0.2 / 5, argparse:
# 0.5 / 2). --tau1-grid and --tau2-grid change it.
TAU1_GRID = (0.1, 0.2, 0.3, 0.4, 0.5)
TAU2_GRID = (2.0, 3.0, 4.0, 5.0, 6.0)


def tau_rows(
    tau1: Sequence[float] = TAU1_GRID, tau2: Sequence[float] = TAU2_GRID, model: str = "swinv2"
) -> list[Row]:
    """Figure 5's grid: a TFA row per (tau1, tau2), keyed "tau1=0.2,tau2=4"."""
    return [
        Row(f"tau1={t1:g},tau2={t2:g}", model, {"tfa": True, "tau1": t1, "tau2": t2})
        for t1 in tau1
        for t2 in tau2
    ]


# The seven IAA models of Tables 1 and 3, in the paper's order: (registry name, paper's name)
IAA_MODELS = [
    ("nima", "NIMA"),
    ("hgcn", "HGCN"),
    ("biaa", "BIAA"),
    ("tanet", "TANet"),
    ("maxvit", "MaxViT"),
    ("musiq", "MUSIQ"),
    ("eat", "EAT"),
]
PLUG_INS = [("", "plain"), ("+tfa+flsa", "+TFA+FLSA"), ("+tfa+flsa+apds", "+TFA+FLSA+APDS")]


def _iaa_rows() -> list[RowSpec]:
    """Table 1: the seven IAA models, the Swin V2 baseline and ELTA on it (the paper's columns,
    here rows)."""
    models = [RowSpec(name, [label], {}, name) for name, label in IAA_MODELS]
    return [*models, RowSpec("base", ["Base."], {}), RowSpec("elta", ["Ours"], ELTA)]


# Models whose official head cannot take ELTA's APDS (it sharpens a softmax over the bins):
# ELTA is added to their `dist_head` variant, and Table 3 also shows them in official form.
SCALAR_HEADS = ("biaa", "eat")


def _plug_in_rows() -> list[RowSpec]:
    """Table 3: every IAA model plain, with TFA+FLSA, and with TFA+FLSA+APDS (Section 4.3). The
    plain row is the model ELTA is added to; where that is not the official form, the official
    plain row comes first."""
    options = {"": {}, "+tfa+flsa": {"tfa": True, "flsa": True}, "+tfa+flsa+apds": ELTA}
    rows = []
    for name, label in IAA_MODELS:
        variants = ("dist_head",) if name in SCALAR_HEADS else ()
        if variants:
            official = [label, "plain, official head"]
            rows.append(RowSpec(f"{name}_official", official, {}, name, ("official_head",), name))
        for suffix, step in PLUG_INS:
            descriptors = [label if not suffix and not variants else "", step]
            rows.append(RowSpec(f"{name}{suffix}", descriptors, options[suffix], name, variants))
    return rows


TABLES: dict[str, TableSpec] = {
    "1": TableSpec(
        key="1",
        title="Table 1",
        caption="ELTA against seven IAA models; Base. is the Swin V2 baseline without ELTA's "
        "modules, Ours is ELTA (TFA+FLSA+APDS) on it",
        paper_datasets=FOUR_DATASETS,
        header_columns=["Dataset", "Model"],
        rows=_iaa_rows(),
        layout="blocks",
    ),
    "2": TableSpec(
        key="2",
        title="Table 2",
        caption="ELTA against two deep-imbalanced-regression methods, L&FDS (LDS and FDS "
        "together) and RankSim, all on the Swin V2 baseline",
        paper_datasets=FOUR_DATASETS,
        header_columns=["Dataset", "Method"],
        rows=_dir_rows(),
        layout="blocks",
    ),
    "3": TableSpec(
        key="3",
        title="Table 3",
        caption="ELTA plugged into the seven IAA models (Section 4.3): each plain, with "
        "TFA+FLSA, and with TFA+FLSA+APDS, ELTA's hyper-parameters as chosen for Swin V2; "
        "in brackets, the change of the mean against the plain model",
        paper_datasets=["AVA"],
        header_columns=["Model", "Modules"],
        rows=_plug_in_rows(),
        change_against={
            f"{name}{suffix}": name for name, _ in IAA_MODELS for suffix, _ in PLUG_INS[1:]
        },
        row_blocks=[row.model for row in _plug_in_rows()],
        notes=[
            "BIAA's and EAT's official heads (a sigmoid score; raw outputs read as a "
            "distribution) cannot take APDS, which sharpens a softmax: ELTA is added to their "
            "dist_head variant (a 10-bin softmax head, the rest unchanged), whose plain row is "
            "the reference of the changes; the official plain row stands above it.",
        ],
    ),
    "4": TableSpec(
        key="4",
        title="Table 4",
        caption="Ablation of ELTA's modules",
        paper_datasets=["AVA"],
        header_columns=["TFA", "FLSA", "APDS"],
        rows=_module_rows(),
    ),
    "5": TableSpec(
        key="5",
        title="Table 5",
        caption="Feature-level against pixel-level mixup (Appendix A.4)",
        paper_datasets=["AVA"],
        header_columns=["Method"],
        rows=_pixel_rows(),
    ),
    "sampling": TableSpec(
        key="sampling",
        title="TFA sampling ablation",
        caption="TFA's pair sampling against random and minority-only mixing, all with "
        "FLSA+APDS (Section 4.4)",
        paper_datasets=["AVA"],
        header_columns=["Pair sampling", "λ"],
        rows=_sampling_rows(),
        notes=[
            "Paper (Section 4.4, AVA): random sampling lowers PLCC and SRCC by 4.6 %; the best "
            "of several thresholds reaches 0.755 / 0.747 against ELTA's 0.777 / 0.764. The "
            "paper's threshold numbers stand beside the threshold chosen here on validation.",
        ],
        choose_on_val={"threshold": [f"threshold_{delta}" for delta in MINORITY_THRESHOLDS]},
    ),
}


FIGURES = {  # key -> what it shows (figures/make.py draws them)
    "1": "score histograms of the datasets beside the paper's Figure 1",
    "5": "test SRCC of TFA over a tau1 x tau2 grid (--tau1-grid, --tau2-grid)",
    "tail": "MAE per score bin of Table 1's models; L/M/H with and without ELTA",
}


def get_table(key: str) -> TableSpec:
    if key not in TABLES:
        raise UserError(f"unknown table '{key}'; valid tables: {', '.join(TABLES)}")
    return TABLES[key]
