"""results/report.md: every table and figure produced so far, with their captions, in one page.

Tables are the Markdown files run_all.py wrote under results/tables/ (each starts with its
caption), in the paper's order, then any others (single runs); figures are the PNGs under
results/figures/, each with the caption of its kind. A pure function of those files.
"""

from __future__ import annotations

from pathlib import Path

TABLE_ORDER = ("table1", "table2", "table3", "table4", "table5", "table-sampling")
FIGURE_CAPTIONS = {
    "fig1_histograms": "Figure 1: share of images per score bin, ours beside the paper's.",
    "fig5_tau": "Figure 5: test SRCC of TFA over the tau1 x tau2 grid (the best cell outlined in "
    "black, the paper's optimum (0.2, 4.0) in red).",
    "fig_tail": "The long tail: test MAE per ground-truth score bin of Table 1's models, and "
    "the L / M / H MAE of Table 3's models plain and with ELTA.",
}


def _order(path: Path, order: tuple[str, ...]) -> tuple[int, str]:
    prefix = next((k for k, name in enumerate(order) if path.stem.startswith(name)), len(order))
    return prefix, path.stem


def write_report(results: Path) -> Path:
    """Gather results/tables/*.md and results/figures/*.png into results/report.md."""
    tables = sorted((results / "tables").glob("*.md"), key=lambda p: _order(p, TABLE_ORDER))
    figures = sorted(
        (results / "figures").glob("*.png"), key=lambda p: _order(p, tuple(FIGURE_CAPTIONS))
    )
    parts = [
        "# ELTA benchmark harness: results\n",
        "Every table and figure in this results store, as `run_all.py` wrote them; each "
        "caption says the datasets, profile, seeds and code version behind its numbers.\n",
    ]
    for table in tables:
        parts.append(table.read_text().strip() + "\n")
    for figure in figures:
        stem = next((k for k in FIGURE_CAPTIONS if figure.stem.startswith(k)), None)
        caption = FIGURE_CAPTIONS.get(stem, figure.stem)
        image = f"![{figure.stem}](figures/{figure.name})"
        parts.append(f"**{caption}** (`{figure.stem}`)\n\n{image}\n")
    out = results / "report.md"
    out.write_text("\n".join(parts))
    return out
