"""Figure 5: test SRCC of the TFA configuration over a grid of the temperatures tau1 (eqs. 2, 4)
and tau2 (eq. 3), drawn as an annotated seaborn heatmap.

A pure function of stored results: `summarise` turns per-seed runs into one row per grid cell,
`draw` renders it. The best cell of the grid is outlined in black, the paper's optimum
(tau1 = 0.2, tau2 = 4.0, Section 4.4) in red. The best cell is a description of this grid's
results, not a selection: the defaults stay the paper's.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from figures import files

PAPER_OPTIMUM = (0.2, 4.0)  # (tau1, tau2) where the paper's Figure 5 peaks


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (tau1, tau2): mean and std of test SRCC (and PLCC, validation SRCC) over
    the cell's ok seeds, with the number of ok and failed seeds.

    `runs` has one row per (tau1, tau2, seed) with status, srcc, plcc and val_srcc columns.
    """
    for column in ("srcc", "plcc", "val_srcc"):
        if column not in runs:
            runs = runs.assign(**{column: float("nan")})
    ok = runs[runs["status"] == "ok"]
    cells = runs.groupby(["tau1", "tau2"]).size().rename("n_runs").reset_index()
    stats = ok.groupby(["tau1", "tau2"]).agg(
        srcc_mean=("srcc", "mean"),
        srcc_std=("srcc", "std"),
        plcc_mean=("plcc", "mean"),
        val_srcc_mean=("val_srcc", "mean"),
        n_ok=("srcc", "size"),
    )
    out = cells.merge(stats.reset_index(), on=["tau1", "tau2"], how="left")
    out["n_ok"] = out["n_ok"].fillna(0).astype(int)
    out["n_failed"] = out["n_runs"] - out["n_ok"]
    return out.drop(columns="n_runs").sort_values(["tau1", "tau2"]).reset_index(drop=True)


def _outline(ax, tau1_values: list, tau2_values: list, cell: tuple, color: str, width: float):
    tau1, tau2 = cell
    if tau1 in tau1_values and tau2 in tau2_values:
        from matplotlib.patches import Rectangle

        row, col = tau1_values.index(tau1), tau2_values.index(tau2)
        ax.add_patch(Rectangle((col, row), 1, 1, fill=False, edgecolor=color, linewidth=width))


def draw(grid: pd.DataFrame, out: Path, title: str) -> list[Path]:
    """Heatmap of `summarise`'s mean test SRCC (tau1 down, tau2 across) to `out`.png and .pdf,
    the grid itself to `out`.csv. Returns the written paths."""
    if files.up_to_date(out, grid, title):
        return files.paths(out)
    import seaborn as sns

    out.parent.mkdir(parents=True, exist_ok=True)
    plt = files.pyplot()
    heat = grid.pivot(index="tau1", columns="tau2", values="srcc_mean").sort_index()
    heat = heat.reindex(sorted(heat.columns), axis=1)
    spread = grid.pivot(index="tau1", columns="tau2", values="srcc_std").reindex_like(heat)
    labels = heat.map(lambda v: "failed" if pd.isna(v) else f"{v:.3f}")
    labels = labels + spread.map(lambda v: "" if pd.isna(v) else f"\n±{v:.3f}")
    tau1_values, tau2_values = list(heat.index), list(heat.columns)

    fig, ax = plt.subplots(figsize=(1.1 * len(tau2_values) + 2.5, 0.8 * len(tau1_values) + 1.8))
    sns.heatmap(
        heat,
        annot=labels.to_numpy(),
        fmt="",
        cmap="viridis",
        cbar_kws={"label": "test SRCC"},
        linewidths=0.5,
        ax=ax,
    )
    if heat.notna().any().any():
        best = heat.stack().idxmax()
        _outline(ax, tau1_values, tau2_values, best, "black", 3.0)
    _outline(ax, tau1_values, tau2_values, PAPER_OPTIMUM, "red", 1.5)
    ax.set_xlabel(r"$\tau_2$ (eq. 3)")
    ax.set_ylabel(r"$\tau_1$ (eqs. 2, 4)")
    ax.set_title(title, fontsize=9)
    fig.text(
        0.02,
        0.01,
        "black: best cell of this grid; red: the paper's optimum (0.2, 4.0)",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return files.save(fig, out, grid, title)
