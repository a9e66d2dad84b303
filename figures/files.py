"""A figure's three files: `out`.png, `out`.pdf and its data as `out`.csv.

Drawing is the slow part of re-rendering (importing matplotlib and seaborn, laying out and
saving two files: seconds per figure), and a figure is a pure function of its data and title.
So `save` records a hash of both, and of the figure code itself (this package's sources: a
changed drawing code draws again), beside the files (`.<name>.key`), and `up_to_date` tells a
caller that the files on disk were drawn from the same data, title and code, so that a warm
`--table all` re-renders every figure without drawing one. matplotlib is imported by `pyplot`,
only when a figure is drawn.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import pandas as pd


def paths(out: Path) -> list[Path]:
    return [out.with_suffix(".png"), out.with_suffix(".pdf"), out.with_suffix(".csv")]


@cache
def code_key() -> str:
    """A hash of the figure code: every module of this package."""
    sources = sorted(Path(__file__).parent.glob("*.py"))
    return hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()


def _key(data: pd.DataFrame, title: str) -> str:
    text = f"{code_key()}\0{title}\0{data.to_csv(index=False)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _stamp(out: Path) -> Path:
    return out.parent / f".{out.name}.key"


def up_to_date(out: Path, data: pd.DataFrame, title: str) -> bool:
    """Whether all three files exist and were saved from this data and title."""
    stamp = _stamp(out)
    return (
        all(path.exists() for path in paths(out))
        and stamp.exists()
        and stamp.read_text() == _key(data, title)
    )


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, out: Path, data: pd.DataFrame, title: str) -> list[Path]:
    """The figure to `out`.png (150 dpi) and .pdf, `data` to `out`.csv, and their key; the
    figure is closed. Returns the three paths."""
    png, pdf, csv = paths(out)
    fig.savefig(png, dpi=150)
    fig.savefig(pdf)
    pyplot().close(fig)
    data.to_csv(csv, index=False)
    _stamp(out).write_text(_key(data, title))
    return [png, pdf, csv]
