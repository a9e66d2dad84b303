"""Evaluation metrics of the paper (Section 4.1): PLCC, SRCC, L/M/H MAE, binary accuracy.

L/M/H: the test set is split by ground-truth percentiles into the bottom 20%, the middle 60% and
the top 20%; every sample is in exactly one group (the official code's strict inequalities drop
every sample on a cut point, min and max included; we do not). Samples equal to the 20th
percentile go to L, those equal to the 80th to H.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

BINARY_THRESHOLD = 5.0


def group_masks(gt: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the low / medium / high groups of ground-truth scores."""
    low_cut, high_cut = np.percentile(gt, [20, 80])
    low = gt <= low_cut
    high = (gt >= high_cut) & ~low
    return {"l": low, "m": ~low & ~high, "h": high}


def evaluate(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """All metrics of predicted vs ground-truth scores (10-point scale)."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if len(pred) != len(gt) or not len(gt):
        raise ValueError(f"need paired scores, got {len(pred)} and {len(gt)}")
    abs_err = np.abs(pred - gt)
    correlated = len(gt) >= 3 and np.ptp(pred) > 0  # else undefined (NaN): a rehearsal's splits
    out = {
        "plcc": float(stats.pearsonr(pred, gt)[0]) if correlated else float("nan"),
        "srcc": float(stats.spearmanr(pred, gt)[0]) if correlated else float("nan"),
        "mae": float(abs_err.mean()),
        "acc": float(np.mean((pred > BINARY_THRESHOLD) == (gt > BINARY_THRESHOLD))),
    }
    for name, mask in group_masks(gt).items():
        out[f"mae_{name}"] = float(abs_err[mask].mean()) if mask.any() else float("nan")
    return out
