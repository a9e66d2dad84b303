"""Figure 1: the score histograms of the four datasets, ours beside the paper's counts.

The paper's Figure 1 counts images per score bin [0,2), [2,3), ..., [7,8), [8,10] of the
10-point scale (`bench.data.synth.FIGURE1_COUNTS`). Ours are the labelled images of a dataset
(train, validation and test together; the real datasets' scores are put on the same scale by
their loaders), binned the same way. Both are drawn as proportions, so that a 10,000-image
stand-in can be set beside AVA's 255,000 images; the CSV keeps the counts too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.synth import BIN_EDGES, FIGURE1_COUNTS
from figures import files

BIN_LABELS = [
    f"[{lo:g},{hi:g}{']' if k == len(BIN_EDGES) - 2 else ')'}"
    for k, (lo, hi) in enumerate(zip(BIN_EDGES[:-1], BIN_EDGES[1:], strict=True))
]


def histogram(scores: np.ndarray) -> np.ndarray:
    """Counts per Figure 1 bin (numpy's last bin is closed, as the paper's [8, 10])."""
    return np.histogram(scores, bins=BIN_EDGES)[0]


def table(scores: dict[str, np.ndarray], paper_names: dict[str, str]) -> pd.DataFrame:
    """One row per (dataset, bin): our count and proportion, the paper's count and proportion.
    `scores` maps a dataset name to its labelled scores, `paper_names` to the paper's dataset."""
    rows = []
    for name, values in scores.items():
        ours = histogram(values)
        paper = np.asarray(FIGURE1_COUNTS[paper_names[name]])
        for k, label in enumerate(BIN_LABELS):
            rows.append(
                {
                    "dataset": name,
                    "paper_dataset": paper_names[name],
                    "bin": label,
                    "count": int(ours[k]),
                    "proportion": ours[k] / ours.sum(),
                    "paper_count": int(paper[k]),
                    "paper_proportion": paper[k] / paper.sum(),
                }
            )
    return pd.DataFrame(rows)


def draw(counts: pd.DataFrame, out: Path, title: str) -> list[Path]:
    """One panel per dataset, our proportions beside the paper's, to `out`.png, .pdf and the
    table to `out`.csv. Returns the written paths."""
    if files.up_to_date(out, counts, title):
        return files.paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plt = files.pyplot()
    datasets = list(dict.fromkeys(counts["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets), 3.2), squeeze=False)
    x = np.arange(len(BIN_LABELS))
    for ax, name in zip(axes[0], datasets, strict=True):
        rows = counts[counts["dataset"] == name]
        n = int(rows["count"].sum())
        ax.bar(x - 0.2, rows["proportion"], 0.4, label=f"ours ({n:,} images)")
        paper_n = int(rows["paper_count"].sum())
        ax.bar(x + 0.2, rows["paper_proportion"], 0.4, label=f"paper ({paper_n:,})")
        ax.set_title(f"{name} ({rows['paper_dataset'].iloc[0]})", fontsize=9)
        ax.set_xticks(x, BIN_LABELS, rotation=45, fontsize=7)
        ax.set_xlabel("score (10-point scale)", fontsize=8)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("share of images")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return files.save(fig, out, counts, title)
