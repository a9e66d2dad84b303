"""What the long tail does to each model, from stored results only (`--figure tail`).

Left: the test MAE in each ground-truth score bin (the paper's Figure 1 bins) for every model of
Table 1 on one dataset, with the number of test images per bin behind it: the errors grow
towards the sparse ends of the scale. A model's value in a bin is the mean over its seeds of
that seed's MAE over the bin's test images (bins with no test image are left out).
Right: the L, M and H MAE (bottom 20 %, middle 60 %, top 20 % of the test scores; the paper's
groups) of every model of Table 3, plain and with ELTA (TFA+FLSA+APDS), as paired bars (mean
over seeds, the sample standard deviation as an error bar where there are several seeds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.synth import BIN_EDGES
from figures import files
from figures.histograms import BIN_LABELS

GROUPS = {"mae_l": "L", "mae_m": "M", "mae_h": "H"}


def mae_by_bin(predictions: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    """Per model (key) and Figure 1 bin: the mean over seeds of each seed's test MAE in the bin,
    the number of seeds and of test images. `predictions` holds each seed's predictions.csv
    (columns gt, pred)."""
    rows = []
    for model, seeds in predictions.items():
        per_seed = []
        for frame in seeds:
            bins = np.searchsorted(np.asarray(BIN_EDGES[1:-1]), frame["gt"], side="right")
            error = (frame["pred"] - frame["gt"]).abs()
            per_seed.append(error.groupby(bins).agg(["mean", "size"]))
        stacked = pd.concat(per_seed, keys=range(len(per_seed)), names=["seed", "bin"])
        by_bin = stacked.groupby("bin").agg(mae=("mean", "mean"), n_images=("size", "first"))
        for k, row in by_bin.iterrows():
            rows.append(
                {
                    "model": model,
                    "bin": BIN_LABELS[int(k)],
                    "mae": row["mae"],
                    "n_images": int(row["n_images"]),
                    "n_seeds": len(seeds),
                }
            )
    return pd.DataFrame(rows)


def plug_in_groups(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (model, variant, group): mean and sample std over seeds of the L/M/H MAE. `runs` has
    one row per ok run with model, variant ("plain" or "ELTA") and mae_l/mae_m/mae_h."""
    columns = ["model", "variant", *GROUPS]
    long = runs[columns].melt(["model", "variant"], var_name="metric", value_name="error")
    by_group = long.groupby(["model", "variant", "metric"], sort=False)["error"]
    out = by_group.agg(["mean", "std", "size"]).rename(columns={"size": "n_seeds"}).reset_index()
    return out.assign(group=out["metric"].map(GROUPS))


def draw(
    by_bin: pd.DataFrame, plug_in: pd.DataFrame, out: Path, title: str, dataset: str
) -> list[Path]:
    """Both panels to `out`.png and .pdf, their data to `out`.csv; returns the paths."""
    data = pd.concat(
        [by_bin.assign(panel="mae_by_bin"), plug_in.assign(panel="plug_in")], ignore_index=True
    )
    if files.up_to_date(out, data, title):
        return files.paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plt = files.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.8), width_ratios=(1, 1.3))
    x = np.arange(len(BIN_LABELS))
    if not by_bin.empty:
        images = by_bin.drop_duplicates("bin").set_index("bin")["n_images"]
        behind = left.twinx()
        behind.bar(x, [images.get(label, 0) for label in BIN_LABELS], color="0.9", zorder=0)
        behind.set_ylabel("test images per bin", color="0.5", fontsize=8)
        left.set_zorder(behind.get_zorder() + 1)
        left.patch.set_visible(False)
        for model, rows in by_bin.groupby("model", sort=False):
            positions = [BIN_LABELS.index(label) for label in rows["bin"]]
            left.plot(positions, rows["mae"], marker="o", label=model, linewidth=1.2)
        left.legend(fontsize=7, ncols=2)
    left.set_xticks(x, BIN_LABELS, rotation=45, fontsize=7)
    left.set_xlabel("ground-truth score (10-point scale)", fontsize=8)
    left.set_ylabel("test MAE", fontsize=8)
    left.set_title(f"MAE per score bin, Table 1's models on {dataset}", fontsize=9)

    if not plug_in.empty:
        models = list(dict.fromkeys(plug_in["model"]))
        slots = [(group, model) for group in GROUPS.values() for model in models]
        for offset, variant in ((-0.2, "plain"), (0.2, "ELTA")):
            rows = plug_in[plug_in["variant"] == variant].set_index(["group", "model"])
            means = [rows["mean"].get(slot, np.nan) for slot in slots]
            spread = [rows["std"].get(slot, np.nan) for slot in slots]
            right.bar(np.arange(len(slots)) + offset, means, 0.4, yerr=np.nan_to_num(spread),
                      label=variant if variant == "plain" else "+TFA+FLSA+APDS")  # fmt: skip
        right.set_xticks(np.arange(len(slots)), [f"{m}\n{g}" for g, m in slots], fontsize=6)
        right.legend(fontsize=7)
    right.set_ylabel("test MAE", fontsize=8)
    right.set_title("L / M / H MAE, each model plain and with ELTA (Table 3)", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return files.save(fig, out, data, title)
