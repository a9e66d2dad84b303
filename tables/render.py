"""Render a results table next to the paper's numbers, as GitHub Markdown or as LaTeX.

`build_view` does all the work: it aggregates the per-seed results, formats every cell, picks
the values to bold and collects the notes (given ones, then those on failed runs). The jinja2
templates in ``templates/`` only lay the resulting `TableView` out.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

MISSING = "–"
FAILED = "failed"
NOT_RUN = "not run"  # --cached-only: the store has no result for the cell
DAMAGED = "damaged"  # --cached-only: the stored result failed its check (bench/run/store.py)
STATUSES = ("ok", "failed", "missing", "damaged")
DECIMALS = 3
REASON_MAX_CHARS = 80
RESULT_COLUMNS = ("row", "seed", "status", "reason")


@dataclass(frozen=True)
class Metric:
    """One metric: a pair of columns (ours, paper) in a rendered table."""

    key: str
    label: str
    higher_is_better: bool

    @property
    def arrow(self) -> str:
        """↑ when higher is better, ↓ otherwise."""
        return "↑" if self.higher_is_better else "↓"

    @property
    def md_label(self) -> str:
        """Header text for Markdown, e.g. ``P ↑``."""
        return f"{self.label} {self.arrow}"

    @property
    def tex_label(self) -> str:
        """Header text for LaTeX, as the paper writes it, e.g. ``$\\mathcal{P}\\uparrow$``."""
        arrow = r"\uparrow" if self.higher_is_better else r"\downarrow"
        return rf"$\mathcal{{{self.label}}}{arrow}$"


METRICS: tuple[Metric, ...] = (
    Metric("plcc", "P", True),
    Metric("srcc", "S", True),
    Metric("mae_l", "L", False),
    Metric("mae_m", "M", False),
    Metric("mae_h", "H", False),
)


@dataclass(frozen=True)
class Cell:
    """One formatted table cell."""

    text: str
    bold: bool = False


@dataclass(frozen=True)
class RowView:
    """One table row: its descriptor cells, then (ours, paper) cells for each metric in turn;
    `rule_before` opens a new block (a dataset of a multi-dataset table)."""

    key: str
    descriptors: tuple[str, ...]
    cells: tuple[Cell, ...]
    rule_before: bool = False


@dataclass(frozen=True)
class TableView:
    """Everything a template needs, already formatted.

    `label` is the LaTeX label (``tab:table-4`` for "Table 4"); `metric_spans` gives, per
    metric, the 1-based table columns of its (ours, paper) pair; `notes` are the lines shown
    under the table (the table's own notes, then one per row with failed runs). Cell texts are
    unescaped: each format escapes its own.
    """

    title: str
    caption: str
    label: str
    header_columns: tuple[str, ...]
    metrics: tuple[Metric, ...]
    metric_spans: tuple[tuple[int, int], ...]
    rows: tuple[RowView, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _Aggregate:
    """Our cells for one row, before bolding: means (None where there is no number) and texts."""

    means: tuple[float | None, ...]
    texts: tuple[str, ...]
    note: str | None


def _format_number(value: float) -> str:
    """`value` with the table's fixed number of decimals."""
    return f"{value:.{DECIMALS}f}"


def _shorten(reason: str) -> str:
    """The first line of a failure reason, whitespace collapsed, cut to a readable length."""
    lines = str(reason).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else ""
    if not text:
        return "no reason given"
    if len(text) > REASON_MAX_CHARS:
        return text[: REASON_MAX_CHARS - 1].rstrip() + "…"
    return text


def _aggregate_row(key: str, runs: pd.DataFrame, metrics: tuple[Metric, ...]) -> _Aggregate:
    """Mean (± sample std over two or more seeds) of the ok runs of one row, per metric."""
    if runs.empty:
        return _Aggregate((None,) * len(metrics), (MISSING,) * len(metrics), None)
    ok = runs[runs["status"] == "ok"]
    failed = runs[runs["status"] == "failed"]
    missing = runs[runs["status"] == "missing"]
    damaged = runs[runs["status"] == "damaged"]
    notes = []
    if not failed.empty:
        reasons = "; ".join(dict.fromkeys(_shorten(r) for r in failed["reason"]))
        notes.append(f"{key}: {len(failed)}/{len(runs)} seeds failed: {reasons}")
    if not missing.empty:
        notes.append(f"{key}: {len(missing)}/{len(runs)} seeds not run")
    if not damaged.empty:
        notes.append(
            f"{key}: {len(damaged)}/{len(runs)} seeds damaged in the store (moved to its "
            "quarantine; a run without --cached-only computes them again)"
        )
    note = "; ".join(notes) or None
    if ok.empty:
        text = FAILED if not failed.empty else DAMAGED if not damaged.empty else NOT_RUN
        return _Aggregate((None,) * len(metrics), (text,) * len(metrics), note)
    means: list[float | None] = []
    texts: list[str] = []
    for metric in metrics:
        values = ok[metric.key].dropna().astype(float)
        if values.empty:
            means.append(None)
            texts.append(MISSING)
            continue
        mean = float(values.mean())
        means.append(mean)
        text = _format_number(mean)
        if len(values) >= 2:
            text += f" ± {_format_number(float(values.std(ddof=1)))}"
        texts.append(text)
    return _Aggregate(tuple(means), tuple(texts), note)


def _best_flags(values: list[float | None], higher_is_better: bool) -> list[bool]:
    """Which values to bold: the best one and any that tie with it once rounded for display."""
    shown = [None if v is None else round(v, DECIMALS) for v in values]
    present = [v for v in shown if v is not None]
    if not present:
        return [False] * len(values)
    best = max(present) if higher_is_better else min(present)
    return [v is not None and v == best for v in shown]


def _change(value: float | None, reference: float | None) -> str:
    """ " (+0.021)": the change of a mean against its reference row's, or nothing."""
    if value is None or reference is None:
        return ""
    return f" ({value - reference:+.{DECIMALS}f})"


def _best_per_block(
    values: list[float | None], blocks: list[str], higher_is_better: bool
) -> list[bool]:
    """`_best_flags` applied within each block of rows."""
    flags = [False] * len(values)
    for block in dict.fromkeys(blocks):
        members = [i for i, b in enumerate(blocks) if b == block]
        for i, flag in zip(
            members, _best_flags([values[i] for i in members], higher_is_better), strict=True
        ):
            flags[i] = flag
    return flags


def _check_inputs(
    row_labels: list[tuple[str, list[str]]], header_columns: list[str], results: pd.DataFrame
) -> None:
    """Raise ValueError on inputs that would give a misleading table."""
    if not header_columns:
        raise ValueError("a table needs at least one descriptor column to name its rows")
    keys = [key for key, _ in row_labels]
    if len(set(keys)) != len(keys):
        raise ValueError(f"row keys repeat: {keys}")
    for key, descriptors in row_labels:
        if len(descriptors) != len(header_columns):
            raise ValueError(
                f"row {key!r} has {len(descriptors)} descriptor cells for "
                f"{len(header_columns)} header columns"
            )
    unknown = sorted(set(results["row"]) - set(keys))
    if unknown:
        raise ValueError(f"results have rows the table does not list: {unknown}")
    statuses = sorted(set(results["status"]) - set(STATUSES))
    if statuses:
        raise ValueError(f"unknown run status {statuses}; expected one of {STATUSES}")


def _tex_label(title: str) -> str:
    """``tab:`` plus the title lowercased, runs of other characters turned into one dash."""
    return "tab:" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def build_view(
    title: str,
    caption: str,
    row_labels: list[tuple[str, list[str]]],
    header_columns: list[str],
    results: pd.DataFrame,
    paper: dict[tuple[str, str], float | None],
    metrics: tuple[Metric, ...] = METRICS,
    notes: tuple[str, ...] = (),
    blocks: list[str] | None = None,
    change_against: dict[str, str] | None = None,
) -> TableView:
    """Aggregate `results` per row and lay them out beside the paper's values.

    `row_labels` lists the rows in order as (row key, descriptor cells), `header_columns` names
    the descriptor columns. `results` holds one row per (row, seed) with the columns ``row``,
    ``seed``, ``status`` ("ok"/"failed"), ``reason`` and one float column per metric key.
    `paper` maps (row key, metric key) to the paper's value; absent keys and None show as "–".
    `notes` are printed under the table, before the notes on failed runs. `blocks` names each
    row's block (a dataset): the best values are bolded within each block, and a rule
    separates the blocks. `change_against` maps a row key to the row it is compared with: its
    cells (ours and the paper's) add the change of the mean in brackets, e.g. "0.650 (+0.021)".
    """
    needed = [*RESULT_COLUMNS, *(m.key for m in metrics)]
    if results.empty:
        results = pd.DataFrame(columns=needed)
    absent = [c for c in needed if c not in results.columns]
    if absent:
        raise ValueError(f"results lack the columns {absent}")
    _check_inputs(row_labels, header_columns, results)

    keys = [key for key, _ in row_labels]
    blocks = blocks or [""] * len(keys)
    ours = [_aggregate_row(key, results[results["row"] == key], metrics) for key in keys]
    theirs = [[paper.get((key, metric.key)) for metric in metrics] for key in keys]
    ours_bold = [
        _best_per_block([agg.means[i] for agg in ours], blocks, metric.higher_is_better)
        for i, metric in enumerate(metrics)
    ]
    theirs_bold = [
        _best_per_block([values[i] for values in theirs], blocks, metric.higher_is_better)
        for i, metric in enumerate(metrics)
    ]

    rows = []
    position = {key: r for r, key in enumerate(keys)}
    for r, (key, descriptors) in enumerate(row_labels):
        reference = position.get((change_against or {}).get(key))
        cells: list[Cell] = []
        for i in range(len(metrics)):
            paper_value = theirs[r][i]
            paper_text = MISSING if paper_value is None else _format_number(paper_value)
            our_text = ours[r].texts[i]
            if reference is not None:
                our_text += _change(ours[r].means[i], ours[reference].means[i])
                paper_text += _change(paper_value, theirs[reference][i])
            cells.append(Cell(our_text, ours_bold[i][r]))
            cells.append(Cell(paper_text, theirs_bold[i][r]))
        opens_block = r > 0 and blocks[r] != blocks[r - 1]
        rows.append(RowView(key, tuple(descriptors), tuple(cells), opens_block))

    first = len(header_columns) + 1
    spans = tuple((first + 2 * i, first + 2 * i + 1) for i in range(len(metrics)))
    return TableView(
        title=title,
        caption=caption,
        label=_tex_label(title),
        header_columns=tuple(header_columns),
        metrics=tuple(metrics),
        metric_spans=spans,
        rows=tuple(rows),
        notes=(*notes, *(agg.note for agg in ours if agg.note)),
    )


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "|": r"\textbar{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "✓": r"$\checkmark$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "≥": r"$\geq$",
    "λ": r"$\lambda$",
    "–": "--",
    "…": r"\ldots{}",
}


def escape_latex(text: str) -> str:
    """`text` with LaTeX specials escaped and the symbols the tables use turned into macros."""
    return "".join(_TEX_SPECIALS.get(char, char) for char in str(text))


def escape_markdown(text: str) -> str:
    """`text` made safe inside a GitHub pipe-table cell."""
    return str(text).replace("|", r"\|")


def _markdown_cell(cell: Cell) -> str:
    text = escape_markdown(cell.text)
    return f"**{text}**" if cell.bold else text


def _latex_cell(cell: Cell) -> str:
    text = escape_latex(cell.text)
    return rf"\textbf{{{text}}}" if cell.bold else text


def _environment(escape: Callable[[str], str], cell: Callable[[Cell], str]) -> jinja2.Environment:
    """A jinja2 environment over ``templates/`` with the format's ``esc`` and ``cell`` filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["esc"] = escape
    env.filters["cell"] = cell
    return env


def render_markdown(view: TableView) -> str:
    """The table as a caption line, a GitHub pipe table and the notes under it."""
    template = _environment(escape_markdown, _markdown_cell).get_template("table.md.j2")
    return template.render(view=view)


def render_latex(view: TableView) -> str:
    """The table as a booktabs ``table`` float, scaled to the text width (needs the booktabs,
    amssymb and graphicx packages)."""
    descriptors = "".join("l" if i == 0 else "c" for i in range(len(view.header_columns)))
    column_spec = descriptors + "cc" * len(view.metrics)
    template = _environment(escape_latex, _latex_cell).get_template("table.tex.j2")
    return template.render(view=view, column_spec=column_spec)


def render_latex_document(view: TableView) -> str:
    """`render_latex` wrapped in a minimal article that compiles on its own."""
    return (
        "\\documentclass{article}\n"
        "\\usepackage{booktabs,amssymb,graphicx}\n"
        "\\begin{document}\n"
        f"{render_latex(view)}"
        "\\end{document}\n"
    )
