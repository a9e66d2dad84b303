"""Table specs as data: which runs a table needs (rows x datasets) and how it is labelled.

Each row is a set of method options on top of the command line's; the row key matches the
paper's numbers in paper_numbers.csv.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.errors import UserError

CHECK = "✓"
FLSA_WEIGHT_DEFAULT = 1.0  # the official README's example (--simloss_weight 1)


@dataclass(frozen=True)
class RowSpec:
    key: str
    descriptors: list[str]
    modules: dict = field(default_factory=dict)  # tfa: bool, flsa: bool, apds: bool, tfa_level


@dataclass(frozen=True)
class TableSpec:
    key: str
    title: str
    caption: str
    paper_datasets: list[str]
    header_columns: list[str]
    rows: list[RowSpec]
    model: str = "swinv2"


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
                modules={"tfa": bool(tfa), "flsa": bool(flsa), "apds": bool(apds)},
            )
        )
    return rows


TABLES: dict[str, TableSpec] = {
    "4": TableSpec(
        key="4",
        title="Table 4",
        caption="Ablation of ELTA's modules",
        paper_datasets=["AVA"],
        header_columns=["TFA", "FLSA", "APDS"],
        rows=_module_rows(),
    ),
}


def get_table(key: str) -> TableSpec:
    if key not in TABLES:
        raise UserError(f"unknown table '{key}'; valid tables: {', '.join(TABLES)}")
    return TABLES[key]
