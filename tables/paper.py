"""The numbers the ELTA paper (ICML 2024) reports in its Tables 1-5 and Section 4.4.

They were transcribed once from the paper into ``paper_numbers.csv``, which ships next to this
module as package data. The file is in long format: one row per cell, with the columns
``table`` ("1".."5", or "sampling" for the PLCC/SRCC that Section 4.4 quotes), ``dataset``
(AVA, AADB, TAD66K, PARA), ``row`` (a method or module combination key such as ``eat`` or
``tfa+flsa``), ``metric`` (plcc, srcc, mae_l, mae_m, mae_h) and ``value``.
"""

from functools import cache
from pathlib import Path

import pandas as pd

PAPER_NUMBERS_CSV = Path(__file__).parent / "paper_numbers.csv"


@cache
def _indexed() -> pd.Series:
    """The transcribed values keyed by (table, dataset, row, metric), read once."""
    frame = load_paper_numbers()
    return frame.set_index(["table", "dataset", "row", "metric"])["value"]


def load_paper_numbers() -> pd.DataFrame:
    """Every transcribed cell of Tables 1-5 as a DataFrame (``table`` kept as a string)."""
    return pd.read_csv(
        PAPER_NUMBERS_CSV,
        dtype={"table": str, "dataset": str, "row": str, "metric": str, "value": float},
    )


def paper_value(table: str, dataset: str, row: str, metric: str) -> float | None:
    """The value the paper reports for one cell, or None when the paper has no such cell."""
    value = _indexed().get((table, dataset, row, metric))
    return None if value is None else float(value)
